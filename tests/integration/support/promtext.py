"""A strict reader of Prometheus's text exposition format (version 0.0.4),
for checking what the module's status page and dbmail_tap's metrics file
say, and a runner for `promtool check metrics` where it is installed.

parse() raises FormatError on anything the format does not allow, and on
what this project promises on top of it:
  - every line ends in a newline, the last one included;
  - metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]*
    not starting with "__", label values in double quotes with only \\\\,
    \\" and \\n escaped, no label twice in one sample;
  - "# HELP name text" (text escaping \\\\ and \\n only) and
    "# TYPE name counter|gauge|histogram|summary|untyped", at most one
    each per family, both before the family's first sample (ours: every
    family has both);
  - a family's samples are contiguous (no other family in between);
  - counters and gauges: samples named exactly as the family, counters
    ending in _total with values that are not negative;
  - no two samples with the same name and label set;
  - values parse as floats (Go's spelling: Inf, +Inf, -Inf, NaN too),
    optional timestamps as integers.
It returns {family: {"type", "help", "samples": {labels-tuple: float}}}.
"""
import math
import os
import re
import shutil
import subprocess

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
NAME_RX = re.compile(NAME + r"\Z")
LABEL_RX = re.compile(LABEL + r"\Z")
FLOAT_RX = re.compile(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[Ii]nf|NaN)\Z")
INT_RX = re.compile(r"-?\d+\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class FormatError(ValueError):
    pass


def _unescape(text, allowed, lineno):
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in allowed:
                raise FormatError("line %d: bad escape in %r" % (lineno, text))
            out.append("\n" if text[i + 1] == "n" else text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _labels(s, pos, lineno):
    """Parse '{a="b",...}' starting at s[pos] == '{'.  (labels, end)"""
    labels = []
    i = pos + 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.compile(LABEL).match(s, i)
        if not m:
            raise FormatError("line %d: bad label name at %r" % (lineno, s[i:]))
        name = m.group(0)
        if name.startswith("__"):
            raise FormatError("line %d: reserved label name %r" % (lineno, name))
        i = m.end()
        if s[i:i + 2] != '="':
            raise FormatError("line %d: expected =\" after label %r" % (lineno, name))
        i += 2
        start = i
        while i < len(s) and s[i] != '"':
            i += 2 if s[i] == "\\" else 1
        if i >= len(s):
            raise FormatError("line %d: unterminated label value" % lineno)
        value = _unescape(s[start:i], '\\"n', lineno)
        if any(n == name for n, _ in labels):
            raise FormatError("line %d: label %r twice" % (lineno, name))
        labels.append((name, value))
        i += 1
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise FormatError("line %d: expected , or } in labels" % lineno)


def _float(text, lineno):
    if not FLOAT_RX.match(text):
        raise FormatError("line %d: not a float: %r" % (lineno, text))
    return float(text)


def parse(text):
    if text and not text.endswith("\n"):
        raise FormatError("the last line does not end in a newline")
    families = {}
    closed = set()           # families whose samples are over
    current = None           # family of the last sample
    seen = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not NAME_RX.match(parts[2]):
                    raise FormatError("line %d: bad %s line" % (lineno, parts[1]))
                name = parts[2]
                fam = families.setdefault(name, {"type": None, "help": None, "samples": {}})
                if fam["samples"] or name in closed:
                    raise FormatError("line %d: %s for %s after its samples"
                                      % (lineno, parts[1], name))
                if parts[1] == "HELP":
                    if fam["help"] is not None:
                        raise FormatError("line %d: second HELP for %s" % (lineno, name))
                    fam["help"] = _unescape(parts[3] if len(parts) > 3 else "", "\\n", lineno)
                else:
                    if fam["type"] is not None:
                        raise FormatError("line %d: second TYPE for %s" % (lineno, name))
                    if len(parts) != 4 or parts[3] not in TYPES:
                        raise FormatError("line %d: bad TYPE %r" % (lineno, line))
                    fam["type"] = parts[3]
            continue
        m = re.compile(NAME).match(line)
        if not m:
            raise FormatError("line %d: bad metric name: %r" % (lineno, line))
        name = m.group(0)
        i = m.end()
        labels = []
        if i < len(line) and line[i] == "{":
            labels, i = _labels(line, i, lineno)
        if i >= len(line) or line[i] != " ":
            raise FormatError("line %d: expected a space before the value" % lineno)
        rest = line[i + 1:].split(" ")
        if len(rest) not in (1, 2) or rest[0] == "":
            raise FormatError("line %d: expected value [timestamp]: %r" % (lineno, line))
        value = _float(rest[0], lineno)
        if len(rest) == 2 and not INT_RX.match(rest[1]):
            raise FormatError("line %d: bad timestamp %r" % (lineno, rest[1]))
        fam = families.get(name)
        if fam is None or fam["type"] is None or fam["help"] is None:
            raise FormatError("line %d: sample of %s without HELP and TYPE before it"
                              % (lineno, name))
        if fam["type"] in ("histogram", "summary"):
            raise FormatError("line %d: %s samples are not expected here" % (lineno, fam["type"]))
        if name in closed:
            raise FormatError("line %d: samples of %s are not contiguous" % (lineno, name))
        if current is not None and current != name:
            closed.add(current)
        current = name
        if fam["type"] == "counter":
            if not name.endswith("_total"):
                raise FormatError("line %d: counter %s does not end in _total" % (lineno, name))
            if math.isnan(value) or value < 0:
                raise FormatError("line %d: counter %s is negative" % (lineno, name))
        key = (name, tuple(sorted(labels)))
        if key in seen:
            raise FormatError("line %d: duplicate series %r" % (lineno, key))
        seen.add(key)
        fam["samples"][tuple(sorted(labels))] = value
    for name, fam in families.items():
        if fam["type"] == "counter" and not name.endswith("_total"):
            raise FormatError("counter %s does not end in _total" % name)
    return families


def value(families, name, **labels):
    """The value of one series, or KeyError."""
    return families[name]["samples"][tuple(sorted(labels.items()))]


def promtool():
    """The promtool to check with: MG_PROMTOOL, else on PATH, else None
    (Debian's `prometheus` package has it; it is too big for deps.sh)."""
    tool = os.environ.get("MG_PROMTOOL")
    if tool:
        return tool
    return shutil.which("promtool")


def promtool_check(text, tool):
    """Run `promtool check metrics` on text; (ok, output)."""
    p = subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return p.returncode == 0, (p.stdout + p.stderr).strip()

#!/usr/bin/python3
"""The configuration reference, written once.

build/docs/mod_mailguard.ini (the Apache directives) and
build/docs/dbmail_tap.ini (dbmail_tap's keys) are the only place a
directive's or key's context, default and meaning are written.  From them
this script writes:

  readme [--check]   the two tables of README.md, between the marker
                     comments that name the data file (--check: exit 1
                     and say which table differs, change nothing)
  man OUTDIR         mailguard.conf(5) and dbmail_tap(8) in roff, from the
                     templates next to this script (*.5.in, *.8.in)
  check              the directives of mod_mailguard/mg_config.c's command
                     table and the keys of dbmail_tap/tap_config.c against
                     the data files: exit 1 and name every difference

`make docs` runs all three.  Python 3 standard library only, so it runs
wherever the project builds (/usr/bin/python3).
"""
import configparser
import datetime
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# One entry per program: its data file, the README table's header and the
# data fields of its columns after the first, the man page it feeds.
TABLES = {
    "mod_mailguard": {
        "data": "mod_mailguard.ini",
        "header": ("directive", "context", "default", "meaning"),
        "fields": ("context", "default", "meaning"),
        "man": "mailguard.conf.5",
        "placeholder": "@DIRECTIVES@",
    },
    "dbmail_tap": {
        "data": "dbmail_tap.ini",
        "header": ("key", "where", "default", "value"),
        "fields": ("where", "default", "value"),
        "man": "dbmail_tap.8",
        "placeholder": "@KEYS@",
    },
}
WHERE = ("DEFAULT", "jail")


class DocError(Exception):
    pass


def load(program):
    """The entries of one data file, in file order: a list of dicts with
    'name', 'args' and the table's fields, values on one line."""
    spec = TABLES[program]
    path = os.path.join(HERE, spec["data"])
    # No interpolation, '#' comments only (';' is text), no DEFAULT
    # section: dbmail_tap has a key named like nothing else, but the
    # values are Markdown and must come back exactly as written.
    cp = configparser.RawConfigParser(comment_prefixes=("#",), inline_comment_prefixes=None,
                                      default_section="\0", strict=True,
                                      empty_lines_in_values=False)
    cp.optionxform = str
    with open(path, encoding="utf-8") as f:
        cp.read_file(f)
    entries = []
    allowed = set(spec["fields"]) | {"args"}
    for name in cp.sections():
        sec = cp[name]
        unknown = set(sec) - allowed
        if unknown:
            raise DocError("%s: [%s]: unknown field(s) %s" % (spec["data"], name,
                                                               ", ".join(sorted(unknown))))
        entry = {"name": name, "args": " ".join(sec.get("args", "").split())}
        for field in spec["fields"]:
            value = " ".join(sec.get(field, "").split())
            if not value:
                raise DocError("%s: [%s]: %s is empty" % (spec["data"], name, field))
            entry[field] = value
        if program == "dbmail_tap" and entry["where"] not in WHERE:
            raise DocError("%s: [%s]: where must be DEFAULT or jail, not %r"
                           % (spec["data"], name, entry["where"]))
        entries.append(entry)
    return entries


# ---- README (Markdown) ----

def md_cell(text):
    # GitHub's tables split on every unescaped '|', even inside a code span.
    return text.replace("|", "\\|")


def readme_table(program):
    spec = TABLES[program]
    lines = ["| " + " | ".join(spec["header"]) + " |",
             "|" + "---|" * len(spec["header"])]
    for e in load(program):
        first = "`%s%s`" % (e["name"], " " + e["args"] if e["args"] else "")
        cells = [first] + [e[f] for f in spec["fields"]]
        lines.append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def marker_re(program):
    data = re.escape("build/docs/" + TABLES[program]["data"])
    return re.compile(r"(<!-- generated from %s [^\n]*-->\n)(.*?)(<!-- end of generated table -->)"
                      % data, re.S)


def readme_render(text):
    """README text with both tables regenerated."""
    for program in TABLES:
        rx = marker_re(program)
        found = rx.findall(text)
        if len(found) != 1:
            raise DocError("README.md: expected one pair of markers for build/docs/%s, found %d"
                           % (TABLES[program]["data"], len(found)))
        # Blank lines around the table: a comment line next to a table
        # row is not read the same way by every Markdown renderer.
        table = "\n" + readme_table(program) + "\n"
        text = rx.sub(lambda m: m.group(1) + table + m.group(3), text)
    return text


def cmd_readme(argv):
    check = "--check" in argv
    path = os.path.join(ROOT, "README.md")
    with open(path, encoding="utf-8") as f:
        old = f.read()
    new = readme_render(old)
    if new == old:
        return 0
    if check:
        for program in TABLES:
            if marker_re(program).search(old).group(2) != "\n" + readme_table(program) + "\n":
                print("README.md: the %s table differs from build/docs/%s: run make docs"
                      % (program, TABLES[program]["data"]), file=sys.stderr)
        return 1
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(path + ".tmp", path)
    print("README.md: tables regenerated")
    return 0


# ---- man pages (roff) ----

_ROFF_CHARS = {"\u2026": "\\&...", "\u2013": "\\(en", "\u2014": "\\(em", "\u00d7": "\\(mu",
               "\u2018": "`", "\u2019": "'", "\u201c": "\\(lq", "\u201d": "\\(rq"}


def roff_text(text, code=False):
    """Escape text for roff: backslashes and the few non-ASCII characters
    the tables use.  In code (values, options, regexes) every '-' is a
    hyphen-minus, written \\- so that it can be copied; in prose only a
    '-' that opens a word (an option) is."""
    text = text.replace("\\", "\\e")
    for ch, esc in _ROFF_CHARS.items():
        text = text.replace(ch, esc)
    if code:
        return text.replace("-", "\\-")
    return re.sub(r"(^|(?<=\s))-", r"\\-", text)


def roff_inline(md):
    """One line of the tables' Markdown (code spans and **bold**) as
    roff: code and bold in bold, everything escaped."""
    out = []
    for i, part in enumerate(re.split(r"(`[^`]*`)", md)):
        if i % 2:
            out.append("\\fB" + roff_text(part[1:-1], code=True) + "\\fR")
        else:
            bits = re.split(r"\*\*(.+?)\*\*", part)
            out.append("".join("\\fB" + roff_text(b) + "\\fR" if j % 2 else roff_text(b)
                               for j, b in enumerate(bits)))
    line = "".join(out)
    # A line starting with '.' or '\'' would be read as a request.
    return "\\&" + line if line[:1] in (".", "'") else line


def sentence(md):
    # Not capitalised: a meaning may open with a key or a value.
    return md if md.endswith(".") else md + "."


def man_entries(program):
    spec = TABLES[program]
    out = []
    for e in load(program):
        out.append(".TP")
        tag = "\\fB%s\\fR" % roff_text(e["name"], code=True)
        if e["args"]:
            tag += " \\fI%s\\fR" % roff_text(e["args"], code=True)
        out.append(tag)
        meaning = e[spec["fields"][2]]
        out.append(roff_inline(sentence(meaning)))
        if program == "mod_mailguard":
            where = "Context: %s." % e["context"]
        else:
            where = ("Section: [DEFAULT] only." if e["where"] == "DEFAULT"
                     else "Section: a jail, or [DEFAULT] for every jail.")
        out.append(".br")
        out.append(roff_inline(where))
        out.append(".br")
        out.append(roff_inline("Default: " + e["default"]))
    return "\n".join(out)


def version():
    with open(os.path.join(ROOT, "dbmail_tap", "tap_cmd.h"), encoding="utf-8") as f:
        m = re.search(r'#define\s+TAP_VERSION\s+"([^"]+)"', f.read())
    if not m:
        raise DocError("dbmail_tap/tap_cmd.h: no TAP_VERSION")
    return m.group(1)


def man_date():
    # Reproducible builds set SOURCE_DATE_EPOCH (dpkg: the changelog's date).
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch
            else datetime.datetime.now(datetime.timezone.utc))
    return when.strftime("%Y-%m-%d")


def man_render(program):
    spec = TABLES[program]
    with open(os.path.join(HERE, spec["man"] + ".in"), encoding="utf-8") as f:
        text = f.read()
    if text.count(spec["placeholder"]) != 1:
        raise DocError("%s.in: needs %s exactly once" % (spec["man"], spec["placeholder"]))
    text = (text.replace(spec["placeholder"], man_entries(program))
                .replace("@VERSION@", version()).replace("@DATE@", man_date()))
    head = ('.\\" Generated by build/docs/gendocs.py from build/docs/%s.in and\n'
            '.\\" build/docs/%s: edit those, then run make docs.\n' % (spec["man"], spec["data"]))
    return head + text


def cmd_man(argv):
    if len(argv) != 1:
        raise DocError("usage: gendocs.py man OUTDIR")
    os.makedirs(argv[0], exist_ok=True)
    for program, spec in TABLES.items():
        path = os.path.join(argv[0], spec["man"])
        with open(path, "w", encoding="utf-8") as f:
            f.write(man_render(program))
        print("%s: written" % path)
    return 0


# ---- the code against the docs ----

def code_directives(root=ROOT):
    """Directive names of mod_mailguard's command table, read from the
    source text (AP_INIT_*("Name", ...) entries)."""
    with open(os.path.join(root, "mod_mailguard", "mg_config.c"), encoding="utf-8") as f:
        src = f.read()
    names = re.findall(r'\bAP_INIT_[A-Z0-9_]+\s*\(\s*"([^"]+)"', src)
    if not names:
        raise DocError("mod_mailguard/mg_config.c: no AP_INIT_* entries found")
    return names


def code_tap_keys(root=ROOT):
    """dbmail_tap's keys by list ('DEFAULT' for global_keys, 'jail' for
    jail_keys), read from the arrays in tap_config.c."""
    with open(os.path.join(root, "dbmail_tap", "tap_config.c"), encoding="utf-8") as f:
        src = f.read()
    keys = {}
    for array, where in (("global_keys", "DEFAULT"), ("jail_keys", "jail")):
        m = re.search(r"\b%s\s*\[\s*\]\s*=\s*\{(.*?)\}\s*;" % array, src, re.S)
        if not m:
            raise DocError("dbmail_tap/tap_config.c: array %s not found" % array)
        body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
        for k in re.findall(r'"([^"]*)"', body):
            keys[k] = where
    return keys


def differences(root=ROOT):
    """Every mismatch between the code and the data files, as sentences."""
    problems = []
    code = code_directives(root)
    docs = [e["name"] for e in load("mod_mailguard")]
    for name in code:
        if name not in docs:
            problems.append("directive %s is in mod_mailguard/mg_config.c but not in "
                            "build/docs/mod_mailguard.ini" % name)
    for name in docs:
        if name not in code:
            problems.append("directive %s is in build/docs/mod_mailguard.ini but not in "
                            "mod_mailguard/mg_config.c" % name)
    code_keys = code_tap_keys(root)
    doc_keys = {e["name"]: e["where"] for e in load("dbmail_tap")}
    for k, where in code_keys.items():
        if k not in doc_keys:
            problems.append("key %s is in dbmail_tap/tap_config.c but not in "
                            "build/docs/dbmail_tap.ini" % k)
        elif doc_keys[k] != where:
            problems.append("key %s: build/docs/dbmail_tap.ini says where = %s, "
                            "dbmail_tap/tap_config.c lists it as %s"
                            % (k, doc_keys[k], where))
    for k in doc_keys:
        if k not in code_keys:
            problems.append("key %s is in build/docs/dbmail_tap.ini but not in "
                            "dbmail_tap/tap_config.c" % k)
    return problems


def cmd_check(argv):
    problems = differences()
    for p in problems:
        print("gendocs: " + p, file=sys.stderr)
    return 1 if problems else 0


def main(argv):
    commands = {"readme": cmd_readme, "man": cmd_man, "check": cmd_check}
    if not argv or argv[0] not in commands:
        print("usage: gendocs.py readme [--check] | man OUTDIR | check", file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except (DocError, configparser.Error, OSError) as e:
        print("gendocs: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

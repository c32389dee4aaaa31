#!/usr/bin/python3
"""The layout rules of the tree, checked by `make lint`:

- calls between C files go one way: no loop of files calling each other
  (a function defined in one file and called in another is an edge);
- no source file over 700 lines, but the ban table (one structure);
- every C file is named in README.md's "Layout" section.

Exit status 1 with one line per problem."""
import glob
import os
import re
import sys

# MG_LINT_ROOT: another tree (the lint's own test points it at a copy)
ROOT = os.environ.get("MG_LINT_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), ".."))
DIRS = ("mod_mailguard", "mod_mailguard/core", "dbmail_tap")
MAX_LINES = 700
LONG_ALLOWED = {"mod_mailguard/core/mg_bantable.c"}


def sources(ext):
    return sorted(f for d in DIRS for f in glob.glob(os.path.join(ROOT, d, "*." + ext)))


def strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\\n])*"', '""', text)


def call_edges(files):
    text = {f: strip(open(f, encoding="utf-8").read()) for f in files}
    defined = {}
    for f, t in text.items():
        for m in re.finditer(r"^(?!static\b)[A-Za-z_][\w \*]*?\b(\w+)\s*\([^;{]*\)\s*\{", t,
                             re.M):
            defined.setdefault(m.group(1), f)
    edges = {f: set() for f in files}
    for f, t in text.items():
        called = set(re.findall(r"\b(\w+)\s*\(", t))
        for name in called:
            g = defined.get(name)
            if g is not None and g != f:
                edges[f].add(g)
    return edges


def loops(edges):
    """Strongly connected groups of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def readme_layout():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    m = re.search(r"^## Layout\n(.*?)^## ", text, re.S | re.M)
    return m.group(1) if m else ""


def main():
    problems = []
    cfiles = sources("c")
    for group in loops(call_edges(cfiles)):
        problems.append("call loop between files: " +
                        " ".join(os.path.relpath(f, ROOT) for f in group))
    for f in cfiles + sources("h"):
        rel = os.path.relpath(f, ROOT)
        n = sum(1 for _ in open(f, encoding="utf-8"))
        if n > MAX_LINES and rel not in LONG_ALLOWED:
            problems.append("%s: %d lines (more than %d)" % (rel, n, MAX_LINES))
    layout = readme_layout()
    if not layout:
        problems.append("README.md: no Layout section")
    for f in cfiles:
        name = os.path.basename(f)
        if not re.search(r"\b%s\b" % re.escape(name), layout):
            problems.append("README.md Layout: %s is not named" % os.path.relpath(f, ROOT))
    for p in problems:
        print("lint: " + p)
    print("lint: layout: %d C files, %s" % (len(cfiles), "%d problems" % len(problems)
                                              if problems else "no call loop, sizes and README ok"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""annotate_api.py: puts MOE_API before every function declaration of the
public headers (include/moe.h, include/moe_infer.h), in place.

For: the exported symbols. libmoe is compiled with -fvisibility=hidden, so a
function leaves the library only when its declaration carries MOE_API
(defined in moe.h). Re-run it after editing a header (a merge that took the
other side's header, a new function): it is idempotent, and `--check` exits 1,
naming them, when declarations lack MOE_API (tests/test_symbols.py runs it).
Not for: C parsing in general. It knows this project's header layout: a
top-level declaration starts in column 0 outside comments, braces and
preprocessor lines, and runs to the first ';'; a function declaration is one
with a '(' that is not a typedef.

    python3 scripts/annotate_api.py            # annotate include/moe*.h
    python3 scripts/annotate_api.py --check    # report only
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADERS = ["include/moe.h", "include/moe_infer.h"]
MARK = "MOE_API"


def strip_comments(line, in_comment):
    """The line without /* */ and // comments; returns (code, in_comment)."""
    out, i = [], 0
    while i < len(line):
        if in_comment:
            j = line.find("*/", i)
            if j < 0:
                return "".join(out), True
            i, in_comment = j + 2, False
        elif line.startswith("/*", i):
            in_comment, i = True, i + 2
        elif line.startswith("//", i):
            break
        else:
            out.append(line[i])
            i += 1
    return "".join(out), in_comment


def declarations(lines):
    """Yields (first line index, statement text) of each top-level function
    declaration."""
    depth, in_comment, start, stmt = 0, False, None, ""
    for n, raw in enumerate(lines):
        code, in_comment = strip_comments(raw, in_comment)
        if code.lstrip().startswith("#") or re.match(r'\s*extern\s+"C"', code) \
                or (code.strip() == "}" and depth == 0):  # the extern "C" close
            continue
        if start is None and depth == 0 and re.match(r"[A-Za-z_]", code):
            start, stmt = n, ""
        if start is not None:
            stmt += code + "\n"
        depth += code.count("{") - code.count("}")
        if start is not None and depth == 0 and ";" in code:
            s = stmt.strip()
            if "(" in s and not re.match(r"(typedef|struct|enum|union)\b", s):
                yield start, s
            start = None


def annotate(path, check):
    with open(path) as f:
        lines = f.read().split("\n")
    missing = []
    for n, stmt in declarations(lines):
        if re.match(MARK + r"\b", stmt):
            continue
        missing.append("%s:%d: %s" % (os.path.relpath(path, ROOT), n + 1, stmt.split("\n")[0]))
        lines[n] = MARK + " " + lines[n]
        for k in range(n + 1, n + stmt.count("\n") + 1):  # keep continuations aligned
            if lines[k].startswith(" "):
                lines[k] = " " * (len(MARK) + 1) + lines[k]
    if missing and not check:
        with open(path, "w") as f:
            f.write("\n".join(lines))
    return missing


def main():
    check = "--check" in sys.argv[1:]
    missing = []
    for h in HEADERS:
        missing += annotate(os.path.join(ROOT, h), check)
    for m in missing:
        print(("without %s: " % MARK if check else "annotated: ") + m)
    return 1 if check and missing else 0


if __name__ == "__main__":
    sys.exit(main())

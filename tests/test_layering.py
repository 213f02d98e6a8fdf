"""test_layering.py: the folders of src/ depend only on those before them.

The order (docs/ARCHITECTURE.md): core, kernels, quant, io, text, layer,
model, corpus, train, infer, tools (then dist, serve when they exist). A file
in folder F may include a header of folder G only when G comes at or before
F; every include of src/ names its folder ("io/gguf.h"), the public headers
(moe.h, moe_infer.h) excepted; cli/ includes only the public headers and its
own cli.h. Prints "ok" per folder and per rule, "FAIL" with the file, line
and include otherwise.
"""
import os
import re
import sys

ORDER = ["core", "kernels", "quant", "io", "text", "layer", "model", "corpus",
         "train", "infer", "tools", "report", "dist", "serve"]
PUBLIC = {"moe.h", "moe_infer.h"}
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
INC = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            m = INC.match(line)
            if m:
                yield n, m.group(1)


def check_src(bad):
    src = os.path.join(ROOT, "src")
    folders = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    for d in folders:
        if d not in ORDER:
            bad.append(f"src/{d}/: a folder outside the dependency order {ORDER}")
            continue
        rank = ORDER.index(d)
        n_files = 0
        for name in sorted(os.listdir(os.path.join(src, d))):
            if not name.endswith((".c", ".h")):
                continue
            n_files += 1
            path = os.path.join(src, d, name)
            for line, inc in includes(path):
                if inc in PUBLIC:
                    continue
                if "/" not in inc:
                    bad.append(f"src/{d}/{name}:{line}: include \"{inc}\" does not name its folder")
                    continue
                g = inc.split("/")[0]
                if g not in ORDER:
                    bad.append(f"src/{d}/{name}:{line}: include \"{inc}\": unknown folder {g}")
                elif ORDER.index(g) > rank:
                    bad.append(f"src/{d}/{name}:{line}: include \"{inc}\": {d} comes before {g} "
                               f"in the dependency order")
                elif not os.path.exists(os.path.join(src, inc)):
                    bad.append(f"src/{d}/{name}:{line}: include \"{inc}\": no such file")
        yield d, n_files


def check_cli(bad):
    cli = os.path.join(ROOT, "cli")
    for name in sorted(os.listdir(cli)):
        if name.endswith((".c", ".h")):
            for line, inc in includes(os.path.join(cli, name)):
                if inc not in PUBLIC and inc != "cli.h":
                    bad.append(f"cli/{name}:{line}: include \"{inc}\": the command uses only the public API")


def self_test():
    """The checker must catch a backward include: run it on a fake tree."""
    import tempfile
    global ROOT
    saved = ROOT
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "src", "core"))
        os.makedirs(os.path.join(tmp, "src", "infer"))
        os.makedirs(os.path.join(tmp, "cli"))
        with open(os.path.join(tmp, "src", "infer", "x.h"), "w") as f:
            f.write("\n")
        with open(os.path.join(tmp, "src", "core", "a.c"), "w") as f:
            f.write('#include "moe.h"\n#include "infer/x.h"\n')
        ROOT = tmp
        bad = []
        list(check_src(bad))
        check_cli(bad)
        ROOT = saved
    return len(bad) == 1 and "core comes before infer" in bad[0]


def main():
    failed = 0
    if self_test():
        print("ok layering/self_test (a core file including an infer header is caught)")
    else:
        print("FAIL layering/self_test: a backward include was not caught")
        failed += 1
    bad = []
    for d, n in check_src(bad):
        mine = [b for b in bad if b.startswith(f"src/{d}/")]
        if mine:
            for b in mine:
                print(f"FAIL layering/src/{d}: {b}")
            failed += 1
        else:
            print(f"ok layering/src/{d} ({n} files)")
    cli_bad = []
    check_cli(cli_bad)
    for b in cli_bad:
        print(f"FAIL layering/cli: {b}")
    if not cli_bad:
        print("ok layering/cli (public headers only)")
    failed += bool(cli_bad)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""test_symbols.py: libmoe exports its public API and nothing else.

A program that links libmoe next to another library (llama.cpp's ggml also
defines gguf_find_tensor, gguf_type_name ...) must not see libmoe's internal
names. Checks, on $B (the folder of $MOE_LIB, default build/):
- libmoe.so (`nm -D --defined-only`) and libmoe.a (`nm -g --defined-only`)
  define no global symbol outside moe_ / MOE_;
- every function declared in include/moe.h and include/moe_infer.h carries
  MOE_API (scripts/annotate_api.py --check) and is exported by both;
- the scan can fail: a small object built here with one non-prefixed global
  is caught, as compiled, after the archive's treatment and in a shared
  library, while its static and hidden functions are not (but for the
  hidden one in the plain object, which is why libmoe.a gets that treatment).
Prints "ok NAME" / "FAIL NAME: why" per check.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import annotate_api  # noqa: E402

LIB = os.environ.get("MOE_LIB") or os.path.join(ROOT, "build", "libmoe.so")
B = os.path.dirname(os.path.abspath(LIB))
PREFIXES = ("moe_", "MOE_")
failures = 0


def check(name, good, why=""):
    global failures
    if good:
        print("ok %s" % name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def run(cmd):
    """stdout of cmd; the tools run without the sanitizer's LD_PRELOAD."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError("%s: status %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r.stdout


def exported(path):
    """{name: nm type} of the global symbols path defines: the dynamic table of
    a shared library, the symbol tables of an archive's or object's members."""
    dynamic = ".so" in os.path.basename(path)
    out = run(["nm", "-D" if dynamic else "-g", "--defined-only", path])
    syms = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and not line.endswith(":"):  # "archive member:" headers
            syms[f[-1]] = f[-2]
    return syms


def foreign(syms):
    """The names outside the public prefixes."""
    return sorted(n for n in syms if not n.startswith(PREFIXES))


def public_functions():
    """The names of the functions declared in the public headers."""
    names = []
    for h in annotate_api.HEADERS:
        with open(os.path.join(ROOT, h)) as f:
            lines = f.read().split("\n")
        for _, stmt in annotate_api.declarations(lines):
            names.append(re.search(r"(\w+)\s*\(", stmt).group(1))
    return names


def scanner_catches(cc):
    """The scan run on a small object (one clean global, one leaking, one
    static, one hidden): as compiled, after the archive's treatment (ld -r,
    objcopy --localize-hidden, as the Makefile makes libmoe.a) and linked
    into a shared library."""
    src = ("__attribute__((visibility(\"default\"))) int moe_fine(void) { return 0; }\n"
           "int leaky_helper(void) { return 1; }\n"
           "static int kept_static(void) { return 2; }\n"
           "__attribute__((visibility(\"hidden\"))) int kept_hidden(void) { return kept_static(); }\n")
    with tempfile.TemporaryDirectory() as d:
        c, o, r, so = (os.path.join(d, n) for n in ("leak.c", "leak.o", "leak_r.o", "libleak.so"))
        with open(c, "w") as f:
            f.write(src)
        run([cc, "-c", "-fPIC", "-o", o, c])
        run(["ld", "-r", "-o", r, o])
        run(["objcopy", "--localize-hidden", r])
        run([cc, "-shared", "-o", so, o])
        return foreign(exported(o)), foreign(exported(r)), foreign(exported(so))


def main():
    so, a = os.path.join(B, "libmoe.so"), os.path.join(B, "libmoe.a")
    for p in (so, a):
        if not os.path.exists(p):
            check("symbols/exists", False, "%s is missing (make first)" % p)
            return 1
    cc = os.environ.get("CC", "cc")

    raw, local, shared = scanner_catches(cc)
    check("symbols/scan_catches_object", raw == ["kept_hidden", "leaky_helper"],
          "an object with leaky_helper (global), kept_hidden (hidden) and kept_static gave %s" % raw)
    check("symbols/scan_catches_localized", local == ["leaky_helper"],
          "the same after ld -r and objcopy --localize-hidden gave %s" % local)
    check("symbols/scan_catches_shared", shared == ["leaky_helper"],
          "a shared library of the same gave %s" % shared)

    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "annotate_api.py"), "--check"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check("symbols/headers_annotated", r.returncode == 0,
          "run scripts/annotate_api.py: " + " | ".join(r.stdout.splitlines()[:5]))

    api = public_functions()
    for kind, path in (("shared", so), ("static", a)):
        syms = exported(path)
        bad = foreign(syms)
        check("symbols/%s_only_public" % kind, not bad,
              "%s exports %d names outside moe_/MOE_ (objects from before -fvisibility=hidden? make clean): %s"
              % (path, len(bad), " ".join(bad[:12])))
        clash = [n for n in ("gguf_find_tensor", "gguf_type_name") if n in syms]
        check("symbols/%s_no_ggml_clash" % kind, not clash, "%s exports %s" % (path, clash))
        missing = [n for n in api if syms.get(n) not in ("T", "t", "W")]
        check("symbols/%s_exports_api" % kind, not missing,
              "%d of %d public functions not exported by %s: %s"
              % (len(missing), len(api), path, " ".join(missing[:12])))
        print("# %s: %d global symbols, %d public functions declared" % (path, len(syms), len(api)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

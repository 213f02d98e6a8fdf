#!/usr/bin/env python3
"""test_install.py: libmoe as another program sees it after `make install`.

- `make install PREFIX=<tmp>` lays out the headers, libmoe.a, libmoe.so.X.Y.Z
  (soname libmoe.so.X) with its two links, moe.pc and the moe command;
  `DESTDIR=<tmp2> PREFIX=/opt/moe` puts the same under <tmp2>/opt/moe and
  moe.pc still names /opt/moe; `make uninstall` removes it all;
- pkg-config (PKG_CONFIG_PATH at the temporary prefix) gives moe.h's version;
- README.md's C example, taken verbatim from its ```c block, is built with
  each `cc app.c ...` line of README's ```sh block (dynamic and static), then
  run on a tiny configuration (2 steps of training on a few kB of text); the
  dynamic one must need libmoe.so.X, the static one must not;
- a C++ file including both public headers builds with g++ -Wall -Wextra
  -Werror -pedantic and links and runs against the installed library;
- moe_version() and the headers' MOE_VERSION_* agree.
Under the sanitizer build ($B's libmoe.so needs libasan) the programs get the
same -fsanitize flags; the fully static link is skipped (ASan has no -static).
Prints "ok NAME" / "FAIL NAME: why" / "SKIPPED NAME: why".
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LIB = os.environ.get("MOE_LIB") or os.path.join(ROOT, "build", "libmoe.so")
B = os.path.dirname(os.path.abspath(LIB))
SAN = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
failures = 0


def check(name, good, why=""):
    global failures
    if good:
        print("ok install/%s" % name)
    else:
        failures += 1
        print("FAIL install/%s: %s" % (name, why))
    sys.stdout.flush()


def skipped(name, why):
    print("SKIPPED install/%s: %s" % (name, why))
    sys.stdout.flush()


def clean_env(**extra):
    """The environment for tools and the programs built here: without the
    sanitizer's LD_PRELOAD (an ASan program brings its own runtime)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    env.update(extra)
    return env


def sh(cmd, env=None, cwd=None, timeout=600):
    """(status, stdout + stderr) of a shell command."""
    r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, env=env or clean_env(), cwd=cwd, timeout=timeout)
    return r.returncode, r.stdout


def tail(text, n=8):
    return " | ".join(text.strip().splitlines()[-n:])


def header_version():
    with open(os.path.join(ROOT, "include", "moe.h")) as f:
        h = f.read()
    parts = [re.search(r"#define MOE_VERSION_%s (\d+)" % p, h).group(1)
             for p in ("MAJOR", "MINOR", "PATCH")]
    string = re.search(r'#define MOE_VERSION_STRING "([^"]*)"', h).group(1)
    return parts, string


def readme_blocks():
    """README's C example (the first ```c block) and its link commands (the
    lines of ```sh blocks that start with "cc app.c")."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    c = [body for lang, body in blocks if lang == "c"]
    cmds = [line.split("#")[0].strip() for lang, body in blocks if lang == "sh"
            for line in body.splitlines() if line.startswith("cc app.c")]
    return (c[0] if c else None), cmds


def sanitized():
    rc, out = sh("nm -D --undefined-only %s" % shlex.quote(LIB))
    return rc == 0 and "__asan_init" in out


def needed(path):
    rc, out = sh("readelf -d %s" % shlex.quote(path))
    return re.findall(r"\(NEEDED\).*\[(.*)\]", out)


def make(args):
    """make in the source tree on $B (the flags of the build that runs the
    tests come with MAKEFLAGS, so nothing is rebuilt differently)."""
    b = os.path.relpath(B, ROOT) if B.startswith(ROOT + os.sep) else B
    return sh("make -s -C %s B=%s %s" % (shlex.quote(ROOT), shlex.quote(b), args))


CXX_SRC = r"""// Both public headers as C++ (extern "C", no C-only constructs).
#include <cstdio>
#include <cstring>
#include "moe.h"
#include "moe_infer.h"

int main() {
    moe_layer_config c;
    moe_layer_config_default(&c, 16, 32, 4, 2);
    moe_error err;
    err.msg[0] = 0;
    if (moe_layer_config_check(&c, &err) != MOE_OK) { std::printf("check: %s\n", err.msg); return 1; }
    moe_infer_options o;
    moe_infer_options_default(&o);
    if (std::strcmp(moe_version(), MOE_VERSION_STRING) != 0) return 2;
    if (moe_version_number() != MOE_VERSION_NUMBER) return 3;
    std::printf("c++ ok %s %s\n", moe_version(), moe_status_str(MOE_OK));
    return 0;
}
"""


def run_example(name, exe, data, tmp, env):
    out_dir = os.path.join(tmp, "run_" + name)
    rc, out = sh("%s %s %s 2" % (exe, data, out_dir), env=env, timeout=900)
    good = rc == 0 and "step 2 loss" in out and os.path.exists(os.path.join(out_dir, "model.gguf"))
    check("readme_run_" + name, good, "status %d: %s" % (rc, tail(out)))


def main():
    if not os.path.exists(LIB):
        check("exists", False, "%s is missing (make first)" % LIB)
        return 1
    san = sanitized()
    extra = SAN if san else []
    (major, minor, patch), vstring = header_version()
    ver = "%s.%s.%s" % (major, minor, patch)
    check("version_macros", vstring == ver, "MOE_VERSION_STRING %s, parts %s" % (vstring, ver))
    tmp = tempfile.mkdtemp(prefix="moe-install-")
    try:
        # ---------------------------------------------------------- layout
        prefix = os.path.join(tmp, "usr")
        rc, out = make("install PREFIX=%s" % shlex.quote(prefix))
        check("make_install", rc == 0, "status %d: %s" % (rc, tail(out)))
        if rc != 0:
            return 1
        lib = os.path.join(prefix, "lib")
        want = ["include/moe.h", "include/moe_infer.h", "lib/libmoe.a", "lib/libmoe.so.%s" % ver,
                "lib/pkgconfig/moe.pc", "bin/moe"]
        missing = [w for w in want if not os.path.isfile(os.path.join(prefix, w))]
        check("layout", not missing, "missing under %s: %s" % (prefix, missing))
        links = {"libmoe.so": "libmoe.so.%s" % major, "libmoe.so.%s" % major: "libmoe.so.%s" % ver}
        bad = ["%s -> %s" % (k, os.readlink(os.path.join(lib, k)) if os.path.islink(os.path.join(lib, k)) else None)
               for k, v in links.items()
               if not (os.path.islink(os.path.join(lib, k)) and os.readlink(os.path.join(lib, k)) == v)]
        check("links", not bad, "expected %s, got %s" % (links, bad))
        rc, out = sh("readelf -d %s" % shlex.quote(os.path.join(lib, "libmoe.so.%s" % ver)))
        check("soname", "Library soname: [libmoe.so.%s]" % major in out,
              "readelf -d: %s" % " | ".join(l for l in out.splitlines() if "SONAME" in l))

        dest = os.path.join(tmp, "dest")
        rc, out = make("install DESTDIR=%s PREFIX=/opt/moe" % shlex.quote(dest))
        pc = os.path.join(dest, "opt/moe/lib/pkgconfig/moe.pc")
        pc_text = open(pc).read() if os.path.exists(pc) else ""
        check("destdir", rc == 0 and "prefix=/opt/moe" in pc_text
              and os.path.isfile(os.path.join(dest, "opt/moe/include/moe.h"))
              and os.path.islink(os.path.join(dest, "opt/moe/lib/libmoe.so")),
              "status %d: %s; moe.pc: %s" % (rc, tail(out), pc_text.replace("\n", " | ")))
        rc, out = make("uninstall DESTDIR=%s PREFIX=/opt/moe" % shlex.quote(dest))
        left = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs]
        check("uninstall", rc == 0 and not left, "status %d, left: %s %s" % (rc, left[:5], tail(out)))

        # ------------------------------------------------------ pkg-config
        if not shutil.which("pkg-config"):
            check("pkg_config", False, "pkg-config is not installed (bash scripts/deps.sh)")
            return 1
        env = clean_env(PKG_CONFIG_PATH=os.path.join(lib, "pkgconfig"))
        rc, out = sh("pkg-config --modversion moe", env=env)
        check("pkg_config_version", rc == 0 and out.strip() == ver, "status %d: %r" % (rc, out))
        rc, out = sh("pkg-config --static --libs moe", env=env)
        check("pkg_config_static", rc == 0 and "-lmoe" in out and "-lm" in out and "-fopenmp" in out,
              "pkg-config --static --libs moe: %r" % out)

        # ----------------------------------------------- README's example
        src, cmds = readme_blocks()
        work = os.path.join(tmp, "app")
        os.makedirs(work)
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        with open(os.path.join(data, "text.txt"), "w") as f:
            for doc in ("README.md", "docs/ARCHITECTURE.md", "docs/TRAINING.md", "docs/LAYER.md"):
                p = os.path.join(ROOT, doc)
                if os.path.exists(p):
                    f.write(open(p, encoding="utf-8", errors="replace").read())
        check("readme_example_found", src is not None and "int main" in src and len(cmds) >= 2,
              "README.md needs a complete program in a ```c block and the dynamic and static "
              "`cc app.c ...` lines in a ```sh block (found %d)" % len(cmds))
        if src is None:
            return 1
        with open(os.path.join(work, "app.c"), "w") as f:
            f.write(src)
        run_env = clean_env(LD_LIBRARY_PATH=lib, PKG_CONFIG_PATH=env["PKG_CONFIG_PATH"],
                            MOE_THREADS=os.environ.get("MOE_THREADS", "2"))
        for cmd in cmds:
            static = " -static " in " %s " % cmd
            name = "static" if static else "dynamic"
            if static and san:
                skipped("readme_" + name, "the sanitizer build: ASan cannot link -static")
                continue
            exe = "./app_" + name
            rc, out = sh(cmd.replace("-o app", "-o " + exe) + " " + " ".join(extra), env=env, cwd=work)
            check("readme_build_" + name, rc == 0, "`%s`: status %d: %s" % (cmd, rc, tail(out)))
            if rc != 0:
                continue
            deps = needed(os.path.join(work, exe))
            dyn = "libmoe.so.%s" % major in deps
            check("readme_link_" + name, dyn != static, "NEEDED %s" % deps)
            run_example(name, os.path.join(work, exe), data, tmp, dict(run_env))

        # ------------------------------------------------------------ C++
        if not shutil.which("g++"):
            check("cxx_headers", False, "g++ is not installed")
        else:
            with open(os.path.join(work, "api.cpp"), "w") as f:
                f.write(CXX_SRC)
            cmd = ("g++ -std=c++11 -Wall -Wextra -Werror -pedantic api.cpp -o api_cxx "
                   "$(pkg-config --cflags --libs moe) " + " ".join(extra))
            rc, out = sh(cmd, env=env, cwd=work)
            check("cxx_build", rc == 0, "`%s`: status %d: %s" % (cmd, rc, tail(out)))
            if rc == 0:
                rc, out = sh("./api_cxx", env=run_env, cwd=work)
                check("cxx_run", rc == 0 and ("c++ ok %s ok" % ver) in out,
                      "status %d: %s" % (rc, tail(out)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

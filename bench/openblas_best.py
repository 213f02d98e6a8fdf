"""openblas_best.py: the fastest OpenBLAS core type for this CPU, for the
PyTorch peer of the benchmarks (bench/compare_train.sh).

OpenBLAS 0.3.21 (Debian 12) picks its kernels from OPENBLAS_CORETYPE or, when
it is unset, from its own CPU detection, which misjudges some Xeons here
("Prescott": a fifth of the speed). This script times torch.mm (OpenBLAS
sgemm, as the peer uses it) once per candidate core type, each in a fresh
process with OPENBLAS_CORETYPE set (and OPENBLAS_L2_SIZE unset,
OMP_WAIT_POLICY=PASSIVE), reads back the core OpenBLAS says it runs
(openblas_get_corename), and prints one line per candidate and, last,
"best CORETYPE GFLOPS" (CORETYPE "-" when leaving it unset was fastest).

Usage: /usr/bin/python3 bench/openblas_best.py [threads (2)]
Not for: tests or CI (it changes nothing; a benchmark script calls it).
"""
import os
import subprocess
import sys

CANDIDATES = ["", "SAPPHIRERAPIDS", "COOPERLAKE", "SKYLAKEX", "HASWELL", "ZEN", "SANDYBRIDGE"]

PROBE = r'''
import ctypes, ctypes.util, sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
name = "?"
for lib in ("libblas.so.3", "libopenblas.so.0"):
    try:
        f = ctypes.CDLL(lib).openblas_get_corename
        f.restype = ctypes.c_char_p
        name = f().decode()
        break
    except (OSError, AttributeError):
        pass
n = 1024
a = torch.randn(n, n); b = torch.randn(n, n)
for _ in range(3): torch.mm(a, b)
best = 1e9
for _ in range(5):
    t = time.perf_counter()
    for _ in range(4): torch.mm(a, b)
    best = min(best, (time.perf_counter() - t) / 4)
print(name, 2 * n ** 3 / best / 1e9)
'''


def main():
    threads = sys.argv[1] if len(sys.argv) > 1 else "2"
    results = []
    for c in CANDIDATES:
        env = dict(os.environ)
        env.pop("OPENBLAS_L2_SIZE", None)
        env.pop("OPENBLAS_CORETYPE", None)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
        if c:
            env["OPENBLAS_CORETYPE"] = c
        try:
            out = subprocess.run([sys.executable, "-c", PROBE, threads], env=env, capture_output=True,
                                 text=True, timeout=120)
        except subprocess.TimeoutExpired:
            print(f"{c or '(unset)':16s} timed out")
            continue
        if out.returncode != 0 or not out.stdout.strip():
            print(f"{c or '(unset)':16s} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        core, gf = out.stdout.split()
        gf = float(gf)
        print(f"{c or '(unset)':16s} OpenBLAS runs {core:14s} sgemm 1024^3 {gf:7.1f} GFLOP/s ({threads} threads)")
        results.append((gf, c or "-", core))
    if not results:
        print("best - 0")
        return 1
    gf, c, core = max(results)
    print(f"best {c} {gf:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

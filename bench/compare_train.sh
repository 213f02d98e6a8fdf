#!/usr/bin/env bash
# compare_train.sh: `moe bench train --big` against its PyTorch CPU peer
# (bench/train_torch.py: the same model, batch and AdamW) at the same thread
# count, one after the other, and the ratios of the performance target:
# moe tokens/s / torch tokens/s, and each side's model GFLOP/s over the dense
# GEMM it timed in the same run (ours; OpenBLAS sgemm through torch.mm).
#
# Not for: correctness (tests/test_model_torch.py) or asserting a target:
# it prints figures only (exit 1 only when a side fails or the two models'
# parameter / FLOP counts differ).
#
# Usage: bench/compare_train.sh [threads (2)] [steps (3)]
# Assumes `make` has built build/moe (or set MOE_BIN=/path/to/moe). PyTorch
# runs as /usr/bin/python3 (Debian's python3-torch, OpenBLAS as libblas.so.3)
# with OPENBLAS_L2_SIZE unset, OMP_WAIT_POLICY=PASSIVE and OPENBLAS_CORETYPE
# set to the fastest core type for this CPU (bench/openblas_best.py tries the
# candidates and prints them; OpenBLAS 0.3.21's own detection picked
# "Prescott", a fifth of the speed, on one Xeon), for its command only; moe
# runs in the caller's environment. When the peer's sgemm is below half of
# our GEMM in the same run, the peer is not at its best: the script prints
# the figures but refuses to print a ratio (exit 3).
# Note: `moe bench train --big` times at most 3 steps whatever --steps says.
set -euo pipefail

T=${1:-2}
S=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MOE=${MOE_BIN:-$ROOT/build/moe}
PY=/usr/bin/python3

case "$T$S" in *[!0-9]*|"") echo "usage: $0 [threads] [steps] (positive integers)" >&2; exit 2 ;; esac
if [ ! -x "$MOE" ]; then
    echo "compare_train.sh: $MOE is missing: run 'make' first (or set MOE_BIN to a built moe)" >&2
    exit 1
fi
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "compare_train.sh: $PY cannot import torch: install python3-torch ('make deps')" >&2
    exit 1
fi

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores"
echo "== $PY bench/openblas_best.py $T (the peer's OpenBLAS core type)"
best_out=$("$PY" "$ROOT/bench/openblas_best.py" "$T") || { echo "$best_out"; echo "compare_train.sh: bench/openblas_best.py failed" >&2; exit 1; }
echo "$best_out"
CORE=$(printf '%s\n' "$best_out" | sed -n 's/^best \([^ ]*\) .*/\1/p')
if [ -z "$CORE" ] || [ "$CORE" = "-" ]; then CORESET=(-u OPENBLAS_CORETYPE); else CORESET=(OPENBLAS_CORETYPE="$CORE"); fi
echo "== $MOE --threads $T bench train --big --steps $S"
moe_out=$("$MOE" --threads "$T" bench train --big --steps "$S") || { echo "$moe_out"; echo "compare_train.sh: moe failed" >&2; exit 1; }
echo "$moe_out"
echo "== env -u OPENBLAS_L2_SIZE ${CORESET[*]} OMP_WAIT_POLICY=PASSIVE $PY bench/train_torch.py --big --threads $T --steps $S"
torch_out=$(env -u OPENBLAS_L2_SIZE "${CORESET[@]}" OMP_WAIT_POLICY=PASSIVE \
    "$PY" "$ROOT/bench/train_torch.py" --big --threads "$T" --steps "$S") || {
    echo "$torch_out"; echo "compare_train.sh: bench/train_torch.py failed" >&2; exit 1; }
echo "$torch_out"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# the number just before a fixed text in the line that holds it
num_before() { # text, pattern, suffix
    printf '%s\n' "$1" | grep -- "$2" | head -1 | sed -n "s|.*[^0-9.]\([0-9][0-9.]*\) $3.*|\1|p"
}
counts() { printf '%s\n' "$1" | grep -o '[0-9.]*M params ([0-9.]*M active), [0-9]* MFLOP/token' | head -1; }

moe_tps=$(num_before "$moe_out" "tokens/s" "tokens/s")
moe_gf=$(num_before "$moe_out" "GFLOP/s model" "GFLOP/s model")
moe_gemm=$(printf '%s\n' "$moe_out" | sed -n 's/.*in the same run: \([0-9.]*\) GFLOP\/s.*/\1/p' | head -1)
t_tps=$(num_before "$torch_out" "^torch big threads" "tokens/s")
t_gf=$(num_before "$torch_out" "^torch big threads" "GFLOP/s model")
t_gemm=$(printf '%s\n' "$torch_out" | grep '^torch OpenBLAS sgemm.*best of' | sed -n 's/.* \([0-9.]*\) GFLOP\/s.*/\1/p')
for v in moe_tps moe_gf moe_gemm t_tps t_gf t_gemm; do
    if [ -z "${!v}" ]; then echo "compare_train.sh: could not read $v from the output above" >&2; exit 1; fi
done
mc=$(counts "$moe_out"); tc=$(counts "$torch_out")
if [ "$mc" != "$tc" ]; then
    echo "compare_train.sh: the models differ: moe '$mc', torch '$tc'" >&2
    exit 1
fi

awk -v T="$T" -v mt="$moe_tps" -v mg="$moe_gf" -v mm="$moe_gemm" -v tt="$t_tps" -v tg="$t_gf" -v ts="$t_gemm" \
    -v c="$mc" 'BEGIN {
    printf "== summary, threads=%s (%s)\n", T, c
    printf "moe   %8.0f tokens/s  %7.1f GFLOP/s model = %.2f of our GEMM (%.1f) = %.2f of OpenBLAS sgemm (%.1f)\n",
           mt, mg, mg / mm, mm, mg / ts, ts
    printf "torch %8.0f tokens/s  %7.1f GFLOP/s model = %.2f of OpenBLAS sgemm (%.1f) = %.2f of our GEMM (%.1f)\n",
           tt, tg, tg / ts, ts, tg / mm, mm
    if (ts < 0.5 * mm) {
        printf "no ratio: the peer'"'"'s sgemm (%.1f GFLOP/s) is below half of our GEMM (%.1f): it is not at its best (OpenBLAS core type?)\n", ts, mm
        exit 3
    }
    printf "moe / torch tokens/s: %.2f (target >= 2)\n", mt / tt
}'

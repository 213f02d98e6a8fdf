#!/usr/bin/env bash
# Runs every test: the C test binaries in $B/tests and the PyTorch reference
# scripts tests/test_*.py (with /usr/bin/python3, against $B/libmoe.so).
# Each prints "ok NAME", "FAIL NAME: why" or "SKIPPED NAME: why" per check;
# this script counts them and closes with "N passed, N failed[, N skipped]".
set -u
B=${B:-build}
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
crashed=0
case "$B" in /*) BD=$B ;; *) BD=$PWD/$B ;; esac
export MOE_LIB="$BD/libmoe.so"
export MOE_BIN="$BD/moe"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp}

run_one() { # name, command...
  local name=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  printf '%s\n' "$out" | tee -a "$log" | grep -E '^(FAIL|SKIPPED)' || true
  if [ $rc -ne 0 ] && ! printf '%s\n' "$out" | grep -q '^FAIL'; then
    echo "FAIL $name: exited with status $rc" | tee -a "$log"
    printf '%s\n' "$out" | tail -20
  fi
}

for t in "$B"/tests/test_*; do
  [ -x "$t" ] || continue
  echo "== $(basename "$t")"
  run_one "$(basename "$t")" "$t"
done

# the inputs fuzzing ever found, replayed through their harness (tests/fuzz)
for t in "$B"/tests/fuzz/replay_*; do
  [ -x "$t" ] || continue
  n=$(basename "$t"); n=${n#replay_}
  echo "== fuzz_$n (regressions)"
  run_one "fuzz_replay/$n" "$t" "$n" "tests/fuzz/regressions/$n"
done

PY=/usr/bin/python3
for t in tests/test_*.py; do
  [ -f "$t" ] || continue
  echo "== $(basename "$t")"
  if [ -n "${SANITIZE_PRELOAD:-}" ]; then
    run_one "$(basename "$t")" env LD_PRELOAD="$SANITIZE_PRELOAD" ASAN_OPTIONS=detect_leaks=0 "$PY" "$t"
  else
    run_one "$(basename "$t")" "$PY" "$t"
  fi
done

pass=$(grep -c '^ok ' "$log")
fail=$(grep -c '^FAIL' "$log")
skip=$(grep -c '^SKIPPED' "$log")
if [ "$skip" -gt 0 ]; then
  echo "$pass passed, $fail failed, $skip skipped"
else
  echo "$pass passed, $fail failed"
fi
[ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]

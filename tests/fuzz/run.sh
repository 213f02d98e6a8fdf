#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS [HARNESS...]: runs each libFuzzer harness built by
# `make fuzz` (build/fuzz/fuzz_NAME) for SECONDS, one after the other, on its
# growing corpus (build/fuzz/corpus/NAME), its seeds (build/fuzz/seeds/NAME)
# and the crash inputs kept as regressions (tests/fuzz/regressions/NAME),
# then prints one line per harness: executions, coverage (cov: edges, ft:
# features) and the verdict. A crash, a leak, an UBSan report (fatal: the
# build has -fno-sanitize-recover), a timeout (-timeout=25 s per input) or an
# input using more than 2 GB is a finding: its input is kept in
# build/fuzz/findings/NAME/ and the script exits non-zero. docs/TESTING.md
# says how a finding becomes a regression test.
set -u
cd "$(dirname "$0")/../.."
T=${1:-30}; shift || true
FB=${FUZZ_B:-build/fuzz}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do n=$(basename "$f" .c); names+=("${n#fuzz_}"); done
fi
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export OMP_NUM_THREADS=1
# the harnesses write their inputs as files: into memory where possible
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then export TMPDIR=/dev/shm; fi
bad=0
summary=()
for n in "${names[@]}"; do
  bin=$FB/fuzz_$n
  [ -x "$bin" ] || { echo "FAIL fuzz/$n: $bin is missing (make fuzz)"; bad=1; continue; }
  mkdir -p "$FB/corpus/$n" "$FB/findings/$n"
  dirs=("$FB/corpus/$n")
  [ -d "$FB/seeds/$n" ] && dirs+=("$FB/seeds/$n")
  [ -d "tests/fuzz/regressions/$n" ] && dirs+=("tests/fuzz/regressions/$n")
  log=$FB/findings/$n.log
  echo "== fuzz_$n: ${T} s"
  "$bin" -max_total_time="$T" -timeout=25 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$FB/findings/$n/" ${FUZZ_ARGS:-} "${dirs[@]}" >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(printf '%s' "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
  ft=$(printf '%s' "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
  corp=$(printf '%s' "$last" | grep -o 'corp: [0-9]*' | grep -o '[0-9]*')
  if [ $rc -ne 0 ]; then
    bad=1
    echo "FAIL fuzz/$n: exit $rc; the input is in $FB/findings/$n/, the log in $log:"
    grep -E 'ERROR|runtime error|SUMMARY|Test unit written' "$log" | head -8
    summary+=("$(printf '%-12s %12s %8s %8s %6s  FINDING' "$n" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
  else
    echo "ok fuzz/$n"
    summary+=("$(printf '%-12s %12s %8s %8s %6s  ok' "$n" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
  fi
done
printf '%-12s %12s %8s %8s %6s  %s\n' harness executions cov ft corpus verdict
printf '%s\n' "${summary[@]}"
exit $bad

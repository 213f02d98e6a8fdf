#!/usr/bin/env bash
# bias_rate.sh: the aux-loss-free balancing rate (--bias-rate) on the demo's
# configuration: max-violation of the training batch's expert loads (the
# worst of the 4 MoE layers) every 25 steps, for each candidate rate, and the
# validation loss at the end. docs/TRAINING.md quotes its output.
#   bash bench/bias_rate.sh [STEPS] [RATES...]    (defaults: 400; 0.001 0.003 0.01 0.03)
# Runs two rates at a time, one thread each. Needs build/moe.
set -euo pipefail
MOE=${MOE:-build/moe}
STEPS=${1:-400}
shift || true
RATES=${*:-0.001 0.003 0.01 0.03}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
run() {
  "$MOE" train --quiet --out "$OUT/r$1" --router sigmoid --bias-rate "$1" --steps "$STEPS" \
    --eval-every 25 --eval-batches 8 --threads 1 >/dev/null
}
set -- $RATES
while [ $# -gt 0 ]; do
  run "$1" & p1=$!
  if [ $# -gt 1 ]; then run "$2" & p2=$!; wait $p2; shift; fi
  wait $p1
  shift
done
/usr/bin/python3 - "$OUT" $RATES <<'PY'
import json, sys
out, rates = sys.argv[1], sys.argv[2:]
print("max-violation (worst layer) of the training batch at step; last: mean of the last 4 checks; val loss at the end")
hdr = None
for r in rates:
    viol, val = {}, None
    for line in open(f"{out}/r{r}/metrics.jsonl"):
        j = json.loads(line)
        if "routing" in j:
            viol[j["step"]] = max(l["max_violation"] for l in j["routing"]["layers"])
        if "val_loss" in j:
            val = j["val_loss"]
    steps = sorted(viol)
    show = [s for s in steps if s in (25, 50, 100, 150, 200, 250, 300, 400, 500, 600)]
    if hdr is None:
        hdr = "rate     " + "".join(f"{s:>7}" for s in show) + "   last  val_loss"
        print(hdr)
    last = sum(viol[s] for s in steps[-4:]) / len(steps[-4:])
    print(f"{r:<8} " + "".join(f"{viol[s]:7.2f}" for s in show) + f"  {last:5.2f}  {val:.4f}")
PY

#!/usr/bin/env bash
# bias_rate.sh: the aux-loss-free balancing rate (--bias-rate) on the demo's
# configuration: max-violation of the training batch's expert loads (the
# worst of the 4 MoE layers) every 20 steps, for each candidate rate: the
# step from which it stays below 1 (no expert above twice the mean load), its
# mean over steps 20-100, 120-200 and 220-400, and the validation loss at the
# end. docs/TRAINING.md quotes its output.
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
    --eval-every 20 --eval-batches 8 --threads 1 >/dev/null
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
print("worst-layer max-violation of the training batch, checked every 20 steps")
print("rate     below 1 from  mean 20-100  120-200  220-400   val loss")
for r in rates:
    viol, val = {}, None
    for line in open(f"{out}/r{r}/metrics.jsonl"):
        j = json.loads(line)
        if "routing" in j:
            viol[j["step"]] = max(l["max_violation"] for l in j["routing"]["layers"])
        if "val_loss" in j:
            val = j["val_loss"]
    steps = sorted(viol)
    below = next((s for i, s in enumerate(steps) if all(viol[t] < 1.0 for t in steps[i:])), None)
    def mean(a, b):
        v = [viol[s] for s in steps if a <= s <= b]
        return sum(v) / len(v) if v else float("nan")
    print(f"{r:<8} {str(below):>13} {mean(20, 100):12.2f} {mean(120, 200):8.2f} {mean(220, 400):8.2f}   {val:.4f}")
PY

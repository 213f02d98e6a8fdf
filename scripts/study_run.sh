#!/usr/bin/env bash
# study_run.sh CORPUS OUT [STEPS] [THREADS]: the configurations of
# docs/STUDY.md, trained on CORPUS/train (scripts/study_corpus.sh) with the
# same data order, seed and budget of STEPS (default 1000) steps at THREADS (default 1), at equal
# active feed-forward FLOPs per token: d 128, 4 blocks, ctx 128, batch 16;
# dense width 384 = k x expert width for every MoE configuration.
#
#   dense        dense SwiGLU, width 384
#   top2         softmax top-2 of 8 experts of 192, balance loss 0.01, z 0.001, dropless
#   nobal        the same without any balancing (aux 0, z 0)
#   top1         Switch: top-1 of 8 experts of 384, capacity 1.25, jitter
#   ec           expert choice, 8 experts of 192, c = 2 (2 experts per token on average)
#   sigmoid      sigmoid gate, top-2 of 8 x 192, aux-loss-free bias (rate 0.01, the preset), no aux
#   fine_shared  32 experts of 48, top-4, plus a gated shared expert of 192
#   topp         top-p 0.4 over softmax, at most 2 of 8 x 192 (active FLOPs <= the others)
#   cap1.0, cap1.25, cap2.0   top2 with capacity factor 1.0 / 1.25 / 2.0
#                (drops by position); top2 itself is the dropless point
# added after the first runs (docs/STUDY.md says why):
#   e16, e32     top2 with 16 / 32 experts of 192 (2x / 4x the expert parameters)
#   fine_k8      fine-grained: 32 experts of 48, top-8 (top2's parameters, split 4 ways)
#   fine64_k8    fine-grained and more: 64 experts of 48, top-8 (2x top2's expert parameters)
# Each run writes OUT/NAME (metrics.jsonl, model.gguf, report.html); then
# `moe report` draws OUT/report.html of all and scripts/study_table.py the
# tables. ONLY="dense top2" runs a subset; SEED=2 another seed (default 1:
# seed of the initialisation, the data order and the routing noise).
set -euo pipefail
CORPUS=${1:?usage: study_run.sh CORPUS OUT [STEPS] [THREADS]}
OUT=${2:?usage: study_run.sh CORPUS OUT [STEPS] [THREADS]}
STEPS=${3:-1000}
THREADS=${4:-1}
MOE=${MOE:-build/moe}
mkdir -p "$OUT"
EVAL=$(( STEPS / 20 > 0 ? STEPS / 20 : 1 ))   # 20 evaluations: the crossing is interpolated between them
common=(--data "$CORPUS/train" --steps "$STEPS" --eval-every "$EVAL" --eval-batches 16 --seed "${SEED:-1}" --quiet
        --report-every "$STEPS")
declare -A cfg=(
  [dense]="--dense --dff 384"
  [top2]="--experts 8 --k 2 --router softmax --expert-dff 192"
  [nobal]="--experts 8 --k 2 --router softmax --expert-dff 192 --aux 0 --zloss 0"
  [top1]="--experts 8 --k 1 --router switch --expert-dff 384"
  [ec]="--experts 8 --k 2 --router expert-choice --expert-dff 192"
  [sigmoid]="--experts 8 --k 2 --router sigmoid --expert-dff 192"
  [fine_shared]="--experts 32 --k 4 --router shared --expert-dff 48 --shared-dff 192"
  [topp]="--experts 8 --k 2 --router top-p --expert-dff 192"
  [cap1.0]="--experts 8 --k 2 --router softmax --expert-dff 192 --capacity 1.0"
  [cap1.25]="--experts 8 --k 2 --router softmax --expert-dff 192 --capacity 1.25"
  [cap2.0]="--experts 8 --k 2 --router softmax --expert-dff 192 --capacity 2.0"
  [e16]="--experts 16 --k 2 --router softmax --expert-dff 192"
  [e32]="--experts 32 --k 2 --router softmax --expert-dff 192"
  [fine_k8]="--experts 32 --k 8 --router softmax --expert-dff 48"
  [fine64_k8]="--experts 64 --k 8 --router softmax --expert-dff 48"
)
order=${ONLY:-dense top2 nobal top1 ec sigmoid fine_shared topp cap1.0 cap1.25 cap2.0 e16 e32 fine_k8 fine64_k8}
runs=()
for name in $order; do
  [ -n "${cfg[$name]+x}" ] || { echo "study_run: unknown configuration $name" >&2; exit 2; }
  dir="$OUT/$name"
  if [ -f "$dir/model.gguf" ]; then echo "study_run: $dir done, kept" >&2; runs+=("$dir"); continue; fi
  rm -rf "$dir"
  # the token cache of an earlier run is reused when the tokenizer matches
  first=$(ls -d "$OUT"/*/tokens.bin 2>/dev/null | head -1 || true)
  mkdir -p "$dir"; [ -n "$first" ] && cp "$first" "$dir/tokens.bin"
  echo "study_run: $name: moe train ${cfg[$name]}" >&2
  # shellcheck disable=SC2086
  "$MOE" --threads "$THREADS" train --out "$dir" "${common[@]}" ${cfg[$name]}
  runs+=("$dir")
done
"$MOE" report "${runs[@]}" -o "$OUT/report.html"

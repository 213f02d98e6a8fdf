#!/bin/sh
# bench/quant_table.sh: the per-type table of docs/INFERENCE.md ("Quantized
# types compared") for one model: for each type, `moe quantize` the model,
# then file size, `moe eval` perplexity and bits per byte on held-out text,
# and `moe bench decode` tokens/s. Prints a markdown table on stdout.
#
# usage: bench/quant_table.sh MODEL.gguf TEXT|- WORKDIR [quantize options]
#   TEXT -: generate the held-out text: 16 KiB of the built-in corpus (all
#            domains mixed) from seed 987654321 (the trainer's corpus uses
#            --seed, default 1), via build/libmoe.so; kept as WORKDIR/heldout.txt
#   quantize options: e.g. --allow-fallback (needed for widths not a
#            multiple of 256 with the K types)
# env: MOE (default build/moe), THREADS (default 1), TYPES (default the ten
#      below), KEEP=1 keeps the quantized files.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 MODEL.gguf TEXT|- WORKDIR [quantize options]" >&2; exit 2; }
model=$1; text=$2; work=$3; shift 3
MOE=${MOE:-build/moe}
THREADS=${THREADS:-1}
TYPES=${TYPES:-"f32 f16 bf16 q8_0 q6_k q5_k q4_k q4_0 q3_k q2_k"}
mkdir -p "$work"
if [ "$text" = "-" ]; then
    text=$work/heldout.txt
    MOE_LIB=${MOE_LIB:-build/libmoe.so} /usr/bin/python3 - "$text" <<'EOF'
import ctypes, os, sys
lib = ctypes.CDLL(os.environ["MOE_LIB"])
p, n = ctypes.c_char_p(), ctypes.c_size_t()
err = ctypes.create_string_buffer(4096)
lib.moe_corpus_text.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t),
                                ctypes.c_int, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_void_p]
if lib.moe_corpus_text(ctypes.byref(p), ctypes.byref(n), -1, 16384, 987654321, err) != 0:
    sys.exit("moe_corpus_text failed")
open(sys.argv[1], "wb").write(ctypes.string_at(p, n.value))
EOF
fi
echo "model: $model; held-out text: $text ($(wc -c < "$text") bytes); threads $THREADS"
echo
echo "| type | file MiB | ppl | bits/byte | decode tok/s | quantize s | fell back |"
echo "|---|---|---|---|---|---|---|"
for t in $TYPES; do
    out=$work/model-$t.gguf
    s=$(date +%s.%N)
    "$MOE" --threads "$THREADS" quantize "$model" "$out" --type "$t" "$@" > "$work/quantize-$t.log" 2>&1 ||
        { echo "| $t | quantize failed: $(tail -1 "$work/quantize-$t.log") |||||"; continue; }
    e=$(date +%s.%N)
    qs=$(echo "$e - $s" | bc)
    mib=$(awk -v b="$(wc -c < "$out")" 'BEGIN { printf "%.2f", b / 1048576 }')
    json=$("$MOE" --threads "$THREADS" eval "$out" "$text" 2>/dev/null | tail -1)
    ppl=$(echo "$json" | sed 's/.*"ppl":\([0-9.e+-]*\).*/\1/')
    bpb=$(echo "$json" | sed 's/.*"bits_per_byte":\([0-9.e+-]*\).*/\1/')
    tps=$("$MOE" --threads "$THREADS" bench decode --model "$out" 2>/dev/null |
          sed -n 's/.*best of [0-9]*: \([0-9.]*\) tok\/s.*/\1/p')
    # matrices stored in another type than $t (the fallback), without blk.N.
    fb=$("$MOE" inspect "$out" 2>/dev/null | awk -v t="$t" '
        /^tensors/ { on = 1; next }
        /^total:/ { on = 0 }
        on && NF >= 4 && $1 ~ /weight$/ && tolower($2) != tolower(t) && $2 != "f32" {
            n = $1; sub(/^blk\.[0-9]+\./, "", n); k = n " " $2; if (!(k in c)) o[m++] = k; c[k]++ }
        END { for (i = 0; i < m; i++) printf "%s%s", (i ? ", " : ""), o[i]; if (!m) printf "-" }')
    printf '| %s | %s | %.4f | %.4f | %s | %.1f | %s |\n' "$t" "$mib" "$ppl" "$bpb" "$tps" "$qs" "$fb"
    [ "${KEEP:-0}" = 1 ] || rm -f "$out"
done

#!/usr/bin/env bash
# Training speed of the default preset (llama small, spm 4000, ctx 256, batch 16: the
# bundled model's settings) in tokens/s, on the CPU:
#   1 thread (the baseline), 2 threads, 2 threads with the condensation regulariser.
# Speed per configuration = median of the per-step tokens/s of steps 3..N from the
# trainer's CSV (optimizer steps only: no tokenizer training, no evaluation).
#
#   scripts/bench_train.sh [BUILD_DIR] [STEPS]     (defaults: build, 12)
#
# Prints a table with ratios against the 1-thread baseline of the same run, and the load
# average (other processes on the machine lower every number).
set -euo pipefail
BUILD=${1:-build}
STEPS=${2:-12}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}/bench-train
[[ -x "$BIN" ]] || { echo "bench_train.sh: error: $BIN not found; build first" >&2; exit 1; }
mkdir -p "$OUT"
bash "$(dirname "$0")/kjv_corpus.sh" "$OUT/corpus" 2>/dev/null
tokenizer="spm:4000"
[[ -f models/kjv-llama.gguf ]] && tokenizer="gguf:models/kjv-llama.gguf"

median_tps() {  # CSV column 6 = tokens_per_s, rows of steps >= 3
  awk -F, 'NR > 1 && $1 >= 3 { print $6 }' "$1" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

run() {  # name threads reg
  "$BIN" train --arch llama --preset small --data "$OUT/corpus/kjv.train.txt" \
    --val "$OUT/corpus/kjv.val.txt" --tokenizer "$tokenizer" --steps "$STEPS" --batch 16 \
    --ctx 256 --lr 2e-3 --seed 1 --eval-every 1000000 --eval-batches 1 --threads "$2" \
    --reg "$3" --csv "$OUT/$1.csv" --svg "$OUT/$1.svg" --checkpoint "$OUT/$1.ckpt" \
    --out "$OUT/$1.gguf" -q > /dev/null
  median_tps "$OUT/$1.csv"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
base=$(run t1 1 none)
t2=$(run t2 2 none)
t2reg=$(run t2reg 2 "topk:k=8,lambda=0.1")
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-40s %12s %8s\n" "configuration (llama small, 5.26M params)" "tokens/s" "ratio"
printf "%-40s %12.0f %8.2f\n" "1 thread (baseline)" "$base" 1
printf "%-40s %12.0f %8.2f\n" "2 threads" "$t2" "$(awk -v a="$t2" -v b="$base" 'BEGIN { print a / b }')"
printf "%-40s %12.0f %8.2f\n" "2 threads, --reg topk:k=8,lambda=0.1" "$t2reg" "$(awk -v a="$t2reg" -v b="$base" 'BEGIN { print a / b }')"

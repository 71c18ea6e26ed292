#!/usr/bin/env bash
# Trains the bundled default model, models/kjv-llama.gguf (see models/README.md):
# a Llama-architecture model of 5.26M parameters on the King James Bible.
#
#   scripts/train_default.sh [BUILD_DIR]      (default: build)
#
# About 70 minutes with 2 threads on the 2-core VM. Writes models/kjv-llama.gguf (f16),
# models/kjv-llama.{csv,svg,json} (loss curve, plot, summary), the checkpoint and the log
# under out/train-default/. The corpus comes from Debian's bible-kjv (scripts/kjv_corpus.sh).
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}/train-default
MODELS=${MODELS_DIR:-models}
[[ -x "$BIN" ]] || { echo "train_default.sh: error: $BIN not found; build first (make build)" >&2; exit 1; }
mkdir -p "$OUT" "$MODELS"
bash "$(dirname "$0")/kjv_corpus.sh" "$OUT/corpus"

"$BIN" train --arch llama --preset small \
  --data "$OUT/corpus/kjv.train.txt" --val "$OUT/corpus/kjv.val.txt" \
  --tokenizer spm:4000 --steps 700 --batch 16 --ctx 256 --lr 2e-3 --seed 1 \
  --threads 2 --f16 \
  --checkpoint "$OUT/kjv-llama.ckpt" --checkpoint-every 100 \
  --csv "$MODELS/kjv-llama.csv" --svg "$MODELS/kjv-llama.svg" --json "$MODELS/kjv-llama.json" \
  --sample 120 --prompt "In the beginning" \
  --out "$MODELS/kjv-llama.gguf"

#!/usr/bin/env bash
# The 4M-row run of bench/results/analysis.md: `attnsparse analyze` with a TinyLlama-1.1B-
# shaped model (random weights, 22 layers x 32 heads, f16) over three KJV books cut to the
# model's 2048-token window: 3 x (2048 - 16) x 22 x 32 = 4,292,608 rows, every one analysed.
#
#   bench/analysis_4m.sh [BUILD_DIR] [THREADS]     (defaults: build, 2)
#
# Prints the verdict table and the wall/CPU time (GNU time); the report lands in
# out/bench-4m/report.html. Needs ~2.3 GB of disk for the model (kept for reruns).
set -euo pipefail
BUILD=${1:-build}
THREADS=${2:-2}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}/bench-4m
[[ -x "$BIN" ]] || { echo "analysis_4m.sh: error: $BIN not found (make build)" >&2; exit 1; }
command -v bible >/dev/null || { echo "analysis_4m.sh: error: bible-kjv missing (scripts/setup.sh)" >&2; exit 1; }
mkdir -p "$OUT/data"
MODEL="$OUT/tinyllama-synth-f16.gguf"
[[ -f "$MODEL" ]] || "$BIN" synth --preset tinyllama-1.1b --dtype f16 --out "$MODEL" --threads "$THREADS"
bible -l0 "Heb1:1-Heb13:25" > "$OUT/data/hebrews.txt"
bible -l0 "Jas1:1-1Pe5:14" > "$OUT/data/james-peter.txt"
bible -l0 "Rev1:1-Rev22:21" > "$OUT/data/revelation.txt"
/usr/bin/time -f "wall %e s, user %U s, system %S s, max RSS %M KB" \
  "$BIN" analyze "$MODEL" --data "$OUT/data" --out "$OUT" --threads "$THREADS"

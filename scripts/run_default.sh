#!/usr/bin/env bash
# The main job of `make run` (see README): `attnsparse analyze` on the bundled default
# model over the bundled default corpus; prints the verdict table and the report's path.
#
#   scripts/run_default.sh [BUILD_DIR]     (default: build)
#
# Model: models/kjv-llama.gguf (trained by scripts/train_default.sh). Until it exists, a
# stand-in: `attnsparse synth --preset tinyllama-1.1b --layers 2` (random weights: the
# statistics then describe random attention, not a language model).
# Corpus: the 56 chapters of the King James Bible that the default model did not train on
# (Hebrews .. Revelation, Debian's bible-kjv), one LongBench v1 record per chapter with
# the book as its dataset: out/analysis-corpus/kjv-heldout.jsonl.
# Output: out/analysis/report.html and report.json. Environment: MODEL, ATTNSPARSE_OUT,
# THREADS (default: all cores).
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}
[[ -x "$BIN" ]] || { echo "run: error: $BIN not found; build first (make build)" >&2; exit 1; }
command -v bible >/dev/null || { echo "run: error: 'bible' not found (scripts/setup.sh installs bible-kjv)" >&2; exit 1; }
mkdir -p "$OUT/analysis-corpus"

MODEL=${MODEL:-models/kjv-llama.gguf}
EXTRA=()
if [[ ! -f "$MODEL" ]]; then
  echo "run: $MODEL is not there (scripts/train_default.sh trains it); using a synthetic stand-in with random weights" >&2
  MODEL="$OUT/synth-tinyllama-2l.gguf"
  [[ -f "$MODEL" ]] || "$BIN" synth --preset tinyllama-1.1b --layers 2 --dtype f16 --out "$MODEL"
  # Its byte-level vocabulary makes chapters ~4k tokens: keep the stand-in run short.
  EXTRA=(--max-tokens 512)
fi

# One JSON line per chapter: {"_id", "dataset" (the book), "context", "input", ...}.
CORPUS="$OUT/analysis-corpus/kjv-heldout.jsonl"
if [[ ! -s "$CORPUS" ]]; then
  bible -l0 "Heb1:1-Rev22:21" | awk '
    function flush() {
      if (title == "") return
      book = title; sub(/ [0-9]+$/, "", book)
      id = title; gsub(/ /, "-", id)
      printf "{\"_id\": \"kjv-%s\", \"dataset\": \"%s\", \"language\": \"en\", \"input\": \"\", \"answers\": [], \"all_classes\": null, \"length\": %d, \"context\": \"%s\"}\n", id, book, words, text
    }
    /^$/ { next }
    /^ +[0-9]+ / {
      line = $0; sub(/^ +[0-9]+ /, "", line)
      gsub(/\\/, "\\\\", line); gsub(/"/, "\\\"", line)
      text = text (text == "" ? "" : "\\n") line
      words += split(line, _w, " ")
      next
    }
    { flush(); title = $0; text = ""; words = 0 }
    END { flush() }' > "$CORPUS.tmp"
  mv "$CORPUS.tmp" "$CORPUS"
fi

"$BIN" analyze "$MODEL" --data "$CORPUS" --out "$OUT/analysis" --threads "${THREADS:-0}" "${EXTRA[@]}"

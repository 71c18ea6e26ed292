#!/usr/bin/env bash
# The main job of `make run` (see README): analyse the attention of the bundled default
# model over the bundled default corpus and print the verdict table.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}
mkdir -p "$OUT"
MODEL=${MODEL:-models/kjv-llama.gguf}
if [[ ! -f "$MODEL" ]]; then
  echo "run: $MODEL is not there; using a synthetic stand-in (attnsparse synth)" >&2
  MODEL="$OUT/synth-tinyllama-2l.gguf"
  [[ -f "$MODEL" ]] || "$BIN" synth --preset tinyllama-1.1b --layers 2 --dtype f16 --out "$MODEL"
fi
"$BIN" info "$MODEL"
"$BIN" generate "$MODEL" --prompt "In the beginning" -n 48 --seed 1

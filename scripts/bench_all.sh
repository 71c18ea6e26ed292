#!/usr/bin/env bash
# `make bench`: every speed measurement recorded in bench/RESULTS.md, one after another
# (each prints ratios against a baseline measured in the same run). Long: about 20-30
# minutes on the 2-core VM, plus ~4.5 GB of disk for two synthetic TinyLlama-shaped models
# kept in OUT for reruns. Run it on an otherwise idle machine.
#
#   scripts/bench_all.sh [BUILD_DIR]        (default: build)
#
# Environment: ATTNSPARSE_OUT (default out) -> OUT = $ATTNSPARSE_OUT/bench; THREADS (2);
# ONLY="runtime policies analysis theory train" to pick sections.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}/bench
THREADS=${THREADS:-2}
ONLY=${ONLY:-runtime policies analysis theory train}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
[[ -x "$BIN" ]] || { echo "bench_all.sh: error: $BIN not found; build first (make build)" >&2; exit 1; }
mkdir -p "$OUT"
here=$(dirname "$0")
section() { printf '\n===== %s (%s, load %s) =====\n' "$1" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"; }
want() { [[ " $ONLY " == *" $1 "* ]]; }

TL="$OUT/tinyllama-1.1b-f16.gguf"
if want runtime || want policies; then
  [[ -f "$TL" ]] || "$BIN" synth --preset tinyllama-1.1b --dtype f16 --out "$TL"
fi

if want runtime; then
  section "runtime: attnsparse bench, tinyllama-1.1b f16 (llama.cpp: 136-148 tok/s prefill, 24 tok/s decode)"
  "$BIN" bench "$TL" -p 512 -n 128 --reps 3 --threads "$THREADS"
  "$BIN" bench "$TL" -p 128 -n 32 --reps 3 --threads "$THREADS"
fi

if want policies; then
  section "attention core and policies (scripts/bench_policies.sh)"
  THREADS=$THREADS bash "$here/bench_policies.sh" "$BUILD" "$OUT/policies" "$TL"
fi

if want analysis; then
  section "analysis: statistics overhead over plain prefill (bench/analysis_overhead.cpp)"
  TL2="$OUT/tinyllama-2l.gguf"
  [[ -f "$TL2" ]] || "$BIN" synth --preset tinyllama-1.1b --layers 2 --out "$TL2"
  if [[ -x "$BUILD/analysis_overhead" ]]; then
    "$BUILD/analysis_overhead" "$TL2" 1024 2048 4096 --reps 3 --threads "$THREADS"
    "$BUILD/analysis_overhead" "$TL2" 4096 --reps 3 --threads "$THREADS" --stride 4
  else
    echo "skipped: $BUILD/analysis_overhead not built (Google Benchmark missing?)"
  fi
  section "analysis: the 4M-row run (bench/analysis_4m.sh)"
  bash "$(dirname "$here")/bench/analysis_4m.sh" "$BUILD" "$THREADS"
fi

if want theory; then
  section "theory: the simulated sweep, quickselect vs full sort (scripts/bench_theory.sh)"
  bash "$here/bench_theory.sh" "$BIN"
fi

if want train; then
  section "train: tokens/s of the default preset (scripts/bench_train.sh)"
  bash "$here/bench_train.sh" "$BUILD"
fi

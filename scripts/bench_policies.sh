#!/usr/bin/env bash
# The attention/policy speed goals (issue 3, item 7), each measured against its baseline
# in the same run. Heavy: about 2-4 minutes of 2-core CPU; run it deliberately.
#
#   scripts/bench_policies.sh [BUILD_DIR] [OUT_DIR] [TINYLLAMA_GGUF]
#
# BUILD_DIR   a Release build with the attnsparse binary (default: build)
# OUT_DIR     where the JSON results go (default: bench/out/policies)
# TINYLLAMA   a synth tinyllama-1.1b f16 GGUF; made with `attnsparse synth` when absent
#             (2.2 GB; default: OUT_DIR/tinyllama-1.1b-f16.gguf). SKIP_MODEL=1 skips the
#             whole-model prefill.
# THREADS     threads for every measurement (default 2; the machine is shared).
# OMP_WAIT_POLICY  default passive (spinning OpenMP threads hurt on shared cores).
set -euo pipefail
BUILD=${1:-build}
OUT=${2:-bench/out/policies}
MODEL=${3:-$OUT/tinyllama-1.1b-f16.gguf}
THREADS=${THREADS:-2}
# libgomp's threads spin at every barrier before sleeping; on shared cores the spinning
# thread burns the slice its descheduled partner needs (see bench/results/runtime.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
BIN="$BUILD/attnsparse"
[ -x "$BIN" ] || { echo "bench_policies: $BIN not found (build first)" >&2; exit 1; }
mkdir -p "$OUT"

ba() {  # name, then bench-attention arguments
  local name=$1; shift
  echo "== $name: bench-attention $*" >&2
  "$BIN" bench-attention "$@" --threads "$THREADS" --json --out "$OUT/$name.json" > /dev/null
  python3 - "$OUT/$name.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
line = f"{j['policy']:<28} {j['mode']:<7} n={j['n']:<6} dense {j['dense_ms']:9.2f} ms  sparse {j['sparse_ms']:9.2f} ms"
line += f"  kept {j['kept_fraction']:.4f}  speedup {j['speedup']:.2f}x / ideal {j['ideal_speedup']:.2f}x = {j['speedup_vs_ideal']:.2f}"
if 'fma_peak_gflops' in j:
    line += f"\n  dense {j['dense_gflops']:.1f} GFLOP/s of FMA peak {j['fma_peak_gflops']:.1f} = {j['dense_fraction_of_peak']:.2f}"
print(line)
EOF
}

date -u +"date: %Y-%m-%dT%H:%MZ"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), threads $THREADS, OMP_WAIT_POLICY=$OMP_WAIT_POLICY"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# 1. Dense core at n = 4096, head_dim 128 (Llama-3-8B heads: 32 query, 8 KV) vs the FMA peak.
ba dense_4096_d128 --n 4096 --head-dim 128 --heads 32 --kv-heads 8 --policy dense --repeat 3 --fma-peak

# 2. Sparse prefill at n = 16384 keeping 1/16 of the keys (TinyLlama heads: 32 / 4, d 64).
ba sink64_window960_16384 --n 16384 --head-dim 64 --heads 32 --kv-heads 4 --policy sink=64,window=960 --repeat 2

# 3. Decode at n = 32768: dense step vs an h2o step (attention over budget+1 keys, score
#    collection, eviction and compaction).
ba h2o_decode_32768 --n 32768 --head-dim 64 --heads 32 --kv-heads 4 --policy h2o=budget:4096,recent:256 --decode --repeat 30

# 4. Whole-model prefill of 2048 tokens on synth tinyllama-1.1b (f16), with the per-op
#    breakdown; llama.cpp measured 107 tok/s (materialised attention) and 41.5 tok/s (its
#    CPU flash attention) on this kind of machine.
if [ "${SKIP_MODEL:-0}" != 1 ]; then
  if [ ! -f "$MODEL" ]; then
    echo "== synth tinyllama-1.1b -> $MODEL" >&2
    "$BIN" synth --preset tinyllama-1.1b --dtype f16 --out "$MODEL" --threads "$THREADS" >&2
  fi
  echo "== bench $MODEL -p 2048" >&2
  ATTNSPARSE_PROFILE=1 "$BIN" bench "$MODEL" -p 2048 -n 0 -r 1 --threads "$THREADS" \
    > "$OUT/prefill_2048.txt" 2> "$OUT/prefill_2048.profile.txt"
  grep -E "pp2048" "$OUT/prefill_2048.txt" || true
  grep -E "attention|matmul|forward ops" "$OUT/prefill_2048.profile.txt" || true
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

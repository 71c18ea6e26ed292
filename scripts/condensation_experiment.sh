#!/usr/bin/env bash
# The attention-condensation experiment (docs/methods.md §9; source: "Attention Condensation via
# Sparsity Induced Regularized Training", GPT-2): the same GPT-2-style model trained on the
# same data, seed and steps without the regulariser (λ = 0) and with the tail-mass
# regulariser at k = 8, λ ∈ {0.01, 0.1, 1}, and with the dynamic k = ceil((t+1)^0.5), λ = 0.1.
# For each model: validation perplexity, mean top-8 mass M_8, share of (0.05, 8)-sparse
# rows (trainer, held-out windows), attention width W_0.9 per layer (attnsparse analyze),
# perplexity with dense attention and when inference keeps only the oracle top-8 /
# dynamic top-k keys (attnsparse eval-policy). Writes OUT/results.md (table),
# OUT/results.json and OUT/condensation.html (charts, drawn by `attnsparse report`).
#
#   scripts/condensation_experiment.sh [BUILD_DIR]      (default: build)
#
# Environment: ATTNSPARSE_OUT (default out) -> OUT = $ATTNSPARSE_OUT/condensation;
# ARCH (gpt2), PRESET (mini), STEPS (400), BATCH (16), CTX (128), LR (2e-3), SEED (1),
# VOCAB (2000), THREADS (2), MAX_DOCS (200 evaluation documents). Finished steps are
# skipped when the script is run again (delete OUT to start over).
# About 30-40 minutes with 2 threads on the 2-core VM when the machine is otherwise idle.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}/condensation
ARCH=${ARCH:-gpt2}
PRESET=${PRESET:-mini}
STEPS=${STEPS:-400}
BATCH=${BATCH:-16}
CTX=${CTX:-128}
LR=${LR:-2e-3}
SEED=${SEED:-1}
VOCAB=${VOCAB:-2000}
THREADS=${THREADS:-2}
MAX_DOCS=${MAX_DOCS:-200}
K=8
EPS=0.05

die() { echo "condensation_experiment.sh: error: $*" >&2; exit 1; }
[[ -x "$BIN" ]] || die "$BIN not found; build first (make build)"
command -v jq >/dev/null || die "jq not found (apt-get install jq; scripts/setup.sh installs it)"
mkdir -p "$OUT"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# Data: the KJV split, and the held-out text cut into documents of whole verses of at
# most ~450 bytes (about CTX tokens), so eval-policy and analyze see many short documents
# rather than one long one truncated to the context.
bash "$(dirname "$0")/kjv_corpus.sh" "$OUT/corpus"
if [[ ! -d "$OUT/val-docs" ]]; then
  mkdir -p "$OUT/val-docs.tmp"
  awk -v dir="$OUT/val-docs.tmp" '
    BEGIN { n = 0; len = 0 }
    /^$/ { next }
    { if (len > 0 && len + length($0) + 1 > 450) { close(f); n++; len = 0 }
      f = sprintf("%s/doc%04d.txt", dir, n); print > f; len += length($0) + 1 }' \
    "$OUT/corpus/kjv.val.txt"
  mv "$OUT/val-docs.tmp" "$OUT/val-docs"
fi

RUNS=(
  "baseline|none"
  "topk-l0.01|topk:k=$K,lambda=0.01"
  "topk-l0.1|topk:k=$K,lambda=0.1"
  "topk-l1|topk:k=$K,lambda=1"
  "dyn-l0.1|dyn:alpha=1,C=0.5,lambda=0.1"
)

for run in "${RUNS[@]}"; do
  name=${run%%|*}
  reg=${run#*|}
  model="$OUT/$name.gguf"
  if [[ ! -f "$OUT/$name.json" ]]; then
    log "train $name ($reg)"
    "$BIN" train --arch "$ARCH" --preset "$PRESET" \
      --data "$OUT/corpus/kjv.train.txt" --val "$OUT/corpus/kjv.val.txt" \
      --tokenizer "spm:$VOCAB" --steps "$STEPS" --batch "$BATCH" --ctx "$CTX" --lr "$LR" \
      --seed "$SEED" --reg "$reg" --metric-k "$K" --metric-eps "$EPS" --threads "$THREADS" \
      --checkpoint "$OUT/$name.ckpt" --json "$OUT/$name.json.tmp" --out "$model" -q \
      > "$OUT/$name.train.txt"
    mv "$OUT/$name.json.tmp" "$OUT/$name.json"
  fi
  if [[ ! -f "$OUT/$name.analysis/report.json" ]]; then
    log "analyze $name"
    rm -rf "$OUT/$name.analysis"
    "$BIN" analyze "$model" --data "$OUT/val-docs" --max-tokens "$CTX" --threads "$THREADS" \
      --out "$OUT/$name.analysis" > "$OUT/$name.analysis.txt" 2> "$OUT/$name.analysis.log"
  fi
  if [[ ! -f "$OUT/$name.policy.json" ]]; then
    log "eval-policy $name"
    "$BIN" eval-policy "$model" --data "$OUT/val-docs" --max-docs "$MAX_DOCS" --max-tokens "$CTX" \
      --policy "topk=$K" --policy "dyntopk=alpha:1,C:0.5" --threads "$THREADS" \
      --out "$OUT/$name.policy.json" > "$OUT/$name.policy.txt" 2> "$OUT/$name.policy.log"
  fi
done

# One JSON object per run with the numbers of the table.
for run in "${RUNS[@]}"; do
  name=${run%%|*}
  jq -n --arg name "$name" \
    --slurpfile t "$OUT/$name.json" \
    --slurpfile a "$OUT/$name.analysis/report.json" \
    --slurpfile p "$OUT/$name.policy.json" '
    ($p[0].policies | map({key: .policy, value: .}) | from_entries) as $pol |
    { name: $name, reg: $t[0].reg, params: $t[0].params, steps: $t[0].steps,
      val_ppl: $t[0].val_ppl, mean_topk_mass: $t[0].mean_topk_mass,
      sparse_share: $t[0].sparse_share, seconds: $t[0].seconds,
      width_p90_per_layer: [$a[0].per_layer[] | .metrics.width_p90.mean],
      dense_ppl: $p[0].dense.ppl,
      topk_ppl: $pol["topk='"$K"'"].ppl,
      topk_kept: $pol["topk='"$K"'"].kept_fraction,
      dyntopk_ppl: $pol["dyntopk=alpha:1,C:0.5"].ppl,
      dyntopk_kept: $pol["dyntopk=alpha:1,C:0.5"].kept_fraction,
      documents: $p[0].documents }'
done | jq -s --arg arch "$ARCH" --arg preset "$PRESET" --argjson steps "$STEPS" \
  --argjson batch "$BATCH" --argjson ctx "$CTX" --arg lr "$LR" --argjson seed "$SEED" \
  --argjson vocab "$VOCAB" --argjson k "$K" --argjson eps "$EPS" \
  '{setup: {arch: $arch, preset: $preset, steps: $steps, batch: $batch, ctx: $ctx, lr: $lr,
            seed: $seed, tokenizer: ("spm:" + ($vocab|tostring)), k: $k, eps: $eps},
    runs: .}' > "$OUT/results.json.tmp"
mv "$OUT/results.json.tmp" "$OUT/results.json"

# The markdown table.
{
  jq -r '.setup | "Setup: \(.arch) \(.preset), tokenizer \(.tokenizer), \(.steps) steps x \(.batch) x \(.ctx) tokens, lr \(.lr), seed \(.seed); k = \(.k), eps = \(.eps)."' "$OUT/results.json"
  echo
  echo "| run | regulariser | val ppl | mean M_8 | (0.05,8)-sparse rows | W_0.9 per layer | dense ppl (docs) | top-8 ppl (kept) | dyn top-k ppl (kept) |"
  echo "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
  jq -r '.runs[] |
    def f(n): (. * pow(10; n) | round) / pow(10; n);
    def pct(a; b): ((a / b - 1) * 100 | f(1)) as $p | if $p > 0 then "+\($p)%" elif $p == 0 then "±0%" else "\($p)%" end;
    "| \(.name) | `\(.reg)` | \(.val_ppl|f(2)) | \(.mean_topk_mass|f(3)) | \(.sparse_share|f(3)) | \([.width_p90_per_layer[] | f(1) | tostring] | join(" / ")) | \(.dense_ppl|f(2)) | \(.topk_ppl|f(2)) (\(pct(.topk_ppl; .dense_ppl)); \(.topk_kept|f(3))) | \(.dyntopk_ppl|f(2)) (\(pct(.dyntopk_ppl; .dense_ppl)); \(.dyntopk_kept|f(3))) |"' "$OUT/results.json"
} > "$OUT/results.md"

# The page: perplexity with dense attention and with oracle top-k / dynamic top-k at
# inference, attention mass, width per layer and the table (attnsparse report draws it
# from results.json; rerun it on the file to redraw).
"$BIN" report "$OUT/results.json" -o "$OUT/condensation.html" > /dev/null
log "done: $OUT/results.md, $OUT/results.json, $OUT/condensation.html"
cat "$OUT/results.md"

#!/usr/bin/env bash
# The quality-vs-memory frontier of docs/policies.md: eval-policy with a budget sweep of
# window, sink+window, topk, dyntopk, h2o, tova, snapkv and quest on
#   - the bundled model models/kjv-llama.gguf: the first 40 held-out KJV passages of at
#     most 950 bytes (whole verses of Hebrews..Revelation, ~225 tokens each);
#   - stories260K (../shared/reference/real, a real TinyStories model): 12 documents of
#     four stories the model wrote itself (generate, temperature 1, top-p 0.95, seeds
#     1..48) plus stories.txt and story.txt, at most 512 tokens each.
# Writes OUT/kjv-llama/report.{json,html} and OUT/stories260K/report.{json,html}.
#
#   scripts/policy_frontier.sh [BUILD_DIR]      (default: build)
#
# Environment: ATTNSPARSE_OUT (default out) -> OUT = $ATTNSPARSE_OUT/policy-frontier;
# THREADS (default 1). About 6 + 3 minutes on one core.
set -euo pipefail
BUILD=${1:-build}
BIN="$BUILD/attnsparse"
OUT=${ATTNSPARSE_OUT:-out}/policy-frontier
THREADS=${THREADS:-1}
REAL=${ATTNSPARSE_SHARED_DIR:-../shared}/reference/real
die() { echo "policy_frontier.sh: error: $*" >&2; exit 1; }
[[ -x "$BIN" ]] || die "$BIN not found; build first (make build)"
[[ -f "$REAL/stories260K.gguf" ]] || die "$REAL/stories260K.gguf not found (set ATTNSPARSE_SHARED_DIR)"
mkdir -p "$OUT"

POLICIES=(
  --policy 'window=16..128*2' --policy 'sink=4,window={12,28,60,124}' --policy 'topk=8..128*2'
  --policy 'dyntopk=alpha:{0.5,1,2,4},C:0.5' --policy 'h2o=budget:16..128*2,recent:8'
  --policy 'tova=budget:16..128*2' --policy 'snapkv=budget:16..128*2,window:8,pool:5'
  --policy 'quest=page:16,pages:1..8*2'
)

# KJV passages: the held-out split cut into whole verses of at most 950 bytes.
bash "$(dirname "$0")/kjv_corpus.sh" "$OUT/corpus"
if [[ ! -d "$OUT/kjv-docs" ]]; then
  mkdir -p "$OUT/kjv-docs.tmp"
  awk -v dir="$OUT/kjv-docs.tmp" '
    BEGIN { n = 0; len = 0 }
    /^$/ { next }
    { if (len > 0 && len + length($0) + 1 > 950) { close(f); n++; len = 0 }
      f = sprintf("%s/doc%04d.txt", dir, n); print > f; len += length($0) + 1 }' "$OUT/corpus/kjv.val.txt"
  mv "$OUT/kjv-docs.tmp" "$OUT/kjv-docs"
fi
"$BIN" eval-policy models/kjv-llama.gguf --data "$OUT/kjv-docs" --max-tokens 256 --max-docs 40 \
  --threads "$THREADS" "${POLICIES[@]}" --out "$OUT/kjv-llama"

# Stories written by stories260K itself, four per document.
if [[ ! -d "$OUT/stories" ]]; then
  mkdir -p "$OUT/stories.tmp"
  for s in $(seq 1 48); do
    "$BIN" generate "$REAL/stories260K.gguf" --prompt "Once upon a time" -n 400 --temp 1.0 --top-p 0.95 \
      --seed "$s" --threads 1 > "$OUT/stories.tmp/g$s.txt" 2>/dev/null
  done
  for d in $(seq 0 11); do
    for k in 1 2 3 4; do cat "$OUT/stories.tmp/g$((d * 4 + k)).txt"; echo; done > "$OUT/stories.tmp/doc$(printf %02d "$d").txt"
  done
  rm "$OUT"/stories.tmp/g*.txt
  cp "$REAL/stories.txt" "$REAL/story.txt" "$OUT/stories.tmp/"
  mv "$OUT/stories.tmp" "$OUT/stories"
fi
"$BIN" eval-policy "$REAL/stories260K.gguf" --data "$OUT/stories" --max-tokens 512 \
  --threads "$THREADS" "${POLICIES[@]}" --out "$OUT/stories260K"

#!/usr/bin/env bash
# Times the full simulated n^C-sparsity sweep of issue 5 (n = 2^10..2^17, d = 128,
# 8 settings, 32 trials, 2 threads) with the vectorised quickselect top-k selection
# against the full-sort baseline, in the same run, and prints the ratio.
#
#   scripts/bench_theory.sh [path/to/attnsparse]     (default: build/attnsparse)
#   REPEATS=3 scripts/bench_theory.sh                 (best of 3 per variant)
#   KEEP=dir scripts/bench_theory.sh                  (keep the outputs: dir/quickselect/theory.{json,html})
#
# The machine is shared: the load average is printed before each run so a noisy result
# can be recognised; the variants alternate so that load changes hit both.
set -euo pipefail
BIN=${1:-build/attnsparse}
REPEATS=${REPEATS:-1}
THREADS=${THREADS:-2}
if [ -n "${KEEP:-}" ]; then
  OUT=$KEEP
  mkdir -p "$OUT"
else
  OUT=$(mktemp -d)
  trap 'rm -rf "$OUT"' EXIT
fi
SWEEP=(theory simulate --n 1024:131072 --d 128 --sigma 0.5,1,1.5,2 --logit-c 0.25,0.5,0.75,1
       --eps 0.01,0.05 --trials 32 --seed 1 --threads "$THREADS")

echo "date:    $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
     "avx512f: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
echo "command: $BIN ${SWEEP[*]} --select {quickselect,sort} --out DIR"
echo

best_quick=""; best_sort=""
run() {  # $1 = select method; prints "wall cpu" seconds (cpu = user + system)
  /usr/bin/time -f "%e %U %S" -o "$OUT/$1.time" \
    "$BIN" "${SWEEP[@]}" --select "$1" --out "$OUT/$1" >"$OUT/$1.txt" 2>"$OUT/$1.err"
  read -r wall user sys <"$OUT/$1.time"
  echo "$wall $(echo "$user + $sys" | bc -l)"
}
min() { if [ -z "$1" ]; then echo "$2"; else echo "if ($2 < $1) $2 else $1" | bc -l; fi; }
for ((i = 1; i <= REPEATS; i++)); do
  for sel in quickselect sort; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    read -r t cpu < <(run "$sel")
    printf "run %d %-12s %7.2f s wall %7.2f s CPU   (load average before: %s)\n" "$i" "$sel" "$t" "$cpu" "$load"
    if [ "$sel" = quickselect ]; then best_quick=$(min "$best_quick" "$t"); else best_sort=$(min "$best_sort" "$t"); fi
  done
done
# Same seeds, same draws: the two variants must report the same fits.
if ! diff <(grep -v ' s; wrote' "$OUT/quickselect.txt") <(grep -v ' s; wrote' "$OUT/sort.txt") >/dev/null; then
  echo "ERROR: quickselect and sort variants disagree" >&2
  exit 1
fi
echo
printf "quickselect (vectorised nth_element): %7.2f s\n" "$best_quick"
printf "full-sort baseline:                   %7.2f s\n" "$best_sort"
printf "speed-up: %.2fx; target < 60 s: %s\n" "$(echo "$best_sort / $best_quick" | bc -l)" \
  "$(echo "$best_quick < 60" | bc -l | sed 's/1/met/;s/0/MISSED/')"

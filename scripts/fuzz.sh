#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for N seconds each (ASan + UBSan, clang-14) and
# prints executions, executions/second and the outcome per target.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s, every fuzz/fuzz_*.cpp)
# Environment:
#   FUZZ_BUILD     build directory (default build-fuzz; scripts/hardening_env.sh configures it)
#   FUZZ_JOBS      build jobs (default 2)
#   FUZZ_PARALLEL  targets run at the same time, each single-threaded (default 1: one after
#                  the other, for long campaigns at low priority: nice -n 19 scripts/fuzz.sh)
#   FUZZ_NO_BUILD  1: use the binaries as they are (scripts/sanitize.sh built them)
# Seeds: fuzz/seeds/<target>/ plus, from ../shared/reference, the GGUF models and
# vocabularies (their first 64 KiB), a LongBench sample, llama2.c's tok512.bin, and the
# `--policy` examples of README.md and docs/*.md; complete tiny synthetic models when
# build/attnsparse exists. Corpora are kept across runs in $FUZZ_BUILD/corpus/. Crashes,
# leaks and timeouts are written to $FUZZ_BUILD/artifacts/; the first failing target stops
# the others and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/hardening_env.sh
seconds=${1:-60}
shift || true
build=${FUZZ_BUILD:-build-fuzz}
jobs=${FUZZ_JOBS:-2}
parallel=${FUZZ_PARALLEL:-1}

targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

if [[ "${FUZZ_NO_BUILD:-0}" != 1 ]]; then
  hardening_configure "$build"
  nice cmake --build "$build" -j"$jobs" --target "${targets[@]}" >/dev/null
fi

ref=../shared/reference
corpus_root="$build/corpus"
mkdir -p "$corpus_root" "$build/artifacts"
seed() {  # seed TARGET FILES...: copies seeds into the target's corpus (kept across runs)
  local dir="$corpus_root/$1"
  shift
  mkdir -p "$dir"
  for f in "$@"; do [[ -f "$f" ]] && cp -f "$f" "$dir/seed-$(basename "$f")"; done
  return 0
}
wants() { [[ " ${targets[*]} " == *" $1 "* ]]; }
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  mkdir -p "$corpus_root/$t"
  [[ -d "fuzz/seeds/$name" ]] && seed "$t" fuzz/seeds/"$name"/*
done
if wants fuzz_gguf; then
  for f in "$ref"/models/*.gguf "$ref"/tokenizer/*.gguf; do
    [[ -f "$f" ]] && head -c 65536 "$f" >"$corpus_root/fuzz_gguf/seed-head-$(basename "$f")"
  done
  if [[ -x build/attnsparse ]]; then
    for p in tiny tiny-gpt2 tiny-qwen2; do
      build/attnsparse synth --preset "$p" --dtype q8_0 --out "$corpus_root/fuzz_gguf/seed-$p.gguf" >/dev/null 2>&1 || true
    done
  fi
fi
if wants fuzz_corpus && [[ -f "$ref/longbench/sample.jsonl" ]]; then
  { printf '\0'; head -c 4000 "$ref/longbench/sample.jsonl"; } >"$corpus_root/fuzz_corpus/seed-ref-longbench.jsonl"
fi
if wants fuzz_llama2c && [[ -f "$ref/real/tok512.bin" ]]; then
  { printf '\1'; cat "$ref/real/tok512.bin"; } >"$corpus_root/fuzz_llama2c/seed-ref-tok512.bin"
fi
if wants fuzz_policy_spec; then
  # Every --policy example of the docs (quoted or bare), one seed each.
  i=0
  while IFS= read -r spec; do
    i=$((i + 1))
    printf '%s' "$spec" >"$corpus_root/fuzz_policy_spec/seed-docs-$i"
  done < <(grep -ohE -- "--policy ('[^']+'|[^ '\`]+)" README.md docs/*.md | sed -E "s/^--policy //; s/^'(.*)'$/\1/" | sort -u)
fi

# Inputs up to the largest a reader needs (a whole tiny model for GGUF / llama2.c).
max_len() {
  case $1 in
    fuzz_policy_spec) echo 1024 ;;
    fuzz_policy_map_json | fuzz_config_json | fuzz_packed_matmul) echo 65536 ;;
    *) echo 262144 ;;
  esac
}

run_one() {  # run_one TARGET: one single-threaded libFuzzer run; exit status of the fuzzer
  local t=$1
  "$build/$t" "$corpus_root/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
    >"$build/artifacts/$t.log" 2>&1
}

# The failing run's report and its input go to stderr too, so a CI log alone reproduces it.
report_failure() {  # report_failure TARGET
  local t=$1 a
  echo "fuzz: the last lines of $t's log:" >&2
  grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$build/artifacts/$t.log" | tail -n 60 >&2 || true
  for a in "$build/artifacts/$t"-*; do
    [[ -f "$a" && "$a" -nt "$build/artifacts/.started" ]] || continue
    if (($(stat -c %s "$a") <= 16384)); then
      echo "fuzz: input $a (base64; decode with base64 -d):" >&2
      base64 -w 120 "$a" >&2
    fi
  done
}
declare -A pid_of=()
status=0
failed=""
stop_others() {
  local k
  for k in "${!pid_of[@]}"; do kill "${pid_of[$k]}" 2>/dev/null || true; done
}
reap() {  # waits for one run to end; on failure stops the others
  local done_pid rc=0 k
  wait -n -p done_pid || rc=$?
  for k in "${!pid_of[@]}"; do
    if [[ "${pid_of[$k]}" == "$done_pid" ]]; then
      unset "pid_of[$k]"
      if ((rc != 0)) && [[ -z "$failed" ]]; then
        failed=$k
        status=1
        echo "fuzz: $k failed (exit $rc), see $build/artifacts/$k.log; stopping the other targets" >&2
        stop_others
        report_failure "$k"
      fi
    fi
  done
}
for t in "${targets[@]}"; do rm -f "$build/artifacts/$t.log"; done
touch "$build/artifacts/.started"  # inputs written after this are this run's
for t in "${targets[@]}"; do
  [[ -n "$failed" ]] && break
  while ((${#pid_of[@]} >= parallel)); do reap; done
  [[ -n "$failed" ]] && break
  run_one "$t" &
  pid_of[$t]=$!
done
while ((${#pid_of[@]} > 0)); do reap; done

printf '%-22s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  log="$build/artifacts/$t.log"
  [[ -f "$log" ]] || continue
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$corpus_root/$t" -type f | wc -l)
  result=ok
  [[ "$t" == "$failed" ]] && result="FAILED (see $log)"
  [[ -z "$execs" && "$t" != "$failed" ]] && result="stopped"
  printf '%-22s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$files" "$result"
done
exit $status

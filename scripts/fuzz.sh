#!/usr/bin/env bash
# Runs every libFuzzer target of fuzz/ for N seconds each (ASan + UBSan, clang-14) and
# prints executions, executions/second and the outcome per target.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s, every fuzz/fuzz_*.cpp)
# Environment: FUZZ_BUILD (build directory, default build-fuzz), FUZZ_JOBS (build jobs, 2).
# Seeds: fuzz/seeds/<target>/ plus, for GGUF, the reference models and vocabularies of
# ../shared/reference (their first 64 KiB) and complete tiny synthetic models when
# build/attnsparse exists. Crashes, leaks and timeouts are written to
# $FUZZ_BUILD/artifacts/ and make the script exit 1.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
build=${FUZZ_BUILD:-build-fuzz}
jobs=${FUZZ_JOBS:-2}

targets=("$@")
if ((${#targets[@]} == 0)); then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DATTNSPARSE_WITH_TORCH=OFF -DATTNSPARSE_FUZZ=ON -DATTNSPARSE_SANITIZE=address,undefined \
    "${launcher[@]}" >/dev/null
fi
nice cmake --build "$build" -j"$jobs" --target "${targets[@]}" >/dev/null

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
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  mkdir -p "$corpus_root/$t"
  [[ -d "fuzz/seeds/$name" ]] && seed "$t" fuzz/seeds/"$name"/*
done
if [[ " ${targets[*]} " == *" fuzz_gguf "* ]]; then
  for f in "$ref"/models/*.gguf "$ref"/tokenizer/*.gguf; do
    [[ -f "$f" ]] && head -c 65536 "$f" >"$corpus_root/fuzz_gguf/seed-head-$(basename "$f")"
  done
  if [[ -x build/attnsparse ]]; then
    for p in tiny tiny-gpt2 tiny-qwen2; do
      build/attnsparse synth --preset "$p" --dtype q8_0 --out "$corpus_root/fuzz_gguf/seed-$p.gguf" >/dev/null 2>&1 || true
    done
  fi
fi
if [[ " ${targets[*]} " == *" fuzz_corpus "* && -f "$ref/longbench/sample.jsonl" ]]; then
  { printf '\0'; head -c 4000 "$ref/longbench/sample.jsonl"; } >"$corpus_root/fuzz_corpus/seed-ref-longbench.jsonl"
fi

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
printf '%-22s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  log="$build/artifacts/$t.log"
  rc=0
  # -max_len: the largest seed is a whole tiny model; the readers map files of any size.
  "$build/$t" "$corpus_root/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len=262144 -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(find "$corpus_root/$t" -type f | wc -l)
  result=ok
  if ((rc != 0)); then
    result="FAILED (exit $rc, see $log)"
    status=1
  fi
  printf '%-22s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$files" "$result"
done
exit $status

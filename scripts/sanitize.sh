#!/usr/bin/env bash
# ASan + UBSan check (-fno-sanitize-recover=all: the first report fails the run): builds a
# separate clang-14 build directory (shared with scripts/fuzz.sh), runs the fast test
# suites of the input-handling code under the sanitizers, then every fuzz target for
# FUZZ_SECONDS (default 60) seconds.
# Usage: scripts/sanitize.sh            Environment: FUZZ_BUILD (default build-fuzz),
#        FUZZ_JOBS (build jobs, default 2), FUZZ_SECONDS (0 skips the fuzzers).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FUZZ_BUILD:-build-fuzz}
jobs=${FUZZ_JOBS:-2}
seconds=${FUZZ_SECONDS:-60}
start=$(date +%s)

if [[ ! -f "$build/CMakeCache.txt" ]]; then
  launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DATTNSPARSE_WITH_TORCH=OFF -DATTNSPARSE_FUZZ=ON -DATTNSPARSE_SANITIZE=address,undefined \
    "${launcher[@]}" >/dev/null
fi
suites=(test_core test_io test_corpus test_model test_analysis)
nice cmake --build "$build" -j"$jobs" --target attnsparse "${suites[@]}" >/dev/null
echo "sanitize: built in $(( $(date +%s) - start )) s" >&2

# The CLI tests run the sanitized binary too; leaks are reports like any other.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
run() {  # run SUITE FILTER
  local t0=$(date +%s)
  "$build/$1" --gtest_filter="$2" --gtest_brief=1
  echo "sanitize: $1 ($2) passed in $(( $(date +%s) - t0 )) s" >&2
}
run test_core '*'
run test_io '*'
run test_corpus '*'
run test_model 'Hostile*:HfModel*:Cli.*:Tokenizer*'
run test_analysis 'Hostile*:Plan*:Accumulator*'

if ((seconds > 0)); then
  FUZZ_BUILD="$build" FUZZ_JOBS="$jobs" scripts/fuzz.sh "$seconds"
fi
echo "sanitize: all passed in $(( $(date +%s) - start )) s" >&2

#!/usr/bin/env bash
# ASan + UBSan check (-fno-sanitize-recover=all: the first report fails the run), the
# sanitizer stage of .ci/run: builds the clang-14 tree of scripts/hardening_env.sh (shared
# with scripts/fuzz.sh) with only what the check needs - the libraries, the CLI, the fuzz
# targets and test_hardening (the test files of the input-handling code, CMakeLists.txt) -,
# runs those tests under the sanitizers, then every fuzz target for FUZZ_SECONDS seconds,
# FUZZ_PARALLEL targets at a time.
# Usage: scripts/sanitize.sh
# Environment: FUZZ_BUILD (default build-fuzz), FUZZ_JOBS (build jobs, default 2),
#   FUZZ_SECONDS (default 60; 0 skips the fuzzers), FUZZ_PARALLEL (default 1).
# Needs clang-14 (bash scripts/setup.sh --with-sanitizers installs what is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/hardening_env.sh
build=${FUZZ_BUILD:-build-fuzz}
jobs=${FUZZ_JOBS:-2}
seconds=${FUZZ_SECONDS:-60}
start=$(date +%s)
elapsed() { echo $(($(date +%s) - start)); }

hardening_configure "$build"
fuzzers=()
for f in fuzz/fuzz_*.cpp; do fuzzers+=("$(basename "$f" .cpp)"); done
nice cmake --build "$build" -j"$jobs" --target attnsparse test_hardening "${fuzzers[@]}" >/dev/null
echo "sanitize: built in $(elapsed) s" >&2

# The input-handling tests, all of test_hardening (the CLI tests run the sanitized binary
# too).
t0=$(date +%s)
"$build/test_hardening" --gtest_brief=1
echo "sanitize: test_hardening passed in $(($(date +%s) - t0)) s" >&2
echo "sanitize: suites passed at $(elapsed) s" >&2

if ((seconds > 0)); then
  FUZZ_BUILD="$build" FUZZ_NO_BUILD=1 scripts/fuzz.sh "$seconds"
fi
echo "sanitize: all passed in $(elapsed) s" >&2

# Sourced by scripts/fuzz.sh and scripts/sanitize.sh: the one clang-14 ASan + UBSan build
# tree both use (libFuzzer targets on, -fno-sanitize-recover=all: the first report aborts).
# Only what the hardening checks need is configured: no Python module, MPI plug-in or
# libtorch trainer. Line tables only (-gline-tables-only) are enough for symbolised
# sanitizer stack traces and keep the objects small. -O1, the level ASan's documentation
# recommends: it compiles 10-25% faster than -O2 (measured on tokenizer_hf.cpp and
# matmul_avx512.cpp), which is most of the CI stage's time. ccache is used when present.
# Provides: hardening_configure BUILD_DIR.

hardening_configure() {
  local build=$1
  if ! command -v clang++-14 >/dev/null; then
    echo "hardening: clang++-14 is missing; run: bash scripts/setup.sh --with-sanitizers" >&2
    return 1
  fi
  [[ -f "$build/CMakeCache.txt" ]] && return 0
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
    -DATTNSPARSE_WITH_TORCH=OFF -DATTNSPARSE_WITH_PYTHON=OFF -DATTNSPARSE_WITH_MPI=OFF \
    -DATTNSPARSE_FUZZ=ON -DATTNSPARSE_SANITIZE=address,undefined \
    "${launcher[@]}" >/dev/null
}

# Sanitizer options for every process the checks start (the CLI tests included): leaks
# are reports like any other, and every report ends the process with a non-zero status.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

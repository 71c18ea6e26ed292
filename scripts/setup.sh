#!/usr/bin/env bash
# Installs the Debian 12 packages attnsparse needs; idempotent: installs only what is
# missing and runs `apt-get update` only when something must be installed.
# Usage: scripts/setup.sh [--with-browser] [--with-sanitizers]
#   --with-browser     chromium, for the report test
#   --with-sanitizers  clang-14 with its sanitizer and libFuzzer runtimes and
#                      llvm-symbolizer, for scripts/sanitize.sh and scripts/fuzz.sh
set -euo pipefail

packages=(
  build-essential cmake make pkg-config
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev
  zlib1g-dev libomp-dev
  libopenblas-dev libsentencepiece-dev sentencepiece
  libtorch-dev
  bible-kjv jq
  libicu-dev
  python3-dev pybind11-dev python3-numpy python3-pytest
  libopenmpi-dev openmpi-bin
)
with_browser=${ATTNSPARSE_WITH_BROWSER:-0}
with_sanitizers=0
for arg in "$@"; do
  case $arg in
    --with-browser) with_browser=1 ;;
    --with-sanitizers) with_sanitizers=1 ;;
    *) echo "setup: unknown option '$arg' (expected --with-browser, --with-sanitizers)" >&2; exit 2 ;;
  esac
done
if [[ "$with_browser" == 1 ]]; then
  packages+=(chromium)
fi
if [[ "$with_sanitizers" == 1 ]]; then
  # libclang-rt-14-dev holds the ASan / UBSan / libFuzzer runtimes; llvm-14 the symbolizer
  # that puts file:line into sanitizer reports.
  packages+=(clang-14 libclang-rt-14-dev llvm-14)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done" >&2

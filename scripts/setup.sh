#!/usr/bin/env bash
# Installs the Debian 12 packages attnsparse needs; idempotent: installs only what is
# missing and runs `apt-get update` only when something must be installed.
# Usage: scripts/setup.sh [--with-browser]   (the browser is needed by the report test)
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
if [[ "${1:-}" == "--with-browser" || "${ATTNSPARSE_WITH_BROWSER:-0}" == "1" ]]; then
  packages+=(chromium)
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

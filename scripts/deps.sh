#!/usr/bin/env bash
# Installs the Debian packages Kaze's build and tests need, when missing.
# Safe to run again: it only calls apt-get when something is absent.
#   scripts/deps.sh          build
#   scripts/deps.sh test     also the peers and tools the tests run (make test)
#   scripts/deps.sh bench    also the peers `make bench` compares with
set -euo pipefail

packages=(
  cmake ninja-build gcc make pkg-config
  libssl-dev zlib1g-dev libcmocka-dev
  clang libclang-rt-14-dev
)
case "${1:-}" in
  test) packages+=(python3-websockets nodejs npm openssl chromium libnss3-tools) ;;
  bench) packages+=(python3-websockets nodejs npm openssl libwebsockets-dev util-linux) ;;
esac

missing=()
for p in "${packages[@]}"; do
  # NodeSource's nodejs package bundles npm and conflicts with Debian's npm.
  [ "$p" = npm ] && command -v npm >/dev/null && continue
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps: run as root or install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

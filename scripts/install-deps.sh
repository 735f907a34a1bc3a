#!/usr/bin/env bash
# Installs sluice's build and test dependencies from Debian's packages. Idempotent: when every
# package is already present it does nothing (no apt-get update), so `make test` stays fast.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config make python3
  liburing-dev libabsl-dev libboost-dev
  libconcurrentqueue-dev libreaderwriterqueue-dev
  libbenchmark-dev libgtest-dev libgmock-dev
  libcli11-dev libtomlplusplus-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

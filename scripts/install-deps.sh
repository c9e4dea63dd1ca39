#!/usr/bin/env bash
# Installs the Debian packages Strata needs to build and test, only when they
# are missing. Safe to run repeatedly; needs root (or sudo) only when something
# is actually missing.
set -euo pipefail

PACKAGES=(liblmdb-dev lmdb-utils liblua5.4-dev lua-cjson-dev pkg-config)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

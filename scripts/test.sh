#!/usr/bin/env bash
# Runs every test: installs missing system packages, then `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift test "$@"

#!/usr/bin/env bash
# Builds Strata (release) and runs `strata serve` with the default settings.
# Extra arguments go to `strata serve` (see `strata serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product strata
exec .build/release/strata serve "$@"

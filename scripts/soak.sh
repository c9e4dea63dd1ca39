#!/usr/bin/env bash
# The soak test (Tests/StrataCLITests/SoakTests.swift), alone: hostile
# clients beside a well-behaved one for SECONDS (default 8; CI runs 8).
# Prints the figures docs/reliability.md records; fails past its bounds.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
TEST_SOAK_SECONDS="${1:-8}" swift test --filter SoakTests 2>&1 | grep -E "soak:|✔ Test run|✘|error:"

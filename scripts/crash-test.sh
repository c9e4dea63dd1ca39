#!/usr/bin/env bash
# The crash-safety harness (Tests/StrataCLITests/CrashSafetyTests.swift) in
# its long form: KILLS SIGKILLs of the real server under a mixed workload
# (default 200; CI runs 10). It runs alone: in a full `swift test` it is
# skipped, and reported so. Prints the kills
# survived and what was checked. docs/reliability.md has the last figures.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
TEST_CRASH_KILLS="${1:-200}" swift test --filter CrashSafetyTests 2>&1 \
  | grep -E "crash safety:|✔|✘|error:" | grep -v "◇"

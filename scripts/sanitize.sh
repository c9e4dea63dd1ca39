#!/usr/bin/env bash
# Runs the whole test suite under a sanitizer:
#
#   scripts/sanitize.sh thread     # ThreadSanitizer (data races)
#   scripts/sanitize.sh address    # AddressSanitizer (memory errors)
#
# Each builds into its own folder (.build-thread, .build-address; the first
# build takes several minutes). The CLI tests run the instrumented `strata`
# binary too; every instrumented process writes its reports to
# .build-<kind>-reports/, and any report fails the run. TEST_SANITIZER tells
# timing-bound tests (the soak test) to stand aside: their bounds are for
# uninstrumented builds. (Test-only variables never start with STRATA_:
# `strata serve` refuses unknown STRATA_ variables.) Extra arguments go to
# `swift test` (e.g. --filter StrataStorageTests).
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: scripts/sanitize.sh thread|address [swift test arguments]}"
shift
reports="$PWD/.build-$kind-reports"
rm -rf "$reports" && mkdir -p "$reports"
case "$kind" in
  thread) export TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 log_path=$reports/tsan" ;;
  address) export ASAN_OPTIONS="detect_leaks=0 log_path=$reports/asan" ;;
  *) echo "unknown sanitizer '$kind': thread or address" >&2; exit 2 ;;
esac
scripts/install-deps.sh
export TEST_SANITIZER="$kind"
log=".build-$kind.log"
status=0
swift test --sanitize="$kind" --scratch-path ".build-$kind" "$@" 2>&1 | tee "$log" || status=$?
count=$(cat "$reports"/* 2>/dev/null | grep -c "WARNING: ThreadSanitizer\|ERROR: AddressSanitizer" || true)
echo "sanitizer $kind: swift test exit status $status; $count report(s) from the test process and the servers it ran (in $reports)"
[ "$status" -eq 0 ] && [ "$count" -eq 0 ]

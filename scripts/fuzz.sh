#!/usr/bin/env bash
# Fuzzes the frame decoder, the call state machine and the payload decoders
# with libFuzzer (Swift's -sanitize=fuzzer, plus AddressSanitizer).
#
#   scripts/fuzz.sh [SECONDS] [TARGET…]     # default: 20 seconds each, every target
#
# Targets: frames, calls, payloads, connections, client-connections (Sources/StrataFuzzing). Each starts from
# its saved inputs in Tests/StrataFuzzingTests/corpus/<target>/ and adds the
# new ones it finds to .build-fuzz/corpus/<target>/. A crash leaves
# crash-<hash> in .build-fuzz/ and fails the script: copy it into the saved
# inputs as regression-<what> (the test suite replays every saved input),
# fix the bug, and rerun. docs/reliability.md has the long run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
seconds="${1:-20}"
shift || true
targets=("$@")
[ "${#targets[@]}" -eq 0 ] && targets=(frames calls payloads connections client-connections)

# A separate build folder: every Swift module of the fuzzer is instrumented.
swift build --product strata-fuzz --scratch-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING
binary=".build-fuzz/debug/strata-fuzz"
for target in "${targets[@]}"; do
  corpus=".build-fuzz/corpus/$target"
  mkdir -p "$corpus"
  echo "fuzzing $target for ${seconds}s"
  log=".build-fuzz/$target.log"
  status=0
  (cd .build-fuzz && STRATA_FUZZ_TARGET="$target" "../$binary" -max_total_time="$seconds" -print_final_stats=1 \
     -max_len=4096 -timeout=10 "../$corpus" "../Tests/StrataFuzzingTests/corpus/$target") >"$log" 2>&1 || status=$?
  # The summary, not libFuzzer's progress lines (all of them are in $log).
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==ERROR|fuzz invariant|input \(hex\)|SUMMARY|Test unit written|artifact_prefix)" "$log" || true
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target failed (exit $status): see $log and the crash-* file in .build-fuzz/" >&2
    exit 1
  fi
done

#!/usr/bin/env bash
# Runs the protocol conformance suite (proto/conformance) against a freshly
# started `strata serve` (an ephemeral loopback port, a temporary data
# directory, a random server admin key), then the limits cases
# (proto/conformance/limits) against a second server with small limits.
# Stops both afterwards. Extra arguments go to the first run of
# `strata conformance` (e.g. --case streams.) and skip the limits run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --product strata
strata=".build/debug/strata"
data="$(mktemp -d)"
export STRATA_ADMIN_KEY="conformance-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# start_server NAME [ENV=VALUE …]: starts `strata serve` with those
# environment overrides and sets $port; registered for cleanup.
servers=()
start_server() {
  local name="$1"; shift
  local log="$data/$name.log"
  env "$@" "$strata" serve --host 127.0.0.1 --port 0 --metrics-port 0 --data "$data/$name" --durability relaxed >"$log" 2>&1 &
  local pid=$!
  servers+=("$pid")
  port=""
  for _ in $(seq 1 200); do
    port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\);.*/\1/p' "$log" | head -n1)"
    [ -n "$port" ] && return 0
    if ! kill -0 "$pid" 2>/dev/null; then cat "$log"; echo "strata serve ($name) exited" >&2; exit 1; fi
    sleep 0.05
  done
  cat "$log"; echo "strata serve ($name) did not report its port" >&2; exit 1
}
cleanup() {
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

# The suite, against a server with the default configuration.
start_server default
"$strata" conformance --server "127.0.0.1:$port" "$@"
# The limits cases, against a server with small limits (proto/conformance/limits).
if [ "$#" -eq 0 ]; then
  start_server limits STRATA_SERVER_MAX_CONNECTIONS=4 STRATA_SERVER_IDLE_TIMEOUT_SECONDS=2 \
    STRATA_SUBSCRIPTION_MAX_LAG_EVENTS=5 STRATA_SUBSCRIPTION_MAX_LAG_SECONDS=0
  "$strata" conformance --server "127.0.0.1:$port" --cases proto/conformance/limits
fi

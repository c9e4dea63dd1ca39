#!/usr/bin/env bash
# Runs the protocol conformance suite (proto/conformance) against a freshly
# started `strata serve`: an ephemeral loopback port, a temporary data
# directory, a random server admin key. Stops the server afterwards.
# Extra arguments go to `strata conformance` (e.g. --case streams.).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --product strata
strata=".build/debug/strata"
data="$(mktemp -d)"
log="$data/serve.log"
export STRATA_ADMIN_KEY="conformance-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
"$strata" serve --host 127.0.0.1 --port 0 --data "$data/data" --durability relaxed >"$log" 2>&1 &
server=$!
cleanup() {
  kill -TERM "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
port=""
for _ in $(seq 1 200); do
  port="$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\);.*/\1/p' "$log" | head -n1)"
  [ -n "$port" ] && break
  if ! kill -0 "$server" 2>/dev/null; then cat "$log"; echo "strata serve exited" >&2; exit 1; fi
  sleep 0.05
done
[ -n "$port" ] || { cat "$log"; echo "strata serve did not report its port" >&2; exit 1; }
"$strata" conformance --server "127.0.0.1:$port" "$@"

#!/usr/bin/env bash
# The README's demo: install what is missing, build wscore, start the echo
# server (`wscore echo`) on a free port, and do a client round trip with
# `wscore connect` — text out, echo back, normal close. Stops what it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
builddir=${1:-build}
bash .ci/install-deps
[ -d "$builddir" ] || meson setup "$builddir"
ninja -C "$builddir"
cli="$builddir/src/cli/wscore"

log=$(mktemp)
"$cli" echo --host 127.0.0.1 --port 0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do
  grep -q "listening on" "$log" && break
  sleep 0.05
done
addr=$(sed -n 's/.*listening on \([^ ]*\).*/\1/p' "$log" | head -n1)
[ -n "$addr" ] || { echo "echo server did not start:"; cat "$log"; exit 1; }
echo "echo server listening on $addr (pid $server)"
echo "client: sending two text messages to ws://$addr/demo and reading the echoes"
printf 'hello from wscore\nnaïve café ✓\n' | "$cli" connect "ws://$addr/demo"
kill -TERM "$server"
wait "$server" && echo "echo server stopped cleanly (SIGTERM -> close 1001 -> exit 0)"
trap - EXIT
rm -f "$log"

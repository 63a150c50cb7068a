#!/usr/bin/env bash
# scripts/demo.sh -- mcpsonde watching a real MCP server (make demo).
#
# Starts @modelcontextprotocol/server-everything under a small SDK client
# (tests/e2e/demo-client.mjs), attaches `build/mcpsonde attach -p PID` once the server runs,
# lets the client make a few calls, shows mcpsonde's output live, then cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

if (($(id -u) != 0)); then
	echo "demo.sh: needs root (mcpsonde loads eBPF programs): run it as root, e.g. sudo make demo" >&2
	exit 1
fi
if [[ ! -x build/mcpsonde || ! -d tests/node_modules ]]; then
	echo "demo.sh: build/mcpsonde or tests/node_modules missing: run make demo" >&2
	exit 1
fi

tmp=$(mktemp -d)
client_pid='' sonde_pid='' server_pid=''
cleanup() {
	local rc=$?
	if [[ -n $sonde_pid ]]; then kill -INT "$sonde_pid" 2>/dev/null || true; wait "$sonde_pid" 2>/dev/null || true; fi
	if [[ -n $client_pid ]]; then kill "$client_pid" 2>/dev/null || true; fi
	if [[ -n $server_pid ]]; then kill "$server_pid" 2>/dev/null || true; fi
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. scripts/lib.sh # wait_for

echo "demo: starting server-everything under an SDK client"
node tests/e2e/demo-client.mjs >"$tmp/client.out" &
client_pid=$!
wait_for "$tmp/client.out" '^SERVER_PID [0-9]+$' 30 || { echo "demo: the server did not start" >&2; exit 1; }
server_pid=$(sed -nE 's/^SERVER_PID ([0-9]+)$/\1/p' "$tmp/client.out")

echo "demo: server pid $server_pid is up and initialized; attaching: build/mcpsonde attach -p $server_pid"
build/mcpsonde attach -p "$server_pid" 2> >(tee "$tmp/sonde.err" >&2) &
sonde_pid=$!
wait_for "$tmp/sonde.err" '^mcpsonde: attached' 30 || { echo "demo: mcpsonde did not attach" >&2; exit 1; }

kill -USR1 "$client_pid"
wait "$client_pid" || true
client_pid=''
# The client closed the server's stdin: mcpsonde reports the exit and stops by itself when
# nothing it tracks is left; stop it if it is still there after a moment.
for ((i = 0; i < 20; i++)); do
	kill -0 "$sonde_pid" 2>/dev/null || break
	sleep 0.1
done
kill -INT "$sonde_pid" 2>/dev/null || true
wait "$sonde_pid" || true
sonde_pid=''
echo "demo: done"

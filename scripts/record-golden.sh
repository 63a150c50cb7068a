#!/usr/bin/env bash
# scripts/record-golden.sh -- re-records the golden capture and the outputs replay must reproduce.
#
#   sudo scripts/record-golden.sh
#
# Runs the fixed workload of tests/e2e/golden-client.mjs (server-everything under the SDK
# client), records it with `build/mcpsonde record`, and writes, from that capture:
#   tests/data/golden.msd     the capture
#   tests/data/golden.jsonl   `replay --json`
#   tests/data/golden.txt     `replay` (text, TZ=UTC)
#   tests/data/golden-values.jsonl  `replay --json --capture-values`
# tests/unit/test_golden.c replays the capture and compares both outputs byte for byte. Run this
# when the capture format changes (the record ABI), or when the output is meant to change, and
# commit the four files together after reading the diff of the two outputs.
set -euo pipefail
cd "$(dirname "$0")/.."

if (($(id -u) != 0)); then
	echo "record-golden.sh: needs root (record loads eBPF programs)" >&2
	exit 1
fi
make --no-print-directory all >/dev/null
[[ -d tests/node_modules ]] || scripts/setup.sh

tmp=$(mktemp -d)
client_pid='' rec_pid=''
cleanup() {
	local rc=$?
	[[ -z $rec_pid ]] || { kill -INT "$rec_pid" 2>/dev/null || true; wait "$rec_pid" 2>/dev/null || true; }
	[[ -z $client_pid ]] || kill "$client_pid" 2>/dev/null || true
	rm -rf "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

. scripts/lib.sh # wait_for

node tests/e2e/golden-client.mjs >"$tmp/client.out" &
client_pid=$!
wait_for "$tmp/client.out" '^SERVER_PID [0-9]+$' 30 || { echo "record-golden.sh: the server did not start" >&2; exit 1; }
server_pid=$(sed -nE 's/^SERVER_PID ([0-9]+)$/\1/p' "$tmp/client.out")

build/mcpsonde record -p "$server_pid" -o "$tmp/golden.msd" 2>"$tmp/record.err" &
rec_pid=$!
wait_for "$tmp/record.err" '^mcpsonde: attached' 30 || { cat "$tmp/record.err" >&2; exit 1; }
kill -USR1 "$client_pid"
wait "$client_pid"
client_pid=''
# record stops by itself once the server has exited.
for ((i = 0; i < 100; i++)); do
	kill -0 "$rec_pid" 2>/dev/null || break
	sleep 0.1
done
kill -INT "$rec_pid" 2>/dev/null || true
wait "$rec_pid"
rec_pid=''

install -m 0644 "$tmp/golden.msd" tests/data/golden.msd
TZ=UTC build/mcpsonde replay tests/data/golden.msd --json >tests/data/golden.jsonl
TZ=UTC build/mcpsonde replay tests/data/golden.msd >tests/data/golden.txt
TZ=UTC build/mcpsonde replay tests/data/golden.msd --json --capture-values >tests/data/golden-values.jsonl
echo "record-golden.sh: tests/data/golden.{msd,jsonl,txt} and golden-values.jsonl rewritten:"
wc -l tests/data/golden.jsonl tests/data/golden.txt tests/data/golden-values.jsonl

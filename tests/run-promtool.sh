#!/bin/sh
# run-promtool.sh -- checks the Prometheus rules and runs their unit tests (no root needed).
# Usage: tests/run-promtool.sh        (from anywhere; exits non-zero on any failure)
set -eu
cd "$(dirname "$0")/../deploy/prometheus"
if ! command -v promtool >/dev/null 2>&1; then
	echo "run-promtool: promtool not found (apt-get install prometheus)" >&2
	exit 1
fi
promtool check rules mcpsonde-rules.yml
promtool test rules mcpsonde-rules.test.yml

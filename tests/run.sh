#!/usr/bin/env bash
# tests/run.sh -- runs every test and ends with one line: "N passed, N failed".
#
# 1. unit: every build/tests/test_* (cmocka). Each test case counts: the "[  PASSED  ] N test(s)."
#    and "[  FAILED  ] N test(s)" summary lines of every group are added up. A binary that
#    crashes, hangs or exits non-zero without reporting a failed case counts one failure more.
# 2. alert rules: promtool check + promtool test rules over deploy/prometheus (one test).
# 3. fuzz seeds: every build/fuzz/fuzz_* (ASan, UBSan) runs its committed seeds once
#    (-runs=0), one test per target: a target that no longer builds or crashes on a seed fails
#    here, not months later in a long fuzzing run.
# 4. e2e: tests/e2e/*.test.mjs with node's test runner (TAP), one file at a time, each test
#    under a timeout. Needs root (eBPF): skipped with a reason when not root, a failure when
#    not root under CI.
# Exits non-zero when anything failed. Build first (make test does: setup, build, this).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}          # seconds per unit binary
E2E_FILE_TIMEOUT=${E2E_FILE_TIMEOUT:-600}  # seconds per e2e file
E2E_TEST_TIMEOUT_MS=${E2E_TEST_TIMEOUT_MS:-180000}

passed=0
failed=0
failures=()

fail() { failed=$((failed + 1)); failures+=("$1"); }

# ---------------------------------------------------------------- unit (cmocka)
echo "== unit tests"
shopt -s nullglob
unit_bins=()
for f in build/tests/test_*; do
	[[ -f $f && -x $f && ${f##*/} != *.* ]] && unit_bins+=("$f")
done
if ((${#unit_bins[@]} == 0)); then
	echo "unit: no test binaries in build/tests (nothing to run)"
fi
for bin in "${unit_bins[@]}"; do
	name=${bin##*/}
	out=$(CMOCKA_MESSAGE_OUTPUT=STDOUT timeout --kill-after=5 "$UNIT_TIMEOUT" "$bin" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed "s/^/  [$name] /"
	p=0 f=0
	while read -r n; do p=$((p + n)); done < <(printf '%s\n' "$out" | sed -nE 's/^\[  PASSED  \] ([0-9]+) test\(s\)\..*/\1/p')
	while read -r n; do f=$((f + n)); done < <(printf '%s\n' "$out" | sed -nE 's/^\[  FAILED  \] ([0-9]+) test\(s\).*/\1/p')
	passed=$((passed + p))
	failed=$((failed + f))
	while read -r t; do failures+=("$name: $t"); done < <(printf '%s\n' "$out" | sed -nE 's/^\[  FAILED  \] ([^0-9 ][^ ]*)$/\1/p' | sort -u)
	if ((rc == 124 || rc == 137)); then
		fail "$name: timed out after ${UNIT_TIMEOUT}s"
	elif ((rc > 128)); then
		fail "$name: crashed (signal $((rc - 128)))"
	elif ((rc != 0 && f == 0)); then
		fail "$name: exit status $rc with no failed test reported"
	elif ((p + f == 0)); then
		fail "$name: ran no test"
	fi
done

# ---------------------------------------------------------------- Prometheus rules (promtool)
echo "== alert rules"
if out=$(tests/run-promtool.sh 2>&1); then
	printf '%s\n' "$out" | sed 's/^/  [promtool] /'
	passed=$((passed + 1))
else
	printf '%s\n' "$out" | sed 's/^/  [promtool] /'
	fail "promtool: deploy/prometheus rules check or unit tests"
fi

# ---------------------------------------------------------------- fuzz targets on their seeds
echo "== fuzz seeds"
for name in $(sed -nE 's|^tests/fuzz/(fuzz_[a-z_]+)\.c$|\1|p' < <(printf '%s\n' tests/fuzz/fuzz_*.c)); do
	bin=build/fuzz/$name seeds=tests/fuzz/corpus/${name#fuzz_}
	if [[ ! -x $bin ]]; then
		echo "  [$name] not built"
		fail "$name: not built"
		continue
	fi
	if out=$(timeout --kill-after=5 "$UNIT_TIMEOUT" "$bin" -runs=0 $([[ -d $seeds ]] && echo "$seeds") 2>&1); then
		printf '%s\n' "$out" | grep -E 'INITED|DONE' | sed "s/^/  [$name] /"
		passed=$((passed + 1))
	else
		printf '%s\n' "$out" | tail -n 20 | sed "s/^/  [$name] /"
		fail "$name: failed on its committed seeds"
	fi
done

# ---------------------------------------------------------------- e2e (node --test)
echo "== e2e tests"
e2e_files=(tests/e2e/*.test.mjs)
if (($(id -u) != 0)); then
	if [[ -n ${CI:-} ]]; then
		echo "e2e: cannot run: not root (eBPF needs root), and CI is set"
		fail "e2e: not run (not root under CI)"
	else
		echo "e2e: skipped: needs root (eBPF); run as root to include them"
	fi
elif [[ ! -d tests/node_modules ]]; then
	echo "e2e: tests/node_modules is missing: run scripts/setup.sh"
	fail "e2e: not run (tests/node_modules missing)"
else
	for file in "${e2e_files[@]}"; do
		name=${file#tests/e2e/}
		tap=$(timeout --kill-after=10 "$E2E_FILE_TIMEOUT" node --test --test-reporter=tap \
			--test-timeout="$E2E_TEST_TIMEOUT_MS" --test-concurrency=1 "$file" 2>&1)
		rc=$?
		printf '%s\n' "$tap" | sed "s/^/  [$name] /"
		p=$(printf '%s\n' "$tap" | sed -nE 's/^# pass ([0-9]+)$/\1/p' | tail -n1)
		f=$(printf '%s\n' "$tap" | sed -nE 's/^# fail ([0-9]+)$/\1/p' | tail -n1)
		c=$(printf '%s\n' "$tap" | sed -nE 's/^# cancelled ([0-9]+)$/\1/p' | tail -n1)
		if [[ -z $p || -z $f ]]; then
			fail "$name: no TAP summary (exit status $rc)"
			continue
		fi
		passed=$((passed + p))
		failed=$((failed + f + ${c:-0}))
		# Top-level "not ok N - name" lines name the failed tests.
		while read -r t; do failures+=("$name: $t"); done < <(printf '%s\n' "$tap" | sed -nE 's/^not ok [0-9]+ - (.*)$/\1/p')
		if ((rc != 0 && f + ${c:-0} == 0)); then
			fail "$name: exit status $rc with no failed test reported"
		fi
	done
fi

echo
if ((${#failures[@]})); then
	echo "failed:"
	printf '  %s\n' "${failures[@]}"
fi
echo "$passed passed, $failed failed"
((failed == 0))

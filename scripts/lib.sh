# scripts/lib.sh -- shell helpers shared by the scripts (sourced, not run).

# wait_for FILE REGEX SECONDS: polls FILE every 100 ms until a line matches REGEX.
wait_for() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -Eq "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

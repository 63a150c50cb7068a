#!/usr/bin/env bash
# bench.sh -- what observing costs MCP servers, and how much traffic mcpsonde keeps up with.
#
#   sudo make bench                      # or: sudo scripts/bench.sh [options]
#
# Workloads: the raw pump (build/tools/pump) over a pipe pair and over AF_UNIX socketpairs,
# 256 B / 4 KiB / 64 KiB / 1 MiB messages, lockstep and 64 in flight; the real
# server-everything echo tool driven by the official SDK client (bench/sdk-bench.mjs),
# sequential and 64 in flight, over stdio (sdk/*) and over Streamable HTTP on 127.0.0.1
# (http/*: the server in streamableHttp mode, StreamableHTTPClientTransport as the client).
# Conditions: none (no observer); floor (mcpsonde's programs attached to the same hooks but
# returning at once, build/tools/floor: what the tracepoints themselves cost); untracked
# (mcpsonde attached to an idle process while the workload runs: what every other process on
# the node pays); tracked (mcpsonde attached to the server); paused (tracked, but mcpsonde
# stopped by SIGSTOP while the traffic runs, with a ring buffer that holds all of it, and
# resumed after: what the traced process pays in its own syscalls for the copies, without
# mcpsonde reading beside it; 256 B and stdio server-everything rows, whose whole run fits its
# 256 MiB ring); watch (mcpsonde watch --all, the workload's processes excluded by selector:
# what every process on a node pays when mcpsonde runs as a node agent and the process is
# not an MCP server); strace (strace -f on the server, full read/write payloads to a file);
# socat (a relay between client and server, as a wrapping proxy sits; not HTTP workloads);
# nginx (HTTP workloads only: Debian's nginx as a reverse proxy in front of the server, the
# client talking to nginx, no observer); nginx-tracked (the same, and mcpsonde attached to the
# server, which then sees nginx's upstream connections, not the client's). A condition that does
# not apply to a workload is not run for it, and its cell in the table is empty.
#
# Every repetition runs every workload under every condition, the order of the conditions
# rotating from one repetition to the next, so that drift (other jobs on the machine,
# thermal, caches) falls on all conditions alike; medians of the repetitions are reported,
# as ratios to "none" (nginx-tracked's to "nginx": what tracking adds behind the proxy). The workload (client, server, relay) is pinned to --cpus; observers
# (mcpsonde, strace) are not: they run wherever the scheduler puts them, as on a real node.
#
# For every mcpsonde run: its CPU (all threads, /proc/PID/task/*/schedstat) and peak RSS
# (VmHWM) between go and the moment it has reported every call; and, tracked, the correctness
# check: calls reported == calls made, or the loss events say why not. BPF run time per
# invocation comes from one more repetition of the conditions that load programs, run with
# kernel.bpf_stats_enabled=1 (read from /proc/PID/fdinfo; the setting is restored on exit):
# the kernel's stats read the clock twice around every program run, which costs the traced
# syscalls more than some programs do, so the throughput repetitions run without them and the
# stats repetition's throughput is not used. Last, a ramp of 1 KiB messages at increasing --rate, until
# the first loss. Raw results: one JSON object per run in the work directory, summarised by
# bench/summarize.mjs into bench/results.md.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SONDE=$REPO/build/mcpsonde
PUMP=$REPO/build/tools/pump
FLOOR=$REPO/build/tools/floor
SDK_BENCH=$REPO/bench/sdk-bench.mjs
PAUSED_RING_MB=256 # the paused condition's ring: a whole run of its rows fits
EVERYTHING=$REPO/tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js

reps=5
pump_time=0.5
sdk_time=1
ramp_time=2
ramp_rates="10000 25000 50000 75000 100000 150000 200000 300000 400000"
cpus=0
conditions="none floor untracked watch tracked paused strace socat nginx nginx-tracked"
only=
do_ramp=1
do_sdk=1
do_http=1
bpf_stats=1
keep=0
sonde_args=
out=$REPO/bench/results.md
cmdline="$0 $*"

usage() {
	cat <<EOF
usage: scripts/bench.sh [options]
  --quick             one repetition, short runs, short ramp (for development)
  --reps N            repetitions of every (workload, condition) (default $reps), and one more
                      of the conditions with programs, with the kernel's BPF stats on
  --time SEC          traffic per pump run (default $pump_time)
  --sdk-time SEC      traffic per server-everything run (default $sdk_time)
  --ramp-time SEC     traffic per ramp step (default $ramp_time)
  --ramp-rates LIST   msgs/s, ascending, space-separated (default "$ramp_rates")
  --conditions LIST   comma-separated subset of: ${conditions// /,}
                      (nginx-tracked's ratio is to nginx: keep both)
  --only REGEX        only the workloads whose id matches (e.g. 'pipe/256', 'sdk', 'http'; ids:
                      pump/TRANSPORT/SIZE/wWINDOW, sdk/wWINDOW (stdio), http/wWINDOW; the ramp's
                      is pump/pipe/1024/w256)
  --cpus LIST|none    pin the workload to these CPUs (taskset -c; default $cpus)
  --no-ramp, --no-sdk, --no-http, --no-bpf-stats
                      (--no-sdk: no server-everything over stdio; --no-http: none over HTTP;
                      --no-bpf-stats: no stats repetition, no BPF figures)
  --out FILE          the Markdown table (default bench/results.md)
  --keep              keep the work directory (raw JSON, mcpsonde and strace output)
  --sonde-args ARGS   extra options for mcpsonde attach (e.g. "--ringbuf-mb 64"; for development)
EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--quick) reps=1 pump_time=0.25 sdk_time=0.5 ramp_time=0.5 ramp_rates="25000 50000 100000 200000" ;;
	--reps) reps=$2; shift ;;
	--time) pump_time=$2; shift ;;
	--sdk-time) sdk_time=$2; shift ;;
	--ramp-time) ramp_time=$2; shift ;;
	--ramp-rates) ramp_rates=$2; shift ;;
	--conditions) conditions=${2//,/ }; shift ;;
	--only) only=$2; shift ;;
	--cpus) cpus=$2; shift ;;
	--no-ramp) do_ramp=0 ;;
	--no-sdk) do_sdk=0 ;;
	--no-http) do_http=0 ;;
	--no-bpf-stats) bpf_stats=0 ;;
	--out) out=$2; shift ;;
	--keep) keep=1 ;;
	--sonde-args) sonde_args=$2; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Programs named like mcpsonde's, loaded before the bench starts: a running mcpsonde, or a
# detach child that did not end (it once kept its own end of the pipe it waits on).
foreign_sets() {
	bpftool prog show 2>/dev/null | grep -c ' name sys_exit_read ' || true
}

[ -x "$PUMP" ] || die "$PUMP is missing: run make bench (or make build/tools/pump)"
if [ "$(id -u)" = 0 ] && command -v bpftool >/dev/null; then
	n=$(foreign_sets)
	[ "$n" = 0 ] || die "$n set(s) of mcpsonde's programs are already loaded (a running mcpsonde or mcpsonde-detach): every syscall pays for them, so would every figure; stop them first"
fi
command -v node >/dev/null || die "node is required"

# mcpsonde conditions need root and the binary; without them the others still run, and the
# table says what was skipped.
skipped=
sonde_ok=1
if [ ! -x "$SONDE" ]; then
	sonde_ok=0 skipped="$SONDE does not exist"
elif [ "$(id -u)" != 0 ]; then
	sonde_ok=0 skipped="not root"
fi
want=
for c in $conditions; do
	case $c in
	untracked | watch | tracked | paused) [ $sonde_ok = 1 ] || { log "skipping $c: $skipped"; continue; } ;;
	floor)
		[ $sonde_ok = 1 ] || { log "skipping floor: $skipped"; continue; }
		[ -x "$FLOOR" ] || { log "skipping floor: $FLOOR is missing (make bench builds it)"; continue; }
		;;
	strace) command -v strace >/dev/null || { log "skipping strace: not installed"; continue; } ;;
	socat) command -v socat >/dev/null || { log "skipping socat: not installed"; continue; } ;;
	nginx | nginx-tracked)
		[ $c = nginx ] || [ $sonde_ok = 1 ] || { log "skipping $c: $skipped"; continue; }
		PATH=$PATH:/usr/sbin command -v nginx >/dev/null || { log "skipping $c: nginx is not installed"; continue; }
		;;
	none) ;;
	*) die "unknown condition $c" ;;
	esac
	want="$want $c"
done
conditions=${want# }
[ -n "$conditions" ] || die "no condition left to run"
[[ " $conditions " == *" tracked "* ]] || do_ramp=0
# The ramp is a workload too (pump/pipe/1024/w256): --only selects it or leaves it out.
ramp_id=pump/pipe/1024/w256
[ -z "$only" ] || [[ $ramp_id =~ $only ]] || do_ramp=0
if [ $((do_sdk + do_http)) -gt 0 ] && [ ! -f "$EVERYTHING" ]; then
	log "skipping server-everything: $EVERYTHING is missing (npm ci in tests/)"
	do_sdk=0 do_http=0
fi

pin=()
[ "$cpus" = none ] || pin=(taskset -c "$cpus")

work=$(mktemp -d /tmp/mcpsonde-bench.XXXXXX)
raw=$work/raw.jsonl
: >"$raw"
declare -A children=() # started and not yet reaped: the only pids cleanup may signal
declare -A groups=()   # workloads run in their own process group (setsid): client, relay, server
bpf_stats_prev=

cleanup() {
	local p
	for p in "${!groups[@]}"; do
		kill -KILL -- "-$p" 2>/dev/null || true
	done
	for p in "${!children[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	if [ -n "$bpf_stats_prev" ]; then
		sysctl -q -w kernel.bpf_stats_enabled="$bpf_stats_prev" >/dev/null || true
	fi
	if [ $keep = 1 ]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Off for the throughput repetitions (see the top), on for the stats repetition.
bpf_stats_prev=$(sysctl -n kernel.bpf_stats_enabled)
stats_on=0
sysctl -q -w kernel.bpf_stats_enabled=0 >/dev/null

now_ms() { date +%s%3N; }

# wait_until TIMEOUT_S CMD...: polls CMD every 20 ms.
wait_until() {
	local end=$(($(now_ms) + ${1%.*} * 1000))
	shift
	until "$@"; do
		[ "$(now_ms)" -lt $end ] || return 1
		sleep 0.02
	done
}

alive() { kill -0 "$1" 2>/dev/null; }
dead() { ! alive "$1"; }
reap() { # wait for a child; its status in $reaped
	reaped=0
	wait "$1" 2>/dev/null || reaped=$?
	unset "children[$1]"
}
json_str() { printf '"%s"' "$(printf '%s' "$1" | tr -c '[:print:]' ' ' | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
file_ready() { [ -s "$1" ] || ! alive "$2"; }
line_ready() { [ "$(tail -c 1 "$1" 2>/dev/null)" = "" ] && [ -s "$1" ] || ! alive "$2"; }
sonde_ready() { grep -Eq '^mcpsonde: (attached|watching)' "$1" 2>/dev/null || ! alive "$2"; }
floor_ready() { grep -q '^floor: attached' "$1" 2>/dev/null || ! alive "$2"; }
strace_ready() { grep -q ' attached' "$1" 2>/dev/null || ! alive "$2"; }

# JSON number field of a one-line object (our own outputs: flat, compact).
jfield() { grep -o "\"$2\":[-0-9.]*" <<<"$1" | head -1 | cut -d: -f2 || true; }

# CPU time of a process, all threads, in ns; then utime and stime in ns (clock ticks).
proc_cpu() {
	local pid=$1 sum=0 t f
	for f in /proc/"$pid"/task/*/schedstat; do
		read -r t _ <"$f" 2>/dev/null || continue
		sum=$((sum + t))
	done
	local hz
	hz=$(getconf CLK_TCK)
	awk -v sum=$sum -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%d %d %d\n", sum, $12 * 1e9 / hz, $13 * 1e9 / hz }' \
		/proc/"$pid"/stat
}

# The BPF programs a process holds: "prog_id run_time_ns run_cnt" per program.
bpf_progs() {
	local f
	for f in /proc/"$1"/fdinfo/*; do
		awk '/^prog_id:/ { id = $2 } /^run_time_ns:/ { t = $2 } /^run_cnt:/ { c = $2 }
		     END { if (id != "" && t != "") print id, t, c }' "$f" 2>/dev/null
	done | sort -un
}

# kernel.bpf_stats_enabled is global: anything else on the machine may change it. A run
# during which it was found otherwise than the repetition wants has no BPF figures (stats
# repetition) or measured the stats' cost too (throughput): it is set back for the next.
bpf_stats_check() {
	[ "$(sysctl -n kernel.bpf_stats_enabled)" = $stats_on ] && return 0
	log "kernel.bpf_stats_enabled was changed by something else: setting it back to $stats_on"
	sysctl -q -w kernel.bpf_stats_enabled=$stats_on >/dev/null
	return 1
}

# "id name" of every loaded BPF program: one bpftool call per run.
prog_names() { bpftool prog show 2>/dev/null | awk '/^[0-9]+:/ { for (i = 2; i < NF; i++) if ($i == "name") print $1 + 0, $(i + 1) }'; }

# JSON array of per-program deltas between two bpf_progs snapshots.
bpf_delta_json() {
	local before=$1 after=$2 names id t c t0 c0 sep= name
	names=$(prog_names)
	printf '['
	while read -r id t c; do
		read -r _ t0 c0 < <(awk -v id="$id" '$1 == id' <<<"$before") || true
		t0=${t0:-0} c0=${c0:-0}
		[ $((c - c0)) -gt 0 ] || continue
		name=$(awk -v id="$id" '$1 == id { print $2 }' <<<"$names")
		printf '%s{"id":%s,"name":"%s","run_time_ns":%s,"run_cnt":%s}' "$sep" "$id" "${name:-?}" $((t - t0)) $((c - c0))
		sep=,
	done <<<"$after"
	printf ']'
}

calls_in() { grep -c '"type":"call"' "$1" 2>/dev/null || true; }

# The JSON object describing what mcpsonde saw and cost in one run.
sonde_json() {
	local jsonl=$1 cpu0=$2 cpu1=$3 hwm=$4 bpf=$5 lag_ms=$6 rc=$7
	local calls ok oversized loss unused reserved fullest ring
	calls=$(calls_in "$jsonl")
	ok=$(grep '"type":"call"' "$jsonl" | grep -c '"status":"ok"' || true)
	oversized=$(grep '"type":"call"' "$jsonl" | grep -c '"oversized":true' || true)
	# Loss events summed by reason: {reason, events, records, bytes}.
	loss=$(grep '"type":"loss"' "$jsonl" | awk '
		{ r = $0; sub(/.*"reason":"/, "", r); sub(/".*/, "", r)
		  rec = 0; if (match($0, /"records":[0-9]+/)) rec = substr($0, RSTART + 10, RLENGTH - 10)
		  b = 0; if (match($0, /"bytes":[0-9]+/)) b = substr($0, RSTART + 8, RLENGTH - 8)
		  n[r]++; recs[r] += rec; bytes[r] += b }
		END { for (r in n) { printf "%s{\"reason\":\"%s\",\"events\":%d,\"records\":%.0f,\"bytes\":%.0f}", sep, r, n[r], recs[r], bytes[r]; sep = "," } }' || true)
	read -r c0 u0 s0 <<<"$cpu0"
	read -r c1 u1 s1 <<<"$cpu1"
	# Ring buffer bytes reserved for data records, and how many of them the records left
	# unused (size classes), from the line mcpsonde prints when it stops.
	read -r unused reserved < <(sed -nE 's/.*ring: [0-9]+ records, ([0-9]+) of ([0-9]+) bytes reserved unused.*/\1 \2/p' \
		"${jsonl%.jsonl}.err" 2>/dev/null) || true
	# The ring buffer's largest backlog (what a drain found waiting) and its size.
	read -r fullest ring < <(sed -nE 's/.*, fullest ([0-9]+) of ([0-9]+) bytes.*/\1 \2/p' "${jsonl%.jsonl}.err" 2>/dev/null) || true
	printf '{"calls":%s,"calls_ok":%s,"oversized":%s,"loss":[%s],"cpu_ns":%s,"utime_ns":%s,"stime_ns":%s,"vmhwm_kb":%s,"bpf":%s,"lag_ms":%s,"ring_reserved":%s,"ring_unused":%s,"ring_fullest":%s,"ring_size":%s,"exit":%s}' \
		"${calls:-0}" "${ok:-0}" "${oversized:-0}" "$loss" $((c1 - c0)) $((u1 - u0)) $((s1 - s0)) "${hwm:-0}" "$bpf" "$lag_ms" \
		"${reserved:-0}" "${unused:-0}" "${fullest:-null}" "${ring:-null}" "$rc"
}

stop_child() { # SIGINT, then SIGKILL after 10 s; its exit status in $reaped
	kill -INT "$1" 2>/dev/null || true
	wait_until 10 dead "$1" || kill -KILL "$1" 2>/dev/null || true
	reap "$1"
}

# mcpsonde exits at once and leaves the kernel's removal of its tracepoints (1-2 s) to a
# child that holds its programs: the next run must not start while they still run.
progs_gone() {
	local id
	for id in $1; do
		! bpftool prog show id "$id" >/dev/null 2>&1 || return 1
	done
}
stop_sonde() { # stop_child, then wait (10 s at most) until its BPF programs are gone
	local ids
	ids=$(bpf_progs "$1" | awk '{ print $1 }')
	stop_child "$1"
	# Programs left behind would run for every syscall of every later run: no figure after
	# that would be true.
	wait_until 10 progs_gone "$ids" || die "mcpsonde's BPF programs still loaded 10 s after it exited (ids: $ids)"
}


# applies ID COND: whether condition COND is run for workload ID. The relays differ by
# transport: socat relays byte streams (pump, stdio), nginx relays HTTP.
applies() {
	case $2 in
	socat) [[ $1 != http/* ]] ;;
	floor) [[ $1 != http/* ]] ;; # the hooks' own cost: the pump and stdio rows show it
	paused) [[ $1 == pump/*/256/* || $1 == sdk/* ]] ;; # the run must fit PAUSED_RING_MB
	nginx | nginx-tracked) [[ $1 == http/* ]] ;;
	*) true ;;
	esac
}

# run_one ID COND REP [RATE]: one run of workload ID under COND; appends one JSON line to $raw.
# ID: pump/TRANSPORT/SIZE/wWINDOW, sdk/wWINDOW (stdio) or http/wWINDOW.
run_one() {
	local id=$1 cond=$2 rep=$3 rate=${4:-0}
	local d=$work/run.$((++run_no))
	local time=$pump_time cmd=() cpid spid mpid= tpid= idle= target= err= sonde=null strace_bytes=null
	mkdir -p "$d"
	IFS=/ read -r kind a b c <<<"$id"
	if [ "$kind" = pump ]; then
		[ "$rate" = 0 ] || time=$ramp_time
		cmd=("${pin[@]}" "$PUMP" -t "$a" -s "$b" -w "${c#w}" -n 0 -T "$time" --pid-file "$d/pid" --wait-go)
		[ "$rate" = 0 ] || cmd+=(-r "$rate")
	else
		time=$sdk_time
		cmd=("${pin[@]}" node "$SDK_BENCH" --window "${a#w}" --max-time "$time" --pid-file "$d/pid" --wait-go)
		[ "$kind" = sdk ] || cmd+=(--transport http)
	fi
	case $cond in
	socat) cmd+=(--relay socat) ;;
	nginx | nginx-tracked) cmd+=(--relay nginx) ;;
	esac

	local t_run
	t_run=$(now_ms)
	setsid "${cmd[@]}" >"$d/out" 2>"$d/err" &
	cpid=$!
	children[$cpid]=1
	groups[$cpid]=1
	if ! wait_until 60 file_ready "$d/pid" "$cpid" || [ ! -s "$d/pid" ]; then
		err="the workload did not start"
	else
		spid=$(cat "$d/pid")
		case $cond in
		untracked | tracked | paused | nginx-tracked)
			local extra=()
			[ "$cond" != paused ] || extra=(--ringbuf-mb "$PAUSED_RING_MB")
			if [ "$cond" = untracked ]; then
				sleep 3600 &
				idle=$!
				children[$idle]=1
				target=$idle
			else
				target=$spid
			fi
			"$SONDE" attach -p "$target" --json "${extra[@]}" $sonde_args >"$d/sonde.jsonl" 2>"$d/sonde.err" &
			mpid=$!
			children[$mpid]=1
			wait_until 60 sonde_ready "$d/sonde.err" "$mpid" || true
			alive "$mpid" || err="mcpsonde exited: $(tail -c 300 "$d/sonde.err")"
			[ "$cond" != paused ] || [ -n "$err" ] || kill -STOP "$mpid"
			;;
		watch)
			# The workload's programs (the pump's two halves; node for server-everything) are
			# excluded, so discovery judges them once and then only looks their verdict up.
			"$SONDE" watch --all --exclude comm=pump --exclude comm=node --json $sonde_args \
				>"$d/sonde.jsonl" 2>"$d/sonde.err" &
			mpid=$!
			children[$mpid]=1
			wait_until 60 sonde_ready "$d/sonde.err" "$mpid" || true
			alive "$mpid" || err="mcpsonde exited: $(tail -c 300 "$d/sonde.err")"
			;;
		floor)
			# Its BPF figures and its stop go through mpid, like mcpsonde's.
			"$FLOOR" 2>"$d/floor.err" &
			mpid=$!
			: >"$d/sonde.jsonl"
			children[$mpid]=1
			wait_until 60 floor_ready "$d/floor.err" "$mpid" || true
			alive "$mpid" || err="floor exited: $(tail -c 300 "$d/floor.err")"
			;;
		strace)
			# Full payloads: -s covers the largest syscall (1 MiB), as strings; -f attaches
			# every thread of the server (Node's too) and follows its children. Over HTTP, the
			# socket calls other runtimes use and the connections' lifecycle too.
			local trace=read,write,readv,writev
			[ "$kind" != http ] || trace=$trace,recvfrom,sendto,recvmsg,sendmsg,accept,accept4,connect,close,shutdown
			strace -f -p "$spid" -o "$d/strace.out" -e trace=$trace -s 16777216 \
				2>"$d/strace.err" &
			tpid=$!
			children[$tpid]=1
			wait_until 60 strace_ready "$d/strace.err" "$tpid" || true
			sleep 0.1 # the other threads' attach lines follow the first
			alive "$tpid" || err="strace exited: $(tail -c 300 "$d/strace.err")"
			;;
		esac
	fi

	local cpu0= bpf0= t_end lag_ms=0 rc=0 out
	bpf_stats_check || true
	if [ -z "$err" ] && [ -n "$mpid" ]; then
		cpu0=$(proc_cpu "$mpid")
		bpf0=$(bpf_progs "$mpid")
	fi
	# Go; the results line comes when the traffic is over, and the server stays alive (so do
	# the observers attached to it) until the second signal.
	if [ -z "$err" ]; then
		kill -USR2 "$cpid"
		wait_until 600 line_ready "$d/out" "$cpid" || err="the workload did not finish in 600 s"
	fi
	[ "$cond" != paused ] || [ -z "$mpid" ] || kill -CONT "$mpid" 2>/dev/null || true
	out=$(head -1 "$d/out")
	[[ $out == "{"* ]] || out=
	[ -n "$err" ] || [ -n "$out" ] || err="the workload failed: $(tail -c 300 "$d/err")"

	if [ -n "$mpid" ]; then
		local done_n cpu1 hwm bpf1 n prev=-1 stable=0 mrc
		done_n=$(jfield "$out" done)
		done_n=${done_n:-0}
		t_end=$(now_ms)
		# Drain: mcpsonde has reported every call, or nothing new came for a second.
		if [ "$cond" = tracked ] || [ "$cond" = paused ] || [ "$cond" = nginx-tracked ]; then
			while alive "$mpid"; do
				n=$(calls_in "$d/sonde.jsonl")
				[ "${n:-0}" -lt "$done_n" ] || break
				if [ "$n" = "$prev" ]; then
					stable=$((stable + 1))
					[ $stable -lt 10 ] || break
				else
					stable=0 prev=$n
				fi
				sleep 0.05
			done
		fi
		lag_ms=$(($(now_ms) - t_end))
		if alive "$mpid" && [ -n "$cpu0" ]; then
			local bpf
			cpu1=$(proc_cpu "$mpid")
			hwm=$(awk '/^VmHWM:/ { print $2 }' /proc/"$mpid"/status)
			bpf1=$(bpf_progs "$mpid")
			bpf=$(bpf_delta_json "$bpf0" "$bpf1") # names while the programs exist
			[ $stats_on = 0 ] || bpf_stats_check || bpf='"disabled during the run"'
			stop_sonde "$mpid"
			sonde=$(sonde_json "$d/sonde.jsonl" "$cpu0" "$cpu1" "$hwm" "$bpf" "$lag_ms" "$reaped")
		else
			stop_sonde "$mpid"
			[ -n "$err" ] || err="mcpsonde died during the run (exit $reaped): $(tail -c 300 "$d/sonde.err")"
		fi
	fi
	# A throughput run during which the stats were turned on measured their cost too.
	[ $stats_on = 1 ] || bpf_stats_check || err=${err:-"kernel.bpf_stats_enabled was turned on during the run"}
	if [ -z "$err" ]; then
		kill -USR2 "$cpid" 2>/dev/null || true
		wait_until 60 dead "$cpid" || kill -KILL -- "-$cpid" 2>/dev/null || true
	else
		kill -KILL -- "-$cpid" 2>/dev/null || true
	fi
	reap "$cpid"
	rc=$reaped
	# Whatever of the group outlived the client (a relay or server that missed EOF) goes too.
	kill -KILL -- "-$cpid" 2>/dev/null || true
	unset "groups[$cpid]"
	[ -n "$err" ] || [ $rc = 0 ] || err="workload exit $rc: $(tail -c 300 "$d/err")"
	if [ -n "$tpid" ]; then
		stop_child "$tpid"
		strace_bytes=$(stat -c %s "$d/strace.out" 2>/dev/null || echo null)
	fi
	if [ -n "$idle" ]; then
		kill "$idle" 2>/dev/null || true
		reap "$idle"
	fi

	printf '{"workload":"%s","condition":"%s","rep":%s,"bpf_stats":%s,"rate":%s,"client":%s,"sonde":%s,"strace_bytes":%s,"error":%s}\n' \
		"$id" "$cond" "$rep" "$([ $stats_on = 1 ] && echo true || echo false)" "$rate" "${out:-null}" "$sonde" "$strace_bytes" \
		"$([ -n "$err" ] && json_str "$err" || echo null)" >>"$raw"
	local mps
	mps=$(jfield "$out" msgs_per_s)
	if [ -n "$err" ]; then
		log "$(printf '%-18s %-9s rep %s: ERROR %s' "$id" "$cond" "$rep" "$err")"
	else
		log "$(printf '%-18s %-9s rep %s (%5.1f s): %10.0f msgs/s%s' "$id" "$cond" "$rep" \
			"$(awk -v ms=$(($(now_ms) - t_run)) 'BEGIN { print ms / 1000 }')" "${mps:-0}" \
			"$([ "$sonde" = null ] || [ "$cond" = floor ] || printf ', mcpsonde reported %s calls' "$(jfield "$sonde" calls)")")"
	fi
	[ $keep = 1 ] || rm -rf "$d"
}

workloads=()
for t in pipe unix; do
	for s in 256 4096 65536 1048576; do
		for w in 1 64; do
			workloads+=("pump/$t/$s/w$w")
		done
	done
done
[ $do_sdk = 0 ] || workloads+=(sdk/w1 sdk/w64)
[ $do_http = 0 ] || workloads+=(http/w1 http/w64)
if [ -n "$only" ]; then
	sel=()
	for w in "${workloads[@]}"; do
		[[ $w =~ $only ]] && sel+=("$w")
	done
	workloads=("${sel[@]}")
fi
[ ${#workloads[@]} -gt 0 ] || die "no workload matches --only $only"

read -ra conds <<<"$conditions"
run_no=0
t0=$(now_ms)
runs=0
for w in "${workloads[@]}"; do
	for c in "${conds[@]}"; do
		! applies "$w" "$c" || runs=$((runs + 1))
	done
done
log "$(printf '%d workloads x %d conditions (%d runs) x %d repetitions, and the stats repetition; work directory %s' \
	${#workloads[@]} ${#conds[@]} $runs "$reps" "$work")"
for ((rep = 1; rep <= reps; rep++)); do
	for w in "${workloads[@]}"; do
		for ((i = 0; i < ${#conds[@]}; i++)); do
			c=${conds[(i + rep - 1 + ${#conds[@]}) % ${#conds[@]}]}
			! applies "$w" "$c" || run_one "$w" "$c" "$rep"
		done
	done
done

# The stats repetition: the conditions that load programs, once more, for their BPF figures.
has_progs() { [[ " floor untracked watch tracked paused nginx-tracked " == *" $1 "* ]]; }
if [ $bpf_stats = 1 ] && [ $sonde_ok = 1 ]; then
	stats_on=1
	sysctl -q -w kernel.bpf_stats_enabled=1 >/dev/null
	for w in "${workloads[@]}"; do
		for c in "${conds[@]}"; do
			! has_progs "$c" || ! applies "$w" "$c" || run_one "$w" "$c" $((reps + 1))
		done
	done
	stats_on=0
	sysctl -q -w kernel.bpf_stats_enabled=0 >/dev/null
fi

# Zero-loss ramp: 1 KiB messages, tracked, increasing rate until mcpsonde loses or misreports
# a call, or the pump itself cannot reach the rate.
if [ $do_ramp = 1 ]; then
	for r in $ramp_rates; do
		run_one $ramp_id tracked 0 "$r"
		last=$(tail -1 "$raw")
		made=$(jfield "$last" done)
		got=$(jfield "$last" calls_ok)
		mps=$(jfield "$last" msgs_per_s)
		if [ -z "$made" ] || [ "${got:-0}" != "$made" ] || grep -q '"loss":\[{' <<<"$last"; then
			log "ramp: first loss at $r msgs/s"
			break
		fi
		if awk -v a="${mps:-0}" -v r="$r" 'BEGIN { exit !(a < 0.95 * r) }'; then
			log "ramp: the pump reaches only ${mps%.*} msgs/s of $r: stopping"
			break
		fi
	done
fi

elapsed=$((($(now_ms) - t0) / 1000))
log "done in ${elapsed}s"

mkdir -p "$(dirname "$out")"
{
	printf '{"machine":{"kernel":"%s","cpu":"%s","cores":%s,"mem_mib":%s,"date":"%s","version":"%s"},' \
		"$(uname -r)" "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" "$(nproc)" \
		"$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
		"$(git -C "$REPO" describe --always --dirty 2>/dev/null || echo unknown)"
	printf '"settings":{"command":"%s","reps":%s,"pump_time_s":%s,"sdk_time_s":%s,"ramp_time_s":%s,"cpus":"%s","bpf_stats":%s,"elapsed_s":%s,"skipped":"%s"}}\n' \
		"${cmdline//\"/\\\"}" "$reps" "$pump_time" "$sdk_time" "$ramp_time" "$cpus" "$bpf_stats" "$elapsed" "$skipped"
} >"$work/meta.json"
node "$REPO/bench/summarize.mjs" "$work/meta.json" "$raw" >"$out.tmp"
mv "$out.tmp" "$out"
cp "$raw" "${out%.md}.jsonl"
cat "$out"
log "table written to $out (raw runs: ${out%.md}.jsonl)"

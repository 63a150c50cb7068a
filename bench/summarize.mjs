// summarize.mjs -- turns the raw runs of scripts/bench.sh into bench/results.md.
//
//   node bench/summarize.mjs META.json RAW.jsonl > results.md
//
// RAW has one JSON object per run: {workload, condition, rep, bpf_stats, rate, client, sonde,
// strace_bytes, error}; client is the workload's own output line (pump or sdk-bench), sonde what
// mcpsonde saw and cost (null when it was not running). Throughput ratios are paired: each run
// is divided by the "none" run of the same workload and repetition (minutes apart at most, so
// slow drift cancels), and the median of those ratios is reported. Runs with the kernel's BPF
// stats on (bpf_stats) give the BPF figures and nothing else: the stats slow the traced
// syscalls down, so their throughput is not a ratio.

import fs from 'node:fs';

const [metaFile, rawFile] = process.argv.slice(2);
if (!metaFile || !rawFile) {
	console.error('usage: summarize.mjs META.json RAW.jsonl');
	process.exit(2);
}
const meta = JSON.parse(fs.readFileSync(metaFile, 'utf8'));
const runs = fs.readFileSync(rawFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

const CONDITIONS = ['none', 'floor', 'untracked', 'watch', 'tracked', 'paused', 'strace', 'socat', 'nginx', 'nginx-tracked'];
// Conditions in which mcpsonde is attached to the server: their runs have the correctness check.
const TRACKED = ['tracked', 'paused', 'nginx-tracked'];
// How the rows of the other tracking conditions are named in the table of what mcpsonde kept.
const TRACKED_ROW = { paused: 'reader paused', 'nginx-tracked': 'behind nginx' };
const COND_TITLE = {
	none: 'no observer',
	floor: 'empty programs, same hooks',
	untracked: 'mcpsonde, not tracked',
	watch: 'watch --all, not MCP',
	tracked: 'mcpsonde tracking',
	paused: 'mcpsonde tracking, reader paused',
	strace: 'strace -f, payloads',
	socat: 'socat relay',
	nginx: 'nginx reverse proxy',
	'nginx-tracked': 'nginx proxy, mcpsonde tracking (to nginx alone)',
};
// The run a condition's ratio divides by (same workload and repetition): what it adds to. Behind
// nginx, what tracking costs is measured against nginx alone, nginx's own cost against none.
const BASE = { 'nginx-tracked': 'nginx' };
const TARGETS = {
	lockstep256: 0.9,
	sdk: 0.97,
	untrackedPipelined: 0.95,
	watchVsUntracked: 0.02, // watch --all costs a non-MCP process at most this much more than attach
	rampRate: 100000,
	cpuPerCallUs: 4, // a call is two JSON-RPC messages: 2 µs per message
	rssMiB: 64,
};

const median = (xs) => {
	const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
	if (!v.length) return NaN;
	const m = v.length >> 1;
	return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const fmtRate = (x) => (!Number.isFinite(x) ? '–' : x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0));
const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}x` : '–');
const fmtNum = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
const fmtPct = (x) => (Number.isFinite(x) ? `${(x * 100).toFixed(0)} %` : '–');
const maxOf = (xs) => {
	const v = xs.filter((x) => Number.isFinite(x));
	return v.length ? Math.max(...v) : NaN;
};
const fmtSize = (b) => (b >= 1 << 20 ? `${b / (1 << 20)} MiB` : b >= 1024 ? `${b / 1024} KiB` : `${b} B`);

function title(id) {
	const p = id.split('/');
	const window = (w) => (w === 'w1' ? 'sequential' : `${w.slice(1)} in flight`);
	if (p[0] === 'sdk') return `server-everything echo, ${window(p[1])}`;
	if (p[0] === 'http') return `server-everything echo over HTTP, ${window(p[1])}`;
	const w = Number(p[3].slice(1));
	return `${p[1]}, ${fmtSize(Number(p[2]))}, ${w === 1 ? 'lockstep' : `${w} in flight`}`;
}

const ok = (r) => !r.error && r.client;
const main = runs.filter((r) => !r.rate);
const ramp = runs.filter((r) => r.rate);
const workloads = [...new Set(main.map((r) => r.workload))];
const conditions = CONDITIONS.filter((c) => main.some((r) => r.condition === c));
const by = (w, c) => main.filter((r) => r.workload === w && r.condition === c && ok(r));
// Raw files written before the stats repetition have no bpf_stats: their every run had the stats on.
const throughputRuns = (w, c) => by(w, c).filter((r) => r.bpf_stats !== true);

// Paired ratios: each run / the base run (BASE; "none" by default) of the same workload and repetition.
function ratios(w, c) {
	const base = new Map(throughputRuns(w, BASE[c] ?? 'none').map((r) => [r.rep, r.client.msgs_per_s]));
	return throughputRuns(w, c).filter((r) => base.get(r.rep) > 0).map((r) => r.client.msgs_per_s / base.get(r.rep));
}
const ratio = (w, c) => median(ratios(w, c));
// The median with the spread of the paired ratios (min-max) when there are several.
function fmtRatios(xs) {
	const v = xs.filter((x) => Number.isFinite(x));
	if (v.length < 2) return fmtRatio(median(v));
	return `${fmtRatio(median(v))} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`;
}

// What one mcpsonde run cost and saw.
function sondeFigures(r) {
	const s = r.sonde;
	const made = r.client.done;
	// BPF figures only from the stats repetition, and not when something turned the stats off.
	const bpf = r.bpf_stats !== false && Array.isArray(s.bpf) ? s.bpf : [];
	const bpfTime = sum(bpf.map((p) => p.run_time_ns));
	const bpfCnt = sum(bpf.map((p) => p.run_cnt));
	return {
		made,
		reported: s.calls_ok,
		calls: s.calls,
		oversized: s.oversized,
		loss: s.loss,
		cpuPerCallUs: made ? s.cpu_ns / made / 1e3 : NaN,
		userPerCallUs: made ? s.utime_ns / made / 1e3 : NaN,
		cpuShare: s.cpu_ns / (r.client.elapsed_s * 1e9 + s.lag_ms * 1e6),
		rssMiB: s.vmhwm_kb / 1024,
		bpfNsPerRun: bpfCnt ? bpfTime / bpfCnt : NaN,
		bpfUsPerMsg: made && bpfCnt ? bpfTime / made / 1e3 : NaN,
		bpfRunsPerMsg: made && bpfCnt ? bpfCnt / made : NaN,
		ringSlack: s.ring_reserved ? s.ring_unused / s.ring_reserved : NaN,
		ringFullest: s.ring_size ? s.ring_fullest / s.ring_size : NaN, // absent before the field existed
		lagMs: s.lag_ms,
	};
}

function lossText(losses) {
	if (!losses.length) return '0';
	const byReason = new Map();
	for (const l of losses) {
		const k = l.reason ?? '?';
		const e = byReason.get(k) ?? { records: 0, bytes: 0, events: 0 };
		e.records += l.records ?? 0;
		e.bytes += l.bytes ?? 0;
		e.events += l.events ?? 1;
		byReason.set(k, e);
	}
	const mib = (b) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MiB` : `${b} B`);
	return [...byReason]
		.map(([k, e]) => `${k}: ${e.records ? `${e.records} records, ` : `${e.events} events, `}${mib(e.bytes)}`)
		.join('; ');
}

const out = [];
const p = (s = '') => out.push(s);
const m = meta.machine;
const st = meta.settings;

p('# mcpsonde benchmarks');
p();
p(`Machine: ${m.cpu}, ${m.cores} cores, ${m.mem_mib} MiB, Linux ${m.kernel}; mcpsonde ${m.version}; ${m.date}.`);
p(`Command: \`${st.command}\` (${st.elapsed_s} s). ${st.reps} repetitions, conditions interleaved in rotating order; ` +
	`${st.pump_time_s} s of traffic per pump run, ${st.sdk_time_s} s per server-everything run; workload pinned to CPUs ` +
	`\`${st.cpus}\`, observers unpinned; ` +
	(st.bpf_stats ? 'kernel.bpf_stats_enabled=0 during the repetitions that measure throughput, and one more repetition of the conditions with programs with it =1 for the BPF figures.'
		: 'kernel.bpf_stats_enabled=0, no BPF figures.'));
if (st.skipped) p(`**mcpsonde conditions skipped: ${st.skipped}.**`);
p();

p('## Throughput');
p();
p('Median messages/s (request + response) with no observer, and the median of paired ratios to it under each condition (1.00x = no cost), with their spread over the repetitions (min-max) in parentheses. ' +
	'"HTTP" rows: server-everything in streamableHttp mode on 127.0.0.1, the SDK\'s StreamableHTTPClientTransport as the client. ' +
	'The relays differ by transport (socat for byte streams, nginx for HTTP); a condition not run for a workload is empty (–). ' +
	'nginx proxy, mcpsonde tracking: the client talks to nginx, mcpsonde is attached to the server behind it; its ratio is to the nginx run of the same repetition, so that it is what tracking costs behind a proxy. ' +
	'Reader paused: tracking, with mcpsonde stopped while the traffic runs (its records wait in a 256 MiB ring buffer, read afterwards): what the copies cost the traced process by themselves, without mcpsonde reading on the other core (small-message rows only).');
p();
p(`| workload | ${conditions.map((c) => (c === 'none' ? 'no observer (msgs/s)' : COND_TITLE[c])).join(' | ')} |`);
p(`|---|${conditions.map(() => '---:').join('|')}|`);
for (const w of workloads) {
	const cells = conditions.map((c) =>
		c === 'none' ? fmtRate(median(by(w, 'none').map((r) => r.client.msgs_per_s))) : fmtRatios(ratios(w, c)));
	p(`| ${title(w)} | ${cells.join(' | ')} |`);
}
p();

const tracked = main.filter((r) => r.condition === 'tracked' && ok(r) && r.sonde);
const trackedAll = main.filter((r) => TRACKED.includes(r.condition) && ok(r) && r.sonde);
const untracked = main.filter((r) => r.condition === 'untracked' && ok(r) && r.sonde);
const floor = main.filter((r) => r.condition === 'floor' && ok(r) && r.sonde);
const watched = main.filter((r) => r.condition === 'watch' && ok(r) && r.sonde);
const problems = [];
for (const r of watched)
	if (r.sonde.calls)
		problems.push(`${title(r.workload)}, watch: ${r.sonde.calls} calls reported of a workload its selectors exclude`);
if (trackedAll.length || untracked.length) {
	p('## What mcpsonde kept and what it cost');
	p();
	p('Tracked runs, all repetitions: calls the workload made, `tools/call` events mcpsonde reported with status ok, ' +
		'the difference and the loss events that explain it. CPU: mcpsonde\'s own (all threads, user + system) per ' +
		'call (a request and its response), from go until it had reported every call; % of one core over the same time. BPF: run time of its ' +
		'programs from the kernel\'s bpf stats (every syscall of the machine while attached), per invocation and per message, ' +
		'from the stats repetition only (the stats add two clock reads to every program run); ' +
		'floor: the same hooks with programs that return at once (build/tools/floor), what the tracepoints cost by themselves; ' +
		'watch: `watch --all` with the workload excluded by selector, what a process that is not an MCP server pays on a node. ' +
		'Ring slack: the share of the ring buffer space reserved for data records that they left unused (size classes; 0 with dynptr records). ' +
		'Ring fullest: the largest backlog any drain of mcpsonde found in the ring buffer, as a share of its size, over all the repetitions (at 100 %, records are lost). ' +
		'Rows "behind nginx": the nginx-tracked runs, mcpsonde attached to the server that nginx relays to. ' +
		'Rows "reader paused": mcpsonde stopped (SIGSTOP) while the traffic ran, with a ring buffer that holds all of it, then resumed: ' +
		'its CPU is that of reading afterwards, its BPF figures what the traced process paid alone.');
	p();
	p('| workload | made | reported | lost | loss events | CPU µs/call (user) | CPU % | peak RSS MiB | BPF ns/run tracked | BPF ns/run untracked | BPF ns/run watch | BPF ns/run floor | BPF µs/msg | runs/msg | ring slack | ring fullest |');
	p('|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
	// One row per workload and condition that tracks; the other observers' columns only on the
	// row of plain tracking (they ran without nginx).
	for (const [w, c] of workloads.flatMap((w) => TRACKED.map((c) => [w, c]))) {
		const t = trackedAll.filter((r) => r.workload === w && r.condition === c).map(sondeFigures);
		const others = (runs) => (c === 'tracked' ? runs.filter((r) => r.workload === w).map(sondeFigures) : []);
		const u = others(untracked);
		const fl = others(floor);
		const wa = others(watched);
		if (!t.length && !u.length) continue;
		const name = c === 'tracked' ? title(w) : `${title(w)}, ${TRACKED_ROW[c]}`;
		const made = sum(t.map((f) => f.made));
		const reported = sum(t.map((f) => f.reported));
		const losses = t.flatMap((f) => f.loss);
		const lost = made - reported;
		if (lost !== 0 && !losses.length)
			problems.push(`${name}: ${made} calls made, ${reported} reported, and no loss event explains it`);
		const rss = c === 'paused' ? NaN : Math.max(...[...t, ...u].map((f) => f.rssMiB)); // paused: the 256 MiB ring
		p(`| ${name} | ${made} | ${reported} | ${lost}${lost && !losses.length ? ' **unexplained**' : ''} | ${lossText(losses)} | ` +
			`${fmtNum(median(t.map((f) => f.cpuPerCallUs)), 2)} (${fmtNum(median(t.map((f) => f.userPerCallUs)), 2)}) | ` +
			`${fmtNum(median(t.map((f) => f.cpuShare * 100)), 0)} | ${fmtNum(rss, 1)} | ` +
			`${fmtNum(median(t.map((f) => f.bpfNsPerRun)), 0)} | ${fmtNum(median(u.map((f) => f.bpfNsPerRun)), 0)} | ` +
			`${fmtNum(median(wa.map((f) => f.bpfNsPerRun)), 0)} | ` +
			`${fmtNum(median(fl.map((f) => f.bpfNsPerRun)), 0)} | ` +
			`${fmtNum(median(t.map((f) => f.bpfUsPerMsg)), 2)} | ${fmtNum(median(t.map((f) => f.bpfRunsPerMsg)), 1)} | ` +
			`${fmtNum(median(t.map((f) => f.ringSlack * 100)), 1)} % | ${fmtPct(maxOf(t.map((f) => f.ringFullest)))} |`);
	}
	p();
	const progs = new Map();
	for (const r of tracked.filter((r) => r.workload === 'pump/pipe/4096/w64'))
		for (const b of Array.isArray(r.sonde.bpf) ? r.sonde.bpf : []) {
			const e = progs.get(b.name) ?? { t: 0, c: 0 };
			e.t += b.run_time_ns;
			e.c += b.run_cnt;
			progs.set(b.name, e);
		}
	if (progs.size) {
		p('BPF programs, tracked pipe 4 KiB 64 in flight (all repetitions):');
		p();
		p('| program | invocations | ns/run | share of BPF time |');
		p('|---|---:|---:|---:|');
		const total = sum([...progs.values()].map((e) => e.t));
		for (const [name, e] of [...progs].sort((a, b) => b[1].t - a[1].t))
			p(`| ${name} | ${e.c} | ${fmtNum(e.t / e.c, 0)} | ${fmtNum((100 * e.t) / total, 1)} % |`);
		p();
	}
}

let rampBest = null;
if (ramp.length) {
	p('## Zero-loss ramp');
	p();
	p('1 KiB messages over a pipe, 256 in flight at most, paced at a fixed rate, tracked; the ramp stops at the first loss or when the pump cannot reach the rate.');
	p();
	p('| target msgs/s | achieved | made | reported | loss events | mcpsonde CPU µs/call | CPU % | drain after end (ms) | verdict |');
	p('|---:|---:|---:|---:|---|---:|---:|---:|---|');
	for (const r of ramp) {
		if (!ok(r) || !r.sonde) {
			p(`| ${r.rate} | – | – | – | – | – | – | – | error: ${r.error ?? 'no mcpsonde data'} |`);
			continue;
		}
		const f = sondeFigures(r);
		const clean = f.reported === f.made && !f.loss.length;
		const reached = r.client.msgs_per_s >= 0.95 * r.rate;
		const verdict = !clean ? 'LOSS' : reached ? 'zero loss' : 'zero loss, pump-limited';
		if (clean && reached) rampBest = Math.max(rampBest ?? 0, r.rate);
		if (clean && !reached) rampBest = Math.max(rampBest ?? 0, r.client.msgs_per_s);
		p(`| ${r.rate} | ${fmtRate(r.client.msgs_per_s)} | ${f.made} | ${f.reported} | ${lossText(f.loss)} | ` +
			`${fmtNum(f.cpuPerCallUs, 2)} | ${fmtNum(f.cpuShare * 100, 0)} | ${f.lagMs} | ${verdict} |`);
	}
	p();
	p(`Highest zero-loss rate reached: ${rampBest ? `${fmtRate(rampBest)} msgs/s` : 'none'}.`);
	p();
}

if (trackedAll.length || untracked.length) {
	p('## Targets');
	p();
	p('| target | measured | |');
	p('|---|---|---|');
	const row = (name, value, text, good) => p(`| ${name} | ${text} | ${!Number.isFinite(value) ? '–' : good ? 'met' : '**missed**'} |`);
	for (const t of ['pipe', 'unix']) {
		if (!workloads.includes(`pump/${t}/256/w1`)) continue;
		const w = `pump/${t}/256/w1`, v = ratio(w, 'tracked');
		// Where the cost comes from: the hooks alone, attached but not tracking, the copies alone.
		const parts = [['empty programs', 'floor'], ['not tracked', 'untracked'], ['reader paused', 'paused']]
			.filter(([, c]) => Number.isFinite(ratio(w, c))).map(([n, c]) => `${n} ${fmtRatio(ratio(w, c))}`);
		row(`tracked lockstep 256 B (${t}) >= ${TARGETS.lockstep256}x`, v, `${fmtRatio(v)}${parts.length ? ` (${parts.join(', ')})` : ''}`,
			v >= TARGETS.lockstep256);
	}
	for (const w of ['sdk/w1', 'sdk/w64', 'http/w1', 'http/w64']) {
		if (!workloads.includes(w)) continue;
		const v = ratio(w, 'tracked');
		row(`tracked ${title(w)} >= ${TARGETS.sdk}x`, v, fmtRatio(v), v >= TARGETS.sdk);
	}
	const pipelined = workloads.filter((w) => w.startsWith('pump/') && w.endsWith('/w64'));
	const ur = pipelined.map((w) => [w, ratio(w, 'untracked')]).filter(([, v]) => Number.isFinite(v));
	if (ur.length) {
		const worst = ur.reduce((a, b) => (b[1] < a[1] ? b : a));
		row(`untracked pipelined pump >= ${TARGETS.untrackedPipelined}x`, worst[1],
			`worst ${fmtRatio(worst[1])} (${title(worst[0])}), median ${fmtRatio(median(ur.map((x) => x[1])))}`,
			worst[1] >= TARGETS.untrackedPipelined);
	}
	const wr = pipelined.map((w) => [w, ratio(w, 'untracked') - ratio(w, 'watch')]).filter(([, v]) => Number.isFinite(v));
	if (wr.length) {
		const worst = wr.reduce((a, b) => (b[1] > a[1] ? b : a));
		row(`watch --all within ${TARGETS.watchVsUntracked} of untracked (pipelined pump)`, worst[1],
			`worst ${worst[1] >= 0 ? '-' : '+'}${Math.abs(worst[1]).toFixed(2)} (${title(worst[0])})`,
			worst[1] <= TARGETS.watchVsUntracked);
	}
	if (ramp.length)
		row(`zero loss at ${fmtRate(TARGETS.rampRate)} msgs/s of 1 KiB`, rampBest ?? 0,
			rampBest ? `${fmtRate(rampBest)} msgs/s` : 'lost at the first step', (rampBest ?? 0) >= TARGETS.rampRate);
	// The target is for JSON-RPC messages on stdio. Over HTTP every call is also an HTTP exchange
	// (request line, headers, SSE framing, a connection's state): reported beside it, no target.
	const cpuOf = (re) => {
		const runs = tracked.filter((r) => re.test(r.workload));
		return [...new Set(runs.map((r) => r.workload))].map((w) => [w, median(runs.filter((r) => r.workload === w).map((r) => sondeFigures(r).cpuPerCallUs))]);
	};
	const cpuRange = (cpu) => {
		const worst = cpu.reduce((a, b) => (b[1] > a[1] ? b : a));
		return [worst, `worst ${fmtNum(worst[1], 2)} µs (${title(worst[0])}), best ${fmtNum(Math.min(...cpu.map((x) => x[1])), 2)} µs`];
	};
	const cpu = cpuOf(/^pump\/\w+\/(256|4096)\/|^sdk\//);
	if (cpu.length) {
		const [worst, text] = cpuRange(cpu);
		row(`<= ${TARGETS.cpuPerCallUs} µs mcpsonde CPU per call, ${TARGETS.cpuPerCallUs / 2} µs per message (stdio, messages <= 4 KiB)`, worst[1],
			text, worst[1] <= TARGETS.cpuPerCallUs);
	}
	const cpuHttp = cpuOf(/^http\//);
	if (cpuHttp.length) {
		const [worst, text] = cpuRange(cpuHttp);
		p(`| mcpsonde CPU per call over HTTP (no target) | ${text} | – |`);
	}
	// Not the paused runs: their 256 MiB ring, mapped twice and read through, is all of their RSS.
	const all = [...trackedAll.filter((r) => r.condition !== 'paused'), ...untracked, ...ramp.filter((r) => ok(r) && r.sonde)];
	if (all.length) {
		const rss = Math.max(...all.map((r) => r.sonde.vmhwm_kb / 1024));
		row(`peak RSS <= ${TARGETS.rssMiB} MiB`, rss, `${fmtNum(rss, 1)} MiB (max over all runs but the paused ones)`, rss <= TARGETS.rssMiB);
	}
	p();
}

const errors = runs.filter((r) => r.error);
if (problems.length || errors.length) {
	p('## Problems');
	p();
	for (const x of problems) p(`- **${x}**`);
	for (const r of errors) p(`- ${title(r.workload)} / ${r.condition} / rep ${r.rep}${r.rate ? ` / rate ${r.rate}` : ''}: ${r.error}`);
	p();
}

process.stdout.write(`${out.join('\n')}\n`);

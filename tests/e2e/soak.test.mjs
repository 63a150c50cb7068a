// The fleet soak: watch --all --metrics while 2,000 short-lived MCP servers (initialize,
// tools/list, three calls, exit) and 20,000 short non-MCP pipelines come and go
// (build/tools/soak, see tests/tools/soak.c). Every server is found and every call counted;
// memory, the kernel's maps, the inventory and the metric series stay bounded and come back
// down once the servers are gone.
//
// Other engineers' tests run on this machine at the same time: watch is given --include for
// this run's processes, and what is asserted of the kernel's maps (which see every process
// before it is let go) leaves room for a few strangers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { REPO, startWatch, stopSonde, killSonde, freePort, httpGet, parseMetrics, metricSum, sleep, randomTag } from './lib.mjs';

const SOAK = path.join(REPO, 'build', 'tools', 'soak');
const SERVERS = 2000, PIPELINES = 20000, HALVES = 2;
const MAX_INVENTORY = 500, SERIES_TTL_S = 10; // longer than the pause between the halves
const MiB = 1024 * 1024;

// VmRSS: all of it, the ring buffer's pages included (mapped once, at start). RssAnon: the heap,
// what grows with what mcpsonde keeps.
const status = (pid, field) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
const rss = (pid) => status(pid, 'VmRSS');
const heap = (pid) => status(pid, 'RssAnon');

function runSoak(args) {
	return new Promise((resolve, reject) => {
		const p = spawn(SOAK, args, { stdio: ['ignore', 'pipe', 'inherit'] });
		let out = '';
		p.stdout.on('data', (d) => { out += d; });
		p.once('error', reject);
		p.once('exit', (code) => resolve({ code, pid: p.pid, result: JSON.parse(out || '{}') }));
	});
}

// Polls /metrics until ok(samples) holds, or the deadline: the last samples either way.
async function metricsUntil(port, ok, ms) {
	let samples;
	for (const until = Date.now() + ms; ; await sleep(250)) {
		samples = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		if (ok(samples) || Date.now() > until) return samples;
	}
}

test('soak: 2,000 servers and 20,000 pipelines in bounded memory; maps, inventory and series come back down', { timeout: 540000 }, async (t) => {
	assert.ok(fs.existsSync(SOAK), `${SOAK}: run make first`);
	const state = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-soak-'));
	const port = await freePort();
	const name = `soak-${randomTag()}`;
	// Only this run's processes: another test's 100 MB message would be this process's memory.
	const sonde = await startWatch(['--metrics', `127.0.0.1:${port}`, '--state-dir', state, '--max-inventory', String(MAX_INVENTORY),
		'--series-ttl', String(SERIES_TTL_S), '--include', `cmdline=*--name ${name}`], { stdoutFile: '/dev/null' });
	const pid = sonde.proc.pid;
	let peak = 0;
	const sampler = setInterval(() => { try { peak = Math.max(peak, rss(pid)); } catch { /* gone */ } }, 100);
	try {
		// A warm-up: the processes that run on this machine anyway have been looked at.
		assert.equal((await runSoak(['--servers', '1', '--pipelines', '10', '--name', `${name}-warm-up`])).code, 0);
		await sleep(1500);
		const before = await metricsUntil(port, () => true, 0);
		const baseline = heap(pid);
		const after = [];
		let soakPid, calls = 0, samples;
		for (let h = 0; h < HALVES; h++) {
			const r = await runSoak(['--servers', String(SERVERS / HALVES), '--pipelines', String(PIPELINES / HALVES), '--name', name]);
			assert.equal(r.code, 0, `soak: ${JSON.stringify(r.result)}`);
			soakPid = r.pid;
			calls += r.result.calls;
			// What the servers did is all counted before memory is looked at.
			const want = (SERVERS / HALVES) * (h + 1);
			samples = await metricsUntil(port, (s) => metricSum(s, 'mcpsonde_process_exits_total', { server: name }) >= want, 60000);
			after.push(heap(pid));
		}
		assert.equal(calls, SERVERS * 5, 'the soak client: five answered requests per server');

		const n = (family, labels = {}) => metricSum(samples, family, { server: name, ...labels });
		// Every server found from its first message, every call counted.
		assert.equal(n('mcp_server_operation_duration_seconds_count', { mcp_method_name: 'initialize' }), SERVERS);
		assert.equal(n('mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/list' }), SERVERS);
		assert.equal(n('mcp_server_operation_duration_seconds_count', { mcp_method_name: 'tools/call', gen_ai_tool_name: 'echo' }), 3 * SERVERS);
		assert.equal(n('mcpsonde_process_exits_total', { reason: 'shutdown', normal: 'true' }), SERVERS);
		assert.equal(metricSum(samples, 'mcpsonde_capture_lost_records_total', { server: name }), 0, 'nothing lost');
		// The pipelines' stdins were given up (five whole lines that are not JSON-RPC each).
		const givenUp = (s) => metricSum(s, 'mcpsonde_discovery_verdicts_total', { verdict: 'not_json_rpc' }) -
			metricSum(before, 'mcpsonde_discovery_verdicts_total', { verdict: 'not_json_rpc' });
		const verdicts = await metricsUntil(port, (s) => givenUp(s) >= PIPELINES, 10000); // counters: once a second
		assert.ok(givenUp(verdicts) >= PIPELINES, `not_json_rpc: ${givenUp(verdicts)}`);

		// Memory: bounded, and the second half did not add what the first one did (the first
		// one filled the inventory).
		const mib = (b) => `${(b / MiB).toFixed(1)} MiB`;
		const report = `heap: at start ${mib(baseline)}, after each half ${after.map(mib).join(', ')}; RSS peak ${mib(peak)}`;
		t.diagnostic(report);
		assert.ok(peak < 64 * MiB, report);
		assert.ok(after[HALVES - 1] - after[0] < 4 * MiB, report);
		assert.ok(after[HALVES - 1] - baseline < 16 * MiB, report);
		// The kernel's maps: the entries of exited processes are gone (a margin for strangers).
		for (const map of ['procs', 'verdicts']) {
			const was = metricSum(before, 'mcpsonde_bpf_map_entries', { map });
			const now = await metricsUntil(port, (s) => metricSum(s, 'mcpsonde_bpf_map_entries', { map }) <= was + 64, 10000);
			assert.ok(metricSum(now, 'mcpsonde_bpf_map_entries', { map }) <= was + 64,
				`${map}: ${was} entries before, ${metricSum(now, 'mcpsonde_bpf_map_entries', { map })} after`);
		}

		// The inventory: capped, the oldest exited records evicted and counted.
		const doc = JSON.parse((await httpGet(`http://127.0.0.1:${port}/servers`)).text);
		assert.ok(doc.servers.length <= MAX_INVENTORY, `${doc.servers.length} records`);
		assert.ok(doc.evicted >= SERVERS - MAX_INVENTORY, `evicted ${doc.evicted}`);
		assert.ok(metricSum(samples, 'mcpsonde_inventory_dropped_total', { why: 'evicted' }) >= SERVERS - MAX_INVENTORY);
		const mine = doc.servers.filter((r) => r.server_info?.name === name);
		assert.ok(mine.length >= MAX_INVENTORY - 64, `${mine.length} of this run's servers kept`);
		for (const r of mine) {
			assert.deepEqual([r.state, r.calls, r.errors, r.exit?.normal], ['exited', 5, 0, true], JSON.stringify(r));
			// A server that lived a millisecond may be gone, with its client's end, before its
			// client is looked for: then none is named, never a wrong one.
			if (r.client_process) assert.equal(r.client_process.pid, soakPid, JSON.stringify(r));
		}
		const lookups = (s) => metricSum(s, 'mcpsonde_client_lookups_total') - metricSum(before, 'mcpsonde_client_lookups_total');
		const looked = await metricsUntil(port, (s) => lookups(s) >= SERVERS, 10000);
		assert.ok(lookups(looked) >= SERVERS, `every server's client looked for: ${lookups(looked)}`);

		// Series of the exited servers go after --series-ttl; the expiry is counted.
		const gone = await metricsUntil(port, (s) => !s.some((x) => x.labels.server === name), (SERIES_TTL_S + 30) * 1000);
		assert.deepEqual(gone.filter((x) => x.labels.server === name).map((x) => x.name), [], 'series of the exited servers');
		assert.ok(metricSum(gone, 'mcpsonde_series_expired_total') > 0);
		await stopSonde(sonde);
	} finally {
		clearInterval(sampler);
		killSonde(sonde);
		fs.rmSync(state, { recursive: true, force: true });
	}
});

// protocol.test.mjs -- protocol revision 2026-07-28 with the v2 SDK (server and client 2.4.0):
// identity from _meta without initialize, multi-round-trip requests, tasks, progress, unknown
// tools, the server/discover probe against a 2026-07-28 server and a legacy one, the probe
// copy of a server the v2 client starts and terminates; and what mcpsonde reports when the
// ring buffer overflows or a tools/list is longer than its catalog. Every figure is compared
// with what the client did; the JSONL call events, --summary and a scrape of /metrics must
// agree on counts.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { fromJsonSchema } from '@modelcontextprotocol/client';

import {
	EVERYTHING, V2_SERVER, launchSocketpair, launchV2, startSonde, stopSonde, killSonde, waitForEvents, calls,
	assertCallsMatch, assertDurationsWithinRtt, assertEventShape, freePort, httpGet, parseMetrics, metricSum,
	parseSummary, descendants, killPid, sleep,
} from './lib.mjs';

const TIMEOUT = 120000;
const ANY = fromJsonSchema({ type: 'object' });
const INTERMEDIATE = new Set(['input_required', 'task']); // exchanges of a longer call
const isTaskEnd = (e) => e.type === 'call' && e.task_id !== undefined && e.rounds !== undefined;
const rtt = (first, last) => Number(last.t_recv - first.t_send) / 1e6;

// What a client calls one call: per "method tool", the call events that are not exchanges of
// a longer call, and their error types as --summary names them.
function logicalCalls(events, server) {
	const out = {};
	for (const e of calls(events)) {
		if (INTERMEDIATE.has(e.status) || e.server !== server) continue;
		const op = e.tool && e.method === 'tools/call' ? `${e.method} ${e.tool}` : e.method;
		const row = (out[op] ??= { calls: 0, errors: {}, notErrors: {} });
		row.calls++;
		if (e.status === 'error') {
			const type = `${e.error_code}${e.error_name ? `/${e.error_name}` : ''}`;
			row.errors[type] = (row.errors[type] ?? 0) + 1;
		} else if (['tool_error', 'cancelled', 'orphaned'].includes(e.status)) {
			row.errors[e.status] = (row.errors[e.status] ?? 0) + 1;
		} else if (e.status !== 'ok') {
			row.notErrors[e.status] = (row.notErrors[e.status] ?? 0) + 1;
		}
	}
	return out;
}

// --summary's rows for a server, as logicalCalls() shapes them.
function summaryRows(text, server) {
	return Object.fromEntries(parseSummary(text).filter((r) => r.server === server)
		.map((r) => [r.operation, { calls: r.calls, errors: r.errors, notErrors: r.notErrors }]));
}

// The operation histogram's counts, per "method tool" and per error type.
function metricCalls(samples, server) {
	const out = {};
	for (const s of samples) {
		if (s.name !== 'mcp_server_operation_duration_seconds_count' || s.labels.server !== server) continue;
		const op = s.labels.gen_ai_tool_name ? `${s.labels.mcp_method_name} ${s.labels.gen_ai_tool_name}` : s.labels.mcp_method_name;
		const row = (out[op] ??= { calls: 0, errorTypes: {} });
		row.calls += s.value;
		if (s.labels.error_type) row.errorTypes[s.labels.error_type] = (row.errorTypes[s.labels.error_type] ?? 0) + s.value;
	}
	return out;
}

// The counts --summary, /metrics and the JSONL must agree on: calls per operation, and errors
// by type (the histogram labels a JSON-RPC error by its code alone).
function assertCountsAgree(events, summaryText, samples, server) {
	const jsonl = logicalCalls(events, server);
	assert.deepEqual(summaryRows(summaryText, server), jsonl, '--summary vs JSONL call events');
	const hist = metricCalls(samples, server);
	const expected = {};
	for (const [op, row] of Object.entries(jsonl)) {
		const observed = row.calls - Object.values(row.notErrors).reduce((a, n) => a + n, 0)
			- (row.errors.cancelled ?? 0) - (row.errors.orphaned ?? 0);
		if (!observed) continue;
		const errorTypes = {};
		for (const [type, n] of Object.entries(row.errors))
			if (type !== 'cancelled' && type !== 'orphaned') errorTypes[type.split('/')[0]] = n;
		expected[op] = { calls: observed, errorTypes };
	}
	assert.deepEqual(hist, expected, 'mcp_server_operation_duration_seconds_count vs JSONL call events');
}

async function scrape(port) {
	const r = await httpGet(`http://127.0.0.1:${port}/metrics`);
	assert.equal(r.status, 200);
	return parseMetrics(r.text);
}

// Waits until the metrics sink has published what it saw (it publishes on a 250 ms tick).
async function scrapeWhen(port, pred, timeoutMs = 5000) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		const samples = await scrape(port);
		if (pred(samples) || Date.now() > until) return samples;
		await sleep(100);
	}
}

test('2026-07-28 on stdio, attached mid-stream: identity from _meta, multi-round-trip calls, a task, progress; JSONL, --summary and /metrics agree', { timeout: TIMEOUT }, async () => {
	const srv = await launchV2();
	let sonde;
	try {
		await srv.connect();
		const c = srv.client;
		await c.callTool({ name: 'ok', arguments: { text: 'before mcpsonde' } });
		const port = await freePort();
		sonde = await startSonde(srv.pid, ['--stall-timeout', '1.5', '--metrics', `127.0.0.1:${port}`, '--summary']);
		const t0 = sonde.t_attached;

		for (let i = 0; i < 3; i++) await c.callTool({ name: 'ok', arguments: { text: `call ${i}` } });
		await c.callTool({ name: 'fail', arguments: {} });
		// At once: progress every 150 ms throughout; progress that stops after 300 ms; none.
		await Promise.all([
			c.callTool({ name: 'slow', arguments: { ms: 3000, steps: 20 } }, { onprogress: () => {} }),
			c.callTool({ name: 'slow', arguments: { ms: 3000, steps: 20, loud: 2 } }, { onprogress: () => {} }),
			c.callTool({ name: 'slow', arguments: { ms: 2500, steps: 1 } }),
		]);
		for (const action of ['deploy', 'undo']) {
			const r = await c.callTool({ name: 'confirm', arguments: { action } });
			assert.equal(r.content[0].text, `done: ${action}`);
		}
		await assert.rejects(c.callTool({ name: 'nope', arguments: {} }), (e) => e.code === -32602);
		// The v2 client has no tasks API on 2026-07-28 and refuses a task result, but the
		// exchange happened; the test polls tasks/get as a client of the extension would.
		await assert.rejects(c.callTool({ name: 'research', arguments: { ms: 500 } }), /task/);
		const created = srv.log.requests.findLast((r) => r.tool === 'research');
		const taskId = created.response.result.taskId;
		let status;
		do {
			await sleep(100);
			({ status } = await c.request({ method: 'tasks/get', params: { taskId } }, ANY));
		} while (status === 'working');
		assert.equal(status, 'completed');

		const requests = srv.log.since(t0);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length + 1, 10000);
		const samples = await scrapeWhen(port, (s) => metricSum(s, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'research' }) === 1);
		const events = await stopSonde(sonde);
		const summary = sonde.stderrLines.join('\n');
		const server = 'v2-test-server';
		assertEventShape(events, [srv.pid]);

		// Identity: from the envelope of the first exchange seen, in one session event.
		const sessions = events.filter((e) => e.type === 'session');
		assert.equal(sessions.length, 1, JSON.stringify(sessions));
		assert.equal(sessions[0].protocol_version, '2026-07-28');
		assert.deepEqual(sessions[0].client, { name: 'mcpsonde-e2e-v2', version: '0.0.2' });
		assert.deepEqual(sessions[0].server_info, { name: server, version: '2.4.0-test' });
		assert.deepEqual([...new Set(events.filter((e) => e.pid === srv.pid).map((e) => e.server))], [server]);

		// Every exchange, as the client saw it, within its round trip.
		const pairs = assertCallsMatch(requests, events.filter((e) => !isTaskEnd(e)));
		assertDurationsWithinRtt(pairs);
		const eventOf = new Map(pairs.map(([r, e]) => [r, e]));

		// Multi-round-trip: the retry's event completes one call of two rounds.
		const confirms = requests.filter((r) => r.tool === 'confirm');
		assert.equal(confirms.length, 4);
		for (let i = 0; i < 4; i += 2) {
			const [first, retry] = [eventOf.get(confirms[i]), eventOf.get(confirms[i + 1])];
			assert.equal(first.status, 'input_required');
			assert.equal(first.rounds, undefined);
			assert.equal(retry.status, 'ok');
			assert.equal(retry.rounds, 2);
			const exchanges = first.duration_ms + retry.duration_ms;
			assert.ok(retry.logical_duration_ms <= rtt(confirms[i], confirms[i + 1]) + 0.001,
				`logical_duration_ms ${retry.logical_duration_ms} > the client's ${rtt(confirms[i], confirms[i + 1])} ms`);
			assert.ok(retry.logical_duration_ms >= exchanges - 0.002, `logical_duration_ms ${retry.logical_duration_ms} < its exchanges ${exchanges}`);
			assert.ok(Math.abs(retry.input_wait_ms - (retry.logical_duration_ms - exchanges)) <= 0.003,
				`input_wait_ms ${retry.input_wait_ms} is not the time between the rounds`);
		}

		// The task: its own exchange, polls of their own, and the call's outcome at the end.
		assert.equal(eventOf.get(created).status, 'task');
		assert.equal(eventOf.get(created).task_id, taskId);
		const polls = requests.filter((r) => r.method === 'tasks/get');
		for (const p of polls) assert.equal(eventOf.get(p).task_id, taskId);
		const end = events.filter(isTaskEnd);
		assert.equal(end.length, 1);
		assert.deepEqual({ method: end[0].method, id: end[0].id, tool: end[0].tool, status: end[0].status, task_status: end[0].task_status, rounds: end[0].rounds },
			{ method: 'tools/call', id: created.id, tool: 'research', status: 'ok', task_status: 'completed', rounds: 1 + polls.length });
		assert.ok(end[0].duration_ms <= rtt(created, polls.at(-1)) + 0.001, `task ${end[0].duration_ms} ms > the client's ${rtt(created, polls.at(-1))} ms`);
		assert.ok(end[0].duration_ms >= 499, `the task worked 500 ms, reported ${end[0].duration_ms}`);
		assert.equal(end[0].logical_duration_ms, end[0].duration_ms);

		// Progress: a call that reports it does not stall; one whose progress stopped does, and
		// says since when; one without any does.
		const slow = requests.filter((r) => r.tool === 'slow');
		const stalls = events.filter((e) => e.type === 'stall');
		assert.deepEqual(stalls.map((s) => s.id).sort(), [slow[1].id, slow[2].id].sort(), JSON.stringify(stalls));
		const stopped = stalls.find((s) => s.id === slow[1].id);
		assert.ok(stopped.since_progress_ms > 1500 && stopped.since_progress_ms < stopped.pending_ms, JSON.stringify(stopped));
		assert.equal(stalls.find((s) => s.id === slow[2].id).since_progress_ms, undefined);

		// An unknown tool answered -32602 "Tool nope not found", with no tools/list seen.
		const nope = eventOf.get(requests.find((r) => r.tool === 'nope'));
		assert.deepEqual([nope.status, nope.error_code, nope.error_name, nope.unknown_tool], ['error', -32602, 'invalid_params', true]);
		assert.equal(metricSum(samples, 'mcpsonde_unknown_tool_calls_total', { server }), 1);

		assertCountsAgree(events, summary, samples, server);
		assert.equal(metricSum(samples, 'mcpsonde_input_required_total', { server, gen_ai_tool_name: 'confirm' }), 2);
		assert.equal(metricSum(samples, 'mcpsonde_tasks_created_total', { server, gen_ai_tool_name: 'research' }), 1);
		assert.equal(metricSum(samples, 'mcpsonde_stalls_total', { server }), 2);
		assert.deepEqual([...new Set(samples.filter((s) => s.name === 'mcp_server_operation_duration_seconds_count').map((s) => s.labels.mcp_protocol_version))], ['2026-07-28']);
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

test('the v2 client against server-everything (SDK 1.x): the server/discover probe and the fallback to initialize, no error counted', { timeout: TIMEOUT }, async () => {
	// A subclass of the v2 stdio transport probes in place: probe and fallback on one process.
	const srv = await launchV2({ args: [EVERYTHING, 'stdio'], inPlace: true, start: true });
	let sonde;
	try {
		const port = await freePort();
		sonde = await startSonde(srv.pid, ['--metrics', `127.0.0.1:${port}`, '--summary']);
		const t0 = sonde.t_attached;
		await srv.connect();
		const c = srv.client;
		await c.listTools();
		await c.callTool({ name: 'echo', arguments: { message: 'hi' } });
		await c.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } });
		const unknown = await c.callTool({ name: 'no-such-tool', arguments: {} });
		assert.equal(unknown.isError, true, 'SDK 1.x answers an unknown tool with isError');
		const requests = srv.log.since(t0);
		assert.equal(requests[0].method, 'server/discover');
		assert.equal(requests[0].error_code, -32601);
		assert.equal(requests[1].method, 'initialize');
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length);
		const samples = await scrapeWhen(port, (s) => metricSum(s, 'mcp_server_operation_duration_seconds_count', { gen_ai_tool_name: 'no-such-tool' }) === 1);
		const pid = srv.pid;
		await srv.close();
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === pid), 10000);
		const events = await stopSonde(sonde);
		const summary = sonde.stderrLines.join('\n');
		const server = 'mcp-servers/everything';

		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);
		const probe = pairs[0][1];
		assert.deepEqual([probe.status, probe.error_code, probe.error_name], ['probe_failed', -32601, 'method_not_found']);
		const sessions = events.filter((e) => e.type === 'session');
		assert.equal(sessions.length, 1, JSON.stringify(sessions));
		const session = sessions[0];
		assert.equal(session.server_info.name, server);
		assert.equal(session.protocol_version, '2025-11-25');
		assert.equal(pairs.find(([r]) => r.tool === 'no-such-tool')[1].unknown_tool, true);

		// The probe is no error: not in the histogram, not in --summary's errors.
		assert.equal(samples.filter((s) => s.labels.error_type === '-32601').length, 0);
		assert.equal(metricSum(samples, 'mcpsonde_discover_probes_total', { server, outcome: 'failed' }), 1);
		assert.equal(metricSum(samples, 'mcpsonde_unknown_tool_calls_total', { server }), 1);
		// The probe came before the server named itself (initialize): its row has the program's name.
		assert.equal(probe.server, '@modelcontextprotocol/server-everything');
		assert.deepEqual(summaryRows(summary, probe.server), { 'server/discover': { calls: 1, errors: {}, notErrors: { probe_failed: 1 } } });
		assertCountsAgree(events, summary, samples, server);
		const exit = events.find((e) => e.type === 'exit' && e.pid === pid);
		assert.deepEqual([exit.normal, exit.pending_calls], [true, 0], JSON.stringify(exit));
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

test('the probe copy of a server that the v2 client starts and terminates is a probe: no abnormal exit, no report', { timeout: TIMEOUT }, async () => {
	// The base transport probes on a short-lived copy of the server. Each copy here waits for
	// a flag before exec'ing the server, so that mcpsonde can attach to the first one.
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-probe-'));
	const flag = path.join(dir, 'go');
	const reports = path.join(dir, 'reports');
	fs.mkdirSync(reports);
	const script = `until [ -e '${flag}' ]; do sleep 0.02; done; exec '${process.execPath}' '${EVERYTHING}' stdio`;
	const srv = await launchV2({ command: 'sh', args: ['-c', script] });
	let sonde;
	try {
		const connected = srv.connect();
		let copy;
		for (let i = 0; i < 500 && !copy; i++) {
			copy = descendants(process.pid).find((p) => {
				try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(flag); } catch { return false; }
			});
			if (!copy) await sleep(20);
		}
		assert.ok(copy, 'the probe copy of the server');
		sonde = await startSonde(copy, ['--report-dir', reports]);
		fs.writeFileSync(flag, '');
		await connected;
		assert.notEqual(srv.pid, copy, 'the session runs on another process than the probe');
		const r = await srv.client.callTool({ name: 'echo', arguments: { message: 'after the probe' } });
		assert.equal(r.content[0].text, 'Echo: after the probe');
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === copy), 10000);
		const events = await stopSonde(sonde);
		const mine = events.filter((e) => e.pid === copy);
		assert.deepEqual(calls(mine).map((e) => [e.method, e.status, e.error_code]), [['server/discover', 'probe_failed', -32601]]);
		const exit = mine.find((e) => e.type === 'exit');
		assert.deepEqual([exit.reason, exit.normal, exit.pending_calls, exit.signal ?? exit.exit_code],
			['probe', true, 0, exit.signal ?? 0], JSON.stringify(exit));
		assert.deepEqual(events.filter((e) => e.type === 'report'), []);
		assert.deepEqual(fs.readdirSync(reports), []);
	} finally {
		killSonde(sonde);
		await srv.close();
		for (const p of descendants(process.pid)) if (fs.existsSync(`/proc/${p}/cmdline`) && fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(flag)) killPid(p);
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('ring buffer overflow: calls are lost, not orphaned; the exit stays normal; every call after it is reported', { timeout: TIMEOUT }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-flood-'));
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--ringbuf-mb', '1', '--report-dir', dir]);
		// mcpsonde stopped, the ring buffer (1 MiB) cannot drain: 24 calls of 400 KB overflow it.
		killPid(sonde.proc.pid, 'SIGSTOP');
		const big = 'x'.repeat(400000);
		try {
			await Promise.all(Array.from({ length: 24 }, () => srv.client.callTool({ name: 'echo', arguments: { message: big } })));
		} finally {
			killPid(sonde.proc.pid, 'SIGCONT');
		}
		const flood = srv.log.requests.filter((r) => r.tool === 'echo');
		await sleep(1500);
		const t1 = process.hrtime.bigint();
		for (let i = 0; i < 50; i++) await srv.client.callTool({ name: 'echo', arguments: { message: `after ${i}` } });
		const after = srv.log.since(t1);
		await waitForEvents(sonde, (evs) => after.every((r) => calls(evs).some((e) => e.id === r.id)), 10000);
		await srv.close();
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === srv.pid), 10000);
		const events = await stopSonde(sonde);

		const losses = events.filter((e) => e.type === 'loss');
		assert.ok(losses.some((e) => e.reason === 'ringbuf_full'), 'the ring buffer overflowed');
		assertDurationsWithinRtt(assertCallsMatch(after, events, { allowExtra: true }));
		const byId = new Map(calls(events).map((e) => [JSON.stringify(e.id), e]));
		for (const r of flood) {
			const e = byId.get(JSON.stringify(r.id));
			assert.ok(!e || e.status === 'ok' || e.status === 'lost', `flood call ${r.id}: ${JSON.stringify(e)}`);
		}
		assert.deepEqual(calls(events).filter((e) => !['ok', 'lost'].includes(e.status)), []);
		const exit = events.find((e) => e.type === 'exit' && e.pid === srv.pid);
		assert.deepEqual([exit.reason, exit.normal, exit.pending_calls], ['shutdown', true, 0], JSON.stringify(exit));
		assert.deepEqual(events.filter((e) => e.type === 'report'), []);
		assert.deepEqual(fs.readdirSync(dir), []);
	} finally {
		if (sonde) killPid(sonde.proc.pid, 'SIGCONT');
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('a tools/list longer than the catalog, or cut by --max-frame: said so, and learned as far as it goes', { timeout: TIMEOUT }, async () => {
	const srv = await launchV2({ env: { V2_EXTRA_TOOLS: '4200' } });
	let whole, cut;
	try {
		await srv.connect();
		const port = await freePort();
		whole = await startSonde(srv.pid, ['--metrics', `127.0.0.1:${port}`]);
		cut = await startSonde(srv.pid, ['--max-frame', '65536']);
		const { tools } = await srv.client.listTools();
		assert.equal(tools.length, 4205);
		// extra-00000 is in the head of the list: its schema (n required) is known to both
		await srv.client.callTool({ name: 'extra-00000', arguments: {} }).catch(() => {});
		for (const s of [whole, cut]) await waitForEvents(s, (evs) => calls(evs).length >= 2);
		const samples = await scrapeWhen(port, (s) => metricSum(s, 'mcpsonde_tools', { server: 'v2-test-server' }) === 4205);
		const [ew, ec] = [await stopSonde(whole), await stopSonde(cut)];

		const lw = ew.find((e) => e.type === 'tools_list');
		assert.deepEqual([lw.count, lw.kept, lw.truncated], [4205, 4096, true]);
		assert.equal(metricSum(samples, 'mcpsonde_tools', { server: 'v2-test-server' }), 4205);
		assert.equal(metricSum(samples, 'mcpsonde_tools_list_truncated_total', { server: 'v2-test-server' }), 1);

		const lc = ec.find((e) => e.type === 'tools_list');
		assert.equal(lc.truncated, true);
		assert.ok(lc.kept > 100 && lc.kept < 4205 && lc.count === lc.kept, JSON.stringify(lc));
		assert.equal(calls(ec).find((e) => e.method === 'tools/list').oversized, true);
		for (const evs of [ew, ec]) {
			const call = calls(evs).find((e) => e.tool === 'extra-00000');
			assert.deepEqual(call.schema_violations, [{ kind: 'missing_required', property: 'n' }]);
		}
	} finally {
		killSonde(whole);
		killSonde(cut);
		await srv.close();
	}
});

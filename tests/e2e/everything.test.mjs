// server-everything driven by the SDK Client over socketpairs (what every Node-based client
// does), observed by `mcpsonde attach --json` and `mcpsonde record`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	launchSocketpair, startSonde, spawnSonde, stopSonde, killSonde, waitForEvents, runSonde,
	everythingWorkload, assertCallsMatch, assertDurationsWithinRtt, assertEventShape, calls,
	clientNotifications, sondeNotifications, count, sleep, assertMsResolution,
} from './lib.mjs';

const TIMEOUT = 120000;

// The call events of a run, reduced to what live attach and replay must agree on.
const callKey = (e) => ({
	type: e.type, method: e.method, id: e.id, tool: e.tool ?? null, status: e.status,
	error_code: e.error_code ?? null, duration_ms: e.duration_ms,
});
const byId = (a, b) => JSON.stringify(a.id).localeCompare(JSON.stringify(b.id));

test('socketpair: attached mid-session, every request is exactly one call event', { timeout: TIMEOUT }, async () => {
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid);
		const t0 = sonde.t_attached;
		const work = await everythingWorkload(srv.client);
		const requests = srv.log.since(t0);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length
			&& sondeNotifications(evs).length >= clientNotifications(srv.log, t0).length);
		const events = await stopSonde(sonde);

		assertEventShape(events, [srv.pid]);
		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);

		const find = (pred) => {
			const p = pairs.find(([r]) => pred(r));
			assert.ok(p, 'request not found in the client log');
			return p[1];
		};
		assert.equal(find((r) => r.tool?.startsWith('no-such-tool-')).status, 'tool_error', 'unknown tool');
		assert.equal(find((r) => r.tool === 'get-sum' && typeof r.params.arguments.a === 'string').status, 'tool_error', 'invalid arguments');
		const unknownMethod = find((r) => r.method === 'no/such_method');
		assert.equal(unknownMethod.status, 'error');
		assert.equal(unknownMethod.error_code, -32601);
		const unknownUri = find((r) => r.method === 'resources/read');
		assert.equal(unknownUri.status, 'error');
		assert.equal(unknownUri.error_code, -32602);

		// The ~300 KB echo is captured whole: request and response sizes as the client sent/got them.
		const [bigReq, bigEv] = pairs.find(([r]) => r.tool === 'echo' && r.params.arguments.message === work.bigMessage);
		assert.equal(bigEv.status, 'ok');
		assert.ok(bigEv.response_bytes > 300000, `response_bytes ${bigEv.response_bytes}`);
		assert.ok(bigEv.request_bytes > 300000, `request_bytes ${bigEv.request_bytes}`);
		assert.ok(!bigEv.oversized, 'a 300 KB frame is within the frame cap');
		const sizeProblems = [];
		for (const [r, e] of pairs) {
			// The client's figure counts the "\n"; mcpsonde may or may not.
			if (!(Math.abs(e.request_bytes - r.request_bytes) <= 1)) sizeProblems.push(`id ${r.id}: request_bytes ${e.request_bytes}, client wrote ${r.request_bytes}`);
			if (!(Math.abs(e.response_bytes - r.response_bytes) <= 1)) sizeProblems.push(`id ${r.id}: response_bytes ${e.response_bytes}, client read ${r.response_bytes}`);
		}
		assert.deepEqual(sizeProblems, [], 'frame sizes');
		assert.equal(bigReq.outcome, 'ok');

		// tools/call carries the argument names only.
		const argKeyProblems = [];
		for (const [r, e] of pairs) {
			if (r.method !== 'tools/call') continue;
			const want = Object.keys(r.params.arguments ?? {}).sort();
			if (JSON.stringify([...(e.arg_keys ?? [])].sort()) !== JSON.stringify(want)) argKeyProblems.push(`id ${r.id} ${r.tool}: arg_keys ${JSON.stringify(e.arg_keys)}, sent ${JSON.stringify(want)}`);
		}
		assert.deepEqual(argKeyProblems, [], 'arg_keys');

		// Progress notifications (and any other notification) as the client saw them.
		assert.ok(srv.log.notificationsReceived.filter((n) => n.method === 'notifications/progress').length === 4, 'the server sent 4 progress notifications');
		assert.deepEqual(sondeNotifications(events), clientNotifications(srv.log, t0), 'notification events');

		// No argument value appears without --capture-values.
		for (const s of work.secrets) assert.equal(count(sonde.stdoutText, s), 0, `argument value ${s} in mcpsonde output`);

		assert.deepEqual(events.filter((e) => e.type === 'invalid' || e.type === 'loss'), [], 'a clean session has no invalid frame and no loss');
		assertMsResolution(sonde.stdoutText);
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

test('socketpair: attached before initialize, the session event carries the identity', { timeout: TIMEOUT }, async () => {
	const srv = await launchSocketpair();
	let sonde;
	try {
		sonde = await startSonde(srv.pid);
		const t0 = sonde.t_attached;
		await srv.connect();
		await srv.client.callTool({ name: 'echo', arguments: { message: 'after-initialize' } });
		await srv.client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } });
		const requests = srv.log.since(t0);
		assert.equal(requests[0].method, 'initialize');
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length && evs.some((e) => e.type === 'session' && e.server_info));
		const events = await stopSonde(sonde);

		assertEventShape(events, [srv.pid]);
		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);

		const init = srv.log.requests[0];
		const sessions = events.filter((e) => e.type === 'session' && e.server_info);
		assert.ok(sessions.length >= 1, `no session event with server_info: ${JSON.stringify(events.filter((e) => e.type === 'session'))}`);
		const s = sessions.at(-1);
		assert.equal(s.protocol_version, init.response.result.protocolVersion);
		assert.deepEqual({ name: s.client?.name, version: s.client?.version }, { name: init.params.clientInfo.name, version: init.params.clientInfo.version });
		const info = srv.client.getServerVersion();
		assert.deepEqual({ name: s.server_info?.name, version: s.server_info?.version }, { name: info.name, version: info.version });
		// serverInfo.name names the server from then on.
		assert.equal(events.filter((e) => e.type === 'call').at(-1).server, info.name);

		// notifications/initialized (client) and tools/list_changed (server) were seen.
		assert.deepEqual(sondeNotifications(events), clientNotifications(srv.log, t0), 'notification events');
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

test('ids as on the wire: "7" and 7 are two calls, a string id stays a string', { timeout: TIMEOUT }, async () => {
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid);
		const t0 = sonde.t_attached;
		// Raw requests on the SDK's transport: the Client only makes numeric ids. Their answers
		// reach the client log; the Client itself ignores them (unknown ids).
		const raw = [7, '7', 'req-\u00e9"quoted"'];
		for (const id of raw) {
			await srv.transport.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'get-sum', arguments: { a: 1, b: 2 } } });
		}
		await srv.client.callTool({ name: 'echo', arguments: { message: 'numbered by the SDK' } });
		const until = Date.now() + 5000;
		while (srv.log.since(t0).some((r) => r.t_recv === null) && Date.now() < until) await sleep(20);
		const requests = srv.log.since(t0);
		assert.equal(requests.length, raw.length + 1);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length);
		const events = await stopSonde(sonde);
		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);
		for (const id of raw) {
			const e = calls(events).filter((x) => JSON.stringify(x.id) === JSON.stringify(id));
			assert.equal(e.length, 1, `one call event with id ${JSON.stringify(id)}`);
			assert.equal(typeof e[0].id, typeof id);
		}
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

test('record + replay: a capture replays into the same call events as the live attach', { timeout: TIMEOUT }, async (t) => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-rec-'));
	const cap = path.join(dir, 'cap.msd');
	const srv = await launchSocketpair();
	let live, rec;
	try {
		await srv.connect();
		[live, rec] = await Promise.all([
			startSonde(srv.pid),
			spawnSonde(['record', '-p', String(srv.pid), '-o', cap], { ready: /^mcpsonde: (attached|recording)/ }),
		]);
		const t0 = live.t_attached > rec.t_attached ? live.t_attached : rec.t_attached;
		await everythingWorkload(srv.client, { big: true, progress: true });
		const requests = srv.log.since(t0);
		await waitForEvents(live, (evs) => calls(evs).length >= requests.length);
		await sleep(300);
		const [liveEvents] = await Promise.all([stopSonde(live), stopSonde(rec)]);
		assertCallsMatch(requests, liveEvents);
		assert.ok(fs.statSync(cap).size > 32, 'capture has records');

		const replay = await runSonde(['replay', cap, '--json']);
		assert.equal(replay.code, 0, `replay exit status; stderr: ${replay.stderr}`);
		const replayed = replay.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
		// The recorder may have started a little before the live attach: compare the calls the
		// client made while both ran.
		const ids = new Set(requests.map((r) => JSON.stringify(r.id)));
		const pick = (evs) => calls(evs).filter((e) => e.direction === 'client_to_server' && ids.has(JSON.stringify(e.id))).map(callKey).sort(byId);
		const rp = pick(replayed), lp = pick(liveEvents);
		// The recorder and the live attach are two mcpsonde instances, each with its own BPF
		// programs on the same tracepoints: each stamps a syscall when its own program runs, so
		// the same call's duration differs between them by the other program's run time (tens
		// of µs when it copies a large buffer). Everything else must be identical.
		const noDuration = (xs) => xs.map(({ duration_ms, ...rest }) => rest);
		assert.deepEqual(noDuration(rp), noDuration(lp), 'replayed call events == live call events');
		const durationProblems = [];
		for (let i = 0; i < rp.length; i++) {
			const d = Math.abs(rp[i].duration_ms - lp[i].duration_ms);
			if (!(d <= Math.max(1, 0.02 * lp[i].duration_ms))) durationProblems.push(`id ${lp[i].id}: replay ${rp[i].duration_ms} ms, live ${lp[i].duration_ms} ms`);
		}
		assert.deepEqual(durationProblems, [], 'replayed durations == live durations (within the two probes\' skew)');
		assert.deepEqual(sondeNotifications(replayed).filter((n) => n.includes('progress')), sondeNotifications(liveEvents).filter((n) => n.includes('progress')));
		// Wall-clock times come from the kernel's monotonic stamps and the recorder's
		// monotonic->realtime offset: the same instants as live, within clock-reading jitter.
		const tsOf = (evs) => new Map(calls(evs).filter((e) => ids.has(JSON.stringify(e.id))).map((e) => [JSON.stringify(e.id), Date.parse(e.ts)]));
		const liveTs = tsOf(liveEvents);
		for (const [id, t] of tsOf(replayed)) assert.ok(Math.abs(t - liveTs.get(id)) <= 1, `id ${id}: replayed ts ${t} vs live ${liveTs.get(id)}`);

		// Replay needs no privilege: run it again as nobody, when nobody can reach the binary.
		if (process.getuid() === 0) {
			fs.chmodSync(dir, 0o755);
			fs.chmodSync(cap, 0o644);
			const asNobody = await runSonde(['replay', cap, '--json'], { uid: 65534, gid: 65534 });
			if (asNobody.spawnError?.code === 'EACCES') {
				t.diagnostic('replay as nobody not run: build/mcpsonde not reachable by nobody');
			} else {
				assert.equal(asNobody.code, 0, `replay as nobody: ${asNobody.stderr}`);
				assert.equal(asNobody.stdout, replay.stdout, 'replay as nobody gives the same output');
			}
		}
	} finally {
		killSonde(live);
		killSonde(rec);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

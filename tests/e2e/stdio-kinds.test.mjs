// The other two ways servers are started: from a shell with real pipes, and through npx.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	launchFifo, launchNpx, launchSocketpair, startSonde, EVERYTHING, stopSonde, killSonde, waitForEvents, everythingWorkload,
	assertCallsMatch, assertDurationsWithinRtt, assertEventShape, calls, count, descendants,
	clientNotifications, sondeNotifications,
} from './lib.mjs';

const TIMEOUT = 120000;

const comm = (pid) => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();

async function observe(srv, attachPid, { big = true } = {}) {
	const sonde = await startSonde(attachPid);
	try {
		const t0 = sonde.t_attached;
		const work = await everythingWorkload(srv.client, { big, progress: true });
		const requests = srv.log.since(t0);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length
			&& sondeNotifications(evs).length >= clientNotifications(srv.log, t0).length);
		const events = await stopSonde(sonde);
		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);
		assert.deepEqual(sondeNotifications(events), clientNotifications(srv.log, t0), 'notification events');
		for (const s of work.secrets) assert.equal(count(sonde.stdoutText, s), 0, `argument value ${s} in mcpsonde output`);
		if (big) {
			const [, e] = pairs.find(([r]) => r.params?.arguments?.message === work.bigMessage);
			assert.equal(e.status, 'ok');
			assert.ok(e.response_bytes > 300000, `response_bytes ${e.response_bytes}`);
		}
		assert.deepEqual(events.filter((e) => e.type === 'invalid' || e.type === 'loss'), [], 'no invalid frame, no loss');
		return { events, pairs };
	} finally {
		killSonde(sonde);
	}
}

test('shell pipeline: stdin/stdout are pipes (FIFOs), the shell execs node', { timeout: TIMEOUT }, async () => {
	const srv = await launchFifo();
	try {
		// The premise: the server's fd 0 and 1 are FIFOs, not sockets.
		for (const fd of [0, 1]) assert.ok(fs.statSync(`/proc/${srv.pid}/fd/${fd}`).isFIFO(), `fd ${fd} is a FIFO`);
		await srv.connect();
		assert.equal(comm(srv.pid), 'node', 'sh exec\'d node: same pid');
		const { events } = await observe(srv, srv.pid);
		assertEventShape(events, [srv.pid]);
	} finally {
		await srv.close();
	}
});

test('npx chain: attached to the npm wrapper, mcpsonde follows its existing children', { timeout: TIMEOUT }, async () => {
	const srv = await launchNpx();
	try {
		await srv.connect();
		// npm exec -> sh -c -> node: the node grandchild does the I/O.
		const tree = descendants(srv.pid);
		const node = tree.filter((p) => comm(p) === 'node');
		assert.equal(node.length, 1, `one node process under npm: ${tree.map((p) => `${p}:${comm(p)}`).join(' ')}`);
		const { events } = await observe(srv, srv.pid);
		const callPids = [...new Set(calls(events).map((e) => e.pid))];
		assert.deepEqual(callPids, node, 'call events come from the node grandchild');
		// Attached mid-session (no initialize seen): named after the package its .bin link runs.
		assert.deepEqual([...new Set(calls(events).map((e) => e.server))], ['@modelcontextprotocol/server-everything']);
		assertEventShape(events, [srv.pid, ...tree]);
	} finally {
		await srv.close();
	}
});

test('a server started after mcpsonde: attached to its launcher, the forked server is followed', { timeout: TIMEOUT }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-later-'));
	const flag = path.join(dir, 'go');
	// No exec: node is a new process, forked by the tracked shell once the flag exists.
	const script = `while [ ! -e '${flag}' ]; do sleep 0.05; done; '${process.execPath}' '${EVERYTHING}' stdio`;
	const srv = await launchSocketpair({ command: 'sh', args: ['-c', script] });
	let sonde;
	try {
		sonde = await startSonde(srv.pid);
		const t0 = sonde.t_attached;
		assert.deepEqual(descendants(srv.pid).filter((p) => comm(p) === 'node'), [], 'no server yet when mcpsonde attaches');
		fs.writeFileSync(flag, '');
		await srv.connect();
		const node = descendants(srv.pid).filter((p) => comm(p) === 'node');
		assert.equal(node.length, 1, 'the shell forked one node server');
		await srv.client.callTool({ name: 'echo', arguments: { message: 'started after' } });
		await srv.client.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } });
		await srv.client.callTool({ name: 'no-such-tool', arguments: {} });
		const requests = srv.log.since(t0);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length
			&& evs.some((e) => e.type === 'session' && e.server_info));
		const events = await stopSonde(sonde);
		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);
		assert.equal(pairs[0][0].method, 'initialize', 'the initialize of a server born after attach is seen');
		assert.deepEqual([...new Set(calls(events).map((e) => e.pid))], node, 'calls come from the forked server');
		const s = events.filter((e) => e.type === 'session' && e.server_info).at(-1);
		assert.equal(s.server_info.name, srv.client.getServerVersion().name);
		// The shell's `sleep` children were forks of a tracked process too: their exits are
		// reported, and nothing else of theirs.
		const sleepers = events.filter((e) => e.type === 'exit' && e.server === 'sleep').map((e) => e.pid);
		assertEventShape(events, [srv.pid, ...node, ...sleepers]);
	} finally {
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

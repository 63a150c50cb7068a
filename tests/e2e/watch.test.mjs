// watch --all: every MCP server on the machine found by its traffic, without a PID.
//
// Other engineers' tests run MCP servers and mcpsonde instances on this machine at the same
// time, and watch sees all of them: every assertion here is about the processes this file
// started (by pid and start time), never about everything watch saw.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	launchFifo, launchNpx, launchSocketpair, EVERYTHING, MEMORY, TESTS, stopSonde, killSonde, killPid, waitForEvents,
	assertCallsMatch, assertDurationsWithinRtt, calls, descendants, freePort, httpGet, parseMetrics, metricSum,
	runSonde, startWatch, startTicks, sleep, deadline, randomTag, requestUnknownMethod, sondeEvents,
} from './lib.mjs';

const TIMEOUT = 180000;

const comm = (pid) => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
const of = (events, pid, start) => events.filter((e) => e.pid === pid && e.start_ticks === start);

// What every server here is asked: the client log then says what mcpsonde must report.
async function workload(client, { memory = false } = {}) {
	await client.listTools();
	if (memory) {
		await client.callTool({ name: 'create_entities', arguments: { entities: [{ name: `e-${randomTag()}`, entityType: 't', observations: ['o'] }] } });
		await client.callTool({ name: 'read_graph', arguments: {} });
	} else {
		await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
		await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
	}
	await requestUnknownMethod(client);
}

// The server process of a launch: the npx chain's is the node grandchild of npm.
function serverPid(srv) {
	if (srv.kind !== 'npx') return srv.pid;
	const node = descendants(srv.pid).filter((p) => comm(p) === 'node');
	assert.equal(node.length, 1, 'one node process under npm');
	return node[0];
}

test('started after watch --all: SDK clients (socketpairs), a shell pipeline (pipes), an npx chain; the inventory survives a restart', { timeout: TIMEOUT }, async () => {
	const state = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-watch-'));
	const port = await freePort();
	const memoryFile = path.join(state, 'memory.json');
	let sonde = await startWatch(['--metrics', `127.0.0.1:${port}`, '--state-dir', state]);
	const launched = [];
	try {
		launched.push(await launchSocketpair());
		launched.push(await launchSocketpair({ args: [MEMORY], env: { MEMORY_FILE_PATH: memoryFile } }));
		launched.push(await launchFifo());
		launched.push(await launchNpx());
		const servers = [];
		for (const [i, srv] of launched.entries()) {
			await srv.connect();
			await workload(srv.client, { memory: i === 1 });
			const pid = serverPid(srv);
			servers.push({ srv, pid, start: startTicks(pid), wrappers: srv.kind === 'npx' ? [srv.pid, ...descendants(srv.pid).filter((p) => p !== pid)] : [] });
		}
		await waitForEvents(sonde, (evs) => servers.every((s) => calls(of(evs, s.pid, s.start)).length >= s.srv.log.requests.length), 15000);
		const events = await (async () => {
			for (const s of servers) await s.srv.close();
			await waitForEvents(sonde, (evs) => servers.every((s) => of(evs, s.pid, s.start).some((e) => e.type === 'exit')), 15000);
			return stopSonde(sonde);
		})();

		for (const s of servers) {
			const mine = of(events, s.pid, s.start);
			// Found without a PID, from its first message on: initialize is a call like the others.
			const pairs = assertCallsMatch(s.srv.log.requests, mine);
			assertDurationsWithinRtt(pairs);
			assert.ok(s.srv.log.requests.some((r) => r.method === 'initialize'), 'the client sent initialize');
			const session = mine.find((e) => e.type === 'session');
			assert.ok(session, `${s.srv.kind}: a session event`);
			assert.equal(session.found, 'discovered');
			// Who talks to it: this process holds the other end of its stdin (socketpair, FIFO).
			assert.equal(session.client_process?.pid, process.pid, `${s.srv.kind}: client process ${JSON.stringify(session.client_process)}`);
			assert.equal(session.client_process.start_ticks, startTicks(process.pid));
			assert.equal(session.relay, undefined);
			assert.equal(mine.find((e) => e.type === 'exit')?.normal, true, `${s.srv.kind}: exit`);
			// Every event of it names it the same way: pid and start time.
			assert.deepEqual(events.filter((e) => e.pid === s.pid && e.start_ticks !== s.start), []);
			// Wrappers (npm exec, sh) read nothing: never servers.
			for (const w of s.wrappers) assert.deepEqual(events.filter((e) => e.pid === w), [], `wrapper ${w}`);
		}

		// The inventory: after the run, from the file, and again from a new mcpsonde.
		const listed = await runSonde(['servers', '--json', '--state-dir', state]);
		assert.equal(listed.code, 0, listed.stderr);
		const checkInventory = (doc, what) => {
			for (const s of servers) {
				const r = doc.servers.filter((x) => x.pid === s.pid && x.start_ticks === s.start);
				assert.equal(r.length, 1, `${what}: one record for ${s.srv.kind} server ${s.pid}`);
				const want = s.srv.log.requests;
				assert.equal(r[0].calls, want.length, `${what}: ${s.srv.kind} calls`);
				assert.equal(r[0].errors, want.filter((q) => q.outcome === 'error' || q.outcome === 'isError').length, `${what}: errors`);
				assert.equal(r[0].client_process.pid, process.pid, `${what}: client process`);
				assert.equal(r[0].found, 'discovered');
				assert.equal(r[0].state, 'exited');
				assert.equal(r[0].exit.normal, true);
				assert.match(r[0].tools.digest, /^[0-9a-f]{16}$/);
				assert.ok(r[0].tools.count > 0, `${what}: tools count`);
				for (const w of s.wrappers) assert.equal(doc.servers.filter((x) => x.pid === w).length, 0, `${what}: wrapper ${w} is no server`);
			}
			// Two runs of the same server give the same catalog digest; another server, another.
			const digest = (i) => doc.servers.find((x) => x.pid === servers[i].pid).tools.digest;
			assert.equal(digest(0), digest(2), `${what}: server-everything twice, one digest`);
			assert.notEqual(digest(0), digest(1), `${what}: server-memory has other tools`);
		};
		checkInventory(JSON.parse(listed.stdout), 'servers --json');
		assert.equal((fs.statSync(path.join(state, 'servers.json')).mode & 0o777), 0o600, 'servers.json is 0600');
		const text = await runSonde(['servers', '--state-dir', state]);
		assert.match(text.stdout, new RegExp(`^${servers[0].pid}\\s+exited\\s+mcp-servers/everything`, 'm'));

		sonde = await startWatch(['--metrics', `127.0.0.1:${port}`, '--state-dir', state]);
		let doc;
		for (const until = Date.now() + 10000; Date.now() < until; await sleep(100)) {
			const r = await httpGet(`http://127.0.0.1:${port}/servers`);
			if (r.status === 200) {
				assert.match(r.type, /application\/json/);
				doc = JSON.parse(r.text);
				break;
			}
		}
		assert.ok(doc, 'GET /servers');
		checkInventory(doc, 'GET /servers after a restart');
		const samples = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		assert.ok(metricSum(samples, 'mcpsonde_servers', { state: 'exited' }) >= servers.length, 'mcpsonde_servers{state="exited"}');
		await stopSonde(sonde);
	} finally {
		killSonde(sonde);
		for (const srv of launched) await srv.close();
		fs.rmSync(state, { recursive: true, force: true });
	}
});

test('already running before watch --all: found at its next call, every later call reported', { timeout: TIMEOUT }, async () => {
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		await srv.client.listTools();
		await srv.client.callTool({ name: 'echo', arguments: { message: 'before' } });
		const start = startTicks(srv.pid);
		sonde = await startWatch();
		const t0 = sonde.t_attached;
		await workload(srv.client);
		const requests = srv.log.since(t0);
		await waitForEvents(sonde, (evs) => calls(of(evs, srv.pid, start)).length >= requests.length, 10000);
		const events = await stopSonde(sonde);
		const mine = of(events, srv.pid, start);
		assertDurationsWithinRtt(assertCallsMatch(requests, mine));
		const session = mine.find((e) => e.type === 'session');
		assert.equal(session?.found, 'discovered');
		assert.equal(session.client_process?.pid, process.pid);
		assert.equal(session.protocol_version, undefined, 'found mid-session: no initialize seen');
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

test('a relay (socat between the client and the server) is shown as a relay, not counted as a server', { timeout: TIMEOUT }, async () => {
	const port = await freePort();
	const sonde = await startWatch(['--metrics', `127.0.0.1:${port}`]);
	const srv = await launchSocketpair({ command: 'socat', args: ['STDIO', `EXEC:${process.execPath} ${EVERYTHING} stdio`] });
	try {
		await srv.connect();
		await workload(srv.client);
		const socat = srv.pid;
		const kids = descendants(socat);
		assert.equal(kids.length, 1, 'socat runs the server');
		const node = kids[0], start = startTicks(node);
		await waitForEvents(sonde, (evs) => calls(of(evs, node, start)).length >= srv.log.requests.length, 10000);
		// /servers and /metrics are snapshots, published at most every 250 ms.
		let inventory;
		for (const until = Date.now() + 5000; Date.now() < until; await sleep(100)) {
			inventory = JSON.parse((await httpGet(`http://127.0.0.1:${port}/servers`)).text).servers;
			if (inventory.some((x) => x.pid === node && x.calls === srv.log.requests.length)) break;
		}
		const samples = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		await srv.close();
		const events = await stopSonde(sonde);

		assertCallsMatch(srv.log.requests, of(events, node, start));
		const session = of(events, node, start).find((e) => e.type === 'session');
		assert.equal(session.relay?.pid, socat, `relay ${JSON.stringify(session.relay)}`);
		assert.equal(session.relay.comm, 'socat');
		assert.equal(session.client_process?.pid, process.pid, 'the client beyond the relay');
		assert.deepEqual(events.filter((e) => e.pid === socat), [], 'no event of the relay');
		assert.equal(inventory.filter((x) => x.pid === socat).length, 0, 'the relay is not in the inventory');
		assert.equal(inventory.find((x) => x.pid === node)?.relay?.pid, socat);
		assert.equal(samples.filter((s) => s.labels.pid === String(socat) || s.labels.server === 'socat').length, 0, 'no series of the relay');
		assert.ok(metricSum(samples, 'mcpsonde_discovery_verdicts_total', { verdict: 'relay' }) >= 1);
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

// A pipeline stage that says who it is, then becomes the command: `sh -c 'echo NAME $$; exec CMD'`.
function stage(name, cmd) {
	return `sh -c 'echo ${name} $$ >&3; exec ${cmd}'`;
}

async function pipeline(script) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-pipe-'));
	const pids = path.join(dir, 'pids');
	const sh = spawn('sh', ['-c', `(${script}) 3>${pids}`], { stdio: 'ignore' });
	const code = await new Promise((r) => sh.once('exit', r));
	const out = Object.fromEntries(fs.readFileSync(pids, 'utf8').trim().split('\n').map((l) => l.split(' ')).map(([n, p]) => [n, Number(p)]));
	fs.rmSync(dir, { recursive: true, force: true });
	return { code, pids: out };
}

test('non-MCP traffic is left alone: 400 MB of text and JSON lines without jsonrpc never become servers', { timeout: TIMEOUT }, async () => {
	const port = await freePort();
	const sonde = await startWatch(['--metrics', `127.0.0.1:${port}`]);
	try {
		const before = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		// head reads the text 8 KiB at a time: about 49,000 reads of its stdin, and as many of wc's.
		const text = await pipeline(`yes 'lorem ipsum dolor sit amet, consectetur adipiscing' | ${stage('head', 'head -c 400000000')} | ${stage('wc', 'wc -c')} >/dev/null`);
		const lines = await pipeline(`i=0; while [ $i -lt 3000 ]; do echo "{\\"id\\":$i,\\"method\\":\\"x\\",\\"params\\":{}}"; i=$((i+1)); done | ${stage('jq', 'wc -l')} >/dev/null`);
		assert.equal(text.code, 0);
		assert.equal(lines.code, 0);
		await sleep(1500); // a snapshot is published once a second
		const after = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		const events = await stopSonde(sonde);
		const readers = [text.pids.head, text.pids.wc, lines.pids.jq];
		assert.deepEqual(events.filter((e) => readers.includes(e.pid)), [], 'no event of the pipelines');
		const delta = (name, labels) => metricSum(after, name, labels) - metricSum(before, name, labels);
		// Their stdins were given up after a few reads: about 100,000 reads, a handful looked at.
		// Every other process on the machine that reads its stdin meanwhile is looked at too (up
		// to 64 reads each): the margin is for them, and stays 40 times below what looking at
		// every read of the pipelines would count.
		assert.ok(delta('mcpsonde_discovery_reads_total') < 2500, `reads looked at: ${delta('mcpsonde_discovery_reads_total')}`);
		assert.ok(delta('mcpsonde_discovery_verdicts_total', { verdict: 'not_json_rpc' }) >= 3, 'stdins given up');
	} finally {
		killSonde(sonde);
	}
});

test('JSON-RPC that is not MCP is let go; --exclude and --include select; mcpsonde never observes itself', { timeout: TIMEOUT }, async () => {
	const port = await freePort();
	const tag = randomTag();
	const sonde = await startWatch(['--metrics', `127.0.0.1:${port}`, '--exclude', `cmdline=*excluded-${tag}*`]);
	const procs = [];
	try {
		// A JSON-RPC peer of another protocol, reading newline-delimited messages.
		const lsp = spawn(process.execPath, ['-e', 'process.stdin.on("data", () => {})', `lsp-${tag}`], { stdio: ['pipe', 'ignore', 'ignore'] });
		procs.push(lsp);
		for (let i = 0; i < 8; i++) {
			lsp.stdin.write(`${JSON.stringify({ jsonrpc: '2.0', id: i, method: 'textDocument/hover', params: { position: { line: i } } })}\n`);
			await sleep(50);
		}
		// An MCP server, excluded by its command line.
		const excluded = await launchSocketpair({ args: [EVERYTHING, 'stdio', `excluded-${tag}`] });
		procs.push({ close: () => excluded.close() });
		await excluded.connect();
		await workload(excluded.client);
		await sleep(1500);
		const samples = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		const events = await stopSonde(sonde);
		assert.deepEqual(events.filter((e) => e.pid === lsp.pid), [], 'the JSON-RPC peer is told nothing');
		assert.deepEqual(events.filter((e) => e.pid === excluded.pid), [], 'the excluded server is told nothing');
		assert.ok(metricSum(samples, 'mcpsonde_discovery_verdicts_total', { verdict: 'not_mcp' }) >= 1, 'not_mcp verdict');
		assert.ok(metricSum(samples, 'mcpsonde_discovery_verdicts_total', { verdict: 'excluded' }) >= 1, 'excluded verdict');

		// --include: only what matches.
		const only = await startWatch(['--include', `cmdline=*included-${tag}*`]);
		const a = await launchSocketpair({ args: [EVERYTHING, 'stdio', `included-${tag}`] });
		const b = await launchSocketpair();
		procs.push({ close: () => a.close() }, { close: () => b.close() });
		for (const s of [a, b]) {
			await s.connect();
			await workload(s.client);
		}
		await waitForEvents(only, (evs) => calls(evs.filter((e) => e.pid === a.pid)).length >= a.log.requests.length, 10000);
		const evs = await stopSonde(only);
		assertCallsMatch(a.log.requests, evs.filter((e) => e.pid === a.pid));
		assert.deepEqual(evs.filter((e) => e.pid === b.pid), [], 'not included');

		// Given its own pid, attach refuses.
		const me = spawn('sh', ['-c', `exec ${JSON.stringify(path.join(TESTS, '../build/mcpsonde'))} attach -p $$`], { stdio: ['ignore', 'ignore', 'pipe'] });
		let err = '';
		me.stderr.on('data', (d) => { err += d; });
		const code = await Promise.race([new Promise((r) => me.once('exit', r)), deadline(20000)]);
		assert.equal(code, 1);
		assert.match(err, /mcpsonde itself/);
	} finally {
		killSonde(sonde);
		for (const p of procs) p.close ? await p.close() : killPid(p.pid);
	}
});

// A stdin judged for good costs its later reads one bit test: the judgement must not outlive
// the file. Each process here reads lines of text on its first stdin (a verdict: not JSON-RPC),
// then, without an exec, makes a FIFO its stdin by one of the four ways of putting a file on
// fd 0, and serves JSON-RPC there (the bench's pump server): every call must be found.
test('a stdin given up, then replaced without exec (dup2, dup3, close, close_range), is looked at again', { timeout: TIMEOUT }, async () => {
	const PUMP = path.join(TESTS, '../build/tools/pump');
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-swap-'));
	const sonde = await startWatch();
	const procs = [];
	try {
		for (const how of ['dup2', 'dup3', 'close', 'close_range']) {
			const fifo = path.join(dir, how);
			await new Promise((resolve, reject) => spawn('mkfifo', [fifo]).once('exit', (c) => (c === 0 ? resolve() : reject(new Error(`mkfifo ${c}`)))));
			const srv = spawn(PUMP, ['server', '--swap-stdin', `${how}:${fifo}`], { stdio: ['pipe', 'pipe', 'inherit'] });
			procs.push(srv);
			const start = startTicks(srv.pid);
			let out = '';
			srv.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
			// More whole lines than discovery reads before it gives a stdin up, in one write.
			srv.stdin.end(Array.from({ length: 8 }, (_, i) => `plain text, line ${i}\n`).join(''));
			// The server opens the FIFO once it has read all of that: our open waits for it.
			const w = fs.createWriteStream(fifo);
			const requests = [];
			for (let id = 1; id <= 5; id++) {
				const line = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { message: `${how} ${'x'.repeat(64)}` } } });
				requests.push({ id, method: 'tools/call', tool: 'echo', outcome: 'ok' });
				w.write(`${line}\n`);
				for (const until = Date.now() + 10000; out.split('\n').length <= id && Date.now() < until;) await sleep(10);
				assert.equal(out.split('\n').length, id + 1, `${how}: response ${id}`);
			}
			w.end();
			await waitForEvents(sonde, (evs) => calls(of(evs, srv.pid, start)).length >= requests.length, 10000);
			assertCallsMatch(requests, of(sondeEvents(sonde), srv.pid, start));
			await new Promise((r) => (srv.exitCode !== null ? r() : srv.once('exit', r)));
			assert.equal(srv.exitCode, 0, `${how}: the pump server's exit`);
		}
	} finally {
		killSonde(sonde);
		for (const p of procs) if (p.exitCode === null) killPid(p.pid);
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

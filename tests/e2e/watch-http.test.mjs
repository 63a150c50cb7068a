// Fleet mode finds MCP servers that speak HTTP (issue 12): `watch --all` with no PID, against
// real peers on 127.0.0.1: server-everything in streamableHttp mode started before mcpsonde
// (with a session already open: found at its next request) and one started after it (seen
// from its initialize), each driven by the SDK's StreamableHTTPClientTransport; beside them a
// plain HTTP server answering JSON and a TCP echo service, in processes of their own, which
// must produce no server and no event. The inventory (GET /servers) lists each HTTP server once
// however many connections its client opened. The legacy HTTP+SSE transport (2024-11-05) is
// found by its GET stream, so that every answer on it is joined to its request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

import {
	ClientLog, newClient, startWatch, stopSonde, killSonde, killPid, freePort, startTicks, deadline, sleep,
	waitForEvents, runSonde, calls, assertCallsMatch, assertDurationsWithinRtt, assertEventShape,
} from './lib.mjs';
import { startHttpServer } from './http-peers.mjs';

// A process of its own running a non-MCP service on 127.0.0.1; resolves {pid, port, close()}
// once it listens. plain: HTTP answering JSON (a health check, a REST POST); echo: a line
// service over TCP.
function startService(kind) {
	const src = {
		plain: `const s = require('node:http').createServer((q, r) => { let b = ''; q.on('data', (d) => b += d);
			q.on('end', () => { r.writeHead(200, {'content-type': 'application/json'}); r.end(JSON.stringify({ok: true, got: b.length})); }); });`,
		echo: `const s = require('node:net').createServer((c) => { c.on('data', (d) => c.write(d)); c.on('error', () => {}); });`,
	}[kind];
	const child = spawn(process.execPath, ['-e', `${src} s.listen(0, '127.0.0.1', () => process.send(s.address().port));`],
		{ stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
	const exited = new Promise((r) => child.once('exit', r));
	return new Promise((resolve, reject) => {
		child.once('message', (port) => resolve({
			pid: child.pid, port,
			async close() { killPid(child.pid); await Promise.race([exited, deadline(3000)]); },
		}));
		child.once('exit', (code) => reject(new Error(`${kind} service exited (${code})`)));
	});
}

async function connect(port) {
	const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`));
	const log = new ClientLog(transport);
	const client = newClient('mcpsonde-e2e-watch-http');
	await client.connect(transport);
	return { transport, client, log };
}

// The calls a client makes once mcpsonde watches: several tools, progress over SSE, a tool
// that does not exist, and two at once (the SDK opens another connection for them).
async function workload(client) {
	await client.listTools();
	await client.callTool({ name: 'echo', arguments: { message: 'found by its traffic' } });
	await client.callTool({ name: 'get-sum', arguments: { a: 19, b: 23 } });
	await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.2, steps: 2 } }, undefined, { onprogress: () => {} });
	await client.callTool({ name: 'no-such-tool', arguments: {} });
	await Promise.all([
		client.callTool({ name: 'echo', arguments: { message: 'one' } }),
		client.callTool({ name: 'echo', arguments: { message: 'two' } }),
	]);
}

// Non-MCP traffic: GETs and POSTs of JSON to the plain server, lines to the echo service.
async function noise(plainPort, echoPort) {
	for (let i = 0; i < 5; i++) {
		await (await fetch(`http://127.0.0.1:${plainPort}/health`)).text();
		await (await fetch(`http://127.0.0.1:${plainPort}/api/items`, {
			method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: i, name: 'item' }),
		})).text();
	}
	await new Promise((resolve, reject) => {
		const s = net.connect(echoPort, '127.0.0.1', () => s.write('PING\r\n'));
		let n = 0;
		s.on('data', () => { if (++n < 5) s.write(`POST ${n}\r\n`); else { s.end(); resolve(); } });
		s.on('error', reject);
	});
}

test('watch --all finds HTTP MCP servers by their traffic, already running or started later, and nothing else', { timeout: 90000 }, async () => {
	const before = await startHttpServer('everything', 'streamableHttp');
	const plain = await startService('plain');
	const echo = await startService('echo');
	const metricsPort = await freePort();
	const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-watch-http-'));
	let sonde, after, early, late;
	try {
		// A session open before mcpsonde starts: its connections are already established.
		early = await connect(before.port);
		await early.client.listTools();
		sonde = await startWatch(['--metrics', `127.0.0.1:${metricsPort}`, '--state-dir', stateDir]);
		const t0 = process.hrtime.bigint();

		after = await startHttpServer('everything', 'streamableHttp');
		late = await connect(after.port);
		await workload(late.client);
		await workload(early.client);
		await noise(plain.port, echo.port);

		const earlyRequests = early.log.since(t0);
		const want = late.log.requests.length + earlyRequests.length;
		const mine = (e) => e.pid === before.pid || e.pid === after.pid;
		await waitForEvents(sonde, (evs) => calls(evs.filter(mine)).length >= want, 10000);

		// GET /servers: each HTTP server once, found by discovery, with where it listens. It
		// serves a snapshot the event loop refreshes: wait until both servers are in it.
		let doc;
		for (const until = Date.now() + 10000; ;) {
			doc = await (await fetch(`http://127.0.0.1:${metricsPort}/servers`)).json();
			const has = (srv) => doc.servers.some((r) => r.pid === srv.pid && r.listen);
			if ((has(before) && has(after)) || Date.now() > until) break;
			await sleep(100);
		}
		for (const srv of [before, after]) {
			const recs = doc.servers.filter((r) => r.pid === srv.pid);
			assert.equal(recs.length, 1, `one inventory record for pid ${srv.pid}: ${JSON.stringify(recs)}`);
			assert.equal(recs[0].start_ticks, startTicks(srv.pid));
			assert.equal(recs[0].found, 'discovered');
			assert.equal(recs[0].transport, 'tcp');
			assert.equal(recs[0].listen, `127.0.0.1:${srv.port}`);
		}
		// Its initialize was seen only for the one started after mcpsonde.
		assert.equal(doc.servers.find((r) => r.pid === after.pid).server_info?.name, 'mcp-servers/everything');
		for (const p of [plain.pid, echo.pid])
			assert.equal(doc.servers.filter((r) => r.pid === p).length, 0, `no inventory record for non-MCP pid ${p}`);

		await late.transport.terminateSession();
		await early.transport.terminateSession();
		await late.client.close();
		await early.client.close();
		const events = await stopSonde(sonde);

		// `mcpsonde servers` reads the inventory written at exit: the same, once each.
		const listed = await runSonde(['servers', '--json', '--state-dir', stateDir]);
		assert.equal(listed.code, 0, listed.stderr);
		const saved = JSON.parse(listed.stdout).servers;
		for (const srv of [before, after])
			assert.equal(saved.filter((r) => r.pid === srv.pid && r.found === 'discovered' && r.listen === `127.0.0.1:${srv.port}`).length, 1,
				`mcpsonde servers lists pid ${srv.pid} once`);
		for (const p of [plain.pid, echo.pid])
			assert.equal(saved.filter((r) => r.pid === p).length, 0, `mcpsonde servers: no record for non-MCP pid ${p}`);

		// Nothing of the non-MCP services, nor of this test process (an HTTP client).
		for (const p of [plain.pid, echo.pid, process.pid])
			assert.deepEqual(events.filter((e) => e.pid === p).slice(0, 3), [], `events of non-MCP pid ${p}`);
		const ofServers = events.filter(mine);
		assertEventShape(ofServers, [before.pid, after.pid]);

		// Started after mcpsonde: every request from initialize on. Already running: every
		// request made after mcpsonde was ready.
		for (const [srv, requests] of [[after, late.log.requests], [before, earlyRequests]]) {
			const evs = ofServers.filter((e) => e.pid === srv.pid);
			const pairs = assertCallsMatch(requests, evs);
			assertDurationsWithinRtt(pairs);
			const sessions = evs.filter((e) => e.type === 'session');
			assert.ok(sessions.length >= 1, `session event for pid ${srv.pid}`);
			for (const s of sessions) {
				assert.equal(s.found, 'discovered');
				assert.equal(s.transport, 'tcp');
				assert.equal(s.listen, `127.0.0.1:${srv.port}`);
			}
			assert.deepEqual(calls(evs).filter((c) => c.net?.side !== 'server').slice(0, 3), [],
				'every call names the connection it was served on');
		}
		assert.equal(late.log.requests[0].method, 'initialize');
		assert.equal(ofServers.find((e) => e.pid === after.pid && e.type === 'session' && e.protocol_version)?.protocol_version,
			late.log.requests[0].response.result.protocolVersion, 'the later server is seen from its initialize');
	} finally {
		killSonde(sonde);
		await Promise.allSettled([late?.client.close(), early?.client.close()]);
		await Promise.allSettled([before.close(), after?.close(), plain.close(), echo.close()]);
		fs.rmSync(stateDir, { recursive: true, force: true });
	}
});

test('watch --all finds a legacy HTTP+SSE server at its GET stream: every answer correlated', { timeout: 60000 }, async () => {
	let sonde, srv, client;
	try {
		sonde = await startWatch();
		srv = await startHttpServer('everything', 'sse');
		const transport = new SSEClientTransport(new URL(`http://127.0.0.1:${srv.port}/sse`));
		const log = new ClientLog(transport);
		client = newClient('mcpsonde-e2e-watch-sse');
		await client.connect(transport);
		await workload(client);
		await waitForEvents(sonde, (evs) => calls(evs.filter((e) => e.pid === srv.pid)).length >= log.requests.length, 10000);
		await client.close();
		const events = (await stopSonde(sonde)).filter((e) => e.pid === srv.pid);
		const pairs = assertCallsMatch(log.requests, events);
		assertDurationsWithinRtt(pairs);
		const sid = transport._endpoint.searchParams.get('sessionId');
		assert.deepEqual(calls(events).filter((c) => c.net?.session_id !== sid).slice(0, 3), [], 'calls joined through the sessionId');
		const session = events.find((e) => e.type === 'session');
		assert.equal(session?.found, 'discovered');
		assert.equal(session?.listen, `127.0.0.1:${srv.port}`);
	} finally {
		killSonde(sonde);
		await client?.close().catch(() => {});
		await srv?.close();
	}
});

// MCP over HTTP, observed from the connections of the server or the client process: the
// reference server-everything in streamableHttp and sse modes driven by the official SDK's
// HTTP transports, the v2 SDK's stateless 2026-07-28 server, curl for what the SDK never
// sends, and a server that also talks to a TCP service and to an HTTP endpoint without MCP.
// What mcpsonde reports is compared with what the clients did.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { EmptyResultSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as ClientV2, StreamableHTTPClientTransport as StreamableHTTPClientTransportV2 } from '@modelcontextprotocol/client';

import {
	TESTS, ClientLog, newClient, startSonde, spawnSonde, stopSonde, killSonde, waitForEvents, runSonde, calls,
	assertCallsMatch, assertDurationsWithinRtt, assertEventShape, freePort, httpGet, parseMetrics, metricSum,
	readCapture, killPid, sleep, deadline,
} from './lib.mjs';
import { startHttpServer, CutProxy, startEchoServer, startPlainHttp, curlPost } from './http-peers.mjs';

const TIMEOUT = 120000;

// The calls of one MCP session: the call events whose connection names it.
const ofSession = (events, sid) => events.filter((e) => e.net?.session_id === sid);

// The metrics once pred(samples) holds, or after 10 s: the assertions then say what is missing.
async function scrapeUntil(port, pred) {
	const end = Date.now() + 10000;
	for (;;) {
		const m = parseMetrics((await httpGet(`http://127.0.0.1:${port}/metrics`)).text);
		if (pred(m) || Date.now() > end) return m;
		await sleep(100);
	}
}

// A client of the SDK's Streamable HTTP transport, logged (lib.mjs ClientLog).
async function streamableClient(url, opts = {}) {
	const transport = new StreamableHTTPClientTransport(new URL(url), opts);
	const log = new ClientLog(transport);
	const client = newClient();
	await client.connect(transport);
	return { transport, log, client };
}

// What each client does: the catalog, tools that answer, fail, and report progress over SSE,
// and a method nobody implements. Returns how many progress notifications the client got.
async function work(c, tag) {
	await c.client.listTools();
	await c.client.callTool({ name: 'echo', arguments: { message: `over http ${tag}` } });
	await c.client.callTool({ name: 'get-sum', arguments: { a: 2, b: tag.length } });
	await c.client.callTool({ name: `no-such-tool-${tag}`, arguments: {} });
	await c.client.request({ method: 'no/such-method', params: {} }, EmptyResultSchema).catch(() => {});
	const progress = [];
	await c.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.4, steps: 4 } }, undefined,
		{ onprogress: (p) => progress.push(p) });
	assert.ok(progress.length >= 1, 'the client saw progress events');
	return progress.length;
}

test('streamableHttp: two concurrent sessions, progress over SSE, a resumed stream, DELETE', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('everything', 'streamableHttp');
	const proxy = new CutProxy(srv.port);
	const proxyPort = await proxy.listen();
	const metricsPort = await freePort();
	let sonde;
	const clients = [];
	try {
		sonde = await startSonde(srv.pid, ['--metrics', `127.0.0.1:${metricsPort}`]);
		// One client straight to the server, one through the relay that will cut its stream.
		const a = await streamableClient(`http://127.0.0.1:${srv.port}/mcp`);
		const b = await streamableClient(`http://127.0.0.1:${proxyPort}/mcp`, {
			// server-everything's event store answers a resume with what it holds: come back when
			// the tool is done (see tests/data/http/record.mjs, "resume").
			reconnectionOptions: { initialReconnectionDelay: 1200, maxReconnectionDelay: 3000, reconnectionDelayGrowFactor: 1.5, maxRetries: 3 },
		});
		clients.push(a, b);
		const seen = await Promise.all([work(a, 'a'), work(b, 'bb')]);
		// b's POST stream is cut after its first progress event: the SDK comes back with GET and
		// Last-Event-ID on a new connection, where the answer arrives.
		proxy.cutAfter('notifications/progress', 1);
		const resumed = await b.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.6, steps: 6 } },
			undefined, { onprogress: () => {}, timeout: 15000 });
		assert.match(resumed.content[0].text, /completed/);
		const sids = [a.transport.sessionId, b.transport.sessionId];
		assert.ok(sids[0] && sids[1] && sids[0] !== sids[1], 'two sessions');
		for (const c of clients) {
			await c.transport.terminateSession();
			await c.client.close();
		}
		const want = a.log.requests.length + b.log.requests.length;
		await waitForEvents(sonde, (evs) => calls(evs).length >= want, 10000);
		// The DELETEs end the exchanges after the last call: wait for them to be counted.
		const metrics = await scrapeUntil(metricsPort, (m) => metricSum(m, 'mcpsonde_http_exchanges_total', { http_request_method: 'DELETE' }) >= 2);
		const events = await stopSonde(sonde);

		assertEventShape(events, [srv.pid]);
		for (const [i, c] of clients.entries()) {
			const mine = ofSession(events, sids[i]);
			const pairs = assertCallsMatch(c.log.requests, mine);
			assertDurationsWithinRtt(pairs);
			for (const [, e] of pairs) {
				assert.equal(e.net.transport, 'tcp');
				assert.equal(e.net.side, 'server');
				assert.equal(e.net.local, `127.0.0.1:${srv.port}`);
			}
			// Progress arrived as SSE events of the call's POST stream (b's resumed call adds one
			// at least: the cut came after it).
			const progress = events.filter((e) => e.type === 'notification' && e.method === 'notifications/progress' && e.net?.session_id === sids[i]);
			assert.ok(progress.length >= seen[i] + i, `session ${i}: ${progress.length} progress notifications, the client saw ${seen[i]}`);
		}
		const resumedCall = ofSession(calls(events), sids[1]).filter((e) => e.tool === 'trigger-long-running-operation').at(-1);
		assert.equal(resumedCall.status, 'ok');
		const b0 = b.log.requests.at(-1);
		assert.ok(resumedCall.duration_ms <= b0.rtt_ms, `resumed call ${resumedCall.duration_ms} ms within ${b0.rtt_ms} ms`);
		assert.equal(events.filter((e) => e.type === 'invalid').length, 0);
		// DELETE ended each session: an HTTP exchange that did not fail, hence not printed.
		assert.equal(events.filter((e) => e.type === 'http').length, 0, JSON.stringify(events.filter((e) => e.type === 'http')));

		const op = 'mcp_server_operation_duration_seconds_count';
		assert.equal(metricSum(metrics, op, { network_transport: 'tcp', gen_ai_tool_name: 'echo' }), 2);
		assert.equal(metricSum(metrics, op, { network_transport: 'tcp', mcp_method_name: 'tools/list' }), 2);
		assert.equal(metricSum(metrics, 'mcpsonde_http_exchanges_total', { http_request_method: 'DELETE', http_response_status_code: '200' }), 2);
		assert.ok(metricSum(metrics, 'mcpsonde_http_exchanges_total', { http_request_method: 'POST', mcp_method_name: 'tools/call', http_response_status_code: '200' }) >= 9);
	} finally {
		for (const c of clients) await c.client.close().catch(() => {});
		killSonde(sonde);
		proxy.close();
		await srv.close();
	}
});

test('sse mode (HTTP+SSE, 2024-11-05): every answer is correlated from the GET stream, which is no stall', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('everything', 'sse');
	let sonde, client;
	try {
		sonde = await startSonde(srv.pid, ['--stall-timeout', '1']);
		const transport = new SSEClientTransport(new URL(`http://127.0.0.1:${srv.port}/sse`));
		const log = new ClientLog(transport);
		client = newClient();
		await client.connect(transport);
		await work({ client }, 'sse');
		await sleep(2500); // the GET stream and the POST connection stay open, idle
		await client.close();
		await waitForEvents(sonde, (evs) => calls(evs).length >= log.requests.length, 10000);
		const events = await stopSonde(sonde);
		const sid = transport._endpoint.searchParams.get('sessionId');
		const pairs = assertCallsMatch(log.requests, events);
		assertDurationsWithinRtt(pairs);
		for (const [, e] of pairs) {
			assert.equal(e.net.session_id, sid, 'joined through the endpoint\'s sessionId');
			assert.equal(e.http_status, 200, 'the answer came on the GET stream, not with the POST\'s 202');
		}
		assert.equal(events.filter((e) => e.type === 'invalid').length, 0);
		// A stall is a call that waited past the threshold, never an open stream.
		for (const st of events.filter((e) => e.type === 'stall')) {
			const r = log.requests.find((q) => JSON.stringify(q.id) === JSON.stringify(st.id));
			assert.ok(r && r.rtt_ms >= 1000, `a stall that no call explains: ${JSON.stringify(st)}`);
		}
	} finally {
		await client?.close().catch(() => {});
		killSonde(sonde);
		await srv.close();
	}
});

test('curl: a malformed body, an unknown session, a body over the limit, a wrong token', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('everything', 'streamableHttp');
	const v2 = await startHttpServer('v2', undefined, { MAX_BODY: String(64 * 1024), TOKEN: 'right-token' });
	const metricsPort = await freePort();
	let sonde;
	try {
		sonde = await spawnSonde(['attach', '-p', String(srv.pid), '-p', String(v2.pid), '--json', '--metrics', `127.0.0.1:${metricsPort}`]);
		const url = `http://127.0.0.1:${srv.port}/mcp`;
		const malformed = await curlPost(url, '{"jsonrpc":"2.0","id":1,"method":"tools/list",');
		assert.equal(malformed.status, 400);
		const unknown = await curlPost(url, JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list', params: {} }),
			{ 'mcp-session-id': 'no-such-session', 'mcp-protocol-version': '2025-11-25' });
		assert.equal(unknown.status, 400, 'server-everything routes an unknown session to 400 itself');
		const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
		const big = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'ok', arguments: { text: 'x'.repeat(100000) }, _meta: meta } });
		const v2Headers = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'ok', authorization: 'Bearer right-token' };
		const tooBig = await curlPost(`http://127.0.0.1:${v2.port}/mcp`, big, v2Headers);
		assert.equal(tooBig.status, 413);
		const small = JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'ok', arguments: { text: 'hi' }, _meta: meta } });
		const denied = await curlPost(`http://127.0.0.1:${v2.port}/mcp`, small, { ...v2Headers, authorization: 'Bearer wrong-token' });
		assert.equal(denied.status, 401);
		await waitForEvents(sonde, (evs) => evs.filter((e) => e.type === 'http').length >= 4, 10000);
		const metrics = await scrapeUntil(metricsPort, (m) => metricSum(m, 'mcpsonde_http_auth_failures_total') >= 1);
		const events = await stopSonde(sonde);

		// The malformed body is the client's invalid frame; the server's answer without id says
		// it could not parse it.
		const http = (pid, status) => events.find((e) => e.type === 'http' && e.pid === pid && e.status === status);
		assert.ok(events.some((e) => e.type === 'invalid' && e.pid === srv.pid && e.net), 'the malformed body');
		assert.ok(events.some((e) => e.type === 'protocol_error' && e.error_code === -32700), 'the server could not parse it');
		const unknownCall = calls(events).find((e) => e.pid === srv.pid && e.id === 2);
		assert.equal(unknownCall.status, 'error');
		assert.equal(unknownCall.error_code, -32000);
		assert.equal(unknownCall.http_status, 400);
		assert.equal(unknownCall.net.session_id, 'no-such-session');
		assert.equal(http(srv.pid, 400).failed, true);
		const bigCall = calls(events).find((e) => e.pid === v2.pid && e.id === 3);
		assert.equal(bigCall.status, 'error');
		assert.equal(bigCall.http_status, 413);
		assert.equal(http(v2.pid, 413).mcp_method, 'tools/call');
		const deniedCall = calls(events).find((e) => e.pid === v2.pid && e.id === 4);
		assert.equal(deniedCall.status, 'http_error');
		assert.equal(deniedCall.http_status, 401);
		assert.equal(http(v2.pid, 401).failed, true);
		const sent = JSON.stringify(events);
		assert.ok(!sent.includes('wrong-token') && !sent.includes('right-token'), 'a token in the events');

		const op = 'mcp_server_operation_duration_seconds_count';
		assert.equal(metricSum(metrics, 'mcpsonde_http_auth_failures_total', { http_response_status_code: '401' }), 1);
		assert.equal(metricSum(metrics, op, { gen_ai_tool_name: 'ok', error_type: '401' }), 1);
		assert.equal(metricSum(metrics, 'mcpsonde_http_exchanges_total', { http_request_method: 'POST', http_response_status_code: '413' }), 1);
	} finally {
		killSonde(sonde);
		await srv.close();
		await v2.close();
	}
});

test('2026-07-28 stateless (v2 SDK): headers agree with the body; a mismatched Mcp-Method is -32020; a database and an upstream API produce nothing', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('v2');
	const echo = await startEchoServer();
	const plain = await startPlainHttp();
	let sonde, client;
	try {
		sonde = await startSonde(srv.pid);
		const transport = new StreamableHTTPClientTransportV2(new URL(`http://127.0.0.1:${srv.port}/mcp`));
		const log = new ClientLog(transport);
		client = new ClientV2({ name: 'mcpsonde-e2e-v2-http', version: '0.0.2' }, { versionNegotiation: { mode: 'auto' } });
		await client.connect(transport);
		await client.listTools();
		await client.callTool({ name: 'ok', arguments: { text: 'stateless' } });
		await client.callTool({ name: 'fail', arguments: {} });
		await client.callTool({ name: 'slow', arguments: { ms: 300, steps: 3 } }, { onprogress: () => {} });
		const side = await client.callTool({ name: 'side', arguments: { echoPort: echo.port, httpPort: plain.port } });
		assert.match(side.content[0].text, /^\+PONG 200 ok \d+$/);
		await client.close();
		const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
		const body = JSON.stringify({ jsonrpc: '2.0', id: 'mismatch-1', method: 'tools/call', params: { name: 'ok', arguments: { text: 'x' }, _meta: meta } });
		const r = await curlPost(`http://127.0.0.1:${srv.port}/mcp`, body, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list', 'mcp-name': 'ok' });
		assert.equal(r.status, 400);
		assert.equal(JSON.parse(r.body).error.code, -32020);
		await waitForEvents(sonde, (evs) => calls(evs).length >= log.requests.length + 1, 10000);
		const events = await stopSonde(sonde);

		const pairs = assertCallsMatch(log.requests, calls(events).filter((e) => e.id !== 'mismatch-1'));
		assertDurationsWithinRtt(pairs);
		for (const [, e] of pairs) {
			assert.equal(e.header_mismatch, undefined, `${e.method} ${e.tool ?? ''}: the SDK's headers agree with its body`);
			assert.equal(e.net.session_id, undefined, 'stateless: no session');
		}
		const mismatch = calls(events).find((e) => e.id === 'mismatch-1');
		assert.equal(mismatch.status, 'error');
		assert.equal(mismatch.error_code, -32020);
		assert.equal(mismatch.error_name, 'header_mismatch');
		assert.equal(mismatch.header_mismatch, 'Mcp-Method');
		assert.equal(mismatch.http_status, 400);
		const session = events.find((e) => e.type === 'session');
		assert.equal(session.protocol_version, '2026-07-28');
		assert.equal(session.transport, 'tcp');
		// The TCP service and the plain HTTP endpoint: no invalid frame, no call, no HTTP event.
		assert.equal(events.filter((e) => e.type === 'invalid').length, 0);
		assert.equal(events.filter((e) => e.type === 'http' && e.target !== '/mcp').length, 0);
		const detach = sonde.stderrLines.find((l) => l.startsWith('mcpsonde: detached'));
		const ignoredAtOnce = Number(/(\d+) ignored at once/.exec(detach)[1]);
		const setAside = Number(/\((\d+) MCP, (\d+) set aside\)/.exec(detach)[2]);
		assert.ok(ignoredAtOnce >= 1, `the TCP service is ignored by the kernel at once: ${detach}`);
		assert.ok(setAside >= 1, `the plain HTTP endpoint is set aside: ${detach}`);
	} finally {
		await client?.close().catch(() => {});
		killSonde(sonde);
		echo.close();
		plain.close();
		await srv.close();
	}
});

// The client process, started by this test, waits on its stdin until mcpsonde is attached.
async function startClientProcess(url, env = {}) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-http-client-'));
	const logFile = path.join(dir, 'requests.json');
	const child = spawn(process.execPath, [path.join(TESTS, 'e2e/http-client.mjs'), url, logFile], {
		cwd: TESTS, env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'inherit'],
	});
	const rl = readline.createInterface({ input: child.stdout });
	const ready = new Promise((r) => rl.on('line', (l) => { if (l === 'READY') r(); }));
	const done = new Promise((r) => child.once('exit', r));
	await Promise.race([ready, deadline(10000)]);
	return {
		pid: child.pid,
		async run() {
			child.stdin.write('go\n');
			await Promise.race([done, deadline(30000)]);
			return JSON.parse(fs.readFileSync(logFile, 'utf8')).map((r) => ({ ...r, t_send: BigInt(r.t_send), t_recv: BigInt(r.t_recv) }));
		},
		kill() {
			killPid(child.pid);
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
}

test('attached to the SDK client: its requests as client operations, to a server known by address and serverInfo', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('everything', 'streamableHttp');
	const metricsPort = await freePort();
	let sonde, client;
	try {
		client = await startClientProcess(`http://127.0.0.1:${srv.port}/mcp`);
		sonde = await startSonde(client.pid, ['--metrics', `127.0.0.1:${metricsPort}`]);
		const requests = await client.run();
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length, 10000);
		const metrics = parseMetrics((await httpGet(`http://127.0.0.1:${metricsPort}/metrics`)).text);
		const events = await stopSonde(sonde);

		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);
		for (const [, e] of pairs) {
			assert.equal(e.pid, client.pid);
			assert.equal(e.net.side, 'client');
			assert.equal(e.net.server_address, '127.0.0.1');
			assert.equal(e.net.server_port, srv.port);
			assert.equal(e.net.server_info?.name ?? 'mcp-servers/everything', 'mcp-servers/everything');
		}
		assert.equal(pairs.at(-1)[1].net.server_info.name, 'mcp-servers/everything');
		assert.equal(calls(events).length, pairs.length, 'no call the client did not make');
		const op = 'mcp_client_operation_duration_seconds_count';
		const labels = { server: 'mcp-servers/everything', network_transport: 'tcp', server_address: '127.0.0.1', server_port: String(srv.port) };
		assert.equal(metricSum(metrics, op, { ...labels, gen_ai_tool_name: 'echo' }), 1);
		assert.equal(metricSum(metrics, op, { ...labels, mcp_method_name: 'tools/list' }), 1);
		assert.equal(metricSum(metrics, 'mcp_server_operation_duration_seconds_count'), 0, 'the client handled no request');
	} finally {
		killSonde(sonde);
		client?.kill();
		await srv.close();
	}
});

test('record and replay over HTTP: no credential in the capture, the same calls', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('everything', 'streamableHttp');
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-http-'));
	const cap = path.join(dir, 'http.msd');
	const secrets = { authorization: 'Bearer tok-S3cr3t-bearer-0xA1', cookie: 'session=S3cr3t-cookie-0xB2', 'x-api-key': 'S3cr3t-apikey-0xC3' };
	let rec, client;
	try {
		client = await startClientProcess(`http://127.0.0.1:${srv.port}/mcp`, { HEADERS: JSON.stringify(secrets) });
		rec = await spawnSonde(['record', '-p', String(srv.pid), '-o', cap]);
		const requests = await client.run();
		await sleep(500);
		killPid(rec.proc.pid, 'SIGINT');
		await Promise.race([rec.exited, deadline(10000)]);
		assert.deepEqual(rec.exit, { code: 0, signal: null });

		const c = await readCapture(cap);
		const conn = [...c.streamBytes.entries()].filter(([k]) => k.includes('/conn/'));
		assert.ok(conn.length >= 2, 'connection streams in the capture');
		const all = Buffer.concat(conn.map(([, b]) => b)).toString('latin1');
		assert.match(all, /POST \/mcp HTTP\/1\.1/);
		for (const v of Object.values(secrets)) {
			assert.equal(c.body.indexOf(Buffer.from(v.split(/[ =]/).at(-1))), -1, `${v} is in the capture`);
		}
		assert.match(all, /\r\nauthorization:x+\r\n/i, 'the header is there, its value blanked');

		const out = await runSonde(['replay', cap, '--json']);
		assert.equal(out.code, 0, out.stderr);
		for (const v of Object.values(secrets)) assert.ok(!out.stdout.includes(v.split(/[ =]/).at(-1)));
		const events = out.stdout.trim().split('\n').map((l) => JSON.parse(l));
		assertCallsMatch(requests, events);
	} finally {
		killSonde(rec);
		client?.kill();
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('an HTTP server killed with a call pending: the orphaned call and its connection in the report', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('everything', 'streamableHttp');
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-http-reports-'));
	let sonde, c;
	try {
		sonde = await startSonde(srv.pid, ['--report-dir', dir]);
		// No reconnection to a dead server: its timers would outlive the test.
		c = await streamableClient(`http://127.0.0.1:${srv.port}/mcp`, {
			reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 100, maxReconnectionDelay: 100, reconnectionDelayGrowFactor: 1 },
		});
		let progressed;
		const firstProgress = new Promise((r) => { progressed = r; });
		const call = c.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 60, steps: 60 } }, undefined,
			{ onprogress: () => progressed(), timeout: 90000 }).then(() => 'completed', (e) => e);
		assert.ok(await Promise.race([firstProgress.then(() => true), deadline(10000).then(() => false)]), 'no progress within 10 s');
		const req = c.log.requests.find((r) => r.tool === 'trigger-long-running-operation');
		process.kill(srv.pid, 'SIGKILL'); // not SIGSEGV: no core dump to wait for
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'report'), 15000);
		const events = await stopSonde(sonde);
		// The call waits for an answer that cannot come: closing ends it.
		await c.client.close();
		assert.notEqual(await call, 'completed');

		const orphan = calls(events).find((e) => e.status === 'orphaned');
		assert.equal(orphan.tool, 'trigger-long-running-operation');
		assert.deepEqual(orphan.id, req.id);
		assert.equal(orphan.net.session_id, c.transport.sessionId);
		const file = events.find((e) => e.type === 'report').path;
		const r = await runSonde(['postmortem', file, '--json']);
		assert.equal(r.code, 0, r.stderr);
		const rep = JSON.parse(r.stdout);
		assert.equal(rep.exit.signal_name, 'SIGKILL');
		assert.deepEqual(rep.pending_calls.map((p) => [p.method, p.tool, p.id]), [['tools/call', 'trigger-long-running-operation', JSON.stringify(req.id)]]);
		assert.ok(rep.frames.client_to_server.some((f) => f.event?.method === 'tools/call'), 'the request among the last frames');
		assert.ok(rep.frames.server_to_client.some((f) => f.event?.method === 'notifications/progress'), 'its progress among the last frames');
	} finally {
		await c?.client.close().catch(() => {});
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('attached to a shell whose curl children call a server: sendto/recvfrom, the calls on the client side', { timeout: TIMEOUT }, async () => {
	const srv = await startHttpServer('v2');
	const meta = { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} };
	const body = (id, name) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: {}, _meta: meta } });
	// curl writes a request with sendto and reads its answer with recvfrom; its output goes to
	// /dev/null, not to the shell's stdout (which mcpsonde would read as a stdio channel).
	const script = 'read go; for b in "$B1:ok" "$B2:fail"; do '
		+ 'curl -sS -o /dev/null -X POST "$URL" -H "content-type: application/json" -H "accept: application/json, text/event-stream" '
		+ '-H "mcp-protocol-version: 2026-07-28" -H "mcp-method: tools/call" -H "mcp-name: ${b##*:}" --data-binary "${b%:*}"; done';
	const sh = spawn('sh', ['-c', script], {
		env: { ...process.env, URL: `http://127.0.0.1:${srv.port}/mcp`, B1: body(1, 'ok'), B2: body(2, 'fail') },
		stdio: ['pipe', 'ignore', 'inherit'],
	});
	const done = new Promise((r) => sh.once('exit', r));
	let sonde;
	try {
		sonde = await startSonde(sh.pid);
		sh.stdin.write('go\n');
		await Promise.race([done, deadline(20000)]);
		await waitForEvents(sonde, (evs) => calls(evs).length >= 2, 10000);
		const events = await stopSonde(sonde);
		const got = calls(events).map((e) => [e.id, e.method, e.tool, e.status, e.http_status, e.net?.side, e.net?.server_port, e.pid !== sh.pid]);
		assert.deepEqual(got, [[1, 'tools/call', 'ok', 'ok', 200, 'client', srv.port, true], [2, 'tools/call', 'fail', 'tool_error', 200, 'client', srv.port, true]]);
	} finally {
		killSonde(sonde);
		killPid(sh.pid);
		await srv.close();
	}
});

#!/usr/bin/env node
// record.mjs -- regenerates the HTTP recordings that tests/unit/test_http.c decodes.
//
//   node tests/data/http/record.mjs [SESSION...]      (default: every session; needs tests/node_modules)
//
// Each session runs the real server-everything (streamableHttp or sse mode, PORT=0, bound to
// 127.0.0.1 by listen-local.mjs) and drives it with the real SDK client transports, through a
// recording TCP proxy on 127.0.0.1 written for this purpose. Two files per session:
//   NAME.rec.jsonl     every chunk the proxy relayed: {"c":conn,"d":"c2s"|"s2c","t":ns,"b":base64},
//                      {"c":conn,"open":true,"t":ns} and {"c":conn,"d":..,"fin":true,"t":ns} when a
//                      side ended. c2s is what the server read and the client wrote; s2c the reverse.
//   NAME.client.jsonl  what the client did: {"send":msg} and {"recv":msg} for every JSON-RPC message
//                      its transport sent and received, {"http":{method,path,status,...}} for every
//                      HTTP request it made (status absent and "error" set when it gave up), and
//                      {"endpoint":path} for the legacy transport's endpoint event.
// Sessions:
//   streamable  initialize, GET stream, tools/list, echo, get-sum, a long-running tool with progress
//               over SSE, a sampling request from the server answered by a POSTed response (202),
//               an unknown tool, an unknown method (-32601), an unknown resource (-32602), ping,
//               DELETE; then a POST with the deleted session (server-everything answers 400) and
//               a POST to an unknown path (Express: 404).
//   sse         the legacy 2024-11-05 transport: endpoint event, every response on the GET stream;
//               then a POST to an unknown session, which server-everything never answers: the
//               client gives up after 300 ms (a request cancelled by its connection's close).
//   resume      a long-running tool whose POST stream the proxy cuts after two progress events:
//               the SDK resumes with GET + Last-Event-ID and the result arrives on that connection.
//   gzip        the streamable session behind a compressing reverse proxy (node:http + zlib, as
//               nginx's gzip would be): SSE and JSON bodies gzip-encoded, one deflate-encoded.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import zlib from 'node:zlib';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { SSEClientTransport } from '@modelcontextprotocol/sdk/client/sse.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, EmptyResultSchema } from '@modelcontextprotocol/sdk/types.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const everything = path.join(here, '../../node_modules/@modelcontextprotocol/server-everything/dist/index.js');
let t0 = process.hrtime.bigint(); // each session's clock starts at 0
const now = () => Number(process.hrtime.bigint() - t0);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startServer(mode) {
	const child = spawn(process.execPath, ['--import', pathToFileURL(path.join(here, 'listen-local.mjs')).href, everything, mode], {
		env: { ...process.env, PORT: '0' },
		stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
	});
	let stderr = '';
	child.stderr.on('data', (b) => (stderr += b));
	return new Promise((resolve, reject) => {
		child.once('message', (m) => resolve({ child, port: m.port }));
		child.once('exit', (code) => reject(new Error(`server-everything ${mode} exited (${code}): ${stderr}`)));
	});
}

function stopServer(server) {
	return new Promise((resolve) => {
		if (server.child.exitCode !== null) return resolve();
		server.child.once('exit', resolve);
		server.child.kill('SIGTERM');
	});
}

// A TCP relay that writes down every chunk it relays, and can cut a connection once the
// server has sent `count` occurrences of `pattern` on it.
class Recorder {
	constructor(upstreamPort) {
		this.lines = [];
		this.open = new Set();
		this.conns = 0;
		this.cut = null;
		this.server = net.createServer((client) => this.relay(client, upstreamPort));
	}

	listen() {
		return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve(this.server.address().port)));
	}

	cutAfter(pattern, count) {
		this.cut = { pattern, count };
	}

	relay(client, upstreamPort) {
		const c = ++this.conns;
		const up = net.connect(upstreamPort, '127.0.0.1');
		let seen = 0;
		let cut = false;
		this.open.add(c);
		this.lines.push({ c, open: true, t: now() });
		const fin = (d) => this.lines.push({ c, d, fin: true, t: now() });
		client.on('data', (b) => {
			if (cut) return;
			this.lines.push({ c, d: 'c2s', t: now(), b: b.toString('base64') });
			up.write(b);
		});
		up.on('data', (b) => {
			if (cut) return;
			this.lines.push({ c, d: 's2c', t: now(), b: b.toString('base64') });
			client.write(b);
			if (this.cut) {
				seen += b.toString('latin1').split(this.cut.pattern).length - 1;
				if (seen >= this.cut.count) {
					this.cut = null;
					cut = true;
					fin('s2c');
					fin('c2s');
					client.end(() => client.destroy());
					up.destroy();
				}
			}
		});
		client.on('end', () => {
			if (!cut) fin('c2s');
			up.end();
		});
		up.on('end', () => {
			if (!cut) fin('s2c');
			client.end();
		});
		client.on('error', () => up.destroy());
		up.on('error', () => client.destroy());
		client.on('close', () => {
			up.destroy();
			this.open.delete(c);
		});
		up.on('close', () => client.destroy());
	}

	async drain() {
		for (let i = 0; i < 100 && this.open.size; i++) await sleep(20);
		this.server.close();
	}
}

// A reverse proxy that compresses JSON and SSE bodies (flushing after every upstream chunk so
// that events are not held back), as nginx's gzip in front of a server would.
function compressingProxy(upstreamPort) {
	const agent = new http.Agent({ keepAlive: true });
	const server = http.createServer((req, res) => {
		const headers = { ...req.headers };
		delete headers.connection;
		const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers, agent }, (ur) => {
			const type = ur.headers['content-type'] ?? '';
			const accept = req.headers['accept-encoding'] ?? '';
			let enc = null;
			if (/json|event-stream/.test(type)) enc = /\bgzip\b/.test(accept) ? 'gzip' : /\bdeflate\b/.test(accept) ? 'deflate' : null;
			const out = { ...ur.headers };
			delete out.connection;
			delete out['transfer-encoding'];
			delete out['keep-alive'];
			if (enc) {
				delete out['content-length'];
				out['content-encoding'] = enc;
				out.vary = 'accept-encoding';
			}
			res.writeHead(ur.statusCode, out);
			res.flushHeaders(); // an SSE stream's head goes out at once, not with its first event
			if (!enc) return ur.pipe(res);
			const opts = { flush: zlib.constants.Z_SYNC_FLUSH };
			ur.pipe(enc === 'gzip' ? zlib.createGzip(opts) : zlib.createDeflate(opts)).pipe(res);
		});
		up.on('error', () => res.destroy());
		res.on('close', () => up.destroy());
		req.pipe(up);
	});
	return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, agent, port: server.address().port })));
}

class ClientLog {
	constructor() {
		this.lines = [];
	}

	add(o) {
		this.lines.push({ t: now(), ...o });
	}

	// fetch that writes down each HTTP request it makes and how it was answered.
	fetch() {
		return async (url, init = {}) => {
			const u = new URL(url);
			const h = new Headers(init.headers);
			const entry = { method: init.method ?? 'GET', path: u.pathname + u.search };
			for (const k of ['mcp-session-id', 'mcp-protocol-version', 'last-event-id', 'accept-encoding']) {
				if (h.get(k) !== null) entry[k] = h.get(k);
			}
			try {
				const res = await fetch(url, init);
				entry.status = res.status;
				for (const k of ['content-type', 'content-encoding', 'mcp-session-id']) {
					if (res.headers.get(k) !== null) entry[`response-${k}`] = res.headers.get(k);
				}
				this.add({ http: entry });
				return res;
			} catch (e) {
				entry.error = e.name;
				this.add({ http: entry });
				throw e;
			}
		};
	}

	// Every message the transport sends and receives, as the client sees it.
	tap(transport) {
		const send = transport.send.bind(transport);
		transport.send = (msg, opts) => {
			this.add({ send: msg });
			return send(msg, opts);
		};
		let handler;
		Object.defineProperty(transport, 'onmessage', {
			configurable: true,
			get: () =>
				handler &&
				((msg, extra) => {
					this.add({ recv: structuredClone(msg) });
					return handler(msg, extra);
				}),
			set: (h) => (handler = h),
		});
	}

	// A POST outside the SDK (an unknown session, an unknown path), logged like the SDK's.
	async post(url, headers, msg, timeoutMs = 5000) {
		this.add({ send: msg });
		try {
			const res = await this.fetch()(url, {
				method: 'POST',
				headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
				body: JSON.stringify(msg),
				signal: AbortSignal.timeout(timeoutMs),
			});
			const text = await res.text();
			if (/json/.test(res.headers.get('content-type') ?? '')) this.add({ recv: JSON.parse(text) });
		} catch {
			/* logged by fetch() */
		}
	}
}

function newClient() {
	const client = new Client({ name: 'mcpsonde-recorder', version: '1.0.0' }, { capabilities: { sampling: {} } });
	client.setRequestHandler(CreateMessageRequestSchema, async () => ({
		model: 'recorded-model',
		role: 'assistant',
		content: { type: 'text', text: 'sampled reply' },
	}));
	return client;
}

async function exercise(client) {
	await client.listTools();
	await client.callTool({ name: 'echo', arguments: { message: 'hello over http' } });
	await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
	await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.6, steps: 3 } }, undefined, {
		onprogress: () => {},
	});
	await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 5 } });
}

async function streamableSession(log, url, { deflate = false } = {}) {
	const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: log.fetch() });
	log.tap(transport);
	const client = newClient();
	await client.connect(transport);
	await exercise(client);
	await client.callTool({ name: 'no-such-tool', arguments: {} });
	await client.request({ method: 'no/such-method', params: {} }, EmptyResultSchema).catch(() => {});
	await client.readResource({ uri: 'test://no/such/resource' }).catch(() => {});
	await client.ping();
	const sid = transport.sessionId;
	await transport.terminateSession();
	await client.close();
	const list = { jsonrpc: '2.0', id: 1000, method: 'tools/list', params: {} };
	await log.post(url, { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' }, list);
	if (deflate) await log.post(url, { 'mcp-session-id': sid, 'accept-encoding': 'deflate' }, { ...list, id: 1001 });
	else await log.post(url.replace(/\/mcp$/, '/no-such-path'), {}, { ...list, id: 1001 });
}

const sessions = {
	async streamable(log, port) {
		await streamableSession(log, `http://127.0.0.1:${port}/mcp`);
	},

	async sse(log, port) {
		const base = `http://127.0.0.1:${port}`;
		const transport = new SSEClientTransport(new URL(`${base}/sse`), { fetch: log.fetch() });
		log.tap(transport);
		const client = newClient();
		await client.connect(transport);
		log.add({ endpoint: transport._endpoint.pathname + transport._endpoint.search });
		await exercise(client);
		await client.close();
		await log.post(`${base}/message?sessionId=00000000-0000-4000-8000-000000000000`, {}, { jsonrpc: '2.0', id: 1000, method: 'ping' }, 300);
	},

	async resume(log, port, recorder) {
		const transport = new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), {
			fetch: log.fetch(),
			// server-everything's event store replays what it holds when the client comes back but
			// returns an event id where the SDK expects a stream id, so later events never reach the
			// resumed stream: resume after the tool has finished, when everything is stored.
			reconnectionOptions: { initialReconnectionDelay: 1500, maxReconnectionDelay: 3000, reconnectionDelayGrowFactor: 1.5, maxRetries: 3 },
		});
		log.tap(transport);
		const client = new Client({ name: 'mcpsonde-recorder', version: '1.0.0' });
		await client.connect(transport);
		recorder.cutAfter('notifications/progress', 2);
		await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.8, steps: 8 } }, undefined, {
			onprogress: () => {},
			timeout: 10000,
		});
		await transport.terminateSession();
		await client.close();
	},

	async gzip(log, port) {
		await streamableSession(log, `http://127.0.0.1:${port}/mcp`, { deflate: true });
	},
};

const modes = { streamable: 'streamableHttp', sse: 'sse', resume: 'streamableHttp', gzip: 'streamableHttp' };

async function record(name) {
	t0 = process.hrtime.bigint();
	const server = await startServer(modes[name]);
	let upstream = server.port;
	let proxy = null;
	if (name === 'gzip') {
		proxy = await compressingProxy(server.port);
		upstream = proxy.port;
	}
	const recorder = new Recorder(upstream);
	const port = await recorder.listen();
	const log = new ClientLog();
	let failure = null;
	try {
		await sessions[name](log, port, recorder);
		await sleep(100);
	} catch (e) {
		failure = e;
	}
	await stopServer(server);
	if (proxy) {
		proxy.agent.destroy();
		proxy.server.closeAllConnections();
		proxy.server.close();
	}
	await recorder.drain();
	// A failed session is written only on request (DEBUG=1), to look at what went wrong.
	if (failure && !process.env.DEBUG) throw failure;
	const write = (file, lines) => fs.writeFileSync(path.join(here, file), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
	write(`${name}.rec.jsonl`, recorder.lines);
	write(`${name}.client.jsonl`, log.lines);
	if (failure) throw failure;
	console.log(`${name}: ${recorder.conns} connections, ${recorder.lines.length} records, ${log.lines.length} client lines`);
}

const wanted = process.argv.slice(2);
for (const name of wanted.length ? wanted : Object.keys(sessions)) {
	if (!sessions[name]) {
		console.error(`record.mjs: no session "${name}" (have: ${Object.keys(sessions).join(', ')})`);
		process.exit(2);
	}
	await record(name);
}
// The SDK's keep-alive sockets would hold the event loop for seconds.
process.exit(0);

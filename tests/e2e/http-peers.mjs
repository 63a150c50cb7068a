// http-peers.mjs -- real MCP peers over HTTP for the e2e tests, all on 127.0.0.1 and on ports
// the OS picks:
//   startHttpServer('everything', 'streamableHttp' | 'sse')  server-everything, PORT=0
//   startHttpServer('v2')        the v2 SDK (2026-07-28) over HTTP (v2-http-server.mjs)
//   CutProxy                     a TCP relay that can cut a connection after a pattern
//   startEchoServer(), startPlainHttp()   a TCP service and an HTTP endpoint without MCP
//   curlPost(...)                curl, for what the SDK will not send
// Every process started here is stopped by pid by its close().
import { spawn, execFile } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import { EVERYTHING, TESTS, killPid, deadline } from './lib.mjs';

const LISTEN_LOCAL = pathToFileURL(path.join(TESTS, 'data/http/listen-local.mjs')).href;
const V2_HTTP_SERVER = path.join(TESTS, 'e2e/v2-http-server.mjs');

// Resolves once the server listens: {pid, port, stderr, close()}. The server reports its port
// on the IPC channel (listen-local.mjs, v2-http-server.mjs).
export function startHttpServer(kind, mode = 'streamableHttp', env = {}) {
	const args = kind === 'v2' ? [V2_HTTP_SERVER] : [`--import=${LISTEN_LOCAL}`, EVERYTHING, mode];
	const child = spawn(process.execPath, args, {
		cwd: TESTS,
		env: { ...process.env, PORT: '0', ...env },
		stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
	});
	const stderr = { text: '' };
	child.stderr.on('data', (d) => { stderr.text += d; });
	const exited = new Promise((r) => child.once('exit', r));
	return new Promise((resolve, reject) => {
		child.once('message', (m) => resolve({
			pid: child.pid, port: m.port, stderr,
			async close() {
				killPid(child.pid, 'SIGTERM');
				await Promise.race([exited, deadline(3000)]);
				killPid(child.pid);
			},
		}));
		child.once('exit', (code) => reject(new Error(`${kind} ${mode} exited (${code}): ${stderr.text}`)));
	});
}

// A TCP relay in this process. cutAfter(pattern, n): once the server has sent n occurrences
// of pattern on one connection, both sides of that connection are closed.
export class CutProxy {
	constructor(upstreamPort) {
		this.cut = null;
		this.sockets = new Set();
		this.server = net.createServer((client) => this.#relay(client, upstreamPort));
	}

	listen() {
		return new Promise((r) => this.server.listen(0, '127.0.0.1', () => r(this.server.address().port)));
	}

	cutAfter(pattern, count) {
		this.cut = { pattern, count };
	}

	#relay(client, port) {
		const up = net.connect(port, '127.0.0.1');
		let seen = 0;
		this.sockets.add(client).add(up);
		client.on('data', (b) => up.write(b));
		up.on('data', (b) => {
			client.write(b);
			if (!this.cut)
				return;
			seen += b.toString('latin1').split(this.cut.pattern).length - 1;
			if (seen >= this.cut.count) {
				this.cut = null;
				client.destroy();
				up.destroy();
			}
		});
		for (const [a, b] of [[client, up], [up, client]]) {
			a.on('end', () => b.end());
			a.on('error', () => b.destroy());
			a.on('close', () => { b.destroy(); this.sockets.delete(a); });
		}
	}

	close() {
		for (const s of this.sockets) s.destroy();
		this.server.close();
	}
}

// A plain TCP service: answers every line with "+PONG\r\n" (the shape of a Redis reply).
export function startEchoServer() {
	const server = net.createServer((s) => {
		s.on('data', () => s.write('+PONG\r\n'));
		s.on('error', () => {});
	});
	return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ port: server.address().port, close: () => server.close() })));
}

// An HTTP endpoint that is not MCP: a JSON health check and an HTML page.
export function startPlainHttp() {
	const server = http.createServer((req, res) => {
		if (req.url === '/health') {
			res.writeHead(200, { 'content-type': 'application/json' });
			res.end('{"status":"ok","checks":{"db":"up"}}');
		} else {
			res.writeHead(200, { 'content-type': 'text/html' });
			res.end('<html><body>{"jsonrpc": "not really"}</body></html>');
		}
	});
	return new Promise((r) => server.listen(0, '127.0.0.1', () => r({
		port: server.address().port,
		close: () => { server.closeAllConnections(); server.close(); },
	})));
}

// curl -X POST with a body and headers: {status, body}. curl sends what the SDK never would.
export function curlPost(url, body, headers = {}) {
	const args = ['-sS', '-o', '-', '-w', '\n%{http_code}', '-X', 'POST', url, '--data-binary', '@-',
		'-H', 'content-type: application/json', '-H', 'accept: application/json, text/event-stream'];
	for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`);
	return new Promise((resolve, reject) => {
		const p = execFile('curl', args, { maxBuffer: 1 << 20, timeout: 10000 }, (err, out) => {
			if (err) return reject(err);
			const i = out.lastIndexOf('\n');
			resolve({ status: Number(out.slice(i + 1)), body: out.slice(0, i) });
		});
		p.stdin.end(body);
	});
}

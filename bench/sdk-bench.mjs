// sdk-bench.mjs -- the real-server workload of the benchmarks: @modelcontextprotocol/server-everything's
// echo tool driven by the official SDK Client over stdio or Streamable HTTP, sequentially or with N
// calls in flight.
//
//   node bench/sdk-bench.mjs [--transport stdio|http] [--window N] [--count N] [--max-time SEC]
//                            [--message-size BYTES] [--warmup N] [--relay socat|nginx]
//                            [--pid-file FILE] [--wait-go]
//
// stdio: the server is spawned by StdioClientTransport, so it gets AF_UNIX socketpairs as
// stdin/stdout as it does under every Node-based client; --relay socat puts socat between them.
// http: the server runs in streamableHttp mode on 127.0.0.1, on a port the OS picks, and
// StreamableHTTPClientTransport talks to it (undici: one keep-alive connection per call in
// flight); --relay nginx puts Debian's nginx in front of it as a reverse proxy, and the client
// talks to nginx (bench/http-peers.mjs starts and stops both).
// After initialize and --warmup calls (JIT warm-up on both sides, before anything is measured or
// observed; over HTTP with the window's calls in flight, so that its connections are open), the pid of the process an observer attaches to is written to --pid-file: over stdio
// transport.pid (socat's when it relays), over HTTP always the server's (nginx is not observed).
// With --wait-go no call is made until SIGUSR2, so that an observer can attach first; after
// printing its results (one JSON line: calls/s and round trips) it keeps the server alive, idle,
// until a second SIGUSR2, so that the observer can be read and stopped before the server exits.
// Counts only calls that succeeded; any failure makes the exit status non-zero.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { startEverythingHttp, startNginx, stopAll } from './http-peers.mjs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(REPO, 'tests', 'package.json'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport, getDefaultEnvironment } = require('@modelcontextprotocol/sdk/client/stdio.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');
const EVERYTHING = path.join(REPO, 'tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js');

function parseArgs(argv) {
	const o = { transport: 'stdio', window: 1, count: 0, maxTime: 1, messageSize: 64, warmup: 200, relay: null, pidFile: null, waitGo: false };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
			return argv[++i];
		};
		if (a === '--transport') o.transport = next();
		else if (a === '--window') o.window = Number(next());
		else if (a === '--count') o.count = Number(next());
		else if (a === '--max-time') o.maxTime = Number(next());
		else if (a === '--message-size') o.messageSize = Number(next());
		else if (a === '--warmup') o.warmup = Number(next());
		else if (a === '--relay') o.relay = next();
		else if (a === '--pid-file') o.pidFile = next();
		else if (a === '--wait-go') o.waitGo = true;
		else throw new Error(`unknown option ${a}`);
	}
	const relays = { stdio: 'socat', http: 'nginx' };
	if (!relays[o.transport] || !(o.window >= 1) || (o.relay && o.relay !== relays[o.transport]) || (!o.count && !(o.maxTime > 0)))
		throw new Error('usage: sdk-bench.mjs [--transport stdio|http] [--window N] [--count N] [--max-time SEC] [--message-size B] [--warmup N] [--relay socat (stdio)|nginx (http)] [--pid-file F] [--wait-go]');
	return o;
}

function writePidFile(file, pid) {
	fs.writeFileSync(`${file}.tmp`, `${pid}\n`);
	fs.renameSync(`${file}.tmp`, file);
}

function percentile(sorted, q) {
	return sorted.length ? sorted[Math.round(q * (sorted.length - 1))] : 0;
}

async function main() {
	const o = parseArgs(process.argv.slice(2));
	// Installed before anything can announce readiness, so an early go is never lost.
	const go = new Promise((resolve) => process.once('SIGUSR2', resolve));

	const { transport, observed } = await connectTransport(o);
	const client = new Client({ name: 'mcpsonde-bench', version: '1.0.0' });
	await client.connect(transport);
	const message = 'x'.repeat(o.messageSize);
	const expected = `Echo: ${message}`;
	// Over HTTP the warm-up keeps the window's calls in flight, so that the client's connections
	// (one per call in flight) are open before go, as a stdio pipe is; opening them is not measured.
	let warm = 0;
	await Promise.all(Array.from({ length: o.transport === 'http' ? o.window : 1 }, async () => {
		while (warm < o.warmup) {
			warm++;
			await client.callTool({ name: 'echo', arguments: { message } });
		}
	}));
	if (o.pidFile) writePidFile(o.pidFile, observed ?? transport.pid);
	if (o.waitGo) await go;

	const rtts = [];
	let issued = 0, done = 0, failed = 0, stop = false;
	const t0 = process.hrtime.bigint();
	const deadline = o.maxTime > 0 ? t0 + BigInt(Math.round(o.maxTime * 1e9)) : null;

	// `window` workers, each with one call in flight: window = 1 is a sequential client.
	const worker = async () => {
		while (!stop) {
			if ((o.count && issued >= o.count) || (deadline && process.hrtime.bigint() >= deadline)) {
				stop = true;
				break;
			}
			issued++;
			const t = process.hrtime.bigint();
			const r = await client.callTool({ name: 'echo', arguments: { message } });
			rtts.push(Number(process.hrtime.bigint() - t) / 1e3);
			if (r.isError || r.content?.[0]?.text !== expected) failed++;
			else done++;
		}
	};
	await Promise.all(Array.from({ length: o.window }, worker));
	const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;

	rtts.sort((a, b) => a - b);
	const result = {
		workload: 'server-everything',
		transport: o.transport,
		warmup: o.warmup,
		relay: o.relay ?? 'none',
		window: o.window,
		message_size: o.messageSize,
		sent: issued,
		done,
		failed,
		elapsed_s: Number(elapsed.toFixed(6)),
		msgs_per_s: Number((done / elapsed).toFixed(1)),
		rtt_p50_us: Number(percentile(rtts, 0.5).toFixed(1)),
		rtt_p99_us: Number(percentile(rtts, 0.99).toFixed(1)),
		server_pid: observed ?? transport.pid,
	};
	const release = new Promise((resolve) => process.once('SIGUSR2', resolve));
	process.stdout.write(`${JSON.stringify(result)}\n`);
	if (o.waitGo) await release;
	await client.close();
	await stopAll();
	process.exitCode = failed ? 1 : 0;
}

// The client transport, and over HTTP the pid of the server (not of nginx) for --pid-file.
async function connectTransport(o) {
	if (o.transport === 'http') {
		const server = await startEverythingHttp();
		const port = o.relay === 'nginx' ? (await startNginx(server.port)).port : server.port;
		return { transport: new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`)), observed: server.pid };
	}
	const server = ['node', EVERYTHING, 'stdio'];
	// Node gives socat socketpairs, and socat's EXEC gives the server one: 64 KiB blocks, as
	// the SDK reads.
	const spawnArgs = o.relay
		? { command: 'socat', args: ['-b', '65536', 'STDIO', `EXEC:${server.join(' ')}`] }
		: { command: server[0], args: server.slice(1) };
	return { transport: new StdioClientTransport({ ...spawnArgs, env: getDefaultEnvironment(), stderr: 'ignore' }), observed: null };
}

// Interrupted: the HTTP server and nginx are stopped by pid (http-peers.mjs) before exiting.
for (const sig of ['SIGINT', 'SIGTERM'])
	process.once(sig, () => stopAll().finally(() => process.exit(130)));

main().catch(async (err) => {
	console.error(`sdk-bench: ${err.stack || err}`);
	await stopAll();
	process.exit(2);
});

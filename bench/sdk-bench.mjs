// sdk-bench.mjs -- the real-server workload of the benchmarks: @modelcontextprotocol/server-everything's
// echo tool driven by the official SDK Client over stdio, sequentially or with N calls in flight.
//
//   node bench/sdk-bench.mjs [--window N] [--count N] [--max-time SEC] [--message-size BYTES]
//                            [--warmup N] [--relay socat] [--pid-file FILE] [--wait-go]
//
// The server is spawned by StdioClientTransport, so it gets AF_UNIX socketpairs as stdin/stdout as
// it does under every Node-based client. After initialize and --warmup calls (JIT warm-up on both
// sides, before anything is measured or observed), the server's pid (transport.pid: the
// relay's when there is one) is written to --pid-file, and with --wait-go no call is made until
// SIGUSR2, so that an observer can attach first; after printing its results (one JSON line: calls/s
// and round trips) it keeps the server alive, idle, until a second SIGUSR2, so that the observer
// can be read and stopped before the server exits.
// Counts only calls that succeeded; any failure makes the exit status non-zero.

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(REPO, 'tests', 'package.json'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport, getDefaultEnvironment } = require('@modelcontextprotocol/sdk/client/stdio.js');
const EVERYTHING = path.join(REPO, 'tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js');

function parseArgs(argv) {
	const o = { window: 1, count: 0, maxTime: 1, messageSize: 64, warmup: 200, relay: null, pidFile: null, waitGo: false };
	for (let i = 0; i < argv.length; i++) {
		const a = argv[i];
		const next = () => {
			if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
			return argv[++i];
		};
		if (a === '--window') o.window = Number(next());
		else if (a === '--count') o.count = Number(next());
		else if (a === '--max-time') o.maxTime = Number(next());
		else if (a === '--message-size') o.messageSize = Number(next());
		else if (a === '--warmup') o.warmup = Number(next());
		else if (a === '--relay') o.relay = next();
		else if (a === '--pid-file') o.pidFile = next();
		else if (a === '--wait-go') o.waitGo = true;
		else throw new Error(`unknown option ${a}`);
	}
	if (!(o.window >= 1) || (o.relay && o.relay !== 'socat') || (!o.count && !(o.maxTime > 0)))
		throw new Error('usage: sdk-bench.mjs [--window N] [--count N] [--max-time SEC] [--message-size B] [--warmup N] [--relay socat] [--pid-file F] [--wait-go]');
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

	const server = ['node', EVERYTHING, 'stdio'];
	// Node gives socat socketpairs, and socat's EXEC gives the server one: 64 KiB blocks, as
	// the SDK reads.
	const spawnArgs = o.relay
		? { command: 'socat', args: ['-b', '65536', 'STDIO', `EXEC:${server.join(' ')}`] }
		: { command: server[0], args: server.slice(1) };
	const transport = new StdioClientTransport({ ...spawnArgs, env: getDefaultEnvironment(), stderr: 'ignore' });
	const client = new Client({ name: 'mcpsonde-bench', version: '1.0.0' });
	await client.connect(transport);
	const message = 'x'.repeat(o.messageSize);
	const expected = `Echo: ${message}`;
	for (let i = 0; i < o.warmup; i++) await client.callTool({ name: 'echo', arguments: { message } });
	if (o.pidFile) writePidFile(o.pidFile, transport.pid);
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
		server_pid: transport.pid,
	};
	const release = new Promise((resolve) => process.once('SIGUSR2', resolve));
	process.stdout.write(`${JSON.stringify(result)}\n`);
	if (o.waitGo) await release;
	await client.close();
	process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
	console.error(`sdk-bench: ${err.stack || err}`);
	process.exit(2);
});

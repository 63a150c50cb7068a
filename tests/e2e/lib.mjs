// lib.mjs -- helpers for the end-to-end tests: real MCP servers from npm, driven by the official
// SDK Client, observed by build/mcpsonde.
//
// What the tests compare is what the client did (a log of every message it sent and received,
// timed with the monotonic clock) against what mcpsonde reported (its JSONL events). Nothing
// here fakes a server: the servers are @modelcontextprotocol/server-everything and
// server-filesystem, launched the three ways MCP servers are launched in the wild:
//   - a Node client (the SDK, desktop agents): stdin/stdout are AF_UNIX socketpairs;
//   - a shell: stdin/stdout are pipes (here FIFOs, so that this process can hold the other ends);
//   - `npx -y pkg`: npm exec -> sh -c -> node, three processes sharing fd 0/1, only the last
//     one doing I/O; mcpsonde is given the wrapper's pid and must follow its children.
// Every process started here is killed by pid in the caller's finally block (see cleanup()).

import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Client as ClientV2 } from '@modelcontextprotocol/client';
import { StdioClientTransport as StdioClientTransportV2 } from '@modelcontextprotocol/client/stdio';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { ResultSchema } from '@modelcontextprotocol/sdk/types.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const TESTS = path.join(REPO, 'tests');
export const SONDE = path.join(REPO, 'build', 'mcpsonde');
export const EVERYTHING = path.join(TESTS, 'node_modules/@modelcontextprotocol/server-everything/dist/index.js');
export const FILESYSTEM = path.join(TESTS, 'node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
export const MEMORY = path.join(TESTS, 'node_modules/@modelcontextprotocol/server-memory/dist/index.js');
export const V2_SERVER = path.join(TESTS, 'e2e/v2-server.mjs');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A timer for Promise.race() that does not keep the process alive once the race is won.
export const deadline = (ms) => new Promise((r) => setTimeout(r, ms).unref());
const nowNs = () => process.hrtime.bigint();

export function requireSonde() {
	assert.ok(fs.existsSync(SONDE), `${SONDE} does not exist: run make first`);
}

/* ---------------------------------------------------------------- client-side log */

// Wraps a transport (before Client.connect) so that every JSON-RPC message it carries is
// recorded. Requests from the client get {id, method, tool, t_send, t_recv, rtt_ms, outcome,
// error_code, request_bytes, response_bytes}; outcome is 'ok', 'error' (with error_code) or
// 'isError' (tools/call result.isError). Times are process.hrtime (CLOCK_MONOTONIC), taken
// just before the message is written and just after the response is parsed, so that the
// client's round trip always encloses the server's read -> write interval.
export class ClientLog {
	constructor(transport) {
		this.requests = [];       // client -> server requests, in send order
		this.byId = new Map();    // JSON text of the id -> entry
		this.notificationsSent = [];
		this.notificationsReceived = [];
		this.serverRequests = []; // server -> client requests (none expected from our peers)
		this.strays = [];         // responses without a matching request
		const send = transport.send.bind(transport);
		transport.send = (msg, opts) => {
			this.#onSend(msg);
			return send(msg, opts);
		};
		let inner;
		const log = this;
		const wrapped = (msg, extra) => {
			log.#onReceive(msg);
			return inner?.(msg, extra);
		};
		Object.defineProperty(transport, 'onmessage', {
			configurable: true,
			get: () => (inner ? wrapped : undefined),
			set: (fn) => { inner = fn; },
		});
	}

	#onSend(msg) {
		const bytes = Buffer.byteLength(JSON.stringify(msg)) + 1;
		if (msg.method !== undefined && msg.id !== undefined) {
			const e = {
				id: msg.id,
				method: msg.method,
				tool: msg.method === 'tools/call' ? msg.params?.name : undefined,
				params: msg.params,
				t_send: nowNs(),
				t_recv: null,
				rtt_ms: null,
				outcome: null,
				error_code: undefined,
				request_bytes: bytes,
				response_bytes: null,
				progressToken: msg.params?._meta?.progressToken,
			};
			this.requests.push(e);
			this.byId.set(JSON.stringify(msg.id), e);
		} else if (msg.method !== undefined) {
			this.notificationsSent.push({ method: msg.method, t: nowNs(), params: msg.params });
		}
		// Responses to server requests: nothing to time on the client side.
	}

	#onReceive(msg) {
		const t = nowNs();
		if (msg.method !== undefined) {
			if (msg.id !== undefined) this.serverRequests.push({ id: msg.id, method: msg.method, t });
			else this.notificationsReceived.push({ method: msg.method, params: msg.params, t });
			return;
		}
		const e = this.byId.get(JSON.stringify(msg.id));
		if (!e || e.t_recv !== null) {
			this.strays.push(msg);
			return;
		}
		e.t_recv = t;
		e.rtt_ms = Number(t - e.t_send) / 1e6;
		e.response_bytes = Buffer.byteLength(JSON.stringify(msg)) + 1;
		e.response = msg;
		if (msg.error) {
			e.outcome = 'error';
			e.error_code = msg.error.code;
		} else if (msg.result?.isError === true) {
			e.outcome = 'isError';
		} else {
			e.outcome = 'ok';
		}
	}

	// Requests sent at or after a monotonic instant (bigint ns).
	since(t0) {
		return this.requests.filter((e) => e.t_send >= t0);
	}
}

// The status mcpsonde must report for a request the client logged: a 2026-07-28 result that
// asks for input or hands over a task is an exchange of a longer call; a server/discover
// refused is the probe's outcome, not an error.
export function expectedStatus(e) {
	const resultType = e.response?.result?.resultType;
	if (e.outcome === 'ok' && (resultType === 'input_required' || resultType === 'task')) return resultType;
	if (e.outcome === 'error' && e.method === 'server/discover') return 'probe_failed';
	return { ok: 'ok', error: 'error', isError: 'tool_error' }[e.outcome];
}

export function newClient(name = 'mcpsonde-e2e') {
	return new Client({ name, version: '0.0.1' });
}

/* ---------------------------------------------------------------- launchers */

// (a) The SDK's StdioClientTransport: the server's stdin/stdout are socketpairs.
// start=false leaves the transport unstarted (connect() starts it); start=true spawns the
// server now so that its pid is known before initialize.
export async function launchSocketpair({ args = [EVERYTHING, 'stdio'], command = process.execPath, env, cwd = TESTS } = {}) {
	const transport = new StdioClientTransport({ command, args, cwd, stderr: 'pipe', env: { ...getDefaultEnvironment(), ...env } });
	const stderr = collectStream(transport.stderr);
	const log = new ClientLog(transport);
	await transport.start();
	// Client.connect() calls start() again: the child already runs.
	transport.start = async () => {};
	const client = newClient();
	return {
		kind: 'socketpair',
		pid: transport.pid,
		transport, client, log, stderr,
		connect: () => client.connect(transport),
		async close() {
			await closeQuietly(client);
			killPid(transport.pid);
		},
	};
}

// (b) A shell pipeline: `sh -c 'exec node server stdio <in >out'` with two FIFOs. The shell
// execs node, so the pid we hold is the server's. This process holds the other ends of the
// FIFOs as non-blocking pipe sockets and speaks newline-delimited JSON over them with the
// SDK's StdioServerTransport(readable, writable), which is just that.
// stderrFile: the shell appends the server's stderr to this file (2>>FILE), as systemd units
// and launch scripts do.
export async function launchFifo({ args = [EVERYTHING, 'stdio'], cwd = TESTS, stderrFile } = {}) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-fifo-'));
	const inPath = path.join(dir, 'in');
	const outPath = path.join(dir, 'out');
	execFileSync('mkfifo', [inPath, outPath]);
	const q = (s) => `'${s.replaceAll("'", `'\\''`)}'`;
	const cmd = `exec ${[process.execPath, ...args].map(q).join(' ')} <${q(inPath)} >${q(outPath)}${stderrFile ? ` 2>>${q(stderrFile)}` : ''}`;
	const sh = spawn('sh', ['-c', cmd], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
	const stderr = collectStream(sh.stderr);
	const exited = new Promise((r) => sh.once('exit', (code, sig) => r({ code, sig })));
	let wfd = -1, rfd = -1;
	try {
		// The shell opens `in` for reading first: until then a non-blocking open for
		// writing fails with ENXIO.
		wfd = await retry(() => fs.openSync(inPath, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK), 10000, 'open FIFO in');
		// A non-blocking open for reading always succeeds; reading before the shell has opened
		// `out` for writing would see EOF, so wait until its fd 1 is the FIFO.
		rfd = fs.openSync(outPath, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
		await retry(() => {
			if (fs.readlinkSync(`/proc/${sh.pid}/fd/1`) !== outPath) throw new Error('not yet');
		}, 10000, 'server stdout on FIFO');
	} catch (e) {
		killPid(sh.pid);
		for (const fd of [wfd, rfd]) if (fd >= 0) fs.closeSync(fd);
		fs.rmSync(dir, { recursive: true, force: true });
		throw e;
	}
	const writable = new net.Socket({ fd: wfd, readable: false, writable: true });
	const readable = new net.Socket({ fd: rfd, readable: true, writable: false });
	writable.on('error', () => {});
	readable.on('error', () => {});
	const transport = new StdioServerTransport(readable, writable);
	const log = new ClientLog(transport);
	const client = newClient();
	return {
		kind: 'fifo',
		pid: sh.pid,
		transport, client, log, stderr, exited, dir,
		connect: () => client.connect(transport),
		async close() {
			await closeQuietly(client);
			// The spec's stdio shutdown, as the SDK's transport does it: close the server's
			// stdin, give it time to see the end and exit, only then kill it.
			writable.destroy();
			await Promise.race([exited, deadline(2000)]);
			readable.destroy();
			killPid(sh.pid);
			await Promise.race([exited, deadline(3000)]);
			fs.rmSync(dir, { recursive: true, force: true });
		},
	};
}

// (c) The npx chain, run from tests/ so that npm finds the package in tests/node_modules and
// asks no registry. The pid is npm's: the process that does the I/O is its grandchild.
export async function launchNpx() {
	const p = await launchSocketpair({
		command: 'npx',
		args: ['-y', '@modelcontextprotocol/server-everything', 'stdio'],
		env: { npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', npm_config_prefer_offline: 'true' },
	});
	p.kind = 'npx';
	const close = p.close;
	p.close = async () => {
		const tree = descendants(p.pid);
		await close();
		for (const pid of tree) killPid(pid);
	};
	return p;
}

// (d) The v2 SDK client (protocol revision 2026-07-28), which negotiates with server/discover
// first. Its stdio transport probes on a short-lived copy of the server and then starts the
// real one; a subclass (inPlace) probes on the server it talks to, so that the probe and the
// fallback are seen on one process. start: spawn now (mcpsonde can attach before the probe;
// with the base class the probe copy is another process).
export async function launchV2({ args = [V2_SERVER], command = process.execPath, env, cwd = TESTS, inPlace = false, start = false } = {}) {
	const Transport = inPlace ? class InPlace extends StdioClientTransportV2 {} : StdioClientTransportV2;
	const transport = new Transport({ command, args, cwd, stderr: 'pipe', env: { ...getDefaultEnvironment(), ...env } });
	const stderr = collectStream(transport.stderr);
	const log = new ClientLog(transport);
	if (start) {
		await transport.start();
		transport.start = async () => {};
	}
	const client = new ClientV2({ name: 'mcpsonde-e2e-v2', version: '0.0.2' }, {
		versionNegotiation: { mode: 'auto' },
		capabilities: { elicitation: {}, extensions: { 'io.modelcontextprotocol/tasks': {} } },
	});
	// Multi-round-trip requests: the tools of v2-server.mjs ask for a confirmation.
	client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { confirm: true } }));
	return {
		kind: 'v2',
		get pid() { return transport.pid; },
		transport, client, log, stderr,
		connect: () => client.connect(transport),
		async close() {
			const pid = transport.pid;
			await closeQuietly(client);
			killPid(pid);
		},
	};
}

async function closeQuietly(client) {
	try {
		await Promise.race([client.close(), deadline(5000)]);
	} catch { /* the server may be gone already */ }
}

export function killPid(pid, sig = 'SIGKILL') {
	if (!pid) return;
	try { process.kill(pid, sig); } catch { /* already gone */ }
}

async function retry(fn, timeoutMs, what) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		try {
			return fn();
		} catch (e) {
			if (Date.now() > until) throw new Error(`${what}: timed out (${e.message})`);
			await sleep(10);
		}
	}
}

function collectStream(stream) {
	const buf = { text: '' };
	stream?.on('data', (d) => { buf.text += d.toString(); });
	return buf;
}

// All live descendants of pid, from /proc (children before grandchildren).
export function descendants(pid) {
	const parent = new Map();
	for (const d of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
			const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
			parent.set(Number(d), ppid);
		} catch { /* exited */ }
	}
	const out = [];
	let frontier = [pid];
	while (frontier.length) {
		const next = [];
		for (const [c, p] of parent) if (frontier.includes(p)) next.push(c);
		out.push(...next);
		frontier = next;
	}
	return out;
}

/* ---------------------------------------------------------------- mcpsonde */

// spawnSonde's cleanFds: mcpsonde starts with descriptors 0-2 only, as a service manager
// starts it, not with whatever this test process inherited and left open (a harness's pipe
// at fd 251).
const CLOSE_INHERITED = 'for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; exec "$@"';

// Spawns build/mcpsonde ARGV and resolves when it says on stderr that it is attached
// (a line starting with `mcpsonde: attached`). stdout is collected line by line, or written
// to stdoutFile as the bytes it is (for tests of the bytes themselves).
export async function spawnSonde(argv, { readyTimeoutMs = 20000, ready = /^mcpsonde: attached/, stdoutFile, cleanFds = false } = {}) {
	requireSonde();
	const out = stdoutFile ? fs.openSync(stdoutFile, 'w') : 'pipe';
	const [cmd, args] = cleanFds ? ['bash', ['-c', CLOSE_INHERITED, 'bash', SONDE, ...argv]] : [SONDE, argv];
	const proc = spawn(cmd, args, { cwd: REPO, stdio: ['ignore', out, 'pipe'] });
	if (stdoutFile) fs.closeSync(out);
	const s = {
		argv, proc,
		lines: [],
		stderrLines: [],
		exit: null,
		stdoutText: '',
	};
	s.exited = new Promise((resolve) => proc.once('close', (code, signal) => { s.exit = { code, signal }; resolve(s.exit); }));
	if (!stdoutFile)
		lineReader(proc.stdout, (l) => { s.lines.push(l); }, (t) => { s.stdoutText += t; });
	let onReady;
	const readyP = new Promise((r) => { onReady = r; });
	lineReader(proc.stderr, (l) => {
		s.stderrLines.push(l);
		if (ready.test(l)) onReady(true);
	});
	proc.once('error', (e) => { s.spawnError = e; onReady(false); });
	const r = await Promise.race([readyP, s.exited.then(() => false), deadline(readyTimeoutMs).then(() => 'timeout')]);
	if (r !== true) {
		killPid(proc.pid);
		await Promise.race([s.exited, deadline(2000)]);
		const why = s.spawnError ? `cannot run ${SONDE}: ${s.spawnError.message}` : r === 'timeout' ? `no "mcpsonde: attached" line within ${readyTimeoutMs} ms` : `exit ${JSON.stringify(s.exit)}`;
		throw new Error(`mcpsonde ${argv.join(' ')} did not attach (${why}); stderr:\n${s.stderrLines.join('\n')}`);
	}
	s.t_attached = nowNs();
	return s;
}

// `mcpsonde attach -p PID --json EXTRA...`
export function startSonde(pid, extra = [], opts) {
	return spawnSonde(['attach', '-p', String(pid), '--json', ...extra], opts);
}

// `mcpsonde watch --all --json EXTRA...`, once it says its probes are live.
export function startWatch(extra = [], opts = {}) {
	return spawnSonde(['watch', '--all', '--json', ...extra], { ready: /^mcpsonde: watching/, ...opts });
}

// When pid started, in clock ticks since boot (field 22 of /proc/PID/stat): with the pid, the
// identity mcpsonde gives a process.
export function startTicks(pid) {
	const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
	return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

// Parsed stdout events so far. Every stdout line must be one JSON object.
export function sondeEvents(s) {
	return s.lines.filter((l) => l.trim() !== '').map((l) => {
		try {
			return JSON.parse(l);
		} catch {
			throw new Error(`mcpsonde stdout line is not JSON: ${l.slice(0, 300)}`);
		}
	});
}

// Waits until pred(events) holds or the timeout passes (the caller's assertions then say
// what is missing). mcpsonde sees the bytes asynchronously: give it time before stopping.
export async function waitForEvents(s, pred, timeoutMs = 5000) {
	const until = Date.now() + timeoutMs;
	for (;;) {
		let ok = false;
		try { ok = pred(sondeEvents(s)); } catch { ok = false; }
		if (ok || Date.now() > until || s.exit) return ok;
		await sleep(50);
	}
}

// SIGINT, wait for the exit (10 s), assert it exited 0, return the parsed events.
export async function stopSonde(s, { timeoutMs = 10000 } = {}) {
	if (!s.exit) {
		killPid(s.proc.pid, 'SIGINT');
		const r = await Promise.race([s.exited, deadline(timeoutMs).then(() => null)]);
		if (!r) {
			killPid(s.proc.pid, 'SIGKILL');
			await s.exited;
			assert.fail(`mcpsonde ${s.argv[0]} did not exit within ${timeoutMs} ms of SIGINT; stderr:\n${s.stderrLines.join('\n')}`);
		}
	}
	assert.deepEqual(s.exit, { code: 0, signal: null },
		`mcpsonde ${s.argv.join(' ')} exit status; stderr:\n${s.stderrLines.join('\n')}`);
	return sondeEvents(s);
}

export function killSonde(s) {
	if (s && !s.exit) killPid(s.proc.pid);
}

function lineReader(stream, onLine, onText) {
	let buf = '';
	stream.setEncoding('utf8');
	stream.on('data', (d) => {
		onText?.(d);
		buf += d;
		let i;
		while ((i = buf.indexOf('\n')) >= 0) {
			onLine(buf.slice(0, i));
			buf = buf.slice(i + 1);
		}
	});
	stream.on('end', () => { if (buf) onLine(buf); buf = ''; });
}

// Runs build/mcpsonde to completion (no root needed for replay and error paths).
export function runSonde(argv, { timeoutMs = 30000, env, uid, gid } = {}) {
	requireSonde();
	return new Promise((resolve) => {
		const proc = spawn(SONDE, argv, { cwd: uid === undefined ? REPO : '/', stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env, uid, gid });
		let out = '', err = '';
		proc.on('error', (e) => resolve({ code: null, signal: null, stdout: out, stderr: err, spawnError: e }));
		proc.stdout.on('data', (d) => { out += d; });
		proc.stderr.on('data', (d) => { err += d; });
		const timer = setTimeout(() => killPid(proc.pid), timeoutMs);
		proc.on('close', (code, signal) => {
			clearTimeout(timer);
			resolve({ code, signal, stdout: out, stderr: err });
		});
	});
}

/* ---------------------------------------------------------------- comparisons */

export const calls = (events) => events.filter((e) => e.type === 'call');

// JSON text of an id as on the wire: 1 and "1" differ.
const idKey = (id) => JSON.stringify(id);

// Every client request in `requests` must appear as exactly one call event (client_to_server)
// with the same id, method, tool and status (and error_code for errors), and no other
// client_to_server call event may exist. Returns the matched pairs.
export function assertCallsMatch(requests, events, { allowExtra = false } = {}) {
	const evs = calls(events).filter((e) => e.direction === 'client_to_server');
	const byId = new Map();
	for (const e of evs) {
		const k = idKey(e.id);
		byId.set(k, [...(byId.get(k) ?? []), e]);
	}
	const pairs = [];
	const problems = [];
	for (const r of requests) {
		const got = byId.get(idKey(r.id)) ?? [];
		const want = { id: r.id, method: r.method, tool: r.tool, status: expectedStatus(r), error_code: r.outcome === 'error' ? r.error_code : undefined };
		const hasCode = (e) => e.status === 'error' || (e.status === 'probe_failed' && e.error_code !== undefined);
		if (got.length !== 1) {
			problems.push(`request ${JSON.stringify(want)}: ${got.length} call events ${JSON.stringify(got)}`);
			continue;
		}
		const e = got[0];
		// event.h lets `tool` also name the prompt of prompts/get and the uri of resources/read.
		const alt = r.method === 'prompts/get' ? r.params?.name : r.method === 'resources/read' ? r.params?.uri : undefined;
		const lenient = r.method !== 'tools/call' && (e.tool === undefined || e.tool === null || (alt !== undefined && e.tool === alt));
		const tool = lenient ? want.tool : (e.tool ?? undefined);
		const have = { id: e.id, method: e.method, tool, status: e.status, error_code: hasCode(e) ? e.error_code : undefined };
		if (JSON.stringify(have) !== JSON.stringify(want)) problems.push(`request ${JSON.stringify(want)} reported as ${JSON.stringify(e)}`);
		pairs.push([r, e]);
	}
	if (!allowExtra) {
		const wanted = new Set(requests.map((r) => idKey(r.id)));
		for (const e of evs) if (!wanted.has(idKey(e.id))) problems.push(`call event for no logged request: ${JSON.stringify(e)}`);
	}
	assert.deepEqual(problems, [], 'call events vs the client log');
	return pairs;
}

// The server's read -> write interval lies inside the client's write -> read round trip.
export function assertDurationsWithinRtt(pairs) {
	const problems = [];
	for (const [r, e] of pairs) {
		if (typeof e.duration_ms !== 'number' || !(e.duration_ms >= 0)) problems.push(`id ${r.id}: duration_ms ${e.duration_ms}`);
		else if (e.duration_ms > r.rtt_ms + 0.001) problems.push(`id ${r.id} ${r.method} ${r.tool ?? ''}: duration_ms ${e.duration_ms} > client round trip ${r.rtt_ms.toFixed(3)} ms`);
	}
	assert.deepEqual(problems, [], 'duration_ms <= client round trip');
}

const RFC3339_US = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

// Events about one process: they name it.
const PROCESS_EVENTS = new Set(['call', 'notification', 'session', 'invalid', 'stderr', 'exit']);

// Fields every event carries: type, ts, pid, server (null allowed for events tied to no
// process, like a ring buffer loss); events about a process carry its pid and a server name.
export function assertEventShape(events, pids) {
	const problems = [];
	for (const e of events) {
		if (typeof e.type !== 'string') problems.push(`no type: ${JSON.stringify(e)}`);
		if (typeof e.ts !== 'string' || !RFC3339_US.test(e.ts)) problems.push(`ts not RFC 3339 UTC with microseconds: ${JSON.stringify(e)}`);
		else if (Math.abs(Date.parse(e.ts) - Date.now()) > 3600e3) problems.push(`ts not near now: ${JSON.stringify(e)}`);
		if (!Number.isInteger(e.pid)) problems.push(`no pid: ${JSON.stringify(e)}`);
		if (!('server' in e)) problems.push(`no server: ${JSON.stringify(e)}`);
		if (PROCESS_EVENTS.has(e.type)) {
			if (pids && !pids.includes(e.pid)) problems.push(`pid ${e.pid} not one of ${JSON.stringify(pids)}: ${JSON.stringify(e)}`);
			if (typeof e.server !== 'string' || e.server === '') problems.push(`no server name: ${JSON.stringify(e)}`);
		}
	}
	assert.deepEqual(problems.slice(0, 20), [], 'event shape');
}

// Millisecond figures are printed at the clock's resolution (µs: 3 decimals), not as binary
// float noise like 0.66000000000000003.
export function assertMsResolution(text) {
	const noisy = [...text.matchAll(/"(\w+_ms)":(-?\d+\.\d{4,})/g)].map((m) => `${m[1]}: ${m[2]}`);
	assert.deepEqual(noisy.slice(0, 5), [], `${noisy.length} millisecond values with more than 3 decimals`);
}

export function count(haystack, needle) {
	let n = 0;
	for (let i = haystack.indexOf(needle); i >= 0; i = haystack.indexOf(needle, i + needle.length)) n++;
	return n;
}

/* ---------------------------------------------------------------- metrics and --summary */

export function freePort() {
	return new Promise((resolve, reject) => {
		const srv = net.createServer();
		srv.once('error', reject);
		srv.listen(0, '127.0.0.1', () => {
			const { port } = srv.address();
			srv.close(() => resolve(port));
		});
	});
}

export async function httpGet(url, headers = {}) {
	const r = await fetch(url, { headers });
	return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
}

// Prometheus text format 0.0.4 -> [{name, labels: {..}, value}] (samples only).
export function parseMetrics(text) {
	const out = [];
	for (const line of text.split('\n')) {
		if (!line || line.startsWith('#')) continue;
		const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
		if (!m) throw new Error(`not a sample line: ${line}`);
		const labels = {};
		for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
		out.push({ name: m[1], labels, value: Number(m[3]) });
	}
	return out;
}

// Sum of the samples of a family whose labels include `match`.
export function metricSum(samples, name, match = {}) {
	return samples.filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
		.reduce((a, s) => a + s.value, 0);
}

// The --summary table -> [{server, operation, calls, errors: {type: n}, p50, notErrors: {..}}],
// columns found by the header's titles.
export function parseSummary(text) {
	const lines = text.split('\n');
	const h = lines.findIndex((l) => l.startsWith('SERVER '));
	if (h < 0) return [];
	const header = lines[h];
	const col = (name) => header.indexOf(name);
	const counts = (cell) => Object.fromEntries(cell.trim() === '-' ? [] : cell.trim().split(',').map((p) => {
		const i = p.lastIndexOf(':');
		return [p.slice(0, i), Number(p.slice(i + 1))];
	}));
	const rows = [];
	for (const line of lines.slice(h + 1)) {
		if (!line || line.startsWith('(')) break;
		rows.push({
			server: line.slice(0, col('OPERATION')).trim(),
			operation: line.slice(col('OPERATION'), col('CALLS') + 5 - 8).trim(),
			calls: Number(line.slice(col('CALLS') + 5 - 8, col('CALLS') + 5)),
			errors: counts(line.slice(col('ERRORS'), col('P50') - 6)),
			p50: line.slice(col('P50') - 6, col('P50') + 3).trim(),
			notErrors: counts(line.slice(col('NOT_ERRORS'))),
		});
	}
	return rows;
}

/* ---------------------------------------------------------------- capture files */

const CAPTURE_HEADER_SIZE = 32; // struct capture_header: magic[8] u32 u32 i64 u64
const MSD_REC_DATA = 1;
const DATA_HEADER_SIZE = 104; // sizeof(struct msd_data_rec)
export const ROLE_NAMES = ['none', 'in', 'out', 'err', 'conn'];

// Parses a capture file (include/mcpsonde/capture.h): a 32-byte header in clear, then a gzip
// stream of records, each starting with struct msd_rec_hdr {u16 kind, u16 abi, u32 size,
// u64 ts_ns, u32 tgid, u32 tid}. Data records (struct msd_data_rec, events.h) continue with
// {s32 fd, u8 dir, u8 fd_kind, u16 flags, u64 syscall_len, u64 stream_off, u32 cap_len,
// u32 chunk, u64 requested, u8 role, u8 syscall, u16 family, u32 file_dev, u64 file_ino,
// u64 hole_off, u64 hole_len, u64 conn_id} and the bytes at offset 104. Returns the header,
// every record, and the bytes of each stream laid out by stream offset: "4242/out" for a
// channel role, "4242/conn/7/0" for direction 0 (read) of connection 7.
export async function readCapture(file) {
	const zlib = await import('node:zlib');
	const raw = fs.readFileSync(file);
	assert.equal(raw.subarray(0, 8).toString('latin1'), 'MSDCAP\r\n', 'capture magic');
	const header = { version: raw.readUInt32LE(8), abi: raw.readUInt32LE(12) };
	const body = zlib.gunzipSync(raw.subarray(CAPTURE_HEADER_SIZE));
	const records = [];
	const streams = new Map();
	for (let off = 0; off + 24 <= body.length;) {
		const kind = body.readUInt16LE(off);
		const size = body.readUInt32LE(off + 4);
		assert.ok(size >= 24 && off + size <= body.length, `record at ${off}: size ${size}`);
		const rec = { kind, size, tgid: body.readUInt32LE(off + 16) };
		if (kind === MSD_REC_DATA) {
			rec.fd = body.readInt32LE(off + 24);
			rec.dir = body.readUInt8(off + 28);
			rec.fd_kind = body.readUInt8(off + 29);
			rec.flags = body.readUInt16LE(off + 30);
			rec.syscall_len = Number(body.readBigUInt64LE(off + 32));
			rec.stream_off = Number(body.readBigUInt64LE(off + 40));
			rec.cap_len = body.readUInt32LE(off + 48);
			rec.role = ROLE_NAMES[body.readUInt8(off + 64)];
			rec.syscall = body.readUInt8(off + 65);
			rec.conn_id = Number(body.readBigUInt64LE(off + 96));
			rec.data = body.subarray(off + DATA_HEADER_SIZE, off + DATA_HEADER_SIZE + rec.cap_len);
			const k = rec.role === 'conn' ? `${rec.tgid}/conn/${rec.conn_id}/${rec.dir}` : `${rec.tgid}/${rec.role}`;
			if (!streams.has(k)) streams.set(k, []);
			streams.get(k).push(rec);
		}
		records.push(rec);
		off += size;
	}
	const streamBytes = new Map();
	for (const [k, recs] of streams) {
		recs.sort((a, b) => a.stream_off - b.stream_off);
		streamBytes.set(k, Buffer.concat(recs.map((r) => r.data)));
	}
	return { header, body, records, streamBytes };
}

/* ---------------------------------------------------------------- workloads */

// A JSON-RPC request for a method nobody implements, with a schema that accepts anything.
export async function requestUnknownMethod(client, method = 'no/such_method') {
	try {
		await client.request({ method }, ResultSchema);
	} catch (e) {
		return e;
	}
	throw new Error(`${method} unexpectedly succeeded`);
}

// What the server-everything tests do. Returns the values that must never appear in
// mcpsonde's output without --capture-values.
export async function everythingWorkload(client, { big = true, progress = true, unique = randomTag() } = {}) {
	const secrets = [];
	await client.listTools();
	for (let i = 0; i < 3; i++) {
		const secret = `echo-secret-${unique}-${i}`;
		secrets.push(secret);
		const r = await client.callTool({ name: 'echo', arguments: { message: secret } });
		assert.equal(r.content[0].text, `Echo: ${secret}`);
	}
	for (const [a, b] of [[2, 3], [40, 2], [7919, 104729]]) {
		const r = await client.callTool({ name: 'get-sum', arguments: { a, b } });
		assert.match(r.content[0].text, new RegExp(`\\b${a + b}\\b`));
	}
	const unknownTool = await client.callTool({ name: `no-such-tool-${unique}`, arguments: {} });
	assert.equal(unknownTool.isError, true, 'server-everything answers an unknown tool with isError');
	const badArgs = await client.callTool({ name: 'get-sum', arguments: { a: `not-a-number-${unique}`, b: 1 } });
	assert.equal(badArgs.isError, true, 'server-everything answers invalid arguments with isError');
	secrets.push(`not-a-number-${unique}`);
	const e = await requestUnknownMethod(client);
	assert.equal(e.code, -32601);
	let bigMessage;
	if (big) {
		// ~300 KB: several read()s by the server, several write()s of the answer.
		const unit = `big-${unique}-`;
		bigMessage = unit.repeat(Math.ceil(300000 / unit.length));
		const r = await client.callTool({ name: 'echo', arguments: { message: bigMessage } });
		assert.equal(r.content[0].text.length, bigMessage.length + 'Echo: '.length);
		secrets.push(unit);
	}
	if (progress) {
		await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 4 } }, undefined, { onprogress: () => {} });
	}
	try {
		await client.readResource({ uri: `test://no-such-resource/${unique}` });
		assert.fail('resources/read of an unknown uri succeeded');
	} catch (err) {
		assert.equal(err.code, -32602);
	}
	return { secrets, bigMessage, unique };
}

export function randomTag() {
	return Math.random().toString(36).slice(2, 10);
}

// Notifications the client sent and received, as {method, direction} multiset keys.
export function clientNotifications(log, t0 = 0n) {
	const out = [];
	for (const n of log.notificationsSent) if (n.t >= t0) out.push(`client_to_server ${n.method}`);
	for (const n of log.notificationsReceived) if (n.t >= t0) out.push(`server_to_client ${n.method}`);
	return out.sort();
}

export function sondeNotifications(events) {
	return events.filter((e) => e.type === 'notification').map((e) => `${e.direction} ${e.method}`).sort();
}

// hostile.mjs -- the client side of the hostile-server tests: build/tools/hostile (an MCP server
// of ours that misbehaves on command, see tests/tools/hostile.c) driven over socketpairs, as a
// Node agent launches a stdio server.
//
// The client is a plain newline-delimited JSON-RPC client rather than the SDK's: the SDK's
// reader refuses lines over 10 MiB (and concatenates its buffer on every chunk), and these
// tests send 100 MB responses. It logs what it did exactly as lib.mjs's ClientLog does
// (requests with id, method, tool, outcome, round trip, bytes; notifications received), so
// the same comparisons apply.

import { spawn } from 'node:child_process';
import path from 'node:path';

import { REPO, killPid, deadline } from './lib.mjs';

export const HOSTILE = path.join(REPO, 'build', 'tools', 'hostile');

const PARSE_MAX = 16 << 20; // a longer response is judged by its last bytes: "id" ends it
const nowNs = () => process.hrtime.bigint();

export class Hostile {
	// stderr: 'pipe' (collected in .stderr), 'ignore' (/dev/null) or an fd to give the server as its fd 2.
	static async start({ stderr = 'pipe' } = {}) {
		const proc = spawn(HOSTILE, [], { stdio: ['pipe', 'pipe', stderr] });
		await new Promise((resolve, reject) => {
			proc.once('spawn', resolve);
			proc.once('error', reject);
		});
		return new Hostile(proc);
	}

	constructor(proc) {
		this.proc = proc;
		this.pid = proc.pid;
		this.requests = [];
		this.notificationsReceived = [];
		this.stderr = '';
		this.nextId = 1;
		this.waiting = new Map();
		this.chunks = [];
		this.exited = new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal })));
		proc.stdout.on('data', (d) => this.#onData(d));
		proc.stderr?.on('data', (d) => { this.stderr += d; });
		proc.stdin.on('error', () => {});
	}

	#onData(chunk) {
		let start = 0;
		for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
			this.chunks.push(chunk.subarray(start, nl));
			const line = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks);
			this.chunks = [];
			this.#onLine(line);
			start = nl + 1;
		}
		if (start < chunk.length) this.chunks.push(chunk.subarray(start));
	}

	#onLine(line) {
		const t = nowNs();
		let msg;
		if (line.length <= PARSE_MAX) {
			msg = JSON.parse(line.toString('utf8'));
		} else {
			const m = /"id":(\d+)\}$/.exec(line.subarray(line.length - 64).toString('latin1'));
			msg = { id: m ? Number(m[1]) : undefined, result: { giant: true } };
		}
		if (msg.method !== undefined) {
			this.notificationsReceived.push({ method: msg.method, params: msg.params, t, bytes: line.length + 1 });
			return;
		}
		const e = this.waiting.get(msg.id);
		if (!e) throw new Error(`response to no request: ${line.subarray(0, 200)}`);
		this.waiting.delete(msg.id);
		e.t_recv = t;
		e.rtt_ms = Number(t - e.t_send) / 1e6;
		e.response_bytes = line.length + 1;
		e.response = msg;
		if (msg.error) {
			e.outcome = 'error';
			e.error_code = msg.error.code;
		} else {
			e.outcome = msg.result?.isError === true ? 'isError' : 'ok';
		}
		e.resolve(msg);
	}

	request(method, params, { timeoutMs = 60000 } = {}) {
		const id = this.nextId++;
		const text = JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n';
		const e = {
			id, method, params, tool: method === 'tools/call' ? params?.name : undefined,
			t_send: nowNs(), t_recv: null, rtt_ms: null, outcome: null, error_code: undefined,
			request_bytes: Buffer.byteLength(text), response_bytes: null,
		};
		this.requests.push(e);
		const p = new Promise((resolve, reject) => {
			e.resolve = resolve;
			deadline(timeoutMs).then(() => reject(new Error(`${method} ${id}: no response in ${timeoutMs} ms`)));
		});
		this.waiting.set(id, e);
		this.proc.stdin.write(text);
		return p;
	}

	notify(method, params) {
		this.proc.stdin.write(JSON.stringify({ jsonrpc: '2.0', method, params }) + '\n');
	}

	async initialize() {
		const r = await this.request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'hostile-e2e', version: '1.0.0' } });
		this.notify('notifications/initialized');
		return r;
	}

	call(name, args = {}, opts) {
		return this.request('tools/call', { name, arguments: args }, opts);
	}

	// Requests sent at or after a monotonic instant (bigint ns).
	since(t0) {
		return this.requests.filter((e) => e.t_send >= t0);
	}

	// The stdio shutdown: close stdin, the server exits 0.
	async close() {
		this.proc.stdin.end();
		const r = await Promise.race([this.exited, deadline(10000).then(() => null)]);
		if (!r) killPid(this.pid);
		return r;
	}

	kill() {
		killPid(this.pid);
	}
}

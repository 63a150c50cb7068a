// http-peers.mjs -- the HTTP side of the server-everything benchmark (bench/sdk-bench.mjs):
//   startEverythingHttp()     server-everything in streamableHttp mode on 127.0.0.1:PORT=0
//   startNginx(upstreamPort)  Debian's nginx as a reverse proxy in front of it
// Both resolve to {pid, port} once the process accepts connections.
//
// Invariants: every process started here is a direct child, in the caller's process group and
// with its CPU affinity (the bench pins and kills the workload as a group); stopAll() stops each
// by pid (SIGTERM, SIGKILL after 3 s), and an exit of this process for any reason (an error, a
// signal it handles) SIGKILLs by pid whatever is still running. Nothing listens beyond 127.0.0.1.
// nginx runs in the foreground (daemon off) from a config in a temporary directory that holds all
// its files (pid, logs, temp paths) and is removed when it stops.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

// freePort: a port free now. nginx cannot report one the OS picked, so startNginx retries on a conflict.
import { freePort, sleep } from '../tests/e2e/lib.mjs';

const REPO = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const EVERYTHING = path.join(REPO, 'tests/node_modules/@modelcontextprotocol/server-everything/dist/index.js');
// Binds listen(PORT) to 127.0.0.1 and reports the port the OS picked on the IPC channel.
const LISTEN_LOCAL = pathToFileURL(path.join(REPO, 'tests/data/http/listen-local.mjs')).href;

const running = new Map(); // pid -> {child, exited, cleanup}

process.on('exit', () => {
	for (const [pid, r] of running) {
		try {
			process.kill(pid, 'SIGKILL');
		} catch {}
		r.cleanup?.();
	}
});

function track(child, cleanup) {
	const exited = new Promise((r) => child.once('exit', r));
	running.set(child.pid, { child, exited, cleanup });
	exited.then(() => {
		running.delete(child.pid);
		cleanup?.();
	});
	return exited;
}

// The last KiB of a child's stderr, for error messages; read so that it never blocks on a full pipe.
function stderrTail(child) {
	const t = { text: '' };
	child.stderr.on('data', (d) => { t.text = (t.text + d).slice(-1024); });
	return t;
}

export async function stopAll() {
	await Promise.all([...running].map(async ([pid, r]) => {
		try {
			process.kill(pid, 'SIGTERM');
		} catch {}
		let timer;
		await Promise.race([r.exited, new Promise((res) => { timer = setTimeout(res, 3000); })]);
		clearTimeout(timer);
		if (running.has(pid)) {
			try {
				process.kill(pid, 'SIGKILL');
			} catch {}
			await r.exited;
		}
	}));
}

export function startEverythingHttp() {
	const child = spawn(process.execPath, [`--import=${LISTEN_LOCAL}`, EVERYTHING, 'streamableHttp'], {
		env: { ...process.env, PORT: '0' },
		// stdout: it logs a line per request there, as it would to a log file.
		stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
	});
	const err = stderrTail(child);
	const exited = track(child);
	return new Promise((resolve, reject) => {
		child.once('message', (m) => {
			child.disconnect(); // the IPC channel served its purpose: no idle socket in the server
			resolve({ pid: child.pid, port: m.port });
		});
		exited.then((code) => reject(new Error(`server-everything streamableHttp exited (${code}): ${err.text}`)));
	});
}

function connects(port) {
	return new Promise((resolve) => {
		const s = net.connect(port, '127.0.0.1');
		s.once('connect', () => { s.destroy(); resolve(true); });
		s.once('error', () => resolve(false));
	});
}

function nginxBinary() {
	for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/sbin']) {
		const f = path.join(d || '.', 'nginx');
		try {
			fs.accessSync(f, fs.constants.X_OK);
			return f;
		} catch {}
	}
	throw new Error('nginx is not installed (scripts/setup.sh installs it)');
}

// A reverse proxy as one is put in front of an MCP server: HTTP/1.1 and keep-alive to the
// upstream, responses streamed as they come (SSE), no access log (the bench measures the relay,
// not a disk). One worker: the workload is pinned to one CPU.
function nginxConfig(dir, port, upstreamPort) {
	const user = process.getuid?.() === 0 ? 'user nobody nogroup;\n' : '';
	return `${user}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path ${dir}/client_body;
	proxy_temp_path ${dir}/proxy;
	fastcgi_temp_path ${dir}/fastcgi;
	uwsgi_temp_path ${dir}/uwsgi;
	scgi_temp_path ${dir}/scgi;
	upstream mcp {
		server 127.0.0.1:${upstreamPort};
		keepalive 128;
	}
	server {
		listen 127.0.0.1:${port};
		location / {
			proxy_pass http://mcp;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $http_host;
			proxy_buffering off;
			proxy_read_timeout 1h;
		}
	}
}
`;
}

export async function startNginx(upstreamPort) {
	const bin = nginxBinary();
	for (let attempt = 1; ; attempt++) {
		const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-bench-nginx.'));
		const port = await freePort();
		fs.writeFileSync(path.join(dir, 'nginx.conf'), nginxConfig(dir, port, upstreamPort));
		const child = spawn(bin, ['-p', `${dir}/`, '-c', `${dir}/nginx.conf`, '-e', `${dir}/error.log`], {
			stdio: ['ignore', 'ignore', 'pipe'],
		});
		const err = stderrTail(child);
		let code = null;
		let log = '';
		const exited = track(child, () => {
			try {
				log = fs.readFileSync(path.join(dir, 'error.log'), 'utf8');
			} catch {}
			fs.rmSync(dir, { recursive: true, force: true });
		});
		exited.then((c) => { code = c ?? 'signal'; });
		const end = Date.now() + 10000;
		while (code === null && Date.now() < end && !(await connects(port))) await sleep(20);
		if (code === null && Date.now() < end) return { pid: child.pid, port };
		if (code === null) {
			child.kill('SIGKILL');
			await exited;
			throw new Error(`nginx did not accept connections within 10 s: ${(err.text + log).slice(-300)}`);
		}
		await exited;
		log = err.text + log;
		// Another process took the port between freePort() and nginx's bind: try another.
		if (attempt < 5 && /Address already in use/.test(log)) continue;
		throw new Error(`nginx exited (${code}): ${log.slice(-300)}`);
	}
}

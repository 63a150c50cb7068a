// Dead and stuck servers (issue 4): exits classified, stalls and blocked writes detected live,
// a post-mortem report for every abnormal exit, rendered by `mcpsonde postmortem`.
//
// Every server here is the real @modelcontextprotocol/server-everything driven by the SDK
// Client. Faults are injected from outside the way they happen in production: a signal
// (SIGSEGV, SIGSTOP/SIGCONT), a client that stops reading, a memory-limited cgroup whose
// limit a real tool (gzip-file-as-resource keeps every blob it makes) runs into. The one
// fault that needs code inside the server is the Node traceback: `node --require` preloads
// a 1-line file that throws an uncaught Error on SIGUSR2. The traceback and the exit code 1
// are Node's own, exactly what an unhandled exception in any Node MCP server produces.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	EVERYTHING, launchSocketpair, launchFifo, startSonde, spawnSonde, stopSonde, killSonde, waitForEvents, runSonde,
	calls, sleep,
} from './lib.mjs';

const TIMEOUT = 120000;
const LONG_OP = 'trigger-long-running-operation';

function newReportDir() {
	return fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-reports-'));
}

function reportsIn(dir) {
	return fs.readdirSync(dir).filter((n) => n.endsWith('.json.gz')).map((n) => path.join(dir, n));
}

async function postmortem(file, { json = false } = {}) {
	const r = await runSonde(['postmortem', file, ...(json ? ['--json'] : [])]);
	assert.equal(r.code, 0, `mcpsonde postmortem ${file}: exit ${r.code}; stderr:\n${r.stderr}`);
	return json ? JSON.parse(r.stdout) : r.stdout;
}

const byType = (events, type) => events.filter((e) => e.type === type);

// attach ends by itself when its last process has exited; give it the time to write the
// report first, then stop it (or collect its exit).
async function collectAfterDeath(sonde, pid) {
	await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === pid)
		&& evs.some((e) => e.type === 'report'), 15000);
	return stopSonde(sonde);
}

// The report named by the JSONL report event: mode 0600, in the report dir, after the exit.
function assertReportEvent(events, dir, pid) {
	const reports = byType(events, 'report');
	assert.equal(reports.length, 1, `one report event: ${JSON.stringify(reports)}`);
	const rep = reports[0];
	assert.equal(rep.pid, pid);
	assert.ok(rep.path.startsWith(dir), `report ${rep.path} outside ${dir}`);
	assert.match(path.basename(rep.path), /^mcpsonde-.+-\d+-\d{8}T\d{6}\.\d{6}Z(-\d+)?\.json\.gz$/);
	assert.equal(fs.statSync(rep.path).mode & 0o777, 0o600, 'report file mode');
	assert.ok(events.indexOf(rep) > events.findIndex((e) => e.type === 'exit' && e.pid === pid), 'report after exit');
	assert.deepEqual(reportsIn(dir), [rep.path], 'exactly one report file');
	return rep.path;
}

test('SIGSEGV during trigger-long-running-operation: exit by signal, orphaned call, report', { timeout: TIMEOUT }, async () => {
	const dir = newReportDir();
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--report-dir', dir]);
		let progressed;
		const firstProgress = new Promise((r) => { progressed = r; });
		const call = srv.client.callTool({ name: LONG_OP, arguments: { duration: 60, steps: 60 } }, undefined,
			{ onprogress: () => progressed(), timeout: 90000 }).then(() => 'completed', (e) => e);
		assert.ok(await Promise.race([firstProgress.then(() => true), sleep(10000).then(() => false)]), 'no progress within 10 s');
		const req = srv.log.requests.find((r) => r.tool === LONG_OP);
		await sleep(500);
		process.kill(srv.pid, 'SIGSEGV');
		const outcome = await call;
		assert.notEqual(outcome, 'completed', 'the call cannot complete: its server died');

		const events = await collectAfterDeath(sonde, srv.pid);
		const exit = byType(events, 'exit').find((e) => e.pid === srv.pid);
		assert.ok(exit, 'exit event');
		assert.equal(exit.signal, 'SIGSEGV');
		assert.equal(exit.normal, false);
		assert.equal(exit.pending_calls, 1);
		const orphans = calls(events).filter((e) => e.status === 'orphaned');
		assert.equal(orphans.length, 1, `orphaned calls: ${JSON.stringify(orphans)}`);
		assert.equal(orphans[0].method, 'tools/call');
		assert.equal(orphans[0].tool, LONG_OP);
		assert.deepEqual(orphans[0].id, req.id);
		assert.ok(orphans[0].duration_ms >= 500, `orphan age ${orphans[0].duration_ms} ms`);

		const file = assertReportEvent(events, dir, srv.pid);
		const text = await postmortem(file);
		assert.match(text.split('\n')[0], new RegExp(`\\(pid ${srv.pid}\\) killed by SIGSEGV.*1 call pending`));
		assert.match(text, /Pending at death \(1\)/);
		assert.match(text, new RegExp(`tools/call\\s+${LONG_OP}\\s+id=${req.id}\\b`));
		assert.match(text, /Timeline/);
		const rep = await postmortem(file, { json: true });
		assert.equal(rep.process.pid, srv.pid);
		assert.match(rep.process.cmdline ?? '', /server-everything|index\.js/);
		assert.equal(rep.exit.signal_name, 'SIGSEGV');
		assert.deepEqual(rep.pending_calls.map((c) => [c.method, c.tool, c.id, c.orphaned]), [['tools/call', LONG_OP, JSON.stringify(req.id), true]]);
		assert.ok(rep.frames.client_to_server.some((f) => f.event?.method === 'tools/call'), 'the request among the last frames');
		assert.ok(rep.frames.server_to_client.some((f) => f.event?.method === 'notifications/progress'), 'its progress among the last frames');
		// Keys only without --capture-values: the request's argument values are not in the report.
		assert.ok(!JSON.stringify(rep.frames).includes('"duration":60'), 'argument values leaked into the report');
	} finally {
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('the same report from a recorded capture: replay --report-dir', { timeout: TIMEOUT }, async () => {
	const dir = newReportDir();
	const liveDir = path.join(dir, 'live'), replayDir = path.join(dir, 'replay'), cap = path.join(dir, 'cap.msd');
	fs.mkdirSync(liveDir);
	const srv = await launchSocketpair();
	let live, rec;
	try {
		await srv.connect();
		[live, rec] = await Promise.all([
			startSonde(srv.pid, ['--report-dir', liveDir]),
			spawnSonde(['record', '-p', String(srv.pid), '-o', cap], { ready: /^mcpsonde: (attached|recording)/ }),
		]);
		await srv.client.callTool({ name: 'echo', arguments: { message: 'last words' } });
		const call = srv.client.callTool({ name: LONG_OP, arguments: { duration: 60, steps: 60 } }, undefined,
			{ onprogress: () => {}, timeout: 90000 }).catch((e) => e);
		await sleep(1500);
		process.kill(srv.pid, 'SIGSEGV');
		await call;
		const [liveEvents] = await Promise.all([collectAfterDeath(live, srv.pid), stopSonde(rec)]);
		const liveFile = assertReportEvent(liveEvents, liveDir, srv.pid);

		const replay = await runSonde(['replay', cap, '--json', '--report-dir', replayDir]);
		assert.equal(replay.code, 0, `replay exit status; stderr: ${replay.stderr}`);
		const replayed = replay.stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
		const replayFile = assertReportEvent(replayed, replayDir, srv.pid);
		const [a, b] = [await postmortem(liveFile, { json: true }), await postmortem(replayFile, { json: true })];
		// What the bytes and the exit record say is the same; /proc (resources, cgroup) was
		// read live only.
		const essence = (r) => ({
			// Each instance stamps the exit with its own probe: instants differ by microseconds.
			pid: r.process.pid, comm: r.process.comm, exit: { ...r.exit, event: undefined, at: undefined, headline: undefined },
			pending: r.pending_calls.map(({ age_s, ...c }) => c),
			frames: ['client_to_server', 'server_to_client'].map((d) => r.frames[d].map((f) => `${f.event?.kind} ${f.event?.method ?? ''} ${f.event?.id ?? ''}`)),
			stderr: r.stderr.tail,
		});
		const [ea, eb] = [essence(a), essence(b)];
		// The recorder may have started a little before the live attach: compare the newest frames.
		for (const i of [0, 1]) {
			const n = Math.min(ea.frames[i].length, eb.frames[i].length);
			ea.frames[i] = ea.frames[i].slice(-n);
			eb.frames[i] = eb.frames[i].slice(-n);
		}
		assert.deepEqual(eb, ea, 'replayed report == live report');
		assert.ok(Math.abs(Date.parse(a.exit.at) - Date.parse(b.exit.at)) <= 1, `exit at ${a.exit.at} vs ${b.exit.at}`);
		assert.match(b.exit.headline, new RegExp(`\\(pid ${srv.pid}\\) killed by SIGSEGV after .*, 1 call pending$`));
		assert.equal(b.exit.signal_name, 'SIGSEGV');
		assert.equal(b.pending_calls[0]?.tool, LONG_OP);
	} finally {
		killSonde(live);
		killSonde(rec);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('SIGSTOP during a call: stall with state T within threshold + 2 s; SIGCONT completes it', { timeout: TIMEOUT }, async () => {
	const dir = newReportDir();
	const STALL_S = 3;
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--report-dir', dir, '--stall-timeout', String(STALL_S)]);
		const call = srv.client.callTool({ name: LONG_OP, arguments: { duration: 2, steps: 2 } }, undefined, { timeout: 90000 });
		const req = srv.log.requests.find((r) => r.tool === LONG_OP);
		await sleep(300); // the server has read the request
		process.kill(srv.pid, 'SIGSTOP');
		const seen = await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'stall'), (STALL_S + 2) * 1000 + 1000);
		const sinceRequestMs = Number(process.hrtime.bigint() - req.t_send) / 1e6;
		process.kill(srv.pid, 'SIGCONT');
		assert.ok(seen, `no stall event within ${STALL_S + 2} s`);
		assert.ok(sinceRequestMs <= (STALL_S + 2) * 1000 + 200, `stall seen ${sinceRequestMs.toFixed(0)} ms after the request`);

		const result = await call;
		assert.ok(!result.isError, 'the call completes normally after SIGCONT');
		await waitForEvents(sonde, (evs) => calls(evs).some((e) => e.tool === LONG_OP), 10000);
		const events = await stopSonde(sonde);
		const stalls = byType(events, 'stall');
		assert.equal(stalls.length, 1, `one stall event: ${JSON.stringify(stalls)}`);
		const st = stalls[0];
		assert.equal(st.state, 'T', `stall state: ${JSON.stringify(st)}`);
		assert.equal(st.tool, LONG_OP);
		assert.deepEqual(st.id, req.id);
		assert.ok(st.pending_ms >= STALL_S * 1000, `pending_ms ${st.pending_ms}`);
		assert.ok(Number.isInteger(st.threads) && st.threads >= 1, `threads ${st.threads}`);
		const done = calls(events).filter((e) => e.tool === LONG_OP);
		assert.equal(done.length, 1);
		assert.equal(done[0].status, 'ok');
		assert.ok(done[0].duration_ms >= STALL_S * 1000, `a call stopped ${STALL_S} s lasts that long: ${done[0].duration_ms}`);
		assert.equal(byType(events, 'exit').length, 0, 'nothing died');
		assert.deepEqual(reportsIn(dir), [], 'no report for a live server');
	} finally {
		try { process.kill(srv.pid, 'SIGCONT'); } catch { /* gone */ }
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('shell-launched server dies of an uncaught exception: exit code 1, the traceback in the report', { timeout: TIMEOUT }, async () => {
	const dir = newReportDir();
	const preload = path.join(dir, 'throw-on-sigusr2.cjs');
	fs.writeFileSync(preload, "process.on('SIGUSR2', () => setImmediate(() => { throw new Error('injected fault: database unreachable'); }));\n");
	const srv = await launchFifo({ args: ['--require', preload, EVERYTHING, 'stdio'] });
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--report-dir', dir]);
		const r = await srv.client.callTool({ name: 'echo', arguments: { message: 'before the fault' } });
		assert.equal(r.content[0].text, 'Echo: before the fault');
		process.kill(srv.pid, 'SIGUSR2');
		const { code } = await srv.exited;
		assert.equal(code, 1, 'Node exits 1 on an uncaught exception');
		assert.match(srv.stderr.text, /Error: injected fault: database unreachable/);

		const events = await collectAfterDeath(sonde, srv.pid);
		const exit = byType(events, 'exit').find((e) => e.pid === srv.pid);
		assert.ok(exit, 'exit event');
		assert.equal(exit.exit_code, 1);
		assert.equal(exit.normal, false);
		const file = assertReportEvent(events, dir, srv.pid);
		const rep = await postmortem(file, { json: true });
		assert.equal(rep.exit.exit_code, 1);
		assert.match(rep.stderr.tail, /Error: injected fault: database unreachable\n\s+at /, 'the traceback, with its stack');
		assert.match(rep.stderr.tail, /throw new Error/, 'the source line Node prints above the error');
		const text = await postmortem(file);
		assert.match(text.split('\n')[0], new RegExp(`\\(pid ${srv.pid}\\) exited with code 1`));
		assert.match(text, /\| Error: injected fault: database unreachable/);
	} finally {
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('a client that stops reading during a large response: blocked_write', { timeout: TIMEOUT }, async () => {
	const BLOCKED_S = 2;
	const srv = await launchFifo();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--blocked-write-timeout', String(BLOCKED_S)]);
		const reader = srv.transport._stdin; // the FIFO carrying the server's stdout to us
		reader.pause();
		const message = 'x'.repeat(2 * 1024 * 1024); // a 2 MB answer; the pipe holds 64 KiB
		const call = srv.client.callTool({ name: 'echo', arguments: { message } }, undefined, { timeout: 90000 })
			.then((r) => ({ r }), (e) => ({ e }));
		const seen = await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'blocked_write'), (BLOCKED_S + 5) * 1000);
		reader.resume();
		// Node's stdout is non-blocking: after a partial write() it waits in epoll for the pipe to
		// drain, so no write() syscall stays in flight: the pipeline must see the short write.
		assert.ok(seen, 'no blocked_write event');
		const { r, e } = await call;
		assert.ok(!e, `the call failed: ${e?.message}`);
		assert.equal(r.content[0].text.length, message.length + 'Echo: '.length, 'the answer arrives whole once the client reads');
		await waitForEvents(sonde, (evs) => calls(evs).some((e) => e.tool === 'echo'), 10000);
		const events = await stopSonde(sonde);
		const bw = byType(events, 'blocked_write');
		assert.ok(bw.length >= 1);
		assert.equal(bw[0].pid, srv.pid);
		assert.equal(bw[0].fd, 1, 'the blocked write is on stdout');
		assert.ok(bw[0].blocked_ms >= BLOCKED_S * 1000, `blocked_ms ${bw[0].blocked_ms}`);
		assert.ok(bw[0].bytes > 0, `bytes ${bw[0].bytes}`);
		assert.equal(calls(events).find((e) => e.tool === 'echo').status, 'ok');
	} finally {
		try { srv.transport._stdin.resume(); } catch { /* closed */ }
		killSonde(sonde);
		await srv.close();
	}
});

test('normal SDK client shutdown: exit classified normal, no report', { timeout: TIMEOUT }, async () => {
	const dir = newReportDir();
	const srv = await launchSocketpair();
	let sonde;
	try {
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--report-dir', dir]);
		await srv.client.callTool({ name: 'echo', arguments: { message: 'hello' } });
		await srv.client.close(); // closes stdin, then SIGTERM after 2 s, then SIGKILL: the spec's shutdown
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === srv.pid), 15000);
		await sleep(300);
		const events = await stopSonde(sonde);
		const exit = byType(events, 'exit').find((e) => e.pid === srv.pid);
		assert.ok(exit, 'exit event');
		assert.equal(exit.normal, true, `exit: ${JSON.stringify(exit)}`);
		assert.equal(exit.stdin_closed, true, 'the client closed stdin first');
		assert.equal(exit.pending_calls, 0);
		assert.deepEqual(byType(events, 'report'), [], 'no report event');
		assert.deepEqual(calls(events).filter((e) => e.status === 'orphaned'), []);
		assert.deepEqual(reportsIn(dir), [], 'no report file');
	} finally {
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

/* ---------------------------------------------------------------- OOM */

// A memory cgroup below ours with a limit, or {skip: reason}. cgroup v1 (a "memory"
// hierarchy) and v2 (memory enabled for our cgroup's children) both work.
function makeMemoryCgroup(limitBytes) {
	const lines = fs.readFileSync('/proc/self/cgroup', 'utf8').trim().split('\n');
	const v1 = lines.find((l) => /^\d+:([^:]*,)?memory(,[^:]*)?:/.test(l));
	const name = `mcpsonde-oom-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
	let dir, files;
	if (v1 && fs.existsSync('/sys/fs/cgroup/memory')) {
		dir = path.join('/sys/fs/cgroup/memory', v1.split(':')[2], name);
		files = { limit: 'memory.limit_in_bytes', swap: 'memory.memsw.limit_in_bytes', oom: 'memory.oom_control' };
	} else {
		const v2 = lines.find((l) => l.startsWith('0::'));
		const mount = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' '))
			.find((f) => f[f.indexOf('-') + 1] === 'cgroup2')?.[4];
		if (!v2 || !mount) return { skip: 'no cgroup v1 memory hierarchy and no cgroup v2 mount' };
		const parent = path.join(mount, v2.slice(3));
		try {
			if (!fs.readFileSync(path.join(parent, 'cgroup.subtree_control'), 'utf8').includes('memory'))
				fs.writeFileSync(path.join(parent, 'cgroup.subtree_control'), '+memory');
		} catch (e) {
			return { skip: `cannot enable the memory controller below ${parent}: ${e.message}` };
		}
		dir = path.join(parent, name);
		files = { limit: 'memory.max', swap: 'memory.swap.max', oom: 'memory.events' };
	}
	try {
		fs.mkdirSync(dir);
		fs.writeFileSync(path.join(dir, files.limit), String(limitBytes));
	} catch (e) {
		try { fs.rmdirSync(dir); } catch { /* not made */ }
		return { skip: `cannot create a memory-limited cgroup at ${dir}: ${e.message}` };
	}
	try { fs.writeFileSync(path.join(dir, files.swap), files.swap === 'memory.swap.max' ? '0' : String(limitBytes)); } catch { /* no swap accounting: no swap here either */ }
	return {
		dir,
		procs: path.join(dir, 'cgroup.procs'),
		oomKills: () => Number(/oom_kill (\d+)/.exec(fs.readFileSync(path.join(dir, files.oom), 'utf8'))?.[1] ?? 0),
		remove: async () => {
			for (let i = 0; i < 50; i++) {
				try { fs.rmdirSync(dir); return; } catch { await sleep(100); }
			}
		},
	};
}

test('OOM kill in a memory-limited cgroup: exit oom, report', { timeout: TIMEOUT }, async (t) => {
	const cg = makeMemoryCgroup(192 << 20);
	if (cg.skip) {
		// Where the kernel lets us, this must run: CI machines are such machines.
		if (process.env.CI) assert.fail(`OOM test cannot run in CI: ${cg.skip}`);
		t.skip(cg.skip);
		return;
	}
	const dir = newReportDir();
	let srv, sonde;
	try {
		// The shell joins the cgroup, then execs the server: the pid we hold is the server's.
		// A large V8 heap limit so that the kernel's OOM killer, not V8, ends it.
		srv = await launchSocketpair({
			command: 'sh',
			args: ['-c', `echo $$ > '${cg.procs}' && exec '${process.execPath}' --max-old-space-size=4096 '${EVERYTHING}' stdio`],
		});
		await srv.connect();
		sonde = await startSonde(srv.pid, ['--report-dir', dir]);
		// gzip-file-as-resource keeps every blob it makes as a session resource: random data
		// does not compress, so each call retains ~8 MB (plus transient copies).
		let died = null;
		for (let i = 0; i < 60 && !died; i++) {
			const data = `data:application/octet-stream;base64,${crypto.randomBytes(6 << 20).toString('base64')}`;
			try {
				await srv.client.callTool({ name: 'gzip-file-as-resource', arguments: { name: `blob-${i}.gz`, data } }, undefined, { timeout: 60000 });
			} catch (e) {
				died = e;
			}
		}
		assert.ok(died, 'the server survived 60 retained blobs under a 192 MiB limit');
		assert.ok(cg.oomKills() >= 1, 'the cgroup recorded an OOM kill');

		const events = await collectAfterDeath(sonde, srv.pid);
		const exit = byType(events, 'exit').find((e) => e.pid === srv.pid);
		assert.ok(exit, 'exit event');
		assert.equal(exit.oom_killed, true, `exit: ${JSON.stringify(exit)}`);
		assert.equal(exit.reason, 'oom');
		assert.equal(exit.signal, 'SIGKILL');
		assert.equal(exit.normal, false);
		const file = assertReportEvent(events, dir, srv.pid);
		const rep = await postmortem(file, { json: true });
		assert.equal(rep.exit.oom_killed, true);
		assert.ok(rep.process.cgroup?.includes(path.basename(cg.dir)), `report cgroup ${rep.process.cgroup}`);
		assert.ok(rep.resources.length >= 1, 'RSS samples of the last minute');
		const text = await postmortem(file);
		assert.match(text.split('\n')[0], /killed by the OOM killer/);
	} finally {
		killSonde(sonde);
		await srv?.close();
		await cg.remove();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

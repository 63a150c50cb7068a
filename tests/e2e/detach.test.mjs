// When mcpsonde ends, its BPF programs go with it. A child of mcpsonde holds them while the
// kernel takes them down (source_live.c), so that mcpsonde itself exits at once; the child
// must end as soon as mcpsonde has. A child that never ended (it once kept its own end of the
// pipe it waits on) left every program attached after each stop, every syscall on the machine
// paying for them. Checked for attach and watch, stopped by SIGINT and SIGTERM, and killed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';

import { startSonde, startWatch, stopSonde, killSonde, killPid, sleep } from './lib.mjs';

const TIMEOUT = 90000;
const GONE_MS = 30000;
// Started with descriptors 0-2 only, as a service manager starts it: the layout in which the
// child once kept its own end of the pipe.
const CLEAN = { cleanFds: true };

// The ids of the BPF programs process pid holds open.
function progIds(pid) {
	const ids = [];
	for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
		let target;
		try {
			target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
		} catch {
			continue;
		}
		if (target !== 'anon_inode:bpf-prog') continue;
		const m = /^prog_id:\s*(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
		if (m) ids.push(Number(m[1]));
	}
	return ids;
}

function loadedProgIds() {
	return new Set(JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })).map((p) => p.id));
}

// Waits until none of ids is loaded; returns the ones still loaded after GONE_MS.
async function programsLeft(ids) {
	const until = Date.now() + GONE_MS;
	for (;;) {
		const loaded = loadedProgIds();
		const left = ids.filter((id) => loaded.has(id));
		if (left.length === 0 || Date.now() > until) return left;
		await sleep(100);
	}
}

async function checkStop(start, stop) {
	const idle = spawn('sleep', ['600'], { stdio: 'ignore' });
	let sonde;
	try {
		sonde = await start(idle.pid);
		const ids = progIds(sonde.proc.pid);
		assert.ok(ids.length >= 10, `mcpsonde holds its programs: ${ids}`);
		await stop(sonde);
		const left = await programsLeft(ids);
		assert.deepEqual(left, [], `programs still loaded ${GONE_MS} ms after mcpsonde ended`);
	} finally {
		killSonde(sonde);
		killPid(idle.pid);
	}
}

const bySignal = (sig) => async (s) => {
	killPid(s.proc.pid, sig);
	const r = await Promise.race([s.exited, sleep(10000).then(() => null)]);
	assert.ok(r, `mcpsonde exits on ${sig}`);
};

test('attach stopped by SIGINT: its programs are gone', { timeout: TIMEOUT }, () =>
	checkStop((pid) => startSonde(pid, [], CLEAN), (s) => stopSonde(s)));

test('attach stopped by SIGTERM: its programs are gone', { timeout: TIMEOUT }, () =>
	checkStop((pid) => startSonde(pid, [], CLEAN), bySignal('SIGTERM')));

test('attach killed by SIGKILL: its programs are gone', { timeout: TIMEOUT }, () =>
	checkStop((pid) => startSonde(pid, [], CLEAN), bySignal('SIGKILL')));

// attach ends by itself when the last process it watches is gone.
const targetExits = async (s) => {
	const target = Number(s.argv[s.argv.indexOf('-p') + 1]);
	killPid(target);
	const r = await Promise.race([s.exited, sleep(10000).then(() => null)]);
	assert.deepEqual(r, { code: 0, signal: null }, `mcpsonde ends with the process it watched; stderr:\n${s.stderrLines.join('\n')}`);
};

test('attach ending with the process it watched: its programs are gone', { timeout: TIMEOUT }, () =>
	checkStop((pid) => startSonde(pid, [], CLEAN), targetExits));

test('watch --all stopped by SIGINT: its programs are gone', { timeout: TIMEOUT }, () =>
	checkStop(() => startWatch([], CLEAN), (s) => stopSonde(s)));

test('attach with --metrics stopped by SIGINT: its programs are gone', { timeout: TIMEOUT }, () =>
	checkStop((pid) => startSonde(pid, ['--metrics', '127.0.0.1:0'], CLEAN), (s) => stopSonde(s)));

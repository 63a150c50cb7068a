// Files mcpsonde writes and reads are where an attacker can reach it without any MCP traffic:
// a symlink planted where `record -o` will write, a world-readable file it writes into, a
// record that fails half-way and leaves a file behind, a crafted capture or report handed to
// `replay` or `postmortem`. Each case runs the real binary, as root or as nobody.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import { REPO, runSonde, spawnSonde, stopSonde, killSonde, killPid, readCapture, deadline } from './lib.mjs';

const TIMEOUT = 60000;
const NOBODY = 65534;

function assertOneLineError(r, ...mentions) {
	assert.equal(r.signal, null, `killed by ${r.signal}; stderr: ${r.stderr}`);
	assert.notEqual(r.code, 0, 'non-zero exit');
	assert.equal(r.stdout, '', 'nothing on stdout');
	const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
	assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${r.stderr}`);
	for (const m of mentions) assert.ok(lines[0].includes(m), `the line names ${m}: ${lines[0]}`);
}

// A process to record: it does nothing and lives until killed.
function idleProcess() {
	const p = spawn('sleep', ['600'], { stdio: 'ignore' });
	return p;
}

function withDir(fn) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-files-'));
	return Promise.resolve(fn(dir)).finally(() => fs.rmSync(dir, { recursive: true, force: true }));
}

test('record as non-root fails before creating its file', { timeout: TIMEOUT }, async () => {
	const idle = idleProcess();
	try {
		await withDir(async (dir) => {
			fs.chmodSync(dir, 0o777); // nobody could create the file: only the order prevents it
			const cap = path.join(dir, 'cap.msd');
			const r = await runSonde(['record', '-p', String(idle.pid), '-o', cap], { uid: NOBODY, gid: NOBODY });
			assertOneLineError(r);
			assert.equal(fs.existsSync(cap), false, `${cap} left behind: ${r.stderr}`);
		});
	} finally {
		killPid(idle.pid);
	}
});

test('record refuses a symlink planted at its output path; the target is untouched', { timeout: TIMEOUT }, async () => {
	const idle = idleProcess();
	try {
		await withDir(async (dir) => {
			const victim = path.join(dir, 'root-owned');
			fs.writeFileSync(victim, 'precious\n', { mode: 0o600 });
			const cap = path.join(dir, 'cap.msd');
			fs.symlinkSync(victim, cap);
			fs.lchownSync(cap, NOBODY, NOBODY); // planted by another user
			const r = await runSonde(['record', '-p', String(idle.pid), '-o', cap]);
			assertOneLineError(r, cap, 'symbolic link');
			assert.equal(fs.readFileSync(victim, 'utf8'), 'precious\n');
			assert.ok(fs.lstatSync(cap).isSymbolicLink());
		});
	} finally {
		killPid(idle.pid);
	}
});

test('record over an existing 0644 file of ours leaves a 0600 capture', { timeout: TIMEOUT }, async () => {
	const idle = idleProcess();
	let s;
	try {
		await withDir(async (dir) => {
			const cap = path.join(dir, 'cap.msd');
			fs.writeFileSync(cap, 'an old, world-readable file\n', { mode: 0o644 });
			fs.chmodSync(cap, 0o644);
			s = await spawnSonde(['record', '-p', String(idle.pid), '-o', cap], { ready: /^mcpsonde: (attached|recording)/ });
			assert.equal(fs.statSync(cap).mode & 0o777, 0o600, 'mode while recording');
			killPid(idle.pid);
			await Promise.race([s.exited, deadline(10000)]); // record ends with its last process
			await stopSonde(s);
			assert.equal(fs.statSync(cap).mode & 0o777, 0o600, 'mode after recording');
			const c = await readCapture(cap);
			assert.ok(c.records.some((r) => r.kind === 4 && r.tgid === idle.pid), 'the exit was recorded');
		});
	} finally {
		killSonde(s);
		killPid(idle.pid);
	}
});

// MSD_ABI_VERSION, as this build has it.
const ABI = Number(/#define MSD_ABI_VERSION (\d+)/.exec(fs.readFileSync(path.join(REPO, 'include/mcpsonde/events.h'), 'utf8'))[1]);

// struct msd_proc_rec: header, start_ticks, ppid, cmdline_len, comm[16], exe[256], then the
// command line.
function procRecord({ cmdline, cmdlineLen }) {
	const fixed = 24 + 8 + 4 + 4 + 16 + 256;
	const b = Buffer.alloc(fixed + cmdline.length);
	b.writeUInt16LE(64, 0); // MSD_REC_PROC
	b.writeUInt16LE(ABI, 2);
	b.writeUInt32LE(b.length, 4);
	b.writeBigUInt64LE(1000n, 8);
	b.writeUInt32LE(4242, 16);
	b.writeUInt32LE(4242, 20);
	b.writeUInt32LE(cmdlineLen, 24 + 8 + 4);
	b.write('node', 24 + 8 + 8, 'latin1');
	cmdline.copy(b, fixed);
	return b;
}

function captureFile(records) {
	const h = Buffer.alloc(32);
	h.write('MSDCAP\r\n', 0, 'latin1');
	h.writeUInt32LE(1, 8); // CAPTURE_VERSION
	h.writeUInt32LE(ABI, 12);
	return Buffer.concat([h, zlib.gzipSync(Buffer.concat(records))]);
}

test('replay of a capture whose process record lies about its length: one line, no crash', { timeout: TIMEOUT }, async () => {
	await withDir(async (dir) => {
		const cap = path.join(dir, 'crafted.msd');
		fs.writeFileSync(cap, captureFile([procRecord({ cmdline: Buffer.from('node\0x.js\0'), cmdlineLen: 1 << 30 })]));
		for (const args of [[], ['--json']]) {
			const r = await runSonde(['replay', cap, ...args]);
			assertOneLineError(r, cap, 'offset 0', 'cmdline_len 1073741824');
		}
	});
});

test('postmortem of a report that inflates past --max-report-size: one line, refused', { timeout: TIMEOUT }, async () => {
	await withDir(async (dir) => {
		const bomb = path.join(dir, 'mcpsonde-bomb.json.gz');
		const text = Buffer.alloc(64 << 20, 0x20);
		text.write('{"mcpsonde_report":1,"pad":0', 0, 'latin1');
		text.write('}', text.length - 1, 'latin1');
		fs.writeFileSync(bomb, zlib.gzipSync(text, { level: 9 }));
		assert.ok(fs.statSync(bomb).size < 256 << 10, 'a small file');
		const r = await runSonde(['postmortem', bomb]);
		assertOneLineError(r, bomb, 'inflates past 4194304 bytes');
		// A larger limit is the user's call: the same file is then read (and has nothing to show).
		const ok = await runSonde(['postmortem', bomb, '--json', '--max-report-size', String(128 << 20)]);
		assert.equal(ok.code, 0, ok.stderr);
	});
});

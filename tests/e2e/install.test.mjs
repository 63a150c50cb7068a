// make install: the binary, the systemd unit, the Prometheus rules and the dashboard, with
// PREFIX and DESTDIR honoured, and a unit that systemd accepts and that runs the installed
// binary.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { REPO } from './lib.mjs';

const make = (args) => execFileSync('make', ['--no-print-directory', '-s', '-C', REPO, 'install', ...args], { encoding: 'utf8' });
const mode = (f) => (fs.statSync(f).mode & 0o777).toString(8);

test('make install DESTDIR=... (PREFIX /usr/local): where sudo finds mcpsonde', { timeout: 60000 }, () => {
	const dest = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-install-'));
	try {
		make([`DESTDIR=${dest}`]);
		const bin = path.join(dest, 'usr/local/bin/mcpsonde');
		const unit = path.join(dest, 'usr/local/lib/systemd/system/mcpsonde.service');
		assert.equal(mode(bin), '755');
		assert.equal(mode(unit), '644');
		assert.equal(mode(path.join(dest, 'usr/local/share/mcpsonde/prometheus/mcpsonde-rules.yml')), '644');
		assert.equal(mode(path.join(dest, 'usr/local/share/mcpsonde/grafana/mcpsonde.json')), '644');
		// The unit names the binary where it will be, not where DESTDIR staged it.
		const execStart = fs.readFileSync(unit, 'utf8').split('\n').filter((l) => l.startsWith('ExecStart='));
		assert.equal(execStart.length, 1);
		assert.match(execStart[0], /^ExecStart=\/usr\/local\/bin\/mcpsonde /);
		const version = execFileSync(bin, ['--version'], { encoding: 'utf8' });
		assert.equal(version, execFileSync(path.join(REPO, 'build/mcpsonde'), ['--version'], { encoding: 'utf8' }));
		// Nothing but those four files.
		const files = execFileSync('find', [dest, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n').sort();
		assert.equal(files.length, 4, files.join('\n'));
	} finally {
		fs.rmSync(dest, { recursive: true, force: true });
	}
});

test('make install PREFIX=...: systemd-analyze accepts the unit and its binary', { timeout: 60000 }, () => {
	const prefix = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-prefix-'));
	try {
		make([`PREFIX=${prefix}`]);
		const unit = path.join(prefix, 'lib/systemd/system/mcpsonde.service');
		assert.match(fs.readFileSync(unit, 'utf8'), new RegExp(`^ExecStart=${prefix}/bin/mcpsonde watch `, 'm'));
		// Exit status 0 and not a word: an unknown key or a missing binary is a message.
		const r = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
		assert.deepEqual({ status: r.status, stdout: r.stdout, stderr: r.stderr }, { status: 0, stdout: '', stderr: '' });
	} finally {
		fs.rmSync(prefix, { recursive: true, force: true });
	}
});

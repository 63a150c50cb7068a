// Error paths of the CLI: one clear line on stderr, nothing on stdout, a non-zero exit.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { runSonde, REPO } from './lib.mjs';

function assertOneLineError(r, mention) {
	assert.equal(r.signal, null, `killed by ${r.signal}; stderr: ${r.stderr}`);
	assert.notEqual(r.code, 0, 'non-zero exit');
	assert.equal(r.stdout, '', 'nothing on stdout');
	const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
	assert.equal(lines.length, 1, `exactly one line on stderr, got:\n${r.stderr}`);
	if (mention) assert.ok(lines[0].includes(mention), `the line names ${mention}: ${lines[0]}`);
}

function freePid() {
	for (let pid = 999999; ; pid++) if (!fs.existsSync(`/proc/${pid}`)) return pid;
}

test('attach -p to a pid that does not exist: one line, non-zero exit', { timeout: 30000 }, async () => {
	const pid = freePid();
	assertOneLineError(await runSonde(['attach', '-p', String(pid), '--json']), String(pid));
});

test('replay of a missing file: one line, non-zero exit', { timeout: 30000 }, async () => {
	assertOneLineError(await runSonde(['replay', '/nonexistent/cap.msd', '--json']), '/nonexistent/cap.msd');
});

test('replay of a file that is not a capture: one line, non-zero exit', { timeout: 30000 }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-cli-'));
	try {
		const empty = path.join(dir, 'empty.msd');
		fs.writeFileSync(empty, '');
		const garbage = path.join(dir, 'garbage.msd');
		fs.writeFileSync(garbage, Buffer.alloc(4096, 0x5a));
		for (const f of [path.join(REPO, 'tests', 'package.json'), empty, garbage]) {
			assertOneLineError(await runSonde(['replay', f, '--json']), f);
		}
	} finally {
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

test('watch and servers: a bad selector, option or state directory is one line (plus argp\'s hint), non-zero exit', { timeout: 30000 }, async () => {
	const cases = [
		[['watch'], 'needs --all'],
		[['watch', '--all', '--include', 'foo'], 'expected comm=, exe=, cmdline=, namespace=, pod= or container=GLOB'],
		[['watch', '--all', '--exclude', 'comm='], 'the pattern is empty'],
		[['watch', '--all', '-p', '1'], '-p is for attach'],
		[['attach', '-p', '1', '--include', 'comm=x'], 'are for watch'],
		[['watch', '--all', '--series-ttl', 'soon'], '--series-ttl'],
		[['watch', '--all', '--max-inventory', '0'], '--max-inventory'],
		[['watch', '--all', '--metrics', ':0', '--metrics-labels', 'k8s_pod'], 'unknown label "k8s_pod"'],
		[['attach', '-p', '1', '--metrics', ':0', '--metrics-labels', 'k8s_pod_name,k8s_pod_name'], 'k8s_pod_name is given twice'],
		[['watch', '--all', '--metrics', ':0', '--metrics-labels', 'k8s_pod_name,,container_id'], 'an empty name'],
		[['watch', '--all', '--metrics', ':0', '--metrics-labels', 'none,k8s_pod_name'], 'none stands alone'],
		[['watch', '--all', '--metrics-labels', 'k8s_node_name'], 'give --metrics too'],
	];
	for (const [args, mention] of cases) {
		const r = await runSonde(args);
		assert.equal(r.stdout, '', `${args.join(' ')}: nothing on stdout`);
		assert.equal(r.code, 64, `${args.join(' ')}: usage error`);
		const lines = r.stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('Try `mcpsonde --help'));
		assert.equal(lines.length, 1, r.stderr);
		assert.ok(lines[0].includes(mention), `${args.join(' ')}: ${lines[0]}`);
	}
	assertOneLineError(await runSonde(['servers', '--state-dir', '/nonexistent/state']), '/nonexistent/state');
});

// A server whose stderr goes to a regular file (`2>>server.log`, as systemd units and launch
// scripts start servers; issue 8 item 2): fd 2 of a tracked server is its log whatever kind
// of file it is, so its stderr lines are reported and its crash report holds the traceback.
// The server is the real server-everything; the lines are Node's own console.error and the
// traceback of an uncaught exception (a 2-line preload, as in crash.test.mjs).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { EVERYTHING, launchFifo, startSonde, stopSonde, killSonde, waitForEvents, runSonde } from './lib.mjs';

const TIMEOUT = 120000;

test('stderr appended to a regular file: its lines and the crash traceback are reported', { timeout: TIMEOUT }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-stderr-file-'));
	const log = path.join(dir, 'server.log');
	const preload = path.join(dir, 'faults.cjs');
	fs.writeFileSync(preload, [
		"process.on('SIGUSR1', () => console.error('cache warmed: 42 entries'));",
		"process.on('SIGUSR2', () => setImmediate(() => { throw new Error('injected fault: disk full'); }));",
	].join('\n') + '\n');
	const srv = await launchFifo({ args: ['--require', preload, EVERYTHING, 'stdio'], stderrFile: log });
	let sonde;
	try {
		await srv.connect();
		// The premise: the server's fd 2 is the regular file.
		assert.equal(fs.realpathSync(`/proc/${srv.pid}/fd/2`), fs.realpathSync(log));
		assert.ok(fs.statSync(`/proc/${srv.pid}/fd/2`).isFile());
		// --redact off: the lines are compared with the file, and the scrubber masks about one
		// in ten of mkdtemp's random directory names as a random-looking token.
		sonde = await startSonde(srv.pid, ['--report-dir', dir, '--redact', 'off']);
		await srv.client.callTool({ name: 'echo', arguments: { message: 'before the log line' } });
		process.kill(srv.pid, 'SIGUSR1');
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'stderr'), 10000);
		process.kill(srv.pid, 'SIGUSR2');
		const { code } = await srv.exited;
		assert.equal(code, 1, 'Node exits 1 on an uncaught exception');
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'report'), 15000);
		const events = await stopSonde(sonde);

		const written = fs.readFileSync(log, 'utf8');
		assert.match(written, /cache warmed: 42 entries\n/);
		assert.match(written, /Error: injected fault: disk full\n\s+at /);
		const lines = events.filter((e) => e.type === 'stderr' && e.pid === srv.pid).map((e) => e.line);
		assert.ok(lines.includes('cache warmed: 42 entries'), JSON.stringify(lines));
		assert.ok(lines.includes('Error: injected fault: disk full'), JSON.stringify(lines));
		assert.ok(lines.some((l) => /^\s+at /.test(l)), `the stack frames: ${JSON.stringify(lines)}`);
		// Every stderr line mcpsonde reports is one the server wrote to the file after attach.
		for (const l of lines) assert.ok(written.includes(`${l}\n`), `${JSON.stringify(l)} is not in the log`);
		assert.deepEqual(events.filter((e) => e.type === 'invalid' || e.type === 'loss'), []);

		const exit = events.find((e) => e.type === 'exit' && e.pid === srv.pid);
		assert.equal(exit.exit_code, 1);
		const rep = events.find((e) => e.type === 'report');
		const r = await runSonde(['postmortem', rep.path, '--json']);
		assert.equal(r.code, 0, r.stderr);
		assert.match(JSON.parse(r.stdout).stderr.tail, /Error: injected fault: disk full\n\s+at /, 'the traceback in the report');
	} finally {
		killSonde(sonde);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

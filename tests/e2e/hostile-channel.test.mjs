// The channel, not the fd number (issue 13 items 3, 4 and 17): replies sent with pwritev2,
// through a duplicate of stdout, or with sendmsg on a socket stdout are all reported; a
// regular file read after close_range reused a pipe's fd number is never taken for MCP;
// stderr lines are stderr; bytes moved by sendfile and io_uring use are not copied but are
// never silent: each is a loss event of that server, and the stream goes on after them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	startSonde, stopSonde, killSonde, waitForEvents, assertCallsMatch, assertDurationsWithinRtt, assertEventShape, calls,
	count, randomTag,
} from './lib.mjs';
import { Hostile } from './hostile.mjs';

const TIMEOUT = 120000;

test('pwritev2, dup, sendmsg, close_range, stderr, sendfile, io_uring: every call reported, every uncopied byte explained', { timeout: TIMEOUT }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-hostile-'));
	const fileMarker = `filemarker${randomTag()}${randomTag()}`;
	const sentMarker = `sentmarker${randomTag()}${randomTag()}`;
	const plain = path.join(dir, 'plain.txt');
	fs.writeFileSync(plain, `${fileMarker}\n`.repeat(100));
	const sent = path.join(dir, 'sent.jsonl');
	const sentLine = `${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/message', params: { level: 'info', data: sentMarker } })}\n`;
	fs.writeFileSync(sent, sentLine);
	const srv = await Hostile.start();
	let sonde;
	try {
		await srv.initialize();
		sonde = await startSonde(srv.pid);
		const t0 = sonde.t_attached;
		for (const tool of ['pwritev2', 'dup', 'sendmsg']) {
			const r = await srv.call(tool, { text: `reply by ${tool}` });
			assert.equal(r.result.content[0].text, `reply by ${tool}`);
		}
		const cr = await srv.call('close_range', { path: plain });
		assert.match(cr.result.content[0].text, /^fd 3, \d+ bytes read$/, 'the file took the pipe\'s fd number');
		await srv.call('stderr', { lines: 3, tag: 'hostile-e2e' });
		await srv.call('sendfile', { path: sent });
		await srv.call('uring');
		for (let i = 0; i < 3; i++) await srv.call('echo', { text: `after ${i}` });
		const requests = srv.since(t0);
		// The premise: the client did receive the line that went through sendfile.
		assert.equal(srv.notificationsReceived.filter((n) => n.params?.data === sentMarker).length, 1);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length
			&& evs.filter((e) => e.type === 'stderr').length >= 3
			&& evs.filter((e) => e.type === 'loss' && e.pid === srv.pid).length >= 2, 15000);
		assert.deepEqual(await srv.close(), { code: 0, signal: null });
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === srv.pid), 10000);
		const events = await stopSonde(sonde);

		const pairs = assertCallsMatch(requests, events);
		assertDurationsWithinRtt(pairs);
		assert.deepEqual(events.filter((e) => e.type === 'invalid'), [], 'nothing taken for a bad frame');
		assert.equal(count(sonde.stdoutText, fileMarker), 0, 'the regular file read after close_range is not captured');
		assert.deepEqual(events.filter((e) => e.type === 'stderr').map((e) => e.line),
			[0, 1, 2].map((i) => `hostile-e2e stderr line ${i}`));

		// sendfile: not copied, so not reported, but a loss of this server's stdout with its exact
		// size; io_uring: its use is reported once. The kernel's counters say the same globally.
		const mine = events.filter((e) => e.type === 'loss' && e.pid === srv.pid);
		assert.deepEqual(mine.map((e) => ({ reason: e.reason, fd: e.fd, bytes: e.bytes, records: e.records })), [
			{ reason: 'uncaptured', fd: 1, bytes: sentLine.length, records: undefined },
			{ reason: 'uncaptured', fd: undefined, bytes: undefined, records: 1 },
		], JSON.stringify(mine));
		assert.equal(count(sonde.stdoutText, sentMarker), 0);
		assert.equal(events.filter((e) => e.type === 'notification' && e.pid === srv.pid).length, 0);
		const global = events.filter((e) => e.type === 'loss' && e.pid !== srv.pid);
		assert.ok(global.every((e) => e.reason === 'uncaptured'), JSON.stringify(global));
		assert.equal(global.reduce((a, e) => a + (e.bytes ?? 0), 0), sentLine.length);
		const ex = events.find((e) => e.type === 'exit' && e.pid === srv.pid);
		assert.equal(ex.normal, true, JSON.stringify(ex));
		assertEventShape(events, [srv.pid]);
	} finally {
		killSonde(sonde);
		srv.kill();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

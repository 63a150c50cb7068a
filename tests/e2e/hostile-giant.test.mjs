// One write() of a giant response line (issue 13 item 1): the kernel copies 2 MiB of a
// syscall, its head and its last 64 KiB, and announces the cut between. The cut response
// is still reported, correlated from its head and tail (its id is at the very end, as the
// TypeScript SDK writes it), the cut is a `truncated` loss of that server's stdout with the
// exact byte count, and every call after it is reported: the frame boundary is kept.
// Run once more on the older kernels' paths (--compat: size-class records, helper reads).

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
	startSonde, stopSonde, killSonde, waitForEvents, assertCallsMatch, assertDurationsWithinRtt, assertEventShape, calls,
} from './lib.mjs';
import { Hostile } from './hostile.mjs';

const TIMEOUT = 180000;
const CAPTURE_MAX = 2 * 1024 * 1024; // MSD_CAPTURE_MAX: bytes of one syscall the kernel copies

for (const [bytes, extra] of [[5_000_000, []], [100_000_000, []], [5_000_000, ['--compat']]]) {
	test(`one write() of a ${bytes / 1e6} MB response${extra.length ? ` (${extra.join(' ')})` : ''}: reported, the cut explained, the next calls intact`, { timeout: TIMEOUT }, async () => {
		const srv = await Hostile.start();
		let sonde;
		try {
			await srv.initialize();
			sonde = await startSonde(srv.pid, extra);
			const t0 = sonde.t_attached;
			await srv.call('echo', { text: 'before' });
			await srv.call('giant', { bytes });
			for (let i = 0; i < 5; i++) await srv.call('echo', { text: `after ${i}` });
			const requests = srv.since(t0);
			assert.equal(requests.find((r) => r.tool === 'giant').response_bytes, bytes, 'the client received the whole line');
			await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length, 15000);
			const exit = await srv.close();
			assert.deepEqual(exit, { code: 0, signal: null });
			await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === srv.pid), 10000);
			const events = await stopSonde(sonde);

			const pairs = assertCallsMatch(requests, events);
			assertDurationsWithinRtt(pairs);
			const [, giant] = pairs.find(([r]) => r.tool === 'giant');
			assert.equal(giant.status, 'ok');
			assert.equal(giant.oversized, true);
			assert.equal(giant.response_bytes, bytes - 1, 'wire bytes of the line, newline excluded, cut included');

			// What was not copied, and only that, is a loss of this server's stdout.
			const losses = events.filter((e) => e.type === 'loss');
			const mine = losses.filter((e) => e.pid === srv.pid);
			assert.deepEqual(mine.map((e) => [e.reason, e.fd, e.bytes]), [['truncated', 1, bytes - CAPTURE_MAX]], JSON.stringify(losses));
			// The kernel's own counter says the same, tied to no process.
			assert.deepEqual(losses.filter((e) => e.pid !== srv.pid).map((e) => [e.reason, e.bytes]), [['truncated', bytes - CAPTURE_MAX]]);
			assert.deepEqual(events.filter((e) => e.type === 'invalid'), [], 'no invalid frame');
			const ex = events.find((e) => e.type === 'exit' && e.pid === srv.pid);
			assert.equal(ex.normal, true, `the stdio shutdown is normal: ${JSON.stringify(ex)}`);
			assertEventShape(events, [srv.pid]);
		} finally {
			killSonde(sonde);
			srv.kill();
		}
	});
}

// A global memory bound (issue 13 item 6): the line cap is per stream, so 16 children each
// holding a 15 MiB unfinished stderr line once took mcpsonde past 400 MB. With a budget of
// 32 MiB for every stream's unfinished messages together, mcpsonde gives up the largest held
// lines (a `memory_budget` loss of those children's stderr, never of the server's own
// stdout), its peak RSS stays under the budget plus its fixed costs, and the server's calls
// around the flood are all reported.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { startSonde, stopSonde, killSonde, waitForEvents, assertCallsMatch, calls } from './lib.mjs';
import { Hostile } from './hostile.mjs';

const TIMEOUT = 180000;
const MIB = 1 << 20;
const BUDGET_MIB = 32;
const CHILDREN = 16;
const LINE = 15 * MIB;
// Fixed costs besides the budget: the ring buffer (32 MiB, mapped once) and the program itself
// with its libraries, per-process state and allocator slack (~30 MiB measured, 48 allowed).
// Without the budget the children's lines alone take 16 x 16 MiB.
const RING_MIB = 32;
const BOUND_MIB = BUDGET_MIB + RING_MIB + 48;

const peakRssMiB = (pid) => {
	const m = fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmHWM:\s+(\d+) kB/m);
	return Number(m[1]) / 1024;
};

test(`${CHILDREN} children holding ${LINE / MIB} MiB unfinished lines: RSS under the budget, their lines given up and counted, every call reported`, { timeout: TIMEOUT }, async (t) => {
	const srv = await Hostile.start({ stderr: 'ignore' });
	let sonde;
	try {
		await srv.initialize();
		sonde = await startSonde(srv.pid, ['--memory-budget', String(BUDGET_MIB), '--ringbuf-mb', String(RING_MIB)]);
		const t0 = sonde.t_attached;
		await srv.call('echo', { text: 'before' });
		// Paced so that the ring buffer never overflows: the lines are held whole, not lost.
		await srv.call('partial', { children: CHILDREN, bytes: LINE, pace_us: 100 }, { timeoutMs: 120000 });
		for (let i = 0; i < 5; i++) await srv.call('echo', { text: `after ${i}` });
		await waitForEvents(sonde, (evs) => calls(evs).length >= srv.since(t0).length, 60000);
		const rss = peakRssMiB(sonde.proc.pid);
		await srv.call('release');
		const requests = srv.since(t0);
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length, 30000);
		const exit = await srv.close();
		assert.deepEqual(exit, { code: 0, signal: null });
		await waitForEvents(sonde, (evs) => evs.some((e) => e.type === 'exit' && e.pid === srv.pid), 10000);
		const events = await stopSonde(sonde);

		assertCallsMatch(requests, events);
		const budget = events.filter((e) => e.type === 'loss' && e.reason === 'memory_budget');
		const lines = budget.reduce((n, e) => n + e.records, 0);
		t.diagnostic(`peak RSS ${rss.toFixed(0)} MiB (bound ${BOUND_MIB}); memory_budget: ${lines} lines in ${budget.length} events, ${budget.reduce((n, e) => n + (e.bytes ?? 0), 0)} bytes`);
		assert.ok(lines >= 1, 'lines were given up for the budget');
		assert.ok(budget.every((e) => e.fd === 2 && e.pid !== srv.pid), `only the children's stderr paid: ${JSON.stringify(budget)}`);
		assert.ok(rss < BOUND_MIB, `peak RSS ${rss.toFixed(0)} MiB < ${BOUND_MIB} MiB`);
	} finally {
		killSonde(sonde);
		srv.kill();
	}
});

// The ring buffer's pages count once in mcpsonde's RSS (ring.h): libbpf's consumer mapped the
// data twice, and a ring of N MiB showed as 2N. A big ring makes the difference plain: RSS
// stays under the ring plus the program's fixed cost, far from twice the ring.
test('the ring buffer counts once in RSS', { timeout: TIMEOUT }, async (t) => {
	const BIG_MIB = 256;
	const srv = await Hostile.start({ stderr: 'ignore' });
	let sonde;
	try {
		await srv.initialize();
		sonde = await startSonde(srv.pid, ['--ringbuf-mb', String(BIG_MIB)]);
		await srv.call('echo', { text: 'mapped' });
		await waitForEvents(sonde, (evs) => calls(evs).length >= 1, 10000);
		const rss = peakRssMiB(sonde.proc.pid);
		t.diagnostic(`peak RSS ${rss.toFixed(0)} MiB with a ${BIG_MIB} MiB ring`);
		assert.ok(rss < BIG_MIB + 48, `peak RSS ${rss.toFixed(0)} MiB < ${BIG_MIB + 48} MiB (the ring once, and the program)`);
		await stopSonde(sonde);
	} finally {
		killSonde(sonde);
		srv.kill();
	}
});

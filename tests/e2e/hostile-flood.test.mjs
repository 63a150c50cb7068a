// A flood (issue 13 item 7): the tracked server and three children write 4 KiB stderr lines to
// /dev/null as fast as the kernel takes them, far more than mcpsonde can analyse, so the ring buffer refills
// faster than it drains for as long as the flood lasts. mcpsonde must stay responsive all the
// same: /metrics is fresh during the flood (its loss counters move from one scrape to the
// next, so the capture-loss alert can fire while the loss happens), and SIGINT ends mcpsonde
// while the flood still runs. The time from SIGINT to exit goes to the diagnostics (the bench
// measures, tests do not time): what is asserted is that mcpsonde is gone before the flood is.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
	spawnSonde, killSonde, freePort, httpGet, parseMetrics, metricSum, sleep, deadline,
} from './lib.mjs';
import { Hostile } from './hostile.mjs';

const TIMEOUT = 240000;
const FLOOD_S = 150; // longer than anything below may take: the flood outlives mcpsonde

test('a flood: /metrics fresh with loss counters moving during it, SIGINT honoured while it runs', { timeout: TIMEOUT }, async (t) => {
	const srv = await Hostile.start({ stderr: 'ignore' });
	let sonde;
	try {
		await srv.initialize();
		const port = await freePort();
		// Every flood line is an event: hundreds of MB of them, to /dev/null. What mcpsonde
		// saw and lost is read from /metrics and from its detach line.
		sonde = await spawnSonde(['attach', '-p', String(srv.pid), '--json', '--metrics', `127.0.0.1:${port}`], { stdoutFile: '/dev/null' });
		let floodDone = false;
		const flood = srv.call('flood', { seconds: FLOOD_S, bytes: 4096, procs: 4 }, { timeoutMs: (FLOOD_S + 60) * 1000 })
			.finally(() => { floodDone = true; });
		flood.catch(() => {});

		// Scrapes every 250 ms until the loss counter has gone up between two scrapes three
		// times: the snapshot follows the flood, it is not the one from before it.
		const seen = [];
		let rises = 0, samples = [];
		for (const until = Date.now() + 90000; rises < 3 && Date.now() < until && !floodDone;) {
			const r = await httpGet(`http://127.0.0.1:${port}/metrics`);
			assert.equal(r.status, 200);
			samples = parseMetrics(r.text);
			const lost = metricSum(samples, 'mcpsonde_capture_lost_records_total', { reason: 'ringbuf_full' });
			if (seen.length && lost > seen[seen.length - 1]) rises++;
			seen.push(lost);
			await sleep(250);
		}
		t.diagnostic(`ringbuf_full records lost, at each scrape: ${seen.join(' ')}`);
		assert.equal(floodDone, false, 'the flood still runs');
		assert.ok(rises >= 3, `the loss counter moved during the flood: ${seen.join(' ')}`);
		assert.ok(metricSum(samples, 'mcpsonde_stderr_lines_total') > 0, 'flood lines were analysed meanwhile');
		// Records were lost because the ring was full: the peak backlog the drains found says
		// so too (a drain begins where the one before left; by then the ring had refilled).
		const size = metricSum(samples, 'mcpsonde_ringbuf_size_bytes');
		const peak = metricSum(samples, 'mcpsonde_ringbuf_backlog_peak_bytes');
		t.diagnostic(`ring buffer ${size} bytes, fullest ${peak}`);
		assert.ok(size >= 1 << 20 && (size & (size - 1)) === 0, `ring size ${size}`);
		assert.ok(peak >= size / 2 && peak <= size, `peak backlog ${peak} of ${size} during a loss`);

		const t0 = process.hrtime.bigint();
		process.kill(sonde.proc.pid, 'SIGINT');
		const exit = await Promise.race([sonde.exited, deadline(60000).then(() => null)]);
		const ms = Number(process.hrtime.bigint() - t0) / 1e6;
		t.diagnostic(`SIGINT to exit during the flood: ${ms.toFixed(0)} ms`);
		assert.deepEqual(exit, { code: 0, signal: null }, `mcpsonde exits on SIGINT during the flood; stderr:\n${sonde.stderrLines.join('\n')}`);
		assert.equal(floodDone, false, 'mcpsonde was gone before the flood');
		assert.match(sonde.stderrLines.join('\n'), /mcpsonde: detached: .* kernel drops: [1-9]\d* records/);
	} finally {
		killSonde(sonde);
		srv.kill();
	}
});

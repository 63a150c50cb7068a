// A file read by a tracked server is not captured: mcpsonde copies only the server's channel
// (the files that were its stdin, stdout and stderr), never the other files it reads.
//
// How the test tells "file read captured" from "response captured": server-filesystem serves a
// temp dir holding one file whose content includes a unique marker. Two tool calls read that
// file with read(2) on a regular-file fd (strace, attached during the calls, proves it: that is
// the premise, checked, so the test cannot pass vacuously):
//   1. read_media_file returns the file base64-encoded: the marker is read from the file but is
//      in NO JSON-RPC frame. Any occurrence of it in mcpsonde's output or capture would be the
//      file read.
//   2. read_text_file returns the text: the marker is in the response frame k times (k counted
//      in the frame the client received). mcpsonde's output and capture must hold it exactly k
//      times: the response frame, not the file read (which would make it k + 1 or more).
// The file's name does not contain the marker, so requests never carry it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	launchSocketpair, FILESYSTEM, startSonde, spawnSonde, stopSonde, killSonde, killPid, waitForEvents,
	assertCallsMatch, calls, count, readCapture, randomTag, sleep, deadline,
} from './lib.mjs';

const TIMEOUT = 120000;

// strace -f -y on every thread of pid, recording read(2) with its data.
async function startStrace(pid, out) {
	const proc = spawn('strace', ['-f', '-qq', '-y', '-e', 'trace=read', '-s', '65536', '-p', String(pid), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
	let err = '';
	proc.stderr.on('data', (d) => { err += d; });
	const exited = new Promise((r) => proc.once('close', r));
	proc.once('error', (e) => { err += e.message; });
	const until = Date.now() + 10000;
	for (;;) {
		const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
		if (/^TracerPid:\s+[1-9]/m.test(st)) break;
		if (Date.now() > until || proc.exitCode !== null) {
			killPid(proc.pid);
			throw new Error(`strace did not attach to ${pid}: ${err}`);
		}
		await sleep(20);
	}
	await sleep(200); // all threads attached
	return {
		proc,
		async stop() {
			killPid(proc.pid, 'SIGINT');
			await Promise.race([exited, deadline(5000)]);
			killPid(proc.pid);
		},
	};
}

test('a file read by the server is not captured; the response that carries it is', { timeout: TIMEOUT }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-fs-'));
	const served = path.join(dir, 'served');
	fs.mkdirSync(served);
	const marker = `msdmarker${randomTag()}${randomTag()}`;
	const file = path.join(served, 'notes.txt');
	fs.writeFileSync(file, `first line\n${marker}\nlast line\n`);
	const cap = path.join(dir, 'cap.msd');
	const straceOut = path.join(dir, 'strace.out');
	const srv = await launchSocketpair({ args: [FILESYSTEM, served] });
	let live, rec, strace;
	try {
		await srv.connect();
		const tools = (await srv.client.listTools()).tools.map((t) => t.name);
		const readText = tools.includes('read_text_file') ? 'read_text_file' : 'read_file';
		assert.ok(tools.includes(readText) && tools.includes('read_media_file'), `tools: ${tools.join(' ')}`);

		strace = await startStrace(srv.pid, straceOut);
		[live, rec] = await Promise.all([
			startSonde(srv.pid, ['--capture-values']),
			spawnSonde(['record', '-p', String(srv.pid), '-o', cap], { ready: /^mcpsonde: (attached|recording)/ }),
		]);
		const t0 = live.t_attached > rec.t_attached ? live.t_attached : rec.t_attached;

		const media = await srv.client.callTool({ name: 'read_media_file', arguments: { path: file } });
		assert.ok(!media.isError, JSON.stringify(media));
		const text = await srv.client.callTool({ name: readText, arguments: { path: file } });
		assert.ok(!text.isError, JSON.stringify(text));
		const requests = srv.log.since(t0);
		await waitForEvents(live, (evs) => calls(evs).length >= requests.length);
		await sleep(300);
		await strace.stop();
		const [events] = await Promise.all([stopSonde(live), stopSonde(rec)]);

		// The premise: the server read() the marker from the regular file, once per tool call.
		const reads = fs.readFileSync(straceOut, 'utf8').split('\n')
			.filter((l) => l.includes(`read(`) && l.includes(`<${file}>`) && l.includes(marker));
		assert.ok(reads.length >= 2, `strace shows the file read with the marker twice:\n${reads.join('\n')}`);

		// What the JSON-RPC frames carried, as the client received them.
		const [mediaReq, textReq] = requests;
		assert.equal(count(JSON.stringify(mediaReq.response), marker), 0, 'read_media_file response frame has no marker (base64)');
		const k = count(JSON.stringify(textReq.response), marker);
		assert.ok(k >= 1, 'read_text_file response frame carries the marker');
		for (const r of requests) assert.equal(count(JSON.stringify(r.params), marker), 0, 'no request carries the marker');

		// attach --capture-values: the marker only inside the read_text_file call's response.
		assertCallsMatch(requests, events);
		const withMarker = live.lines.filter((l) => l.includes(marker));
		const textEv = calls(events).find((e) => JSON.stringify(e.id) === JSON.stringify(textReq.id));
		assert.deepEqual(withMarker.map((l) => JSON.parse(l)), [textEv], 'only the read_text_file call event carries the marker');
		assert.equal(count(live.stdoutText, marker), k, `the marker appears as often as in the response frame (${k})`);
		const mediaEv = calls(events).find((e) => JSON.stringify(e.id) === JSON.stringify(mediaReq.id));
		assert.equal(mediaEv.status, 'ok');

		// record: the raw bytes hold the marker exactly k times, all in the server's stdout.
		const c = await readCapture(cap);
		const data = c.records.filter((r) => r.kind === 1);
		assert.ok(data.length > 0, 'capture has data records');
		assert.deepEqual([...new Set(data.map((r) => r.role))].filter((r) => !['in', 'out', 'err'].includes(r)), [], 'only the channel is captured');
		assert.deepEqual([...new Set(data.filter((r) => r.role !== 'err').map((r) => r.fd_kind))].filter((kd) => ![1, 2, 3].includes(kd)), [], 'stdin/stdout only from a pipe, socket or tty');
		assert.equal(count(c.body.toString('latin1'), marker), k, 'marker occurrences in the whole capture');
		let inStreams = 0;
		for (const [key, bytes] of c.streamBytes) {
			const n = count(bytes.toString('latin1'), marker);
			if (n) assert.equal(key, `${srv.pid}/out`, `marker only in the server's stdout stream, found in ${key}`);
			inStreams += n;
		}
		assert.equal(inStreams, k, 'marker occurrences in the reassembled streams');
	} finally {
		await strace?.stop();
		killSonde(live);
		killSonde(rec);
		await srv.close();
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

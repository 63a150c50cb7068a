// What a hostile server's bytes become in mcpsonde's output (issue 13 items 10, 11, 15, 16).
//
// tests/e2e/hostile-server.mjs writes raw bytes on stdout: terminal escapes and forged lines in
// serverInfo.name and tool names, invalid UTF-8 in ids, names and methods, an error message
// with a password, a token on stderr, a secret on its own command line, and a flood of binary
// garbage; this test writes a malformed request line holding a password to it. Two mcpsonde
// attach to it, one as JSONL with post-mortem reports, one as text to a file, and then:
//   - the text output is valid UTF-8 and inert: no control character but the newline ending
//     each line, no DEL, no C1 control, no bidirectional override, every line an event line;
//   - every JSON member is there (server, tool, id, method, preview), whatever the bytes;
//   - no secret appears in the events, the text, the report file or its rendering, and the
//     call whose arguments held one says so;
//   - the flood costs a few events, not one per line.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';

import { startSonde, spawnSonde, stopSonde, killSonde, waitForEvents, runSonde, killPid, deadline, sleep } from './lib.mjs';

const HOSTILE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'hostile-server.mjs');
const ESCAPES = '\u001b]0;pwned\u0007\u001b[2J\rforged line\nroot# \u009b1m\u202e' + 'txt.exe\u007f';

// Fails on anything in text that acts on a terminal; returns its lines.
function assertInert(buf, what) {
	let text;
	try {
		text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
	} catch {
		assert.fail(`${what}: not valid UTF-8`);
	}
	const bad = text.match(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028-\u202e\u2066-\u2069]/u);
	assert.equal(bad, null, `${what}: U+${bad?.[0].codePointAt(0).toString(16).padStart(4, '0')} at ${bad?.index}: ` +
		`${JSON.stringify(text.slice(Math.max(0, (bad?.index ?? 0) - 80), (bad?.index ?? 0) + 40))}`);
	return text.split('\n').filter((l) => l !== '');
}

// Sends raw request lines and waits for the answer to each (by the raw id in it).
class RawClient {
	constructor(proc) {
		this.proc = proc;
		this.out = Buffer.alloc(0);
		proc.stdout.on('data', (d) => { this.out = Buffer.concat([this.out, d]); });
		proc.stderr.resume();
	}

	send(bytes) {
		this.proc.stdin.write(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes));
	}

	async request(line, idText, timeoutMs = 20000) {
		const needle = Buffer.from(`"id":${idText},`, 'latin1');
		const from = this.out.length;
		this.send(Buffer.concat([Buffer.isBuffer(line) ? line : Buffer.from(line), Buffer.from('\n')]));
		const until = Date.now() + timeoutMs;
		for (;;) {
			const at = this.out.indexOf(needle, from);
			const end = at >= 0 ? this.out.indexOf(0x0a, at) : -1;
			if (end >= 0) {
				const start = this.out.lastIndexOf(0x0a, at) + 1;
				return this.out.subarray(start, end).toString('utf8');
			}
			if (Date.now() > until) assert.fail(`no answer to id ${idText}`);
			await sleep(20);
		}
	}
}

const call = (id, name, args = {}) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });

test('a hostile server: inert text, complete JSON, no secret anywhere, a bounded flood', { timeout: 180000 }, async () => {
	const key = `sk-proj-${crypto.randomBytes(24).toString('hex')}Zq`;
	const pw = `Hunter2${crypto.randomBytes(6).toString('hex')}`;
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-output-'));
	const textPath = path.join(dir, 'text.out');
	const server = spawn(process.execPath, [HOSTILE, `--api-key=${key}`], { stdio: ['pipe', 'pipe', 'pipe'] });
	const exited = new Promise((r) => server.once('exit', (code, signal) => r({ code, signal })));
	let json, text;
	try {
		const client = new RawClient(server);
		json = await startSonde(server.pid, ['--report-dir', dir]);
		text = await spawnSonde(['attach', '-p', String(server.pid)], { stdoutFile: textPath });

		await client.request(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize',
			params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }), '0');
		client.send('{"jsonrpc":"2.0","method":"notifications/initialized"}\n');
		await client.request('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', '1');
		// A tool name with escapes and invalid UTF-8, a string id with invalid UTF-8.
		await client.request(Buffer.concat([Buffer.from(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"tool ${
			JSON.stringify(ESCAPES).slice(1, -1)} `), Buffer.from([0xff, 0xc3]), Buffer.from('","arguments":{}}}')]), '2');
		await client.request(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":"'), Buffer.from([0xfe]),
			Buffer.from(`-3","method":"tools/call","params":{"name":"login","arguments":{"password":"${pw}"}}}`)]),
		Buffer.concat([Buffer.from('"'), Buffer.from([0xfe]), Buffer.from('-3"')]).toString('latin1'));
		// A malformed request line holding a password: never answered, reported invalid.
		client.send(`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"login","arguments":{"password":"${pw}"}\n`);
		await client.request(call(5, 'fail', { pw }), '5');
		client.send(Buffer.concat([Buffer.from('{"jsonrpc":"2.0","method":"notifications/'), Buffer.from([0xff, 0xfe]),
			Buffer.from('"}\n')]));
		const flooded = JSON.parse(JSON.parse(await client.request(call(6, 'flood'), '6')).result.content[0].text);

		assert.ok(await waitForEvents(json, (evs) => evs.some((e) => e.type === 'call' && e.id === 6), 30000),
			'the call after the flood is reported');
		server.stdin.end(); // the server exits 3: abnormal, a report is written
		await Promise.race([exited, deadline(10000)]);
		assert.ok(await waitForEvents(json, (evs) => evs.some((e) => e.type === 'report'), 15000), 'a report event');
		const events = await stopSonde(json);
		await Promise.race([text.exited, deadline(15000)]);
		if (!text.exit) await stopSonde(text);
		const textOut = fs.readFileSync(textPath);

		// Text: inert, one event per line.
		const lines = assertInert(textOut, 'text output');
		for (const l of lines)
			assert.match(l, /^\d\d:\d\d:\d\d\.\d{6} /, `every text line is an event line: ${JSON.stringify(l)}`);
		assert.ok(lines.some((l) => l.includes('server hostile \\x1b]0;pwned\\x07\\x1b[2J\\rforged line\\nroot# \\u009b1m\\u202etxt.exe\\x7f')),
			'serverInfo.name is shown, escaped');

		// JSONL: valid UTF-8 and inert as well, and every member there.
		assertInert(Buffer.from(json.stdoutText), 'JSONL output');
		const session = events.find((e) => e.type === 'session' && e.server_info);
		assert.equal(session?.server_info.name, `hostile ${ESCAPES}`);
		const byId = (id) => events.find((e) => e.type === 'call' && JSON.stringify(e.id) === JSON.stringify(id));
		assert.ok(byId(2)?.tool?.startsWith('tool ') && byId(2).tool.endsWith(' \ufffd\ufffd'),
			`tool name with invalid UTF-8: ${JSON.stringify(byId(2)?.tool)}`);
		assert.equal(byId(2)?.status, 'ok');
		assert.equal(byId('\ufffd-3')?.tool, 'login', 'string id with invalid UTF-8');
		assert.equal(byId('\ufffd-3')?.secret, true, 'the call whose arguments held a password is flagged');
		assert.equal(byId(2)?.secret, undefined);
		assert.equal(byId(5)?.status, 'error');
		assert.match(byId(5)?.error_message ?? '', /^internal failure \(db password=\[REDACTED\]\) /);
		assert.ok(events.some((e) => e.type === 'notification' && e.method === 'notifications/\ufffd\ufffd'),
			'method with invalid UTF-8');
		const malformed = events.find((e) => e.type === 'invalid' && e.fd === 0);
		assert.ok(malformed?.preview.includes('"password":"[REDACTED]"'), `preview: ${malformed?.preview}`);
		assert.match(session.cmdline, /--api-key=\[REDACTED\]/);
		assert.ok(events.some((e) => e.type === 'stderr' && /token=\[REDACTED\]/.test(e.line)), 'stderr masked');

		// The flood: a handful of events, and they count what they stand for.
		const garbage = events.filter((e) => e.type === 'invalid' && e.fd === 1);
		assert.ok(garbage.length >= 1 && garbage.length <= Math.ceil(flooded.flooded_ms / 1000) + 3,
			`${garbage.length} invalid events for ${flooded.lines} garbage lines over ${flooded.flooded_ms} ms`);
		const frames = garbage.reduce((n, e) => n + e.frames, 0);
		const lost = events.some((e) => e.type === 'loss');
		assert.ok(frames <= flooded.lines && (lost || frames === flooded.lines),
			`${frames} frames told of ${flooded.lines} written (loss events: ${lost})`);
		assert.ok(json.stdoutText.length < 256 * 1024, `JSONL output ${json.stdoutText.length} B`);
		assert.ok(textOut.length < 256 * 1024, `text output ${textOut.length} B`);

		// No secret, anywhere.
		const report = events.find((e) => e.type === 'report');
		const reportJson = zlib.gunzipSync(fs.readFileSync(report.path)).toString('utf8');
		const rendered = await runSonde(['postmortem', report.path]);
		assert.equal(rendered.code, 0, rendered.stderr);
		assertInert(Buffer.from(rendered.stdout), 'postmortem rendering');
		for (const [what, s] of [['JSONL', json.stdoutText], ['text', textOut.toString('latin1')], ['report', reportJson],
			['postmortem', rendered.stdout]]) {
			assert.ok(!s.includes(key), `${what} holds the API key`);
			assert.ok(!s.includes(pw), `${what} holds the password`);
			assert.ok(!s.includes('hunter2-'), `${what} holds the stderr token`);
		}
		assert.match(reportJson, /--api-key=\[REDACTED\]/);
	} finally {
		killSonde(json);
		killSonde(text);
		killPid(server.pid);
		fs.rmSync(dir, { recursive: true, force: true });
	}
});

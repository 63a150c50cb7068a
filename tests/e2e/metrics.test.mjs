// metrics.test.mjs -- `mcpsonde attach --metrics` scraped by a real Prometheus (Debian's
// /usr/bin/prometheus), while the SDK client drives server-everything through a known mix of
// calls: successes, tool errors (unknown tool, invalid arguments), an unknown method, and a
// slow trigger-long-running-operation. PromQL over the HTTP API must count exactly what the
// client did; the live scrape must pass `promtool check metrics`; every rule of
// deploy/prometheus and every query of deploy/grafana must evaluate without error. Also
// `--summary`.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import {
	REPO, launchSocketpair, startSonde, spawnSonde, stopSonde, killSonde, killPid, sleep, requestUnknownMethod,
	randomTag, freePort, httpGet,
} from './lib.mjs';

const TIMEOUT = 150000;
const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const RULES = path.join(REPO, 'deploy/prometheus/mcpsonde-rules.yml');
const DASHBOARD = path.join(REPO, 'deploy/grafana/mcpsonde.json');
const SLOW_SECONDS = 1.5;
// mcp_server_operation_duration_seconds buckets (src/sink_metrics.c)
const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300];

/* ---------------------------------------------------------------- Prometheus */

async function startPrometheus(targetPort) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-prom-'));
	const port = await freePort();
	const config = path.join(dir, 'prometheus.yml');
	fs.copyFileSync(RULES, path.join(dir, 'rules.yml'));
	fs.writeFileSync(config, [
		'global:',
		'  scrape_interval: 1s',
		'  scrape_timeout: 1s',
		'  evaluation_interval: 1s',
		'rule_files: [rules.yml]',
		'scrape_configs:',
		'  - job_name: mcpsonde',
		'    static_configs:',
		`      - targets: ['127.0.0.1:${targetPort}']`,
		'',
	].join('\n'));
	const proc = spawn(PROMETHEUS, [
		`--config.file=${config}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
		`--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
	], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
	let log = '';
	proc.stderr.on('data', (d) => { log += d; });
	const p = { proc, dir, port, url: `http://127.0.0.1:${port}`, log: () => log };
	const deadline = Date.now() + 30000;
	for (;;) {
		try {
			if ((await fetch(`${p.url}/-/ready`)).ok) return p;
		} catch { /* not listening yet */ }
		if (proc.exitCode !== null || Date.now() > deadline) {
			stopPrometheus(p);
			throw new Error(`prometheus did not become ready: ${log}`);
		}
		await sleep(100);
	}
}

function stopPrometheus(p) {
	if (!p) return;
	killPid(p.proc.pid);
	fs.rmSync(p.dir, { recursive: true, force: true });
}

async function promQuery(p, expr) {
	const r = await fetch(`${p.url}/api/v1/query?${new URLSearchParams({ query: expr })}`);
	const body = await r.json();
	if (body.status !== 'success') throw new Error(`PromQL ${expr}: ${body.errorType}: ${body.error}`);
	return body.data;
}

// {labelvalue: number} of a vector grouped by one label.
async function promBy(p, expr, label) {
	const data = await promQuery(p, expr);
	const out = {};
	for (const s of data.result) out[s.metric[label] ?? ''] = Number(s.value[1]);
	return out;
}

async function promScalar(p, expr) {
	const data = await promQuery(p, expr);
	assert.equal(data.result.length, 1, `${expr}: one series expected, got ${JSON.stringify(data.result)}`);
	return Number(data.result[0].value[1]);
}

async function waitFor(fn, timeoutMs, what) {
	const deadline = Date.now() + timeoutMs;
	let last;
	for (;;) {
		try {
			last = await fn();
			if (last === true) return;
		} catch (e) {
			last = e.message;
		}
		if (Date.now() > deadline) assert.fail(`${what}: timed out (last: ${JSON.stringify(last)})`);
		await sleep(250);
	}
}

/* ---------------------------------------------------------------- Grafana queries */

// Every PromQL expression of the dashboard (panel targets and template variables), with
// Grafana's variables replaced by values Prometheus accepts.
function dashboardQueries(dash) {
	const exprs = [];
	const walk = (panels) => {
		for (const panel of panels ?? []) {
			for (const t of panel.targets ?? []) if (t.expr) exprs.push({ where: `panel "${panel.title}"`, expr: t.expr });
			walk(panel.panels);
		}
	};
	walk(dash.panels);
	for (const v of dash.templating?.list ?? []) {
		if (v.type !== 'query') continue;
		const q = typeof v.query === 'string' ? v.query : v.query?.query;
		// label_values(metric, label) is Grafana's: the PromQL behind it is the metric selector.
		const m = /^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q);
		exprs.push({ where: `variable ${v.name}`, expr: m ? m[1] : q });
	}
	return exprs.map(({ where, expr }) => ({
		where,
		original: expr,
		expr: expr
			.replaceAll('$__rate_interval', '1m').replaceAll('$__interval', '15s').replaceAll('$__range', '5m')
			.replace(/\$\{?server\}?/g, '.*').replace(/\$\{?tool\}?/g, '.*'),
	}));
}

/* ---------------------------------------------------------------- tests */

test('Prometheus scrapes mcpsonde: counts per tool and error type, latency, rules, dashboard', { timeout: TIMEOUT }, async () => {
	assert.ok(fs.existsSync(PROMETHEUS), `${PROMETHEUS} missing (apt-get install prometheus)`);
	const metricsPort = await freePort();
	const srv = await launchSocketpair();
	let sonde, prom;
	try {
		sonde = await startSonde(srv.pid, ['--metrics', `127.0.0.1:${metricsPort}`]);
		prom = await startPrometheus(metricsPort);
		await srv.connect();
		const serverName = srv.client.getServerVersion().name;
		const tag = randomTag();

		// The known mix.
		const { tools } = await srv.client.listTools();
		for (let i = 0; i < 5; i++) await srv.client.callTool({ name: 'echo', arguments: { message: `m${i}` } });
		for (let i = 0; i < 3; i++) await srv.client.callTool({ name: 'get-sum', arguments: { a: i, b: 1 } });
		const bad = await srv.client.callTool({ name: 'get-sum', arguments: { a: 'not-a-number', b: 1 } });
		assert.equal(bad.isError, true);
		for (let i = 0; i < 2; i++) {
			const r = await srv.client.callTool({ name: `no-such-tool-${tag}`, arguments: {} });
			assert.equal(r.isError, true);
		}
		for (let i = 0; i < 2; i++) assert.equal((await requestUnknownMethod(srv.client)).code, -32601);
		const t0 = Date.now();
		await srv.client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: SLOW_SECONDS, steps: 3 } }, undefined, { onprogress: () => {} });
		const slowMs = Date.now() - t0;

		const op = 'mcp_server_operation_duration_seconds';
		const wantTools = { echo: 5, 'get-sum': 4, [`no-such-tool-${tag}`]: 2, 'trigger-long-running-operation': 1 };
		await waitFor(async () => {
			const got = await promBy(prom, `sum by (gen_ai_tool_name) (${op}_count{mcp_method_name="tools/call"})`, 'gen_ai_tool_name');
			const ok = Object.keys(got).length === Object.keys(wantTools).length
				&& Object.entries(wantTools).every(([k, v]) => got[k] === v);
			return ok ? true : got;
		}, 30000, 'tools/call counts per tool in Prometheus');

		// Per tool and error type, exactly what the client produced.
		const errs = await promQuery(prom, `sum by (gen_ai_tool_name, error_type) (${op}_count{mcp_method_name="tools/call",error_type!=""})`);
		const errMap = Object.fromEntries(errs.result.map((s) => [`${s.metric.gen_ai_tool_name} ${s.metric.error_type}`, Number(s.value[1])]));
		assert.deepEqual(errMap, { 'get-sum tool_error': 1, [`no-such-tool-${tag} tool_error`]: 2 });
		assert.deepEqual(await promBy(prom, `sum by (error_type) (${op}_count{mcp_method_name="no/such_method"})`, 'error_type'), { '-32601': 2 });
		// initialize is its own series, with no tool.
		const init = await promQuery(prom, `${op}_count{mcp_method_name="initialize"}`);
		assert.equal(init.result.length, 1);
		assert.equal(Number(init.result[0].value[1]), 1);
		assert.equal(init.result[0].metric.gen_ai_tool_name, undefined);
		// Identity labels: serverInfo.name, the negotiated revision, the transport.
		const echo = (await promQuery(prom, `${op}_count{gen_ai_tool_name="echo"}`)).result[0].metric;
		assert.equal(echo.server, serverName);
		assert.match(echo.mcp_protocol_version, /^\d{4}-\d{2}-\d{2}$/);
		assert.ok(['unix', 'pipe'].includes(echo.network_transport), `network_transport ${echo.network_transport}`);
		assert.equal(echo.error_type, undefined, 'no error_type on success');

		// The slow tool: histogram_quantile within one bucket of its known duration.
		const q = await promScalar(prom, `histogram_quantile(0.5, sum by (le) (${op}_bucket{gen_ai_tool_name="trigger-long-running-operation"}))`);
		const secs = slowMs / 1000;
		const i = BUCKETS.findIndex((b) => b >= secs);
		const lo = BUCKETS[Math.max(0, i - 2)], hi = BUCKETS[Math.min(BUCKETS.length - 1, i + 1)];
		assert.ok(q >= lo && q <= hi, `p50 of the slow tool ${q} s not within a bucket of ${secs} s [${lo}, ${hi}]`);
		assert.ok(secs >= SLOW_SECONDS);

		// mcpsonde's own families.
		assert.equal(await promScalar(prom, 'sum(mcpsonde_unknown_tool_calls_total)'), 2);
		assert.equal(await promScalar(prom, 'sum(mcpsonde_schema_violations_total{gen_ai_tool_name="get-sum",kind="wrong_type"})'), 1);
		assert.equal(await promScalar(prom, `mcpsonde_tools{server="${serverName}"}`), tools.length);
		const defBytes = await promScalar(prom, `sum(mcpsonde_tool_definition_bytes{server="${serverName}"})`);
		const minified = tools.reduce((n, t) => n + Buffer.byteLength(JSON.stringify(t)), 0);
		assert.ok(Math.abs(defBytes - minified) / minified < 0.05, `definition bytes ${defBytes}, client sees ${minified}`);
		assert.ok(await promScalar(prom, 'sum(mcpsonde_tool_definition_tokens)') > 0);
		assert.equal(await promScalar(prom, 'sum(mcpsonde_pending_calls)'), 0);
		assert.equal(await promScalar(prom, 'count(mcpsonde_build_info)'), 1);
		assert.ok(await promScalar(prom, 'sum(mcpsonde_notifications_total{mcp_method_name="notifications/progress"})') >= 1);

		// No per-process or per-request label anywhere.
		const labels = (await (await fetch(`${prom.url}/api/v1/labels`)).json()).data;
		for (const bad of ['pid', 'id', 'request_id', 'session_id', 'jsonrpc_request_id', 'mcp_session_id']) assert.ok(!labels.includes(bad), `label ${bad}`);

		// Prometheus parsed every scrape (it asks for OpenMetrics first).
		const targets = (await (await fetch(`${prom.url}/api/v1/targets`)).json()).data.activeTargets;
		assert.equal(targets.length, 1);
		assert.equal(targets[0].health, 'up', `target: ${targets[0].lastError}`);

		// A live scrape: text format 0.0.4 that promtool finds nothing to say about; OpenMetrics on request.
		const text = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
		assert.equal(text.status, 200);
		assert.equal(text.type, 'text/plain; version=0.0.4; charset=utf-8');
		const lint = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text.text, encoding: 'utf8' });
		assert.equal(`${lint.stdout}${lint.stderr}`, '', 'promtool check metrics');
		assert.equal(lint.status, 0);
		const om = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`, { Accept: 'application/openmetrics-text;version=1.0.0' });
		assert.equal(om.type, 'application/openmetrics-text; version=1.0.0; charset=utf-8');
		assert.ok(om.text.endsWith('# EOF\n'));

		// Every rule evaluates without error on real data.
		await sleep(2000);
		const groups = (await (await fetch(`${prom.url}/api/v1/rules`)).json()).data.groups;
		const ruleProblems = groups.flatMap((g) => g.rules).filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError}`);
		assert.deepEqual(ruleProblems, []);
		assert.ok(groups.flatMap((g) => g.rules).length >= 10);

		// Every query of the dashboard runs; the per-tool ones have data.
		const dash = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
		const queries = dashboardQueries(dash);
		assert.ok(queries.length >= 10, `${queries.length} queries in the dashboard`);
		const queryProblems = [];
		let withData = 0;
		for (const { where, expr } of queries) {
			try {
				const data = await promQuery(prom, expr);
				if (data.result.length) withData++;
			} catch (e) {
				queryProblems.push(`${where}: ${e.message}`);
			}
		}
		assert.deepEqual(queryProblems, [], 'dashboard queries');
		assert.ok(withData >= queries.length / 2, `only ${withData} of ${queries.length} dashboard queries returned data`);

		await stopSonde(sonde);
	} finally {
		killSonde(sonde);
		stopPrometheus(prom);
		await srv.close();
	}
});

test('--summary prints a per-tool table on exit', { timeout: TIMEOUT }, async () => {
	const srv = await launchSocketpair();
	let sonde;
	try {
		sonde = await spawnSonde(['attach', '-p', String(srv.pid), '--summary']);
		await srv.connect();
		for (let i = 0; i < 4; i++) await srv.client.callTool({ name: 'echo', arguments: { message: `s${i}` } });
		await srv.client.callTool({ name: 'no-such-tool', arguments: {} });
		assert.equal((await requestUnknownMethod(srv.client)).code, -32601);
		await sleep(1000);
		killPid(sonde.proc.pid, 'SIGINT');
		const exit = await Promise.race([sonde.exited, sleep(10000).then(() => null)]);
		assert.deepEqual(exit, { code: 0, signal: null }, sonde.stderrLines.join('\n'));
		const all = `${sonde.stdoutText}\n${sonde.stderrLines.join('\n')}`;
		assert.match(all, /SERVER\s+OPERATION\s+CALLS\s+ERRORS\s+P50\s+P95\s+P99/);
		assert.match(all, /tools\/call echo\s+4\s+-\s+\S+/);
		assert.match(all, /tools\/call no-such-tool\s+1\s+tool_error:1/);
		assert.match(all, /no\/such_method\s+1\s+-32601\/method_not_found:1/);
	} finally {
		killSonde(sonde);
		await srv.close();
	}
});

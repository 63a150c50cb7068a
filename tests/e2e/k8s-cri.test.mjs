// A real Kubernetes pod through the CRI (the kubelet's API to containerd), observed by
// mcpsonde from the host and from a pod made from deploy/kubernetes/mcpsonde.yaml.
//
// containerd and runc (Debian's) run with their own state under a temporary directory
// (tests/e2e/cri/harness.mjs). The agent pod `agent-<random>` in namespace `team-<random>`
// has one container, `agent`, running the official SDK client as a non-root user; it launches
// server-everything over stdio (tests/e2e/cri/agent.mjs). The tests compare what mcpsonde
// reports with the client's own log, and what attribution says with what the CRI was told.
//
// The mcpsonde pod is the DaemonSet's pod spec turned into the sandbox and container configs
// the kubelet would send (hostPID, securityContext, capabilities, mounts, env, resources, and
// its `watch --all` arguments). It must find the agent's server by itself and label its
// events, inventory and metrics with the pod the CRI made; when that pod is removed, its
// series go. A manifest that lacks a needed privilege fails here. kubectl cannot validate the
// manifest without an API server; nothing here pretends it does.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import YAML from 'yaml';

import {
	REPO, TESTS, sleep, descendants, startSonde, stopSonde, killSonde, waitForEvents, calls,
	assertCallsMatch, assertEventShape, randomTag,
} from './lib.mjs';
import {
	missingTools, startNode, runPod, removePod, containerPid, readContainerLog, importImage, PAUSE_IMAGE,
} from './cri/harness.mjs';

const TIMEOUT = 180000;
const MANIFEST = path.join(REPO, 'deploy/kubernetes/mcpsonde.yaml');
const IMAGE_TAR = path.join(REPO, 'build/image/mcpsonde-image.tar');
const PROBE = path.join(REPO, 'build/tools/attrib_probe');
const AGENT_UID = 1000; // most pods do not run as root: mcpsonde must cope

let node;
let agent; // { pod, shared, serverPid, containerId, round }

before(async () => {
	assert.deepEqual(missingTools(), [], 'tools the CRI harness needs (scripts/setup.sh installs them)');
	assert.ok(fs.existsSync(IMAGE_TAR), `${IMAGE_TAR}: run make image (make test does)`);
	node = await startNode();
	await importImage(node, IMAGE_TAR, 'localhost/mcpsonde:latest');
	const tag = randomTag();
	const shared = fs.mkdtempSync(path.join(node.dir, 'shared-'));
	fs.chmodSync(shared, 0o777);
	const pod = await runPod(node, {
		name: `agent-${tag}`,
		namespace: `team-${tag}`,
		containers: [agentContainer('agent', shared)],
	});
	const containerId = pod.containers[0].id;
	const { agentPid, serverPid } = await agentReady(pod.containers[0], shared);
	agent = { pod, shared, agentPid, serverPid, containerId, round: 0 };
});

// A container running the agent (tests/e2e/cri/agent.mjs), talking to the test through shared.
function agentContainer(name, shared) {
	return {
		name,
		image: PAUSE_IMAGE,
		command: [process.execPath, path.join(TESTS, 'e2e/cri/agent.mjs'), shared],
		env: { HOME: '/tmp', PATH: '/usr/bin:/bin' },
		workingDir: '/tmp',
		mounts: [
			{ containerPath: '/usr', hostPath: '/usr', readOnly: true },
			{ containerPath: REPO, hostPath: REPO, readOnly: true },
			{ containerPath: shared, hostPath: shared },
		],
		securityContext: { run_as_user: { value: AGENT_UID }, run_as_group: { value: AGENT_UID } },
	};
}

// Waits for an agent container to have its server running; their host pids.
async function agentReady(container, shared) {
	const until = Date.now() + 60000;
	while (!fs.existsSync(path.join(shared, 'ready.json'))) {
		if (Date.now() > until) throw new Error(`the agent never got ready; its log:\n${JSON.stringify(readContainerLog(container.logPath), null, 1)}`);
		await sleep(50);
	}
	// The server's host pid: the agent's child running server-everything.
	const agentPid = containerPid(node, container.id);
	const serverPid = descendants(agentPid).find((p) => {
		try { return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('server-everything'); } catch { return false; }
	});
	assert.ok(serverPid, `server-everything under the agent (pid ${agentPid})`);
	return { agentPid, serverPid };
}

after(async () => {
	if (node) await node.stop();
});

// Runs one round of an agent's workload and returns the client's log of it.
async function agentRound(a = agent) {
	const n = ++a.round;
	fs.writeFileSync(path.join(a.shared, `go.${n}`), '');
	const logFile = path.join(a.shared, `log.${n}.json`);
	const until = Date.now() + 60000;
	while (!fs.existsSync(logFile)) {
		if (Date.now() > until) throw new Error(`agent round ${n} did not finish`);
		await sleep(50);
	}
	return JSON.parse(fs.readFileSync(logFile, 'utf8'));
}

function probe(pid) {
	return JSON.parse(execFileSync(PROBE, [String(pid)], { encoding: 'utf8' }));
}

const describeLine = (pid, pod, containerId) =>
	`mcpsonde: pid ${pid} runs in pod ${pod.spec.namespace}/${pod.spec.name} container agent, containerd container ${containerId.slice(0, 12)}`;

test('a server in a CRI pod: attach -p from the host reports its calls as the client made them', { timeout: TIMEOUT }, async () => {
	const sonde = await startSonde(agent.serverPid);
	try {
		const line = describeLine(agent.serverPid, agent.pod, agent.containerId);
		for (const until = Date.now() + 5000; !sonde.stderrLines.includes(line) && Date.now() < until;) await sleep(20);
		assert.ok(sonde.stderrLines.includes(line), `stderr names the pod:\n${sonde.stderrLines.join('\n')}`);
		const requests = await agentRound();
		await waitForEvents(sonde, (evs) => calls(evs).length >= requests.length, 15000);
		const events = await stopSonde(sonde);
		assertEventShape(events, [agent.serverPid]);
		assertCallsMatch(requests, events);
		assert.equal(requests.length, 7);
		const sessions = events.filter((e) => e.type === 'session');
		assert.ok(sessions.length >= 1, 'a session event');
		for (const s of sessions) {
			assert.equal(s.found, 'attached');
			assert.equal(s.resource?.['k8s.pod.name'], agent.pod.spec.name, 'the session event names the pod');
			assert.equal(s.resource?.['k8s.namespace.name'], agent.pod.spec.namespace);
			assert.equal(s.resource?.['k8s.container.name'], 'agent');
		}
	} finally {
		killSonde(sonde);
	}
});

test('attribution of the pod\'s processes: namespace, pod, uid, container, id, runtime, node', { timeout: TIMEOUT }, () => {
	const { pod, containerId } = agent;
	const expected = {
		'k8s.namespace.name': pod.spec.namespace,
		'k8s.pod.name': pod.spec.name,
		'k8s.pod.uid': pod.uid,
		'k8s.container.name': 'agent',
		'k8s.node.name': os.hostname(),
		'container.id': containerId,
		'container.runtime': 'containerd',
		role: 'workload',
		state: 'resolved',
		qos: 'besteffort',
	};
	for (const pid of [agent.serverPid, agent.agentPid]) {
		const got = probe(pid);
		delete got.pid;
		assert.deepEqual(got, expected, `attribution of pid ${pid}`);
	}
	// The pod's sandbox (pause) container is never a workload.
	const sandboxPid = containerPid(node, pod.id);
	const sb = probe(sandboxPid);
	assert.equal(sb.role, 'sandbox');
	assert.equal(sb['k8s.pod.name'], pod.spec.name);
	assert.equal(sb['container.id'], pod.id);
	assert.equal(sb['k8s.container.name'], undefined);
	// A process on the host: no container.
	assert.deepEqual(probe(process.pid), { pid: process.pid, 'k8s.node.name': os.hostname(), role: 'host', state: 'resolved', qos: '' });
});

/* ---------------------------------------------------------------- the DaemonSet's pod */

// What the kubelet sends for the DaemonSet's pod: every field of the pod spec that matters to
// the runtime is translated, and any field this translation does not know fails the test
// (so that a manifest change cannot slip past it).
function daemonSetPod(manifestText, { args }) {
	const docs = YAML.parseAllDocuments(manifestText).map((d) => d.toJS());
	const ds = docs.find((d) => d?.kind === 'DaemonSet');
	assert.ok(ds, 'a DaemonSet in the manifest');
	const spec = ds.spec.template.spec;
	const known = new Set(['hostPID', 'automountServiceAccountToken', 'enableServiceLinks', 'terminationGracePeriodSeconds', 'tolerations', 'containers', 'volumes']);
	for (const k of Object.keys(spec)) assert.ok(known.has(k), `pod spec field ${k} is not translated by this test`);
	assert.equal(spec.automountServiceAccountToken, false, 'no service account token');
	assert.ok(spec.tolerations?.some((t) => t.operator === 'Exists' && !t.key && !t.effect), 'tolerates every taint');
	assert.equal(spec.containers.length, 1);
	const c = spec.containers[0];
	const knownC = new Set(['name', 'image', 'imagePullPolicy', 'args', 'env', 'ports', 'readinessProbe', 'livenessProbe', 'resources', 'securityContext', 'volumeMounts']);
	for (const k of Object.keys(c)) assert.ok(knownC.has(k), `container field ${k} is not translated by this test`);

	const volumes = new Map(spec.volumes.map((v) => [v.name, v]));
	const mounts = [];
	const created = [];
	for (const m of c.volumeMounts) {
		const v = volumes.get(m.name);
		assert.ok(v?.hostPath, `volume ${m.name} is a hostPath`);
		const knownM = new Set(['name', 'mountPath', 'readOnly']);
		for (const k of Object.keys(m)) assert.ok(knownM.has(k), `volumeMount field ${k} is not translated by this test`);
		let hostPath = v.hostPath.path;
		if (v.hostPath.type === 'Directory') {
			assert.ok(fs.statSync(hostPath).isDirectory(), `${hostPath} (hostPath type Directory) exists on this node`);
		} else if (v.hostPath.type === 'DirectoryOrCreate') {
			// The kubelet would create it on the node; here it is created in the test's own
			// directory, so that the test leaves nothing on the host.
			hostPath = path.join(node.dir, 'hostpath', hostPath);
			fs.mkdirSync(hostPath, { recursive: true });
			created.push(hostPath);
		} else {
			assert.fail(`hostPath type ${v.hostPath.type} is not translated by this test`);
		}
		if (!m.readOnly) assert.equal(v.hostPath.path, '/var/lib/mcpsonde', `only mcpsonde's own state directory is writable (${m.mountPath})`);
		mounts.push({ containerPath: m.mountPath, hostPath, readOnly: !!m.readOnly });
	}

	const env = {};
	for (const e of c.env ?? []) {
		if (e.value !== undefined) env[e.name] = e.value;
		else if (e.valueFrom?.fieldRef?.fieldPath === 'spec.nodeName') env[e.name] = os.hostname();
		else assert.fail(`env ${e.name}: source not translated by this test`);
	}

	const sc = c.securityContext;
	const knownSc = new Set(['runAsUser', 'privileged', 'allowPrivilegeEscalation', 'readOnlyRootFilesystem', 'seccompProfile', 'capabilities']);
	for (const k of Object.keys(sc)) assert.ok(knownSc.has(k), `securityContext field ${k} is not translated by this test`);
	assert.notEqual(sc.privileged, true, 'not privileged');
	const seccomp = { RuntimeDefault: 'RuntimeDefault', Unconfined: 'Unconfined' }[sc.seccompProfile?.type ?? 'Unconfined'];
	assert.ok(seccomp, `seccompProfile ${sc.seccompProfile?.type}`);
	// As the kubelet does: names as written ("BPF"); the runtime adds the CAP_ prefix.
	const caps = (l) => [...(l ?? [])];
	const securityContext = {
		capabilities: { add_capabilities: caps(sc.capabilities?.add), drop_capabilities: caps(sc.capabilities?.drop) },
		privileged: !!sc.privileged,
		run_as_user: sc.runAsUser !== undefined ? { value: sc.runAsUser } : undefined,
		readonly_rootfs: !!sc.readOnlyRootFilesystem,
		no_new_privs: sc.allowPrivilegeEscalation === false,
		seccomp: { profile_type: seccomp },
	};

	// Resources as the kubelet's cgroupfs driver sets them.
	const mem = c.resources?.limits?.memory;
	const memBytes = mem ? Number(/^(\d+)Mi$/.exec(mem)?.[1]) * 1024 * 1024 : 0;
	assert.ok(!mem || memBytes > 0, `memory limit ${mem}`);
	const cpuReq = c.resources?.requests?.cpu;
	const shares = cpuReq ? Math.max(2, Math.floor((Number(/^(\d+)m$/.exec(cpuReq)?.[1]) * 1024) / 1000)) : 2;

	const metricsPort = c.ports.find((p) => p.name === 'metrics');
	assert.ok(metricsPort, 'a port named metrics');
	for (const probeName of ['readinessProbe', 'livenessProbe']) {
		assert.equal(c[probeName]?.httpGet?.port, 'metrics', `${probeName} on the metrics port`);
	}
	return {
		created,
		probePath: c.readinessProbe.httpGet.path,
		spec: {
			name: `mcpsonde-${randomTag()}`,
			namespace: ds.metadata.namespace,
			hostPID: !!spec.hostPID,
			containers: [{
				name: c.name,
				image: c.image,
				args: args(c.args, ds.metadata.namespace),
				env,
				mounts,
				resources: { memory_limit_in_bytes: memBytes, cpu_shares: shares },
				securityContext,
			}],
		},
	};
}

test('mcpsonde in a pod made from deploy/kubernetes/mcpsonde.yaml finds the agent\'s server and labels it with its pod', { timeout: TIMEOUT }, async () => {
	const manifest = fs.readFileSync(MANIFEST, 'utf8');
	const port = 20000 + Math.floor(Math.random() * 20000);
	const ns = agent.pod.spec.namespace;
	const podName = agent.pod.spec.name;
	const { spec, probePath, created } = daemonSetPod(manifest, {
		// The manifest's arguments, with these changes: the pods use the host's network here,
		// so the metrics server listens on loopback, on a port no other test uses; events as
		// JSON on stdout; a short series TTL; the node among the series' labels (--metrics-labels,
		// in an order of its own); and only the agent's namespace and mcpsonde's own
		// (other tests on this machine run MCP servers too; mcpsonde's own pod passes the
		// selectors, so that only the rule that excludes it keeps its neighbour out).
		args: (manifestArgs, ownNamespace) => {
			assert.deepEqual(manifestArgs.slice(0, 2), ['watch', '--all'], 'the DaemonSet runs watch --all');
			const i = manifestArgs.indexOf('--metrics');
			assert.ok(i > 0, 'the DaemonSet serves metrics');
			const args = [...manifestArgs];
			args[i + 1] = `127.0.0.1:${port}`;
			return [...args, '--json', '--series-ttl', '1', '--metrics-labels', 'k8s_pod_name,k8s_node_name,k8s_namespace_name,k8s_container_name',
				'--include', `namespace=${ns}`, '--include', `namespace=${ownNamespace}`];
		},
	});
	assert.equal(spec.containers[0].image, 'localhost/mcpsonde:latest', 'the image make image builds');
	// A neighbour in mcpsonde's own pod with an MCP server of its own: never reported.
	const neighbour = { shared: fs.mkdtempSync(path.join(node.dir, 'shared-')), round: 0 };
	fs.chmodSync(neighbour.shared, 0o777);
	spec.containers.push(agentContainer('neighbour', neighbour.shared));
	const pod = await runPod(node, spec);
	const logPath = pod.containers[0].logPath;
	const expected = {
		'k8s.namespace.name': ns,
		'k8s.pod.name': podName,
		'k8s.pod.uid': agent.pod.uid,
		'k8s.container.name': 'agent',
		'k8s.node.name': os.hostname(),
		'container.id': agent.containerId,
		'container.runtime': 'containerd',
	};
	const metricsText = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
	const podSeries = (text) => text.split('\n').filter((l) => l.includes(`k8s_pod_name="${podName}"`));
	try {
		const until = Date.now() + 30000;
		let log;
		for (;;) {
			log = readContainerLog(logPath);
			if (log.stderr.some((l) => l.startsWith('mcpsonde: watching every MCP server'))) break;
			const st = await node.cri.runtime.ContainerStatus({ container_id: pod.containers[0].id });
			if (st.status.state === 'CONTAINER_EXITED' || Date.now() > until) {
				assert.fail(`mcpsonde in the DaemonSet's pod did not start watching (state ${st.status.state}, exit ${st.status.exit_code}); its stderr:\n${log.stderr.join('\n')}`);
			}
			await sleep(50);
		}
		const res = await fetch(`http://127.0.0.1:${port}${probePath}`);
		assert.equal(res.status, 200, `readiness/liveness probe GET ${probePath}`);

		Object.assign(neighbour, await agentReady(pod.containers[1], neighbour.shared));
		assert.equal((await agentRound(neighbour)).length, 7, 'the neighbour\'s workload ran');
		// No pid given: the server is found by its traffic.
		const requests = await agentRound();
		const events = () => readContainerLog(logPath).stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
		const deadline = Date.now() + 30000;
		while (calls(events()).length < requests.length && Date.now() < deadline) await sleep(100);
		const evs = events();
		assertCallsMatch(requests, evs);
		assert.deepEqual([...new Set(evs.filter((e) => e.pid).map((e) => e.pid))], [agent.serverPid],
			`only the server is reported: not the agent, not the pods' sandboxes, not the neighbour in mcpsonde's own pod (its server is pid ${neighbour.serverPid})`);
		const sessions = evs.filter((e) => e.type === 'session');
		assert.ok(sessions.length >= 1, 'a session event');
		for (const s of sessions) {
			assert.equal(s.found, 'discovered');
			assert.deepEqual(s.resource, expected, 'the session event says where the server runs');
		}
		// Its client, the agent that launched it, runs in its own container: said so, once.
		const client = sessions.findLast((s) => s.client_process)?.client_process;
		assert.equal(client?.pid, agent.agentPid, 'the session event names the agent as the client');
		assert.equal(client.same_container, true, 'the client runs in the server\'s container');
		assert.equal(client.resource, undefined, 'the same container is not repeated');

		// The inventory (GET /servers) says the same.
		let server;
		for (const t = Date.now() + 15000; !server?.resource && Date.now() < t; await sleep(200)) {
			const r = await fetch(`http://127.0.0.1:${port}/servers`);
			if (r.status === 200) server = (await r.json()).servers.find((x) => x.pid === agent.serverPid);
		}
		assert.ok(server, 'the server is in the inventory');
		assert.deepEqual(server.resource, expected, 'its inventory record says where it runs');
		assert.equal(server.client_process?.same_container, true, 'and that its client runs beside it');
		// And `mcpsonde servers`, reading the state directory the pod writes on the node.
		const stateDir = created.find((d) => d.endsWith('/var/lib/mcpsonde'));
		assert.ok(stateDir, 'the DaemonSet\'s state directory');
		let row;
		for (const t = Date.now() + 15000; !row && Date.now() < t; await sleep(250)) {
			if (!fs.existsSync(path.join(stateDir, 'servers.json'))) continue;
			const table = execFileSync(path.join(REPO, 'build/mcpsonde'), ['servers', '--state-dir', stateDir], { encoding: 'utf8' });
			row = table.split('\n').find((l) => l.startsWith(`${agent.serverPid} `) && l.includes(`${ns}/${podName}/agent`));
		}
		assert.ok(row, 'mcpsonde servers names the pod');

		// Metrics: the calls the server handled, labelled with pod, node, namespace and container
		// in the order --metrics-labels gave (never the pod uid or the container id).
		const handled = evs.filter((e) => e.type === 'call' && e.direction === 'client_to_server' &&
			['ok', 'error', 'tool_error'].includes(e.status)).length;
		assert.ok(handled > 0, 'calls handled by the server');
		let counts = 0;
		let text = '';
		for (const t = Date.now() + 15000; counts < handled && Date.now() < t; await sleep(200)) {
			text = await metricsText();
			counts = podSeries(text).filter((l) => l.startsWith('mcp_server_operation_duration_seconds_count{'))
				.reduce((n, l) => n + Number(l.split(' ').pop()), 0);
		}
		assert.equal(counts, handled, `operation counts of the pod's series:\n${podSeries(text).join('\n')}`);
		for (const l of podSeries(text)) {
			assert.ok(l.includes(`,k8s_pod_name="${podName}",k8s_node_name="${os.hostname()}",k8s_namespace_name="${ns}",k8s_container_name="agent"`), l);
			assert.ok(!l.includes(agent.pod.uid) && !l.includes(agent.containerId), `no pod uid or container id: ${l}`);
		}

		// The pod is deleted: its server exits, and its series go after the TTL.
		await removePod(node, agent.pod);
		for (const t = Date.now() + 60000; podSeries(text).length && Date.now() < t; await sleep(250)) text = await metricsText();
		assert.deepEqual(podSeries(text), [], 'the deleted pod\'s series are gone');
	} finally {
		await removePod(node, pod);
	}
});

test('the image runs mcpsonde --version', { timeout: TIMEOUT }, async () => {
	const pod = await runPod(node, {
		name: `mcpsonde-version-${randomTag()}`,
		namespace: 'mcpsonde',
		containers: [{ name: 'version', image: 'localhost/mcpsonde:latest', args: ['--version'] }],
	});
	try {
		const until = Date.now() + 20000;
		let st;
		do {
			await sleep(50);
			st = await node.cri.runtime.ContainerStatus({ container_id: pod.containers[0].id });
		} while (st.status.state !== 'CONTAINER_EXITED' && Date.now() < until);
		assert.equal(st.status.state, 'CONTAINER_EXITED');
		assert.equal(st.status.exit_code, 0);
		const version = execFileSync(path.join(REPO, 'build/mcpsonde'), ['--version'], { encoding: 'utf8' }).trim();
		assert.deepEqual(readContainerLog(pod.containers[0].logPath).stdout, [version]);
	} finally {
		await removePod(node, pod);
	}
});

// harness.mjs -- a real Kubernetes node's container runtime for the e2e tests, without a
// kubelet: Debian's containerd and runc, driven through the CRI (the kubelet's own gRPC API).
//
// Everything containerd keeps lives under one temporary directory: its config, root, state,
// socket, runc's state, the `opt` plugin's path, the pods' logs. Pods use the host's network
// (no CNI) and a pause image built here from a static binary (no registry is reachable), in
// docker-archive form, imported with `ctr images import`. Pods get kubelet-style cgroup parents
// (/kubepods/besteffort/pod<uid>) under a per-run prefix so that clean-up knows exactly which
// cgroup directories are ours.
//
// Clean-up (stop()) runs even when a test failed: StopPodSandbox and RemovePodSandbox for every
// pod, containerd itself, the shims it started (they outlive it; found by the -address socket
// they were given), their sockets in /run/containerd/s, our cgroup directories in every
// hierarchy, and the temporary directory (rm --one-file-system: a leftover mount is never
// followed). Facts behind each step: ../../../../shared/FLEET-NOTES.md (the project's notes).

import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

import { sleep, deadline, killPid } from '../lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const PAUSE_IMAGE = 'localhost/mcpsonde-test/pause:1';
const SHIM_SOCKETS = '/run/containerd/s';

// Tools the harness needs, to say clearly what is missing instead of failing obscurely.
export function missingTools() {
	const need = ['containerd', 'ctr', 'runc', 'containerd-shim-runc-v2', 'gcc', 'tar'];
	return need.filter((t) => {
		try {
			execFileSync('sh', ['-c', `command -v ${t}`], { stdio: 'ignore' });
			return false;
		} catch {
			return true;
		}
	});
}

/* ---------------------------------------------------------------- images */

// A docker-archive tar (what `docker save` writes and `ctr images import` reads) of one layer
// made from rootfs, tagged `tag`, with the given image config.
export function dockerArchive(rootfs, tag, imageConfig, out) {
	const work = fs.mkdtempSync(path.join(path.dirname(out), 'archive-'));
	try {
		const layer = path.join(work, 'layer.tar');
		execFileSync('tar', ['--numeric-owner', '--owner=0', '--group=0', '-C', rootfs, '-cf', layer, '.']);
		const sha = (buf) => crypto.createHash('sha256').update(buf).digest('hex');
		const config = JSON.stringify({
			architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
			os: 'linux',
			config: imageConfig,
			rootfs: { type: 'layers', diff_ids: [`sha256:${sha(fs.readFileSync(layer))}`] },
		});
		const configName = `${sha(config)}.json`;
		fs.writeFileSync(path.join(work, configName), config);
		fs.writeFileSync(path.join(work, 'manifest.json'), JSON.stringify([{ Config: configName, RepoTags: [tag], Layers: ['layer.tar'] }]));
		execFileSync('tar', ['-C', work, '-cf', out, 'manifest.json', configName, 'layer.tar']);
	} finally {
		fs.rmSync(work, { recursive: true, force: true });
	}
	return out;
}

// The pause image: /pause (static), plus the mount points and usr-merge links that let a
// container bind-mount the host's /usr read-only and run the host's node from it.
export function buildPauseRootfs(dir) {
	const rootfs = path.join(dir, 'pause-rootfs');
	fs.mkdirSync(rootfs);
	execFileSync('gcc', ['-static', '-O2', '-o', path.join(rootfs, 'pause'), path.join(HERE, 'pause.c')]);
	for (const d of ['proc', 'sys', 'dev', 'tmp', 'etc', 'usr', 'run', 'var']) fs.mkdirSync(path.join(rootfs, d));
	for (const l of ['bin', 'sbin', 'lib', 'lib64']) fs.symlinkSync(`usr/${l}`, path.join(rootfs, l));
	return rootfs;
}

export function buildPauseImage(dir) {
	return dockerArchive(buildPauseRootfs(dir), PAUSE_IMAGE, { Entrypoint: ['/pause'] }, path.join(dir, 'pause.tar'));
}

/* ---------------------------------------------------------------- containerd */

function containerdConfig(dir) {
	const q = (s) => JSON.stringify(s);
	return `version = 2
root = ${q(path.join(dir, 'root'))}
state = ${q(path.join(dir, 'state'))}
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = ${q(path.join(dir, 'containerd.sock'))}

[ttrpc]
  address = ${q(path.join(dir, 'containerd.sock.ttrpc'))}

[plugins."io.containerd.internal.v1.opt"]
  path = ${q(path.join(dir, 'opt'))}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = ${q(PAUSE_IMAGE)}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  restrict_oom_score_adj = true
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = ${q(path.join(dir, 'cni-bin'))}
  conf_dir = ${q(path.join(dir, 'cni-conf'))}

[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  Root = ${q(path.join(dir, 'runc'))}
  SystemdCgroup = false
`;
}

function loadProto() {
	const def = protoLoader.loadSync(path.join(HERE, 'runtime.proto'), { keepCase: true, longs: Number, enums: String, defaults: true });
	return grpc.loadPackageDefinition(def).runtime.v1;
}

function promisify(client) {
	const out = {};
	for (const name of Object.keys(Object.getPrototypeOf(client))) {
		if (typeof client[name] !== 'function' || name.startsWith('$') || name[0] !== name[0].toUpperCase()) continue;
		out[name] = (req) => new Promise((resolve, reject) => {
			client[name](req, { deadline: Date.now() + 60000 }, (err, res) => (err ? reject(new Error(`CRI ${name}: ${err.details || err.message}`)) : resolve(res)));
		});
	}
	return out;
}

// Lines of every hierarchy's mount point, to find our cgroup directories at clean-up.
export function cgroupRoots() {
	const roots = [];
	for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
		const f = line.split(' ');
		const sep = f.indexOf('-');
		if (sep > 0 && (f[sep + 1] === 'cgroup' || f[sep + 1] === 'cgroup2')) roots.push(f[4]);
	}
	return roots;
}

// Removes a cgroup directory tree, deepest first (cgroup directories hold only control files,
// which rmdir takes with them). Retries for a moment: zombies keep a cgroup busy.
export async function removeCgroupTree(dir) {
	for (let i = 0; i < 50; i++) {
		const dirs = [];
		const walk = (d) => {
			let ents;
			try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
			for (const e of ents) if (e.isDirectory()) walk(path.join(d, e.name));
			dirs.push(d);
		};
		walk(dir);
		let busy = false;
		for (const d of dirs) {
			try { fs.rmdirSync(d); } catch (e) { if (e.code !== 'ENOENT') busy = true; }
		}
		if (!busy) return true;
		await sleep(100);
	}
	return false;
}

// Starts containerd with everything under a new temporary directory and returns a node:
// { dir, state, cri: {runtime, image}, ctr(args), runPod(spec), stop() }.
export async function startNode({ prefix = 'mcpsonde-cri-' } = {}) {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
	const tag = path.basename(dir).replace(/[^a-zA-Z0-9]/g, '');
	const node = {
		dir,
		state: path.join(dir, 'state'),
		sock: path.join(dir, 'containerd.sock'),
		cgroupPrefix: `mcpsonde-${tag}`,
		pods: [],
		proc: null,
		log: '',
		createdRunContainerd: !fs.existsSync('/run/containerd'),
	};
	node.stop = () => stopNode(node);
	try {
		fs.writeFileSync(path.join(dir, 'config.toml'), containerdConfig(dir));
		fs.mkdirSync(path.join(dir, 'logs'));
		node.proc = spawn('containerd', ['--config', path.join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
		node.proc.stderr.on('data', (d) => { node.log = (node.log + d).slice(-20000); });
		node.exited = new Promise((r) => node.proc.once('exit', r));
		const proto = loadProto();
		const address = `unix://${node.sock}`;
		const until = Date.now() + 30000;
		while (!fs.existsSync(node.sock)) {
			if (Date.now() > until || node.proc.exitCode !== null) throw new Error(`containerd did not start:\n${node.log}`);
			await sleep(50);
		}
		node.cri = {
			runtime: promisify(new proto.RuntimeService(address, grpc.credentials.createInsecure())),
			image: promisify(new proto.ImageService(address, grpc.credentials.createInsecure())),
		};
		for (;;) {
			try {
				await node.cri.runtime.Version({ version: 'v1' });
				break;
			} catch (e) {
				if (Date.now() > until) throw new Error(`CRI not answering: ${e.message}\n${node.log}`);
				await sleep(100);
			}
		}
		node.ctr = (args) => execFileSync('ctr', ['--address', node.sock, '-n', 'k8s.io', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
		await importImage(node, buildPauseImage(dir), PAUSE_IMAGE);
	} catch (e) {
		await stopNode(node);
		throw e;
	}
	return node;
}

// Imports a docker-archive and waits until the CRI sees the image (it notices asynchronously).
export async function importImage(node, tar, ref) {
	node.ctr(['images', 'import', '--no-unpack', tar]);
	const until = Date.now() + 30000;
	for (;;) {
		const r = await node.cri.image.ImageStatus({ image: { image: ref } });
		if (r.image && r.image.id) return r.image;
		if (Date.now() > until) throw new Error(`the CRI does not see image ${ref} after import`);
		await sleep(100);
	}
}

/* ---------------------------------------------------------------- pods */

// What the kubelet sends for a pod with host networking: RunPodSandbox with a kubelet-style
// cgroup parent, then CreateContainer + StartContainer for each container.
// spec: { name, namespace, uid?, hostPID?, privileged?, labels?, annotations?,
//         containers: [{ name, image, command, args, env: {}, mounts: [], securityContext: {} }] }
// Returns { id, uid, sandboxConfig, containers: [{ name, id, logPath }] }.
export async function runPod(node, spec) {
	const uid = spec.uid ?? crypto.randomUUID();
	const podLogs = path.join(node.dir, 'logs', `${spec.namespace}_${spec.name}_${uid}`);
	fs.mkdirSync(podLogs, { recursive: true });
	const hostPID = !!spec.hostPID;
	const sandboxConfig = {
		metadata: { name: spec.name, uid, namespace: spec.namespace, attempt: 0 },
		hostname: '',
		log_directory: podLogs,
		labels: { 'io.kubernetes.pod.name': spec.name, 'io.kubernetes.pod.namespace': spec.namespace, 'io.kubernetes.pod.uid': uid, ...(spec.labels ?? {}) },
		annotations: spec.annotations ?? {},
		linux: {
			cgroup_parent: `/${node.cgroupPrefix}/kubepods/besteffort/pod${uid}`,
			security_context: {
				namespace_options: { network: 'NODE', pid: hostPID ? 'NODE' : 'POD', ipc: 'POD' },
				privileged: !!spec.privileged,
				seccomp: { profile_type: 'Unconfined' },
			},
		},
	};
	const { pod_sandbox_id: id } = await node.cri.runtime.RunPodSandbox({ config: sandboxConfig });
	const pod = { id, uid, spec, sandboxConfig, containers: [] };
	node.pods.push(pod);
	for (const c of spec.containers) {
		const logPath = `${c.name}/0.log`;
		const config = {
			metadata: { name: c.name, attempt: 0 },
			image: { image: c.image },
			command: c.command ?? [],
			args: c.args ?? [],
			working_dir: c.workingDir ?? '',
			envs: Object.entries(c.env ?? {}).map(([key, value]) => ({ key, value: String(value) })),
			mounts: (c.mounts ?? []).map((m) => ({
				container_path: m.containerPath, host_path: m.hostPath, readonly: !!m.readOnly,
				propagation: m.propagation ?? 'PROPAGATION_PRIVATE',
			})),
			labels: { 'io.kubernetes.container.name': c.name, 'io.kubernetes.pod.name': spec.name, 'io.kubernetes.pod.namespace': spec.namespace, 'io.kubernetes.pod.uid': uid },
			annotations: {},
			log_path: logPath,
			linux: {
				resources: c.resources ?? {},
				security_context: {
					namespace_options: { network: 'NODE', pid: hostPID ? 'NODE' : 'CONTAINER', ipc: 'POD' },
					seccomp: { profile_type: 'Unconfined' },
					...(c.securityContext ?? {}),
				},
			},
		};
		const { container_id: cid } = await node.cri.runtime.CreateContainer({ pod_sandbox_id: id, config, sandbox_config: sandboxConfig });
		pod.containers.push({ name: c.name, id: cid, logPath: path.join(podLogs, logPath), config });
		await node.cri.runtime.StartContainer({ container_id: cid });
	}
	return pod;
}

// The host PID of a container's first process: containerd's runc shim writes it into the
// container's bundle as init.pid.
export function containerPid(node, containerId) {
	const f = path.join(node.state, 'io.containerd.runtime.v2.task', 'k8s.io', containerId, 'init.pid');
	return Number(fs.readFileSync(f, 'utf8').trim());
}

// The CRI log of a container: lines "<RFC3339Nano> <stdout|stderr> <P|F> <text>"; P marks a
// partial line continued by the next one. Returns { stdout: [lines], stderr: [lines] }.
export function readContainerLog(file) {
	const out = { stdout: [], stderr: [] };
	const partial = { stdout: '', stderr: '' };
	let text = '';
	try { text = fs.readFileSync(file, 'utf8'); } catch { return out; }
	for (const line of text.split('\n')) {
		const m = /^\S+ (stdout|stderr) ([PF]) (.*)$/.exec(line);
		if (!m) continue;
		partial[m[1]] += m[3];
		if (m[2] === 'F') {
			out[m[1]].push(partial[m[1]]);
			partial[m[1]] = '';
		}
	}
	return out;
}

export async function removePod(node, pod) {
	try { await node.cri.runtime.StopPodSandbox({ pod_sandbox_id: pod.id }); } catch { /* gone or containerd down */ }
	try { await node.cri.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id }); } catch { /* idem */ }
	node.pods = node.pods.filter((p) => p !== pod);
}

/* ---------------------------------------------------------------- clean-up */

// Shims started by our containerd: their command line names our socket in -address.
function ourShims(node) {
	const pids = [];
	for (const d of fs.readdirSync('/proc')) {
		if (!/^\d+$/.test(d)) continue;
		try {
			const argv = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
			if (argv[0].endsWith('containerd-shim-runc-v2') && argv.includes(node.sock)) pids.push(Number(d));
		} catch { /* exited */ }
	}
	return pids;
}

async function stopNode(node) {
	const problems = [];
	if (node.cri) {
		for (const pod of [...node.pods]) await removePod(node, pod);
	}
	if (node.proc && node.proc.exitCode === null) {
		killPid(node.proc.pid, 'SIGTERM');
		if (await Promise.race([node.exited.then(() => true), deadline(10000).then(() => false)]) === false) {
			killPid(node.proc.pid, 'SIGKILL');
			await node.exited;
		}
	}
	// Shims outlive containerd. A shim removes its socket (/run/containerd/s/<hash>) on a clean
	// exit, not on SIGKILL: note the sockets each holds before killing it.
	const sockets = [];
	for (const pid of ourShims(node)) {
		sockets.push(...unixSocketsOf(pid));
		killPid(pid, 'SIGKILL');
	}
	// Every hierarchy: our prefix directory and everything under it.
	for (const root of cgroupRoots()) {
		const d = path.join(root, node.cgroupPrefix);
		if (fs.existsSync(d) && !(await removeCgroupTree(d))) problems.push(`cgroup ${d} still busy`);
	}
	for (const p of sockets) if (p.startsWith(`${SHIM_SOCKETS}/`)) fs.rmSync(p, { force: true });
	try {
		execFileSync('rm', ['-rf', '--one-file-system', node.dir]);
	} catch (e) {
		problems.push(`rm ${node.dir}: ${e.message}`);
	}
	if (node.createdRunContainerd) {
		try { fs.rmdirSync(SHIM_SOCKETS); } catch { /* another runtime's sockets, or none */ }
		try { fs.rmdirSync('/run/containerd'); } catch { /* idem */ }
	}
	if (problems.length) throw new Error(`CRI node clean-up: ${problems.join('; ')}`);
}

// Paths of the listening AF_UNIX sockets a process holds (from its fds and /proc/net/unix).
function unixSocketsOf(pid) {
	const inodes = new Set();
	try {
		for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
			const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
			if (m) inodes.add(m[1]);
		}
	} catch { return []; }
	const out = [];
	for (const line of fs.readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1)) {
		const f = line.trim().split(/\s+/);
		if (f.length >= 8 && inodes.has(f[6])) out.push(f[7]);
	}
	return out;
}

// A container started by `podman run` (Debian's podman 4.3 and runc) is attributed with its
// container name, id and runtime, from its cgroup and containers/storage's state.
//
// Podman runs with its own storage, run and tmp directories under a temporary directory and a
// cgroup parent of its own, with the settings these machines need (../../shared notes): no
// default ulimits and `--ulimit host` (root lacks CAP_SYS_RESOURCE here), the cgroupfs
// manager (PID 1 is not systemd), runc (crun refuses cgroup v1 hybrid). The state is not
// at Podman's usual root, so attribution finds it the way that works for any root: conmon's
// -b (the bundle) and containers.json two levels above it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { REPO, randomTag } from './lib.mjs';
import { buildPauseRootfs, cgroupRoots, removeCgroupTree } from './cri/harness.mjs';

const PROBE = path.join(REPO, 'build/tools/attrib_probe');

test('podman run: attributed with its container name, id and runtime', { timeout: 120000 }, async () => {
	const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mcpsonde-podman-'));
	const tag = randomTag();
	const cgroupParent = `mcpsonde-podman-${tag}`;
	const name = `mcp-weather-${tag}`;
	const image = `localhost/mcpsonde-test/pause:${tag}`;
	// podman writes a blob-info cache to /var/lib/containers whatever its --root.
	const hadContainersDir = fs.existsSync('/var/lib/containers');
	fs.writeFileSync(path.join(dir, 'containers.conf'), '[containers]\ndefault_ulimits = []\n');
	const podman = (args) => execFileSync('podman', [
		'--root', path.join(dir, 'storage'), '--runroot', path.join(dir, 'run'), '--tmpdir', path.join(dir, 'tmp'),
		'--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--runtime', 'runc', '--events-backend', 'none', ...args,
	], { encoding: 'utf8', env: { ...process.env, CONTAINERS_CONF: path.join(dir, 'containers.conf') }, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
	let id;
	try {
		const rootfs = buildPauseRootfs(dir);
		execFileSync('tar', ['--numeric-owner', '-C', rootfs, '-cf', path.join(dir, 'rootfs.tar'), '.']);
		podman(['import', '--quiet', path.join(dir, 'rootfs.tar'), image]);
		id = podman(['run', '-d', '--name', name, '--ulimit', 'host', '--network', 'none', '--cgroup-parent', `/${cgroupParent}`, image, '/pause']);
		assert.match(id, /^[0-9a-f]{64}$/);
		const pid = Number(podman(['inspect', '--format', '{{.State.Pid}}', id]));
		assert.ok(pid > 0, `container pid ${pid}`);
		const got = JSON.parse(execFileSync(PROBE, [String(pid)], { encoding: 'utf8' }));
		assert.deepEqual(got, {
			pid,
			'container.id': id,
			'container.name': name,
			'container.runtime': 'podman',
			'k8s.node.name': os.hostname(),
			role: 'workload',
			state: 'resolved',
			qos: '',
		});
		// conmon, the container's monitor, is never taken for the workload.
		const conmon = Number(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1]);
		assert.equal(fs.readFileSync(`/proc/${conmon}/comm`, 'utf8').trim(), 'conmon');
		assert.notEqual(JSON.parse(execFileSync(PROBE, [String(conmon)], { encoding: 'utf8' })).role, 'workload');
	} finally {
		try { if (id) podman(['rm', '--force', '--time', '0', id]); } catch { /* already gone */ }
		try { podman(['rmi', '--all', '--force']); } catch { /* none */ }
		for (const root of cgroupRoots()) {
			const d = path.join(root, cgroupParent);
			if (fs.existsSync(d)) await removeCgroupTree(d);
		}
		execFileSync('rm', ['-rf', '--one-file-system', dir]);
		if (!hadContainersDir) execFileSync('rm', ['-rf', '--one-file-system', '/var/lib/containers']);
	}
	for (const root of cgroupRoots()) assert.ok(!fs.existsSync(path.join(root, cgroupParent)), `cgroup ${root}/${cgroupParent} removed`);
});

/* test_attrib.c -- attribution: every cgroup layout, the runtimes' state files, and the whole
 * lookup chain over a fake host root (--host-root) built from the fixtures in
 * tests/data/attrib/: caches, retries, evictions, the ancestor walk, hostile files.
 *
 * Fixture ids: every hand-written layout uses container ID and pod uid UID below; the
 * containerd and Podman files were captured from real containers on a test machine. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcpsonde/attrib.h"
#include "mcpsonde/event.h"
#include "mcpsonde/jsonw.h"

#define DATA "tests/data/attrib/"
#define ID "4c0a5e7d2b9f1e3a6d8c0b2e4f6a8c1d3e5f7a9b0c2d4e6f8a1b3c5d7e9f0a2b"
#define UID "7d3c2b1a-5e4f-4a3b-9c8d-0e1f2a3b4c5d"
/* Captured: a containerd (cgroupfs driver) pod, and a Podman container. */
#define CD_ID "8bd9eccefffa4ce719e18a8a5d3487175ef3779486a8894ed49fb62b1fd83386"
#define CD_SANDBOX "6da804062e09cd10095897ba49d306000bd0008ab9893e7d840a2003e1ef700a"
#define CD_UID "0b8cc5d0-eb43-4894-83ad-c41dbf622267"
#define PM_ID "8313d1274b5eae21a8ff573be7892bef3165d04555d70ac1d64b4f173bd4b7db"

static char *slurp(const char *name, size_t *len)
{
	char path[256];
	FILE *f;
	char *buf;
	long n;

	snprintf(path, sizeof(path), DATA "%s", name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("fixture %s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

/* --- cgroup layouts ------------------------------------------------------------------- */

struct layout {
	const char *file;
	int rc;
	enum attrib_runtime runtime;
	enum attrib_role role;
	const char *id;
	const char *uid;
	enum attrib_qos qos;
	const char *ctr_namespace;
};

static void check_layout(const struct layout *l)
{
	struct attrib_cgroup cg;
	size_t len;
	char *buf = slurp(l->file, &len);
	int rc = attrib_parse_cgroup(buf, len, &cg);

	free(buf);
	if (rc != l->rc)
		fail_msg("%s: rc %d, expected %d", l->file, rc, l->rc);
	if (rc < 0)
		return;
	if (cg.runtime != l->runtime || cg.role != l->role || strcmp(cg.container_id, l->id) != 0 ||
	    strcmp(cg.pod_uid, l->uid) != 0 || cg.qos != l->qos || strcmp(cg.ctr_namespace, l->ctr_namespace) != 0)
		fail_msg("%s: got runtime %s role %s id '%s' uid '%s' qos '%s' ns '%s'", l->file,
			 attrib_runtime_name(cg.runtime), attrib_role_name(cg.role), cg.container_id, cg.pod_uid,
			 attrib_qos_name(cg.qos), cg.ctr_namespace);
}

static void test_cgroup_layouts(void **state)
{
	const struct layout layouts[] = {
		/* kubelet + containerd */
		{ "cgroup-containerd-systemd-v2", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_BURSTABLE, "" },
		{ "cgroup-containerd-systemd-hybrid", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_BESTEFFORT, "" },
		{ "cgroup-containerd-systemd-guaranteed", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_GUARANTEED, "" },
		{ "cgroup-containerd-cgroupfs", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, CD_ID, CD_UID, ATTRIB_QOS_BESTEFFORT, "" },
		{ "cgroup-containerd-cgroupfs-guaranteed", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_GUARANTEED, "" },
		{ "cgroup-containerd-mixed", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_BURSTABLE, "" },
		{ "cgroup-containerd-nested", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_BURSTABLE, "" },
		{ "cgroup-private-namespace", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_BESTEFFORT, "" },
		/* containerd without a cgroup parent (ctr, nerdctl): /<namespace>/<id> */
		{ "cgroup-containerd-namespace", 0, ATTRIB_RUNTIME_CONTAINERD, ATTRIB_ROLE_WORKLOAD, ID, "", ATTRIB_QOS_NONE, "k8s.io" },
		/* CRI-O and its conmon */
		{ "cgroup-crio-systemd", 0, ATTRIB_RUNTIME_CRIO, ATTRIB_ROLE_WORKLOAD, ID, UID, ATTRIB_QOS_BURSTABLE, "" },
		{ "cgroup-crio-conmon", 0, ATTRIB_RUNTIME_CRIO, ATTRIB_ROLE_MONITOR, ID, UID, ATTRIB_QOS_BURSTABLE, "" },
		/* Docker */
		{ "cgroup-docker-systemd", 0, ATTRIB_RUNTIME_DOCKER, ATTRIB_ROLE_WORKLOAD, ID, "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-docker-cgroupfs", 0, ATTRIB_RUNTIME_DOCKER, ATTRIB_ROLE_WORKLOAD, ID, "", ATTRIB_QOS_NONE, "" },
		/* Podman and its conmon */
		{ "cgroup-podman-systemd", 0, ATTRIB_RUNTIME_PODMAN, ATTRIB_ROLE_WORKLOAD, ID, "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-podman-conmon", 0, ATTRIB_RUNTIME_PODMAN, ATTRIB_ROLE_MONITOR, ID, "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-podman-cgroupfs", 0, ATTRIB_RUNTIME_PODMAN, ATTRIB_ROLE_WORKLOAD, PM_ID, "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-podman-rootless", 0, ATTRIB_RUNTIME_PODMAN, ATTRIB_ROLE_WORKLOAD, ID, "", ATTRIB_QOS_NONE, "" },
		/* no container */
		{ "cgroup-host-v2", 1, ATTRIB_RUNTIME_NONE, ATTRIB_ROLE_HOST, "", "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-host-hybrid", 1, ATTRIB_RUNTIME_NONE, ATTRIB_ROLE_HOST, "", "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-unknown-prefix", 1, ATTRIB_RUNTIME_NONE, ATTRIB_ROLE_HOST, "", "", ATTRIB_QOS_NONE, "" },
		{ "cgroup-short-id", 1, ATTRIB_RUNTIME_NONE, ATTRIB_ROLE_HOST, "", "", ATTRIB_QOS_NONE, "" },
		/* untrusted bytes: never half-parsed */
		{ "cgroup-truncated", -1, 0, 0, "", "", 0, "" },
		{ "cgroup-garbage", -1, 0, 0, "", "", 0, "" },
		{ "cgroup-empty", -1, 0, 0, "", "", 0, "" },
		{ "cgroup-no-fields", -1, 0, 0, "", "", 0, "" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		check_layout(&layouts[i]);
}

/* Every prefix of a real file, and every single-byte corruption of it, parses without a crash
 * (run under ASan by make fuzz-style builds) and never yields a wrong id. */
static void test_cgroup_prefixes_and_corruption(void **state)
{
	size_t len;
	char *buf = slurp("cgroup-containerd-systemd-hybrid", &len);
	struct attrib_cgroup cg;

	(void)state;
	for (size_t n = 0; n <= len; n++) {
		char *cut = malloc(n + 1);
		memcpy(cut, buf, n);
		if (attrib_parse_cgroup(cut, n, &cg) == 0)
			assert_string_equal(cg.container_id, ID);
		free(cut);
	}
	for (size_t i = 0; i < len; i++) {
		char saved = buf[i];
		buf[i] = (char)0xff;
		if (attrib_parse_cgroup(buf, len, &cg) == 0)
			assert_int_equal(strlen(cg.container_id), ATTRIB_ID_LEN);
		buf[i] = saved;
	}
	free(buf);
}

/* --- state files ---------------------------------------------------------------------- */

static struct attrib_record parse_config(const char *file, int expect_rc)
{
	struct attrib_record r;
	size_t len;
	char *buf = slurp(file, &len);

	memset(&r, 0, sizeof(r));
	if (attrib_parse_oci_config(buf, len, &r) != expect_rc)
		fail_msg("%s: expected rc %d", file, expect_rc);
	free(buf);
	return r;
}

static void test_oci_config(void **state)
{
	struct attrib_record r;

	(void)state;
	r = parse_config("config-containerd-container.json", 0);
	assert_int_equal(r.runtime, ATTRIB_RUNTIME_CONTAINERD);
	assert_int_equal(r.role, ATTRIB_ROLE_WORKLOAD);
	assert_string_equal(r.k8s_namespace, "team-a");
	assert_string_equal(r.pod_name, "agent-7f9c");
	assert_string_equal(r.pod_uid, CD_UID);
	assert_string_equal(r.k8s_container_name, "agent");

	r = parse_config("config-containerd-sandbox.json", 0);
	assert_int_equal(r.role, ATTRIB_ROLE_SANDBOX);
	assert_string_equal(r.pod_name, "agent-7f9c");
	assert_string_equal(r.k8s_container_name, "");

	r = parse_config("config-crio-container.json", 0);
	assert_int_equal(r.runtime, ATTRIB_RUNTIME_CRIO);
	assert_int_equal(r.role, ATTRIB_ROLE_WORKLOAD);
	assert_string_equal(r.k8s_namespace, "team-a");
	assert_string_equal(r.pod_name, "agent-7f9c");
	assert_string_equal(r.pod_uid, UID);
	assert_string_equal(r.k8s_container_name, "agent");

	r = parse_config("config-crio-sandbox.json", 0);
	assert_int_equal(r.role, ATTRIB_ROLE_SANDBOX);
	assert_string_equal(r.k8s_container_name, ""); /* not "POD" */
	assert_string_equal(r.pod_name, "agent-7f9c");

	r = parse_config("config-podman.json", 0);
	assert_int_equal(r.runtime, ATTRIB_RUNTIME_PODMAN);
	assert_string_equal(r.pod_name, "");

	/* hostile or broken */
	parse_config("config-truncated.json", -1);
	parse_config("config-garbage.json", -1);
	parse_config("config-array.json", -1);
	parse_config("config-annotations-not-object.json", -1);
	r = parse_config("config-wrong-types.json", 0);
	assert_string_equal(r.pod_name, "");           /* a number */
	assert_string_equal(r.k8s_namespace, "");      /* null */
	assert_string_equal(r.k8s_container_name, ""); /* 300 bytes: never cut */
}

static void test_docker_and_storage(void **state)
{
	struct attrib_record r;
	size_t len;
	char *buf;

	(void)state;
	memset(&r, 0, sizeof(r));
	buf = slurp("docker-config.v2.json", &len);
	assert_int_equal(attrib_parse_docker_config(buf, len, &r), 0);
	free(buf);
	assert_int_equal(r.runtime, ATTRIB_RUNTIME_DOCKER);
	assert_string_equal(r.container_name, "weather-mcp");
	assert_string_equal(r.pod_name, "");

	memset(&r, 0, sizeof(r));
	buf = slurp("docker-config.v2-dockershim.json", &len);
	assert_int_equal(attrib_parse_docker_config(buf, len, &r), 0);
	free(buf);
	assert_string_equal(r.pod_name, "agent-7f9c");
	assert_string_equal(r.k8s_namespace, "team-a");
	assert_string_equal(r.k8s_container_name, "agent");
	assert_int_equal(r.role, ATTRIB_ROLE_WORKLOAD);

	memset(&r, 0, sizeof(r));
	buf = slurp("storage-containers.json", &len);
	assert_int_equal(attrib_parse_storage_containers(buf, len, PM_ID, &r), 0);
	assert_string_equal(r.container_name, "quirky_mcp");
	assert_int_equal(attrib_parse_storage_containers(buf, len, ID, &r), -1);
	free(buf);
	buf = slurp("config-garbage.json", &len);
	assert_int_equal(attrib_parse_storage_containers(buf, len, PM_ID, &r), -1);
	assert_int_equal(attrib_parse_docker_config(buf, len, &r), -1);
	free(buf);
}

/* --- the chain, over a fake host root ------------------------------------------------- */

struct fake {
	char root[128];
};

static void put(struct fake *f, const char *rel, const char *data, size_t len)
{
	char path[512], *slash;
	FILE *out;

	snprintf(path, sizeof(path), "%s/%s", f->root, rel);
	for (slash = strchr(path + strlen(f->root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
	out = fopen(path, "wb");
	assert_non_null(out);
	assert_int_equal(fwrite(data, 1, len, out), len);
	fclose(out);
}

static void put_fixture(struct fake *f, const char *rel, const char *fixture)
{
	size_t len;
	char *buf = slurp(fixture, &len);

	put(f, rel, buf, len);
	free(buf);
}

/* /proc/PID/stat with ppid, comm and start time (field 22). */
static void put_proc(struct fake *f, int pid, const char *comm, int ppid, unsigned long long start, const char *cgroup_fixture)
{
	char rel[64], stat[256];
	int n = snprintf(stat, sizeof(stat), "%d (%s) S %d %d %d 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 %llu 1000 10 0\n",
			 pid, comm, ppid, pid, pid, start);

	snprintf(rel, sizeof(rel), "proc/%d/stat", pid);
	put(f, rel, stat, (size_t)n);
	if (cgroup_fixture) {
		snprintf(rel, sizeof(rel), "proc/%d/cgroup", pid);
		put_fixture(f, rel, cgroup_fixture);
	}
}

static void link_in(struct fake *f, const char *rel, const char *target_rel)
{
	char path[512], target[512];

	snprintf(path, sizeof(path), "%s/%s", f->root, rel);
	snprintf(target, sizeof(target), "%s/%s", f->root, target_rel);
	assert_int_equal(symlink(target, path), 0);
}

static int fake_setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	snprintf(f->root, sizeof(f->root), "/tmp/mcpsonde-attrib-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	put(f, "proc/self/stat", "", 0);
	*state = f;
	return 0;
}

static int fake_teardown(void **state)
{
	struct fake *f = *state;
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static struct attrib *fake_attrib(struct fake *f, unsigned max_procs, unsigned max_ctrs)
{
	struct attrib_opts o = { .host_root = f->root, .node_name = "node-1", .max_processes = max_procs, .max_containers = max_ctrs };
	char err[256] = "";
	struct attrib *a = attrib_new(&o, err, sizeof(err));

	if (!a)
		fail_msg("attrib_new: %s", err);
	return a;
}

#define CD_STATE "run/containerd/io.containerd.runtime.v2.task/k8s.io/"

static void test_lookup_containerd(void **state)
{
	struct fake *f = *state;
	struct attrib *a;
	const struct attrib_record *r;
	struct attrib_attr attrs[ATTRIB_ATTRS_MAX];
	struct attrib_stats st;
	size_t n;

	put_proc(f, 100, "node", 90, 5000, "cgroup-containerd-cgroupfs");
	put_proc(f, 101, "node", 100, 5100, "cgroup-containerd-cgroupfs");
	put_fixture(f, CD_STATE CD_ID "/config.json", "config-containerd-container.json");
	a = fake_attrib(f, 0, 0);

	r = attrib_lookup(a, 100, 5000, 0);
	assert_non_null(r);
	assert_int_equal(r->state, ATTRIB_RESOLVED);
	assert_int_equal(r->role, ATTRIB_ROLE_WORKLOAD);
	assert_int_equal(r->qos, ATTRIB_QOS_BESTEFFORT);
	n = attrib_attributes(r, attrs);
	assert_int_equal(n, 7);
	assert_string_equal(attrs[0].key, "k8s.namespace.name");
	assert_string_equal(attrs[0].value, "team-a");
	assert_string_equal(attrs[1].key, "k8s.pod.name");
	assert_string_equal(attrs[1].value, "agent-7f9c");
	assert_string_equal(attrs[2].key, "k8s.pod.uid");
	assert_string_equal(attrs[2].value, CD_UID);
	assert_string_equal(attrs[3].key, "k8s.container.name");
	assert_string_equal(attrs[3].value, "agent");
	assert_string_equal(attrs[4].key, "k8s.node.name");
	assert_string_equal(attrs[4].value, "node-1");
	assert_string_equal(attrs[5].key, "container.id");
	assert_string_equal(attrs[5].value, CD_ID);
	assert_string_equal(attrs[6].key, "container.runtime");
	assert_string_equal(attrs[6].value, "containerd");

	/* Same process again: from the cache. Another process of the container: same record. */
	assert_ptr_equal(attrib_lookup(a, 100, 5000, 0), r);
	assert_ptr_equal(attrib_lookup(a, 101, 5100, 0), r);
	/* Start time 0: whatever runs as the pid now. */
	assert_ptr_equal(attrib_lookup(a, 100, 0, 0), r);
	/* A pid reused by another process, or gone. */
	assert_null(attrib_lookup(a, 100, 4999, 0));
	assert_null(attrib_lookup(a, 4242, 1, 0));
	attrib_get_stats(a, &st);
	assert_int_equal(st.lookups, 6);
	assert_int_equal(st.process_hits, 1);
	assert_int_equal(st.container_hits, 2);
	assert_int_equal(st.gone, 2);
	assert_int_equal(st.metadata_found, 1);
	assert_int_equal(st.containers, 1);
	attrib_forget(a, 100, 5000);
	attrib_get_stats(a, &st);
	assert_int_equal(st.processes, 1);
	attrib_free(a);
}

static void test_lookup_host_sandbox_and_garbage(void **state)
{
	struct fake *f = *state;
	struct attrib *a;
	const struct attrib_record *r;
	struct attrib_attr attrs[ATTRIB_ATTRS_MAX];
	struct attrib_stats st;
	char sandbox_cgroup[512];
	int n;

	put_proc(f, 1, "init", 0, 1, "cgroup-host-hybrid");
	put_proc(f, 102, "pause", 90, 6000, NULL);
	n = snprintf(sandbox_cgroup, sizeof(sandbox_cgroup), "0::/kubepods/besteffort/pod%s/%s\n", CD_UID, CD_SANDBOX);
	put(f, "proc/102/cgroup", sandbox_cgroup, (size_t)n);
	put_fixture(f, CD_STATE CD_SANDBOX "/config.json", "config-containerd-sandbox.json");
	put_proc(f, 103, "evil", 90, 7000, "cgroup-garbage");
	a = fake_attrib(f, 0, 0);

	r = attrib_lookup(a, 1, 1, 0);
	assert_int_equal(r->role, ATTRIB_ROLE_HOST);
	assert_int_equal(r->state, ATTRIB_RESOLVED);
	assert_int_equal(attrib_attributes(r, attrs), 1);
	assert_string_equal(attrs[0].key, "k8s.node.name");

	r = attrib_lookup(a, 102, 6000, 0);
	assert_int_equal(r->role, ATTRIB_ROLE_SANDBOX);
	assert_string_equal(r->pod_name, "agent-7f9c");

	r = attrib_lookup(a, 103, 7000, 0);
	assert_non_null(r);
	assert_int_equal(r->state, ATTRIB_UNRESOLVED);
	attrib_get_stats(a, &st);
	assert_int_equal(st.cgroup_unparsed, 1);
	attrib_free(a);
}

/* State not there yet (a container starting): cgroup facts now, names after a retry; a held
 * record stays valid when a retry replaces it. */
static void test_retry_with_backoff(void **state)
{
	struct fake *f = *state;
	const struct attrib_record *r, *held, *r2;
	struct attrib_stats st;
	struct attrib *a;
	const uint64_t s = 1000000000ull;

	put_proc(f, 100, "node", 90, 5000, "cgroup-containerd-cgroupfs");
	a = fake_attrib(f, 0, 0);
	r = attrib_lookup(a, 100, 5000, 10 * s);
	assert_int_equal(r->state, ATTRIB_CGROUP_ONLY);
	assert_string_equal(r->container_id, CD_ID);
	assert_string_equal(r->pod_uid, CD_UID);
	assert_string_equal(r->pod_name, "");
	held = attrib_record_hold(r);

	put_fixture(f, CD_STATE CD_ID "/config.json", "config-containerd-container.json");
	r = attrib_lookup(a, 100, 5000, 10 * s + s / 2); /* before the 1 s backoff */
	assert_int_equal(r->state, ATTRIB_CGROUP_ONLY);
	r2 = attrib_lookup(a, 100, 5000, 11 * s);
	assert_int_equal(r2->state, ATTRIB_RESOLVED);
	assert_string_equal(r2->pod_name, "agent-7f9c");
	assert_int_equal(held->state, ATTRIB_CGROUP_ONLY);
	assert_string_equal(held->container_id, CD_ID);
	attrib_record_release(held);
	attrib_get_stats(a, &st);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.metadata_missing, 1);
	assert_int_equal(st.metadata_found, 1);
	/* A record held past attrib_free stays readable. */
	held = attrib_record_hold(r2);
	attrib_free(a);
	assert_string_equal(held->k8s_container_name, "agent");
	attrib_record_release(held);
}

/* A FIFO, a directory or a huge file where config.json should be: counted as invalid, no
 * blocking, no crash; a symlinked state file is still read (runtimes never write one, and
 * the host root itself may be a bind mount). */
static void test_hostile_state_files(void **state)
{
	struct fake *f = *state;
	struct attrib_stats st;
	struct attrib *a;
	const struct attrib_record *r;
	char path[512], *big;
	int n;
	char cg[512];

	put_proc(f, 100, "node", 90, 5000, "cgroup-containerd-cgroupfs");
	put(f, CD_STATE CD_ID "/placeholder", "", 0);
	snprintf(path, sizeof(path), "%s/" CD_STATE CD_ID "/config.json", f->root);
	assert_int_equal(mkfifo(path, 0600), 0);
	a = fake_attrib(f, 0, 0);
	r = attrib_lookup(a, 100, 5000, 0);
	assert_int_equal(r->state, ATTRIB_CGROUP_ONLY);
	attrib_get_stats(a, &st);
	assert_int_equal(st.metadata_invalid, 1);

	/* 5 MiB of valid JSON: over the 4 MiB bound. */
	unlink(path);
	big = malloc(5u << 20);
	memset(big, ' ', 5u << 20);
	memcpy(big, "{\"annotations\":{}}", 18);
	put(f, CD_STATE CD_ID "/config.json", big, 5u << 20);
	free(big);
	r = attrib_lookup(a, 100, 5000, 3600ull * 1000000000ull);
	assert_int_equal(r->state, ATTRIB_CGROUP_ONLY);
	attrib_get_stats(a, &st);
	assert_int_equal(st.metadata_invalid, 2);

	/* Truncated JSON. */
	put_fixture(f, CD_STATE CD_ID "/config.json", "config-truncated.json");
	r = attrib_lookup(a, 100, 5000, 7200ull * 1000000000ull);
	assert_int_equal(r->state, ATTRIB_CGROUP_ONLY);
	attrib_get_stats(a, &st);
	assert_int_equal(st.metadata_invalid, 3);
	attrib_free(a);

	/* A cgroup file of 100 KiB (over the 64 KiB bound): unresolved, counted. */
	n = snprintf(cg, sizeof(cg), "0::/kubepods/besteffort/pod%s/%s\n", CD_UID, CD_ID);
	big = malloc(100u << 10);
	for (size_t off = 0; off + (size_t)n <= (100u << 10); off += (size_t)n)
		memcpy(big + off, cg, (size_t)n);
	put(f, "proc/100/cgroup", big, (size_t)(100u << 10) / (size_t)n * (size_t)n);
	free(big);
	a = fake_attrib(f, 0, 0);
	r = attrib_lookup(a, 100, 5000, 0);
	assert_int_equal(r->state, ATTRIB_UNRESOLVED);
	attrib_get_stats(a, &st);
	assert_int_equal(st.cgroup_unparsed, 1);
	attrib_free(a);
}

/* State kept anywhere: found through the containerd shim's cwd (the sandbox's bundle; the
 * container's bundle is its sibling), and through conmon's -b. */
static void test_ancestor_walk(void **state)
{
	struct fake *f = *state;
	struct attrib *a;
	const struct attrib_record *r;
	char cmdline[512];
	int n;

	put_proc(f, 200, "node", 150, 9000, "cgroup-containerd-cgroupfs");
	put_proc(f, 150, "sh", 140, 8900, "cgroup-containerd-cgroupfs");
	put_proc(f, 140, "containerd-shim", 1, 8800, NULL);
	put_fixture(f, "var/lib/elsewhere/k8s.io/" CD_SANDBOX "/config.json", "config-containerd-sandbox.json");
	put_fixture(f, "var/lib/elsewhere/k8s.io/" CD_ID "/config.json", "config-containerd-container.json");
	link_in(f, "proc/140/cwd", "var/lib/elsewhere/k8s.io/" CD_SANDBOX);

	put_proc(f, 300, "node", 299, 9100, "cgroup-podman-cgroupfs");
	put_proc(f, 299, "conmon", 1, 9050, NULL);
	n = snprintf(cmdline, sizeof(cmdline), "/usr/bin/conmon%c--api-version%c1%c-c%c%s%c-u%c%s%c-r%c/usr/bin/runc%c-b%c"
		     "/srv/storage/vfs-containers/%s/userdata%c-n%cquirky_mcp%c", 0, 0, 0, 0, PM_ID, 0, 0, PM_ID, 0, 0, 0,
		     0, PM_ID, 0, 0, 0);
	put(f, "proc/299/cmdline", cmdline, (size_t)n);
	link_in(f, "proc/299/root", "hostfs");
	put_fixture(f, "hostfs/srv/storage/vfs-containers/" PM_ID "/userdata/config.json", "config-podman.json");
	put_fixture(f, "hostfs/srv/storage/vfs-containers/containers.json", "storage-containers.json");

	a = fake_attrib(f, 0, 0);
	r = attrib_lookup(a, 200, 9000, 0);
	assert_int_equal(r->state, ATTRIB_RESOLVED);
	assert_string_equal(r->pod_name, "agent-7f9c");
	assert_string_equal(r->k8s_container_name, "agent");

	r = attrib_lookup(a, 300, 9100, 0);
	assert_int_equal(r->state, ATTRIB_RESOLVED);
	assert_int_equal(r->runtime, ATTRIB_RUNTIME_PODMAN);
	assert_string_equal(r->container_name, "quirky_mcp");
	assert_string_equal(r->container_id, PM_ID);
	attrib_free(a);
}

/* The usual roots of Docker and CRI-O (with containers/storage's names beside them). */
static void test_known_roots(void **state)
{
	struct fake *f = *state;
	struct attrib *a;
	const struct attrib_record *r;

	put_proc(f, 400, "node", 1, 100, "cgroup-docker-systemd");
	put_fixture(f, "var/lib/docker/containers/" ID "/config.v2.json", "docker-config.v2.json");
	put_proc(f, 500, "node", 1, 100, "cgroup-crio-systemd");
	put_fixture(f, "run/containers/storage/overlay-containers/" ID "/userdata/config.json", "config-crio-container.json");
	a = fake_attrib(f, 0, 0);
	r = attrib_lookup(a, 400, 100, 0);
	assert_int_equal(r->runtime, ATTRIB_RUNTIME_DOCKER);
	assert_string_equal(r->container_name, "weather-mcp");
	attrib_free(a);
	/* Same id, now a CRI-O container (a new attrib: the container cache is keyed by id). */
	a = fake_attrib(f, 0, 0);
	r = attrib_lookup(a, 500, 100, 0);
	assert_int_equal(r->runtime, ATTRIB_RUNTIME_CRIO);
	assert_string_equal(r->pod_name, "agent-7f9c");
	assert_string_equal(r->pod_uid, UID);
	attrib_free(a);
}

#define SRV_ID "c0ffee0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6"
#define SRV_UID "5a1f0c9e-3b7d-4e21-9f60-2c8d4b6e1a77"

/* The session event of id, parsed back. */
static json_t *session_event_json(const struct session_identity *id)
{
	struct sonde_event ev = { .type = EV_SESSION, .pid = id->pid, .session = id };
	struct outbuf b = { 0 };
	json_t *j;

	event_render(&b, &ev, NULL);
	j = json_loadb(b.data, b.len, 0, NULL);
	assert_non_null(j);
	outbuf_free(&b);
	return j;
}

static const char *member(const json_t *o, const char *a, const char *b)
{
	return json_string_value(json_object_get(json_object_get(o, a), b));
}

/* A server's client gets where it runs, from the same chain: an agent in another pod is named
 * by its pod, one in the server's own container says so, one on the host has no resource. The
 * records stay valid while held, whatever the caches do. */
static void test_client_where(void **state)
{
	struct fake *f = *state;
	struct attrib *a;
	struct session_identity id = { .pid = 600, .start_ticks = 6000, .comm = "node" };
	struct proc_ref agent = { .pid = 100, .start_ticks = 5000, .comm = "agent" }, host = { .pid = 1, .start_ticks = 1, .comm = "init" };
	char cgroup[256];
	json_t *j, *c;
	int n;

	put_proc(f, 1, "init", 0, 1, "cgroup-host-hybrid");
	put_proc(f, 100, "agent", 90, 5000, "cgroup-containerd-cgroupfs");
	put_fixture(f, CD_STATE CD_ID "/config.json", "config-containerd-container.json");
	put_proc(f, 101, "node", 100, 5100, "cgroup-containerd-cgroupfs");
	put_proc(f, 600, "node", 90, 6000, NULL);
	n = snprintf(cgroup, sizeof(cgroup), "0::/kubepods/besteffort/pod%s/%s\n", SRV_UID, SRV_ID);
	put(f, "proc/600/cgroup", cgroup, (size_t)n);
	put_fixture(f, CD_STATE SRV_ID "/config.json", "config-containerd-server.json");
	a = fake_attrib(f, 0, 0);

	/* as the targets stage does: the server's record held, the client's looked up and held */
	id.where = attrib_record_hold(attrib_lookup(a, 600, 6000, 0));
	agent.where = attrib_lookup(a, 100, 5000, 0);
	proc_ref_assign(&id.client_process, &agent);
	attrib_free(a);

	j = session_event_json(&id);
	assert_string_equal(member(j, "resource", "k8s.pod.name"), "weather-5d8b");
	c = json_object_get(j, "client_process");
	assert_int_equal(json_integer_value(json_object_get(c, "pid")), 100);
	assert_string_equal(member(c, "resource", "k8s.namespace.name"), "team-a");
	assert_string_equal(member(c, "resource", "k8s.pod.name"), "agent-7f9c");
	assert_string_equal(member(c, "resource", "k8s.container.name"), "agent");
	assert_string_equal(member(c, "resource", "k8s.pod.uid"), CD_UID);
	assert_null(json_object_get(c, "same_container"));
	json_decref(j);
	/* the inventory's and the reports' form says the same */
	j = proc_ref_json(&id.client_process, id.where);
	assert_string_equal(member(j, "resource", "k8s.pod.name"), "agent-7f9c");
	json_decref(j);

	/* a server in the agent's own container (101, forked by it): no resource, the same */
	a = fake_attrib(f, 0, 0);
	attrib_record_release(id.where);
	id.pid = 101;
	id.where = attrib_record_hold(attrib_lookup(a, 101, 5100, 0));
	agent.where = attrib_lookup(a, 100, 5000, 0);
	proc_ref_assign(&id.client_process, &agent);
	j = session_event_json(&id);
	c = json_object_get(j, "client_process");
	assert_true(json_is_true(json_object_get(c, "same_container")));
	assert_null(json_object_get(c, "resource"));
	assert_string_equal(member(j, "resource", "k8s.pod.name"), "agent-7f9c");
	json_decref(j);
	j = proc_ref_json(&id.client_process, id.where);
	assert_true(json_is_true(json_object_get(j, "same_container")));
	json_decref(j);

	/* a client on the host: neither */
	host.where = attrib_lookup(a, 1, 1, 0);
	proc_ref_assign(&id.client_process, &host);
	j = session_event_json(&id);
	c = json_object_get(j, "client_process");
	assert_int_equal(json_integer_value(json_object_get(c, "pid")), 1);
	assert_null(json_object_get(c, "resource"));
	assert_null(json_object_get(c, "same_container"));
	json_decref(j);
	attrib_free(a);

	proc_ref_clear(&id.client_process);
	assert_int_equal(id.client_process.pid, 0);
	attrib_record_release(id.where);
}

/* Both caches are bounded; evictions are counted and an evicted entry is rebuilt. */
static void test_bounds(void **state)
{
	struct fake *f = *state;
	struct attrib_stats st;
	struct attrib *a;
	char cg[256];

	for (int i = 0; i < 3; i++) {
		char rel[64];
		int n = snprintf(cg, sizeof(cg), "0::/docker/%063d%d\n", 0, i);
		put_proc(f, 600 + i, "node", 1, 100, NULL);
		snprintf(rel, sizeof(rel), "proc/%d/cgroup", 600 + i);
		put(f, rel, cg, (size_t)n);
	}
	a = fake_attrib(f, 2, 2);
	for (int i = 0; i < 3; i++)
		assert_int_equal(attrib_lookup(a, 600 + i, 100, 0)->state, ATTRIB_CGROUP_ONLY);
	assert_non_null(attrib_lookup(a, 600, 100, 0));
	attrib_get_stats(a, &st);
	assert_int_equal(st.processes, 2);
	assert_int_equal(st.containers, 2);
	assert_true(st.process_evictions >= 1);
	assert_true(st.container_evictions >= 1);
	attrib_free(a);
}

static void test_options(void **state)
{
	struct attrib_opts o = { .host_root = "/nonexistent-mcpsonde-root" };
	char err[256] = "";
	struct attrib *a;

	(void)state;
	assert_null(attrib_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "not a directory"));
	o.host_root = "/usr";
	assert_null(attrib_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "no proc filesystem"));

	setenv("NODE_NAME", "node-from-downward-api", 1);
	o.host_root = "/";
	a = attrib_new(&o, err, sizeof(err));
	assert_non_null(a);
	assert_string_equal(attrib_node_name(a), "node-from-downward-api");
	/* The real /proc: this process is attributed without a crash, whatever it runs in. */
	assert_non_null(attrib_lookup(a, getpid(), 0, 0));
	attrib_free(a);
	unsetenv("NODE_NAME");
	a = attrib_new(NULL, err, sizeof(err));
	assert_non_null(a);
	{
		char host[256];
		gethostname(host, sizeof(host));
		assert_string_equal(attrib_node_name(a), host);
	}
	attrib_free(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cgroup_layouts),
		cmocka_unit_test(test_cgroup_prefixes_and_corruption),
		cmocka_unit_test(test_oci_config),
		cmocka_unit_test(test_docker_and_storage),
		cmocka_unit_test_setup_teardown(test_lookup_containerd, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_lookup_host_sandbox_and_garbage, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_retry_with_backoff, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_hostile_state_files, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_ancestor_walk, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_known_roots, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_bounds, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_client_where, fake_setup, fake_teardown),
		cmocka_unit_test(test_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

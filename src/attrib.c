/* attrib.c -- attribution: process -> container -> pod -> node, from local files only.
 *
 * Two caches, both bounded and least-recently-used first out:
 *   processes   (pid, start ticks) -> container id ("" for a host process)
 *   containers  container id -> the current record of that container
 * A record is replaced, never changed: a retry that finds the metadata installs a new record
 * and releases the old one, which lives on while someone holds it.
 *
 * The order of a lookup: process cache; else /proc/PID/stat (is it still the process started
 * then?) and /proc/PID/cgroup; a container id known to the container cache; else the
 * container's state files: the runtimes' usual roots first, then the container's ancestors
 * (containerd shim, conmon) for state kept anywhere else. See attrib.h for the invariants. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <uthash.h>

#include "mcpsonde/attrib.h"

#define PROC_FILE_MAX (64u << 10)     /* /proc/PID/cgroup, cmdline, stat */
#define STATE_FILE_MAX (4u << 20)     /* config.json, config.v2.json, containers.json */
#define ANCESTORS_MAX 16              /* parent links followed to find a shim or conmon */
#define RETRY_FIRST_NS 1000000000ull  /* 1 s */
#define RETRY_MAX_NS 60000000000ull   /* 60 s */

struct proc_key { /* hashed as bytes: no padding */
	uint64_t pid;
	uint64_t start_ticks;
};

struct proc_entry {
	struct proc_key key;
	char container_id[ATTRIB_ID_LEN + 1]; /* "" : host process */
	UT_hash_handle hh;
};

struct ctr_entry {
	char id[ATTRIB_ID_LEN + 1];
	struct attrib_record *rec;
	struct attrib_cgroup cg;
	pid_t pid;             /* a process of the container, for the ancestor walk on retry */
	uint64_t next_retry_ns;
	uint64_t backoff_ns;
	UT_hash_handle hh;
};

struct attrib {
	char root[4096];      /* host root without a trailing '/'; "" for / */
	char node_name[ATTRIB_NAME_MAX + 1];
	unsigned max_processes, max_containers;
	struct proc_entry *procs;
	struct ctr_entry *ctrs;
	struct attrib_record *host;    /* shared by every process in no container */
	struct attrib_record *unknown; /* cgroup unreadable: never cached */
	struct attrib_stats stats;
};

/* --- names ---------------------------------------------------------------------------- */

const char *attrib_runtime_name(enum attrib_runtime rt)
{
	switch (rt) {
	case ATTRIB_RUNTIME_CONTAINERD: return "containerd";
	case ATTRIB_RUNTIME_CRIO: return "cri-o";
	case ATTRIB_RUNTIME_DOCKER: return "docker";
	case ATTRIB_RUNTIME_PODMAN: return "podman";
	default: return "";
	}
}

const char *attrib_role_name(enum attrib_role role)
{
	switch (role) {
	case ATTRIB_ROLE_WORKLOAD: return "workload";
	case ATTRIB_ROLE_SANDBOX: return "sandbox";
	case ATTRIB_ROLE_MONITOR: return "monitor";
	default: return "host";
	}
}

const char *attrib_qos_name(enum attrib_qos qos)
{
	switch (qos) {
	case ATTRIB_QOS_GUARANTEED: return "guaranteed";
	case ATTRIB_QOS_BURSTABLE: return "burstable";
	case ATTRIB_QOS_BESTEFFORT: return "besteffort";
	default: return "";
	}
}

const char *attrib_state_name(enum attrib_state s)
{
	switch (s) {
	case ATTRIB_RESOLVED: return "resolved";
	case ATTRIB_CGROUP_ONLY: return "cgroup_only";
	default: return "unresolved";
	}
}

/* --- cgroup paths --------------------------------------------------------------------- */

static bool is_container_id(const char *s, size_t n)
{
	if (n != ATTRIB_ID_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isdigit((unsigned char)s[i]) && !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

/* A pod uid as the kubelet writes it: with dashes (cgroupfs) or underscores (systemd). */
static bool take_pod_uid(const char *s, size_t n, char out[ATTRIB_UID_LEN + 1])
{
	if (n != ATTRIB_UID_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool sep = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];
		if (sep ? (c != '-' && c != '_') : !isxdigit((unsigned char)c))
			return false;
		out[i] = sep ? '-' : (char)tolower((unsigned char)c);
	}
	out[n] = '\0';
	return true;
}

static bool has_prefix(const char *s, size_t n, const char *prefix, size_t *plen)
{
	size_t l = strlen(prefix);

	if (n < l || memcmp(s, prefix, l) != 0)
		return false;
	*plen = l;
	return true;
}

static enum attrib_runtime runtime_of_prefix(const char *s, size_t n, bool *monitor)
{
	static const struct {
		const char *prefix;
		enum attrib_runtime rt;
		bool monitor;
	} known[] = {
		{ "cri-containerd", ATTRIB_RUNTIME_CONTAINERD, false },
		{ "crio-conmon", ATTRIB_RUNTIME_CRIO, true },
		{ "crio", ATTRIB_RUNTIME_CRIO, false },
		{ "docker", ATTRIB_RUNTIME_DOCKER, false },
		{ "libpod-conmon", ATTRIB_RUNTIME_PODMAN, true },
		{ "libpod", ATTRIB_RUNTIME_PODMAN, false },
	};

	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		if (strlen(known[i].prefix) == n && memcmp(s, known[i].prefix, n) == 0) {
			*monitor = known[i].monitor;
			return known[i].rt;
		}
	}
	return ATTRIB_RUNTIME_NONE;
}

/* One path component, ".scope" stripped: "<prefix>-<id>", "<slice>:<prefix>:<id>" or "<id>". */
static bool component_container(const char *c, size_t n, struct attrib_cgroup *out)
{
	bool monitor = false;
	enum attrib_runtime rt;
	const char *colon;

	if (n > 6 && memcmp(c + n - 6, ".scope", 6) == 0)
		n -= 6;
	if (n < ATTRIB_ID_LEN || !is_container_id(c + n - ATTRIB_ID_LEN, ATTRIB_ID_LEN))
		return false;
	if (n == ATTRIB_ID_LEN) {
		rt = ATTRIB_RUNTIME_NONE; /* decided from the parent by the caller */
	} else if ((colon = memchr(c, ':', n - ATTRIB_ID_LEN)) && c[n - ATTRIB_ID_LEN - 1] == ':') {
		rt = runtime_of_prefix(colon + 1, (size_t)(c + n - ATTRIB_ID_LEN - 1 - (colon + 1)), &monitor);
		if (rt == ATTRIB_RUNTIME_NONE)
			return false;
	} else if (c[n - ATTRIB_ID_LEN - 1] == '-') {
		rt = runtime_of_prefix(c, n - ATTRIB_ID_LEN - 1, &monitor);
		if (rt == ATTRIB_RUNTIME_NONE)
			return false;
	} else {
		return false;
	}
	out->runtime = rt;
	out->role = monitor ? ATTRIB_ROLE_MONITOR : ATTRIB_ROLE_WORKLOAD;
	memcpy(out->container_id, c + n - ATTRIB_ID_LEN, ATTRIB_ID_LEN);
	out->container_id[ATTRIB_ID_LEN] = '\0';
	return true;
}

/* Pod uid and QoS from a component above the container: "pod<uid>", "besteffort",
 * "burstable" (cgroupfs driver); "kubepods-<qos>-pod<uid>.slice", "kubepods-pod<uid>.slice",
 * "kubepods-<qos>.slice" (systemd driver; also the part before ':' of the mixed form). */
static void component_pod(const char *c, size_t n, struct attrib_cgroup *out, bool *kubepods)
{
	size_t l;

	if (n > 6 && memcmp(c + n - 6, ".slice", 6) == 0)
		n -= 6;
	if (has_prefix(c, n, "kubepods", &l)) {
		*kubepods = true;
		c += l;
		n -= l;
		if (has_prefix(c, n, "-besteffort", &l) || has_prefix(c, n, "-burstable", &l)) {
			out->qos = c[1] == 'b' && c[2] == 'e' ? ATTRIB_QOS_BESTEFFORT : ATTRIB_QOS_BURSTABLE;
			c += l;
			n -= l;
		}
		if (has_prefix(c, n, "-pod", &l) && !out->pod_uid[0])
			take_pod_uid(c + l, n - l, out->pod_uid);
		return;
	}
	if (n == 10 && memcmp(c, "besteffort", 10) == 0)
		out->qos = ATTRIB_QOS_BESTEFFORT;
	else if (n == 9 && memcmp(c, "burstable", 9) == 0)
		out->qos = ATTRIB_QOS_BURSTABLE;
	else if (has_prefix(c, n, "pod", &l) && !out->pod_uid[0])
		take_pod_uid(c + l, n - l, out->pod_uid);
}

/* One cgroup path: the deepest component naming a container, then pod and QoS above it. */
static bool path_container(const char *p, size_t n, struct attrib_cgroup *out)
{
	const char *comp[128];
	size_t len[128], nc = 0, i;
	int found = -1;
	bool kubepods = false;

	for (i = 0; i < n && nc < 128;) {
		size_t j = i;
		while (j < n && p[j] != '/')
			j++;
		if (j > i && !(j - i == 2 && p[i] == '.' && p[i + 1] == '.')) {
			comp[nc] = p + i;
			len[nc++] = j - i;
		}
		i = j + 1;
	}
	for (i = nc; i-- > 0;) {
		if (component_container(comp[i], len[i], out)) {
			found = (int)i;
			break;
		}
	}
	if (found < 0)
		return false;
	if (out->runtime == ATTRIB_RUNTIME_NONE) {
		/* A bare id: /docker/<id>, kubelet's cgroupfs /kubepods/.../pod<uid>/<id> (containerd
		 * unless the state files say otherwise), or containerd's /<namespace>/<id>. */
		if (found > 0 && len[found - 1] == 6 && memcmp(comp[found - 1], "docker", 6) == 0) {
			out->runtime = ATTRIB_RUNTIME_DOCKER;
		} else {
			out->runtime = ATTRIB_RUNTIME_CONTAINERD;
			if (found > 0 && len[found - 1] < sizeof(out->ctr_namespace) && strncmp(comp[found - 1], "pod", 3) != 0) {
				memcpy(out->ctr_namespace, comp[found - 1], len[found - 1]);
				out->ctr_namespace[len[found - 1]] = '\0';
			}
		}
	}
	/* The mixed form keeps the pod's slice in the container's own component. */
	{
		const char *colon = memchr(comp[found], ':', len[found]);
		if (colon)
			component_pod(comp[found], (size_t)(colon - comp[found]), out, &kubepods);
	}
	for (i = (size_t)found; i-- > 0;)
		component_pod(comp[i], len[i], out, &kubepods);
	if (kubepods) {
		out->ctr_namespace[0] = '\0';
		if (out->pod_uid[0] && out->qos == ATTRIB_QOS_NONE)
			out->qos = ATTRIB_QOS_GUARANTEED; /* Guaranteed pods sit right under kubepods */
	}
	return true;
}

int attrib_parse_cgroup(const char *buf, size_t len, struct attrib_cgroup *out)
{
	size_t i = 0;
	int lines = 0;

	memset(out, 0, sizeof(*out));
	out->role = ATTRIB_ROLE_HOST;
	while (i < len) {
		const char *line = buf + i, *nl = memchr(line, '\n', len - i), *c1, *c2;
		size_t n = nl ? (size_t)(nl - line) : len - i;

		i += n + 1;
		/* "hierarchy-ID:controller-list:path"; the path itself may hold ':'. */
		c1 = memchr(line, ':', n);
		c2 = c1 ? memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - line)) : NULL;
		if (!c1 || !c2 || c1 == line || c2 + 1 == line + n || c2[1] != '/')
			return -1;
		for (const char *d = line; d < c1; d++)
			if (!isdigit((unsigned char)*d))
				return -1;
		lines++;
		if (out->container_id[0])
			continue;
		{
			struct attrib_cgroup cand = { .role = ATTRIB_ROLE_HOST };
			if (path_container(c2 + 1, (size_t)(line + n - c2 - 1), &cand))
				*out = cand;
		}
	}
	if (!lines)
		return -1;
	return out->container_id[0] ? 0 : 1;
}

/* --- state files ---------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strnlen(src, cap - 1) : 0;

	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

static const char *json_str(json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* A name is taken whole or not at all: a cut name would label the wrong object. */
static bool set_name(char *dst, size_t cap, const char *v)
{
	size_t n = v ? strlen(v) : 0;

	if (!n || n >= cap)
		return false;
	memcpy(dst, v, n + 1);
	return true;
}

static bool any_str(json_t *obj, const char *key, char *dst, size_t cap)
{
	return set_name(dst, cap, json_str(obj, key));
}

static json_t *parse_object(const char *buf, size_t len)
{
	json_error_t e;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &e);

	if (root && !json_is_object(root) && !json_is_array(root)) {
		json_decref(root);
		return NULL;
	}
	return root;
}

/* Kubernetes keys shared by CRI-O's annotations and dockershim's labels. */
static bool kube_pod_keys(json_t *obj, struct attrib_record *out)
{
	bool any = false;

	any |= any_str(obj, "io.kubernetes.pod.namespace", out->k8s_namespace, sizeof(out->k8s_namespace));
	any |= any_str(obj, "io.kubernetes.pod.name", out->pod_name, sizeof(out->pod_name));
	any |= any_str(obj, "io.kubernetes.pod.uid", out->pod_uid, sizeof(out->pod_uid));
	any |= any_str(obj, "io.kubernetes.container.name", out->k8s_container_name, sizeof(out->k8s_container_name));
	return any;
}

int attrib_parse_oci_config(const char *buf, size_t len, struct attrib_record *out)
{
	json_t *root = parse_object(buf, len), *ann;
	const char *type;
	int rc = -1;

	if (!root || !json_is_object(root) || !json_is_object(ann = json_object_get(root, "annotations")))
		goto out;
	rc = 0;
	if ((type = json_str(ann, "io.kubernetes.cri.container-type"))) {
		/* containerd's CRI plugin */
		out->runtime = ATTRIB_RUNTIME_CONTAINERD;
		out->role = strcmp(type, "sandbox") == 0 ? ATTRIB_ROLE_SANDBOX : ATTRIB_ROLE_WORKLOAD;
		any_str(ann, "io.kubernetes.cri.sandbox-namespace", out->k8s_namespace, sizeof(out->k8s_namespace));
		any_str(ann, "io.kubernetes.cri.sandbox-name", out->pod_name, sizeof(out->pod_name));
		any_str(ann, "io.kubernetes.cri.sandbox-uid", out->pod_uid, sizeof(out->pod_uid));
		if (out->role == ATTRIB_ROLE_WORKLOAD)
			any_str(ann, "io.kubernetes.cri.container-name", out->k8s_container_name, sizeof(out->k8s_container_name));
	} else if ((type = json_str(ann, "io.kubernetes.cri-o.ContainerType"))) {
		out->runtime = ATTRIB_RUNTIME_CRIO;
		out->role = strcmp(type, "sandbox") == 0 ? ATTRIB_ROLE_SANDBOX : ATTRIB_ROLE_WORKLOAD;
		kube_pod_keys(ann, out);
		if (out->role == ATTRIB_ROLE_SANDBOX)
			out->k8s_container_name[0] = '\0'; /* CRI-O names it "POD" */
	} else if ((type = json_str(ann, "io.container.manager")) && strcmp(type, "libpod") == 0) {
		out->runtime = ATTRIB_RUNTIME_PODMAN;
	}
out:
	json_decref(root);
	return rc;
}

int attrib_parse_docker_config(const char *buf, size_t len, struct attrib_record *out)
{
	json_t *root = parse_object(buf, len), *labels;
	const char *name, *type;
	int rc = -1;

	if (!root || !json_is_object(root) || !(name = json_str(root, "Name")))
		goto out;
	rc = 0;
	out->runtime = ATTRIB_RUNTIME_DOCKER;
	out->role = ATTRIB_ROLE_WORKLOAD;
	set_name(out->container_name, sizeof(out->container_name), name[0] == '/' ? name + 1 : name);
	labels = json_object_get(json_object_get(root, "Config"), "Labels");
	if (json_is_object(labels) && kube_pod_keys(labels, out)) {
		type = json_str(labels, "io.kubernetes.docker.type");
		if (type && strcmp(type, "podsandbox") == 0) {
			out->role = ATTRIB_ROLE_SANDBOX;
			out->k8s_container_name[0] = '\0';
		}
	}
out:
	json_decref(root);
	return rc;
}

int attrib_parse_storage_containers(const char *buf, size_t len, const char *id, struct attrib_record *out)
{
	json_t *root = parse_object(buf, len), *c;
	size_t i;
	int rc = -1;

	if (!root || !json_is_array(root))
		goto out;
	json_array_foreach(root, i, c) {
		const char *cid = json_str(c, "id"), *name;
		if (!cid || strcmp(cid, id) != 0)
			continue;
		name = json_string_value(json_array_get(json_object_get(c, "names"), 0));
		if (set_name(out->container_name, sizeof(out->container_name), name))
			rc = 0;
		break;
	}
out:
	json_decref(root);
	return rc;
}

/* --- bounded reads -------------------------------------------------------------------- */

enum read_result { READ_OK, READ_MISSING, READ_INVALID };

/* Reads a regular file whole into a malloc'd buffer of at most max bytes. Non-blocking open
 * and a type check, so that a FIFO or device planted where a state file should be costs
 * nothing; larger than max is INVALID (parsing a cut JSON document would mislead). */
static enum read_result read_bounded(const char *path, size_t max, char **out, size_t *outlen)
{
	struct stat st;
	size_t len = 0, cap;
	char *buf;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR || errno == ESRCH ? READ_MISSING : READ_INVALID;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return READ_INVALID;
	}
	/* /proc files report size 0: start small and grow up to max. */
	cap = st.st_size > 0 && (size_t)st.st_size < max ? (size_t)st.st_size + 1 : 4096;
	buf = malloc(cap + 1);
	for (;;) {
		ssize_t n;
		if (!buf)
			break;
		if (len == cap) {
			char *nb;
			if (cap >= max + 1)
				break;
			cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
			if (!(nb = realloc(buf, cap + 1)))
				break;
			buf = nb;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			if (n < 0) {
				free(buf);
				return errno == ESRCH ? READ_MISSING : READ_INVALID;
			}
			buf[len] = '\0';
			*out = buf;
			*outlen = len;
			return READ_OK;
		}
		len += (size_t)n;
	}
	close(fd);
	free(buf);
	return READ_INVALID; /* too large, or out of memory */
}

static enum read_result read_proc(struct attrib *a, pid_t pid, const char *name, char **out, size_t *len)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/proc/%d/%s", a->root, (int)pid, name);
	return read_bounded(path, PROC_FILE_MAX, out, len);
}

/* Field 4 (ppid) and 22 (start time) of /proc/PID/stat, and comm. */
static int read_stat(struct attrib *a, pid_t pid, pid_t *ppid, uint64_t *start, char comm[17])
{
	char *buf, *open_p, *close_p;
	size_t len;
	unsigned long long st;
	int pp, rc = -1;

	if (read_proc(a, pid, "stat", &buf, &len) != READ_OK)
		return -1;
	open_p = strchr(buf, '(');
	close_p = strrchr(buf, ')');
	if (open_p && close_p && close_p > open_p && close_p[1] == ' ' &&
	    sscanf(close_p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
		   &pp, &st) == 2) {
		size_t n = (size_t)(close_p - open_p - 1);
		if (n > 16)
			n = 16;
		memcpy(comm, open_p + 1, n);
		comm[n] = '\0';
		*ppid = pp;
		*start = st;
		rc = 0;
	}
	free(buf);
	return rc;
}

/* --- records -------------------------------------------------------------------------- */

static struct attrib_record *record_new(const struct attrib *a)
{
	struct attrib_record *r = calloc(1, sizeof(*r));

	if (r) {
		r->refs = 1;
		copy_str(r->node_name, sizeof(r->node_name), a->node_name);
	}
	return r;
}

const struct attrib_record *attrib_record_hold(const struct attrib_record *r)
{
	if (r)
		__atomic_add_fetch(&((struct attrib_record *)r)->refs, 1, __ATOMIC_RELAXED);
	return r;
}

void attrib_record_release(const struct attrib_record *r)
{
	if (r && __atomic_sub_fetch(&((struct attrib_record *)r)->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free((void *)r);
}

size_t attrib_attributes(const struct attrib_record *r, struct attrib_attr out[ATTRIB_ATTRS_MAX])
{
	const struct attrib_attr all[] = {
		{ "k8s.namespace.name", r->k8s_namespace },
		{ "k8s.pod.name", r->pod_name },
		{ "k8s.pod.uid", r->pod_uid },
		{ "k8s.container.name", r->k8s_container_name },
		{ "k8s.node.name", r->node_name },
		{ "container.id", r->container_id },
		{ "container.name", r->container_name },
		{ "container.runtime", attrib_runtime_name(r->runtime) },
	};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i].value[0])
			out[n++] = all[i];
	return n;
}

bool attrib_same_container(const struct attrib_record *a, const struct attrib_record *b)
{
	return a && b && a->role == ATTRIB_ROLE_WORKLOAD && b->role == ATTRIB_ROLE_WORKLOAD && a->container_id[0] &&
	       strcmp(a->container_id, b->container_id) == 0;
}

/* --- finding a container's state ------------------------------------------------------ */

/* Outcome of one attempt, for the counters. */
enum meta_result { META_FOUND, META_MISSING, META_INVALID };

static enum meta_result meta_worse(enum meta_result a, enum meta_result b)
{
	return a == META_INVALID || b == META_INVALID ? META_INVALID : META_MISSING;
}

static enum meta_result try_file(const char *path, const char *id,
				 int (*parse)(const char *, size_t, const char *, struct attrib_record *),
				 struct attrib_record *rec)
{
	char *buf;
	size_t len;
	enum read_result r = read_bounded(path, STATE_FILE_MAX, &buf, &len);
	int rc;

	if (r != READ_OK)
		return r == READ_MISSING ? META_MISSING : META_INVALID;
	rc = parse(buf, len, id, rec);
	free(buf);
	return rc == 0 ? META_FOUND : META_INVALID;
}

static int parse_oci(const char *buf, size_t len, const char *id, struct attrib_record *rec)
{
	(void)id;
	return attrib_parse_oci_config(buf, len, rec);
}

static int parse_docker(const char *buf, size_t len, const char *id, struct attrib_record *rec)
{
	(void)id;
	return attrib_parse_docker_config(buf, len, rec);
}

/* The runtimes' usual state roots, relative to the host root. "%s" is the container id;
 * "%n" the containerd namespace. */
static const struct {
	enum attrib_runtime runtime; /* whose root: tried first when the cgroup says so */
	const char *fmt;
	bool oci; /* config.json (else Docker's config.v2.json) */
	const char *storage; /* containers/storage's containers.json beside it, for names */
} state_roots[] = {
	{ ATTRIB_RUNTIME_CONTAINERD, "/run/containerd/io.containerd.runtime.v2.task/%n/%s/config.json", true, NULL },
	{ ATTRIB_RUNTIME_CONTAINERD, "/run/k3s/containerd/io.containerd.runtime.v2.task/%n/%s/config.json", true, NULL },
	{ ATTRIB_RUNTIME_CRIO, "/run/containers/storage/overlay-containers/%s/userdata/config.json", true,
	  "/var/lib/containers/storage/overlay-containers/containers.json" },
	{ ATTRIB_RUNTIME_PODMAN, "/var/lib/containers/storage/overlay-containers/%s/userdata/config.json", true,
	  "/var/lib/containers/storage/overlay-containers/containers.json" },
	{ ATTRIB_RUNTIME_DOCKER, "/var/lib/docker/containers/%s/config.v2.json", false, NULL },
	{ ATTRIB_RUNTIME_DOCKER, "/run/docker/containerd/daemon/io.containerd.runtime.v2.task/moby/%s/config.json", true, NULL },
};

static void format_root(char *dst, size_t cap, const char *root, const char *fmt, const char *ns, const char *id)
{
	size_t n = (size_t)snprintf(dst, cap, "%s", root);

	for (const char *f = fmt; *f && n < cap - 1; f++) {
		if (f[0] == '%' && (f[1] == 's' || f[1] == 'n')) {
			n += (size_t)snprintf(dst + n, cap - n, "%s", f[1] == 's' ? id : ns);
			f++;
		} else {
			dst[n++] = *f;
			dst[n] = '\0';
		}
	}
	if (n >= cap)
		dst[cap - 1] = '\0';
}

static enum meta_result from_state_roots(struct attrib *a, const struct attrib_cgroup *cg, struct attrib_record *rec)
{
	const char *namespaces[] = { cg->ctr_namespace[0] ? cg->ctr_namespace : "k8s.io", "k8s.io", "moby", "default" };
	enum meta_result worst = META_MISSING;
	char path[4400];

	const size_t nroots = sizeof(state_roots) / sizeof(state_roots[0]);

	/* Two passes: the roots of the runtime the cgroup names, then every other one (a bare id
	 * under kubepods may be any runtime's). */
	for (size_t j = 0; j < 2 * nroots; j++) {
		size_t i = j % nroots;
		if ((j < nroots) != (state_roots[i].runtime == cg->runtime))
			continue;
		bool per_ns = strstr(state_roots[i].fmt, "%n") != NULL;
		for (size_t k = 0; k < (per_ns ? sizeof(namespaces) / sizeof(namespaces[0]) : 1); k++) {
			enum meta_result r;
			if (k > 0 && strcmp(namespaces[k], namespaces[0]) == 0)
				continue;
			format_root(path, sizeof(path), a->root, state_roots[i].fmt, namespaces[k], cg->container_id);
			r = try_file(path, cg->container_id, state_roots[i].oci ? parse_oci : parse_docker, rec);
			if (r == META_FOUND) {
				if (state_roots[i].storage) {
					format_root(path, sizeof(path), a->root, state_roots[i].storage, "", cg->container_id);
					try_file(path, cg->container_id, attrib_parse_storage_containers, rec);
				}
				return r;
			}
			worst = meta_worse(worst, r);
		}
	}
	return worst;
}

/* The value of option opt ("-b") in a NUL-separated command line, or NULL. */
static const char *cmdline_option(const char *buf, size_t len, const char *opt)
{
	for (size_t i = 0; i < len;) {
		const char *arg = buf + i;
		size_t n = strnlen(arg, len - i);
		if (strcmp(arg, opt) == 0 && i + n + 1 < len)
			return buf + i + n + 1;
		i += n + 1;
	}
	return NULL;
}

/* For state kept anywhere: walk up from pid to the container's shim or conmon. A containerd
 * shim's cwd is its pod sandbox's bundle, whose sibling <id> is the container's bundle;
 * conmon is given the bundle with -b. Both are reached through /proc/PID/{cwd,root}, magic
 * links that work whatever mount namespace this process is in. */
static enum meta_result from_ancestors(struct attrib *a, pid_t pid, const char *id, struct attrib_record *rec)
{
	char path[4400], comm[17];
	pid_t cur = pid, ppid;
	uint64_t start;

	for (int depth = 0; depth < ANCESTORS_MAX && cur > 1; depth++) {
		if (read_stat(a, cur, &ppid, &start, comm) < 0)
			return META_MISSING;
		if (depth > 0 && strncmp(comm, "containerd-shim", 15) == 0) {
			snprintf(path, sizeof(path), "%s/proc/%d/cwd/../%s/config.json", a->root, (int)cur, id);
			return try_file(path, id, parse_oci, rec);
		}
		if (depth > 0 && strcmp(comm, "conmon") == 0) {
			char *cmd;
			size_t len;
			const char *bundle, *cid;
			enum meta_result r;

			if (read_proc(a, cur, "cmdline", &cmd, &len) != READ_OK)
				return META_MISSING;
			bundle = cmdline_option(cmd, len, "-b");
			cid = cmdline_option(cmd, len, "-c");
			if (!bundle || bundle[0] != '/' || !cid || strcmp(cid, id) != 0) {
				free(cmd);
				return META_INVALID;
			}
			snprintf(path, sizeof(path), "%s/proc/%d/root%s/config.json", a->root, (int)cur, bundle);
			r = try_file(path, id, parse_oci, rec);
			/* containers/storage: <root>/<driver>-containers/<id>/userdata is the bundle. */
			snprintf(path, sizeof(path), "%s/proc/%d/root%s/../../containers.json", a->root, (int)cur, bundle);
			free(cmd);
			if (r == META_FOUND)
				try_file(path, id, attrib_parse_storage_containers, rec);
			return r;
		}
		cur = ppid;
	}
	return META_MISSING;
}

/* Fills rec from the container's state; rec already holds the cgroup facts. */
static enum meta_result resolve_metadata(struct attrib *a, const struct ctr_entry *ce, struct attrib_record *rec)
{
	enum meta_result roots, walk;

	if (ce->cg.role == ATTRIB_ROLE_MONITOR)
		return META_FOUND; /* conmon itself: its cgroup says all there is */
	roots = from_state_roots(a, &ce->cg, rec);
	if (roots == META_FOUND || ce->pid <= 0)
		return roots;
	walk = from_ancestors(a, ce->pid, ce->id, rec);
	return walk == META_FOUND ? walk : meta_worse(roots, walk);
}

/* A new record for the container from its cgroup facts and whatever its state files say. */
static struct attrib_record *container_record(struct attrib *a, struct ctr_entry *ce, uint64_t now_ns)
{
	struct attrib_record *rec = record_new(a);
	enum meta_result r;

	if (!rec)
		return NULL;
	rec->role = ce->cg.role;
	rec->runtime = ce->cg.runtime;
	rec->qos = ce->cg.qos;
	copy_str(rec->container_id, sizeof(rec->container_id), ce->cg.container_id);
	copy_str(rec->pod_uid, sizeof(rec->pod_uid), ce->cg.pod_uid);
	r = resolve_metadata(a, ce, rec);
	if (r == META_FOUND) {
		a->stats.metadata_found++;
		rec->state = ATTRIB_RESOLVED;
		ce->next_retry_ns = 0;
	} else {
		if (r == META_MISSING)
			a->stats.metadata_missing++;
		else
			a->stats.metadata_invalid++;
		rec->state = ATTRIB_CGROUP_ONLY;
		ce->backoff_ns = ce->backoff_ns ? ce->backoff_ns * 2 : RETRY_FIRST_NS;
		if (ce->backoff_ns > RETRY_MAX_NS)
			ce->backoff_ns = RETRY_MAX_NS;
		ce->next_retry_ns = now_ns + ce->backoff_ns;
	}
	return rec;
}

/* --- caches --------------------------------------------------------------------------- */

/* uthash keeps insertion order: re-adding on a hit makes the head the least recently used. */
static void ctr_touch(struct attrib *a, struct ctr_entry *ce)
{
	HASH_DEL(a->ctrs, ce);
	HASH_ADD_STR(a->ctrs, id, ce);
}

static void ctr_free(struct attrib *a, struct ctr_entry *ce)
{
	HASH_DEL(a->ctrs, ce);
	attrib_record_release(ce->rec);
	free(ce);
}

/* The container's entry, created (and its state read) on first sight; an entry still
 * without metadata is retried once its backoff has passed. */
static struct ctr_entry *ctr_get(struct attrib *a, const struct attrib_cgroup *cg, pid_t pid, uint64_t now_ns)
{
	struct ctr_entry *ce;

	HASH_FIND_STR(a->ctrs, cg->container_id, ce);
	if (ce) {
		ctr_touch(a, ce);
		if (ce->rec->state == ATTRIB_CGROUP_ONLY && now_ns >= ce->next_retry_ns) {
			struct attrib_record *rec;
			a->stats.retries++;
			ce->pid = pid;
			if ((rec = container_record(a, ce, now_ns))) {
				attrib_record_release(ce->rec);
				ce->rec = rec;
			}
		}
		return ce;
	}
	if (HASH_COUNT(a->ctrs) >= a->max_containers) {
		a->stats.container_evictions++;
		ctr_free(a, a->ctrs);
	}
	if (!(ce = calloc(1, sizeof(*ce))))
		return NULL;
	copy_str(ce->id, sizeof(ce->id), cg->container_id);
	ce->cg = *cg;
	ce->pid = pid;
	if (!(ce->rec = container_record(a, ce, now_ns))) {
		free(ce);
		return NULL;
	}
	HASH_ADD_STR(a->ctrs, id, ce);
	return ce;
}

/* --- lookups -------------------------------------------------------------------------- */

/* The process cache's entry for key, moved to the most recently used end; NULL if absent. */
static struct proc_entry *proc_find(struct attrib *a, const struct proc_key *key)
{
	struct proc_entry *pe;

	HASH_FIND(hh, a->procs, key, sizeof(*key), pe);
	if (pe) {
		HASH_DEL(a->procs, pe);
		HASH_ADD(hh, a->procs, key, sizeof(pe->key), pe);
	}
	return pe;
}

static struct proc_key proc_key(pid_t pid, uint64_t start_ticks)
{
	return (struct proc_key){ .pid = (uint64_t)pid, .start_ticks = start_ticks };
}

/* Reads what /proc says about pid: NULL when it is gone (or not the process started at
 * start_ticks), the unknown record when its cgroup file is unusable. */
static const struct attrib_record *lookup_proc(struct attrib *a, pid_t pid, uint64_t start_ticks, uint64_t now_ns)
{
	struct attrib_cgroup cg;
	struct proc_key key;
	struct proc_entry *pe;
	struct ctr_entry *ce;
	char comm[17], *buf;
	size_t len;
	pid_t ppid;
	uint64_t start;
	int rc;

	if (read_stat(a, pid, &ppid, &start, comm) < 0 || (start_ticks && start != start_ticks)) {
		a->stats.gone++;
		return NULL;
	}
	switch (read_proc(a, pid, "cgroup", &buf, &len)) {
	case READ_OK:
		break;
	case READ_MISSING:
		a->stats.gone++;
		return NULL;
	default:
		a->stats.cgroup_unparsed++;
		return a->unknown;
	}
	rc = attrib_parse_cgroup(buf, len, &cg);
	free(buf);
	if (rc < 0) {
		a->stats.cgroup_unparsed++;
		return a->unknown;
	}
	key = proc_key(pid, start);
	if (!(pe = proc_find(a, &key))) {
		if (HASH_COUNT(a->procs) >= a->max_processes) {
			pe = a->procs;
			HASH_DEL(a->procs, pe);
			free(pe);
			a->stats.process_evictions++;
		}
		if ((pe = calloc(1, sizeof(*pe)))) {
			pe->key = key;
			HASH_ADD(hh, a->procs, key, sizeof(pe->key), pe);
		}
	}
	if (pe)
		copy_str(pe->container_id, sizeof(pe->container_id), cg.container_id);
	if (!cg.container_id[0])
		return a->host;
	HASH_FIND_STR(a->ctrs, cg.container_id, ce);
	if (ce)
		a->stats.container_hits++;
	ce = ctr_get(a, &cg, pid, now_ns);
	return ce ? ce->rec : a->unknown;
}

const struct attrib_record *attrib_lookup(struct attrib *a, pid_t pid, uint64_t start_ticks, uint64_t now_ns)
{
	struct proc_key key = proc_key(pid, start_ticks);
	struct proc_entry *pe;
	struct ctr_entry *ce;

	a->stats.lookups++;
	if (start_ticks && (pe = proc_find(a, &key))) {
		if (!pe->container_id[0]) {
			a->stats.process_hits++;
			return a->host;
		}
		HASH_FIND_STR(a->ctrs, pe->container_id, ce);
		if (ce) {
			a->stats.process_hits++;
			return ctr_get(a, &ce->cg, pid, now_ns)->rec;
		}
		/* Its container was evicted since: read the process again. */
	}
	return lookup_proc(a, pid, start_ticks, now_ns);
}

void attrib_forget(struct attrib *a, pid_t pid, uint64_t start_ticks)
{
	struct proc_key key = proc_key(pid, start_ticks);
	struct proc_entry *pe;

	HASH_FIND(hh, a->procs, &key, sizeof(key), pe);
	if (pe) {
		HASH_DEL(a->procs, pe);
		free(pe);
	}
}

/* --- setup ---------------------------------------------------------------------------- */

struct attrib *attrib_new(const struct attrib_opts *opts, char *err, size_t errlen)
{
	const char *root = opts && opts->host_root ? opts->host_root : "";
	const char *node = opts ? opts->node_name : NULL;
	struct attrib *a;
	struct stat st;
	size_t n;

	if (strlen(root) >= sizeof(a->root) - 64) {
		snprintf(err, errlen, "--host-root: path too long");
		return NULL;
	}
	if (root[0]) {
		char proc[4200];
		snprintf(proc, sizeof(proc), "%s/proc/self", root);
		if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
			snprintf(err, errlen, "--host-root %s: not a directory", root);
			return NULL;
		}
		if (stat(proc, &st) < 0) {
			snprintf(err, errlen, "--host-root %s: no proc filesystem at %s/proc", root, root);
			return NULL;
		}
	}
	if (!(a = calloc(1, sizeof(*a)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	copy_str(a->root, sizeof(a->root), root);
	n = strlen(a->root);
	while (n > 0 && a->root[n - 1] == '/')
		a->root[--n] = '\0';
	if (!node || !node[0])
		node = getenv("NODE_NAME");
	if (node && node[0])
		copy_str(a->node_name, sizeof(a->node_name), node);
	else if (gethostname(a->node_name, sizeof(a->node_name) - 1) < 0)
		a->node_name[0] = '\0';
	a->max_processes = opts && opts->max_processes ? opts->max_processes : 16384;
	a->max_containers = opts && opts->max_containers ? opts->max_containers : 2048;
	a->host = record_new(a);
	a->unknown = record_new(a);
	if (!a->host || !a->unknown) {
		attrib_free(a);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->host->state = ATTRIB_RESOLVED;
	a->unknown->state = ATTRIB_UNRESOLVED;
	return a;
}

void attrib_free(struct attrib *a)
{
	struct proc_entry *pe, *ptmp;
	struct ctr_entry *ce, *ctmp;

	if (!a)
		return;
	HASH_ITER(hh, a->procs, pe, ptmp) {
		HASH_DEL(a->procs, pe);
		free(pe);
	}
	HASH_ITER(hh, a->ctrs, ce, ctmp)
		ctr_free(a, ce);
	attrib_record_release(a->host);
	attrib_record_release(a->unknown);
	free(a);
}

const char *attrib_node_name(const struct attrib *a)
{
	return a->node_name;
}

void attrib_get_stats(const struct attrib *a, struct attrib_stats *out)
{
	*out = a->stats;
	out->processes = HASH_COUNT(a->procs);
	out->containers = HASH_COUNT(a->ctrs);
}

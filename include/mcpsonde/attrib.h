/* attrib.h -- who a process is on this node: container, pod, node (attribution).
 *
 * A process is looked up by (pid, start time). The answer is a small immutable record,
 * shared by every process of the same container, carrying the OpenTelemetry resource
 * attributes k8s.namespace.name, k8s.pod.name, k8s.pod.uid, k8s.container.name,
 * k8s.node.name, container.id, container.name and container.runtime.
 *
 * The chain, each step from bounded reads of local files only (no network, no runtime API):
 *   1. /proc/PID/cgroup -> runtime, container id, pod uid, QoS class. Every layout of
 *      containerd (systemd and cgroupfs drivers, the mixed ":cri-containerd:" form, plain
 *      /<namespace>/<id>), CRI-O, Docker and Podman; v1, v2 and hybrid hierarchies; paths seen
 *      from a private cgroup namespace ("0::/../../kubepods...").
 *   2. the container's OCI config.json -> Kubernetes namespace, pod name and uid, container
 *      name (containerd's io.kubernetes.cri.* and CRI-O's io.kubernetes.pod.* annotations), and
 *      whether it is the pod's sandbox (pause) container. Docker's config.v2.json and
 *      containers/storage's containers.json (Podman, CRI-O) -> the container's own name.
 *      Found at the runtimes' usual state roots, or for any state directory through the
 *      container's ancestor: a containerd shim's working directory is its pod sandbox's bundle
 *      and the container's bundle is the sibling named by its id; conmon's command line names
 *      the bundle (-b).
 *
 * Invariants:
 *   - Every file read is bounded, opened non-blocking and must be a regular file (a FIFO or
 *     a device where config.json should be cannot stall the caller); contents are untrusted:
 *     garbage, truncation or a file too large gives "unresolved", counted, never a crash.
 *   - Caches are bounded (processes, containers), least recently used first out, evictions
 *     counted. A container whose metadata could not be found keeps its cgroup facts and is
 *     retried with backoff (1 s doubling to 60 s), each retry counted.
 *   - Records are immutable once returned and reference-counted: attrib_lookup's result is
 *     valid until the next call on the same struct attrib; attrib_record_hold() keeps one
 *     beyond that (across evictions and attrib_free), attrib_record_release() lets go.
 *   - Single-threaded: one struct attrib per pipeline. Holding and releasing records from
 *     another thread is safe (atomic reference count). */
#ifndef MCPSONDE_ATTRIB_H
#define MCPSONDE_ATTRIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ATTRIB_ID_LEN 64 /* a container id: 64 lowercase hex digits */
#define ATTRIB_UID_LEN 36 /* a pod uid: 8-4-4-4-12 hex digits and dashes */
#define ATTRIB_NAME_MAX 253 /* DNS subdomain: the longest Kubernetes object name */

enum attrib_runtime {
	ATTRIB_RUNTIME_NONE, /* not in a container, or not known */
	ATTRIB_RUNTIME_CONTAINERD,
	ATTRIB_RUNTIME_CRIO,
	ATTRIB_RUNTIME_DOCKER,
	ATTRIB_RUNTIME_PODMAN,
};

enum attrib_role {
	ATTRIB_ROLE_HOST,     /* not in a container */
	ATTRIB_ROLE_WORKLOAD, /* a container's process */
	ATTRIB_ROLE_SANDBOX,  /* a pod's sandbox (pause) container: never a workload */
	ATTRIB_ROLE_MONITOR,  /* a runtime's per-container monitor (conmon): not a workload */
};

enum attrib_qos { ATTRIB_QOS_NONE, ATTRIB_QOS_GUARANTEED, ATTRIB_QOS_BURSTABLE, ATTRIB_QOS_BESTEFFORT };

/* How far attribution got. */
enum attrib_state {
	ATTRIB_RESOLVED,   /* host process, or container with its metadata */
	ATTRIB_CGROUP_ONLY, /* container id (and pod uid) known, metadata not (yet): retried */
	ATTRIB_UNRESOLVED, /* /proc/PID/cgroup unreadable or unparseable */
};

struct attrib_record {
	enum attrib_state state;
	enum attrib_role role;
	enum attrib_runtime runtime;
	enum attrib_qos qos;
	char container_id[ATTRIB_ID_LEN + 1];
	char pod_uid[ATTRIB_UID_LEN + 1];
	char k8s_namespace[64];
	char pod_name[ATTRIB_NAME_MAX + 1];
	char k8s_container_name[64];
	char container_name[ATTRIB_NAME_MAX + 1]; /* the runtime's own name (Docker, Podman) */
	char node_name[ATTRIB_NAME_MAX + 1];
	unsigned refs; /* private: attrib_record_hold/release */
};

/* One OpenTelemetry resource attribute, e.g. {"k8s.pod.name", "agent-7f9c"}. */
struct attrib_attr {
	const char *key;
	const char *value;
};
#define ATTRIB_ATTRS_MAX 8

struct attrib_opts {
	const char *host_root;    /* where the host's / is seen ("" or NULL: /) */
	const char *node_name;    /* NULL: $NODE_NAME, else the hostname */
	unsigned max_processes;   /* process cache (0: 16384) */
	unsigned max_containers;  /* container cache (0: 2048) */
};

struct attrib_stats {
	uint64_t lookups;
	uint64_t process_hits;     /* answered from the process cache */
	uint64_t container_hits;   /* new process of a known container */
	uint64_t gone;             /* the process exited or its pid was reused (start time) */
	uint64_t cgroup_unparsed;  /* /proc/PID/cgroup unreadable, truncated or garbage */
	uint64_t metadata_found;
	uint64_t metadata_missing; /* no config.json / state file found */
	uint64_t metadata_invalid; /* found, but garbage, truncated or too large */
	uint64_t retries;
	uint64_t process_evictions;
	uint64_t container_evictions;
	uint64_t processes;        /* now in the process cache */
	uint64_t containers;       /* now in the container cache */
};

struct attrib;

/* NULL with a one-line reason in err when host_root is not a directory with proc/ in it. */
struct attrib *attrib_new(const struct attrib_opts *opts, char *err, size_t errlen);
void attrib_free(struct attrib *a);

/* The record for the process pid started at start_ticks (field 22 of /proc/PID/stat; 0:
 * whatever runs as pid now). NULL when the process is gone or is not the one started then.
 * now_ns (CLOCK_MONOTONIC) paces retries. */
const struct attrib_record *attrib_lookup(struct attrib *a, pid_t pid, uint64_t start_ticks, uint64_t now_ns);
/* Drops the process from the cache (it exited); its container stays cached. */
void attrib_forget(struct attrib *a, pid_t pid, uint64_t start_ticks);

const struct attrib_record *attrib_record_hold(const struct attrib_record *r);
void attrib_record_release(const struct attrib_record *r);

/* The record's non-empty OpenTelemetry attributes, in a fixed order; returns how many.
 * Values point into the record. */
size_t attrib_attributes(const struct attrib_record *r, struct attrib_attr out[ATTRIB_ATTRS_MAX]);

/* Whether two records are the same container's (both workloads with one container id). */
bool attrib_same_container(const struct attrib_record *a, const struct attrib_record *b);

const char *attrib_node_name(const struct attrib *a);
void attrib_get_stats(const struct attrib *a, struct attrib_stats *out);

const char *attrib_runtime_name(enum attrib_runtime rt); /* "containerd", "cri-o"...; "" */
const char *attrib_role_name(enum attrib_role role);      /* "host", "workload"... */
const char *attrib_qos_name(enum attrib_qos qos);         /* "guaranteed"...; "" */
const char *attrib_state_name(enum attrib_state s);       /* "resolved"... */

/* The parsers behind the chain, on bytes already read (exposed for tests). Each returns 0
 * when it found what it looks for, -1 otherwise; out is filled as far as it got. */
struct attrib_cgroup {
	enum attrib_runtime runtime;
	enum attrib_role role;   /* WORKLOAD, MONITOR (conmon), or HOST when no container */
	enum attrib_qos qos;
	char container_id[ATTRIB_ID_LEN + 1];
	char pod_uid[ATTRIB_UID_LEN + 1];
	char ctr_namespace[64]; /* containerd namespace of a plain /<namespace>/<id> path */
};
/* /proc/PID/cgroup contents: 0 with a container found, 1 for a process in no container,
 * -1 for garbage. */
int attrib_parse_cgroup(const char *buf, size_t len, struct attrib_cgroup *out);
/* An OCI config.json: Kubernetes names and the container type from its annotations; the
 * runtime from which annotations it has. 0 when it is a JSON object with annotations. */
int attrib_parse_oci_config(const char *buf, size_t len, struct attrib_record *out);
/* Docker's config.v2.json: Name (and the Kubernetes labels dockershim set). */
int attrib_parse_docker_config(const char *buf, size_t len, struct attrib_record *out);
/* containers/storage's containers.json: the first name of the container with id. */
int attrib_parse_storage_containers(const char *buf, size_t len, const char *id, struct attrib_record *out);

#endif

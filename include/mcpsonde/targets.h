/* targets.h -- what is watched, and who each watched process is: the stage between the
 * source and the pipeline.
 *
 * attach: the given PIDs, their descendants, and every process they fork. watch --all: every
 * process the kernel finds reading JSON-RPC on its stdin, or an HTTP request showing MCP on
 * a socket (MSD_REC_DISCOVER, MSD_DISCOVER_HTTP), and what it forks. Records pass through targets_on_record() on their way from the source to the
 * pipeline (or a capture file): the stage keeps its table of processes from the fork, exec,
 * exit and discover records, adds each one's identity (MSD_REC_PROC: from /proc, or from the
 * kernel's record when the process is already gone), and drops the records of the processes
 * it let go.
 *
 * A process is (pid, start time) everywhere: a record whose start time is not the table's
 * (the exit of an earlier process of that PID was lost) replaces the entry.
 *
 * Of a discovered process the stage decides:
 *   - selectors: --include / --exclude KEY=GLOB on its comm, exe, cmdline, Kubernetes
 *     namespace, pod or container: one that does not pass is let go (excluded); mcpsonde
 *     itself is never discovered (the kernel knows it), nor is anything in its own pod, nor a
 *     pod's sandbox (pause) or a runtime's monitor (conmon, shims);
 *   - MCP or not: JSON-RPC without an MCP method in its first messages is let go (the
 *     pipeline says so: pipeline_hooks.on_not_mcp);
 *   - an HTTP server that does not speak MCP within TARGETS_HTTP_PROBATION_NS of being found
 *     (the request that found it showed an event stream's Accept or an Mcp-* header, and no
 *     MCP method followed) is let go as not MCP;
 *   - who talks to it: its client, the process holding the other end of its stdin (a pipe's
 *     write end, or the peer of its AF_UNIX socket, which the kernel names), looked for among
 *     its ancestors at once, and else in the whole of /proc, a few processes per tick;
 *   - relays: a discovered process that is the client of another discovered one forwards to
 *     it (socat, a stdio proxy): it is let go as a relay, and the server's identity names it,
 *     with the relay's own client as the server's client. npx -> sh -> node needs nothing of
 *     the sort: only node reads its stdin, so only node is found. An HTTP server's clients
 *     are the peers of its connections (events name them): no client process is looked for.
 * Letting a process go writes the verdict where the kernel's discovery reads it (so it is not
 * looked at again), untracks it and what it forked, and releases its session (EV_UNTRACKED).
 * Processes given by PID are never let go, and get their client found the same way once they
 * speak MCP.
 *
 * Bounds: TARGETS_MAX processes; an entry goes at its exit record, or when the next prune
 * finds it gone; one let go stays TARGETS_GRACE_NS to absorb its records still in flight. The
 * /proc scan for clients reads TARGETS_SCAN_PIDS processes per tick for at most
 * TARGETS_SCAN_MAX servers at once. Attribution (attrib.h) is looked up through this stage,
 * once per process, and held with its entry. */
#ifndef MCPSONDE_TARGETS_H
#define MCPSONDE_TARGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "attrib.h"
#include "events.h"
#include "pipeline.h"
#include "source.h"

#define TARGETS_MAX 65536                      /* as the kernel's process table */
#define TARGETS_GRACE_NS 2000000000ull         /* a let-go entry absorbs records in flight */
#define TARGETS_SCAN_PIDS 64                   /* /proc entries read per tick looking for clients */
#define TARGETS_SCAN_MAX 16                    /* servers looked for in one pass */
#define SELECTORS_MAX 64
#define TARGETS_HTTP_PROBATION_NS 10000000000ull /* found by HTTP, silent: let go after this */

/* --include / --exclude: KEY=GLOB (fnmatch). Keys are what a selector looks at: the process,
 * and where it runs (attrib.h: "" outside Kubernetes, or before its container is known). */
enum selector_key { SEL_COMM, SEL_EXE, SEL_CMDLINE, SEL_NAMESPACE, SEL_POD, SEL_CONTAINER, SEL__COUNT };

struct selectors {
	struct {
		enum selector_key key;
		char *glob;
		bool include;
	} items[SELECTORS_MAX];
	unsigned n, nincludes;
};

/* What selectors see of a process; a NULL field is "". */
struct selector_subject {
	const char *field[SEL__COUNT];
};

/* Parses "comm=node*"; 0, or -1 with a one-line reason in err. */
int selectors_add(struct selectors *s, const char *spec, bool include, char *err, size_t errlen);
/* A process passes when it matches an --include (if there is any) and no --exclude. */
bool selectors_pass(const struct selectors *s, const struct selector_subject *subj);
void selectors_free(struct selectors *s);

struct targets_opts {
	bool all;                       /* watch --all: what the kernel discovers */
	const pid_t *pids;              /* attach: the given processes */
	unsigned npids;
	const struct selectors *selectors;
	struct attrib *attrib;          /* may be NULL */
	pid_t self;
};

struct targets_stats {
	uint64_t processes;     /* in the table now, let go ones included */
	uint64_t discovered;    /* found by the kernel (MSD_REC_DISCOVER, or tracked and unannounced) */
	uint64_t excluded, not_mcp, relays, gone; /* let go, by why */
	uint64_t clients_found, clients_unknown;
	uint64_t records_dropped; /* of processes let go, still in flight */
	uint64_t unidentified;    /* watching all: tracked, unannounced, gone from /proc: not delivered */
	uint64_t table_full;
};

struct targets;

/* Where records go once the stage has seen them: the pipeline, a capture file, or both. */
typedef void (*targets_deliver_fn)(void *ctx, const struct msd_rec_hdr *rec);

struct targets *targets_new(const struct targets_opts *opts, struct source_live *src, targets_deliver_fn deliver,
			    void *ctx);
/* The pipeline whose sessions the stage names and releases (NULL: recording only). Sets
 * the pipeline's hooks. */
void targets_set_pipeline(struct targets *t, struct pipeline *p);
/* attach: tracks the given processes and their descendants; watch: writes the selectors'
 * verdicts for the processes running now. -1 with a one-line reason in err. */
int targets_start(struct targets *t, char *err, size_t errlen);
/* A source_record_fn: ctx is the targets stage. */
int targets_on_record(void *ctx, const struct msd_rec_hdr *rec);
/* Prunes processes gone unseen, drops let-go entries past their grace, looks for clients. */
void targets_tick(struct targets *t, uint64_t now_ns);
/* Processes watched (not let go). attach ends when none is left. */
unsigned targets_watched(const struct targets *t);
/* Up to max PIDs of watched processes, for the "attached to" line; returns how many. */
unsigned targets_pids(const struct targets *t, pid_t *out, unsigned max);
/* Where a watched process runs (attrib.h), NULL when unknown or not watched. */
const struct attrib_record *targets_where(const struct targets *t, pid_t pid);
void targets_get_stats(const struct targets *t, struct targets_stats *out);
/* Discovery latencies (seconds from the kernel's record to this stage) since the last call:
 * up to max copied into out, the rest counted in *more. Returns how many were copied. */
unsigned targets_take_latencies(struct targets *t, double *out, unsigned max, uint64_t *more);
void targets_free(struct targets *t);
/* Whether a process found by HTTP (http) that has not spoken MCP (server) since found_ns is
 * let go at now_ns. */
bool targets_http_idle(bool http, bool server, uint64_t found_ns, uint64_t now_ns);

#endif

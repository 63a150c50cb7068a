/* source.h -- where records come from: the live ring buffer, or a capture file.
 *
 * Both kinds hand the same records (events.h) to the same callback, in order, so that
 * everything downstream runs identically live and offline. Only source_live.c knows libbpf.
 *
 * Live, the caller drains the ring buffer a slice at a time (source_live_poll with a
 * deadline), so that it serves its signals, timers and metrics however fast records arrive;
 * the observed processes never wait for it: when the ring is full the kernel drops records
 * and counts them. */
#ifndef MCPSONDE_SOURCE_H
#define MCPSONDE_SOURCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "events.h"

/* Returns 0 to go on, non-zero to stop consuming for now. */
typedef int (*source_record_fn)(void *ctx, const struct msd_rec_hdr *rec);

struct source_live;

struct source_live_opts {
	size_t ringbuf_bytes; /* power of two; 0 selects the default (32 MiB) */
	bool verbose;         /* libbpf debug output and the verifier log on failure */
	bool compat;          /* the paths for older kernels even where better ones exist: records
			       * reserved in size classes, kernel objects read by helper calls */
	bool discover;        /* watch --all: the kernel finds processes reading JSON-RPC on their
			       * stdin and tracks them (events.h). Off, attach pays nothing for it */
	pid_t self;           /* never discovered: mcpsonde itself */
};

/* Loads and attaches the BPF programs. On failure returns NULL and writes one line,
 * meant for the user, into err (not root, no BTF, tracefs, verifier...). */
struct source_live *source_live_open(const struct source_live_opts *opts, char *err, size_t errlen);
/* How the loaded programs copy and read, for -v: "dynptr, direct reads"... */
const char *source_live_paths(const struct source_live *src);
/* Starts tracking pid, started at start_ns (boot-based), with the given channel (events.h:
 * the files whose reads are IN and writes OUT and ERR, indexed by role), and, by the kernel,
 * every process it forks from now on with the same channel. A process already tracked keeps
 * its channel and streams. Returns 0, or -errno (-E2BIG: the kernel's process table is full). */
int source_live_track(struct source_live *src, pid_t pid, uint64_t start_ns,
		      const struct msd_file_id chan[MSD_ROLE__COUNT]);
/* Stops tracking pid: for a process found gone without its exit having been seen (it died
 * before its tracking took effect). The kernel forgets the others itself when they exit. */
void source_live_untrack(struct source_live *src, pid_t pid);
/* The kernel stops copying connection conn_id of tgid (socket dev, ino): its bytes are
 * counted from now on. Returns 0, or -errno (-ENOENT: closed already, -ESTALE: another
 * connection has the socket's identity now). */
int source_live_conn_ignore(struct source_live *src, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id);
/* Writes a verdict about pid's stdin (events.h: EXCLUDED, NOT_MCP, RELAY) where discovery
 * reads it, so that the kernel no longer looks at its reads; in names that file (NULL: any).
 * The process is named by a pidfd and checked to be the one started at start_ticks (field 22
 * of /proc/PID/stat), so a reused PID never gets another's verdict. Returns 0, or -errno
 * (-ESRCH: gone, or not that process). */
int source_live_verdict(struct source_live *src, pid_t pid, uint64_t start_ticks, enum msd_verdict_kind verdict,
			const struct msd_file_id *in);
/* Entries in the kernel's process table now, and its capacity. */
int source_live_procs(struct source_live *src, unsigned *entries, unsigned *capacity);
/* The fd to wait on (epoll) for records. */
int source_live_fd(const struct source_live *src);
/* The ring buffer's size, its backlog now (bytes written, not read yet), and the largest
 * backlog a drain has found since the start. */
void source_live_ring(struct source_live *src, uint64_t *size, uint64_t *backlog, uint64_t *peak);
/* Delivers records in order until none is waiting, fn returns non-zero, or CLOCK_MONOTONIC
 * passes deadline_ns (0: no deadline). Returns how many. */
size_t source_live_poll(struct source_live *src, source_record_fn fn, void *ctx, uint64_t deadline_ns);
/* The last poll ended at its deadline with records left: the caller should come back without
 * waiting on the fd. */
bool source_live_behind(const struct source_live *src);
/* Stops capturing: nothing is tracked any more. Records already in the ring buffer stay for
 * source_live_poll. */
void source_live_stop(struct source_live *src);
/* Consumes whatever the ring buffer still holds without analysing it, counted as
 * MSD_DROP_BACKLOG (mcpsonde stopped before it got to it). Call after source_live_stop. */
void source_live_abandon(struct source_live *src);
/* Calls fn for every write to a tracked process's out-file that has entered the kernel and
 * not yet returned. One that stays there is blocked, typically because the peer stopped
 * reading. Walks every task of the machine in the kernel: call it about once a second.
 * Returns how many, or -errno. */
int source_live_inflight(struct source_live *src, void (*fn)(void *ctx, const struct msd_inflight *w), void *ctx);
/* Drop counters summed over CPUs, MSD_DROP__MAX entries, monotonic since open; user space's
 * own (MSD_DROP_BACKLOG) included. */
int source_live_drops(struct source_live *src, struct msd_drop *out);
/* The other counters (enum msd_counter) summed over CPUs, MSD_CNT__MAX entries. */
int source_live_counters(struct source_live *src, uint64_t *out);
/* Detaches and frees everything. Removing syscall tracepoints takes the kernel 1-2 s (one
 * RCU grace period after another, under a global lock): a child process holds the programs
 * while they go, so that this returns at once. The programs track nothing by then. */
void source_live_close(struct source_live *src);

#endif

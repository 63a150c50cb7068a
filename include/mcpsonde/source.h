/* source.h -- where records come from: the live ring buffer, or a capture file.
 *
 * Both kinds hand the same records (events.h) to the same callback, in order, so that
 * everything downstream runs identically live and offline. Only source_live.c knows libbpf. */
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
	size_t ringbuf_bytes; /* power of two; 0 selects the default (16 MiB) */
	bool verbose;         /* libbpf debug output and the verifier log on failure */
};

/* Loads and attaches the BPF programs. On failure returns NULL and writes one line,
 * meant for the user, into err (not root, no BTF, tracefs, verifier...). */
struct source_live *source_live_open(const struct source_live_opts *opts, char *err, size_t errlen);
/* Starts tracking pid (and, by the kernel, every process it forks from now on). */
int source_live_track(struct source_live *src, pid_t pid);
/* Drops the kernel's per-(tgid, fd) kind cache of a process: after exec, which closes
 * O_CLOEXEC descriptors without a close syscall. streams also drops the stream offsets:
 * after exit, so that a reused PID starts fresh. Descriptors that survive exec (stdio)
 * keep their offsets, and their streams go on across the exec. */
void source_live_forget_fds(struct source_live *src, pid_t pid, bool streams);
/* The fd to wait on (epoll) for records. */
int source_live_fd(const struct source_live *src);
/* Delivers every record available now. Returns records delivered, or -errno. */
int source_live_poll(struct source_live *src, source_record_fn fn, void *ctx);
/* Calls fn for every read/write on a captured fd of a tracked process that has entered the
 * kernel and not yet returned (dir: enum msd_dir; count: bytes requested). A write that stays
 * here is blocked, typically because the peer stopped reading. Returns how many. */
int source_live_inflight(struct source_live *src,
			 void (*fn)(void *ctx, uint32_t tgid, uint32_t tid, int fd, int dir, uint64_t enter_ns,
				    uint64_t count),
			 void *ctx);
/* Drop counters summed over CPUs, MSD_DROP__MAX entries, monotonic since open. */
int source_live_drops(struct source_live *src, struct msd_drop *out);
void source_live_close(struct source_live *src);

#endif

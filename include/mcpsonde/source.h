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
	size_t ringbuf_bytes; /* power of two; 0 selects the default (64 MiB) */
	bool verbose;         /* libbpf debug output and the verifier log on failure */
};

/* Loads and attaches the BPF programs. On failure returns NULL and writes one line,
 * meant for the user, into err (not root, no BTF, tracefs, verifier...). */
struct source_live *source_live_open(const struct source_live_opts *opts, char *err, size_t errlen);
/* Starts tracking pid (and, by the kernel, every process it forks from now on). */
int source_live_track(struct source_live *src, pid_t pid);
int source_live_untrack(struct source_live *src, pid_t pid);
/* Drops the kernel's per-(tgid, fd) caches of a process (after exec, which closes
 * O_CLOEXEC descriptors without a close syscall). */
void source_live_forget_fds(struct source_live *src, pid_t pid);
/* The fd to wait on (epoll) for records. */
int source_live_fd(const struct source_live *src);
/* Delivers every record available now. Returns records delivered, or -errno. */
int source_live_poll(struct source_live *src, source_record_fn fn, void *ctx);
/* Drop counters summed over CPUs, MSD_DROP__MAX entries, monotonic since open. */
int source_live_drops(struct source_live *src, struct msd_drop *out);
void source_live_close(struct source_live *src);

#endif

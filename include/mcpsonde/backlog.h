/* backlog.h -- records copied out of the ring buffer, waiting for the pipeline.
 *
 * A reader thread empties the kernel's ring buffer into the backlog as fast as memcpy goes,
 * so that the ring has room even while the pipeline is busy (a burst of large messages, a
 * slow stdout, a report being written) or waits for a CPU; the event loop takes the records
 * out at its own pace, a bounded slice at a time.
 *
 * Invariants:
 * - One producer thread and one consumer thread. Records come out whole, in the order they
 *   went in, each exactly once.
 * - Memory is bounded: records live in chunks of BACKLOG_CHUNK_BYTES, and at most
 *   max_bytes / BACKLOG_CHUNK_BYTES chunks exist at once (filled, queued or spare). A producer
 *   that finds no room waits for the consumer: the ring buffer then fills, and the kernel
 *   counts what it cannot reserve. Nothing is dropped here, except after backlog_close():
 *   a record that finds no room then is refused (counted by the caller).
 * - The consumer sees a record once the producer has published it (backlog_publish, or a
 *   chunk filled up). fd is readable while published records may wait. */
#ifndef MCPSONDE_BACKLOG_H
#define MCPSONDE_BACKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BACKLOG_CHUNK_BYTES (1u << 20)
#define BACKLOG_RECORD_MAX (BACKLOG_CHUNK_BYTES - 64) /* larger records are refused */

struct backlog;

struct backlog_stats {
	uint64_t records;    /* records taken in */
	uint64_t bytes;
	size_t peak_bytes;   /* most memory held in chunks at once */
	uint64_t waits;      /* times the producer found the backlog full and waited */
	uint64_t wait_ns;    /* and how long in all: the ring buffer was not emptied meanwhile */
};

/* max_bytes: the memory bound (at least two chunks' worth is used). NULL on failure. */
struct backlog *backlog_new(size_t max_bytes);
void backlog_free(struct backlog *b);

/* Producer. Copies len bytes in. Waits while the backlog is full; returns 0, or -1 when the
 * record cannot be taken: too large, out of memory, or no room after backlog_close(). */
int backlog_put(struct backlog *b, const void *rec, size_t len);
/* Makes every record put so far visible to the consumer. */
void backlog_publish(struct backlog *b);
/* From now on the producer never waits: a record that finds no room is refused. Wakes a
 * producer that waits. Callable from either thread. */
void backlog_close(struct backlog *b);

/* Consumer. Calls fn for published records in order until none is left, fn returns
 * non-zero (that record counts as taken), or CLOCK_MONOTONIC passes deadline_ns (0: no
 * deadline). Returns the number of records taken. */
size_t backlog_drain(struct backlog *b, int (*fn)(void *ctx, const void *rec, size_t len), void *ctx,
		     uint64_t deadline_ns);
/* Published records not yet taken (bytes, chunk overhead excluded). */
size_t backlog_pending(struct backlog *b);
/* Readable (eventfd) when records were published since the consumer last looked. */
int backlog_fd(const struct backlog *b);
void backlog_stats(struct backlog *b, struct backlog_stats *out);

#endif

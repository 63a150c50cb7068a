/* stream.h -- one byte stream per (tgid, fd, direction), reassembled by offset.
 *
 * The kernel numbers every byte of a stream; a record that arrives at the expected offset
 * goes straight to the framer. One that arrives ahead is held (bounded) in case the missing
 * bytes were only reordered across CPUs; when the bound is hit or the stream is flushed the
 * hole becomes a gap: counted, and the framer resynchronises at the next newline. An offset
 * behind the expected one is a new stream after close (offset 0) or a duplicate (counted). */
#ifndef MCPSONDE_STREAM_H
#define MCPSONDE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define STREAM_HOLD_MAX 16 /* out-of-order records held before declaring a gap */

struct stream_stats {
	uint64_t bytes;      /* bytes delivered to the framer */
	uint64_t gaps;       /* holes declared */
	uint64_t gap_bytes;  /* bytes in those holes (lost records, truncation) */
	uint64_t reordered;  /* records that arrived ahead and were placed later */
	uint64_t duplicates; /* bytes at offsets already delivered */
	uint64_t resets;     /* streams restarted at offset 0 (fd closed and reused) */
};

/* A record that arrived ahead of next_off, or (data == NULL) a range known to be lost that
 * lies ahead of next_off: it becomes a gap when the stream reaches it. */
struct stream_held {
	uint64_t off;
	uint64_t ts_ns;
	size_t len;
	char *data;
};

struct stream {
	uint64_t next_off; /* offset of the next byte the framer expects */
	uint64_t last_end; /* end of the last record fed: where a truncated syscall's loss begins */
	bool started;      /* next_off moved: an offset 0 now means the stream restarted */
	struct stream_held held[STREAM_HOLD_MAX]; /* sorted by off */
	int nheld;
	struct framer framer;
	struct stream_stats stats;
};

void stream_init(struct stream *s, size_t max_frame);
/* Places len bytes that start at stream offset off. Complete frames go to fn. */
void stream_feed(struct stream *s, uint64_t off, const void *data, size_t len, uint64_t ts_ns, frame_fn fn, void *ctx);
/* The bytes up to off are known to be lost (e.g. a truncated syscall): move on. The loss is
 * taken to start where the last record fed ended: if that record is still held (it arrived
 * ahead), the lost range waits in the hold and becomes a gap when the stream reaches it. */
void stream_skip_to(struct stream *s, uint64_t off, frame_fn fn, void *ctx);
/* Declares every hole before held data a gap and delivers what was held. */
void stream_flush(struct stream *s, frame_fn fn, void *ctx);
void stream_free(struct stream *s);

#endif

/* stream.h -- one byte stream per (process, channel file, role), reassembled by offset.
 *
 * The kernel numbers every byte of a stream; a record that arrives at the expected offset
 * goes straight to the framer. One that arrives ahead is held (bounded) in case the missing
 * bytes were only reordered across CPUs; when the bound is hit or the stream is flushed the
 * hole becomes a gap: counted, and the framer resynchronises at the next newline. Holes the
 * kernel announces are placed like records: a cut (the middle of a syscall too long to copy
 * whole) keeps the line it falls in, which comes out as one oversized frame; a lost range
 * (bytes moved by splice, sendfile...) is a gap with its own count. An offset behind the
 * expected one is a duplicate (counted). A stream that is not newline-framed (a direction of
 * an HTTP connection) hands its ordered bytes, gaps and cuts to ops instead of a framer. */
#ifndef MCPSONDE_STREAM_H
#define MCPSONDE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

#define STREAM_HOLD_MAX 16 /* out-of-order records held before declaring a gap */

enum stream_hole {
	STREAM_HOLE_CUT,  /* deliberately not copied: framing goes on across it */
	STREAM_HOLE_LOST, /* moved without being copied: a gap, the framer resynchronises */
};

struct stream_stats {
	uint64_t bytes;      /* bytes delivered to the framer */
	uint64_t gaps;       /* holes nobody announced: records lost on the way */
	uint64_t gap_bytes;  /* bytes in those holes */
	uint64_t cut_bytes;  /* bytes in announced cuts */
	uint64_t lost_bytes; /* bytes in announced lost ranges */
	uint64_t reordered;  /* records that arrived ahead and were placed later */
	uint64_t duplicates; /* bytes at offsets already delivered */
};

/* A record that arrived ahead of next_off, or (data == NULL) an announced hole that lies
 * ahead of next_off, taken as its kind says when the stream reaches it. */
struct stream_held {
	uint64_t off;
	uint64_t ts_ns;
	uint64_t len;
	char *data;
	enum stream_hole hole; /* data == NULL only */
};

/* Where a stream's ordered bytes go instead of a framer. gap: lost_bytes never came; cut: len
 * bytes were deliberately not copied (see STREAM_HOLE_CUT). */
struct stream_ops {
	void (*feed)(void *ctx, const char *p, size_t n, uint64_t ts_ns);
	void (*gap)(void *ctx, uint64_t lost_bytes);
	void (*cut)(void *ctx, uint64_t len, uint64_t ts_ns);
};

struct stream {
	uint64_t next_off; /* offset of the next byte the framer expects */
	struct stream_held held[STREAM_HOLD_MAX]; /* sorted by off */
	int nheld;
	struct framer framer; /* unused with ops */
	const struct stream_ops *ops;
	void *ops_ctx;
	struct stream_stats stats;
};

void stream_init(struct stream *s, size_t max_frame);
/* A stream whose bytes go to ops (with ctx) rather than to lines: the frame_fn arguments of
 * the calls below are not used. */
void stream_init_ops(struct stream *s, const struct stream_ops *ops, void *ctx);
/* Places len bytes that start at stream offset off. Complete frames go to fn. */
void stream_feed(struct stream *s, uint64_t off, const void *data, size_t len, uint64_t ts_ns, frame_fn fn, void *ctx);
/* The kernel says [off, off + len) will never come, and why. Announcing the same hole twice
 * (every record of a syscall carries it) changes nothing. */
void stream_hole(struct stream *s, uint64_t off, uint64_t len, enum stream_hole kind, uint64_t ts_ns, frame_fn fn,
		 void *ctx);
/* Whether bytes that arrived ahead are held (not only announced holes). */
bool stream_holds_data(const struct stream *s);
/* Declares every hole before held data a gap and delivers what was held. */
void stream_flush(struct stream *s, frame_fn fn, void *ctx);
void stream_free(struct stream *s);

#endif

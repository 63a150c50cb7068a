/* frame.h -- newline framing of one byte stream (MCP stdio: one JSON-RPC message per line).
 *
 * Bytes go in, complete lines come out with a trailing "\r" stripped. A line longer than the
 * cap is never buffered whole: its head and tail are kept (the TS SDK puts "id" at the end of
 * a response) and the frame is flagged oversized. After a gap the partial line is discarded
 * and framing resumes after the next newline, unless the bytes after the gap begin with '{':
 * a lost record ends where a syscall ended, and writers write whole messages, so that is
 * most likely a message's start (the frame says after_gap: it may be a line's tail). A frame
 * is oversized exactly when the line, "\r" stripped, is longer than max_frame, however it was
 * chunked. Memory per framer is bounded by max_frame + 1 (the line buffer) + 2 * (min(max_frame,
 * FRAME_EDGE_BYTES) + 1) (the tail window, allocated only while an oversized line is read). */
#ifndef MCPSONDE_FRAME_H
#define MCPSONDE_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_EDGE_BYTES (64 * 1024) /* head and tail kept of an oversized frame */

/* Valid only during the callback: data may point into the caller's input or the framer's buffer. */
struct frame {
	const char *data; /* the whole line, or its first min(max_frame, FRAME_EDGE_BYTES) bytes when oversized */
	size_t len;
	const char *tail; /* oversized only: the last bytes of the line, as many as in data */
	size_t tail_len;
	uint64_t wire_len;    /* bytes of the line on the wire, "\n" and the stripped "\r" excluded */
	uint64_t ts_first_ns; /* syscall that carried the first byte */
	uint64_t ts_last_ns;  /* syscall that carried the newline; never before ts_first_ns */
	bool oversized;
	bool after_gap;       /* framed from a '{' right after a gap: a message, or the tail of one */
};

typedef void (*frame_fn)(void *ctx, const struct frame *f);

struct framer_stats {
	uint64_t frames;
	uint64_t oversized;
	uint64_t discarded_bytes; /* partial lines thrown away at a gap or while resyncing */
};

struct framer {
	char *buf; /* the line so far, grown geometrically up to max_frame + 1; oversized: the head */
	size_t len, cap, max_frame;
	char *tail; /* oversized: sliding window of 2 * (edge + 1) bytes ending with the line's end */
	size_t tail_len;
	uint64_t wire_len;    /* bytes of the partial line so far */
	uint64_t ts_first_ns; /* of its first byte */
	bool oversized;
	bool resync; /* after a gap: drop bytes up to and including the next newline */
	bool gap_edge; /* the next byte is the first after a gap */
	bool after_gap; /* the line being read began right after a gap */
	struct framer_stats stats;
};

void framer_init(struct framer *fr, size_t max_frame);
void framer_feed(struct framer *fr, const char *p, size_t n, uint64_t ts_ns, frame_fn fn, void *ctx);
/* Bytes were lost: drop the partial line and resynchronise at the next newline. */
void framer_gap(struct framer *fr);
/* The stream restarted (fd closed and reused): drop the partial line and frame the next byte
 * as the start of a line, without resynchronising. */
void framer_reset(struct framer *fr);
/* Bytes buffered in a partial line (for a stream that ends mid-line). */
size_t framer_pending(const struct framer *fr);
void framer_free(struct framer *fr);

#endif

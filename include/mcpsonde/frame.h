/* frame.h -- newline framing of one byte stream (MCP stdio: one JSON-RPC message per line).
 *
 * Bytes go in, complete lines come out with a trailing "\r" stripped. A line longer than the
 * cap is never buffered whole: its head and tail are kept (the TS SDK puts "id" at the end of
 * a response) and the frame is flagged oversized. After a gap the partial line is discarded,
 * and the line that follows the gap is flagged after_gap: it is either the end of a line whose
 * start was lost or, when the gap ended at a line boundary, a whole line; the caller keeps it
 * only if it is a whole message. A cut (bytes the kernel deliberately did not
 * copy from the middle of a long syscall) keeps the line: it comes out oversized, its head
 * from before the cut, its tail from after, wire_len counting the cut bytes. A frame is
 * oversized exactly when the line, "\r" stripped, is longer than max_frame, however it was
 * chunked, or when it was cut (by the kernel, or for the memory budget). Memory per framer is
 * bounded by max_frame + 1 (the line buffer) + 2 * (min(max_frame, FRAME_EDGE_BYTES) + 1) (the
 * tail window, allocated only while an oversized line is being read), and all framers that
 * share a frame_budget hold at most its limit together (see below). */
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
	const char *tail; /* oversized only: the last bytes of the line, as many as in data (fewer
			   * when the line was cut: only bytes after the cut) */
	size_t tail_len;
	uint64_t wire_len;    /* bytes of the line on the wire, "\n" and the stripped "\r" excluded */
	uint64_t ts_first_ns; /* syscall that carried the first byte */
	uint64_t ts_last_ns;  /* syscall that carried the newline; never before ts_first_ns */
	bool oversized;
	bool after_gap;       /* it began right after a gap: maybe only the end of a line (never
			       * oversized: such a line is dropped, it could not be told whole) */
};

typedef void (*frame_fn)(void *ctx, const struct frame *f);

struct framer_stats {
	uint64_t frames;
	uint64_t oversized;
	uint64_t discarded_bytes; /* partial lines thrown away at a gap, or too long to tell after one */
	uint64_t budget_dropped;       /* partial lines given up for the memory budget */
	uint64_t budget_dropped_bytes; /* their bytes read so far (the rest is skipped as discarded) */
	uint64_t budget_cut;           /* lines cut to head and tail for the memory budget */
};

/* Memory shared by every framer of a pipeline: the bytes they hold (line buffers, tail
 * windows, and what their streams hold out of order) never exceed limit together. A framer
 * that needs more than is left takes it from the largest holder: an idle buffer is freed, a
 * partial line is given up (budget_dropped; the rest of it is skipped, the next line is
 * whole). When the requester is itself the largest, its line is cut to head and tail,
 * as an oversized one (budget_cut), or given up when too short for that. One flood of long lines thus costs its
 * own lines, never the other servers' messages. */
struct frame_budget {
	size_t limit;
	size_t used, peak;
	struct framer *holders; /* framers with held > 0 */
};

struct framer {
	char *buf; /* the line so far, grown geometrically up to max_frame + 1; oversized: the head */
	size_t len, cap, max_frame;
	char *tail; /* oversized: sliding window of 2 * (edge + 1) bytes ending with the line's end */
	size_t tail_len;
	uint64_t wire_len;    /* bytes of the partial line so far */
	uint64_t ts_first_ns; /* of its first byte */
	bool oversized;
	bool cut;     /* the partial line was cut: the head is closed, the tail is after the cut */
	bool suspect; /* the partial line began right after a gap */
	bool resync;  /* drop bytes up to and including the next newline: the line is lost */
	struct framer_stats stats;
	struct frame_budget *budget; /* NULL: only max_frame bounds this framer */
	struct framer *bprev, *bnext; /* in budget->holders while held > 0 */
	size_t held;                  /* bytes charged to the budget */
};

void framer_init(struct framer *fr, size_t max_frame);
/* Charges this framer's memory to b (before anything is fed). */
void framer_set_budget(struct framer *fr, struct frame_budget *b);
/* Charges n more bytes to fr's budget, making room by the rule above (never by giving up fr's
 * own line). False when there is no room: the caller does without. */
bool framer_charge(struct framer *fr, size_t n);
void framer_uncharge(struct framer *fr, size_t n);
void framer_feed(struct framer *fr, const char *p, size_t n, uint64_t ts_ns, frame_fn fn, void *ctx);
/* Bytes were lost: drop the partial line; the next one is flagged after_gap. */
void framer_gap(struct framer *fr);
/* len bytes of the stream were cut out (ts_ns: when): the partial line goes on across them,
 * to be delivered as an oversized frame. */
void framer_cut(struct framer *fr, uint64_t len, uint64_t ts_ns);
/* Bytes buffered in a partial line (for a stream that ends mid-line). */
size_t framer_pending(const struct framer *fr);
void framer_free(struct framer *fr);

#endif

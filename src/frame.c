/* frame.c -- newline framing of one byte stream.
 *
 * Invariants:
 * - A complete line lying wholly inside the caller's chunk while nothing is buffered is
 *   delivered as a pointer into that chunk: the common case (one small message per write)
 *   costs one memchr and no copy.
 * - Otherwise the partial line is buffered, up to max_frame + 1 bytes (a line of max_frame
 *   bytes plus the "\r" that will be stripped). Past that the line is oversized: buf keeps
 *   the head (edge bytes) and a sliding window of 2 * (edge + 1) bytes keeps at least the
 *   last edge + 1 bytes (edge once a "\r" is stripped), contiguous, so that delivering a
 *   frame never needs a copy and the tail does not depend on how the line was chunked.
 * - wire_len counts every byte of the partial line, whatever was kept of it.
 * - After a gap the bytes up to the next newline may be the end of a line whose beginning was
 *   lost, or (the gap ended at a line boundary) a whole line: that line is delivered flagged
 *   after_gap for the caller to judge, unless it grows past max_frame (then it could not be
 *   told whole: dropped). While resync is set, bytes up to and including the next newline are
 *   dropped: the line is known to be lost.
 * - Once a line is cut, its head (buf) is closed and its tail window holds only bytes from
 *   after the cut: head and tail are each contiguous, never spliced across the cut.
 * - held is what the budget was charged for this framer: buf's capacity, the tail window, and
 *   its stream's out-of-order records (stream.c charges those). Every allocation is charged
 *   before it is kept and uncharged when freed; eviction frees only buf and the window. */
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/frame.h"

#define FRAME_INITIAL_CAP 4096

/* Bytes kept at each end of an oversized line. */
static size_t framer_edge(const struct framer *fr)
{
	return fr->max_frame < FRAME_EDGE_BYTES ? fr->max_frame : FRAME_EDGE_BYTES;
}

void framer_init(struct framer *fr, size_t max_frame)
{
	memset(fr, 0, sizeof(*fr));
	fr->max_frame = max_frame ? max_frame : 1;
}

void framer_set_budget(struct framer *fr, struct frame_budget *b)
{
	fr->budget = b;
}

/* The tail window's size, allocated or not. */
static size_t framer_window_bytes(const struct framer *fr)
{
	return 2 * (framer_edge(fr) + 1);
}

/* What evicting fr would free. */
static size_t framer_evictable(const struct framer *fr)
{
	return fr->cap + (fr->tail ? framer_window_bytes(fr) : 0);
}

void framer_uncharge(struct framer *fr, size_t n)
{
	struct frame_budget *b = fr->budget;

	if (!b || !n)
		return;
	fr->held -= n;
	b->used -= n;
	if (fr->held)
		return;
	if (fr->bprev)
		fr->bprev->bnext = fr->bnext;
	else
		b->holders = fr->bnext;
	if (fr->bnext)
		fr->bnext->bprev = fr->bprev;
	fr->bprev = fr->bnext = NULL;
}

/* Forgets the partial line. Keeps the line buffer for reuse; the tail window exists only while
 * an oversized line is read. */
static void framer_clear_line(struct framer *fr)
{
	fr->len = 0;
	fr->wire_len = 0;
	fr->oversized = false;
	fr->cut = false;
	if (fr->tail)
		framer_uncharge(fr, framer_window_bytes(fr));
	free(fr->tail);
	fr->tail = NULL;
	fr->tail_len = 0;
}

static void framer_drop_line(struct framer *fr)
{
	fr->stats.discarded_bytes += fr->wire_len;
	framer_clear_line(fr);
}

void framer_gap(struct framer *fr)
{
	framer_drop_line(fr);
	fr->suspect = !fr->resync;
}

/* The partial line cannot be delivered: drop it and what remains of it. */
static void framer_abandon(struct framer *fr)
{
	framer_drop_line(fr);
	fr->suspect = false;
	fr->resync = true;
}

size_t framer_pending(const struct framer *fr)
{
	return (size_t)fr->wire_len;
}

/* The budget needs room: fr's partial line is given up (counted), its memory freed. */
static void framer_evict(struct framer *fr)
{
	if (fr->wire_len) {
		fr->stats.budget_dropped++;
		fr->stats.budget_dropped_bytes += fr->wire_len;
		framer_abandon(fr);
	}
	framer_uncharge(fr, fr->cap);
	free(fr->buf);
	fr->buf = NULL;
	fr->cap = 0;
}

/* The holder with the most to free, if it has more than fr: largest first, and a requester
 * larger than every other holder pays for itself. */
static struct framer *budget_victim(const struct frame_budget *b, const struct framer *fr)
{
	struct framer *best = NULL;
	size_t most = framer_evictable(fr);

	for (struct framer *h = b->holders; h; h = h->bnext) {
		size_t e = framer_evictable(h);

		if (h != fr && e > most) {
			best = h;
			most = e;
		}
	}
	return best;
}

bool framer_charge(struct framer *fr, size_t n)
{
	struct frame_budget *b = fr->budget;

	if (!b || !n)
		return true;
	while (b->used + n > b->limit) {
		struct framer *v = budget_victim(b, fr);

		if (!v)
			return false;
		framer_evict(v);
	}
	if (!fr->held) {
		fr->bprev = NULL;
		fr->bnext = b->holders;
		if (b->holders)
			b->holders->bprev = fr;
		b->holders = fr;
	}
	fr->held += n;
	b->used += n;
	if (b->used > b->peak)
		b->peak = b->used;
	return true;
}

void framer_free(struct framer *fr)
{
	framer_uncharge(fr, fr->held);
	free(fr->buf);
	free(fr->tail);
	memset(fr, 0, sizeof(*fr));
}

/* Grows buf to hold need bytes. False without memory or room in the budget. */
static bool framer_reserve(struct framer *fr, size_t need)
{
	size_t limit = fr->max_frame + 1;
	size_t cap = fr->cap ? fr->cap : FRAME_INITIAL_CAP;
	char *buf;

	if (need <= fr->cap)
		return true;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	if (!framer_charge(fr, cap - fr->cap))
		return false;
	buf = realloc(fr->buf, cap);
	if (!buf) {
		framer_uncharge(fr, cap - fr->cap);
		return false;
	}
	fr->buf = buf;
	fr->cap = cap;
	return true;
}

static void framer_window_append(struct framer *fr, const char *p, size_t n)
{
	size_t keep = framer_edge(fr) + 1;

	if (n >= keep) {
		memcpy(fr->tail, p + n - keep, keep);
		fr->tail_len = keep;
		return;
	}
	if (fr->tail_len + n > 2 * keep) {
		memmove(fr->tail, fr->tail + fr->tail_len - keep, keep);
		fr->tail_len = keep;
	}
	memcpy(fr->tail + fr->tail_len, p, n);
	fr->tail_len += n;
}

/* The buffered line outgrew max_frame + 1 (or the budget): keep its head in buf, shrunk to
 * it, and its end in the window. */
static bool framer_enter_oversized(struct framer *fr)
{
	size_t edge = framer_edge(fr);
	size_t keep = fr->len < edge + 1 ? fr->len : edge + 1;
	char *tail;

	if (!framer_reserve(fr, edge))
		return false;
	if (!(tail = malloc(framer_window_bytes(fr))))
		return false;
	memcpy(tail, fr->buf + fr->len - keep, keep);
	if (fr->len > edge)
		fr->len = edge;
	if (fr->cap > edge) {
		char *buf = realloc(fr->buf, edge);

		if (buf) {
			framer_uncharge(fr, fr->cap - edge);
			fr->buf = buf;
			fr->cap = edge;
		}
	}
	if (!framer_charge(fr, framer_window_bytes(fr))) {
		free(tail);
		return false;
	}
	fr->tail = tail;
	fr->tail_len = keep;
	fr->oversized = true;
	return true;
}

/* Adds bytes of the partial line. When it cannot be kept (allocation failure, or a line after
 * a gap growing past max_frame) it is dropped (counted) and false is returned, with resync set
 * so that the rest of the line is dropped too. */
static bool framer_append(struct framer *fr, const char *p, size_t n, uint64_t ts_ns)
{
	size_t edge;

	if (n == 0)
		return true;
	if (fr->wire_len == 0)
		fr->ts_first_ns = ts_ns;
	fr->wire_len += n;
	if (!fr->oversized) {
		if (fr->suspect && fr->len + n > fr->max_frame + 1)
			goto fail;
		if (fr->len + n <= fr->max_frame + 1) {
			if (framer_reserve(fr, fr->len + n)) {
				memcpy(fr->buf + fr->len, p, n);
				fr->len += n;
				return true;
			}
			/* No room: a line long enough for a head and a tail apart keeps them. */
			if (fr->suspect || fr->len <= framer_window_bytes(fr))
				goto fail;
			fr->stats.budget_cut++;
		}
		if (!framer_enter_oversized(fr))
			goto fail;
	}
	edge = framer_edge(fr);
	if (fr->len < edge && !fr->cut) {
		size_t c = edge - fr->len < n ? edge - fr->len : n;

		memcpy(fr->buf + fr->len, p, c);
		fr->len += c;
	}
	framer_window_append(fr, p, n);
	return true;
fail:
	framer_abandon(fr);
	return false;
}

/* Delivers a line held contiguously in p[0..n), "\r" included. */
static void framer_emit(struct framer *fr, const char *p, size_t n, uint64_t ts_first, uint64_t ts_last,
			frame_fn fn, void *ctx)
{
	/* Reordered records can carry a later line end with an earlier timestamp. */
	struct frame f = { .data = p, .ts_first_ns = ts_first, .ts_last_ns = ts_last > ts_first ? ts_last : ts_first,
			   .after_gap = fr->suspect };

	if (n && p[n - 1] == '\r')
		n--;
	if (n == 0)
		return;
	if (fr->suspect && n > fr->max_frame) {
		fr->stats.discarded_bytes += n;
		return;
	}
	f.len = n;
	f.wire_len = n;
	if (n > fr->max_frame) {
		size_t edge = framer_edge(fr);

		f.len = edge;
		f.tail = p + n - edge;
		f.tail_len = edge;
		f.oversized = true;
		fr->stats.oversized++;
	}
	fr->stats.frames++;
	fn(ctx, &f);
}

/* Delivers the buffered oversized line: head in buf, end in the window. */
static void framer_emit_oversized(struct framer *fr, uint64_t ts_last, frame_fn fn, void *ctx)
{
	const char *end = fr->tail + fr->tail_len;
	size_t have = fr->tail_len;
	struct frame f = {
		.data = fr->buf,
		.len = fr->len,
		.wire_len = fr->wire_len,
		.ts_first_ns = fr->ts_first_ns,
		.ts_last_ns = ts_last > fr->ts_first_ns ? ts_last : fr->ts_first_ns,
		.oversized = true,
	};

	if (have && end[-1] == '\r') {
		f.wire_len--;
		end--;
		have--;
	}
	/* Only a cut line can have less than edge bytes after its head. */
	f.tail_len = have < framer_edge(fr) ? have : framer_edge(fr);
	f.tail = end - f.tail_len;
	fr->stats.oversized++;
	fr->stats.frames++;
	fn(ctx, &f);
}

void framer_cut(struct framer *fr, uint64_t len, uint64_t ts_ns)
{
	if (fr->suspect)
		framer_abandon(fr); /* a line that may have lost its start cannot be cut too */
	if (fr->resync) {
		/* The line was already lost: the cut is part of what is skipped. */
		fr->stats.discarded_bytes += len;
		return;
	}
	if (fr->wire_len == 0)
		fr->ts_first_ns = ts_ns;
	if (!fr->oversized && !framer_enter_oversized(fr)) {
		framer_abandon(fr);
		fr->stats.discarded_bytes += len;
		return;
	}
	fr->wire_len += len;
	fr->tail_len = 0;
	fr->cut = true;
}

void framer_feed(struct framer *fr, const char *p, size_t n, uint64_t ts_ns, frame_fn fn, void *ctx)
{
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k;

		if (fr->resync) {
			k = nl ? (size_t)(nl - p) + 1 : n;
			fr->stats.discarded_bytes += k;
			if (nl)
				fr->resync = false; /* the next line starts whole */
			p += k;
			n -= k;
			continue;
		}
		if (!nl) {
			framer_append(fr, p, n, ts_ns);
			return;
		}
		k = (size_t)(nl - p);
		if (fr->wire_len == 0) {
			framer_emit(fr, p, k, ts_ns, ts_ns, fn, ctx);
		} else if (framer_append(fr, p, k, ts_ns)) {
			if (fr->oversized)
				framer_emit_oversized(fr, ts_ns, fn, ctx);
			else
				framer_emit(fr, fr->buf, fr->len, fr->ts_first_ns, ts_ns, fn, ctx);
			framer_clear_line(fr);
		} else {
			/* The line was dropped; its newline is here, so nothing remains to resync. */
			fr->resync = false;
			fr->stats.discarded_bytes++;
		}
		fr->suspect = false; /* past a newline: the next line starts whole */
		p += k + 1;
		n -= k + 1;
	}
}

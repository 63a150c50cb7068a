/* stream.c -- reassembly of one (process, channel file, role) byte stream by kernel offset.
 *
 * Invariants:
 * - Bytes reach the framer exactly once and in offset order; next_off is the offset of the
 *   next one. Everything skipped is counted: an unannounced hole as a gap (gaps, gap_bytes),
 *   an announced one by its kind (cut_bytes, lost_bytes), bytes seen twice as duplicates.
 * - held[] is sorted by offset and, between calls, every entry lies strictly ahead of
 *   next_off (anything reachable has been delivered). At most STREAM_HOLD_MAX entries: when
 *   one more is needed, the first hole is given up as a gap, so a lost record costs a bounded
 *   delay and bounded memory, never a stall.
 * - An entry without data is an announced hole (stream_hole), taken by its kind when reached:
 *   a cut goes to the framer as a cut (the line goes on), a lost range as a gap.
 * - The bytes go to the framer, or, for a stream set up with stream_init_ops, to its ops:
 *   the same calls in the same order (feed, gap, cut).
 * - Held bytes are charged to the framer's memory budget (frame.h) while they are held (a
 *   stream with ops has no budget: its owner bounds it). */
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/stream.h"

void stream_init(struct stream *s, size_t max_frame)
{
	memset(s, 0, sizeof(*s));
	framer_init(&s->framer, max_frame);
}

void stream_init_ops(struct stream *s, const struct stream_ops *ops, void *ctx)
{
	memset(s, 0, sizeof(*s));
	s->ops = ops;
	s->ops_ctx = ctx;
}

static void out_feed(struct stream *s, const char *p, size_t n, uint64_t ts_ns, frame_fn fn, void *ctx)
{
	if (s->ops)
		s->ops->feed(s->ops_ctx, p, n, ts_ns);
	else
		framer_feed(&s->framer, p, n, ts_ns, fn, ctx);
}

static void out_gap(struct stream *s, uint64_t lost)
{
	if (s->ops)
		s->ops->gap(s->ops_ctx, lost);
	else
		framer_gap(&s->framer);
}

static void out_cut(struct stream *s, uint64_t len, uint64_t ts_ns)
{
	if (s->ops)
		s->ops->cut(s->ops_ctx, len, ts_ns);
	else
		framer_cut(&s->framer, len, ts_ns);
}

void stream_free(struct stream *s)
{
	for (int i = 0; i < s->nheld; i++)
		free(s->held[i].data);
	framer_free(&s->framer);
	memset(s, 0, sizeof(*s));
}

static void stream_declare_gap(struct stream *s, uint64_t to)
{
	uint64_t lost = to - s->next_off;

	s->stats.gaps++;
	s->stats.gap_bytes += lost;
	s->next_off = to;
	out_gap(s, lost);
}

/* Takes a held entry that starts at or before next_off; what precedes next_off was already
 * delivered (or given up). */
static void stream_take(struct stream *s, const struct stream_held *h, frame_fn fn, void *ctx)
{
	uint64_t end = h->off + h->len, skip;

	if (end <= s->next_off) {
		if (h->data)
			s->stats.duplicates += h->len;
		return;
	}
	skip = s->next_off - h->off;
	if (!h->data) {
		if (h->hole == STREAM_HOLE_CUT) {
			s->stats.cut_bytes += h->len - skip;
			out_cut(s, h->len - skip, h->ts_ns);
		} else {
			s->stats.lost_bytes += h->len - skip;
			out_gap(s, h->len - skip);
		}
		s->next_off = end;
		return;
	}
	s->stats.duplicates += skip;
	s->stats.bytes += h->len - skip;
	s->next_off = end;
	out_feed(s, h->data + skip, (size_t)(h->len - skip), h->ts_ns, fn, ctx);
}

/* Delivers the held entries the stream has reached. */
static void stream_drain(struct stream *s, frame_fn fn, void *ctx)
{
	while (s->nheld > 0 && s->held[0].off <= s->next_off) {
		struct stream_held h = s->held[0];

		s->nheld--;
		memmove(&s->held[0], &s->held[1], (size_t)s->nheld * sizeof(h));
		stream_take(s, &h, fn, ctx);
		if (h.data)
			framer_uncharge(&s->framer, (size_t)h.len);
		free(h.data);
	}
}

/* Gives up the hole before the first held entry; stream_drain then takes the entry. */
static void stream_skip_first_hole(struct stream *s)
{
	if (s->held[0].off > s->next_off)
		stream_declare_gap(s, s->held[0].off);
}

/* data NULL: an announced hole of kind hole. */
static void stream_insert(struct stream *s, const struct stream_held *in)
{
	struct stream_held h = *in;
	int i = s->nheld;

	for (int j = 0; j < s->nheld; j++) {
		const struct stream_held *o = &s->held[j];

		if (o->off == h.off && !o->data == !h.data && o->len >= h.len) {
			if (h.data)
				s->stats.duplicates += h.len;
			return;
		}
	}
	if (h.data) {
		/* Without memory (or room in the budget) the bytes are as good as lost: the hole
		 * becomes a gap later. */
		if (!framer_charge(&s->framer, (size_t)h.len))
			return;
		if (!(h.data = malloc((size_t)h.len))) {
			framer_uncharge(&s->framer, (size_t)h.len);
			return;
		}
		memcpy(h.data, in->data, (size_t)h.len);
		s->stats.reordered++;
	}
	while (i > 0 && s->held[i - 1].off > h.off)
		i--;
	memmove(&s->held[i + 1], &s->held[i], (size_t)(s->nheld - i) * sizeof(h));
	s->held[i] = h;
	s->nheld++;
}

/* Places an entry, holding it when it lies ahead of next_off, making room by giving up holes
 * if needed. */
static void stream_place(struct stream *s, const struct stream_held *h, frame_fn fn, void *ctx)
{
	while (h->off > s->next_off && s->nheld == STREAM_HOLD_MAX) {
		if (h->off < s->held[0].off) {
			/* The new entry is the first: the hole before it goes. */
			stream_declare_gap(s, h->off);
			break;
		}
		stream_skip_first_hole(s);
		stream_drain(s, fn, ctx);
	}
	if (h->off <= s->next_off) {
		stream_take(s, h, fn, ctx);
		stream_drain(s, fn, ctx);
		return;
	}
	stream_insert(s, h);
}

bool stream_holds_data(const struct stream *s)
{
	for (int i = 0; i < s->nheld; i++)
		if (s->held[i].data)
			return true;
	return false;
}

void stream_flush(struct stream *s, frame_fn fn, void *ctx)
{
	while (s->nheld > 0) {
		stream_skip_first_hole(s);
		stream_drain(s, fn, ctx);
	}
}

void stream_feed(struct stream *s, uint64_t off, const void *data, size_t len, uint64_t ts_ns, frame_fn fn, void *ctx)
{
	struct stream_held h = { .off = off, .ts_ns = ts_ns, .len = len, .data = (char *)data };

	if (len)
		stream_place(s, &h, fn, ctx);
}

void stream_hole(struct stream *s, uint64_t off, uint64_t len, enum stream_hole kind, uint64_t ts_ns, frame_fn fn,
		 void *ctx)
{
	struct stream_held h = { .off = off, .ts_ns = ts_ns, .len = len, .hole = kind };

	if (len && off + len > s->next_off)
		stream_place(s, &h, fn, ctx);
}

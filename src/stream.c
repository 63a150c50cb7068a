/* stream.c -- reassembly of one (tgid, fd, direction) byte stream by kernel offset.
 *
 * Invariants:
 * - Bytes reach the framer exactly once and in offset order; next_off is the offset of the
 *   next one. Everything skipped is counted: a hole as a gap (gaps, gap_bytes), bytes seen
 *   twice as duplicates.
 * - held[] is sorted by offset and, between calls, every entry lies strictly ahead of
 *   next_off (anything reachable has been delivered). At most STREAM_HOLD_MAX entries: when
 *   one more is needed, the first hole is given up as a gap, so a lost record costs a bounded
 *   delay and bounded memory, never a stall.
 * - An entry without data is a range known to be lost (stream_skip_to): reaching it is a gap. */
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/stream.h"

void stream_init(struct stream *s, size_t max_frame)
{
	memset(s, 0, sizeof(*s));
	framer_init(&s->framer, max_frame);
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
	s->stats.gaps++;
	s->stats.gap_bytes += to - s->next_off;
	s->next_off = to;
	s->started = true;
	framer_gap(&s->framer);
}

/* Takes a record or lost range that starts at or before next_off; what precedes next_off was
 * already delivered (or given up). */
static void stream_take(struct stream *s, uint64_t off, const char *data, size_t len, uint64_t ts_ns,
			frame_fn fn, void *ctx)
{
	uint64_t end = off + len;
	size_t skip;

	if (!data) {
		if (end > s->next_off)
			stream_declare_gap(s, end);
		return;
	}
	if (end <= s->next_off) {
		s->stats.duplicates += len;
		return;
	}
	skip = (size_t)(s->next_off - off);
	s->stats.duplicates += skip;
	s->stats.bytes += len - skip;
	s->next_off = end;
	s->started = true;
	framer_feed(&s->framer, data + skip, len - skip, ts_ns, fn, ctx);
}

/* Delivers the held entries the stream has reached. */
static void stream_drain(struct stream *s, frame_fn fn, void *ctx)
{
	while (s->nheld > 0 && s->held[0].off <= s->next_off) {
		struct stream_held h = s->held[0];

		s->nheld--;
		memmove(&s->held[0], &s->held[1], (size_t)s->nheld * sizeof(h));
		stream_take(s, h.off, h.data, h.len, h.ts_ns, fn, ctx);
		free(h.data);
	}
}

/* Gives up the hole before the first held entry (and the entry itself if it is a lost range). */
static void stream_skip_first_hole(struct stream *s)
{
	const struct stream_held *h = &s->held[0];
	uint64_t to = h->data ? h->off : h->off + h->len;

	if (to > s->next_off)
		stream_declare_gap(s, to);
}

static void stream_insert(struct stream *s, uint64_t off, const char *data, size_t len, uint64_t ts_ns)
{
	struct stream_held h = { .off = off, .ts_ns = ts_ns, .len = len };
	int i = s->nheld;

	if (data) {
		for (int j = 0; j < s->nheld; j++) {
			if (s->held[j].off == off && s->held[j].data && s->held[j].len >= len) {
				s->stats.duplicates += len;
				return;
			}
		}
		/* Without memory the entry stays as a lost range: a gap when reached. */
		h.data = malloc(len);
		if (h.data)
			memcpy(h.data, data, len);
		s->stats.reordered++;
	}
	while (i > 0 && s->held[i - 1].off > off)
		i--;
	memmove(&s->held[i + 1], &s->held[i], (size_t)(s->nheld - i) * sizeof(h));
	s->held[i] = h;
	s->nheld++;
}

/* Places an entry that lies ahead of next_off, making room by giving up holes if needed. */
static void stream_hold(struct stream *s, uint64_t off, const char *data, size_t len, uint64_t ts_ns,
			frame_fn fn, void *ctx)
{
	while (s->nheld == STREAM_HOLD_MAX) {
		if (off < s->held[0].off) {
			/* The new entry is the first: the hole before it goes (a lost range with it). */
			stream_declare_gap(s, data ? off : off + len);
			break;
		}
		stream_skip_first_hole(s);
		stream_drain(s, fn, ctx);
	}
	if (off <= s->next_off) {
		stream_take(s, off, data, len, ts_ns, fn, ctx);
		stream_drain(s, fn, ctx);
		return;
	}
	stream_insert(s, off, data, len, ts_ns);
}

void stream_flush(struct stream *s, frame_fn fn, void *ctx)
{
	while (s->nheld > 0) {
		stream_skip_first_hole(s);
		stream_drain(s, fn, ctx);
	}
}

/* Offset 0 after bytes were seen: the fd was closed and its number reused, or the kernel
 * forgot the stream. What was held belongs to the old stream and is delivered first. */
static void stream_restart(struct stream *s, frame_fn fn, void *ctx)
{
	s->stats.resets++;
	stream_flush(s, fn, ctx);
	framer_reset(&s->framer);
	s->next_off = 0;
	s->last_end = 0;
	s->started = false;
}

void stream_feed(struct stream *s, uint64_t off, const void *data, size_t len, uint64_t ts_ns, frame_fn fn, void *ctx)
{
	if (len == 0) {
		s->last_end = off; /* a truncated syscall whose bytes could not be copied at all */
		return;
	}
	if (off == 0 && s->started)
		stream_restart(s, fn, ctx);
	s->last_end = off + len;
	if (off <= s->next_off) {
		stream_take(s, off, data, len, ts_ns, fn, ctx);
		stream_drain(s, fn, ctx);
	} else {
		stream_hold(s, off, data, len, ts_ns, fn, ctx);
	}
}

void stream_skip_to(struct stream *s, uint64_t off, frame_fn fn, void *ctx)
{
	uint64_t from = s->last_end > s->next_off ? s->last_end : s->next_off;

	if (off <= from)
		return;
	s->last_end = off;
	if (from == s->next_off) {
		stream_declare_gap(s, off);
		stream_drain(s, fn, ctx);
	} else {
		stream_hold(s, from, NULL, off - from, 0, fn, ctx);
	}
}

/* test_stream.c -- reassembly by offset: order, reordering, hold overflow, duplicates, announced holes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mcpsonde/stream.h"

#define MAX_FRAMES 64

struct got_frame {
	char text[128];
	uint64_t ts_first, ts_last;
	bool after_gap;
};

struct collector {
	struct got_frame f[MAX_FRAMES];
	int n;
};

static void collect(void *ctx, const struct frame *f)
{
	struct collector *c = ctx;
	struct got_frame *g;

	assert_true(c->n < MAX_FRAMES);
	assert_true(f->len < sizeof(g->text));
	g = &c->f[c->n++];
	memcpy(g->text, f->data, f->len);
	g->text[f->len] = '\0';
	g->ts_first = f->ts_first_ns;
	g->ts_last = f->ts_last_ns;
	g->after_gap = f->after_gap;
}

/* Feeds s at off, with ts_ns = off + 1000 so that a frame's timestamps tell which record
 * carried its first and last byte. */
static void feed_at(struct stream *st, uint64_t off, const char *s, struct collector *c)
{
	stream_feed(st, off, s, strlen(s), off + 1000, collect, c);
}

static void test_in_order(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n{\"b\"", &c);
	feed_at(&st, 12, ":2}\n", &c);
	feed_at(&st, 16, "{\"c\":3}\n", &c);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"b\":2}");
	assert_int_equal(c.f[1].ts_first, 1000);
	assert_int_equal(c.f[1].ts_last, 1012);
	assert_string_equal(c.f[2].text, "{\"c\":3}");
	assert_int_equal(st.next_off, 24);
	assert_int_equal(st.stats.bytes, 24);
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.stats.reordered, 0);
	assert_int_equal(st.stats.duplicates, 0);
	stream_free(&st);
}

static void test_reordered_records_placed(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	/* Three records of one message arrive 3, 1, 2. */
	feed_at(&st, 10, "89\"}\n{\"z\":0}\n", &c);
	feed_at(&st, 0, "{\"x\":", &c);
	assert_int_equal(c.n, 0);
	assert_int_equal(st.nheld, 1);
	feed_at(&st, 5, "\"0123", &c);
	assert_int_equal(st.nheld, 0);
	feed_at(&st, 10, "89\"}\n{\"z\":0}\n", &c); /* a record already delivered */
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[0].text, "{\"x\":\"012389\"}");
	assert_int_equal(c.f[0].ts_first, 1000);
	assert_int_equal(c.f[0].ts_last, 1010);
	assert_string_equal(c.f[1].text, "{\"z\":0}");
	assert_int_equal(st.nheld, 0);
	assert_int_equal(st.stats.reordered, 1);
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.stats.bytes, 23);
	assert_int_equal(st.stats.duplicates, 13);
	stream_free(&st);
}

static void test_hold_overflow_declares_gap(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };
	char rec[32];
	uint64_t off;

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n{\"lost\":", &c); /* 16 bytes; bytes 16..25 never arrive */
	off = 26;
	for (int i = 0; i < STREAM_HOLD_MAX; i++) {
		snprintf(rec, sizeof(rec), "{\"n\":%02d}\n", i);
		feed_at(&st, off, rec, &c);
		off += strlen(rec);
	}
	assert_int_equal(c.n, 1);
	assert_int_equal(st.nheld, STREAM_HOLD_MAX);
	assert_int_equal(st.stats.gaps, 0);
	snprintf(rec, sizeof(rec), "{\"n\":%02d}\n", STREAM_HOLD_MAX);
	feed_at(&st, off, rec, &c);
	/* The hole is given up: the partial "lost" line goes; the line that follows the hole is
	 * flagged (it could have been the end of the lost one: here it is whole), then all comes
	 * through. */
	assert_int_equal(st.stats.gaps, 1);
	assert_int_equal(st.stats.gap_bytes, 10);
	assert_int_equal(st.nheld, 0);
	assert_int_equal(c.n, 2 + STREAM_HOLD_MAX);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"n\":00}");
	assert_true(c.f[1].after_gap);
	assert_string_equal(c.f[2].text, "{\"n\":01}");
	assert_false(c.f[2].after_gap);
	assert_string_equal(c.f[1 + STREAM_HOLD_MAX].text, "{\"n\":16}");
	assert_int_equal(st.framer.stats.discarded_bytes, 8);
	assert_int_equal(st.next_off, off + strlen(rec));
	assert_int_equal(st.stats.reordered, STREAM_HOLD_MAX);
	stream_free(&st);
}

static void test_overflow_new_record_first(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	for (int i = 0; i < STREAM_HOLD_MAX; i++)
		feed_at(&st, 100 + 10 * (uint64_t)i, "{\"n\":00}\n\n", &c);
	/* Ahead of next_off but before everything held: its own hole is the one given up. */
	feed_at(&st, 50, "xx\n{\"m\":1}\n", &c);
	assert_int_equal(st.stats.gaps, 1);
	assert_int_equal(st.stats.gap_bytes, 50);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[0].text, "xx"); /* the end of a line whose start was lost */
	assert_true(c.f[0].after_gap);
	assert_string_equal(c.f[1].text, "{\"m\":1}");
	assert_false(c.f[1].after_gap);
	assert_int_equal(st.nheld, STREAM_HOLD_MAX);
	stream_flush(&st, collect, &c); /* [61, 100) goes; the first held line follows it */
	assert_int_equal(st.stats.gaps, 2);
	assert_int_equal(st.stats.gap_bytes, 50 + 39);
	assert_int_equal(c.n, 2 + STREAM_HOLD_MAX);
	assert_string_equal(c.f[2].text, "{\"n\":00}");
	assert_true(c.f[2].after_gap);
	assert_false(c.f[3].after_gap);
	assert_int_equal(st.next_off, 100 + 10 * STREAM_HOLD_MAX);
	stream_free(&st);
}

static void test_duplicates_and_overlap(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n", &c);
	feed_at(&st, 0 + 2, "a\":1}\n", &c); /* wholly behind */
	stream_feed(&st, 5, "1}\n{\"b\":2}\n", 11, 7, collect, &c); /* straddles */
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[1].text, "{\"b\":2}");
	assert_int_equal(c.f[1].ts_first, 7);
	assert_int_equal(st.stats.duplicates, 6 + 3);
	assert_int_equal(st.stats.bytes, 16);
	stream_free(&st);
}

/* A stream is never restarted (its offsets belong to one process's channel file): an offset
 * behind the expected one is old bytes, counted and dropped. */
static void test_offset_zero_again_is_a_duplicate(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n{\"half", &c);
	feed_at(&st, 0, "{\"new\":1}\n", &c);
	feed_at(&st, 14, "\":2}\n", &c);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"half\":2}");
	assert_int_equal(st.stats.duplicates, 10);
	assert_int_equal(st.stats.gaps, 0);
	stream_free(&st);
}

static void test_zero_length_records_harmless(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	stream_feed(&st, 0, "", 0, 1, collect, &c);
	feed_at(&st, 0, "{\"a\":", &c);
	stream_feed(&st, 0, "", 0, 2, collect, &c); /* an EOF marker */
	stream_feed(&st, 5, NULL, 0, 3, collect, &c);
	stream_feed(&st, 99, NULL, 0, 4, collect, &c);
	stream_hole(&st, 3, 0, STREAM_HOLE_LOST, 5, collect, &c);
	feed_at(&st, 5, "1}\n", &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.nheld, 0);
	stream_free(&st);
}

/* Bytes moved without being copied (splice, sendfile): a gap with its own count. */
static void test_lost_hole(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n{\"big\":\"", &c);
	stream_hole(&st, 16, 100, STREAM_HOLE_LOST, 5, collect, &c);
	assert_int_equal(st.stats.lost_bytes, 100);
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.next_off, 116);
	stream_hole(&st, 16, 100, STREAM_HOLE_LOST, 5, collect, &c); /* announced again: nothing */
	assert_int_equal(st.stats.lost_bytes, 100);
	feed_at(&st, 116, "end\"}\n{\"c\":3}\n", &c);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "end\"}");
	assert_true(c.f[1].after_gap);
	assert_string_equal(c.f[2].text, "{\"c\":3}");
	assert_false(c.f[2].after_gap);
	assert_int_equal(st.framer.stats.discarded_bytes, 8);
	stream_free(&st);
}

/* A cut keeps framing: the cut line is one oversized frame, the next line is whole. The cut
 * is announced by every record of its syscall, the first of them possibly ahead. */
static void test_cut_hole(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	/* The syscall [8, 1000): head [8, 21), cut [21, 990), tail [990, 1000). */
	stream_hole(&st, 21, 969, STREAM_HOLE_CUT, 50, collect, &c);
	feed_at(&st, 990, "\"}\n{\"d\":4}\n", &c);
	stream_hole(&st, 21, 969, STREAM_HOLE_CUT, 50, collect, &c);
	feed_at(&st, 8, "{\"b\":2}\n{\"big", &c);
	assert_int_equal(c.n, 0);
	feed_at(&st, 0, "{\"a\":1}\n", &c); /* the reordered record fills the hole */
	assert_int_equal(c.n, 4);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"b\":2}");
	assert_string_equal(c.f[2].text, "{\"big"); /* oversized: the head */
	assert_int_equal(c.f[2].ts_first, 1008);
	assert_string_equal(c.f[3].text, "{\"d\":4}");
	assert_int_equal(st.stats.cut_bytes, 969);
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.next_off, 990 + 11);
	assert_int_equal(st.nheld, 0);
	stream_free(&st);
}

static void test_flush_declares_holes(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n", &c);
	feed_at(&st, 20, "x\"}\n{\"b\":2}\n", &c);
	feed_at(&st, 40, "{\"c\":3}\n", &c);
	assert_int_equal(c.n, 1);
	stream_flush(&st, collect, &c);
	/* After the hole at [8, 20) the end of a line, then "b"; after [32, 40) "c", whole. */
	assert_int_equal(c.n, 4);
	assert_string_equal(c.f[1].text, "x\"}");
	assert_true(c.f[1].after_gap);
	assert_string_equal(c.f[2].text, "{\"b\":2}");
	assert_false(c.f[2].after_gap);
	assert_string_equal(c.f[3].text, "{\"c\":3}");
	assert_true(c.f[3].after_gap);
	assert_int_equal(st.stats.gaps, 2);
	assert_int_equal(st.stats.gap_bytes, 12 + 8);
	assert_int_equal(st.nheld, 0);
	assert_int_equal(st.next_off, 48);
	stream_flush(&st, collect, &c); /* nothing held: nothing happens */
	assert_int_equal(st.stats.gaps, 2);
	stream_free(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order),
		cmocka_unit_test(test_reordered_records_placed),
		cmocka_unit_test(test_hold_overflow_declares_gap),
		cmocka_unit_test(test_overflow_new_record_first),
		cmocka_unit_test(test_duplicates_and_overlap),
		cmocka_unit_test(test_offset_zero_again_is_a_duplicate),
		cmocka_unit_test(test_zero_length_records_harmless),
		cmocka_unit_test(test_lost_hole),
		cmocka_unit_test(test_cut_hole),
		cmocka_unit_test(test_flush_declares_holes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

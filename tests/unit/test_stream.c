/* test_stream.c -- reassembly by offset: order, reordering, hold overflow, duplicates, resets, skips. */
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
	/* The hole is given up: the partial "lost" line goes; the record after the hole begins a
	 * message ('{'), framed as such, then all comes through. */
	assert_int_equal(st.stats.gaps, 1);
	assert_int_equal(st.stats.gap_bytes, 10);
	assert_int_equal(st.nheld, 0);
	assert_int_equal(c.n, 2 + STREAM_HOLD_MAX);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"n\":00}");
	assert_string_equal(c.f[STREAM_HOLD_MAX + 1].text, "{\"n\":16}");
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
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].text, "{\"m\":1}");
	assert_int_equal(st.nheld, STREAM_HOLD_MAX);
	stream_flush(&st, collect, &c); /* [61, 100) goes; the held lines begin messages */
	assert_int_equal(st.stats.gaps, 2);
	assert_int_equal(st.stats.gap_bytes, 50 + 39);
	assert_int_equal(c.n, 1 + STREAM_HOLD_MAX);
	assert_string_equal(c.f[1].text, "{\"n\":00}");
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
	assert_int_equal(st.stats.resets, 0);
	stream_free(&st);
}

static void test_reset_at_offset_zero(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n{\"half", &c);
	feed_at(&st, 40, "ignored\n", &c); /* held, from the old stream */
	feed_at(&st, 0, "{\"new\":1}\n", &c);
	assert_int_equal(st.stats.resets, 1);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	/* The new stream's first line is whole: no resynchronisation after a reset. */
	assert_string_equal(c.f[1].text, "{\"new\":1}");
	assert_int_equal(st.next_off, 10);
	assert_int_equal(st.nheld, 0);
	/* The old stream's hole before its held record was a gap; its partial line discarded. */
	assert_int_equal(st.stats.gaps, 1);
	assert_int_equal(st.stats.gap_bytes, 40 - 14);
	assert_int_equal(st.framer.stats.discarded_bytes, 6 + 8);
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
	stream_feed(&st, 0, "", 0, 2, collect, &c); /* EOF marker at 0: not a reset */
	stream_feed(&st, 5, NULL, 0, 3, collect, &c);
	stream_feed(&st, 99, NULL, 0, 4, collect, &c);
	feed_at(&st, 5, "1}\n", &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_int_equal(st.stats.resets, 0);
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.nheld, 0);
	stream_free(&st);
}

static void test_skip_to(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 0, "{\"a\":1}\n{\"big\":\"", &c); /* 16 bytes of a syscall of 116 */
	stream_skip_to(&st, 116, collect, &c);
	assert_int_equal(st.stats.gaps, 1);
	assert_int_equal(st.stats.gap_bytes, 100);
	assert_int_equal(st.next_off, 116);
	stream_skip_to(&st, 50, collect, &c); /* behind: nothing */
	assert_int_equal(st.stats.gaps, 1);
	feed_at(&st, 116, "end\"}\n{\"c\":3}\n", &c);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"c\":3}");
	assert_int_equal(st.framer.stats.discarded_bytes, 8 + 6);
	stream_free(&st);
}

/* A truncated syscall whose record arrives ahead: its loss waits for the hole to be filled. */
static void test_skip_to_after_held_record(void **state)
{
	(void)state;
	struct stream st;
	struct collector c = { 0 };

	stream_init(&st, 1 << 20);
	feed_at(&st, 8, "{\"b\":2}\n{\"big", &c); /* syscall [8, 58), 13 bytes captured */
	stream_skip_to(&st, 58, collect, &c);
	assert_int_equal(st.stats.gaps, 0);
	assert_int_equal(st.nheld, 2);
	feed_at(&st, 58, "\"}\n{\"d\":4}\n", &c);
	feed_at(&st, 0, "{\"a\":1}\n", &c); /* the reordered record fills the hole */
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[0].text, "{\"a\":1}");
	assert_string_equal(c.f[1].text, "{\"b\":2}");
	assert_string_equal(c.f[2].text, "{\"d\":4}");
	assert_int_equal(st.stats.gaps, 1);
	assert_int_equal(st.stats.gap_bytes, 58 - 21);
	assert_int_equal(st.next_off, 69);
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
	/* after the hole at [8, 20) the line's tail goes, "b" follows; after [32, 40) "c" begins */
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[1].text, "{\"b\":2}");
	assert_string_equal(c.f[2].text, "{\"c\":3}");
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
		cmocka_unit_test(test_reset_at_offset_zero),
		cmocka_unit_test(test_zero_length_records_harmless),
		cmocka_unit_test(test_skip_to),
		cmocka_unit_test(test_skip_to_after_held_record),
		cmocka_unit_test(test_flush_declares_holes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

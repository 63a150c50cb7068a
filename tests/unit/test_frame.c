/* test_frame.c -- newline framing: chunking, timestamps, "\r\n", empty lines, oversized lines, gaps, cuts,
 * the memory budget shared by framers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mcpsonde/frame.h"

#define MAX_FRAMES 64

struct got_frame {
	char *data;
	size_t len;
	char *tail;
	size_t tail_len;
	uint64_t wire_len, ts_first, ts_last;
	bool oversized, after_gap;
	const char *data_ptr; /* where the framer pointed: tells a zero-copy delivery */
};

struct collector {
	struct got_frame f[MAX_FRAMES];
	int n;
};

static char *dup_bytes(const char *p, size_t n)
{
	char *c = malloc(n + 1);

	assert_non_null(c);
	if (n)
		memcpy(c, p, n);
	c[n] = '\0';
	return c;
}

static void collect(void *ctx, const struct frame *f)
{
	struct collector *c = ctx;
	struct got_frame *g;

	assert_true(c->n < MAX_FRAMES);
	g = &c->f[c->n++];
	g->data = dup_bytes(f->data, f->len);
	g->len = f->len;
	g->tail = f->oversized ? dup_bytes(f->tail, f->tail_len) : NULL;
	g->tail_len = f->tail_len;
	g->wire_len = f->wire_len;
	g->ts_first = f->ts_first_ns;
	g->ts_last = f->ts_last_ns;
	g->oversized = f->oversized;
	g->after_gap = f->after_gap;
	g->data_ptr = f->data;
	assert_null(memchr(f->data, '\n', f->len));
}

static void collector_free(struct collector *c)
{
	for (int i = 0; i < c->n; i++) {
		free(c->f[i].data);
		free(c->f[i].tail);
	}
	c->n = 0;
}

static void feed_str(struct framer *fr, const char *s, uint64_t ts, struct collector *c)
{
	framer_feed(fr, s, strlen(s), ts, collect, c);
}

static void test_single_line_is_zero_copy(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };
	const char *in = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n";

	framer_init(&fr, 1 << 20);
	framer_feed(&fr, in, strlen(in), 42, collect, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].data, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
	assert_ptr_equal(c.f[0].data_ptr, in);
	assert_int_equal(c.f[0].wire_len, strlen(in) - 1);
	assert_int_equal(c.f[0].ts_first, 42);
	assert_int_equal(c.f[0].ts_last, 42);
	assert_false(c.f[0].oversized);
	assert_int_equal(fr.stats.frames, 1);
	assert_int_equal(framer_pending(&fr), 0);
	assert_null(fr.buf); /* nothing was ever buffered */
	collector_free(&c);
	framer_free(&fr);
}

static void test_split_across_syscalls(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "{\"id\":1,", 100, &c);
	assert_int_equal(c.n, 0);
	assert_int_equal(framer_pending(&fr), 8);
	feed_str(&fr, "\"result\":", 200, &c);
	feed_str(&fr, "{}}\n{\"id\"", 300, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].data, "{\"id\":1,\"result\":{}}");
	assert_int_equal(c.f[0].ts_first, 100);
	assert_int_equal(c.f[0].ts_last, 300);
	assert_int_equal(c.f[0].wire_len, 20);
	feed_str(&fr, ":2}\n", 400, &c);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[1].data, "{\"id\":2}");
	assert_int_equal(c.f[1].ts_first, 300);
	assert_int_equal(c.f[1].ts_last, 400);
	assert_int_equal(framer_pending(&fr), 0);
	collector_free(&c);
	framer_free(&fr);
}

static void test_several_and_partial_in_one_chunk(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n{\"d\":", 7, &c);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[0].data, "{\"a\":1}");
	assert_string_equal(c.f[1].data, "{\"b\":2}");
	assert_string_equal(c.f[2].data, "{\"c\":3}");
	assert_int_equal(framer_pending(&fr), 5);
	feed_str(&fr, "4}\n", 8, &c);
	assert_int_equal(c.n, 4);
	assert_string_equal(c.f[3].data, "{\"d\":4}");
	assert_int_equal(c.f[3].ts_first, 7);
	assert_int_equal(c.f[3].ts_last, 8);
	assert_int_equal(fr.stats.frames, 4);
	collector_free(&c);
	framer_free(&fr);
}

static void test_crlf_stripped(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "{\"a\":1}\r\n{\"b\":2}\r", 1, &c);
	feed_str(&fr, "\n", 2, &c);
	feed_str(&fr, "x\r\r\na\rb\n", 3, &c); /* one "\r" is stripped, and only at the end */
	assert_int_equal(c.n, 4);
	assert_string_equal(c.f[0].data, "{\"a\":1}");
	assert_int_equal(c.f[0].wire_len, 7);
	assert_string_equal(c.f[1].data, "{\"b\":2}");
	assert_int_equal(c.f[1].len, 7);
	assert_int_equal(c.f[1].ts_last, 2);
	assert_int_equal(c.f[2].len, 2);
	assert_memory_equal(c.f[2].data, "x\r", 2);
	assert_int_equal(c.f[3].len, 3);
	assert_memory_equal(c.f[3].data, "a\rb", 3);
	collector_free(&c);
	framer_free(&fr);
}

static void test_empty_lines_skipped(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "\n\n\r\n{\"a\":1}\n\n", 1, &c);
	feed_str(&fr, "\r", 2, &c);
	feed_str(&fr, "\n{\"b\":2}\n", 3, &c);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[0].data, "{\"a\":1}");
	assert_string_equal(c.f[1].data, "{\"b\":2}");
	assert_int_equal(fr.stats.frames, 2);
	assert_int_equal(fr.stats.discarded_bytes, 0);
	collector_free(&c);
	framer_free(&fr);
}

/* Bytes that are not all alike, so that a misplaced copy shows. */
static char *make_line(size_t n)
{
	char *p = malloc(n + 1);

	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (char)('a' + (i * 7 + i / 977) % 26);
	p[n] = '\n';
	return p;
}

static void test_one_mib_message_whole(void **state)
{
	(void)state;
	const size_t n = 1 << 20;
	char *line = make_line(n);
	struct framer fr;
	struct collector c = { 0 };
	uint64_t ts = 1;

	framer_init(&fr, 16u << 20);
	for (size_t off = 0; off < n + 1; off += 65536, ts++) {
		size_t k = n + 1 - off < 65536 ? n + 1 - off : 65536;

		framer_feed(&fr, line + off, k, ts, collect, &c);
	}
	assert_int_equal(c.n, 1);
	assert_false(c.f[0].oversized);
	assert_int_equal(c.f[0].len, n);
	assert_int_equal(c.f[0].wire_len, n);
	assert_memory_equal(c.f[0].data, line, n);
	assert_int_equal(c.f[0].ts_first, 1);
	assert_int_equal(c.f[0].ts_last, 17);
	assert_true(fr.cap < 4 * n); /* grown geometrically, not to max_frame */
	collector_free(&c);
	framer_free(&fr);
	free(line);
}

static void check_oversized(const struct got_frame *g, const char *line, size_t n)
{
	assert_true(g->oversized);
	assert_int_equal(g->wire_len, n);
	assert_int_equal(g->len, FRAME_EDGE_BYTES);
	assert_memory_equal(g->data, line, FRAME_EDGE_BYTES);
	assert_int_equal(g->tail_len, FRAME_EDGE_BYTES);
	assert_memory_equal(g->tail, line + n - FRAME_EDGE_BYTES, FRAME_EDGE_BYTES);
}

static void test_oversized_head_and_tail(void **state)
{
	(void)state;
	const size_t max_frame = 1 << 20, n = 3 << 20;
	char *line = make_line(n);
	struct framer fr;
	struct collector c = { 0 };
	uint64_t ts = 1;

	memcpy(line, "{\"result\":", 10);
	memcpy(line + n - 8, ",\"id\":7}", 8);
	framer_init(&fr, max_frame);
	feed_str(&fr, "{\"before\":1}\n{", 1, &c);
	/* The rest of the big line in reads of 65536 - 3 bytes (not aligned to anything). */
	for (size_t off = 1; off < n + 1; off += 65533) {
		size_t k = n + 1 - off < 65533 ? n + 1 - off : 65533;

		framer_feed(&fr, line + off, k, ++ts, collect, &c);
		assert_true(fr.cap <= max_frame + 1);
		assert_true(fr.len <= max_frame + 1);
		assert_true(fr.tail_len <= 2 * (FRAME_EDGE_BYTES + 1));
	}
	feed_str(&fr, "{\"after\":2}\n", 1000, &c);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[0].data, "{\"before\":1}");
	check_oversized(&c.f[1], line, n);
	assert_memory_equal(c.f[1].data, "{\"result\":", 10);
	assert_memory_equal(c.f[1].tail + FRAME_EDGE_BYTES - 8, ",\"id\":7}", 8);
	assert_int_equal(c.f[1].ts_first, 1);
	assert_int_equal(c.f[1].ts_last, ts);
	assert_string_equal(c.f[2].data, "{\"after\":2}");
	assert_false(c.f[2].oversized);
	assert_int_equal(fr.stats.frames, 3);
	assert_int_equal(fr.stats.oversized, 1);
	assert_null(fr.tail); /* the tail window is released once the line is delivered */
	collector_free(&c);

	/* The same line in one chunk takes the zero-copy path and is still oversized. */
	framer_feed(&fr, line, n + 1, 5, collect, &c);
	assert_int_equal(c.n, 1);
	check_oversized(&c.f[0], line, n);
	collector_free(&c);
	framer_free(&fr);
	free(line);
}

static void test_oversized_crlf(void **state)
{
	(void)state;
	const size_t max_frame = 100 * 1024, n = 300 * 1024;
	char *line = make_line(n + 1);
	struct framer fr;
	struct collector c = { 0 };

	line[n] = '\r';
	framer_init(&fr, max_frame);
	framer_feed(&fr, line, 1000, 1, collect, &c);
	framer_feed(&fr, line + 1000, n + 2 - 1000, 2, collect, &c);
	assert_int_equal(c.n, 1);
	assert_true(c.f[0].oversized);
	assert_int_equal(c.f[0].wire_len, n);
	assert_int_equal(c.f[0].tail_len, FRAME_EDGE_BYTES);
	assert_memory_equal(c.f[0].tail, line + n - FRAME_EDGE_BYTES, FRAME_EDGE_BYTES);
	assert_memory_equal(c.f[0].data, line, FRAME_EDGE_BYTES);
	collector_free(&c);
	framer_free(&fr);
	free(line);
}

/* Oversized means longer than max_frame after stripping "\r", however the line is chunked. */
static void test_oversized_boundary_independent_of_chunking(void **state)
{
	(void)state;
	const size_t max_frame = 16;
	const char *lines[] = { "0123456789abcdef\n", "0123456789abcdef\r\n", "0123456789abcdefg\n" };
	const bool want[] = { false, false, true };

	for (int l = 0; l < 3; l++) {
		for (size_t chunk = 1; chunk <= strlen(lines[l]); chunk++) {
			struct framer fr;
			struct collector c = { 0 };
			size_t n = strlen(lines[l]);

			framer_init(&fr, max_frame);
			for (size_t off = 0; off < n; off += chunk)
				framer_feed(&fr, lines[l] + off, n - off < chunk ? n - off : chunk, off, collect, &c);
			assert_int_equal(c.n, 1);
			assert_int_equal(c.f[0].oversized, want[l]);
			if (want[l]) {
				assert_int_equal(c.f[0].wire_len, 17);
				assert_string_equal(c.f[0].data, "0123456789abcdef");
				assert_string_equal(c.f[0].tail, "123456789abcdefg");
			} else {
				assert_int_equal(c.f[0].wire_len, 16);
				assert_string_equal(c.f[0].data, "0123456789abcdef");
			}
			collector_free(&c);
			framer_free(&fr);
		}
	}
}

static void test_gap_inside_message(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "{\"a\":1}\n{\"b\":\"partial", 1, &c); /* 13 bytes pending */
	assert_int_equal(framer_pending(&fr), 13);
	framer_gap(&fr);
	assert_int_equal(framer_pending(&fr), 0);
	assert_int_equal(fr.stats.discarded_bytes, 13);
	feed_str(&fr, "more of c\"}\n{\"d\":4}\n", 2, &c); /* the tail of a line whose start was lost */
	assert_int_equal(c.n, 3);
	assert_string_equal(c.f[0].data, "{\"a\":1}");
	assert_false(c.f[0].after_gap);
	assert_string_equal(c.f[1].data, "more of c\"}"); /* for the caller to judge */
	assert_true(c.f[1].after_gap);
	assert_string_equal(c.f[2].data, "{\"d\":4}");
	assert_false(c.f[2].after_gap);
	assert_int_equal(c.f[2].ts_first, 2);
	assert_int_equal(fr.stats.discarded_bytes, 13);
	assert_int_equal(fr.stats.frames, 3);
	assert_false(fr.resync);
	collector_free(&c);
	framer_free(&fr);
}

static void test_resync_spans_chunks_and_oversized(void **state)
{
	(void)state;
	const size_t max_frame = 64;
	char big[200];
	struct framer fr;
	struct collector c = { 0 };

	memset(big, 'x', sizeof(big));
	framer_init(&fr, max_frame);
	framer_feed(&fr, big, 100, 1, collect, &c); /* already oversized, then lost */
	framer_gap(&fr);
	assert_int_equal(fr.stats.discarded_bytes, 100);
	assert_null(fr.tail);
	framer_feed(&fr, big, 150, 2, collect, &c); /* still inside the lost line */
	feed_str(&fr, "yy\n{\"ok\":1}\n", 3, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].data, "{\"ok\":1}");
	assert_int_equal(fr.stats.discarded_bytes, 100 + 150 + 3);
	assert_int_equal(fr.stats.oversized, 0);
	collector_free(&c);
	framer_free(&fr);
}

/* A line cut in the middle (a syscall too long to copy whole): its head from before the
 * cut, its tail from after, never joined; the next line is intact. */
static void test_cut_keeps_the_line(void **state)
{
	(void)state;
	const size_t head = 100 * 1024;
	char *h = make_line(head);
	struct framer fr;
	struct collector c = { 0 };

	memcpy(h, "{\"result\":{", 11);
	framer_init(&fr, 1 << 20);
	framer_feed(&fr, h, head, 1, collect, &c);
	framer_cut(&fr, 5 << 20, 2);
	feed_str(&fr, "xx\"}},\"jsonrpc\":\"2.0\",\"id\":42}\n{\"id\":43,\"result\":{}}\n", 3, &c);
	assert_int_equal(c.n, 2);
	assert_true(c.f[0].oversized);
	assert_int_equal(c.f[0].wire_len, head + (5 << 20) + 30);
	assert_int_equal(c.f[0].len, FRAME_EDGE_BYTES);
	assert_memory_equal(c.f[0].data, "{\"result\":{", 11);
	/* The tail holds only what came after the cut. */
	assert_int_equal(c.f[0].tail_len, 30);
	assert_memory_equal(c.f[0].tail, "xx\"}},\"jsonrpc\":\"2.0\",\"id\":42}", 30);
	assert_int_equal(c.f[0].ts_first, 1);
	assert_int_equal(c.f[0].ts_last, 3);
	assert_string_equal(c.f[1].data, "{\"id\":43,\"result\":{}}");
	assert_false(c.f[1].oversized);
	assert_false(fr.resync);
	collector_free(&c);
	framer_free(&fr);
	free(h);
}

/* A short head stays short: bytes after the cut never extend it. */
static void test_cut_closes_a_short_head(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "{\"a\":1}\n{\"id\":9,", 1, &c);
	framer_cut(&fr, 1000, 2);
	feed_str(&fr, "\"b\":2}\n", 3, &c);
	assert_int_equal(c.n, 2);
	assert_true(c.f[1].oversized);
	assert_int_equal(c.f[1].len, 8);
	assert_memory_equal(c.f[1].data, "{\"id\":9,", 8);
	assert_int_equal(c.f[1].tail_len, 6);
	assert_memory_equal(c.f[1].tail, "\"b\":2}", 6);
	assert_int_equal(c.f[1].wire_len, 8 + 1000 + 6);
	collector_free(&c);
	framer_free(&fr);
}

/* A cut that ends right at a newline, and a cut while resynchronising after a gap. */
static void test_cut_edges(void **state)
{
	(void)state;
	struct framer fr;
	struct collector c = { 0 };

	framer_init(&fr, 1 << 20);
	feed_str(&fr, "{\"id\":1,", 1, &c);
	framer_cut(&fr, 10, 2);
	feed_str(&fr, "\n{\"next\":2}\n", 3, &c);
	assert_int_equal(c.n, 2);
	assert_true(c.f[0].oversized);
	assert_int_equal(c.f[0].tail_len, 0);
	assert_int_equal(c.f[0].wire_len, 8 + 10);
	assert_string_equal(c.f[1].data, "{\"next\":2}");
	collector_free(&c);

	framer_gap(&fr);
	framer_cut(&fr, 50, 4);
	assert_int_equal(fr.stats.discarded_bytes, 50);
	feed_str(&fr, "end of lost line\n{\"ok\":1}\n", 5, &c);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.f[0].data, "{\"ok\":1}");
	collector_free(&c);
	framer_free(&fr);
}

/* Feeds a line of n bytes (no newline) in 64 KiB pieces: byte i is 'a' + i % 26. */
static void feed_partial(struct framer *fr, size_t n, struct collector *c)
{
	static char piece[64 << 10];

	for (size_t off = 0; off < n;) {
		size_t k = n - off < sizeof(piece) ? n - off : sizeof(piece);

		for (size_t i = 0; i < k; i++)
			piece[i] = (char)('a' + (off + i) % 26);
		framer_feed(fr, piece, k, 1, collect, c);
		off += k;
	}
}

/* Two streams share 4 MiB: the one holding the longer partial line gives it up when the
 * other needs room; the rest of its line is skipped and its next line is whole, and the
 * other's line comes out intact. The budget is never exceeded. */
static void test_budget_evicts_the_largest(void **state)
{
	(void)state;
	struct frame_budget b = { .limit = 4u << 20 };
	struct framer big, small;
	struct collector c = { 0 };

	framer_init(&big, 16u << 20);
	framer_init(&small, 16u << 20);
	framer_set_budget(&big, &b);
	framer_set_budget(&small, &b);
	feed_partial(&big, 3u << 20, &c);
	assert_int_equal(big.stats.budget_dropped, 0);
	feed_partial(&small, 1u << 20, &c);
	feed_str(&small, "\n", 2, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.f[0].len, 1u << 20);
	assert_false(c.f[0].oversized);
	assert_int_equal(big.stats.budget_dropped, 1);
	assert_int_equal(big.stats.budget_dropped_bytes, 3u << 20);
	assert_int_equal(small.stats.budget_dropped + small.stats.budget_cut, 0);
	feed_str(&big, "rest of the given-up line\n{\"next\":1}\n", 3, &c);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.f[1].data, "{\"next\":1}");
	assert_true(b.peak <= b.limit);
	collector_free(&c);
	framer_free(&big);
	framer_free(&small);
	assert_int_equal(b.used, 0);
	assert_null(b.holders);
}

/* A line longer than the whole budget is the largest holder itself: it is cut to its head and
 * tail, as an oversized one, and still delivered with its wire length. */
static void test_budget_cuts_a_line_larger_than_itself(void **state)
{
	(void)state;
	struct frame_budget b = { .limit = 1u << 20 };
	struct framer fr;
	struct collector c = { 0 };
	size_t n = 3u << 20;

	framer_init(&fr, 16u << 20);
	framer_set_budget(&fr, &b);
	feed_partial(&fr, n, &c);
	feed_str(&fr, "\n", 2, &c);
	assert_int_equal(c.n, 1);
	assert_true(c.f[0].oversized);
	assert_int_equal(c.f[0].wire_len, n);
	assert_int_equal(c.f[0].len, FRAME_EDGE_BYTES);
	assert_int_equal(c.f[0].data[0], 'a');
	assert_int_equal(c.f[0].tail_len, FRAME_EDGE_BYTES);
	assert_int_equal(c.f[0].tail[FRAME_EDGE_BYTES - 1], (char)('a' + (n - 1) % 26));
	assert_int_equal(fr.stats.budget_cut, 1);
	assert_true(b.peak <= b.limit);
	collector_free(&c);
	framer_free(&fr);
	assert_int_equal(b.used, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_line_is_zero_copy),
		cmocka_unit_test(test_split_across_syscalls),
		cmocka_unit_test(test_several_and_partial_in_one_chunk),
		cmocka_unit_test(test_crlf_stripped),
		cmocka_unit_test(test_empty_lines_skipped),
		cmocka_unit_test(test_one_mib_message_whole),
		cmocka_unit_test(test_oversized_head_and_tail),
		cmocka_unit_test(test_oversized_crlf),
		cmocka_unit_test(test_oversized_boundary_independent_of_chunking),
		cmocka_unit_test(test_gap_inside_message),
		cmocka_unit_test(test_resync_spans_chunks_and_oversized),
		cmocka_unit_test(test_cut_keeps_the_line),
		cmocka_unit_test(test_cut_closes_a_short_head),
		cmocka_unit_test(test_cut_edges),
		cmocka_unit_test(test_budget_evicts_the_largest),
		cmocka_unit_test(test_budget_cuts_a_line_larger_than_itself),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_backlog.c -- the queue between the ring buffer's reader thread and the pipeline: order,
 * integrity and the memory bound under a concurrent producer, slices, refusal once closed. */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "mcpsonde/backlog.h"

#define RECORDS 20000

/* Record i: its index, then bytes that depend on it, 8 to ~40 KiB long (ring records are at
 * most 32 KiB and a header). */
static size_t rec_len(uint32_t i)
{
	return 8 + (i * 7919u) % (40u << 10);
}

static void rec_fill(uint32_t i, char *buf)
{
	size_t len = rec_len(i);

	memcpy(buf, &i, sizeof(i));
	for (size_t k = sizeof(i); k < len; k++)
		buf[k] = (char)(i + k);
}

struct checker {
	uint32_t next;
	bool bad;
	char buf[64 << 10];
};

static int check_record(void *ctx, const void *rec, size_t len)
{
	struct checker *c = ctx;
	uint32_t i;

	memcpy(&i, rec, sizeof(i));
	if (i != c->next || len != rec_len(i)) {
		c->bad = true;
		return 1;
	}
	rec_fill(i, c->buf);
	if (memcmp(rec, c->buf, len))
		c->bad = true;
	c->next++;
	return c->bad;
}

static void *producer(void *arg)
{
	struct backlog *b = arg;
	char *buf = malloc(64 << 10);

	for (uint32_t i = 0; i < RECORDS; i++) {
		rec_fill(i, buf);
		if (backlog_put(b, buf, rec_len(i)) < 0)
			abort();
		if (i % 97 == 0)
			backlog_publish(b);
	}
	backlog_publish(b);
	free(buf);
	return NULL;
}

/* 20,000 records (~400 MB) through a backlog of 4 chunks: the producer waits for room, the
 * consumer takes them in slices; every record comes out once, in order, intact. */
static void test_concurrent_order_and_bound(void **state)
{
	(void)state;
	struct backlog *b = backlog_new(4 * BACKLOG_CHUNK_BYTES);
	struct checker *c = calloc(1, sizeof(*c));
	struct backlog_stats st;
	pthread_t t;

	assert_non_null(b);
	assert_int_equal(pthread_create(&t, NULL, producer, b), 0);
	while (c->next < RECORDS && !c->bad)
		backlog_drain(b, check_record, c, 0);
	pthread_join(t, NULL);
	assert_false(c->bad);
	assert_int_equal(c->next, RECORDS);
	assert_int_equal(backlog_pending(b), 0);
	backlog_stats(b, &st);
	assert_int_equal(st.records, RECORDS);
	assert_true(st.peak_bytes <= 4 * BACKLOG_CHUNK_BYTES);
	assert_true(st.waits > 0);
	free(c);
	backlog_free(b);
}

static int count_only(void *ctx, const void *rec, size_t len)
{
	(void)rec;
	(void)len;
	(*(unsigned *)ctx)++;
	return 0;
}

static int stop_at_third(void *ctx, const void *rec, size_t len)
{
	(void)rec;
	(void)len;
	return ++*(unsigned *)ctx == 3;
}

/* A record is visible once published; a drain stops when fn asks (that record is taken) or
 * at its deadline, and the rest stays for the next one. */
static void test_publish_slices_and_pending(void **state)
{
	(void)state;
	struct backlog *b = backlog_new(2 * BACKLOG_CHUNK_BYTES);
	char rec[100] = "x";
	unsigned n = 0;

	for (int i = 0; i < 100; i++)
		assert_int_equal(backlog_put(b, rec, sizeof(rec)), 0);
	assert_int_equal(backlog_pending(b), 0);
	assert_int_equal(backlog_drain(b, count_only, &n, 0), 0);
	backlog_publish(b);
	assert_int_equal(backlog_pending(b), 100 * sizeof(rec));
	assert_int_equal(backlog_drain(b, stop_at_third, &n, 0), 3);
	assert_int_equal(backlog_pending(b), 97 * sizeof(rec));
	/* A deadline already past: the clock is read every 32 records. */
	n = 0;
	assert_int_equal(backlog_drain(b, count_only, &n, 1), 32);
	n = 0;
	assert_int_equal(backlog_drain(b, count_only, &n, 0), 65);
	assert_int_equal(backlog_pending(b), 0);
	backlog_free(b);
}

static int sum_lengths(void *ctx, const void *rec, size_t len)
{
	(void)rec;
	*(uint64_t *)ctx += len;
	return 0;
}

/* Once closed, a producer that finds no room is refused instead of waiting. Too large a record is refused whatever the room. */
static void test_close_refuses_when_full(void **state)
{
	(void)state;
	struct backlog *b = backlog_new(2 * BACKLOG_CHUNK_BYTES);
	char *big = calloc(1, BACKLOG_RECORD_MAX + 1);
	uint64_t bytes = 0, n;
	int accepted = 0;

	assert_int_equal(backlog_put(b, big, BACKLOG_RECORD_MAX + 1), -1);
	backlog_close(b);
	while (backlog_put(b, big, 32 << 10) == 0)
		accepted++;
	/* Two chunks of 1 MiB hold 31 records of 32 KiB + 8 each (a chunk header takes room). */
	assert_int_equal(accepted, 62);
	backlog_publish(b);
	n = backlog_drain(b, sum_lengths, &bytes, 0);
	assert_int_equal(n, 62);
	assert_int_equal(bytes, 62ull * (32 << 10));
	assert_int_equal(backlog_pending(b), 0);
	free(big);
	backlog_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_concurrent_order_and_bound),
		cmocka_unit_test(test_publish_slices_and_pending),
		cmocka_unit_test(test_close_refuses_when_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

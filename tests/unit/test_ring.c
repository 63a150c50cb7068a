/* test_ring.c -- the ring buffer consumer over memory laid out as the kernel lays it out:
 * order, busy and discarded records, a record that wraps around the end, stopping, the
 * backlog and its peak. The real kernel's ring is the e2e suite's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <linux/bpf.h>

#include "mcpsonde/ring.h"

#define RING_SIZE 64

/* The kernel's side: positions, data, and a producer that writes records as it does. */
struct fake {
	unsigned long cons, prod;
	unsigned char data[RING_SIZE];
};

/* Writes a record of len bytes, each byte fill, at the producer position; returns the offset
 * of its header. flags: BPF_RINGBUF_BUSY_BIT or BPF_RINGBUF_DISCARD_BIT. */
static size_t fake_write(struct fake *f, size_t len, unsigned char fill, uint32_t flags)
{
	size_t at = f->prod % RING_SIZE;
	uint32_t hdr[2] = { (uint32_t)len | flags, 0 };

	memcpy(f->data + at, hdr, sizeof(hdr));
	for (size_t i = 0; i < len; i++)
		f->data[(at + BPF_RINGBUF_HDR_SZ + i) % RING_SIZE] = fill;
	f->prod += (len + BPF_RINGBUF_HDR_SZ + 7) & ~7ul;
	return at;
}

static void fake_commit(struct fake *f, size_t at)
{
	uint32_t *hdr = (uint32_t *)(f->data + at);

	*hdr &= ~(uint32_t)BPF_RINGBUF_BUSY_BIT;
}

struct seen {
	int n, stop_at;
	size_t len[16];
	unsigned char first[16], last[16];
	bool whole[16]; /* every byte of the record is its fill */
};

static int on_record(void *ctx, void *data, size_t size)
{
	struct seen *s = ctx;
	unsigned char *p = data;

	s->len[s->n] = size;
	s->first[s->n] = p[0];
	s->last[s->n] = p[size - 1];
	s->whole[s->n] = true;
	for (size_t i = 0; i < size; i++)
		s->whole[s->n] = s->whole[s->n] && p[i] == p[0];
	return ++s->n == s->stop_at ? -1 : 0;
}

static void test_in_order_then_empty(void **state)
{
	struct fake f = { 0 };
	struct seen s = { 0 };
	struct ring *r;

	(void)state;
	assert_non_null(r = ring_over(&f.cons, &f.prod, f.data, RING_SIZE));
	fake_write(&f, 5, 'a', 0);
	fake_write(&f, 8, 'b', 0);
	assert_int_equal(ring_backlog(r), 32);
	assert_int_equal(ring_consume(r, on_record, &s), 2);
	assert_int_equal(s.len[0], 5);
	assert_int_equal(s.first[0], 'a');
	assert_int_equal(s.len[1], 8);
	assert_true(s.whole[1] && s.first[1] == 'b');
	assert_int_equal(f.cons, f.prod);
	assert_int_equal(ring_backlog(r), 0);
	assert_int_equal(ring_backlog_peak(r), 32);
	assert_int_equal(ring_consume(r, on_record, &s), 0);
	ring_close(r);
}

static void test_busy_record_waits_with_what_follows(void **state)
{
	struct fake f = { 0 };
	struct seen s = { 0 };
	struct ring *r;
	size_t busy;

	(void)state;
	assert_non_null(r = ring_over(&f.cons, &f.prod, f.data, RING_SIZE));
	fake_write(&f, 4, 'a', 0);
	busy = fake_write(&f, 4, 'b', BPF_RINGBUF_BUSY_BIT);
	fake_write(&f, 4, 'c', 0);
	assert_int_equal(ring_consume(r, on_record, &s), 1);
	assert_int_equal(f.cons, 16); /* past 'a' only: 'b' and 'c' are still the kernel's */
	fake_commit(&f, busy);
	assert_int_equal(ring_consume(r, on_record, &s), 2);
	assert_int_equal(s.first[1], 'b');
	assert_int_equal(s.first[2], 'c');
	assert_int_equal(f.cons, f.prod);
	ring_close(r);
}

static void test_discarded_is_skipped(void **state)
{
	struct fake f = { 0 };
	struct seen s = { 0 };
	struct ring *r;

	(void)state;
	assert_non_null(r = ring_over(&f.cons, &f.prod, f.data, RING_SIZE));
	fake_write(&f, 4, 'a', BPF_RINGBUF_DISCARD_BIT);
	fake_write(&f, 4, 'b', 0);
	assert_int_equal(ring_consume(r, on_record, &s), 1);
	assert_int_equal(s.first[0], 'b');
	assert_int_equal(f.cons, f.prod);
	ring_close(r);
}

static void test_wrapped_record_is_whole(void **state)
{
	struct fake f = { 0 };
	struct seen s = { 0 };
	struct ring *r;
	uint64_t records, bytes;

	(void)state;
	assert_non_null(r = ring_over(&f.cons, &f.prod, f.data, RING_SIZE));
	/* 40 bytes in and consumed: the next record's header sits at 40, its 20 bytes run from
	 * 48 to 68, past the end. */
	fake_write(&f, 32, 'a', 0);
	assert_int_equal(ring_consume(r, on_record, &s), 1);
	fake_write(&f, 20, 'w', 0);
	fake_write(&f, 4, 'z', 0); /* starts at 72: offset 8 of the second lap */
	assert_int_equal(ring_consume(r, on_record, &s), 2);
	assert_int_equal(s.len[1], 20);
	assert_true(s.whole[1]);
	assert_int_equal(s.first[1], 'w');
	assert_int_equal(s.last[1], 'w');
	assert_int_equal(s.first[2], 'z');
	assert_int_equal(f.cons, 88);
	ring_lost(r, &records, &bytes);
	assert_int_equal(records, 0);
	ring_close(r);
}

static void test_stop_after_the_record(void **state)
{
	struct fake f = { 0 };
	struct seen s = { .stop_at = 1 };
	struct ring *r;

	(void)state;
	assert_non_null(r = ring_over(&f.cons, &f.prod, f.data, RING_SIZE));
	fake_write(&f, 4, 'a', 0);
	fake_write(&f, 4, 'b', 0);
	assert_int_equal(ring_consume(r, on_record, &s), 1);
	assert_int_equal(f.cons, 16); /* the record that stopped it is consumed */
	assert_int_equal(ring_backlog(r), 16);
	s.stop_at = 0;
	assert_int_equal(ring_consume(r, on_record, &s), 1);
	assert_int_equal(s.first[1], 'b');
	ring_close(r);
}

static void test_size_must_be_a_power_of_two(void **state)
{
	unsigned long c = 0, p = 0;
	unsigned char d[48] = { 0 };

	(void)state;
	assert_null(ring_over(&c, &p, d, sizeof(d)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_in_order_then_empty),
		cmocka_unit_test(test_busy_record_waits_with_what_follows),
		cmocka_unit_test(test_discarded_is_skipped),
		cmocka_unit_test(test_wrapped_record_is_whole),
		cmocka_unit_test(test_stop_after_the_record),
		cmocka_unit_test(test_size_must_be_a_power_of_two),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* ring.c -- the consumer side of a BPF ring buffer map, its data mapped once (ring.h).
 *
 * The kernel publishes its producer position with a release store after a record's header
 * is written busy, and clears the busy bit with another when the record is committed; the
 * consumer reads both with acquire loads, and publishes its own position with a release
 * store after it is done with a record, which is what lets the kernel reuse that space. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <linux/bpf.h>

#include "mcpsonde/ring.h"

struct ring {
	unsigned long *consumer_pos;
	const unsigned long *producer_pos;
	const unsigned char *data;
	size_t size; /* power of two */
	uint64_t peak;
	unsigned char *wrap; /* a record that wraps around the end, made whole */
	size_t wrap_cap;
	uint64_t lost_records, lost_bytes; /* wrapped records there was no memory to make whole */
	/* What ring_open mapped, for ring_close; NULL over caller memory. */
	void *cons_map, *prod_map;
	size_t page, prod_map_len;
};

struct ring *ring_over(unsigned long *consumer_pos, const unsigned long *producer_pos, const void *data,
		       size_t size)
{
	struct ring *r;

	if (!size || (size & (size - 1)) || size % 8) {
		errno = EINVAL;
		return NULL;
	}
	if (!(r = calloc(1, sizeof(*r))))
		return NULL;
	r->consumer_pos = consumer_pos;
	r->producer_pos = producer_pos;
	r->data = data;
	r->size = size;
	return r;
}

struct ring *ring_open(int map_fd, size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *cons, *prod;
	struct ring *r;

	if (!size || size % page) {
		errno = EINVAL;
		return NULL;
	}
	/* The consumer page is the one the kernel lets us write; the producer page and the data
	 * follow it, read-only, the data once (libbpf maps 2 * size). */
	cons = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (cons == MAP_FAILED)
		return NULL;
	prod = mmap(NULL, page + size, PROT_READ, MAP_SHARED, map_fd, (off_t)page);
	if (prod == MAP_FAILED) {
		int e = errno;

		munmap(cons, page);
		errno = e;
		return NULL;
	}
	if (!(r = ring_over(cons, prod, (const unsigned char *)prod + page, size))) {
		int e = errno;

		munmap(prod, page + size);
		munmap(cons, page);
		errno = e;
		return NULL;
	}
	r->cons_map = cons;
	r->prod_map = prod;
	r->page = page;
	r->prod_map_len = page + size;
	return r;
}

void ring_close(struct ring *r)
{
	if (!r)
		return;
	if (r->prod_map)
		munmap(r->prod_map, r->prod_map_len);
	if (r->cons_map)
		munmap(r->cons_map, r->page);
	free(r->wrap);
	free(r);
}

size_t ring_size(const struct ring *r)
{
	return r->size;
}

static void ring_note_backlog(struct ring *r, uint64_t cons, uint64_t prod)
{
	if (prod - cons > r->peak)
		r->peak = prod - cons;
}

uint64_t ring_backlog(struct ring *r)
{
	uint64_t cons = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE);
	uint64_t prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);

	ring_note_backlog(r, cons, prod);
	return prod - cons;
}

uint64_t ring_backlog_peak(const struct ring *r)
{
	return r->peak;
}

void ring_lost(const struct ring *r, uint64_t *records, uint64_t *bytes)
{
	*records = r->lost_records;
	*bytes = r->lost_bytes;
}

/* The record's len bytes starting at data offset off, in one piece: in place, or copied
 * into r->wrap when they run past the end. NULL if the copy cannot be made. */
static void *ring_sample(struct ring *r, size_t off, size_t len)
{
	size_t first;

	if (off + len <= r->size)
		return (void *)(r->data + off);
	if (len > r->wrap_cap) {
		unsigned char *w = realloc(r->wrap, len);

		if (!w)
			return NULL;
		r->wrap = w;
		r->wrap_cap = len;
	}
	first = r->size - off;
	memcpy(r->wrap, r->data + off, first);
	memcpy(r->wrap + first, r->data, len - first);
	return r->wrap;
}

size_t ring_consume(struct ring *r, ring_record_fn fn, void *ctx)
{
	uint64_t cons = __atomic_load_n(r->consumer_pos, __ATOMIC_ACQUIRE), prod;
	size_t mask = r->size - 1, n = 0;

	/* Records committed while these were read are taken too, as libbpf does. */
	while ((prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE)) > cons) {
		ring_note_backlog(r, cons, prod);
		while (cons < prod) {
			/* Headers are 8-byte aligned in a ring whose size is a multiple of 8: a
			 * header never wraps, its record may. */
			const uint32_t *hdr = (const uint32_t *)(r->data + (cons & mask));
			uint32_t word = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
			size_t len = word & ~(uint32_t)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
			int stop = 0;
			void *sample;

			if (word & BPF_RINGBUF_BUSY_BIT)
				return n; /* reserved, not committed yet: it and what follows wait */
			if (!(word & BPF_RINGBUF_DISCARD_BIT)) {
				sample = ring_sample(r, (cons + BPF_RINGBUF_HDR_SZ) & mask, len);
				if (sample) {
					n++;
					stop = fn(ctx, sample, len) < 0;
				} else {
					r->lost_records++;
					r->lost_bytes += len;
				}
			}
			cons += (len + BPF_RINGBUF_HDR_SZ + 7) & ~(uint64_t)7;
			__atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
			if (stop)
				return n;
		}
	}
	return n;
}

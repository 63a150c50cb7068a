/* ring.h -- the consumer side of a BPF ring buffer map, its data mapped once.
 *
 * libbpf maps a ring buffer's data area twice, back to back, so that a record that wraps
 * around the end reads as one piece; every page of that mapping counts in the process's RSS,
 * so a 16 MiB ring showed as 32 MiB. Here the data is mapped once and the rare record that
 * wraps is copied into a buffer of its own. The layout and the protocol are the kernel's
 * (Documentation/bpf/ringbuf.rst): a consumer position page (the only writable one), a
 * producer position page, then the data; each record an 8-byte header whose length word
 * carries a busy bit (reserved, not yet committed) and a discard bit.
 *
 * Invariants: records are delivered in ring order, each once, never one still busy; one that
 * cannot be delivered (no memory to make it whole) is counted (ring_lost), never skipped
 * silently; the consumer position moves past a record only after its callback returned, so
 * the kernel never writes over a record being read; what the producer is ahead is readable at
 * any time (ring_backlog), and its peak is kept. */
#ifndef MCPSONDE_RING_H
#define MCPSONDE_RING_H

#include <stddef.h>
#include <stdint.h>

struct ring;

/* Returns < 0 to stop consuming (the record it was given counts as consumed). */
typedef int (*ring_record_fn)(void *ctx, void *data, size_t size);

/* Maps the ring buffer map map_fd of size bytes (a power of two, a multiple of the page
 * size). NULL with errno on failure. */
struct ring *ring_open(int map_fd, size_t size);
/* The same over memory the caller laid out as the kernel does (tests): positions, and size
 * bytes of data. */
struct ring *ring_over(unsigned long *consumer_pos, const unsigned long *producer_pos, const void *data,
		       size_t size);
void ring_close(struct ring *r);

/* Delivers the committed records, in order, until none is left, one is still busy, or fn
 * returns < 0. Returns how many records it delivered (discarded ones are skipped, not
 * counted). */
size_t ring_consume(struct ring *r, ring_record_fn fn, void *ctx);
/* Bytes written by the producer and not consumed yet; the peak is the largest value any call
 * of ring_backlog or ring_consume has seen. */
uint64_t ring_backlog(struct ring *r);
uint64_t ring_backlog_peak(const struct ring *r);
size_t ring_size(const struct ring *r);
/* Records skipped because one that wrapped could not be made whole (no memory for it). */
void ring_lost(const struct ring *r, uint64_t *records, uint64_t *bytes);

#endif

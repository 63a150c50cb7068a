/* backlog.c -- records copied out of the ring buffer, waiting for the pipeline.
 *
 * Chunks form a queue, oldest first. The producer appends to the last chunk (tail) and, on
 * publish, moves that chunk's published mark up to what it wrote; when a record does not fit
 * it seals the tail (published = len for good) and appends a new chunk. The consumer reads the
 * first chunk up to its published mark and recycles it once it is sealed and read whole.
 * Only the producer writes into a chunk and only below len; only the consumer moves pos; both
 * marks and the queue links change under the lock, record bytes are copied outside it.
 * A record is a 4-byte length, 4 bytes of padding and its bytes, padded to 8. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "mcpsonde/backlog.h"

#define SPARES_MAX 2 /* empty chunks kept for reuse rather than freed */
#define CLOCK_EVERY 32 /* records between two looks at the clock */

struct chunk {
	struct chunk *next;
	size_t len;       /* bytes written by the producer */
	size_t published; /* bytes the consumer may read */
	size_t pos;       /* bytes the consumer has read */
	char data[];
};

#define CHUNK_DATA (BACKLOG_CHUNK_BYTES - sizeof(struct chunk))
#define REC_HDR 8

struct backlog {
	pthread_mutex_t lock;
	pthread_cond_t room;        /* a chunk came free, or the backlog closed */
	struct chunk *head, *tail;  /* the queue; tail is the producer's */
	struct chunk *spares;
	unsigned nspares;
	size_t nchunks, max_chunks; /* allocated (queued and spare), and the bound */
	size_t pending;             /* published bytes not yet taken */
	bool closed;
	int efd;
	/* The producer's own, added under the lock when it publishes. */
	uint64_t put_records, put_bytes;
	struct backlog_stats stats;
};

static uint64_t backlog_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static size_t rec_space(size_t len)
{
	return REC_HDR + ((len + 7) & ~(size_t)7);
}

struct backlog *backlog_new(size_t max_bytes)
{
	struct backlog *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->max_chunks = max_bytes / BACKLOG_CHUNK_BYTES;
	if (b->max_chunks < 2)
		b->max_chunks = 2;
	b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (b->efd < 0) {
		free(b);
		return NULL;
	}
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->room, NULL);
	return b;
}

static void chunks_free(struct chunk *c)
{
	while (c) {
		struct chunk *next = c->next;

		free(c);
		c = next;
	}
}

void backlog_free(struct backlog *b)
{
	if (!b)
		return;
	chunks_free(b->head);
	chunks_free(b->spares);
	close(b->efd);
	pthread_cond_destroy(&b->room);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

/* Lock held. Keeps a few empty chunks, frees the others: a backlog that was full once does not
 * hold its peak for ever. */
static void chunk_recycle(struct backlog *b, struct chunk *c)
{
	if (b->nspares < SPARES_MAX) {
		c->next = b->spares;
		b->spares = c;
		b->nspares++;
	} else {
		free(c);
		b->nchunks--;
	}
	pthread_cond_signal(&b->room);
}

/* Lock held. Makes the tail's bytes readable and says so. */
static void publish_locked(struct backlog *b)
{
	struct chunk *t = b->tail;
	uint64_t one = 1;

	/* put_* count the records written into the tail since the last publish. */
	b->stats.records += b->put_records;
	b->stats.bytes += b->put_bytes;
	b->pending += b->put_bytes;
	b->put_records = b->put_bytes = 0;
	if (!t || t->published == t->len)
		return;
	t->published = t->len;
	/* Only the counter's value matters, and it cannot overflow in practice. */
	if (write(b->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return;
}

void backlog_publish(struct backlog *b)
{
	pthread_mutex_lock(&b->lock);
	publish_locked(b);
	pthread_mutex_unlock(&b->lock);
}

/* Seals the tail and appends an empty chunk, waiting for one if the bound is reached.
 * Returns -1 when none can be had (closed, or out of memory). */
static int chunk_next(struct backlog *b)
{
	struct chunk *c = NULL;
	uint64_t t0 = 0;
	int ret = 0;

	pthread_mutex_lock(&b->lock);
	publish_locked(b);
	/* The consumer leaves the tail in the queue even when it has read it whole (more may
	 * come): then it is the only chunk, and it goes now. */
	if (b->tail && b->tail == b->head && b->tail->pos == b->tail->len) {
		struct chunk *t = b->tail;

		b->head = b->tail = NULL;
		chunk_recycle(b, t);
	}
	while (!b->spares && b->nchunks >= b->max_chunks && !b->closed) {
		if (!t0) {
			t0 = backlog_now_ns();
			b->stats.waits++;
		}
		pthread_cond_wait(&b->room, &b->lock);
	}
	if (t0)
		b->stats.wait_ns += backlog_now_ns() - t0;
	if (b->spares) {
		c = b->spares;
		b->spares = c->next;
		b->nspares--;
	} else if (b->nchunks < b->max_chunks && (c = malloc(BACKLOG_CHUNK_BYTES))) {
		b->nchunks++;
		if (b->nchunks * BACKLOG_CHUNK_BYTES > b->stats.peak_bytes)
			b->stats.peak_bytes = b->nchunks * BACKLOG_CHUNK_BYTES;
	}
	if (c) {
		c->next = NULL;
		c->len = c->published = c->pos = 0;
		if (b->tail)
			b->tail->next = c;
		else
			b->head = c;
		b->tail = c;
	} else {
		ret = -1;
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}

int backlog_put(struct backlog *b, const void *rec, size_t len)
{
	size_t need = rec_space(len);
	struct chunk *t = b->tail; /* only the producer changes tail */
	uint32_t hdr[2] = { (uint32_t)len, 0 };

	if (len > BACKLOG_RECORD_MAX || need > CHUNK_DATA)
		return -1;
	if (!t || t->len + need > CHUNK_DATA) {
		if (chunk_next(b) < 0)
			return -1;
		t = b->tail;
	}
	memcpy(t->data + t->len, hdr, sizeof(hdr));
	memcpy(t->data + t->len + REC_HDR, rec, len);
	t->len += need;
	b->put_records++;
	b->put_bytes += len;
	return 0;
}

void backlog_close(struct backlog *b)
{
	pthread_mutex_lock(&b->lock);
	b->closed = true;
	pthread_cond_broadcast(&b->room);
	pthread_mutex_unlock(&b->lock);
}

/* Lock held. The first chunk with something to read, recycling the read and sealed ones on
 * the way; *end gets its published mark. */
static struct chunk *readable_locked(struct backlog *b, size_t *end)
{
	struct chunk *c;

	while ((c = b->head) && c->pos == c->published && c != b->tail) {
		b->head = c->next;
		chunk_recycle(b, c);
	}
	if (!c || c->pos == c->published)
		return NULL;
	*end = c->published;
	return c;
}

size_t backlog_drain(struct backlog *b, int (*fn)(void *ctx, const void *rec, size_t len), void *ctx,
		     uint64_t deadline_ns)
{
	size_t taken = 0;
	uint64_t count;
	bool stop = false;

	/* Cleared first: whatever is published from now on makes it readable again. */
	if (read(b->efd, &count, sizeof(count)) < 0 && errno != EAGAIN)
		return 0;
	while (!stop) {
		struct chunk *c;
		size_t pos, end, bytes = 0;

		pthread_mutex_lock(&b->lock);
		c = readable_locked(b, &end);
		pthread_mutex_unlock(&b->lock);
		if (!c)
			break;
		for (pos = c->pos; pos < end && !stop;) {
			uint32_t len;

			memcpy(&len, c->data + pos, sizeof(len));
			stop = fn(ctx, c->data + pos + REC_HDR, len) != 0;
			pos += rec_space(len);
			bytes += len;
			taken++;
			if (deadline_ns && taken % CLOCK_EVERY == 0 && backlog_now_ns() >= deadline_ns)
				stop = true;
		}
		pthread_mutex_lock(&b->lock);
		c->pos = pos;
		b->pending -= bytes;
		pthread_mutex_unlock(&b->lock);
	}
	return taken;
}

size_t backlog_pending(struct backlog *b)
{
	size_t n;

	pthread_mutex_lock(&b->lock);
	n = b->pending;
	pthread_mutex_unlock(&b->lock);
	return n;
}

int backlog_fd(const struct backlog *b)
{
	return b->efd;
}

void backlog_stats(struct backlog *b, struct backlog_stats *out)
{
	pthread_mutex_lock(&b->lock);
	*out = b->stats;
	pthread_mutex_unlock(&b->lock);
}

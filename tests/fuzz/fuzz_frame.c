/* fuzz_frame.c -- libFuzzer harness for framer + stream.
 *
 *   make fuzz FUZZ_SECONDS=60            (all targets)
 *   build/fuzz/fuzz_frame -max_len=4096 build/fuzz/corpus/fuzz_frame
 *
 * Input: 4 bytes of parameters (max_frame, PRNG seed), then the byte stream. Three passes:
 *  1. the stream fed to a framer in random chunks must give exactly the frames of a simple
 *     reference splitter (whole lines, one "\r" stripped, empty lines skipped, head and tail of
 *     oversized lines), whatever the chunking;
 *  2. the same chunks fed to a stream shuffled within blocks of STREAM_HOLD_MAX, with
 *     duplicates and zero-length records mixed in, must give the same frames and no gap;
 *  3. random offsets, drops, announced holes and flushes must never crash, leak or break the
 *     invariants of a frame or the memory bound. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/stream.h"

#define MAX_CHUNKS 4096

struct rng {
	uint64_t s;
};

static uint32_t rng_next(struct rng *r)
{
	r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(r->s >> 33);
}

struct expect {
	const uint8_t *data;
	size_t size;
	size_t max_frame, edge;
	size_t pos; /* reference splitter: where the next line starts */
	uint64_t frames;
};

static bool ref_next(struct expect *e, const uint8_t **line, size_t *len)
{
	while (e->pos < e->size) {
		const uint8_t *p = e->data + e->pos;
		const uint8_t *nl = memchr(p, '\n', e->size - e->pos);
		size_t n;

		if (!nl)
			return false;
		n = (size_t)(nl - p);
		e->pos += n + 1;
		if (n && p[n - 1] == '\r')
			n--;
		if (n) {
			*line = p;
			*len = n;
			return true;
		}
	}
	return false;
}

/* cuts: the stream may have announced cuts, whose lines come out oversized with a head and a
 * tail of any length up to edge (an empty head when the cut began the line). */
static void check_frame_shape(const struct frame *f, size_t max_frame, size_t edge, bool cuts)
{
	if ((f->len == 0 && !cuts) || memchr(f->data, '\n', f->len))
		abort();
	if (f->oversized) {
		if (memchr(f->tail, '\n', f->tail_len))
			abort();
		if (cuts ? f->len > edge || f->tail_len > edge
			 : f->wire_len <= max_frame || f->len != edge || f->tail_len != edge)
			abort();
	} else if (f->len != f->wire_len || f->len > max_frame || f->tail_len) {
		abort();
	}
	if (f->ts_first_ns > f->ts_last_ns)
		abort();
}

static void on_frame_exact(void *ctx, const struct frame *f)
{
	struct expect *e = ctx;
	const uint8_t *line;
	size_t len;

	check_frame_shape(f, e->max_frame, e->edge, false);
	if (!ref_next(e, &line, &len) || f->wire_len != len)
		abort();
	if (len <= e->max_frame) {
		if (f->oversized || memcmp(f->data, line, len))
			abort();
	} else {
		if (!f->oversized || memcmp(f->data, line, e->edge) ||
		    memcmp(f->tail, line + len - f->tail_len, f->tail_len) || f->tail_len != e->edge)
			abort();
	}
	e->frames++;
}

struct shape {
	size_t max_frame, edge;
};

static void on_frame_shape(void *ctx, const struct frame *f)
{
	const struct shape *s = ctx;

	check_frame_shape(f, s->max_frame, s->edge, true);
}

static void expect_done(struct expect *e)
{
	const uint8_t *line;
	size_t len;

	if (ref_next(e, &line, &len))
		abort(); /* a complete line was never delivered */
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
	static size_t cuts[MAX_CHUNKS + 1], order[MAX_CHUNKS];
	const uint8_t *data;
	size_t max_frame, n, nchunks = 0;
	struct rng rng;
	struct framer fr;
	struct stream st;

	if (size < 4)
		return 0;
	max_frame = 1 + in[0] % 48;
	rng.s = (uint64_t)in[1] | (uint64_t)in[2] << 8 | (uint64_t)in[3] << 16;
	data = in + 4;
	n = size - 4;

	/* Random chunk boundaries, ts = chunk index (non-decreasing in stream order). */
	cuts[nchunks] = 0;
	while (cuts[nchunks] < n && nchunks < MAX_CHUNKS - 1) {
		size_t k = 1 + rng_next(&rng) % (rng_next(&rng) % 4 ? 8 : 200);

		cuts[nchunks + 1] = cuts[nchunks] + k < n ? cuts[nchunks] + k : n;
		nchunks++;
	}
	if (cuts[nchunks] < n)
		cuts[++nchunks] = n;

	/* 1. framer alone, in order. */
	{
		struct expect e = { .data = data, .size = n, .max_frame = max_frame, .edge = max_frame };

		framer_init(&fr, max_frame);
		for (size_t i = 0; i < nchunks; i++) {
			framer_feed(&fr, (const char *)data + cuts[i], cuts[i + 1] - cuts[i], i, on_frame_exact, &e);
			if (fr.cap > max_frame + 1 || fr.tail_len > 2 * (max_frame + 1))
				abort();
		}
		expect_done(&e);
		if (e.frames != fr.stats.frames || fr.stats.discarded_bytes)
			abort();
		framer_free(&fr);
	}

	/* 2. stream, shuffled within blocks, with duplicates and empty records: same frames. */
	{
		struct expect e = { .data = data, .size = n, .max_frame = max_frame, .edge = max_frame };

		for (size_t i = 0; i < nchunks; i++)
			order[i] = i;
		for (size_t b = 0; b < nchunks; b += STREAM_HOLD_MAX) {
			size_t m = nchunks - b < STREAM_HOLD_MAX ? nchunks - b : STREAM_HOLD_MAX;

			for (size_t i = m; i > 1; i--) {
				size_t j = rng_next(&rng) % i, t = order[b + i - 1];

				order[b + i - 1] = order[b + j];
				order[b + j] = t;
			}
		}
		stream_init(&st, max_frame);
		for (size_t i = 0; i < nchunks; i++) {
			size_t c = order[i];

			stream_feed(&st, cuts[c], data + cuts[c], cuts[c + 1] - cuts[c], cuts[c], on_frame_exact, &e);
			if (rng_next(&rng) % 8 == 0 && c > 0) /* a record seen twice (never the one at 0) */
				stream_feed(&st, cuts[c], data + cuts[c], cuts[c + 1] - cuts[c], cuts[c], on_frame_exact, &e);
			if (rng_next(&rng) % 16 == 0)
				stream_feed(&st, cuts[c + 1], NULL, 0, 0, on_frame_exact, &e);
			if (st.nheld >= STREAM_HOLD_MAX)
				abort();
		}
		stream_flush(&st, on_frame_exact, &e);
		expect_done(&e);
		if (st.stats.gaps || st.nheld || st.next_off != n || st.stats.bytes != n)
			abort();
		stream_free(&st);
	}

	/* 3. chaos: invariants only. */
	{
		struct shape s = { max_frame, max_frame };
		uint64_t base = 0;

		stream_init(&st, max_frame);
		for (size_t i = 0; i < nchunks; i++) {
			size_t c = rng_next(&rng) % nchunks;
			uint64_t off = base + cuts[c];

			switch (rng_next(&rng) % 10) {
			case 0:
				stream_hole(&st, off, rng_next(&rng) % 64, rng_next(&rng) % 2 ? STREAM_HOLE_CUT : STREAM_HOLE_LOST,
					    i, on_frame_shape, &s);
				break;
			case 1:
				stream_flush(&st, on_frame_shape, &s);
				break;
			case 2:
				off = 0; /* bytes already delivered */
				break;
			case 3:
				off = st.next_off + rng_next(&rng) % 512;
				break;
			default:
				break;
			}
			stream_feed(&st, off, data + cuts[c], cuts[c + 1] - cuts[c], i, on_frame_shape, &s);
			if (st.nheld > STREAM_HOLD_MAX || st.framer.cap > max_frame + 1 ||
			    st.framer.tail_len > 2 * (max_frame + 1))
				abort();
			for (int h = 1; h < st.nheld; h++)
				if (st.held[h - 1].off > st.held[h].off)
					abort();
			for (int h = 0; h < st.nheld; h++)
				if (st.held[h].off <= st.next_off)
					abort();
		}
		stream_flush(&st, on_frame_shape, &s);
		if (st.nheld)
			abort();
		stream_free(&st);
	}
	return 0;
}

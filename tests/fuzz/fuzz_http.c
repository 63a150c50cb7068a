/* fuzz_http.c -- libFuzzer harness for the HTTP/1.1 + SSE transport (src/http.c, src/sse.c).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -D_GNU_SOURCE \
 *       tests/fuzz/fuzz_http.c src/http.c src/sse.c -lhttp_parser -lresolv -lz -o build/fuzz_http
 *   build/fuzz_http -max_total_time=60 -max_len=8192 -dict=tests/fuzz/http.dict tests/fuzz/corpus/http
 *
 * Input: 4 bytes of parameters (whether the connection is seen from its start, the payload
 * cap, a PRNG seed), then records: a control byte (the direction; a gap, a cut, an EOF or a
 * close instead of data), a length byte, that many bytes (a gap loses that many, a cut 16
 * times as many). Two passes:
 *  1. the records as data only, fed whole, then cut at random points: a digest of every
 *     callback (all it carries but timestamps) must not depend on the chunking;
 *  2. everything, gaps, cuts, EOFs and closes included: payloads are well-formed frames
 *     (head and tail of equal size when oversized, unless cut; timestamps in order), memory
 *     stays under its bound, every exchange reported gets exactly one END, and none is left
 *     after the close. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/http.h"

#define LIVE_MAX (HTTP_MAX_PENDING + 8)

struct check {
	uint64_t digest;
	size_t max_payload;
	const struct http_exchange *live[LIVE_MAX]; /* reported, not ended */
	int nlive;
};

static void mix(struct check *k, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		k->digest = (k->digest ^ b[i]) * 1099511628211ull;
}

static void mix_str(struct check *k, const char *s)
{
	mix(k, s, strlen(s) + 1);
}

static void mix_exchange(struct check *k, const struct http_exchange *ex)
{
	mix(k, &ex->seq, sizeof(ex->seq));
	mix_str(k, ex->method);
	mix_str(k, ex->target);
	mix(k, &ex->status, sizeof(ex->status));
	mix(k, &ex->flags, sizeof(ex->flags));
	mix(k, &ex->end, sizeof(ex->end));
	mix(k, &ex->sse, sizeof(ex->sse));
	mix_str(k, ex->req.session_id);
	mix_str(k, ex->resp.content_type);
	mix_str(k, ex->req.mcp_name);
	mix_str(k, ex->last_event_id);
	mix(k, &ex->req.secrets, sizeof(ex->req.secrets));
}

static void on_payload(void *ctx, const struct http_payload *p)
{
	struct check *k = ctx;
	const struct frame *f = &p->frame;
	size_t edge = k->max_payload < FRAME_EDGE_BYTES ? k->max_payload : FRAME_EDGE_BYTES;

	if ((f->len == 0 && !(f->oversized && (p->ex->flags & HTTP_EX_BODY_CUT))) || f->ts_last_ns < f->ts_first_ns)
		abort();
	/* Oversized: head and tail of edge bytes each, or, when bytes were cut out of the body,
	 * maybe fewer of either, from before and after the cut. */
	if (f->oversized ? f->len > edge || f->tail_len > edge ||
				   !((f->len == edge && f->tail_len == edge && f->wire_len > k->max_payload) ||
				     ((p->ex->flags & HTTP_EX_BODY_CUT) && f->wire_len >= f->len + f->tail_len))
			 : f->len != f->wire_len || f->len > k->max_payload)
		abort();
	mix(k, "P", 1);
	mix(k, f->data, f->len);
	if (f->oversized)
		mix(k, f->tail, f->tail_len);
	mix(k, &f->wire_len, sizeof(f->wire_len));
	mix(k, &p->dir, sizeof(p->dir));
	mix(k, &p->source, sizeof(p->source));
	mix_str(k, p->sse_event ? p->sse_event : "");
	mix_str(k, p->sse_id ? p->sse_id : "");
	mix(k, &p->ex->seq, sizeof(p->ex->seq));
}

static void on_exchange(void *ctx, const struct http_exchange *ex, enum http_phase phase)
{
	struct check *k = ctx;
	int i;

	mix(k, &phase, sizeof(phase));
	mix_exchange(k, ex);
	for (i = 0; i < k->nlive && k->live[i] != ex; i++)
		;
	switch (phase) {
	case HTTP_PHASE_REQUEST:
	case HTTP_PHASE_RESPONSE:
		if (ex->end != HTTP_END_NONE)
			abort();
		if (i == k->nlive) {
			if (k->nlive == LIVE_MAX)
				abort();
			k->live[k->nlive++] = ex;
		}
		break;
	case HTTP_PHASE_ENDPOINT:
		mix_str(k, ex->endpoint);
		break;
	case HTTP_PHASE_END:
		if (i == k->nlive || ex->end == HTTP_END_NONE)
			abort(); /* an END for an exchange never reported, or twice */
		/* Counted so far while the exchange is open, so only final here. */
		mix(k, &ex->req_body_bytes, sizeof(ex->req_body_bytes));
		mix(k, &ex->resp_body_bytes, sizeof(ex->resp_body_bytes));
		mix(k, &ex->sse_events, sizeof(ex->sse_events));
		k->live[i] = k->live[--k->nlive];
		break;
	}
}

static void on_verdict(void *ctx, enum http_verdict v)
{
	mix(ctx, &v, sizeof(v));
}

static const struct http_callbacks callbacks = { on_payload, on_exchange, on_verdict };

struct rng {
	uint64_t s;
};

static uint32_t rng_next(struct rng *r)
{
	r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
	return (uint32_t)(r->s >> 33);
}

enum { OP_DATA, OP_GAP, OP_CUT, OP_EOF, OP_CLOSE };

static int op_of(uint8_t ctl)
{
	switch (ctl & 0x0e) {
	case 0x0e:
		return OP_CLOSE;
	case 0x0c:
		return OP_EOF;
	case 0x0a:
		return OP_GAP;
	case 0x08:
		return OP_CUT;
	default:
		return OP_DATA;
	}
}

static size_t memory_bound(size_t max_payload)
{
	size_t edge = max_payload < FRAME_EDGE_BYTES ? max_payload : FRAME_EDGE_BYTES;

	return 2 * (max_payload + 2 * edge + 64 * 1024) + (HTTP_MAX_PENDING + 2) * 4096 + 64 * 1024;
}

/* Pass 1 (data_only): every record is data, cut at random points when rng is given. */
static uint64_t run(const uint8_t *data, size_t size, const struct http_opts *o, bool data_only, struct rng *rng)
{
	struct check k = { .digest = 14695981039346656037ull, .max_payload = o->max_payload };
	struct http_conn *c = http_conn_new(o, &callbacks, &k);
	uint64_t ts = 1;
	size_t i = 0;

	if (!c)
		abort();
	while (i + 2 <= size) {
		uint8_t ctl = data[i], len = data[i + 1];
		enum msd_dir dir = (ctl & 1) ? MSD_DIR_WRITE : MSD_DIR_READ;
		int op = data_only ? OP_DATA : op_of(ctl);
		size_t off = 0;

		i += 2;
		if (len > size - i)
			len = (uint8_t)(size - i);
		if (!data_only)
			ts += ctl >> 4;
		switch (op) {
		case OP_GAP:
			http_conn_gap(c, dir, len);
			break;
		case OP_CUT:
			http_conn_cut(c, dir, (uint64_t)len * 16, ts);
			break;
		case OP_EOF:
			http_conn_eof(c, dir, ts);
			break;
		case OP_CLOSE:
			http_conn_close(c, ts);
			break;
		default:
			while (off < len) {
				size_t n = rng ? 1 + rng_next(rng) % (len - off) : len - off;

				http_conn_feed(c, dir, data + i + off, n, ts);
				off += n;
			}
			break;
		}
		i += len;
		if (http_conn_memory(c) > memory_bound(o->max_payload))
			abort();
	}
	http_conn_close(c, ts + 1);
	if (k.nlive != 0)
		abort();
	http_conn_free(c);
	return k.digest;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t caps[] = { 1, 16, 64, 4096 };
	struct http_opts o;
	struct rng rng;
	uint64_t whole;

	if (size < 4)
		return 0;
	http_opts_default(&o);
	o.from_start = !(data[0] & 1);
	o.max_payload = caps[(data[0] >> 1) & 3];
	o.max_inflate = 1u << 20;
	rng.s = data[1] | (uint64_t)data[2] << 8 | (uint64_t)data[3] << 16;
	data += 4;
	size -= 4;

	whole = run(data, size, &o, true, NULL);
	for (int pass = 0; pass < 3; pass++) {
		if (run(data, size, &o, true, &rng) != whole)
			abort();
	}
	run(data, size, &o, false, NULL);
	return 0;
}

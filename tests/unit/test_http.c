/* test_http.c -- the HTTP/1.1 + SSE transport.
 *
 * Crafted byte streams, each decoded whole, split in two at every byte of every record,
 * and one byte at a time, which must all give the same transcript (every callback, in
 * order, with what it carried); then their content is checked: pipelining, chunked and
 * close-delimited bodies, gzip and deflate (and bombs), 1xx/204/304/HEAD, Upgrade, SSE
 * corner cases, gaps, verdicts, bounds, and secret headers that must never show. Last, real
 * sessions of server-everything recorded with the official SDK (tests/data/http, see
 * record.mjs there) are decoded from both ends and checked against what the client logged. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <resolv.h>
#include <jansson.h>
#include <zlib.h>
#include <cmocka.h>

#include "mcpsonde/http.h"

#define MAX_PAYLOADS 128
#define MAX_ENDS 64
#define MAX_FORBIDDEN 8

/* ------------------------------------------------------------------ what the callbacks saw */

struct got_payload {
	char *data, *tail;
	size_t len, tail_len;
	uint64_t wire_len, ts_first, ts_last;
	bool oversized;
	enum msd_dir dir;
	enum http_source source;
	uint64_t seq;
	unsigned status;
	char method[16];
	char target[HTTP_TARGET_MAX];
	char event[40], id[130];
	void *conn; /* recordings: which connection */
};

struct got {
	char *text; /* the transcript */
	size_t size;
	FILE *log;
	struct got_payload pl[MAX_PAYLOADS];
	int npl;
	struct http_exchange ends[MAX_ENDS]; /* copies at HTTP_PHASE_END */
	void *end_conn[MAX_ENDS];
	int nends;
	int requests, responses, endpoints;
	enum http_verdict verdicts[4];
	int nverdicts;
	const char *forbidden[MAX_FORBIDDEN]; /* strings that must never reach a callback */
	void *conn;               /* set by the caller before each feed (recordings) */
};

static void got_init(struct got *g)
{
	memset(g, 0, sizeof(*g));
	g->log = open_memstream(&g->text, &g->size);
	assert_non_null(g->log);
}

static void got_free(struct got *g)
{
	if (g->log)
		fclose(g->log);
	free(g->text);
	for (int i = 0; i < g->npl; i++) {
		free(g->pl[i].data);
		free(g->pl[i].tail);
	}
	memset(g, 0, sizeof(*g));
}

static const char *got_text(struct got *g)
{
	fflush(g->log);
	return g->text ? g->text : "";
}

static char *dup_bytes(const char *p, size_t n)
{
	char *c = malloc(n + 1);

	assert_non_null(c);
	if (n)
		memcpy(c, p, n);
	c[n] = '\0';
	return c;
}

static void check_forbidden(const struct got *g, const void *p, size_t n)
{
	for (int i = 0; i < MAX_FORBIDDEN && g->forbidden[i]; i++) {
		if (memmem(p, n, g->forbidden[i], strlen(g->forbidden[i]))) {
			fail_msg("secret \"%s\" reached a callback", g->forbidden[i]);
		}
	}
}

static void log_escaped(FILE *f, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n')
			fputs("\\n", f);
		else if (p[i] == '\r')
			fputs("\\r", f);
		else
			fputc(p[i], f);
	}
}

static const char *src_name(enum http_source s)
{
	return s == HTTP_SRC_REQUEST_BODY ? "request" : s == HTTP_SRC_RESPONSE_BODY ? "response" : "sse";
}

static void on_payload(void *ctx, const struct http_payload *p)
{
	struct got *g = ctx;
	struct got_payload *q;

	check_forbidden(g, p->frame.data, p->frame.len);
	if (p->frame.oversized)
		check_forbidden(g, p->frame.tail, p->frame.tail_len);
	check_forbidden(g, p->ex, sizeof(*p->ex));
	assert_true(p->frame.len > 0 || (p->frame.oversized && (p->ex->flags & HTTP_EX_BODY_CUT)));
	assert_true(p->frame.ts_last_ns >= p->frame.ts_first_ns);
	if (p->frame.oversized && !(p->ex->flags & HTTP_EX_BODY_CUT))
		assert_int_equal(p->frame.len, p->frame.tail_len);
	else if (!p->frame.oversized)
		assert_int_equal(p->frame.len, p->frame.wire_len);
	fprintf(g->log, "payload %s %s #%llu ev=%s id=%s wire=%llu over=%d ", p->dir == MSD_DIR_READ ? "read" : "write",
		src_name(p->source), (unsigned long long)p->ex->seq, p->sse_event ? p->sse_event : "-",
		p->sse_id ? p->sse_id : "-", (unsigned long long)p->frame.wire_len, p->frame.oversized);
	log_escaped(g->log, p->frame.data, p->frame.len);
	if (p->frame.oversized) {
		fputs(" ... ", g->log);
		log_escaped(g->log, p->frame.tail, p->frame.tail_len);
	}
	fputc('\n', g->log);
	assert_true(g->npl < MAX_PAYLOADS);
	q = &g->pl[g->npl++];
	q->data = dup_bytes(p->frame.data, p->frame.len);
	q->len = p->frame.len;
	q->tail = p->frame.oversized ? dup_bytes(p->frame.tail, p->frame.tail_len) : NULL;
	q->tail_len = p->frame.tail_len;
	q->wire_len = p->frame.wire_len;
	q->ts_first = p->frame.ts_first_ns;
	q->ts_last = p->frame.ts_last_ns;
	q->oversized = p->frame.oversized;
	q->dir = p->dir;
	q->source = p->source;
	q->seq = p->ex->seq;
	q->status = p->ex->status;
	q->conn = g->conn;
	strcpy(q->method, p->ex->method);
	strcpy(q->target, p->ex->target);
	snprintf(q->event, sizeof(q->event), "%s", p->sse_event ? p->sse_event : "");
	snprintf(q->id, sizeof(q->id), "%s", p->sse_id ? p->sse_id : "");
}

static void on_exchange(void *ctx, const struct http_exchange *ex, enum http_phase phase)
{
	static const char *const phases[] = { "request", "response", "endpoint", "end" };
	struct got *g = ctx;

	check_forbidden(g, ex, sizeof(*ex));
	fprintf(g->log, "%s #%llu %s %s status=%u sse=%d flags=%x end=%s sess=%s/%s ct=%s/%s enc=%s/%s lei=%s secrets=%x/%x",
		phases[phase], (unsigned long long)ex->seq, ex->method, ex->target, ex->status, ex->sse, ex->flags,
		http_end_name(ex->end), ex->req.session_id, ex->resp.session_id, ex->req.content_type,
		ex->resp.content_type, ex->req.content_encoding, ex->resp.content_encoding, ex->req.last_event_id,
		ex->req.secrets, ex->resp.secrets);
	if (phase == HTTP_PHASE_ENDPOINT)
		fprintf(g->log, " endpoint=%s session=%s", ex->endpoint, ex->endpoint_session_id);
	if (phase == HTTP_PHASE_END)
		fprintf(g->log, " events=%llu last_id=%s retry=%lld", (unsigned long long)ex->sse_events, ex->last_event_id,
			(long long)ex->retry_ms);
	fputc('\n', g->log);
	switch (phase) {
	case HTTP_PHASE_REQUEST:
		g->requests++;
		assert_int_equal(ex->end, HTTP_END_NONE);
		break;
	case HTTP_PHASE_RESPONSE:
		g->responses++;
		assert_int_equal(ex->end, HTTP_END_NONE);
		break;
	case HTTP_PHASE_ENDPOINT:
		g->endpoints++;
		break;
	case HTTP_PHASE_END:
		assert_int_not_equal(ex->end, HTTP_END_NONE);
		assert_true(g->nends < MAX_ENDS);
		g->end_conn[g->nends] = g->conn;
		g->ends[g->nends++] = *ex;
		break;
	}
}

static void on_verdict(void *ctx, enum http_verdict v)
{
	struct got *g = ctx;

	fprintf(g->log, "verdict %s\n", http_verdict_name(v));
	assert_true(g->nverdicts < 4);
	g->verdicts[g->nverdicts++] = v;
}

static const struct http_callbacks callbacks = {
	.on_payload = on_payload,
	.on_exchange = on_exchange,
	.on_verdict = on_verdict,
};

/* ------------------------------------------------------------------ scripted streams */

enum op { OP_DATA, OP_GAP, OP_CUT, OP_EOF, OP_CLOSE };

struct step {
	enum op op;
	enum msd_dir dir;
	const char *s;
	size_t len; /* 0: strlen(s) */
	uint64_t ts;
};

#define R(str, t) { OP_DATA, MSD_DIR_READ, (str), 0, (t) }
#define W(str, t) { OP_DATA, MSD_DIR_WRITE, (str), 0, (t) }
#define GAP(d) { OP_GAP, (d), NULL, 100, 0 }
#define CUT(d, n, t) { OP_CUT, (d), NULL, (n), (t) }
#define CLOSE(t) { OP_CLOSE, MSD_DIR_READ, NULL, 0, (t) }

static size_t step_len(const struct step *st)
{
	return st->len ? st->len : strlen(st->s);
}

enum split { SPLIT_NONE, SPLIT_TWO, SPLIT_BYTES };

/* Runs a script; SPLIT_TWO splits step `at_step` at byte `at`. Returns the connection's
 * stats; the connection is closed and freed. */
static struct http_stats run(const struct step *steps, size_t n, const struct http_opts *o, struct got *g,
			     enum split split, size_t at_step, size_t at)
{
	struct http_conn *c = http_conn_new(o, &callbacks, g);
	struct http_stats st;

	assert_non_null(c);
	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		size_t len;

		switch (s->op) {
		case OP_DATA:
			len = step_len(s);
			if (split == SPLIT_BYTES) {
				for (size_t k = 0; k < len; k++)
					http_conn_feed(c, s->dir, s->s + k, 1, s->ts);
			} else if (split == SPLIT_TWO && i == at_step) {
				http_conn_feed(c, s->dir, s->s, at, s->ts);
				http_conn_feed(c, s->dir, s->s + at, len - at, s->ts);
			} else {
				http_conn_feed(c, s->dir, s->s, len, s->ts);
			}
			break;
		case OP_GAP:
			http_conn_gap(c, s->dir, s->len);
			break;
		case OP_CUT:
			http_conn_cut(c, s->dir, s->len, s->ts);
			break;
		case OP_EOF:
			http_conn_eof(c, s->dir, s->ts);
			break;
		case OP_CLOSE:
			http_conn_close(c, s->ts);
			break;
		}
	}
	http_conn_stats(c, &st);
	assert_true(http_conn_memory(c) < (size_t)4 * o->max_payload + (1 << 20));
	http_conn_close(c, 1u << 30);
	http_conn_free(c);
	return st;
}

/* Decodes the script whole into g, then checks that every split in two and the byte-by-byte
 * feeding give the same transcript. */
static struct http_stats run_every_split(const struct step *steps, size_t n, const struct http_opts *o,
					 struct got *g, const char *const *forbidden)
{
	struct http_stats st;
	struct got h;

	got_init(g);
	for (int i = 0; i < MAX_FORBIDDEN && forbidden[i]; i++)
		g->forbidden[i] = forbidden[i];
	st = run(steps, n, o, g, SPLIT_NONE, 0, 0);
	for (size_t i = 0; i < n; i++) {
		if (steps[i].op != OP_DATA)
			continue;
		for (size_t k = 1; k < step_len(&steps[i]); k++) {
			got_init(&h);
			memcpy(h.forbidden, g->forbidden, sizeof(h.forbidden));
			run(steps, n, o, &h, SPLIT_TWO, i, k);
			if (strcmp(got_text(&h), got_text(g)) != 0)
				fail_msg("step %zu split at %zu:\n--- whole\n%s--- split\n%s", i, k, got_text(g), got_text(&h));
			got_free(&h);
		}
	}
	got_init(&h);
	memcpy(h.forbidden, g->forbidden, sizeof(h.forbidden));
	run(steps, n, o, &h, SPLIT_BYTES, 0, 0);
	if (strcmp(got_text(&h), got_text(g)) != 0)
		fail_msg("byte by byte:\n--- whole\n%s--- bytes\n%s", got_text(g), got_text(&h));
	got_free(&h);
	return st;
}

static struct http_opts opts(void)
{
	struct http_opts o;

	http_opts_default(&o);
	return o;
}

/* ------------------------------------------------------------------ building bodies */

struct buf {
	char *p;
	size_t n, cap;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
	b->p[b->n] = '\0';
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[4096];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	assert_true(n >= 0 && (size_t)n < sizeof(tmp));
	buf_add(b, tmp, (size_t)n);
}

/* One chunk of chunked transfer encoding. */
static void buf_chunk(struct buf *b, const void *p, size_t n)
{
	buf_printf(b, "%zx\r\n", n);
	buf_add(b, p, n);
	buf_add(b, "\r\n", 2);
}

/* Compresses with zlib: windowBits 31 gzip, 15 zlib (HTTP deflate), -15 raw deflate. With
 * flush_every, a sync flush after each flush_every input bytes (as a server streaming SSE). */
static void buf_deflate(struct buf *out, const void *in, size_t n, int window_bits, size_t flush_every)
{
	z_stream z = { 0 };
	unsigned char tmp[16384];
	size_t off = 0;
	int rc;

	assert_int_equal(deflateInit2(&z, 9, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY), Z_OK);
	do {
		size_t k = flush_every && n - off > flush_every ? flush_every : n - off;
		int flush = off + k == n ? Z_FINISH : flush_every ? Z_SYNC_FLUSH : Z_NO_FLUSH;

		z.next_in = (Bytef *)in + off;
		z.avail_in = (uInt)k;
		off += k;
		do {
			z.next_out = tmp;
			z.avail_out = sizeof(tmp);
			rc = deflate(&z, flush);
			assert_true(rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR);
			buf_add(out, tmp, sizeof(tmp) - z.avail_out);
		} while (z.avail_out == 0);
	} while (off < n);
	assert_int_equal(rc, Z_STREAM_END);
	deflateEnd(&z);
}

static const char *const no_secrets[] = { NULL };

#define REQ_INIT "{\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\"},\"jsonrpc\":\"2.0\",\"id\":0}"
#define RESP_INIT "{\"result\":{\"protocolVersion\":\"2025-11-25\"},\"jsonrpc\":\"2.0\",\"id\":0}"

/* ------------------------------------------------------------------ tests */

static void test_post_json_every_split(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:3001\r\nContent-Type: application/json\r\n"
		  "Accept: application/json, text/event-stream\r\nContent-Length: 88\r\n\r\n" REQ_INIT,
		  100),
		W("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: abc-123\r\n"
		  "Content-Length: 66\r\n\r\n" RESP_INIT,
		  200),
	};
	struct http_stats st = run_every_split(steps, 2, &o, &g, no_secrets);

	assert_int_equal(g.nverdicts, 1);
	assert_int_equal(g.verdicts[0], HTTP_MCP);
	assert_int_equal(g.npl, 2);
	assert_string_equal(g.pl[0].data, REQ_INIT);
	assert_int_equal(g.pl[0].dir, MSD_DIR_READ);
	assert_int_equal(g.pl[0].source, HTTP_SRC_REQUEST_BODY);
	assert_int_equal(g.pl[0].ts_first, 100);
	assert_string_equal(g.pl[0].method, "POST");
	assert_string_equal(g.pl[0].target, "/mcp");
	assert_string_equal(g.pl[1].data, RESP_INIT);
	assert_int_equal(g.pl[1].dir, MSD_DIR_WRITE);
	assert_int_equal(g.pl[1].source, HTTP_SRC_RESPONSE_BODY);
	assert_int_equal(g.pl[1].seq, 1);
	assert_int_equal(g.pl[1].status, 200);
	assert_int_equal(g.pl[1].ts_first, 200);
	assert_int_equal(g.nends, 1);
	assert_int_equal(g.ends[0].end, HTTP_END_COMPLETE);
	assert_string_equal(g.ends[0].req.host, "127.0.0.1:3001");
	assert_string_equal(g.ends[0].req.accept, "application/json, text/event-stream");
	assert_string_equal(g.ends[0].resp.session_id, "abc-123");
	assert_int_equal(g.ends[0].ts_req_first, 100);
	assert_int_equal(g.ends[0].ts_req_last, 100);
	assert_int_equal(g.ends[0].ts_resp_first, 200);
	assert_int_equal(g.ends[0].req_body_bytes, 88);
	assert_int_equal(st.requests, 1);
	assert_int_equal(st.responses, 1);
	assert_int_equal(st.payloads, 2);
	got_free(&g);
}

/* The same bytes seen from the client: it writes the request and reads the response. */
static void test_client_role(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct http_conn *c;
	struct got g;
	const char *req = "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 88\r\n\r\n" REQ_INIT;
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 66\r\n\r\n" RESP_INIT;

	got_init(&g);
	c = http_conn_new(&o, &callbacks, &g);
	assert_int_equal(http_conn_role(c), HTTP_ROLE_UNKNOWN);
	http_conn_feed(c, MSD_DIR_WRITE, req, strlen(req), 1);
	assert_int_equal(http_conn_role(c), HTTP_ROLE_CLIENT);
	http_conn_feed(c, MSD_DIR_READ, resp, strlen(resp), 2);
	assert_int_equal(g.npl, 2);
	assert_int_equal(g.pl[0].dir, MSD_DIR_WRITE);
	assert_int_equal(g.pl[1].dir, MSD_DIR_READ);
	assert_int_equal(g.nends, 1);
	http_conn_free(c);
	got_free(&g);
}

static void test_pipelining_head_202(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 54\r\n\r\n"
		  "{\"method\":\"notifications/initialized\",\"jsonrpc\":\"2.0\"}"
		  "HEAD /health HTTP/1.1\r\n\r\n"
		  "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
		  "10\r\n{\"method\":\"ping\"\r\n18\r\n,\"jsonrpc\":\"2.0\",\"id\":7}\r\n0\r\n\r\n",
		  10),
		W("HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
		  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
		  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n"
		  "{\"result\":{},\"jsonrpc\":\"2.0\",\"id\":7}",
		  20),
	};

	run_every_split(steps, 2, &o, &g, no_secrets);
	assert_int_equal(g.npl, 3);
	assert_string_equal(g.pl[1].data, "{\"method\":\"ping\",\"jsonrpc\":\"2.0\",\"id\":7}");
	assert_int_equal(g.pl[1].seq, 3);
	assert_string_equal(g.pl[2].data, "{\"result\":{},\"jsonrpc\":\"2.0\",\"id\":7}");
	assert_int_equal(g.pl[2].seq, 3);
	assert_int_equal(g.nends, 3);
	assert_int_equal(g.ends[0].seq, 1);
	assert_int_equal(g.ends[0].status, 202);
	assert_int_equal(g.ends[1].seq, 2);
	assert_string_equal(g.ends[1].method, "HEAD");
	assert_int_equal(g.ends[1].resp_body_bytes, 0); /* HEAD: Content-Length without a body */
	assert_int_equal(g.ends[2].seq, 3);
	for (int i = 0; i < 3; i++)
		assert_int_equal(g.ends[i].end, HTTP_END_COMPLETE);
	got_free(&g);
}

#define SSE_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

static void test_sse_every_split(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	struct buf b1 = { 0 }, b2 = { 0 }, b3 = { 0 };
	/* The priming event, a keepalive comment, a progress notification with CRLF line ends
	 * and its data over three lines, an event of another type, bare CR line ends, a retry. */
	const char *e1 = "id: prime-1\ndata: \n\n";
	const char *e2 = ": keepalive\n\nevent: message\r\nid: ev-2\r\ndata: {\"method\":\"notifications/progress\",\r\n"
			 "data: \"params\":{\"progress\":1},\r\ndata:\"jsonrpc\":\"2.0\"}\r\n\r\n";
	const char *e3 = "event: ping\ndata: {\"jsonrpc\":\"2.0\"}\n\n"
			 "retry: 2500\rid: ev-3\rdata: {\"result\":{},\"jsonrpc\":\"2.0\",\"id\":1}\r\r";
	struct step steps[4] = {
		R("POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n"
		  "{\"method\":\"x\",\"jsonrpc\":\"2.0\",\"id\":1} ",
		  1000),
	};

	buf_add(&b1, SSE_HEAD, strlen(SSE_HEAD));
	buf_chunk(&b1, e1, strlen(e1));
	buf_chunk(&b2, e2, strlen(e2));
	buf_chunk(&b3, e3, strlen(e3));
	buf_add(&b3, "0\r\n\r\n", 5);
	steps[1] = (struct step){ OP_DATA, MSD_DIR_WRITE, b1.p, b1.n, 2000 };
	steps[2] = (struct step){ OP_DATA, MSD_DIR_WRITE, b2.p, b2.n, 3000 };
	steps[3] = (struct step){ OP_DATA, MSD_DIR_WRITE, b3.p, b3.n, 4000 };
	struct http_stats st = run_every_split(steps, 4, &o, &g, no_secrets);

	assert_int_equal(g.npl, 3);
	assert_string_equal(g.pl[1].data,
			    "{\"method\":\"notifications/progress\",\n\"params\":{\"progress\":1},\n\"jsonrpc\":\"2.0\"}");
	assert_string_equal(g.pl[1].event, "message");
	assert_string_equal(g.pl[1].id, "ev-2");
	assert_int_equal(g.pl[1].source, HTTP_SRC_SSE_EVENT);
	assert_int_equal(g.pl[1].ts_first, 3000);
	assert_int_equal(g.pl[1].seq, 1);
	assert_string_equal(g.pl[2].data, "{\"result\":{},\"jsonrpc\":\"2.0\",\"id\":1}");
	assert_string_equal(g.pl[2].id, "ev-3");
	assert_int_equal(g.pl[2].ts_first, 4000);
	assert_int_equal(g.nends, 1);
	assert_true(g.ends[0].sse);
	assert_int_equal(g.ends[0].end, HTTP_END_COMPLETE);
	assert_int_equal(g.ends[0].sse_events, 4);
	assert_string_equal(g.ends[0].last_event_id, "ev-3");
	assert_int_equal(g.ends[0].retry_ms, 2500);
	assert_int_equal(g.ends[0].ts_resp_head, 2000);
	assert_int_equal(g.ends[0].ts_resp_last, 4000);
	assert_int_equal(st.sse_events, 4);
	assert_int_equal(st.sse_empty, 1);
	assert_int_equal(st.sse_other, 1);
	assert_int_equal(st.sse_comments, 1);
	free(b1.p);
	free(b2.p);
	free(b3.p);
	got_free(&g);
}

/* 2024-11-05: GET /sse, whose first event names where to POST; responses come on the GET. */
static void test_sse_legacy_endpoint(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("GET /sse HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n", 1),
		W("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: keep-alive\r\n\r\n"
		  "event: endpoint\ndata: /message?sessionId=9f1c&access_token=hunter2\n\n",
		  2),
		W("event: message\ndata: {\"result\":{\"tools\":[]},\"jsonrpc\":\"2.0\",\"id\":1}\n\n", 3),
		{ OP_EOF, MSD_DIR_WRITE, NULL, 0, 4 },
	};
	const char *const secrets[] = { "hunter2", NULL };

	run_every_split(steps, 4, &o, &g, secrets);
	assert_int_equal(g.nverdicts, 1);
	assert_int_equal(g.verdicts[0], HTTP_MCP);
	assert_int_equal(g.endpoints, 1);
	assert_non_null(strstr(got_text(&g), "endpoint=/message?sessionId=9f1c&access_token=REDACTED session=9f1c"));
	assert_int_equal(g.npl, 1);
	assert_string_equal(g.pl[0].target, "/sse");
	assert_int_equal(g.nends, 1);
	assert_int_equal(g.ends[0].end, HTTP_END_COMPLETE); /* delimited by the close */
	got_free(&g);
}

static void test_sse_stream_closed_and_request_cancelled(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("GET /mcp HTTP/1.1\r\nMcp-Session-Id: s1\r\nAccept: text/event-stream\r\n\r\n", 1),
		W(SSE_HEAD "c\r\n: keepalive\n\r\n", 2),
		R("POST /mcp HTTP/1.1\r\nMcp-Session-Id: s1\r\nContent-Type: application/json\r\n"
		  "Content-Length: 38\r\n\r\n{\"method\":\"x\",\"jsonrpc\":\"2.0\",\"id\":9}\n",
		  3),
		CLOSE(4),
	};

	run_every_split(steps, 4, &o, &g, no_secrets);
	assert_int_equal(g.verdicts[0], HTTP_MCP);
	assert_int_equal(g.requests, 2);
	assert_int_equal(g.responses, 1);
	assert_int_equal(g.nends, 2);
	assert_int_equal(g.ends[0].seq, 1);
	assert_int_equal(g.ends[0].end, HTTP_END_CLOSED);
	assert_true(g.ends[0].sse);
	assert_int_equal(g.ends[1].seq, 2);
	assert_int_equal(g.ends[1].end, HTTP_END_CANCELLED);
	assert_int_equal(g.ends[1].status, 0);
	assert_int_equal(g.npl, 1);
	got_free(&g);
}

static void test_gzip_and_deflate_bodies(void **state)
{
	(void)state;
	const char *msg = "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"compressed compressed compressed\"}]},"
			  "\"jsonrpc\":\"2.0\",\"id\":3}";
	const int windows[] = { 31, 15, -15 };
	const char *names[] = { "gzip", "deflate", "deflate" };

	for (int i = 0; i < 3; i++) {
		struct http_opts o = opts();
		struct buf z = { 0 }, resp = { 0 };
		struct got g;

		buf_deflate(&z, msg, strlen(msg), windows[i], 0);
		buf_printf(&resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: %s\r\n"
				  "Transfer-Encoding: chunked\r\n\r\n", names[i]);
		buf_chunk(&resp, z.p, z.n / 2);
		buf_chunk(&resp, z.p + z.n / 2, z.n - z.n / 2);
		buf_add(&resp, "0\r\n\r\n", 5);
		const struct step steps[] = {
			R("POST /mcp HTTP/1.1\r\nAccept-Encoding: gzip, deflate\r\nContent-Length: 0\r\n\r\n", 1),
			{ OP_DATA, MSD_DIR_WRITE, resp.p, resp.n, 2 },
		};
		struct http_stats st = run_every_split(steps, 2, &o, &g, no_secrets);

		assert_int_equal(g.npl, 1);
		assert_string_equal(g.pl[0].data, msg);
		assert_int_equal(g.pl[0].wire_len, strlen(msg));
		assert_int_equal(st.inflate_errors, 0);
		assert_string_equal(g.ends[0].resp.content_encoding, names[i]);
		assert_int_equal(g.ends[0].resp_body_bytes, z.n);
		got_free(&g);
		free(z.p);
		free(resp.p);
	}
}

/* A compressing proxy in front of an SSE stream: one deflate stream, flushed per event. */
static void test_gzip_sse(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct buf events = { 0 }, z = { 0 }, resp = { 0 };
	struct got g;
	size_t half;

	for (int i = 1; i <= 3; i++)
		buf_printf(&events, "event: message\nid: e%d\ndata: {\"method\":\"notifications/progress\",\"params\":"
				    "{\"progress\":%d},\"jsonrpc\":\"2.0\"}\n\n",
			   i, i);
	buf_deflate(&z, events.p, events.n, 31, events.n / 3);
	half = z.n / 2;
	buf_add(&resp, SSE_HEAD, strlen(SSE_HEAD));
	resp.n -= 2; /* replace the head's end to add an encoding */
	buf_printf(&resp, "Content-Encoding: gzip\r\n\r\n");
	buf_chunk(&resp, z.p, half);
	const struct step steps[] = {
		R("GET /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\n\r\n", 1),
		{ OP_DATA, MSD_DIR_WRITE, resp.p, resp.n, 2 },
		{ OP_DATA, MSD_DIR_WRITE, NULL, 0, 3 },
	};
	struct buf rest = { 0 };
	struct step all[3];

	buf_chunk(&rest, z.p + half, z.n - half);
	memcpy(all, steps, sizeof(all));
	all[2].s = rest.p;
	all[2].len = rest.n;
	run_every_split(all, 3, &o, &g, no_secrets);
	assert_int_equal(g.npl, 3);
	assert_string_equal(g.pl[2].id, "e3");
	assert_int_equal(g.pl[0].ts_first, 2);
	assert_int_equal(g.pl[2].ts_last, 3);
	got_free(&g);
	free(events.p);
	free(z.p);
	free(resp.p);
	free(rest.p);
}

/* A compressed stream that goes bad: what inflated before the bad bytes is delivered,
 * however it was chunked; the rest is not, and the body is flagged. */
static void test_gzip_corrupt_tail(void **state)
{
	(void)state;
	struct http_opts o = opts();
	const char *events = "event: message\ndata: {\"method\":\"a\",\"jsonrpc\":\"2.0\"}\n\n"
			     "event: message\ndata: {\"method\":\"b\",\"jsonrpc\":\"2.0\"}\n\n";
	unsigned char z[512];
	z_stream zs = { 0 };
	struct buf resp = { 0 };
	struct got g;

	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 31, 9, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)events;
	zs.avail_in = (uInt)strlen(events);
	zs.next_out = z;
	zs.avail_out = sizeof(z);
	assert_int_equal(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
	memset(z + zs.total_out, 0xff, 3); /* a final block of the reserved type */
	buf_printf(&resp, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
			  "Content-Length: %lu\r\n\r\n", zs.total_out + 3);
	buf_add(&resp, z, zs.total_out + 3);
	deflateEnd(&zs);
	const struct step steps[] = {
		R("GET /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\n\r\n", 1),
		{ OP_DATA, MSD_DIR_WRITE, resp.p, resp.n, 2 },
	};
	struct http_stats st = run_every_split(steps, 2, &o, &g, no_secrets);

	assert_int_equal(g.npl, 2);
	assert_int_equal(st.inflate_errors, 1);
	assert_true(g.ends[0].flags & HTTP_EX_INFLATE_ERROR);
	got_free(&g);
	free(resp.p);
}

/* 32 MiB of the same byte gzip to ~32 KiB: a bomb by ratio, and by size under a lower cap. */
static void test_gzip_bomb(void **state)
{
	(void)state;
	size_t n = 32u << 20;
	char *zeros = calloc(1, n);
	struct buf z = { 0 }, resp = { 0 };

	assert_non_null(zeros);
	memset(zeros, ' ', n);
	memcpy(zeros, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"", strlen("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\""));
	buf_deflate(&z, zeros, n, 31, 0);
	free(zeros);
	buf_printf(&resp, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
			  "Content-Length: %zu\r\n\r\n", z.n);
	buf_add(&resp, z.p, z.n);
	for (int cap = 0; cap < 2; cap++) {
		struct http_opts o = opts();
		struct http_conn *c;
		struct http_stats st;
		struct got g;

		if (cap) {
			o.max_inflate = 1u << 20; /* the size cap, with a ratio the bomb does not reach */
			o.max_inflate_ratio = 100000;
		}
		got_init(&g);
		c = http_conn_new(&o, &callbacks, &g);
		http_conn_feed(c, MSD_DIR_READ, "POST /mcp HTTP/1.1\r\nMcp-Method: x\r\n\r\n", 37, 1);
		http_conn_feed(c, MSD_DIR_WRITE, resp.p, resp.n, 2);
		http_conn_stats(c, &st);
		assert_true(http_conn_memory(c) < (2u << 20));
		http_conn_free(c);
		assert_int_equal(st.inflate_bombs, 1);
		assert_int_equal(g.npl, 0);
		assert_int_equal(g.nends, 1);
		assert_true(g.ends[0].flags & HTTP_EX_BOMB);
		assert_int_equal(g.ends[0].end, HTTP_END_COMPLETE);
		got_free(&g);
	}
	free(z.p);
	free(resp.p);
}

static void test_inflate_error_and_unsupported_encoding(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp HTTP/1.1\r\nMcp-Method: tools/list\r\n\r\n"
		  "POST /mcp HTTP/1.1\r\nMcp-Method: tools/list\r\n\r\n",
		  1),
		W("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 12\r\n\r\n"
		  "not gzip at!"
		  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\n"
		  "\x0b\x01\x80",
		  2),
	};
	struct http_stats st = run_every_split(steps, 2, &o, &g, no_secrets);

	assert_int_equal(g.npl, 0);
	assert_int_equal(st.inflate_errors, 1);
	assert_int_equal(st.unsupported_encodings, 1);
	assert_int_equal(g.nends, 2);
	assert_true(g.ends[0].flags & HTTP_EX_INFLATE_ERROR);
	assert_true(g.ends[1].flags & HTTP_EX_ENCODING_UNSUPPORTED);
	got_free(&g);
}

static void test_continue_204_304(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n", 1),
		W("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n", 2),
		R("{\"method\":\"a\",\"jsonrpc\":\"2.0\"}", 3),
		W("HTTP/1.1 204 No Content\r\n\r\n", 4),
		R("GET /x HTTP/1.1\r\nMcp-Session-Id: q\r\n\r\n", 5),
		W("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n"
		  "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n",
		  6),
	};

	run_every_split(steps, 6, &o, &g, no_secrets);
	assert_int_equal(g.npl, 1);
	assert_int_equal(g.nends, 3);
	assert_int_equal(g.ends[0].status, 204);
	assert_true(g.ends[0].flags & HTTP_EX_CONTINUE);
	assert_int_equal(g.ends[0].ts_resp_first, 4);
	assert_int_equal(g.ends[1].status, 304);
	assert_int_equal(g.responses, 3);
	assert_int_equal(g.ends[2].status, 418); /* no request: unpaired */
	assert_true(g.ends[2].flags & HTTP_EX_UNPAIRED);
	got_free(&g);
}

static void test_upgrade_sets_aside(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 1),
		W("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello", 2),
		R("\x81\x85\x01\x02\x03\x04{\"jsonrpc\":\"2.0\"}", 3),
	};
	struct http_stats st = run_every_split(steps, 3, &o, &g, no_secrets);

	assert_int_equal(g.nverdicts, 1);
	assert_int_equal(g.verdicts[0], HTTP_UPGRADED);
	assert_int_equal(g.npl, 0);
	assert_int_equal(g.nends, 1);
	assert_int_equal(g.ends[0].status, 101);
	assert_int_equal(st.ignored_bytes, 7 + strlen(steps[2].s)); /* the frame after the 101 too */
	got_free(&g);
}

static void test_oversized_body(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct buf body = { 0 }, req = { 0 };
	struct got g;

	o.max_payload = 64;
	buf_add(&body, "{\"method\":\"tools/call\",\"params\":{\"x\":\"", 39);
	for (int i = 0; i < 200; i++)
		buf_add(&body, "abcdefghij", 10);
	buf_add(&body, "\"},\"jsonrpc\":\"2.0\",\"id\":42}", 27);
	buf_printf(&req, "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.n);
	buf_add(&req, body.p, body.n);
	const struct step steps[] = { { OP_DATA, MSD_DIR_READ, req.p, req.n, 1 } };
	struct http_stats st = run_every_split(steps, 1, &o, &g, no_secrets);

	assert_int_equal(g.npl, 1);
	assert_true(g.pl[0].oversized);
	assert_int_equal(g.pl[0].wire_len, body.n);
	assert_int_equal(g.pl[0].len, 64);
	assert_memory_equal(g.pl[0].data, body.p, 64);
	assert_memory_equal(g.pl[0].tail, body.p + body.n - 64, 64);
	assert_int_equal(st.payloads_oversized, 1);
	got_free(&g);
	free(body.p);
	free(req.p);
}

/* Whether a body is JSON-RPC is judged on what is handed over (head and tail), never on
 * more of it that happened to be buffered. */
static void test_jsonrpc_judged_on_head_and_tail(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const char *body = "{\"a\":\"zzzzzzzzz\"jsonrpc\"yyyyyyyyyyyyyyyy\"}";
	char req[256];

	o.max_payload = 16;
	snprintf(req, sizeof(req), "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	const struct step steps[] = { R(req, 1) };
	struct http_stats st = run_every_split(steps, 1, &o, &g, no_secrets);

	assert_int_equal(g.npl, 0);
	assert_int_equal(st.not_jsonrpc, 1);
	got_free(&g);
}

static void test_secret_headers_never_stored(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp?access_token=tok-AAAA&x=1&apiKey=key-BBBB HTTP/1.1\r\n"
		  "Authorization: Bearer sec-CCCC\r\nCookie: sid=sec-DDDD\r\nProxy-Authorization: Basic sec-EEEE\r\n"
		  "X-Api-Key: sec-FFFF\r\nX-Auth-Token: sec-GGGG\r\nmy-client-SECRET: sec-HHHH\r\n"
		  "Mcp-Session-Id: visible-session\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n"
		  "{\"method\":\"a\",\"jsonrpc\":\"2.0\"}",
		  1),
		W("HTTP/1.1 202 Accepted\r\nSet-Cookie: sid=sec-IIII; HttpOnly\r\nContent-Length: 0\r\n\r\n", 2),
	};
	const char *const secrets[] = { "AAAA", "BBBB", "CCCC", "DDDD", "EEEE", "FFFF", "GGGG", "HHHH" };
	struct http_stats st;

	st = run_every_split(steps, 2, &o, &g, secrets);
	assert_null(strstr(got_text(&g), "IIII"));
	assert_int_equal(g.nends, 1);
	assert_string_equal(g.ends[0].target, "/mcp?access_token=REDACTED&x=1&apiKey=REDACTED");
	assert_int_equal(g.ends[0].req.secrets, HTTP_SECRET_AUTHORIZATION | HTTP_SECRET_COOKIE |
							HTTP_SECRET_PROXY_AUTHORIZATION | HTTP_SECRET_OTHER);
	assert_int_equal(g.ends[0].resp.secrets, HTTP_SECRET_SET_COOKIE);
	assert_string_equal(g.ends[0].req.session_id, "visible-session");
	assert_int_equal(st.secret_headers, 7);
	assert_null(memmem(&g.ends[0], sizeof(g.ends[0]), "IIII", 4));
	got_free(&g);
}

static void test_mcp_headers_and_name(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	char big[600];
	char req[1200];
	int n;

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	/* "日本語-tool" in UTF-8, base64; a NUL opening the second request's Mcp-Method */
	n = snprintf(req, sizeof(req),
		 "POST /mcp HTTP/1.1\r\nMcp-Method: tools/call\r\nMcp-Name: =?base64?5pel5pys6KqeLXRvb2w=?=\r\n"
		 "MCP-Protocol-Version: 2026-07-28  \r\nHost: %s\r\nContent-Length: 0\r\n\r\n"
		 "POST /mcp HTTP/1.1\r\nMcp-Name: =?base64?!!!?=\r\nMcp-Method: %ctools/list\r\nContent-Length: 0\r\n\r\n",
		 big, '\0');
	const struct step steps[] = { { OP_DATA, MSD_DIR_READ, req, (size_t)n, 1 } };
	struct http_stats st = run_every_split(steps, 1, &o, &g, no_secrets);

	assert_int_equal(g.verdicts[0], HTTP_MCP);
	assert_int_equal(st.header_values_cut, 2); /* the long Host, the NUL */
	/* the second request is not closed: nothing answered it */
	assert_int_equal(g.nends, 2);
	assert_string_equal(g.ends[0].req.mcp_method, "tools/call");
	assert_string_equal(g.ends[0].req.mcp_name, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e-tool");
	assert_true(g.ends[0].req.mcp_name_encoded);
	assert_string_equal(g.ends[0].req.protocol_version, "2026-07-28");
	assert_int_equal(strlen(g.ends[0].req.host), sizeof(g.ends[0].req.host) - 1);
	assert_true(g.ends[1].req.mcp_name_invalid);
	assert_string_equal(g.ends[1].req.mcp_name, "=?base64?!!!?=");
	assert_string_equal(g.ends[1].req.mcp_method, ""); /* cut at the NUL http-parser lets through */
	assert_int_equal(g.ends[0].end, HTTP_END_CANCELLED);
	got_free(&g);
}

static void test_bounds(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct buf req = { 0 }, name = { 0 };
	struct http_stats st;
	struct got g;
	struct http_conn *c;

	/* Too many header lines, and a long name whose secret word is past what is kept. */
	buf_add(&req, "POST /mcp HTTP/1.1\r\n", 20);
	for (int i = 0; i < 100; i++)
		buf_add(&name, "X", 1);
	buf_printf(&req, "%s-token: sec-ZZZZ\r\n", name.p);
	for (int i = 0; i < HTTP_MAX_HEADERS + 10; i++)
		buf_printf(&req, "X-Filler-%d: v\r\n", i);
	buf_add(&req, "Content-Length: 0\r\n\r\n", 21);
	got_init(&g);
	g.forbidden[0] = "ZZZZ";
	c = http_conn_new(&o, &callbacks, &g);
	http_conn_feed(c, MSD_DIR_READ, req.p, req.n, 1);
	http_conn_stats(c, &st);
	assert_int_equal(st.headers_over_limit, 12);
	assert_int_equal(st.requests, 1);
	http_conn_free(c);
	got_free(&g);

	/* More pipelined requests than HTTP_MAX_PENDING: the connection is given up. */
	got_init(&g);
	c = http_conn_new(&o, &callbacks, &g);
	for (int i = 0; i <= HTTP_MAX_PENDING; i++)
		http_conn_feed(c, MSD_DIR_READ, "GET / HTTP/1.1\r\nMcp-Session-Id: s\r\n\r\n", 37, 1);
	assert_int_equal(http_conn_verdict(c), HTTP_BROKEN);
	assert_int_equal(g.nends, HTTP_MAX_PENDING);
	assert_int_equal(g.ends[0].end, HTTP_END_ABANDONED);
	assert_int_equal(http_conn_memory(c), http_conn_memory(c)); /* still answers */
	http_conn_free(c);
	got_free(&g);
	free(req.p);
	free(name.p);
}

/* Bytes cut out of a long write (the kernel copies the ends of a syscall too long to copy
 * whole): inside a body or an event's data the message goes on across the cut, and its
 * payload keeps its head from before and its tail from after. */
static void test_cut_inside_bodies(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct buf body = { 0 }, req = { 0 }, ev = { 0 }, resp1 = { 0 }, resp2 = { 0 };
	size_t cut = 1000, before = 500;
	struct got g;

	o.max_payload = 64;
	buf_add(&body, "{\"method\":\"tools/call\",\"params\":{\"x\":\"", 39);
	while (body.n < 1973)
		buf_add(&body, "abcdefghij", 10);
	buf_add(&body, "\"},\"jsonrpc\":\"2.0\",\"id\":42}", 27);
	buf_printf(&req, "POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body.n);
	/* One SSE event of 1700 bytes in one chunk, cut inside its data; the next event follows. */
	buf_add(&ev, "event: message\nid: big\ndata: {\"result\":\"", 40);
	while (ev.n < 1650)
		buf_add(&ev, "0123456789", 10);
	buf_add(&ev, "\",\"jsonrpc\":\"2.0\",\"id\":42}\n\n", 28);
	buf_printf(&resp1, SSE_HEAD "%zx\r\n", ev.n);
	buf_add(&resp1, ev.p, 300);
	buf_add(&resp2, ev.p + 300 + cut, ev.n - 300 - cut);
	buf_printf(&resp2, "\r\n35\r\nevent: message\ndata: {\"method\":\"c\",\"jsonrpc\":\"2.0\"}\n\n\r\n0\r\n\r\n");
	const struct step steps[] = {
		{ OP_DATA, MSD_DIR_READ, req.p, req.n, 1 },
		{ OP_DATA, MSD_DIR_READ, body.p, before, 1 },
		CUT(MSD_DIR_READ, 1000, 2),
		{ OP_DATA, MSD_DIR_READ, body.p + before + cut, body.n - before - cut, 3 },
		{ OP_DATA, MSD_DIR_WRITE, resp1.p, resp1.n, 4 },
		CUT(MSD_DIR_WRITE, 1000, 5),
		{ OP_DATA, MSD_DIR_WRITE, resp2.p, resp2.n, 6 },
	};
	struct http_stats st = run_every_split(steps, 7, &o, &g, no_secrets);

	assert_int_equal(st.cut_bytes, 2000);
	assert_int_equal(st.cuts_as_gaps, 0);
	assert_int_equal(g.npl, 3);
	assert_true(g.pl[0].oversized);
	assert_int_equal(g.pl[0].wire_len, body.n);
	assert_memory_equal(g.pl[0].data, body.p, 64);
	assert_memory_equal(g.pl[0].tail, body.p + body.n - 64, 64);
	assert_int_equal(g.pl[0].ts_first, 1);
	assert_int_equal(g.pl[0].ts_last, 3);
	assert_true(g.pl[1].oversized);
	assert_int_equal(g.pl[1].wire_len, ev.n - 29 - 2); /* the value of its data line */
	assert_string_equal(g.pl[1].id, "big");
	assert_memory_equal(g.pl[1].tail + g.pl[1].tail_len - 24, "\"jsonrpc\":\"2.0\",\"id\":42}", 24);
	assert_string_equal(g.pl[2].data, "{\"method\":\"c\",\"jsonrpc\":\"2.0\"}");
	assert_int_equal(g.nends, 1);
	assert_true(g.ends[0].flags & HTTP_EX_BODY_CUT);
	assert_int_equal(g.ends[0].resp_body_bytes, ev.n + 0x35); /* chunk data, the cut included */
	got_free(&g);
	free(body.p);
	free(req.p);
	free(ev.p);
	free(resp1.p);
	free(resp2.p);
}

/* A cut right where an event's data begins: nothing before it, the payload is its tail. */
static void test_cut_at_data_start(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("GET /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\n\r\n", 1),
		W("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\nevent: message\ndata: ", 2),
		CUT(MSD_DIR_WRITE, 100, 3),
		W("xyz\",\"jsonrpc\":\"2.0\",\"id\":5}\n\n", 4),
	};

	o.max_payload = 64;
	run_every_split(steps, 4, &o, &g, no_secrets);
	assert_int_equal(g.npl, 1);
	assert_true(g.pl[0].oversized);
	assert_int_equal(g.pl[0].len, 0);
	assert_string_equal(g.pl[0].tail, "xyz\",\"jsonrpc\":\"2.0\",\"id\":5}");
	assert_int_equal(g.pl[0].wire_len, 128);
	assert_int_equal(g.pl[0].ts_first, 3);
	got_free(&g);
}

/* A cut that leaves the chunk it starts in cannot be framed across: it is a gap, and the
 * stream resumes at its next event. */
static void test_cut_across_chunks_is_a_gap(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("GET /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\n\r\n", 1),
		W(SSE_HEAD "35\r\nevent: message\ndata: {\"method\":\"a\",\"jsonrpc", 2),
		CUT(MSD_DIR_WRITE, 100, 3),
		W("35\r\nevent: message\ndata: {\"method\":\"c\",\"jsonrpc\":\"2.0\"}\n\n\r\n", 4),
	};
	struct http_stats st = run_every_split(steps, 4, &o, &g, no_secrets);

	assert_int_equal(st.cuts_as_gaps, 1);
	assert_int_equal(st.gaps, 1);
	assert_int_equal(g.npl, 1);
	assert_string_equal(g.pl[0].data, "{\"method\":\"c\",\"jsonrpc\":\"2.0\"}");
	got_free(&g);
}

/* A gap in the request direction: the request's payload is lost, its response still pairs;
 * parsing resumes at the next request line. */
static void test_gap_in_request(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
		  "{\"method\":\"x\",",
		  1),
		GAP(MSD_DIR_READ),
		R("ght\":3}\r\nPOST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n"
		  "{\"method\":\"b\",\"jsonrpc\":\"2.0\"}",
		  2),
		W("HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", 3),
	};
	struct http_stats st = run_every_split(steps, 4, &o, &g, no_secrets);

	assert_int_equal(st.gaps, 1);
	assert_int_equal(st.resyncs, 1);
	assert_int_equal(g.npl, 1);
	assert_int_equal(g.pl[0].seq, 2);
	assert_int_equal(g.nends, 2);
	assert_int_equal(g.ends[0].status, 500);
	assert_true(g.ends[0].flags & HTTP_EX_REQUEST_INCOMPLETE);
	assert_int_equal(g.ends[1].status, 202);
	got_free(&g);
}

/* A gap inside a chunked event stream: the partial event is dropped and the stream goes on
 * at its next chunk; later events still belong to the same exchange. */
static void test_gap_in_sse_resumes(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("GET /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\n\r\n", 1),
		W(SSE_HEAD "35\r\nevent: message\ndata: {\"method\":\"a\",\"jsonrpc\":\"2.0\"}\n\n\r\n"
			   "35\r\nevent: message\ndata: {\"metho",
		  2),
		GAP(MSD_DIR_WRITE),
		W("\"jsonrpc\":\"2.0\"}\n\n\r\n35\r\nevent: message\ndata: {\"method\":\"c\",\"jsonrpc\":\"2.0\"}\n\n\r\n", 3),
		CLOSE(4),
	};
	struct http_stats st = run_every_split(steps, 5, &o, &g, no_secrets);

	assert_int_equal(g.npl, 2);
	assert_string_equal(g.pl[0].data, "{\"method\":\"a\",\"jsonrpc\":\"2.0\"}");
	assert_string_equal(g.pl[1].data, "{\"method\":\"c\",\"jsonrpc\":\"2.0\"}");
	assert_int_equal(g.pl[1].seq, 1);
	assert_int_equal(st.sse_discarded, 1);
	assert_int_equal(st.resyncs, 1);
	assert_int_equal(g.nends, 1);
	assert_true(g.ends[0].flags & HTTP_EX_RESPONSE_GAP);
	assert_int_equal(g.ends[0].end, HTTP_END_CLOSED);
	got_free(&g);
}

/* After a gap no boundary for HTTP_RESYNC_MAX bytes: the connection is given up as lost. */
static void test_gap_then_no_boundary(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct http_conn *c;
	struct got g;
	char junk[4096];

	memset(junk, 'z', sizeof(junk));
	got_init(&g);
	c = http_conn_new(&o, &callbacks, &g);
	http_conn_feed(c, MSD_DIR_READ, "POST /mcp HTTP/1.1\r\nMcp-Method: ping\r\nContent-Length: 9999999\r\n\r\n{", 66, 1);
	http_conn_gap(c, MSD_DIR_READ, 10);
	for (size_t n = 0; n <= HTTP_RESYNC_MAX; n += sizeof(junk))
		http_conn_feed(c, MSD_DIR_READ, junk, sizeof(junk), 2);
	assert_int_equal(http_conn_verdict(c), HTTP_LOST);
	assert_int_equal(g.nverdicts, 2);
	assert_int_equal(g.nends, 1);
	assert_int_equal(g.ends[0].end, HTTP_END_ABANDONED);
	http_conn_free(c);
	got_free(&g);
}

/* Joined mid-stream (attached to a running process): each direction waits for a boundary;
 * an event stream already open is picked up at its next chunk. */
static void test_midstream_join(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		W("ta\": {\"progress\":1}}\n\n\r\n", 1),
		W("5c\r\nevent: message\nid: 7\ndata: {\"method\":\"notifications/progress\",\"jsonrpc\":\"2.0\",\"params\":{}}"
		  "\n\n\r\n",
		  2),
		R("POST /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\nContent-Type: application/json\r\nContent-Length: 37\r\n\r\n"
		  "{\"method\":\"x\",\"jsonrpc\":\"2.0\",\"id\":1}",
		  3),
		W("0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n"
		  "{\"result\":{},\"jsonrpc\":\"2.0\",\"id\":1}",
		  4),
	};

	o.from_start = false;
	run_every_split(steps, 4, &o, &g, no_secrets);
	assert_int_equal(g.npl, 3);
	assert_int_equal(g.pl[0].source, HTTP_SRC_SSE_EVENT);
	assert_string_equal(g.pl[0].id, "7");
	assert_int_equal(g.pl[0].seq, 0);
	assert_int_equal(g.pl[1].seq, 1);
	assert_int_equal(g.pl[2].seq, 1);
	assert_int_equal(g.pl[2].status, 200);
	assert_int_equal(g.nends, 2);
	assert_true(g.ends[0].flags & HTTP_EX_MIDSTREAM);
	got_free(&g);
}

/* Joined mid-stream, lines that start like requests but fail: nothing is learnt from them
 * (not the role either), however the bytes are cut. */
static void test_midstream_false_starts(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		{ OP_DATA, MSD_DIR_READ, "PATCH Ac\xff\xff", 10, 1 },
		W("PUT \n8\r\n: x\n\n\r\n", 2),
	};
	struct http_stats st;

	o.from_start = false;
	st = run_every_split(steps, 2, &o, &g, no_secrets);
	assert_int_equal(g.npl + g.requests + g.responses, 0);
	assert_int_equal(st.parse_errors, 2);
	got_free(&g);
}

/* Not HTTP at all: set aside at the first bytes, once, and nothing is ever reported. */
static void test_not_http(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t n;
		enum msd_dir dir;
	} cases[] = {
		{ "*1\r\n$4\r\nPING\r\n", 14, MSD_DIR_WRITE },                       /* Redis */
		{ "\x00\x00\x00\x08\x04\xd2\x16\x2f", 8, MSD_DIR_WRITE },            /* PostgreSQL SSLRequest */
		{ "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, MSD_DIR_WRITE }, /* TLS ClientHello */
		{ "hello\n", 6, MSD_DIR_READ },                                      /* an echo protocol */
		{ "GET key\r\n", 9, MSD_DIR_WRITE },                                 /* Redis inline */
		{ "J\x00\x00\x00\x0a" "8.0.36\x00", 12, MSD_DIR_READ },             /* MySQL greeting */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct http_opts o = opts();
		struct http_conn *c;
		struct http_stats st;
		struct got g;

		got_init(&g);
		c = http_conn_new(&o, &callbacks, &g);
		http_conn_feed(c, cases[i].dir, cases[i].s, cases[i].n, 1);
		assert_int_equal(http_conn_verdict(c), HTTP_NOT_HTTP);
		for (int k = 0; k < 100; k++)
			http_conn_feed(c, (enum msd_dir)(k & 1), "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n", 37, 2);
		http_conn_close(c, 3);
		http_conn_stats(c, &st);
		assert_true(st.ignored_bytes >= 3700 && st.ignored_bytes <= 3700 + cases[i].n);
		assert_int_equal(g.nverdicts, 1);
		assert_int_equal(g.npl, 0);
		assert_int_equal(g.requests + g.responses + g.nends, 0);
		assert_int_equal(http_conn_memory(c), http_conn_memory(c));
		http_conn_free(c);
		got_free(&g);
	}
}

/* Joined mid-stream, a protocol that never shows an HTTP boundary: not HTTP after the budget. */
static void test_not_http_midstream(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct http_conn *c;
	struct got g;
	char line[64];

	o.from_start = false;
	got_init(&g);
	c = http_conn_new(&o, &callbacks, &g);
	for (size_t n = 0; n <= HTTP_RESYNC_MAX; n += 32) {
		snprintf(line, sizeof(line), "$%-28zu\r\n", n);
		http_conn_feed(c, MSD_DIR_READ, line, 32, 1);
	}
	assert_int_equal(http_conn_verdict(c), HTTP_NOT_HTTP);
	assert_int_equal(g.npl + g.requests + g.responses, 0);
	http_conn_free(c);
	got_free(&g);
}

/* HTTP without JSON-RPC (an upstream JSON API, an HTML page): set aside after a few
 * exchanges; its JSON never becomes a payload, and what follows is not looked at. */
static void test_not_mcp(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct http_conn *c;
	struct http_stats st;
	struct got g;
	const char *req = "GET /api/users/1 HTTP/1.1\r\nHost: api.internal\r\n\r\n";
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n"
			   "{\"id\":1,\"name\":\"ada\",\"x\":1}";
	const char *html = "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n<p>no</p>";

	got_init(&g);
	c = http_conn_new(&o, &callbacks, &g);
	for (int i = 0; i < HTTP_CLASSIFY_EXCHANGES; i++) {
		http_conn_feed(c, MSD_DIR_WRITE, req, strlen(req), 1);
		http_conn_feed(c, MSD_DIR_READ, i == 1 ? html : resp, strlen(i == 1 ? html : resp), 2);
	}
	assert_int_equal(http_conn_verdict(c), HTTP_NOT_MCP);
	assert_int_equal(http_conn_role(c), HTTP_ROLE_CLIENT);
	http_conn_feed(c, MSD_DIR_READ, "{\"jsonrpc\":\"2.0\"}", 17, 3);
	http_conn_stats(c, &st);
	assert_int_equal(st.not_jsonrpc, HTTP_CLASSIFY_EXCHANGES - 1);
	assert_int_equal(st.skipped_bodies, 1);
	assert_int_equal(st.ignored_bytes, 17);
	assert_int_equal(g.npl, 0);
	assert_int_equal(g.nverdicts, 1);
	http_conn_free(c);
	got_free(&g);
}

/* A malformed request on an MCP connection: counted, and the next request is read. */
static void test_parse_error_resyncs(void **state)
{
	(void)state;
	struct http_opts o = opts();
	struct got g;
	const struct step steps[] = {
		R("POST /mcp HTTP/1.1\r\nMcp-Session-Id: s\r\nContent-Length: 2\r\n\r\n{}", 1),
		W("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", 2),
		R("POST /mcp HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 3),
		R("POST /mcp HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n"
		  "{\"method\":\"b\",\"jsonrpc\":\"2.0\"}",
		  4),
	};
	struct http_stats st = run_every_split(steps, 4, &o, &g, no_secrets);

	assert_int_equal(st.parse_errors, 1);
	assert_int_equal(st.resyncs, 1);
	assert_int_equal(g.npl, 1);
	assert_int_equal(g.pl[0].seq, 2);
	got_free(&g);
}

/* ------------------------------------------------------------------ recordings */

#define REC_MAX_CONNS 64
#define LOG_MAX 256

/* What the client logged (NAME.client.jsonl). */
struct client_log {
	json_t *msgs[LOG_MAX]; /* sent and received JSON-RPC messages */
	bool sent[LOG_MAX], used[LOG_MAX];
	int nmsgs;
	json_t *http[LOG_MAX]; /* its HTTP requests */
	bool http_used[LOG_MAX];
	int nhttp;
	char endpoint[256];
};

static json_t *load_line(const char *line)
{
	json_error_t err;
	json_t *o = json_loads(line, 0, &err);

	if (!o)
		fail_msg("bad JSON line: %s: %s", err.text, line);
	return o;
}

static FILE *open_data(const char *name, const char *suffix)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "tests/data/http/%s.%s.jsonl", name, suffix);
	f = fopen(path, "r");
	if (!f)
		fail_msg("cannot open %s: run from the repository root (tests/run.sh does)", path);
	return f;
}

static void client_log_load(struct client_log *l, const char *name)
{
	FILE *f = open_data(name, "client");
	char *line = NULL;
	size_t cap = 0;

	memset(l, 0, sizeof(*l));
	while (getline(&line, &cap, f) > 0) {
		json_t *o = load_line(line), *v;

		if ((v = json_object_get(o, "send")) || (v = json_object_get(o, "recv"))) {
			assert_true(l->nmsgs < LOG_MAX);
			l->sent[l->nmsgs] = json_object_get(o, "send") != NULL;
			l->msgs[l->nmsgs++] = json_incref(v);
		} else if ((v = json_object_get(o, "http"))) {
			assert_true(l->nhttp < LOG_MAX);
			l->http[l->nhttp++] = json_incref(v);
		} else if ((v = json_object_get(o, "endpoint"))) {
			snprintf(l->endpoint, sizeof(l->endpoint), "%s", json_string_value(v));
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
}

static void client_log_free(struct client_log *l)
{
	for (int i = 0; i < l->nmsgs; i++)
		json_decref(l->msgs[i]);
	for (int i = 0; i < l->nhttp; i++)
		json_decref(l->http[i]);
}

/* Replays NAME.rec.jsonl as seen by the server (it read c2s) or by the client (it read
 * s2c): one connection per recorded connection, chunks in recorded order with their
 * times, a side's end as EOF, every connection closed at the end. */
static void replay(const char *name, enum http_role as, enum split split, struct got *g)
{
	struct http_opts o = opts();
	struct http_conn *conns[REC_MAX_CONNS] = { 0 };
	FILE *f = open_data(name, "rec");
	char *line = NULL;
	size_t cap = 0;
	uint64_t last = 0;

	got_init(g);
	while (getline(&line, &cap, f) > 0) {
		json_t *rec = load_line(line);
		json_int_t id = json_integer_value(json_object_get(rec, "c"));
		const char *d = json_string_value(json_object_get(rec, "d"));
		const char *b64 = json_string_value(json_object_get(rec, "b"));
		uint64_t t = (uint64_t)json_integer_value(json_object_get(rec, "t"));
		enum msd_dir dir = d && (strcmp(d, "c2s") == 0) == (as == HTTP_ROLE_SERVER) ? MSD_DIR_READ : MSD_DIR_WRITE;

		assert_true(id > 0 && id < REC_MAX_CONNS);
		g->conn = (void *)(intptr_t)id;
		last = t;
		if (json_is_true(json_object_get(rec, "open"))) {
			conns[id] = http_conn_new(&o, &callbacks, g);
			assert_non_null(conns[id]);
		} else if (json_is_true(json_object_get(rec, "fin"))) {
			http_conn_eof(conns[id], dir, t);
		} else {
			size_t n = strlen(b64);
			unsigned char *data = malloc(n);
			int len = b64_pton(b64, data, n);

			assert_true(len > 0);
			if (split == SPLIT_BYTES) {
				for (int k = 0; k < len; k++)
					http_conn_feed(conns[id], dir, data + k, 1, t);
			} else {
				http_conn_feed(conns[id], dir, data, (size_t)len, t);
			}
			free(data);
		}
		json_decref(rec);
	}
	free(line);
	fclose(f);
	for (int i = 0; i < REC_MAX_CONNS; i++) {
		if (!conns[i])
			continue;
		g->conn = (void *)(intptr_t)i;
		http_conn_close(conns[i], last + 1);
		assert_true(http_conn_verdict(conns[i]) == HTTP_MCP || http_conn_verdict(conns[i]) == HTTP_UNDECIDED);
		if (http_conn_verdict(conns[i]) == HTTP_MCP)
			assert_int_equal(http_conn_role(conns[i]), as);
		http_conn_free(conns[i]);
	}
}

/* Every JSON-RPC message the client sent or received is exactly one payload, in the right
 * direction, and every HTTP request it made is exactly one exchange, with its status. */
static void check_against_client(struct got *g, struct client_log *l, enum http_role as)
{
	for (int i = 0; i < g->npl; i++) {
		struct got_payload *p = &g->pl[i];
		bool client_wrote = (p->dir == MSD_DIR_WRITE) == (as == HTTP_ROLE_CLIENT);
		json_error_t err;
		json_t *m;
		int k;

		assert_false(p->oversized);
		m = json_loadb(p->data, p->len, 0, &err);
		if (!m)
			fail_msg("payload %d is not JSON: %s", i, p->data);
		for (k = 0; k < l->nmsgs; k++) {
			if (!l->used[k] && l->sent[k] == client_wrote && json_equal(l->msgs[k], m))
				break;
		}
		if (k == l->nmsgs)
			fail_msg("payload %d (%s) is not a message the client %s: %s", i, src_name(p->source),
				 client_wrote ? "sent" : "received", p->data);
		l->used[k] = true;
		json_decref(m);
	}
	for (int k = 0; k < l->nmsgs; k++) {
		if (!l->used[k]) {
			char *s = json_dumps(l->msgs[k], JSON_COMPACT);

			fail_msg("the client %s a message no payload carried: %s", l->sent[k] ? "sent" : "received", s);
		}
	}
	for (int i = 0; i < g->nends; i++) {
		const struct http_exchange *ex = &g->ends[i];
		int k;

		for (k = 0; k < l->nhttp; k++) {
			json_t *h = l->http[k];
			json_t *status = json_object_get(h, "status");

			if (l->http_used[k] || strcmp(json_string_value(json_object_get(h, "method")), ex->method) != 0 ||
			    strcmp(json_string_value(json_object_get(h, "path")), ex->target) != 0)
				continue;
			if (status ? (json_int_t)ex->status == json_integer_value(status) : ex->status == 0)
				break;
		}
		if (k == l->nhttp)
			fail_msg("exchange #%llu %s %s %u (%s) is not a request the client made",
				 (unsigned long long)ex->seq, ex->method, ex->target, ex->status, http_end_name(ex->end));
		l->http_used[k] = true;
	}
	assert_int_equal(g->nends, l->nhttp);
}

static const struct http_exchange *find_end(const struct got *g, const char *method, unsigned status, int nth)
{
	for (int i = 0; i < g->nends; i++) {
		if (strcmp(g->ends[i].method, method) == 0 && g->ends[i].status == status && nth-- == 0)
			return &g->ends[i];
	}
	fail_msg("no exchange %s %u", method, status);
	return NULL;
}

/* The payload whose text contains needle. */
static const struct got_payload *find_payload(const struct got *g, const char *needle)
{
	for (int i = 0; i < g->npl; i++) {
		if (strstr(g->pl[i].data, needle))
			return &g->pl[i];
	}
	fail_msg("no payload with %s", needle);
	return NULL;
}

/* Decodes a recording from both ends, whole and byte by byte, checks it against the
 * client's log, and leaves the server's view in g. */
static void decode_recording(const char *name, struct got *g)
{
	struct client_log l;
	struct got h;

	client_log_load(&l, name);
	replay(name, HTTP_ROLE_SERVER, SPLIT_NONE, g);
	check_against_client(g, &l, HTTP_ROLE_SERVER);
	client_log_free(&l);

	client_log_load(&l, name);
	replay(name, HTTP_ROLE_CLIENT, SPLIT_NONE, &h);
	check_against_client(&h, &l, HTTP_ROLE_CLIENT);
	client_log_free(&l);
	got_free(&h);

	replay(name, HTTP_ROLE_SERVER, SPLIT_BYTES, &h);
	assert_string_equal(got_text(&h), got_text(g));
	got_free(&h);
}

/* Streamable HTTP with the SDK: a session, SSE responses to POSTs, progress before the
 * result, a sampling request answered by a POSTed response, DELETE, and after it an unknown
 * session (server-everything: 400 with a JSON-RPC error) and an unknown path (404 HTML). */
static void test_recorded_streamable(void **state)
{
	(void)state;
	struct got g;
	const struct got_payload *call, *progress, *result, *sampling, *answer;
	const struct http_exchange *init, *del;

	decode_recording("streamable", &g);
	init = find_end(&g, "POST", 200, 0);
	assert_true(init->sse);
	assert_string_equal(init->resp.content_type, "text/event-stream");
	assert_true(init->resp.session_id[0]);
	assert_true(init->last_event_id[0]); /* the priming event */
	for (int i = 0; i < g.nends; i++) {
		if (&g.ends[i] != init && strcmp(g.ends[i].target, "/mcp") == 0)
			assert_string_equal(g.ends[i].req.session_id, init->resp.session_id);
		assert_true(g.ends[i].end == HTTP_END_COMPLETE || (g.ends[i].sse && g.ends[i].end == HTTP_END_CLOSED));
	}
	del = find_end(&g, "DELETE", 200, 0);
	assert_string_equal(del->req.session_id, init->resp.session_id);
	find_end(&g, "POST", 202, 1);
	find_end(&g, "POST", 400, 0);
	find_end(&g, "POST", 404, 0);
	find_end(&g, "GET", 200, 0);
	/* The long-running tool: its progress and its result are events of its POST's stream,
	 * after the response head, the result last. */
	call = find_payload(&g, "\"method\":\"tools/call\",\"params\":{\"name\":\"trigger-long-running-operation\"");
	progress = find_payload(&g, "\"method\":\"notifications/progress\"");
	result = find_payload(&g, "Long running operation completed");
	assert_int_equal(progress->source, HTTP_SRC_SSE_EVENT);
	assert_int_equal(result->source, HTTP_SRC_SSE_EVENT);
	assert_true(progress->conn == call->conn && progress->seq == call->seq);
	assert_true(result->conn == call->conn && result->seq == call->seq);
	assert_true(result->ts_first > progress->ts_last);
	for (int i = 0; i < g.nends; i++) {
		if (g.end_conn[i] == call->conn && g.ends[i].seq == call->seq)
			assert_true(g.ends[i].ts_resp_head < progress->ts_first);
	}
	/* The server's sampling request rides on the tool call's stream; the client's answer is
	 * a POST of its own, accepted with 202. */
	sampling = find_payload(&g, "sampling/createMessage");
	assert_int_equal(sampling->dir, MSD_DIR_WRITE);
	answer = find_payload(&g, "sampled reply");
	assert_int_equal(answer->dir, MSD_DIR_READ);
	assert_int_equal(answer->source, HTTP_SRC_REQUEST_BODY);
	assert_non_null(strstr(got_text(&g), "-32601"));
	got_free(&g);
}

/* The legacy transport: the endpoint event names the session; every POST gets 202 and every
 * response arrives on the GET stream; a POST nobody answers ends cancelled by the close. */
static void test_recorded_sse(void **state)
{
	(void)state;
	struct got g;
	struct client_log l;
	const struct http_exchange *get;
	const struct got_payload *listed;
	int on_get = 0;

	client_log_load(&l, "sse");
	decode_recording("sse", &g);
	assert_int_equal(g.endpoints, 1);
	assert_non_null(strstr(got_text(&g), l.endpoint));
	get = find_end(&g, "GET", 200, 0);
	assert_true(get->sse);
	assert_string_equal(get->target, "/sse");
	for (int i = 0; i < g.nends; i++) {
		if (strcmp(g.ends[i].method, "POST") == 0 && g.ends[i].status == 202)
			assert_non_null(strstr(l.endpoint, strchr(g.ends[i].target, '=') + 1));
	}
	for (int i = 0; i < g.npl; i++) {
		if (g.pl[i].dir == MSD_DIR_WRITE) {
			assert_string_equal(g.pl[i].method, "GET");
			on_get++;
		}
	}
	assert_true(on_get >= 6);
	listed = find_payload(&g, "\"tools\":[");
	assert_int_equal(listed->source, HTTP_SRC_SSE_EVENT);
	assert_string_equal(listed->event, "message");
	assert_int_equal(find_end(&g, "POST", 0, 0)->end, HTTP_END_CANCELLED);
	client_log_free(&l);
	got_free(&g);
}

/* The POST's stream is cut after two progress events: the SDK comes back with GET and
 * Last-Event-ID, on another connection, and the result arrives there. */
static void test_recorded_resume(void **state)
{
	(void)state;
	struct got g;
	const struct got_payload *call, *result;
	const struct http_exchange *cut = NULL, *resumed = NULL;

	decode_recording("resume", &g);
	call = find_payload(&g, "\"method\":\"tools/call\",\"params\":{\"name\":\"trigger-long-running-operation\"");
	result = find_payload(&g, "Long running operation completed");
	for (int i = 0; i < g.nends; i++) {
		if (g.end_conn[i] == call->conn && g.ends[i].seq == call->seq)
			cut = &g.ends[i];
		if (g.end_conn[i] == result->conn && g.ends[i].seq == result->seq)
			resumed = &g.ends[i];
	}
	assert_non_null(cut);
	assert_non_null(resumed);
	assert_int_equal(cut->end, HTTP_END_CLOSED);
	assert_true(result->conn != call->conn);
	assert_string_equal(resumed->method, "GET");
	assert_string_equal(resumed->req.last_event_id, cut->last_event_id);
	assert_int_equal(result->source, HTTP_SRC_SSE_EVENT);
	got_free(&g);
}

/* Behind a compressing proxy: gzip SSE streams and JSON bodies, one deflate body. */
static void test_recorded_gzip(void **state)
{
	(void)state;
	struct got g;
	int gzip = 0;

	decode_recording("gzip", &g);
	for (int i = 0; i < g.nends; i++)
		gzip += strcmp(g.ends[i].resp.content_encoding, "gzip") == 0;
	assert_true(gzip >= 10);
	assert_string_equal(find_end(&g, "POST", 400, 1)->resp.content_encoding, "deflate");
	assert_non_null(find_payload(&g, "Long running operation completed"));
	got_free(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_post_json_every_split),
		cmocka_unit_test(test_client_role),
		cmocka_unit_test(test_pipelining_head_202),
		cmocka_unit_test(test_sse_every_split),
		cmocka_unit_test(test_sse_legacy_endpoint),
		cmocka_unit_test(test_sse_stream_closed_and_request_cancelled),
		cmocka_unit_test(test_gzip_and_deflate_bodies),
		cmocka_unit_test(test_gzip_sse),
		cmocka_unit_test(test_gzip_corrupt_tail),
		cmocka_unit_test(test_gzip_bomb),
		cmocka_unit_test(test_inflate_error_and_unsupported_encoding),
		cmocka_unit_test(test_continue_204_304),
		cmocka_unit_test(test_upgrade_sets_aside),
		cmocka_unit_test(test_oversized_body),
		cmocka_unit_test(test_jsonrpc_judged_on_head_and_tail),
		cmocka_unit_test(test_secret_headers_never_stored),
		cmocka_unit_test(test_mcp_headers_and_name),
		cmocka_unit_test(test_bounds),
		cmocka_unit_test(test_cut_inside_bodies),
		cmocka_unit_test(test_cut_at_data_start),
		cmocka_unit_test(test_cut_across_chunks_is_a_gap),
		cmocka_unit_test(test_gap_in_request),
		cmocka_unit_test(test_gap_in_sse_resumes),
		cmocka_unit_test(test_gap_then_no_boundary),
		cmocka_unit_test(test_midstream_join),
		cmocka_unit_test(test_midstream_false_starts),
		cmocka_unit_test(test_not_http),
		cmocka_unit_test(test_not_http_midstream),
		cmocka_unit_test(test_not_mcp),
		cmocka_unit_test(test_parse_error_resyncs),
		cmocka_unit_test(test_recorded_streamable),
		cmocka_unit_test(test_recorded_sse),
		cmocka_unit_test(test_recorded_resume),
		cmocka_unit_test(test_recorded_gzip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

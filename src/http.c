/* http.c -- HTTP/1.1 and SSE decoding of one connection (see http.h).
 *
 * The parser is http-parser 2.9.4, from Debian's libhttp-parser-dev: Node.js's HTTP/1.1
 * parser until llhttp replaced it (Debian does not package llhttp). It is the maintained
 * parser the distribution ships, and it fits an observer: a push parser that holds no
 * buffer of its own (its callbacks point into the bytes fed, so a chunk may end anywhere and
 * no header value is copied unless we copy it), and it already gets right what must not be
 * hand-written: chunked framing and trailers, Content-Length, bodies delimited by the
 * close, HEAD/1xx/204/304 responses without bodies, Upgrade and CONNECT. zlib inflates
 * gzip and deflate bodies; sse.c parses event streams.
 *
 * Invariants:
 * - One side per direction. A side is parsing (http-parser in or between messages),
 *   resynchronising (after a gap, an error, or when the connection was not seen from its
 *   start: looking at line starts for a request line, a status line, or, inside a chunked
 *   event stream, a chunk that begins an SSE line), or done.
 * - A request's exchange is queued when its head is complete; a final response head takes
 *   the oldest queued request whose head started before the response did (pipelining
 *   order; a response never answers a request that came after it), its headers read until
 *   then into the side's own scratch copy. After a gap in the responses the newest such
 *   request is taken and older ones are lost: the lost bytes answered them.
 * - Nothing depends on how the bytes were chunked: state kept across callbacks is only
 *   changed by what http-parser has accepted (the role is learnt from a complete head),
 *   and a payload is judged on what is handed over, not on what happened to be buffered.
 * - An exchange is freed when nothing refers to it: not queued, its request and response
 *   both finished. Every exchange reported (REQUEST or RESPONSE phase) gets one END.
 * - A final verdict (set-aside) frees every buffer at the end of the call that reached it;
 *   callbacks that run after it inside http-parser return an error so parsing stops.
 * - Only the header values listed in struct http_headers are copied, each bounded. A secret
 *   header's value goes nowhere: its name is matched, its value callbacks are not looked at.
 */
#include <ctype.h>
#include <http_parser.h>
#include <resolv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "mcpsonde/http.h"
#include "mcpsonde/sse.h"

#define HTTP_MAX_ERRORS 8       /* parse errors in a row before the peer is given up */
#define HTTP_LINE_PREFIX_MAX 24 /* bytes of a line start looked at while resynchronising */
#define HTTP_INFLATE_RATIO_FLOOR (1u << 20)
#define PBUF_INITIAL_CAP 4096
#define PBUF_KEEP_CAP (64 * 1024) /* a payload buffer larger than this is freed after use */
#define ZLIB_STATE_BYTES (7 * 1024 + (1 << 15)) /* inflate state and window, for accounting */

enum side_mode { SIDE_PARSE, SIDE_RESYNC, SIDE_DONE };
enum body_kind { BODY_NONE, BODY_JSON, BODY_JSON_SNIFF, BODY_SSE, BODY_SKIP };
enum z_state { Z_NONE, Z_ACTIVE, Z_ENDED, Z_FAILED };
enum hstate { H_NONE, H_NAME, H_VALUE };
enum cand { CAND_NO, CAND_MAYBE, CAND_REQUEST, CAND_RESPONSE, CAND_SSE };

enum hdr_slot {
	SLOT_NONE,
	SLOT_SECRET,
	SLOT_CONTENT_TYPE,
	SLOT_CONTENT_ENCODING,
	SLOT_SESSION_ID,
	SLOT_PROTOCOL_VERSION,
	SLOT_MCP_METHOD,
	SLOT_MCP_NAME,
	SLOT_LAST_EVENT_ID,
	SLOT_ACCEPT,
	SLOT_HOST,
};

/* A JSON body or an event's data: whole up to max, else head in buf and the last bytes in
 * a sliding window of 2 * edge (as frame.c keeps an oversized line). */
struct pbuf {
	char *buf;
	size_t len, cap;
	char *tail;
	size_t tail_len;
	uint64_t wire_len, ts_first, ts_last;
	bool oversized;
	bool cut;   /* bytes were cut out: the head is closed, the window holds what came after */
	bool nomem; /* an allocation failed: the payload is dropped when complete */
};

struct http_ex {
	struct http_exchange pub; /* first: the callbacks get &pub */
	bool queued;              /* awaiting its final response head */
	bool req_active;          /* its request is still being parsed */
	bool resp_active;         /* its response is being parsed (head seen, end not) */
	bool reported;            /* REQUEST or RESPONSE was reported: END will be */
	bool response_gap;        /* the response side lost bytes while it waited: its
				   * response may have been among them */
};

struct http_side {
	struct http_conn *conn;
	enum msd_dir dir;
	uint8_t mode;       /* enum side_mode */
	http_parser parser;
	bool synthetic;     /* a made-up head is being fed to enter a chunked body: no callbacks */
	bool cutting;       /* filler stands for bytes cut out of a body: counted, not decoded */
	bool in_chunk;      /* inside the data of a chunk (content_length: what is left of it) */
	bool after_gap;     /* responses: the next one pairs with the newest request */
	unsigned errors;    /* parse errors since the last complete message */
	uint64_t ts;        /* the syscall whose bytes are being parsed */
	bool last_nl;       /* the last byte parsed was a newline: the next may begin a message */
	/* the message being parsed */
	bool in_message;
	bool opened;        /* its exchange is known (set on the first callback that knows) */
	bool head_done;
	bool informational; /* a 1xx response */
	uint64_t ts_first;
	bool request;       /* a request (else a response) */
	struct http_ex *ex; /* requests: from the request line; responses: from the head's end */
	struct http_headers *hdr;
	struct http_headers resp_hdr; /* a response's headers until it is paired */
	uint8_t hstate;     /* enum hstate */
	char name[HTTP_NAME_MAX];
	size_t name_len;
	uint8_t slot;       /* enum hdr_slot of the current header */
	bool slot_skip;     /* a repeated kept header (the first one stays), or one cut */
	size_t slot_len;    /* bytes of its value kept */
	/* its body */
	uint8_t body;       /* enum body_kind */
	bool body_dead;     /* undecodable (bomb, inflate error): nothing more is delivered */
	z_stream *z;
	uint8_t z_state;    /* enum z_state */
	bool z_deflate, z_raw_tried;
	uint64_t z_in, z_out;
	unsigned char z_head[16]; /* the first compressed bytes, to retry them as raw deflate */
	struct pbuf pb;
	struct sse_parser sse;
	/* resynchronising: the start of the current line, while it may still be a boundary */
	char lp[HTTP_LINE_PREFIX_MAX];
	size_t lp_len;
	bool lp_dead;       /* the current line is no boundary: skip to its end */
	bool resume_sse;    /* a chunk starting an SSE line is a boundary too */
	uint64_t resync_scanned;
};

struct http_conn {
	struct http_opts opts;
	struct http_callbacks cb;
	void *ctx;
	enum http_role role;
	enum http_verdict verdict;
	bool settled; /* set aside and freed */
	bool closed;
	bool http_seen; /* a message head was parsed */
	uint64_t seq;
	uint64_t classify_exchanges, classify_bytes;
	struct http_ex *pending[HTTP_MAX_PENDING]; /* FIFO, oldest first */
	unsigned npending;
	unsigned nexchanges; /* allocated */
	struct http_side side[2];
	struct http_stats stats;
};

static const http_parser_settings http_settings;

/* ------------------------------------------------------------------ small helpers */

static bool conn_ignored(const struct http_conn *c)
{
	return http_verdict_final(c->verdict);
}

static void conn_verdict(struct http_conn *c, enum http_verdict v)
{
	if (c->verdict == v || conn_ignored(c))
		return;
	c->verdict = v;
	if (c->cb.on_verdict)
		c->cb.on_verdict(c->ctx, v);
}

/* Whether this side carries requests (meaningful once the role is known). */
static bool side_requests(const struct http_side *s)
{
	return (s->dir == MSD_DIR_READ) == (s->conn->role == HTTP_ROLE_SERVER);
}

static bool side_may_respond(const struct http_side *s)
{
	return s->conn->role == HTTP_ROLE_UNKNOWN || !side_requests(s);
}

/* The http-parser type this side's messages have: known once the role is. */
static enum http_parser_type side_type(const struct http_side *s)
{
	if (s->conn->role == HTTP_ROLE_UNKNOWN)
		return HTTP_BOTH;
	return side_requests(s) ? HTTP_REQUEST : HTTP_RESPONSE;
}

static void copy_cut(char *dst, size_t cap, const char *src, size_t n, uint64_t *cut)
{
	if (n >= cap) {
		n = cap - 1;
		(*cut)++;
	}
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Whether word is in s[0..n): for short strings, where memmem's setup costs more than it
 * saves (header names are looked at on every message). */
static bool contains(const char *s, size_t n, const char *word)
{
	size_t w = strlen(word);
	const char *p = s, *end = s + n;

	while (w <= (size_t)(end - p) && (p = memchr(p, word[0], (size_t)(end - p) - w + 1))) {
		if (memcmp(p, word, w) == 0)
			return true;
		p++;
	}
	return false;
}

static bool contains_ci(const char *s, size_t n, const char *word)
{
	size_t w = strlen(word);

	for (size_t i = 0; i + w <= n; i++) {
		if (strncasecmp(s + i, word, w) == 0)
			return true;
	}
	return false;
}

/* The media type without parameters, compared case-insensitively. */
static bool media_is(const char *v, const char *type)
{
	size_t n = strcspn(v, ";");

	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return strlen(type) == n && strncasecmp(v, type, n) == 0;
}

static bool media_is_json(const char *v)
{
	size_t n = strcspn(v, ";");

	while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		n--;
	return media_is(v, "application/json") || (n > 5 && strncasecmp(v + n - 5, "+json", 5) == 0);
}

/* ------------------------------------------------------------------ redaction */

static bool secret_word(const char *s, size_t n)
{
	static const char *const words[] = { "token", "key", "secret", "auth", "password" };

	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (contains_ci(s, n, words[i]))
			return true;
	}
	return false;
}

/* Rewrites a target or URL in place: user:password@ and the values of query parameters
 * with secret-sounding names become REDACTED. The bytes past the new end are zeroed, so no
 * secret stays behind in the buffer. */
static void url_redact(char *t, size_t cap)
{
	char out[HTTP_TARGET_MAX * 2];
	size_t o = 0, i = 0, n = strlen(t);
	const char *scheme = strstr(t, "://");
	const char *query = strchr(t, '?');

#define OUT(p, k)                                                   \
	do {                                                        \
		size_t k_ = (k) < sizeof(out) - 1 - o ? (k) : sizeof(out) - 1 - o; \
		memcpy(out + o, (p), k_);                           \
		o += k_;                                            \
	} while (0)

	if (scheme && (!query || scheme < query)) {
		size_t a = (size_t)(scheme - t) + 3;
		size_t alen = strcspn(t + a, "/?#");
		const char *at = memrchr(t + a, '@', alen);

		if (at) {
			OUT(t, a);
			OUT("REDACTED", 8);
			i = (size_t)(at - t);
		}
	}
	if (query) {
		size_t q = (size_t)(query - t) + 1;

		OUT(t + i, q - i);
		i = q;
		while (i < n && t[i] != '#') {
			size_t plen = strcspn(t + i, "&#");
			const char *eq = memchr(t + i, '=', plen);

			if (eq && secret_word(t + i, (size_t)(eq - (t + i)))) {
				OUT(t + i, (size_t)(eq - (t + i)) + 1);
				OUT("REDACTED", 8);
			} else {
				OUT(t + i, plen);
			}
			i += plen;
			if (i < n && t[i] == '&') {
				OUT("&", 1);
				i++;
			}
		}
	}
	OUT(t + i, n - i);
#undef OUT
	if (o >= cap)
		o = cap - 1;
	memcpy(t, out, o);
	memset(t + o, 0, cap - o);
}

/* ------------------------------------------------------------------ payload buffer */

static size_t pbuf_edge(size_t max)
{
	return max < FRAME_EDGE_BYTES ? max : FRAME_EDGE_BYTES;
}

static void pbuf_clear(struct pbuf *b)
{
	if (b->cap > PBUF_KEEP_CAP) {
		free(b->buf);
		b->buf = NULL;
		b->cap = 0;
	}
	free(b->tail);
	b->tail = NULL;
	b->tail_len = 0;
	b->len = 0;
	b->wire_len = 0;
	b->oversized = false;
	b->cut = false;
	b->nomem = false;
}

static void pbuf_free(struct pbuf *b)
{
	free(b->buf);
	free(b->tail);
	memset(b, 0, sizeof(*b));
}

static bool pbuf_reserve(struct pbuf *b, size_t need, size_t limit)
{
	size_t cap = b->cap ? b->cap : PBUF_INITIAL_CAP;
	char *buf;

	if (need <= b->cap)
		return true;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	buf = realloc(b->buf, cap);
	if (!buf)
		return false;
	b->buf = buf;
	b->cap = cap;
	return true;
}

static void pbuf_window_append(struct pbuf *b, const char *p, size_t n, size_t keep)
{
	if (n >= keep) {
		memcpy(b->tail, p + n - keep, keep);
		b->tail_len = keep;
		return;
	}
	if (b->tail_len + n > 2 * keep) {
		memmove(b->tail, b->tail + b->tail_len - keep, keep);
		b->tail_len = keep;
	}
	memcpy(b->tail + b->tail_len, p, n);
	b->tail_len += n;
}

static void pbuf_stamp(struct pbuf *b, size_t n, uint64_t ts)
{
	if (b->wire_len == 0)
		b->ts_first = ts;
	b->ts_last = ts > b->ts_first ? ts : b->ts_first;
	b->wire_len += n;
}

/* Past max (or cut): keep the head in buf, the end in the window. */
static bool pbuf_enter_oversized(struct pbuf *b, size_t edge, size_t max)
{
	b->tail = malloc(2 * edge);
	if (!b->tail || !pbuf_reserve(b, edge, max)) {
		b->nomem = true;
		return false;
	}
	b->tail_len = 0;
	pbuf_window_append(b, b->buf + (b->len > edge ? b->len - edge : 0), b->len > edge ? edge : b->len, edge);
	if (b->len > edge)
		b->len = edge;
	b->oversized = true;
	return true;
}

static void pbuf_append(struct pbuf *b, const char *p, size_t n, uint64_t ts, size_t max)
{
	size_t edge = pbuf_edge(max);

	if (n == 0)
		return;
	pbuf_stamp(b, n, ts);
	if (b->nomem)
		return;
	if (!b->oversized) {
		if (b->len + n <= max) {
			if (!pbuf_reserve(b, b->len + n, max)) {
				b->nomem = true;
				return;
			}
			memcpy(b->buf + b->len, p, n);
			b->len += n;
			return;
		}
		if (!pbuf_enter_oversized(b, edge, max))
			return;
	}
	if (b->len < edge && !b->cut) {
		size_t k = edge - b->len < n ? edge - b->len : n;

		memcpy(b->buf + b->len, p, k);
		b->len += k;
	}
	pbuf_window_append(b, p, n, edge);
}

/* n bytes were cut out here (not copied by the kernel): the payload goes on across them as
 * an oversized one, its head from before the cut, its tail from after (as frame.c does). */
static void pbuf_cut(struct pbuf *b, size_t n, uint64_t ts, size_t max)
{
	pbuf_stamp(b, n, ts);
	if (b->nomem || (!b->oversized && !pbuf_enter_oversized(b, pbuf_edge(max), max)))
		return;
	b->tail_len = 0;
	b->cut = true;
}

/* The tail handed over: the last edge bytes, or fewer after a cut. */
static size_t pbuf_tail_len(const struct pbuf *b, size_t max)
{
	return b->tail_len < pbuf_edge(max) ? b->tail_len : pbuf_edge(max);
}

static size_t pbuf_memory(const struct pbuf *b, size_t max)
{
	return b->cap + (b->tail ? 2 * pbuf_edge(max) : 0);
}

/* Whether needle is in what would be delivered: the whole payload, or its head and tail
 * (the window may hold more than the tail, depending on how the bytes came). */
static bool pbuf_has(const struct pbuf *b, size_t max, const char *needle)
{
	size_t n = strlen(needle), t = pbuf_tail_len(b, max);

	return memmem(b->buf, b->len, needle, n) || (b->oversized && memmem(b->tail + b->tail_len - t, t, needle, n));
}

/* ------------------------------------------------------------------ exchanges */

static struct http_ex *ex_new(struct http_conn *c)
{
	struct http_ex *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->pub.retry_ms = -1;
	c->nexchanges++;
	return x;
}

static void ex_free(struct http_conn *c, struct http_ex *x)
{
	/* Cut targets may have held a secret query value until redaction. */
	explicit_bzero(x, sizeof(*x));
	free(x);
	c->nexchanges--;
}

static void pending_remove(struct http_conn *c, struct http_ex *x)
{
	for (unsigned i = 0; i < c->npending; i++) {
		if (c->pending[i] == x) {
			memmove(&c->pending[i], &c->pending[i + 1], (c->npending - i - 1) * sizeof(x));
			c->npending--;
			x->queued = false;
			return;
		}
	}
}

static void conn_report(struct http_conn *c, struct http_ex *x, enum http_phase phase)
{
	if (phase == HTTP_PHASE_REQUEST || phase == HTTP_PHASE_RESPONSE)
		x->reported = true;
	if (c->cb.on_exchange)
		c->cb.on_exchange(c->ctx, &x->pub, phase);
}

/* Ends x (with end, unless it already has one) once nothing refers to it. */
static void ex_settle(struct http_conn *c, struct http_ex *x, enum http_end end)
{
	if (end != HTTP_END_NONE && x->pub.end == HTTP_END_NONE)
		x->pub.end = end;
	if (x->queued || x->req_active || x->resp_active)
		return;
	switch (x->pub.end) {
	case HTTP_END_CANCELLED:
		c->stats.cancelled++;
		break;
	case HTTP_END_CLOSED:
		c->stats.closed++;
		break;
	case HTTP_END_LOST:
		c->stats.lost++;
		break;
	default:
		break;
	}
	if (x->reported)
		conn_report(c, x, HTTP_PHASE_END);
	ex_free(c, x);
}

/* The exchange a response that started at ts answers: the oldest queued request that
 * started before it, or after a gap in the responses the newest (older ones are lost). */
static struct http_ex *pending_pick(struct http_conn *c, uint64_t ts, bool newest)
{
	int k = -1;

	for (unsigned i = 0; i < c->npending; i++) {
		if (c->pending[i]->pub.ts_req_first <= ts) {
			k = (int)i;
			if (!newest)
				break;
		}
	}
	if (k < 0)
		return NULL;
	while (k-- > 0) {
		struct http_ex *old = c->pending[0];

		pending_remove(c, old);
		ex_settle(c, old, HTTP_END_LOST);
	}
	return c->pending[0];
}

/* ------------------------------------------------------------------ headers */

struct slot_def {
	const char *name;
	size_t len;
	enum hdr_slot slot;
	size_t off, size;
};

#define SLOT(n, s, f) { n, sizeof(n) - 1, s, offsetof(struct http_headers, f), sizeof(((struct http_headers *)0)->f) }
static const struct slot_def kept_headers[] = {
	SLOT("content-type", SLOT_CONTENT_TYPE, content_type),
	SLOT("content-encoding", SLOT_CONTENT_ENCODING, content_encoding),
	SLOT("mcp-session-id", SLOT_SESSION_ID, session_id),
	SLOT("mcp-protocol-version", SLOT_PROTOCOL_VERSION, protocol_version),
	SLOT("mcp-method", SLOT_MCP_METHOD, mcp_method),
	SLOT("mcp-name", SLOT_MCP_NAME, mcp_name),
	SLOT("last-event-id", SLOT_LAST_EVENT_ID, last_event_id),
	SLOT("accept", SLOT_ACCEPT, accept),
	SLOT("host", SLOT_HOST, host),
};
#undef SLOT

#define SECRET(n, b) { n, sizeof(n) - 1, b }
static const struct {
	const char *name;
	size_t len;
	enum http_secret bit;
} secret_headers[] = {
	SECRET("authorization", HTTP_SECRET_AUTHORIZATION),
	SECRET("proxy-authorization", HTTP_SECRET_PROXY_AUTHORIZATION),
	SECRET("cookie", HTTP_SECRET_COOKIE),
	SECRET("set-cookie", HTTP_SECRET_SET_COOKIE),
};
#undef SECRET

enum http_secret http_header_secret(const char *name, size_t n, bool cut)
{
	for (size_t i = 0; i < sizeof(secret_headers) / sizeof(secret_headers[0]); i++) {
		if (!cut && secret_headers[i].len == n && memcmp(name, secret_headers[i].name, n) == 0)
			return secret_headers[i].bit;
	}
	/* One too long to read whole may hide a secret word past what was kept. */
	if (cut || contains(name, n, "token") || contains(name, n, "key") || contains(name, n, "secret"))
		return HTTP_SECRET_OTHER;
	return 0;
}

static const struct slot_def *slot_def(enum hdr_slot slot)
{
	for (size_t i = 0; i < sizeof(kept_headers) / sizeof(kept_headers[0]); i++) {
		if (kept_headers[i].slot == slot)
			return &kept_headers[i];
	}
	return NULL;
}

static char *slot_value(struct http_headers *h, enum hdr_slot slot, size_t *size)
{
	const struct slot_def *d = slot_def(slot);

	*size = d->size;
	return (char *)h + d->off;
}

/* The header whose name was just read: where its value goes, if anywhere. */
static void header_begin(struct http_side *s)
{
	struct http_conn *c = s->conn;
	struct http_headers *h = s->hdr;
	bool long_name = s->name_len > HTTP_NAME_MAX;
	size_t n = long_name ? HTTP_NAME_MAX : s->name_len;
	enum http_secret bit;

	s->slot = SLOT_NONE;
	s->slot_skip = false;
	s->slot_len = 0;
	if (++h->count > HTTP_MAX_HEADERS) {
		c->stats.headers_over_limit++;
		return;
	}
	if ((bit = http_header_secret(s->name, n, long_name))) {
		h->secrets |= bit;
		s->slot = SLOT_SECRET;
	}
	if (s->slot == SLOT_SECRET) {
		c->stats.secret_headers++;
		return;
	}
	for (size_t i = 0; i < sizeof(kept_headers) / sizeof(kept_headers[0]); i++) {
		if (kept_headers[i].len == n && memcmp(s->name, kept_headers[i].name, n) == 0) {
			size_t size;

			s->slot = kept_headers[i].slot;
			s->slot_skip = slot_value(h, s->slot, &size)[0] != '\0';
			return;
		}
	}
}

static void header_value(struct http_side *s, const char *p, size_t n)
{
	const char *nul = memchr(p, '\0', n);
	size_t size;
	char *v;

	if (s->slot <= SLOT_SECRET || s->slot_skip || n == 0)
		return;
	v = slot_value(s->hdr, s->slot, &size);
	/* A NUL cannot be in a value (RFC 9110): what follows it is dropped, as past the size. */
	if (nul || s->slot_len + n >= size) {
		s->conn->stats.header_values_cut++;
		s->slot_skip = true;
		if (nul)
			n = (size_t)(nul - p);
		if (s->slot_len + n >= size)
			n = size - 1 - s->slot_len;
	}
	memcpy(v + s->slot_len, p, n);
	s->slot_len += n;
	v[s->slot_len] = '\0';
}

static void header_end(struct http_side *s)
{
	size_t size, len;
	char *v;

	if (s->slot <= SLOT_SECRET)
		return;
	/* http-parser drops leading whitespace; trailing whitespace is not part of a value. */
	v = slot_value(s->hdr, s->slot, &size);
	len = strlen(v);
	while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
		v[--len] = '\0';
}

/* Mcp-Name: a value that is not plain ASCII comes as =?base64?<base64 of its UTF-8>?=
 * (markers lowercase, standard alphabet). */
static void headers_decode_mcp_name(struct http_headers *h)
{
	static const char pre[] = "=?base64?", post[] = "?=";
	size_t n = strlen(h->mcp_name), k;
	char enc[sizeof(h->mcp_name)];
	unsigned char dec[sizeof(h->mcp_name)];
	int got;

	if (n < sizeof(pre) - 1 + sizeof(post) - 1 || strncmp(h->mcp_name, pre, sizeof(pre) - 1) != 0 ||
	    strcmp(h->mcp_name + n - (sizeof(post) - 1), post) != 0)
		return;
	k = n - (sizeof(pre) - 1) - (sizeof(post) - 1);
	memcpy(enc, h->mcp_name + sizeof(pre) - 1, k);
	enc[k] = '\0';
	got = b64_pton(enc, dec, sizeof(dec) - 1);
	if (got < 0 || memchr(dec, '\0', (size_t)got)) {
		h->mcp_name_invalid = true;
		return;
	}
	memcpy(h->mcp_name, dec, (size_t)got);
	h->mcp_name[got] = '\0';
	h->mcp_name_encoded = true;
}

static bool headers_show_mcp(const struct http_headers *h)
{
	return h->session_id[0] || h->protocol_version[0] || h->mcp_method[0];
}

/* ------------------------------------------------------------------ payloads */

static void side_deliver(struct http_side *s, enum http_source source, const struct sse_event *ev)
{
	struct http_conn *c = s->conn;
	struct pbuf *b = &s->pb;
	size_t tail = pbuf_tail_len(b, c->opts.max_payload);
	struct http_payload pl = {
		.ex = &s->ex->pub,
		.dir = s->dir,
		.source = source,
		.sse_event = ev ? ev->type : NULL,
		.sse_id = ev ? ev->id : NULL,
	};

	if (b->nomem) {
		c->stats.nomem++;
		return;
	}
	if (!pbuf_has(b, c->opts.max_payload, "\"jsonrpc\"")) {
		c->stats.not_jsonrpc++;
		return;
	}
	conn_verdict(c, HTTP_MCP);
	if (conn_ignored(c))
		return;
	pl.frame = (struct frame){
		.data = b->buf,
		.len = b->len,
		.wire_len = b->wire_len,
		.ts_first_ns = b->ts_first,
		.ts_last_ns = b->ts_last,
		.oversized = b->oversized,
	};
	if (b->oversized) {
		pl.frame.tail = b->tail + b->tail_len - tail;
		pl.frame.tail_len = tail;
		c->stats.payloads_oversized++;
	}
	c->stats.payloads++;
	if (c->cb.on_payload)
		c->cb.on_payload(c->ctx, &pl);
}

static void sse_on_data(void *ctx, const char *p, size_t n, uint64_t ts)
{
	struct http_side *s = ctx;

	pbuf_append(&s->pb, p, n, ts, s->conn->opts.max_payload);
}

/* The legacy transport's endpoint event: its data is where to POST, with the session. */
static void side_on_endpoint(struct http_side *s)
{
	struct http_conn *c = s->conn;
	struct http_exchange *ex = &s->ex->pub;
	const char *q;

	copy_cut(ex->endpoint, sizeof(ex->endpoint), s->pb.buf, s->pb.len, &c->stats.header_values_cut);
	ex->endpoint[strcspn(ex->endpoint, "\r\n")] = '\0';
	url_redact(ex->endpoint, sizeof(ex->endpoint));
	ex->endpoint_session_id[0] = '\0';
	for (q = strchr(ex->endpoint, '?'); q; q = strchr(q + 1, '&')) {
		if (strncmp(q + 1, "sessionId=", 10) == 0) {
			copy_cut(ex->endpoint_session_id, sizeof(ex->endpoint_session_id), q + 11, strcspn(q + 11, "&#"),
				 &c->stats.header_values_cut);
			break;
		}
	}
	conn_verdict(c, HTTP_MCP);
	if (!conn_ignored(c))
		conn_report(c, s->ex, HTTP_PHASE_ENDPOINT);
}

static void sse_on_event(void *ctx, const struct sse_event *ev)
{
	struct http_side *s = ctx;
	struct http_conn *c = s->conn;
	struct http_exchange *ex = &s->ex->pub;

	if (ev->id_set)
		copy_cut(ex->last_event_id, sizeof(ex->last_event_id), ev->id, strlen(ev->id), &c->stats.sse_cut);
	if (ev->retry_ms >= 0)
		ex->retry_ms = ev->retry_ms;
	if (ev->data_lines > 0 && !s->body_dead) {
		c->stats.sse_events++;
		ex->sse_events++;
		if (ev->type_cut)
			c->stats.sse_other++;
		else if (strcmp(ev->type, "endpoint") == 0)
			side_on_endpoint(s);
		else if (strcmp(ev->type, "message") != 0)
			c->stats.sse_other++;
		else if (s->pb.wire_len == 0)
			c->stats.sse_empty++;
		else
			side_deliver(s, HTTP_SRC_SSE_EVENT, ev);
	}
	pbuf_clear(&s->pb);
}

static const struct sse_callbacks sse_cb = { .on_data = sse_on_data, .on_event = sse_on_event };

/* Decoded body bytes. */
static void body_sink(struct http_side *s, const char *p, size_t n)
{
	if (s->body == BODY_SSE)
		sse_feed(&s->sse, p, n, s->ts, &sse_cb, s);
	else
		pbuf_append(&s->pb, p, n, s->ts, s->conn->opts.max_payload);
}

/* ------------------------------------------------------------------ inflate */

static void body_kill(struct http_side *s, uint32_t flag)
{
	s->ex->pub.flags |= flag;
	s->body_dead = true;
	pbuf_clear(&s->pb);
}

static void inflate_release(struct http_side *s)
{
	if (s->z) {
		inflateEnd(s->z);
		free(s->z);
		s->z = NULL;
	}
	s->z_state = Z_NONE;
}

static bool inflate_start(struct http_side *s, bool deflate)
{
	s->z = calloc(1, sizeof(*s->z));
	/* 15 + 32: a gzip or a zlib header, whichever comes. */
	if (!s->z || inflateInit2(s->z, 15 + 32) != Z_OK) {
		free(s->z);
		s->z = NULL;
		return false;
	}
	s->z_state = Z_ACTIVE;
	s->z_deflate = deflate;
	s->z_raw_tried = false;
	s->z_in = s->z_out = 0;
	return true;
}

static void inflate_feed(struct http_side *s, const char *p, size_t n);

/* "deflate" should be zlib-wrapped (RFC 9110), but some servers send raw deflate: when the
 * zlib header is rejected, the first `seen` bytes are inflated again as raw deflate. */
static bool inflate_retry_raw(struct http_side *s, size_t seen)
{
	unsigned char head[sizeof(s->z_head)];

	if (!s->z_deflate || s->z_raw_tried || s->z_out > 0 || seen > sizeof(head) || inflateReset2(s->z, -15) != Z_OK)
		return false;
	s->z_raw_tried = true;
	memcpy(head, s->z_head, seen);
	s->z_in = 0;
	inflate_feed(s, (const char *)head, seen);
	return true;
}

static void inflate_feed(struct http_side *s, const char *p, size_t n)
{
	struct http_conn *c = s->conn;
	z_stream *z = s->z;
	char out[16384];
	size_t used = 0; /* bytes of p zlib has taken */
	size_t base = 0; /* ... of which counted in z_in already (replayed as raw deflate) */

	if (s->z_state != Z_ACTIVE)
		return;
	if (s->z_in < sizeof(s->z_head))
		memcpy(s->z_head + s->z_in, p, n < sizeof(s->z_head) - s->z_in ? n : sizeof(s->z_head) - s->z_in);
	for (;;) {
		size_t got;
		int rc;

		z->next_in = (Bytef *)p + used;
		z->avail_in = (uInt)(n - used);
		z->next_out = (Bytef *)out;
		z->avail_out = sizeof(out);
		rc = inflate(z, Z_NO_FLUSH);
		used = n - z->avail_in;
		got = sizeof(out) - z->avail_out;
		if (rc == Z_DATA_ERROR && got == 0 && inflate_retry_raw(s, s->z_in + used - base)) {
			base = used;
			if (s->z_state != Z_ACTIVE) /* the replay ended or failed the stream */
				return;
			continue; /* the rest of p, as raw deflate */
		}
		s->z_out += got;
		if (s->z_out > c->opts.max_inflate ||
		    (s->z_out > HTTP_INFLATE_RATIO_FLOOR && s->z_out / c->opts.max_inflate_ratio > s->z_in + used - base)) {
			c->stats.inflate_bombs++;
			body_kill(s, HTTP_EX_BOMB);
			s->z_state = Z_FAILED;
			return;
		}
		/* What came out before an error is as good as what comes out of a chunk earlier. */
		body_sink(s, out, got);
		if (s->body_dead || conn_ignored(c))
			return;
		if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
			goto fail;
		if (rc == Z_STREAM_END) {
			/* gzip may hold several members; anything after a deflate stream is ignored. */
			if (used == n || s->z_deflate || inflateReset(z) != Z_OK) {
				s->z_state = Z_ENDED;
				break;
			}
			continue;
		}
		if (used == n && z->avail_out > 0)
			break;
	}
	s->z_in += used - base;
	return;
fail:
	c->stats.inflate_errors++;
	body_kill(s, HTTP_EX_INFLATE_ERROR);
	s->z_state = Z_FAILED;
}

/* ------------------------------------------------------------------ message bodies */

static void body_setup(struct http_side *s, bool response)
{
	struct http_conn *c = s->conn;
	const struct http_headers *h = s->hdr;
	const char *enc = h->content_encoding;

	s->body_dead = false;
	if (!h->content_type[0])
		s->body = BODY_JSON_SNIFF;
	else if (media_is_json(h->content_type))
		s->body = BODY_JSON;
	else if (response && media_is(h->content_type, "text/event-stream"))
		s->body = BODY_SSE;
	else
		s->body = BODY_SKIP;
	if (s->body == BODY_SSE) {
		s->ex->pub.sse = true;
		sse_reset(&s->sse);
	}
	if (s->body == BODY_SKIP || !enc[0] || strcasecmp(enc, "identity") == 0)
		return;
	if (strcasecmp(enc, "gzip") == 0 || strcasecmp(enc, "x-gzip") == 0 || strcasecmp(enc, "deflate") == 0) {
		if (!inflate_start(s, strcasecmp(enc, "deflate") == 0)) {
			c->stats.nomem++;
			s->body_dead = true;
		}
		return;
	}
	c->stats.unsupported_encodings++;
	s->ex->pub.flags |= HTTP_EX_ENCODING_UNSUPPORTED;
	s->body = BODY_SKIP;
}

static void body_feed(struct http_side *s, const char *p, size_t n)
{
	struct http_conn *c = s->conn;

	if (s->body == BODY_SKIP || s->body == BODY_NONE) {
		c->stats.skipped_body_bytes += n;
		return;
	}
	if (c->verdict == HTTP_UNDECIDED) {
		c->classify_bytes += n;
		if (c->classify_bytes > HTTP_CLASSIFY_BYTES) {
			conn_verdict(c, HTTP_NOT_MCP);
			return;
		}
	}
	if (s->body_dead)
		return;
	if (s->z)
		inflate_feed(s, p, n);
	else
		body_sink(s, p, n);
}

/* n body bytes were cut out (bytes on the wire, before any decoding). */
static void body_cut(struct http_side *s, size_t n)
{
	struct http_conn *c = s->conn;

	c->stats.cut_bytes += n;
	s->ex->pub.flags |= HTTP_EX_BODY_CUT;
	if (s->body == BODY_SKIP || s->body == BODY_NONE) {
		c->stats.skipped_body_bytes += n;
		return;
	}
	if (s->body_dead)
		return;
	if (s->z) {
		/* No inflating across missing bytes. */
		body_kill(s, HTTP_EX_INFLATE_ERROR);
		s->z_state = Z_FAILED;
		return;
	}
	pbuf_cut(&s->pb, n, s->ts, c->opts.max_payload);
}

/* The message's body ended (complete): deliver a JSON body. */
static void body_end(struct http_side *s, enum http_source source)
{
	struct http_conn *c = s->conn;

	if (s->z && s->z_state == Z_ACTIVE && !s->body_dead && s->z_in > 0) {
		c->stats.inflate_errors++; /* the compressed stream was cut short */
		body_kill(s, HTTP_EX_INFLATE_ERROR);
	}
	inflate_release(s);
	if (s->body == BODY_SKIP)
		c->stats.skipped_bodies++;
	if ((s->body == BODY_JSON || s->body == BODY_JSON_SNIFF) && !s->body_dead && s->pb.wire_len > 0) {
		size_t i = 0;

		while (i < s->pb.len && memchr(" \t\r\n", s->pb.buf[i], 4))
			i++;
		if (s->body == BODY_JSON_SNIFF && (i == s->pb.len || (s->pb.buf[i] != '{' && s->pb.buf[i] != '[')))
			c->stats.skipped_bodies++;
		else
			side_deliver(s, source, NULL);
	}
	if (s->body == BODY_SSE)
		sse_finish(&s->sse);
	pbuf_clear(&s->pb);
	s->body = BODY_NONE;
	s->body_dead = false;
}

/* ------------------------------------------------------------------ giving messages up */

static void side_reset_body(struct http_side *s)
{
	inflate_release(s);
	if (s->body == BODY_SSE)
		sse_reset(&s->sse);
	pbuf_clear(&s->pb);
	s->body = BODY_NONE;
	s->body_dead = false;
}

/* The message being parsed cannot be followed to its end (bytes lost, a parse error, the
 * stream ended): its exchange ends with end, or waits for its response. */
static void side_abandon_message(struct http_side *s, enum http_end end)
{
	struct http_conn *c = s->conn;
	struct http_ex *x = s->ex;

	side_reset_body(s);
	s->in_message = false;
	s->ex = NULL;
	s->hdr = NULL;
	s->hstate = H_NONE;
	if (!x)
		return;
	if (!s->request) {
		x->resp_active = false;
		ex_settle(c, x, end);
		return;
	}
	x->req_active = false;
	if (!x->queued && !x->reported) {
		/* Its head never completed: nobody saw this exchange. */
		if (end == HTTP_END_LOST)
			c->stats.lost++;
		ex_free(c, x);
		return;
	}
	x->pub.flags |= HTTP_EX_REQUEST_INCOMPLETE;
	ex_settle(c, x, HTTP_END_NONE);
}

/* Every exchange the connection holds, each once: the sides' and the queued ones. */
static unsigned conn_exchanges(struct http_conn *c, struct http_ex **all)
{
	unsigned n = 0;

	for (int d = 0; d < 2; d++) {
		if (c->side[d].ex && (n == 0 || all[0] != c->side[d].ex))
			all[n++] = c->side[d].ex;
	}
	for (unsigned i = 0; i < c->npending; i++) {
		unsigned j = 0;

		while (j < n && all[j] != c->pending[i])
			j++;
		if (j == n)
			all[n++] = c->pending[i];
	}
	return n;
}

/* A final verdict: everything still open is abandoned and freed, once. */
static void conn_settle(struct http_conn *c)
{
	struct http_ex *all[HTTP_MAX_PENDING + 2];
	unsigned n;

	if (!conn_ignored(c) || c->settled)
		return;
	c->settled = true;
	n = conn_exchanges(c, all);
	for (int d = 0; d < 2; d++) {
		struct http_side *s = &c->side[d];

		side_reset_body(s);
		s->ex = NULL;
		s->in_message = false;
		s->mode = SIDE_DONE;
	}
	c->npending = 0;
	for (unsigned i = 0; i < n; i++) {
		all[i]->queued = all[i]->req_active = all[i]->resp_active = false;
		ex_settle(c, all[i], HTTP_END_ABANDONED);
	}
}

/* ------------------------------------------------------------------ http-parser callbacks */

#define SIDE(p) ((struct http_side *)(p)->data)

/* The role a message read or written on this side implies. */
static enum http_role side_role(const struct http_side *s)
{
	bool request = s->parser.type == HTTP_REQUEST;

	return (s->dir == MSD_DIR_READ) == request ? HTTP_ROLE_SERVER : HTTP_ROLE_CLIENT;
}

/* The first callback that knows whether the message is a request or a response opens it.
 * False when the message cannot be followed (the connection's role says otherwise). The
 * role itself is learnt from a complete head only, never from a line that then fails. */
static bool side_open(struct http_side *s)
{
	struct http_conn *c = s->conn;
	bool request = s->parser.type == HTTP_REQUEST;

	if (s->opened)
		return true;
	if (c->role != HTTP_ROLE_UNKNOWN && c->role != side_role(s))
		return false;
	s->opened = true;
	s->request = request;
	s->hstate = H_NONE;
	if (!request) {
		memset(&s->resp_hdr, 0, sizeof(s->resp_hdr));
		s->hdr = &s->resp_hdr;
		return true;
	}
	s->ex = ex_new(c);
	if (!s->ex) {
		c->stats.nomem++;
		return false;
	}
	s->ex->req_active = true;
	s->ex->pub.ts_req_first = s->ts_first;
	s->hdr = &s->ex->pub.req;
	return true;
}

static int on_message_begin(http_parser *p)
{
	struct http_side *s = SIDE(p);

	if (s->synthetic)
		return 0;
	if (conn_ignored(s->conn))
		return -1;
	s->in_message = true;
	s->opened = false;
	s->head_done = false;
	s->informational = false;
	s->ts_first = s->ts;
	s->ex = NULL;
	s->hdr = NULL;
	return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	struct http_side *s = SIDE(p);
	struct http_exchange *ex;
	size_t len;

	if (conn_ignored(s->conn) || !side_open(s) || !s->request)
		return -1;
	ex = &s->ex->pub;
	len = strnlen(ex->target, sizeof(ex->target)); /* http-parser lets no NUL into a URL */
	if (len + n >= sizeof(ex->target)) {
		if (!(ex->flags & HTTP_EX_TARGET_CUT))
			s->conn->stats.header_values_cut++;
		ex->flags |= HTTP_EX_TARGET_CUT;
		n = sizeof(ex->target) - 1 - len;
	}
	memcpy(ex->target + len, at, n);
	ex->target[len + n] = '\0';
	return 0;
}

static int on_status(http_parser *p, const char *at, size_t n)
{
	struct http_side *s = SIDE(p);

	(void)at;
	(void)n;
	if (s->synthetic)
		return 0;
	return conn_ignored(s->conn) || !side_open(s) ? -1 : 0;
}

/* Whether a header callback has anything to do: not for a made-up head nor for trailers
 * (not looked at); -1 stops the parser. */
static int header_cb_wanted(struct http_side *s)
{
	if (s->synthetic)
		return 0;
	if (conn_ignored(s->conn) || !side_open(s))
		return -1;
	return !s->head_done;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	struct http_side *s = SIDE(p);
	int wanted = header_cb_wanted(s);

	if (wanted <= 0)
		return wanted;
	if (s->hstate == H_VALUE)
		header_end(s);
	if (s->hstate != H_NAME) {
		s->name_len = 0;
		s->hstate = H_NAME;
	}
	for (size_t i = 0; i < n; i++, s->name_len++) {
		if (s->name_len < HTTP_NAME_MAX)
			s->name[s->name_len] = at[i] >= 'A' && at[i] <= 'Z' ? (char)(at[i] - 'A' + 'a') : at[i];
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	struct http_side *s = SIDE(p);
	int wanted = header_cb_wanted(s);

	if (wanted <= 0)
		return wanted;
	if (s->hstate == H_NAME) {
		header_begin(s);
		s->hstate = H_VALUE;
	}
	header_value(s, at, n);
	return 0;
}

static int request_head_done(struct http_side *s)
{
	struct http_conn *c = s->conn;
	struct http_ex *x = s->ex;

	if (c->npending == HTTP_MAX_PENDING) {
		conn_verdict(c, HTTP_BROKEN);
		return -1;
	}
	snprintf(x->pub.method, sizeof(x->pub.method), "%s", http_method_str((enum http_method)s->parser.method));
	url_redact(x->pub.target, sizeof(x->pub.target));
	x->pub.seq = ++c->seq;
	x->pub.ts_req_head = s->ts;
	x->pub.ts_req_last = s->ts;
	x->queued = true;
	c->pending[c->npending++] = x;
	c->stats.requests++;
	body_setup(s, false);
	conn_report(c, x, HTTP_PHASE_REQUEST);
	return 0;
}

static int response_head_done(struct http_side *s)
{
	struct http_conn *c = s->conn;
	unsigned status = s->parser.status_code;
	struct http_ex *x;

	if (status / 100 == 1 && status != 101) {
		/* 100 Continue and the like: the final response is still to come. */
		s->informational = true;
		if (c->npending > 0 && c->pending[0]->pub.ts_req_first <= s->ts_first)
			c->pending[0]->pub.flags |= HTTP_EX_CONTINUE;
		return 1; /* never a body, whatever a Content-Length says */
	}
	x = pending_pick(c, s->ts_first, s->after_gap);
	if (x) {
		pending_remove(c, x);
	} else {
		x = ex_new(c);
		if (!x) {
			c->stats.nomem++;
			return -1;
		}
		x->pub.flags |= HTTP_EX_UNPAIRED;
		c->stats.unpaired++;
	}
	s->after_gap = false;
	s->ex = x;
	x->pub.resp = s->resp_hdr;
	s->hdr = &x->pub.resp;
	x->resp_active = true;
	x->pub.status = status;
	x->pub.ts_resp_first = s->ts_first;
	x->pub.ts_resp_head = s->ts;
	x->pub.ts_resp_last = s->ts;
	c->stats.responses++;
	body_setup(s, true);
	conn_report(c, x, HTTP_PHASE_RESPONSE);
	/* Responses without a body whatever their headers say: to HEAD, 204 and 304 (RFC 9110;
	 * http-parser 2.9 would read a Content-Length body after a 304), and a tunnel's. */
	if (strcmp(x->pub.method, "HEAD") == 0 || status == 204 || status == 304)
		return 1;
	if (strcmp(x->pub.method, "CONNECT") == 0 && status / 100 == 2)
		return 2;
	return 0;
}

static int on_headers_complete(http_parser *p)
{
	struct http_side *s = SIDE(p);
	struct http_conn *c = s->conn;

	if (s->synthetic)
		return 0;
	if (conn_ignored(c) || !side_open(s))
		return -1;
	if (s->hstate == H_NAME)
		header_begin(s);
	if (s->hstate != H_NONE)
		header_end(s);
	s->hstate = H_NONE;
	s->head_done = true;
	c->http_seen = true;
	c->role = side_role(s);
	headers_decode_mcp_name(s->hdr);
	if (headers_show_mcp(s->hdr))
		conn_verdict(c, HTTP_MCP);
	return s->request ? request_head_done(s) : response_head_done(s);
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	struct http_side *s = SIDE(p);
	struct http_exchange *ex;

	if (conn_ignored(s->conn))
		return -1;
	ex = &s->ex->pub;
	if (s->request) {
		ex->req_body_bytes += n;
		ex->ts_req_last = s->ts;
	} else {
		ex->resp_body_bytes += n;
		ex->ts_resp_last = s->ts;
	}
	if (s->cutting)
		body_cut(s, n);
	else
		body_feed(s, at, n);
	return conn_ignored(s->conn) ? -1 : 0;
}

static int on_chunk_header(http_parser *p)
{
	SIDE(p)->in_chunk = p->content_length > 0;
	return 0;
}

static int on_chunk_complete(http_parser *p)
{
	SIDE(p)->in_chunk = false;
	return 0;
}

static int on_message_complete(http_parser *p)
{
	struct http_side *s = SIDE(p);
	struct http_conn *c = s->conn;
	struct http_ex *x = s->ex;

	if (s->synthetic)
		return 0;
	if (conn_ignored(c))
		return -1;
	s->in_message = false;
	s->errors = 0;
	if (s->informational)
		return 0;
	if (s->request) {
		x->pub.ts_req_last = s->ts;
		body_end(s, HTTP_SRC_REQUEST_BODY);
		x->req_active = false;
	} else {
		x->pub.ts_resp_last = s->ts;
		body_end(s, HTTP_SRC_RESPONSE_BODY);
		x->resp_active = false;
	}
	s->ex = NULL;
	s->hdr = NULL;
	ex_settle(c, x, s->request ? HTTP_END_NONE : HTTP_END_COMPLETE);
	if (!s->request && c->verdict == HTTP_UNDECIDED && ++c->classify_exchanges >= HTTP_CLASSIFY_EXCHANGES)
		conn_verdict(c, HTTP_NOT_MCP);
	return conn_ignored(c) ? -1 : 0;
}

static const http_parser_settings http_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_status = on_status,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
	.on_chunk_header = on_chunk_header,
	.on_chunk_complete = on_chunk_complete,
};

/* ------------------------------------------------------------------ resynchronising */

static void side_parser_init(struct http_side *s, enum http_parser_type type)
{
	http_parser_init(&s->parser, type);
	s->parser.data = s;
	s->in_chunk = false;
}

static void side_resync_begin(struct http_side *s, bool line_start)
{
	s->mode = SIDE_RESYNC;
	s->lp_len = 0;
	s->lp_dead = !line_start;
	s->resync_scanned = 0;
}

/* lp[0..n) against patterns: kind when one matches whole, CAND_MAYBE when lp may still
 * grow into one, CAND_NO otherwise. */
static enum cand cand_any(const char *lp, size_t n, const char *const *pats, size_t npats, enum cand kind)
{
	enum cand best = CAND_NO;

	for (size_t i = 0; i < npats; i++) {
		size_t len = strlen(pats[i]);

		if (n > len || memcmp(lp, pats[i], n) != 0)
			continue;
		if (n == len)
			return kind;
		best = CAND_MAYBE;
	}
	return best;
}

#define CAND_ANY(lp, n, pats, kind) cand_any(lp, n, pats, sizeof(pats) / sizeof(pats[0]), kind)

/* A chunk-size line followed by the start of an SSE line: "a7\r\nevent:". */
static enum cand cand_sse(const char *lp, size_t n)
{
	static const char *const fields[] = { "data:", "event:", "id:", "retry:", ":" };
	size_t i = 0;

	while (i < n && i <= 8 && isxdigit((unsigned char)lp[i]))
		i++;
	if (i == n)
		return n <= 8 ? CAND_MAYBE : CAND_NO;
	if (i == 0 || i > 8)
		return CAND_NO;
	if (n - i <= 2)
		return memcmp(lp + i, "\r\n", n - i) == 0 ? CAND_MAYBE : CAND_NO;
	if (memcmp(lp + i, "\r\n", 2) != 0)
		return CAND_NO;
	return CAND_ANY(lp + i + 2, n - i - 2, fields, CAND_SSE);
}

/* Whether a line starting with lp[0..n) is where a message begins, may be, or is not. */
static enum cand cand_match(const struct http_side *s, const char *lp, size_t n)
{
	static const char *const methods[] = { "POST ", "GET ", "DELETE ", "PUT ", "HEAD ", "OPTIONS ", "PATCH " };
	static const char *const versions[] = { "HTTP/1.1 ", "HTTP/1.0 " };
	enum http_parser_type t = side_type(s);
	enum cand k[3] = {
		t != HTTP_RESPONSE ? CAND_ANY(lp, n, methods, CAND_REQUEST) : CAND_NO,
		t != HTTP_REQUEST ? CAND_ANY(lp, n, versions, CAND_RESPONSE) : CAND_NO,
		t != HTTP_REQUEST && s->resume_sse ? cand_sse(lp, n) : CAND_NO,
	};

	for (int i = 0; i < 3; i++) {
		if (k[i] != CAND_NO && k[i] != CAND_MAYBE)
			return k[i];
	}
	return k[0] == CAND_MAYBE || k[1] == CAND_MAYBE || k[2] == CAND_MAYBE ? CAND_MAYBE : CAND_NO;
}

/* Enters the chunked event stream found at a chunk boundary: http-parser is put in a
 * chunked body by a made-up head; the events belong to the stream that lost bytes, or,
 * when none was known (the connection was joined mid-stream), to an unpaired exchange. */
static bool side_enter_sse(struct http_side *s)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
	struct http_conn *c = s->conn;
	struct http_ex *x = s->ex;

	if (!x) {
		x = ex_new(c);
		if (!x) {
			c->stats.nomem++;
			return false;
		}
		if (c->role == HTTP_ROLE_UNKNOWN)
			c->role = s->dir == MSD_DIR_READ ? HTTP_ROLE_CLIENT : HTTP_ROLE_SERVER;
		x->pub.flags |= HTTP_EX_UNPAIRED | HTTP_EX_MIDSTREAM;
		x->pub.sse = true;
		x->pub.ts_resp_last = s->ts;
		x->resp_active = true;
		c->stats.unpaired++;
		c->stats.responses++;
		s->ex = x;
		conn_report(c, x, HTTP_PHASE_RESPONSE);
	}
	s->hdr = &x->pub.resp;
	side_parser_init(s, HTTP_RESPONSE);
	s->synthetic = true;
	http_parser_execute(&s->parser, &http_settings, head, sizeof(head) - 1);
	s->synthetic = false;
	s->in_message = s->opened = s->head_done = true;
	s->request = s->informational = false;
	s->body = BODY_SSE;
	s->body_dead = false;
	sse_reset(&s->sse);
	return true;
}

static void side_resume(struct http_side *s, enum cand k)
{
	if (k == CAND_SSE) {
		if (!side_enter_sse(s))
			return;
	} else {
		if (s->ex)
			side_abandon_message(s, HTTP_END_LOST); /* a resumed stream whose end was lost */
		side_parser_init(s, k == CAND_REQUEST ? HTTP_REQUEST : HTTP_RESPONSE);
		s->in_message = false;
	}
	s->mode = SIDE_PARSE;
	s->resume_sse = false;
	s->conn->stats.resyncs++;
}

static void resync_skipped(struct http_side *s, size_t n)
{
	struct http_conn *c = s->conn;

	c->stats.resync_bytes += n;
	s->resync_scanned += n;
	if (s->resync_scanned > HTTP_RESYNC_MAX)
		conn_verdict(c, c->http_seen ? HTTP_LOST : HTTP_NOT_HTTP);
}

static size_t side_feed(struct http_side *s, const char *p, size_t n);

/* Looks at line starts for a message boundary. Returns the bytes of p it used: all of them
 * when none was found; else the side parses again from p + the returned count (the part of
 * the line carried from earlier chunks has been parsed already). */
static size_t side_resync(struct http_side *s, const char *p, size_t n)
{
	size_t i = 0, fresh = 0;

	while (i < n && !conn_ignored(s->conn)) {
		char carried[HTTP_LINE_PREFIX_MAX];
		size_t old;
		enum cand k;

		if (s->lp_dead) {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t skip = nl ? (size_t)(nl - (p + i)) + 1 : n - i;

			i += skip;
			s->lp_dead = !nl;
			resync_skipped(s, skip);
			continue;
		}
		s->lp[s->lp_len++] = p[i++];
		fresh++;
		k = cand_match(s, s->lp, s->lp_len);
		if (k == CAND_MAYBE)
			continue;
		if (k == CAND_NO) {
			s->lp_dead = s->lp[s->lp_len - 1] != '\n';
			resync_skipped(s, s->lp_len);
			s->lp_len = 0;
			fresh = 0;
			continue;
		}
		old = s->lp_len - fresh;
		memcpy(carried, s->lp, old);
		s->lp_len = 0;
		side_resume(s, k);
		if (s->mode != SIDE_PARSE)
			return n;
		if (old)
			side_feed(s, carried, old);
		s->last_nl = false;
		return i - fresh;
	}
	return n;
}

/* ------------------------------------------------------------------ parsing */

static void side_error(struct http_side *s, bool line_start)
{
	struct http_conn *c = s->conn;

	c->stats.parse_errors++;
	if (!c->http_seen && c->opts.from_start) {
		conn_verdict(c, HTTP_NOT_HTTP);
		return;
	}
	if (++s->errors > HTTP_MAX_ERRORS) {
		conn_verdict(c, HTTP_BROKEN);
		return;
	}
	side_abandon_message(s, HTTP_END_LOST);
	if (side_may_respond(s))
		s->after_gap = true;
	s->resume_sse = false;
	side_resync_begin(s, line_start);
}

/* Parses p[0..n); returns how many bytes were left when the connection was set aside. */
static size_t side_feed(struct http_side *s, const char *p, size_t n)
{
	struct http_conn *c = s->conn;

	while (n > 0 && !conn_ignored(c) && s->mode != SIDE_DONE) {
		size_t k;

		if (s->mode == SIDE_RESYNC) {
			k = side_resync(s, p, n);
		} else {
			k = http_parser_execute(&s->parser, &http_settings, p, n);
			if (conn_ignored(c))
				return n - k;
			if (HTTP_PARSER_ERRNO(&s->parser) != HPE_OK) {
				/* Resynchronise from the byte that failed, which may begin a message. */
				side_error(s, k ? p[k - 1] == '\n' : s->last_nl);
			} else if (s->parser.upgrade && s->parser.type == HTTP_RESPONSE) {
				conn_verdict(c, HTTP_UPGRADED);
			}
			/* A request asking to upgrade: its response decides; the rest parses on. */
		}
		if (k)
			s->last_nl = p[k - 1] == '\n';
		p += k;
		n -= k;
	}
	return conn_ignored(c) ? n : 0;
}

/* ------------------------------------------------------------------ the connection */

void http_opts_default(struct http_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_payload = 16u << 20;
	o->max_inflate = HTTP_INFLATE_MAX_DEFAULT;
	o->max_inflate_ratio = HTTP_INFLATE_RATIO_DEFAULT;
	o->from_start = true;
}

struct http_conn *http_conn_new(const struct http_opts *o, const struct http_callbacks *cb, void *ctx)
{
	struct http_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->opts = *o;
	if (!c->opts.max_payload)
		c->opts.max_payload = 1;
	if (!c->opts.max_inflate_ratio)
		c->opts.max_inflate_ratio = HTTP_INFLATE_RATIO_DEFAULT;
	c->cb = *cb;
	c->ctx = ctx;
	for (int d = 0; d < 2; d++) {
		struct http_side *s = &c->side[d];

		s->conn = c;
		s->dir = (enum msd_dir)d;
		sse_init(&s->sse);
		side_parser_init(s, HTTP_BOTH);
		if (!o->from_start) {
			/* Joined mid-stream: wait for a message boundary, an event stream's too. */
			side_resync_begin(s, true);
			s->resume_sse = true;
		}
	}
	return c;
}

void http_conn_feed(struct http_conn *c, enum msd_dir dir, const void *data, size_t len, uint64_t ts_ns)
{
	struct http_side *s = &c->side[dir];

	c->stats.bytes[dir] += len;
	if (conn_ignored(c) || c->closed || s->mode == SIDE_DONE) {
		c->stats.ignored_bytes += len;
		return;
	}
	s->ts = ts_ns;
	c->stats.ignored_bytes += side_feed(s, data, len);
	conn_settle(c);
}

void http_conn_gap(struct http_conn *c, enum msd_dir dir, uint64_t lost_bytes)
{
	struct http_side *s = &c->side[dir];
	bool resume = false;

	c->stats.gaps++;
	c->stats.gap_bytes += lost_bytes;
	if (conn_ignored(c) || c->closed || s->mode == SIDE_DONE)
		return;
	if (s->in_message && !s->request && s->head_done && s->body == BODY_SSE && !s->z && !s->body_dead &&
	    (s->mode == SIDE_RESYNC || (s->parser.flags & F_CHUNKED))) {
		/* An event stream: pick it up at its next event. */
		s->ex->pub.flags |= HTTP_EX_RESPONSE_GAP;
		sse_reset(&s->sse);
		pbuf_clear(&s->pb);
		resume = true;
	} else if (s->in_message) {
		side_abandon_message(s, HTTP_END_LOST);
	}
	if (side_may_respond(s)) {
		s->after_gap = true;
		for (unsigned i = 0; i < c->npending; i++)
			c->pending[i]->response_gap = true;
	}
	s->resume_sse = resume || (!c->opts.from_start && !c->http_seen);
	side_resync_begin(s, true);
	conn_settle(c);
}

/* Whether len bytes can be skipped inside the body being parsed without leaving it: within
 * the current chunk of a chunked body, the rest of a Content-Length body, any body read to
 * the close; and for an event stream, only inside a data line. */
static bool side_cut_fits(const struct http_side *s, uint64_t len)
{
	const http_parser *hp = &s->parser;

	if (s->mode != SIDE_PARSE || !s->in_message || !s->head_done || s->informational)
		return false;
	if (s->body == BODY_SSE && (s->z || !sse_in_data(&s->sse)))
		return false;
	if (hp->flags & F_CHUNKED)
		return s->in_chunk && hp->content_length >= len;
	return hp->content_length == ULLONG_MAX || hp->content_length >= len;
}

void http_conn_cut(struct http_conn *c, enum msd_dir dir, uint64_t len, uint64_t ts_ns)
{
	static const char filler[64 * 1024];
	struct http_side *s = &c->side[dir];

	if (conn_ignored(c) || c->closed || s->mode == SIDE_DONE || len == 0)
		return;
	if (!side_cut_fits(s, len)) {
		c->stats.cuts_as_gaps++;
		http_conn_gap(c, dir, len);
		return;
	}
	/* http-parser counts the filler off the body without looking at it; on_body sees it as
	 * cut, not as bytes. */
	s->ts = ts_ns;
	s->cutting = true;
	while (len > 0 && !conn_ignored(c) && s->mode == SIDE_PARSE) {
		size_t n = len < sizeof(filler) ? (size_t)len : sizeof(filler);

		http_parser_execute(&s->parser, &http_settings, filler, n);
		len -= n;
	}
	s->cutting = false;
	conn_settle(c);
}

void http_conn_eof(struct http_conn *c, enum msd_dir dir, uint64_t ts_ns)
{
	struct http_side *s = &c->side[dir];

	if (conn_ignored(c) || s->mode == SIDE_DONE)
		return;
	s->ts = ts_ns;
	/* A body delimited by the close ends here; anything else in progress was cut short. */
	if (s->mode == SIDE_PARSE && s->in_message)
		http_parser_execute(&s->parser, &http_settings, NULL, 0);
	if (!conn_ignored(c) && s->in_message)
		side_abandon_message(s, HTTP_END_CLOSED);
	s->mode = SIDE_DONE;
	conn_settle(c);
}

void http_conn_close(struct http_conn *c, uint64_t ts_ns)
{
	if (c->closed)
		return;
	http_conn_eof(c, MSD_DIR_READ, ts_ns);
	http_conn_eof(c, MSD_DIR_WRITE, ts_ns);
	c->closed = true;
	while (c->npending > 0) {
		struct http_ex *x = c->pending[0];

		pending_remove(c, x);
		/* Closed before its response: the client gave up, unless the capture lost it. */
		ex_settle(c, x, x->response_gap ? HTTP_END_LOST : HTTP_END_CANCELLED);
	}
}

void http_conn_free(struct http_conn *c)
{
	struct http_ex *all[HTTP_MAX_PENDING + 2];
	unsigned n;

	if (!c)
		return;
	n = conn_exchanges(c, all);
	for (int d = 0; d < 2; d++) {
		inflate_release(&c->side[d]);
		pbuf_free(&c->side[d].pb);
	}
	for (unsigned i = 0; i < n; i++)
		ex_free(c, all[i]);
	free(c);
}

enum http_verdict http_conn_verdict(const struct http_conn *c)
{
	return c->verdict;
}

enum http_role http_conn_role(const struct http_conn *c)
{
	return c->role;
}

void http_conn_stats(const struct http_conn *c, struct http_stats *out)
{
	*out = c->stats;
	for (int d = 0; d < 2; d++) {
		out->sse_comments += c->side[d].sse.stats.comments;
		out->sse_cut += c->side[d].sse.stats.cut;
		out->sse_discarded += c->side[d].sse.stats.discarded;
	}
}

size_t http_conn_memory(const struct http_conn *c)
{
	size_t m = sizeof(*c) + c->nexchanges * sizeof(struct http_ex);

	for (int d = 0; d < 2; d++) {
		m += pbuf_memory(&c->side[d].pb, c->opts.max_payload);
		if (c->side[d].z)
			m += sizeof(z_stream) + ZLIB_STATE_BYTES;
	}
	return m;
}

const char *http_verdict_name(enum http_verdict v)
{
	static const char *const names[] = {
		[HTTP_UNDECIDED] = "undecided", [HTTP_MCP] = "mcp",	      [HTTP_NOT_HTTP] = "not_http",
		[HTTP_NOT_MCP] = "not_mcp",	[HTTP_UPGRADED] = "upgraded", [HTTP_LOST] = "lost",
		[HTTP_BROKEN] = "broken",
	};

	return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}

const char *http_end_name(enum http_end e)
{
	static const char *const names[] = {
		[HTTP_END_NONE] = "open",	    [HTTP_END_COMPLETE] = "complete", [HTTP_END_CLOSED] = "closed",
		[HTTP_END_CANCELLED] = "cancelled", [HTTP_END_LOST] = "lost",	      [HTTP_END_ABANDONED] = "abandoned",
	};

	return (unsigned)e < sizeof(names) / sizeof(names[0]) ? names[e] : "?";
}

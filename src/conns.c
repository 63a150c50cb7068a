/* conns.c -- the HTTP transport stage (see conns.h).
 *
 * Per connection: two streams (read, write) whose ordered bytes go to one http_conn; the
 * http_conn's callbacks come back here with payloads, exchanges and its verdict.
 *
 * Where a message belongs (session.h, the scope): the MCP session its exchange names
 * (the request's Mcp-Session-Id; for the legacy HTTP+SSE transport, the POST's sessionId
 * query parameter or the GET stream's endpoint event), else the exchange itself, whose
 * response carries the answers. So the answer that comes on another connection after a
 * reconnect (Last-Event-ID, same session) and every answer on a legacy GET stream find
 * their request, and two clients that both count ids from 0 never meet.
 *
 * How an exchange settles the requests its body carried, when it ends without their
 * answer: a status >= 400 fails them (CALL_HTTP_ERROR; an error answer without id is paired
 * with the one request of its exchange before that); the connection closing before any
 * response cancels them; in 2026-07-28 the client closing the response stream cancels them
 * too, while before that revision a stream closed mid-way may resume elsewhere and they stay
 * pending; bytes lost make them suspect (session.h). A 202 for a request (the legacy
 * transport) leaves them pending: their answers come on the GET stream. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uthash.h>

#include "mcpsonde/conns.h"
#include "mcpsonde/http.h"
#include "mcpsonde/rpc.h"
#include "mcpsonde/session.h"
#include "mcpsonde/stream.h"

#define HOLD_TIMEOUT_NS 2000000ull /* as the stdio streams: a record ahead waits this long */

/* What an open exchange carried in its request body. */
struct pexchange {
	struct pexchange *next;
	uint64_t seq;
	char scope[SESSION_SCOPE_MAX];
	char mcp_method[RPC_NAME_MAX]; /* the first JSON-RPC method of its body */
	unsigned requests;
	unsigned nids;
	char ids[CONNS_EXCHANGE_IDS][RPC_ID_MAX];
};

struct conn_key {
	uint32_t tgid;
	uint32_t pad;
	uint64_t conn_id;
};

struct pconn;

struct pconn_side {
	struct pconn *c;
	enum msd_dir dir;
};

struct pconn {
	struct conn_key key;
	struct conns *t;
	struct session *sess;
	uint64_t ino;
	uint32_t dev;
	uint16_t family;
	bool from_start;
	struct stream s[2];              /* by enum msd_dir */
	struct stream_stats reported[2]; /* losses already told */
	struct pconn_side side[2];
	struct http_conn *http;          /* NULL once set aside */
	enum http_verdict verdict;
	uint64_t held_since_ns;          /* a stream holds records ahead of a hole */
	struct pexchange *exchanges;
	struct ev_net net;
	char local[64], peer[64], server_address[48], session_id[128];
	UT_hash_handle hh;               /* in order of activity: the head is the least recent */
};

struct conns {
	struct conns_env env;
	struct pconn *by_key;
	unsigned n;
};

struct payload_ctx {
	struct pconn *c;
	const struct http_payload *p;
	struct pexchange *x;
	struct session_via via;
};

static const struct stream_ops conn_stream_ops;
static const struct http_callbacks conn_http_callbacks;

struct conns *conns_new(const struct conns_env *env)
{
	struct conns *t = calloc(1, sizeof(*t));

	if (t)
		t->env = *env;
	return t;
}

/* --- addresses ---------------------------------------------------------------------- */

/* "1.2.3.4", "::1", "1.2.3.4" for a v4-mapped IPv6 address; "" when unknown. */
static void addr_format(char *out, size_t n, uint16_t family, const uint8_t addr[16])
{
	static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	out[0] = '\0';
	if (family == AF_INET || (family == AF_INET6 && memcmp(addr, v4mapped, 12) == 0))
		inet_ntop(AF_INET, family == AF_INET ? addr : addr + 12, out, (socklen_t)n);
	else if (family == AF_INET6)
		inet_ntop(AF_INET6, addr, out, (socklen_t)n);
}

static void endpoint_format(char *out, size_t n, const char *host, unsigned port)
{
	if (!host[0])
		out[0] = '\0';
	else if (strchr(host, ':'))
		snprintf(out, n, "[%s]:%u", host, port);
	else
		snprintf(out, n, "%s:%u", host, port);
}

/* A unix path as it can be printed: an abstract name as "@name", printable bytes only. */
static void unix_path_format(char *out, size_t n, const char *path, size_t len)
{
	size_t o = 0, i = 0;

	if (len && path[0] == '\0') {
		if (o + 1 < n)
			out[o++] = '@';
		i = 1;
	}
	for (; i < len && path[i] && o + 1 < n; i++)
		out[o++] = path[i] >= 0x20 && path[i] < 0x7f ? path[i] : '?';
	out[o] = '\0';
}

static void conn_learn_addresses(struct pconn *c, const struct msd_conn_rec *r)
{
	char local[48], peer[48];

	c->family = r->family;
	if (r->family == AF_UNIX) {
		unix_path_format(c->local, sizeof(c->local), r->path, sizeof(r->path));
		snprintf(c->peer, sizeof(c->peer), "%s", c->local);
		return;
	}
	addr_format(local, sizeof(local), r->family, r->local_addr);
	addr_format(peer, sizeof(peer), r->family, r->peer_addr);
	endpoint_format(c->local, sizeof(c->local), local, r->local_port);
	endpoint_format(c->peer, sizeof(c->peer), peer, r->peer_port);
}

/* The connection as events tell it. Which end is the server is known once the first message
 * head was read. */
static void conn_net_update(struct pconn *c)
{
	bool client = c->http && http_conn_role(c->http) == HTTP_ROLE_CLIENT;

	c->net.transport = c->family == AF_UNIX ? "unix" : "tcp";
	c->net.local = c->local;
	c->net.peer = c->peer;
	c->net.client = client;
	if (c->family == AF_UNIX) {
		c->net.server_address = c->local[0] ? c->local : NULL;
		c->net.server_port = 0;
		return;
	}
	/* The server's end: the local address of a server process, the peer of a client. */
	if (c->local[0] && c->peer[0]) {
		const char *end = client ? c->peer : c->local;
		const char *colon = strrchr(end, ':');
		size_t hostlen = colon ? (size_t)(colon - end) : strlen(end);

		if (end[0] == '[' && hostlen >= 2) {
			end++;
			hostlen -= 2;
		}
		snprintf(c->server_address, sizeof(c->server_address), "%.*s", (int)hostlen, end);
		c->net.server_port = colon ? (unsigned)strtoul(colon + 1, NULL, 10) : 0;
	}
	c->net.server_address = c->server_address[0] ? c->server_address : NULL;
}

/* --- the table ---------------------------------------------------------------------- */

static void pexchange_free_all(struct pconn *c)
{
	for (struct pexchange *x = c->exchanges, *next; x; x = next) {
		next = x->next;
		free(x);
	}
	c->exchanges = NULL;
}

/* Frees what decoding needs: the decoder, the streams, the exchanges. */
static void conn_release(struct pconn *c)
{
	http_conn_free(c->http);
	c->http = NULL;
	stream_free(&c->s[0]);
	stream_free(&c->s[1]);
	pexchange_free_all(c);
	c->held_since_ns = 0;
}

static void conn_free(struct conns *t, struct pconn *c)
{
	HASH_DEL(t->by_key, c);
	t->n--;
	conn_release(c);
	free(c);
}

static struct pconn *conn_find(struct conns *t, uint32_t tgid, uint64_t conn_id)
{
	struct conn_key key = { .tgid = tgid, .conn_id = conn_id };
	struct pconn *c;

	HASH_FIND(hh, t->by_key, &key, sizeof(key), c);
	return c;
}

/* The most recently active connection is at the tail: room is made at the head. */
static void conn_touch(struct conns *t, struct pconn *c)
{
	if (c->hh.next) {
		HASH_DEL(t->by_key, c);
		HASH_ADD(hh, t->by_key, key, sizeof(c->key), c);
	}
}

static struct pconn *conn_new(struct conns *t, uint32_t tgid, uint64_t conn_id, uint64_t ino, uint32_t dev,
			      uint16_t family, bool from_start, uint64_t ts_ns)
{
	struct session *sess = t->env.session_of(t->env.ctx, tgid, ts_ns);
	struct http_opts o;
	struct pconn *c;

	if (!sess)
		return NULL;
	if (t->n >= CONNS_MAX) {
		conn_free(t, t->by_key);
		t->env.stats->conns_dropped++;
	}
	if (!(c = calloc(1, sizeof(*c))))
		return NULL;
	http_opts_default(&o);
	o.max_payload = t->env.opts->max_frame;
	o.from_start = from_start;
	c->key.tgid = tgid;
	c->key.conn_id = conn_id;
	c->t = t;
	c->sess = sess;
	c->ino = ino;
	c->dev = dev;
	c->family = family;
	c->from_start = from_start;
	for (int d = 0; d < 2; d++) {
		c->side[d] = (struct pconn_side){ .c = c, .dir = (enum msd_dir)d };
		stream_init_ops(&c->s[d], &conn_stream_ops, &c->side[d]);
	}
	if (!(c->http = http_conn_new(&o, &conn_http_callbacks, c))) {
		free(c);
		return NULL;
	}
	conn_net_update(c);
	HASH_ADD(hh, t->by_key, key, sizeof(c->key), c);
	t->n++;
	t->env.stats->conns++;
	return c;
}

/* --- exchanges ---------------------------------------------------------------------- */

static struct pexchange *pexchange_find(struct pconn *c, uint64_t seq)
{
	for (struct pexchange *x = c->exchanges; x; x = x->next)
		if (x->seq == seq)
			return x;
	return NULL;
}

static void pexchange_remove(struct pconn *c, struct pexchange *x)
{
	for (struct pexchange **pp = &c->exchanges; *pp; pp = &(*pp)->next) {
		if (*pp == x) {
			*pp = x->next;
			free(x);
			return;
		}
	}
}

/* The value of the sessionId query parameter of a legacy POST /message?sessionId=...; "". */
static void target_session_id(const char *target, char *out, size_t n)
{
	const char *q = strchr(target, '?'), *p;
	size_t len;

	out[0] = '\0';
	for (p = q; p; p = strchr(p + 1, '&')) {
		if (strncmp(p + 1, "sessionId=", 10) == 0) {
			len = strcspn(p + 11, "&#");
			snprintf(out, n, "%.*s", (int)len, p + 11);
			return;
		}
	}
}

/* The MCP session an exchange belongs to, "" when none is named. */
static void exchange_session_id(const struct http_exchange *ex, char *out, size_t n)
{
	if (ex->req.session_id[0])
		snprintf(out, n, "%s", ex->req.session_id);
	else if (ex->endpoint_session_id[0])
		snprintf(out, n, "%s", ex->endpoint_session_id);
	else
		target_session_id(ex->target, out, n);
}

/* The correlation scope of an exchange's messages: its MCP session, else the exchange. */
static void exchange_scope(const struct pconn *c, const struct http_exchange *ex, char *out, size_t n)
{
	char sid[128];

	exchange_session_id(ex, sid, sizeof(sid));
	if (sid[0])
		snprintf(out, n, "s%s", sid);
	else
		snprintf(out, n, "e%" PRIu64 ".%" PRIu64, c->key.conn_id, ex->seq);
}

/* 2026-07-28 requests name their method in a header; earlier revisions never do. */
static bool exchange_is_2026(const struct http_exchange *ex)
{
	return ex->req.mcp_method[0] || strcmp(ex->req.protocol_version, "2026-07-28") >= 0;
}

static void conn_via(struct pconn *c, const struct http_exchange *ex, struct session_via *via, char *scope,
		     size_t scope_len)
{
	char sid[128];

	conn_net_update(c);
	exchange_session_id(ex, sid, sizeof(sid));
	if (!sid[0] && ex->resp.session_id[0]) /* initialize's answer names the new session */
		snprintf(sid, sizeof(sid), "%s", ex->resp.session_id);
	snprintf(c->session_id, sizeof(c->session_id), "%s", sid);
	c->net.session_id = c->session_id[0] ? c->session_id : NULL;
	exchange_scope(c, ex, scope, scope_len);
	memset(via, 0, sizeof(*via));
	via->scope = scope;
	via->client = c->net.client;
	via->net = &c->net;
}

/* The exchange is over: the requests it carried and did not answer are settled (see the
 * top of this file), and it is told as an EV_HTTP event. */
static void exchange_end(struct pconn *c, const struct http_exchange *ex)
{
	struct pexchange *x = pexchange_find(c, ex->seq);
	struct sonde_event ev = { .type = EV_HTTP, .ts_ns = ex->ts_resp_last ? ex->ts_resp_last : ex->ts_req_last };
	struct session_via via;
	char scope[SESSION_SCOPE_MAX];
	int why = -1;

	c->t->env.stats->http_exchanges++;
	if (c->verdict != HTTP_MCP) {
		if (x)
			pexchange_remove(c, x);
		return;
	}
	conn_via(c, ex, &via, scope, sizeof(scope));
	via.http_status = ex->status;
	if (ex->status >= 400)
		why = SESSION_HTTP_FAILED;
	else if (ex->end == HTTP_END_CANCELLED || (ex->end == HTTP_END_CLOSED && exchange_is_2026(ex)))
		why = SESSION_HTTP_CANCELLED;
	else if (ex->end == HTTP_END_LOST || ex->end == HTTP_END_ABANDONED)
		why = SESSION_HTTP_LOST;
	ev.http.method = ex->method;
	ev.http.target = ex->target;
	ev.http.status = ex->status;
	ev.http.end = http_end_name(ex->end);
	ev.http.sse = ex->sse;
	ev.http.mcp_method = ex->req.mcp_method[0] ? ex->req.mcp_method : NULL;
	if (ex->ts_resp_last && ex->ts_req_first && ex->ts_resp_last > ex->ts_req_first)
		ev.http.duration_ns = ex->ts_resp_last - ex->ts_req_first;
	if (x) {
		if (!ev.http.mcp_method && x->mcp_method[0])
			ev.http.mcp_method = x->mcp_method;
		ev.http.requests = x->requests;
		via.scope = x->scope;
		for (unsigned i = 0; why >= 0 && i < x->nids; i++)
			ev.http.unanswered += session_on_unanswered(c->sess, &via, x->ids[i], (enum session_unanswered)why,
								    ev.ts_ns);
	}
	ev.http.failed = ex->status >= 400 || ev.http.unanswered > 0 || (!ex->status && ev.http.requests > 0);
	ev.net = &c->net;
	session_emit(c->sess, &ev);
	if (x) /* after the event, which may name its method */
		pexchange_remove(c, x);
}

static void conn_on_exchange(void *ctx, const struct http_exchange *ex, enum http_phase phase)
{
	struct pconn *c = ctx;
	struct pexchange *x;

	if (phase == HTTP_PHASE_REQUEST && !pexchange_find(c, ex->seq) && (x = calloc(1, sizeof(*x)))) {
		x->seq = ex->seq;
		x->next = c->exchanges;
		c->exchanges = x;
	} else if (phase == HTTP_PHASE_END) {
		exchange_end(c, ex);
	}
}

/* --- payloads ----------------------------------------------------------------------- */

/* 2026-07-28: Mcp-Method names the body's method, Mcp-Name its params.name (or uri). */
static const char *header_mismatch(const struct http_exchange *ex, const struct rpc_msg *m)
{
	const char *name = m->name ? m->name : m->uri;

	if (ex->req.mcp_method[0] && (!m->method || strcmp(ex->req.mcp_method, m->method) != 0))
		return "Mcp-Method";
	if (ex->req.mcp_name[0] && m->kind == RPC_REQUEST && (!name || strcmp(ex->req.mcp_name, name) != 0))
		return "Mcp-Name";
	return NULL;
}

static void conn_on_message(void *ctx, const struct rpc_msg *m)
{
	struct payload_ctx *d = ctx;
	const struct http_payload *p = d->p;
	struct pexchange *x = d->x;

	d->via.header_mismatch = NULL;
	if (p->source == HTTP_SRC_REQUEST_BODY && (m->kind == RPC_REQUEST || m->kind == RPC_NOTIFICATION)) {
		d->via.header_mismatch = header_mismatch(p->ex, m);
		if (x && !x->mcp_method[0])
			snprintf(x->mcp_method, sizeof(x->mcp_method), "%s", m->method);
		if (x && m->kind == RPC_REQUEST) {
			x->requests++;
			if (x->nids < CONNS_EXCHANGE_IDS)
				snprintf(x->ids[x->nids++], RPC_ID_MAX, "%s", m->id);
			else
				d->c->t->env.stats->http_unsettled++;
		}
	}
	/* An error answer without id: the peer could not read the request. Over HTTP the
	 * exchange says which one it was, when its body held one request. */
	d->via.id = NULL;
	if (m->kind == RPC_ERROR && !m->id[0] && p->source != HTTP_SRC_REQUEST_BODY && x && x->requests == 1)
		d->via.id = x->ids[0];
	if (d->c->t->env.admit && !d->c->t->env.admit(d->c->t->env.ctx, d->c->key.tgid, m, p->dir))
		return;
	session_on_message_via(d->c->sess, &d->via, p->dir, m, &p->frame);
}

static void conn_on_payload(void *ctx, const struct http_payload *p)
{
	struct pconn *c = ctx;
	struct payload_ctx d = { .c = c, .p = p, .x = pexchange_find(c, p->ex->seq) };
	char scope[SESSION_SCOPE_MAX];

	conn_via(c, p->ex, &d.via, scope, sizeof(scope));
	if (p->source != HTTP_SRC_REQUEST_BODY)
		d.via.http_status = p->ex->status;
	if (d.x && !d.x->scope[0])
		snprintf(d.x->scope, sizeof(d.x->scope), "%s", scope);
	if (rpc_decode(&p->frame, conn_on_message, &d) < 0)
		session_on_invalid_via(c->sess, &d.via, &p->frame, false);
}

static void conn_on_verdict(void *ctx, enum http_verdict v)
{
	struct pconn *c = ctx;
	struct conns *t = c->t;

	c->verdict = v;
	if (v == HTTP_MCP) {
		t->env.stats->conns_mcp++;
		return;
	}
	if (!http_verdict_final(v))
		return;
	/* Freed after the call that reached it (a callback must not free its connection). */
	t->env.stats->conns_set_aside++;
	if (t->env.ignore)
		t->env.ignore(t->env.ignore_ctx, c->key.tgid, c->dev, c->ino, c->key.conn_id);
}

static const struct http_callbacks conn_http_callbacks = {
	.on_payload = conn_on_payload,
	.on_exchange = conn_on_exchange,
	.on_verdict = conn_on_verdict,
};

/* --- streams ------------------------------------------------------------------------ */

static void side_feed(void *ctx, const char *p, size_t n, uint64_t ts_ns)
{
	struct pconn_side *s = ctx;

	if (s->c->http)
		http_conn_feed(s->c->http, s->dir, p, n, ts_ns);
}

static void side_gap(void *ctx, uint64_t lost)
{
	struct pconn_side *s = ctx;

	if (s->c->http)
		http_conn_gap(s->c->http, s->dir, lost);
}

static void side_cut(void *ctx, uint64_t len, uint64_t ts_ns)
{
	struct pconn_side *s = ctx;

	if (s->c->http)
		http_conn_cut(s->c->http, s->dir, len, ts_ns);
}

static const struct stream_ops conn_stream_ops = { .feed = side_feed, .gap = side_gap, .cut = side_cut };

/* After bytes were delivered: losses told, a set-aside connection's decoder freed. */
static void conn_settle(struct pconn *c, uint64_t ts_ns)
{
	for (int d = 0; d < 2; d++)
		pipeline_stream_losses(c->t->env.stats, c->sess, &c->s[d].stats, &c->reported[d], -1, &c->net, ts_ns);
	if (c->http && http_verdict_final(c->verdict)) {
		struct http_stats hs;

		http_conn_stats(c->http, &hs);
		c->t->env.stats->conn_ignored_bytes += hs.ignored_bytes;
		conn_release(c);
	}
	if (!c->http)
		return;
	if (c->s[0].nheld || c->s[1].nheld) {
		if (!c->held_since_ns)
			c->held_since_ns = ts_ns;
	} else {
		c->held_since_ns = 0;
	}
}

static void conn_flush(struct pconn *c, uint64_t ts_ns)
{
	for (int d = 0; d < 2 && c->http; d++)
		stream_flush(&c->s[d], NULL, NULL);
	conn_settle(c, ts_ns);
}

void conns_on_data(struct conns *t, const struct msd_data_rec *d)
{
	struct pconn *c = conn_find(t, d->hdr.tgid, d->conn_id);
	enum msd_dir dir = d->dir & 1 ? MSD_DIR_WRITE : MSD_DIR_READ;

	if (!c && !(c = conn_new(t, d->hdr.tgid, d->conn_id, d->file_ino, d->file_dev, d->family, false, d->hdr.ts_ns)))
		return;
	conn_touch(t, c);
	if (!c->http) { /* set aside: the kernel has not heard yet */
		t->env.stats->conn_ignored_bytes += d->cap_len;
		return;
	}
	t->env.stats->data_bytes += d->cap_len;
	if (d->flags & MSD_DATA_TRUNCATED)
		stream_hole(&c->s[dir], d->hole_off, d->hole_len,
			    (d->flags & MSD_DATA_CUT) ? STREAM_HOLE_CUT : STREAM_HOLE_LOST, d->hdr.ts_ns, NULL, NULL);
	if (d->cap_len) {
		stream_feed(&c->s[dir], d->stream_off, d->data, d->cap_len, d->hdr.ts_ns, NULL, NULL);
	} else if (dir == MSD_DIR_READ && d->syscall_len == 0 && !(d->flags & (MSD_DATA_UNCAPTURED | MSD_DATA_SHORT))) {
		/* A read returned 0: the peer closed its side. Whatever was held comes first. */
		stream_flush(&c->s[dir], NULL, NULL);
		if (c->http)
			http_conn_eof(c->http, dir, d->hdr.ts_ns);
	}
	conn_settle(c, d->hdr.ts_ns);
}

void conns_on_record(struct conns *t, const struct msd_conn_rec *r)
{
	struct pconn *c = conn_find(t, r->hdr.tgid, r->conn_id);

	switch (r->event) {
	case MSD_CONN_ACCEPT:
	case MSD_CONN_CONNECT:
	case MSD_CONN_SEEN:
		if (!c && !(c = conn_new(t, r->hdr.tgid, r->conn_id, r->file_ino, r->file_dev, r->family,
					 r->event != MSD_CONN_SEEN, r->hdr.ts_ns)))
			return;
		conn_learn_addresses(c, r);
		conn_net_update(c);
		break;
	case MSD_CONN_SHUTDOWN:
		/* SHUT_WR and SHUT_RDWR end what the process writes. */
		if (c && c->http && (r->how == SHUT_WR || r->how == SHUT_RDWR)) {
			stream_flush(&c->s[MSD_DIR_WRITE], NULL, NULL);
			if (c->http)
				http_conn_eof(c->http, MSD_DIR_WRITE, r->hdr.ts_ns);
			conn_settle(c, r->hdr.ts_ns);
		}
		break;
	case MSD_CONN_CLOSE:
		if (!c)
			return;
		conn_flush(c, r->hdr.ts_ns);
		if (c->http)
			http_conn_close(c->http, r->hdr.ts_ns);
		conn_free(t, c);
		break;
	default:
		break;
	}
}

void conns_flush_process(struct conns *t, uint32_t tgid, uint64_t ts_ns)
{
	struct pconn *c, *tmp;

	HASH_ITER(hh, t->by_key, c, tmp)
		if (c->key.tgid == tgid && c->held_since_ns)
			conn_flush(c, ts_ns);
}

void conns_end_process(struct conns *t, uint32_t tgid)
{
	struct pconn *c, *tmp;

	HASH_ITER(hh, t->by_key, c, tmp)
		if (c->key.tgid == tgid)
			conn_free(t, c);
}

void conns_tick(struct conns *t, uint64_t ref_ns, uint64_t now_ns)
{
	struct pconn *c, *tmp;

	HASH_ITER(hh, t->by_key, c, tmp)
		if (c->held_since_ns && ref_ns > c->held_since_ns && ref_ns - c->held_since_ns > HOLD_TIMEOUT_NS)
			conn_flush(c, now_ns);
}

void conns_finish(struct conns *t, uint64_t now_ns)
{
	struct pconn *c, *tmp;

	HASH_ITER(hh, t->by_key, c, tmp)
		if (c->http)
			conn_flush(c, now_ns);
}

void conns_free(struct conns *t)
{
	struct pconn *c, *tmp;

	if (!t)
		return;
	HASH_ITER(hh, t->by_key, c, tmp)
		conn_free(t, c);
	free(t);
}

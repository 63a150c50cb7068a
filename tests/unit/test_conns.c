/* test_conns.c -- the HTTP transport stage, through the whole pipeline.
 *
 * Real sessions of server-everything recorded with the official SDK (tests/data/http, see
 * record.mjs there) are turned into the records the kernel would have written, as seen by
 * the server process and as seen by the client process, and fed to a pipeline: the call
 * events must say what the client logged (ids, methods, outcomes, which side made the
 * call), the exchanges that failed must be told, and nothing may come out of connections
 * that do not carry MCP. Then the scopes: two clients with the same ids on one server. And a
 * server found by its HTTP traffic (watch --all): told nothing until its first MCP method,
 * let go when it serves JSON-RPC that is not MCP. */
#include <resolv.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "mcpsonde/pipeline.h"

#define PID 5151
#define SERVER_PORT 3001
#define MAX_CONNS 64

struct collect {
	struct sink base;
	json_t *events; /* event_render objects, EV_MESSAGE excluded */
	unsigned ignored; /* connections the pipeline asked the kernel to ignore */
};

static void collect_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct collect *c = (struct collect *)s;
	struct outbuf out = { 0 };
	json_t *o;

	if (ev->type == EV_MESSAGE)
		return;
	event_render(&out, ev, NULL);
	o = json_loadb(out.data, out.len, 0, NULL);
	assert_non_null(o);
	json_array_append_new(c->events, o);
	outbuf_free(&out);
}

static void collect_ignore(void *ctx, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id)
{
	(void)tgid, (void)dev, (void)ino, (void)conn_id;
	((struct collect *)ctx)->ignored++;
}

struct fixture {
	struct collect sink;
	struct sink_list sinks;
	struct pipeline *p;
	uint64_t off[MAX_CONNS * 4][2]; /* by conn id, then enum msd_dir */
};

static struct fixture *fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pipeline_opts o;

	pipeline_opts_default(&o);
	f->sink.base.on_event = collect_on_event;
	f->sink.events = json_array();
	sinks_add(&f->sinks, &f->sink.base);
	f->p = pipeline_new(&o, &f->sinks);
	pipeline_set_conn_ignore(f->p, collect_ignore, &f->sink);
	return f;
}

static void fixture_free(struct fixture *f)
{
	pipeline_free(f->p);
	json_decref(f->sink.events);
	free(f);
}

/* --- records as the kernel writes them -------------------------------------------- */

static void conn_event(struct fixture *f, uint64_t conn, uint8_t event, uint64_t ts, bool client)
{
	struct msd_conn_rec r = { .hdr = { .kind = MSD_REC_CONN, .abi = MSD_ABI_VERSION, .size = sizeof(r),
					   .ts_ns = ts, .tgid = PID, .tid = PID } };
	uint8_t lo[4] = { 127, 0, 0, 1 };

	r.conn_id = conn;
	r.file_ino = 7000 + conn;
	r.file_dev = 9;
	r.event = event;
	r.family = AF_INET;
	memcpy(r.local_addr, lo, 4);
	memcpy(r.peer_addr, lo, 4);
	r.local_port = client ? (uint16_t)(40000 + conn) : SERVER_PORT;
	r.peer_port = client ? SERVER_PORT : (uint16_t)(40000 + conn);
	pipeline_feed(f->p, &r.hdr);
}

static void conn_data(struct fixture *f, uint64_t conn, enum msd_dir dir, uint64_t ts, const void *data, size_t len)
{
	struct msd_data_rec *d = calloc(1, sizeof(*d) + len);

	d->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = (uint32_t)(sizeof(*d) + len),
				       .ts_ns = ts, .tgid = PID, .tid = PID };
	d->fd = 20 + (int)conn;
	d->dir = (uint8_t)dir;
	d->role = MSD_ROLE_CONN;
	d->fd_kind = MSD_FD_SOCKET;
	d->family = AF_INET;
	d->syscall = dir == MSD_DIR_READ ? MSD_SYS_READ : MSD_SYS_WRITE;
	d->flags = MSD_DATA_LAST;
	d->syscall_len = len;
	d->stream_off = f->off[conn][dir];
	d->cap_len = (uint32_t)len;
	d->file_ino = 7000 + conn;
	d->file_dev = 9;
	d->conn_id = conn;
	memcpy(d->data, data, len);
	f->off[conn][dir] += len;
	pipeline_feed(f->p, &d->hdr);
	free(d);
}

/* The process read 0 bytes: the peer closed its side. */
static void conn_eof(struct fixture *f, uint64_t conn, uint64_t ts)
{
	struct msd_data_rec d = { .hdr = { .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = sizeof(d),
					   .ts_ns = ts, .tgid = PID, .tid = PID } };

	d.dir = MSD_DIR_READ;
	d.role = MSD_ROLE_CONN;
	d.flags = MSD_DATA_LAST;
	d.stream_off = f->off[conn][MSD_DIR_READ];
	d.file_ino = 7000 + conn;
	d.file_dev = 9;
	d.conn_id = conn;
	pipeline_feed(f->p, &d.hdr);
}

/* --- recordings ------------------------------------------------------------------- */

struct replace {
	const char *from, *to; /* same length: a session id made another */
};

/* One recording to feed: tests/data/http/NAME.rec.jsonl, its connection ids shifted by
 * conn_base, its bytes rewritten by rep. */
struct source {
	const char *name;
	uint64_t conn_base;
	const struct replace *rep;
	json_t *lines; /* loaded */
	size_t next;
};

static json_t *load_recording(const char *name)
{
	char path[256], *line = NULL;
	json_t *lines = json_array();
	size_t cap = 0;
	FILE *in;

	snprintf(path, sizeof(path), "tests/data/http/%s.rec.jsonl", name);
	in = fopen(path, "r");
	if (!in)
		fail_msg("cannot open %s: run from the repository root", path);
	while (getline(&line, &cap, in) > 0) {
		json_t *o = json_loads(line, 0, NULL);

		assert_non_null(o);
		json_array_append_new(lines, o);
	}
	free(line);
	fclose(in);
	return lines;
}

static void feed_line(struct fixture *f, const struct source *src, const json_t *o, bool client)
{
	json_int_t c = json_integer_value(json_object_get(o, "c"));
	const char *d = json_string_value(json_object_get(o, "d"));
	const char *b64 = json_string_value(json_object_get(o, "b"));
	uint64_t t = 1000000000ull + (uint64_t)json_integer_value(json_object_get(o, "t"));
	uint64_t conn = src->conn_base + (uint64_t)c;
	/* c2s is what the server read and the client wrote */
	enum msd_dir dir = d && (strcmp(d, "c2s") == 0) != client ? MSD_DIR_READ : MSD_DIR_WRITE;

	assert_true(c > 0 && c < MAX_CONNS);
	if (json_is_true(json_object_get(o, "open"))) {
		conn_event(f, conn, client ? MSD_CONN_CONNECT : MSD_CONN_ACCEPT, t, client);
	} else if (json_is_true(json_object_get(o, "fin"))) {
		if (dir == MSD_DIR_READ)
			conn_eof(f, conn, t);
	} else {
		size_t n = strlen(b64);
		unsigned char *data = malloc(n);
		int len = b64_pton(b64, data, n);

		assert_true(len > 0);
		for (const struct replace *r = src->rep; r && r->from; r++) {
			size_t k = strlen(r->from);
			for (unsigned char *p = data; (p = memmem(p, (size_t)len - (size_t)(p - data), r->from, k)); p += k)
				memcpy(p, r->to, k);
		}
		conn_data(f, conn, dir, t, data, (size_t)len);
		free(data);
	}
}

static uint64_t line_time(const struct source *s)
{
	return (uint64_t)json_integer_value(json_object_get(json_array_get(s->lines, s->next), "t"));
}

/* Feeds the recordings as the server or the client process saw them, interleaved by time
 * (on a tie, in turn), then closes every connection and ends the input. */
static void feed_recordings(struct fixture *f, struct source *srcs, size_t n, bool client)
{
	uint64_t last = 1000000000ull;
	size_t turn = 0;

	for (size_t i = 0; i < n; i++)
		srcs[i].lines = load_recording(srcs[i].name);
	for (;;) {
		struct source *pick = NULL;

		for (size_t k = 0; k < n; k++) {
			struct source *s = &srcs[(turn + k) % n];
			if (s->next < json_array_size(s->lines) && (!pick || line_time(s) < line_time(pick)))
				pick = s;
		}
		if (!pick)
			break;
		turn++;
		last = 1000000000ull + line_time(pick);
		feed_line(f, pick, json_array_get(pick->lines, pick->next++), client);
	}
	for (size_t i = 0; i < n; i++) {
		for (uint64_t c = 1; c < MAX_CONNS; c++) {
			uint64_t conn = srcs[i].conn_base + c;
			if (f->off[conn][0] + f->off[conn][1])
				conn_event(f, conn, MSD_CONN_CLOSE, ++last, client);
		}
		json_decref(srcs[i].lines);
	}
	pipeline_finish(f->p, last + 1);
}

static void feed_recording(struct fixture *f, const char *name, bool client)
{
	struct source src = { .name = name };

	feed_recordings(f, &src, 1, client);
}

/* --- what came out ---------------------------------------------------------------- */

static const char *str(const json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));
	return v ? v : "";
}

/* The call event with id (JSON text) and direction, which must be unique. */
static json_t *call_of(struct fixture *f, const char *id, const char *direction, const char *session_id)
{
	json_t *found = NULL, *e;
	size_t i;

	json_array_foreach(f->sink.events, i, e) {
		char *eid;
		bool match;

		if (strcmp(str(e, "type"), "call") != 0 || strcmp(str(e, "direction"), direction) != 0)
			continue;
		if (session_id && strcmp(str(json_object_get(e, "net"), "session_id"), session_id) != 0)
			continue;
		eid = json_dumps(json_object_get(e, "id"), JSON_ENCODE_ANY);
		match = strcmp(eid, id) == 0;
		free(eid);
		if (!match)
			continue;
		if (found)
			fail_msg("two call events for id %s %s", id, direction);
		found = e;
	}
	if (!found)
		fail_msg("no call event for id %s %s", id, direction);
	return found;
}

static unsigned count_type(struct fixture *f, const char *type)
{
	unsigned n = 0;
	json_t *e;
	size_t i;

	json_array_foreach(f->sink.events, i, e)
		n += strcmp(str(e, "type"), type) == 0;
	return n;
}

/* Every request the client logged (NAME.client.jsonl) is one call event with its outcome;
 * its direction is the MCP one: client_to_server for the client's requests. */
static unsigned check_client_log(struct fixture *f, const char *name, const char *session_id)
{
	char path[256], *line = NULL;
	json_t *sent = json_object(); /* id text -> method, of the client's requests */
	json_t *server_sent = json_object();
	unsigned checked = 0;
	size_t cap = 0;
	FILE *in;

	snprintf(path, sizeof(path), "tests/data/http/%s.client.jsonl", name);
	assert_non_null(in = fopen(path, "r"));
	while (getline(&line, &cap, in) > 0) {
		json_t *o = json_loads(line, 0, NULL), *m;
		bool send = (m = json_object_get(o, "send")) != NULL;
		char *id;

		if (!m && !(m = json_object_get(o, "recv"))) {
			json_decref(o);
			continue;
		}
		id = json_object_get(m, "id") ? json_dumps(json_object_get(m, "id"), JSON_ENCODE_ANY) : NULL;
		if (id && json_object_get(m, "method")) {
			/* a request: the client's, or the server's (sampling) */
			json_object_set_new(send ? sent : server_sent, id, json_string(str(m, "method")));
		} else if (id) {
			bool to_client = !send;
			json_t *e = call_of(f, id, to_client ? "client_to_server" : "server_to_client", session_id);
			const json_t *err = json_object_get(m, "error");
			const char *want = err ? "error" : json_is_true(json_object_get(json_object_get(m, "result"), "isError")) ? "tool_error" : "ok";

			const char *method = json_string_value(json_object_get(to_client ? sent : server_sent, id));

			assert_non_null(method);
			assert_string_equal(str(e, "method"), method);
			assert_string_equal(str(e, "status"), want);
			if (err)
				assert_int_equal(json_integer_value(json_object_get(e, "error_code")),
						 json_integer_value(json_object_get(err, "code")));
			checked++;
		}
		free(id);
		json_decref(o);
	}
	free(line);
	fclose(in);
	json_decref(sent);
	json_decref(server_sent);
	return checked;
}

static json_t *http_failed(struct fixture *f, unsigned status)
{
	json_t *e;
	size_t i;

	json_array_foreach(f->sink.events, i, e) {
		if (strcmp(str(e, "type"), "http") == 0 && json_integer_value(json_object_get(e, "status")) == status &&
		    json_is_true(json_object_get(e, "failed")))
			return e;
	}
	fail_msg("no failed http event with status %u", status);
	return NULL;
}

/* --- tests -------------------------------------------------------------------------- */

/* server-everything in streamableHttp mode, seen by the server: every call, the session's
 * answers over SSE, the server's own sampling request answered by a POST; then a POST with
 * the deleted session (400, an error without id: the exchange pairs it with its request)
 * and a POST to an unknown path (404 in HTML: no JSON-RPC answer at all). */
static void test_recorded_streamable_server(void **state)
{
	struct fixture *f = fixture_new();
	json_t *e;

	(void)state;
	feed_recording(f, "streamable", false);
	assert_true(check_client_log(f, "streamable", NULL) >= 11);
	e = call_of(f, "0", "client_to_server", NULL);
	assert_string_equal(str(e, "method"), "initialize");
	assert_string_equal(str(json_object_get(e, "net"), "transport"), "tcp");
	assert_string_equal(str(json_object_get(e, "net"), "side"), "server");
	assert_string_equal(str(json_object_get(e, "net"), "local"), "127.0.0.1:3001");
	/* the answer named the session the call started */
	assert_string_equal(str(json_object_get(e, "net"), "session_id"), "7018d153-2aff-49ea-b06b-eec6ef924120");
	e = call_of(f, "0", "server_to_client", NULL);
	assert_string_equal(str(e, "method"), "sampling/createMessage");
	e = call_of(f, "1000", "client_to_server", NULL);
	assert_string_equal(str(e, "status"), "error");
	assert_int_equal(json_integer_value(json_object_get(e, "error_code")), -32000);
	assert_int_equal(json_integer_value(json_object_get(e, "http_status")), 400);
	e = call_of(f, "1001", "client_to_server", NULL);
	assert_string_equal(str(e, "status"), "http_error");
	assert_int_equal(json_integer_value(json_object_get(e, "http_status")), 404);
	e = http_failed(f, 404);
	assert_string_equal(str(e, "target"), "/no-such-path");
	assert_string_equal(str(e, "mcp_method"), "tools/list");
	http_failed(f, 400);
	assert_int_equal(count_type(f, "invalid"), 0);
	assert_int_equal(count_type(f, "protocol_error"), 0);
	assert_int_equal(f->sink.ignored, 0);
	fixture_free(f);
}

/* The same session seen by the client process: its requests are the calls it made, to a
 * server known by its address and, once initialized, its serverInfo. */
static void test_recorded_streamable_client(void **state)
{
	struct fixture *f = fixture_new();
	json_t *e, *net;

	(void)state;
	feed_recording(f, "streamable", true);
	assert_true(check_client_log(f, "streamable", NULL) >= 11);
	e = call_of(f, "2", "client_to_server", NULL);
	assert_string_equal(str(e, "tool"), "echo");
	net = json_object_get(e, "net");
	assert_string_equal(str(net, "side"), "client");
	assert_string_equal(str(net, "server_address"), "127.0.0.1");
	assert_int_equal(json_integer_value(json_object_get(net, "server_port")), SERVER_PORT);
	assert_string_equal(str(json_object_get(net, "server_info"), "name"), "mcp-servers/everything");
	/* the server's request was handled by the client */
	assert_string_equal(str(call_of(f, "0", "server_to_client", NULL), "method"), "sampling/createMessage");
	assert_int_equal(count_type(f, "invalid"), 0);
	fixture_free(f);
}

/* The legacy HTTP+SSE transport: every POST gets 202, every answer comes on the GET stream
 * and is joined to its request through the endpoint's sessionId. A POST to a session that
 * does not exist is never answered: the client gave up and closed the connection. */
static void test_recorded_sse(void **state)
{
	struct fixture *f = fixture_new();
	json_t *e;

	(void)state;
	feed_recording(f, "sse", false);
	assert_true(check_client_log(f, "sse", NULL) >= 6);
	e = call_of(f, "1000", "client_to_server", NULL);
	assert_string_equal(str(e, "status"), "cancelled");
	assert_int_equal(count_type(f, "invalid"), 0);
	fixture_free(f);
}

/* The POST stream of a long-running tool is cut after two progress events; the client
 * resumes with GET and Last-Event-ID on a new connection, where the answer comes. */
static void test_recorded_resume(void **state)
{
	struct fixture *f = fixture_new();
	json_t *e;

	(void)state;
	feed_recording(f, "resume", false);
	check_client_log(f, "resume", NULL);
	e = call_of(f, "1", "client_to_server", NULL);
	assert_string_equal(str(e, "tool"), "trigger-long-running-operation");
	assert_string_equal(str(e, "status"), "ok");
	fixture_free(f);
}

/* Behind a compressing proxy: gzip and deflate bodies and event streams. */
static void test_recorded_gzip(void **state)
{
	struct fixture *f = fixture_new();

	(void)state;
	feed_recording(f, "gzip", false);
	assert_true(check_client_log(f, "gzip", NULL) >= 9);
	assert_int_equal(count_type(f, "invalid"), 0);
	fixture_free(f);
}

/* Two clients on one server, interleaved, both counting ids from 0: each call is matched
 * within its own MCP session. */
static void test_two_clients_same_ids(void **state)
{
	static const char sid[] = "7018d153-2aff-49ea-b06b-eec6ef924120", other[] = "7018d153-2aff-49ea-b06b-000000000002";
	const struct replace rep[] = { { sid, other }, { NULL, NULL } };
	struct source srcs[] = { { .name = "streamable" }, { .name = "streamable", .conn_base = MAX_CONNS, .rep = rep } };
	struct fixture *f = fixture_new();

	(void)state;
	feed_recordings(f, srcs, 2, false);
	assert_true(check_client_log(f, "streamable", sid) >= 10);
	assert_true(check_client_log(f, "streamable", other) >= 10);
	assert_int_equal(count_type(f, "invalid"), 0);
	fixture_free(f);
}

/* A POST of one tools/call, with a session, on connection conn of the server. */
static void post_call(struct fixture *f, uint64_t conn, int id, uint64_t *ts)
{
	char req[512], body[128];
	int blen = snprintf(body, sizeof(body),
			    "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}", id);
	int n = snprintf(req, sizeof(req),
			 "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMcp-Session-Id: s1\r\n"
			 "Content-Length: %d\r\n\r\n%s", blen, body);

	conn_event(f, conn, MSD_CONN_ACCEPT, ++*ts, false);
	conn_data(f, conn, MSD_DIR_READ, ++*ts, req, (size_t)n);
}

/* HTTP outcomes seen by the server: a call refused 401 (auth) and 503 without a JSON-RPC
 * answer is http_error with the status, its exchange a failed http event; a call whose
 * client closed the connection before any response is cancelled; one whose response may
 * have been in a capture gap is lost (with a loss event of the connection) once no answer
 * came within the stall threshold: never an error, never cancelled. */
static void test_http_outcomes(void **state)
{
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 38\r\n\r\n"
				 "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{}}  ";
	static const char unauthorized[] = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer\r\nContent-Length: 0\r\n\r\n";
	static const char unavailable[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
					  "Content-Length: 4\r\n\r\nbusy";
	struct fixture *f = fixture_new();
	uint64_t ts = 3000000000ull;
	json_t *e;

	(void)state;
	post_call(f, 1, 1, &ts);
	conn_data(f, 1, MSD_DIR_WRITE, ++ts, unauthorized, sizeof(unauthorized) - 1);
	post_call(f, 2, 2, &ts);
	conn_data(f, 2, MSD_DIR_WRITE, ++ts, unavailable, sizeof(unavailable) - 1);
	post_call(f, 3, 3, &ts);
	conn_eof(f, 3, ++ts);
	conn_event(f, 3, MSD_CONN_CLOSE, ++ts, false);
	post_call(f, 4, 4, &ts);
	conn_data(f, 4, MSD_DIR_WRITE, ++ts, ok, sizeof(ok) - 1);
	post_call(f, 5, 5, &ts);
	f->off[5][MSD_DIR_WRITE] += 71; /* the record of the response's head never arrived */
	conn_data(f, 5, MSD_DIR_WRITE, ++ts, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}", 36);
	conn_event(f, 5, MSD_CONN_CLOSE, ++ts, false);
	pipeline_tick(f->p, ts + 31000000000ull); /* a call whose answer may be lost: lost at the stall threshold */
	pipeline_finish(f->p, ts + 31000000001ull);

	e = call_of(f, "1", "client_to_server", "s1");
	assert_string_equal(str(e, "status"), "http_error");
	assert_int_equal(json_integer_value(json_object_get(e, "http_status")), 401);
	assert_string_equal(str(http_failed(f, 401), "mcp_method"), "tools/call");
	e = call_of(f, "2", "client_to_server", "s1");
	assert_string_equal(str(e, "status"), "http_error");
	assert_int_equal(json_integer_value(json_object_get(e, "http_status")), 503);
	http_failed(f, 503);
	assert_string_equal(str(call_of(f, "3", "client_to_server", "s1"), "status"), "cancelled");
	e = call_of(f, "4", "client_to_server", "s1");
	assert_string_equal(str(e, "status"), "ok");
	assert_int_equal(json_integer_value(json_object_get(e, "http_status")), 200);
	assert_string_equal(str(call_of(f, "5", "client_to_server", "s1"), "status"), "lost");
	assert_true(count_type(f, "loss") >= 1);
	assert_int_equal(count_type(f, "invalid"), 0);
	fixture_free(f);
}

/* A connection that is not HTTP (a database, an echo service) and one that is HTTP without
 * JSON-RPC (a health check, a REST API): set aside, the kernel told, no event at all. */
static void test_connections_without_mcp(void **state)
{
	static const char health_req[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char health_resp[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
					  "{\"ok\":true}";
	struct fixture *f = fixture_new();
	uint64_t ts = 2000000000ull;

	(void)state;
	conn_event(f, 1, MSD_CONN_CONNECT, ts, true);
	conn_data(f, 1, MSD_DIR_WRITE, ++ts, "*1\r\n$4\r\nPING\r\n", 14);
	conn_data(f, 1, MSD_DIR_READ, ++ts, "+PONG\r\n", 7);
	conn_event(f, 2, MSD_CONN_CONNECT, ++ts, true);
	for (int i = 0; i < 6; i++) {
		conn_data(f, 2, MSD_DIR_WRITE, ++ts, health_req, sizeof(health_req) - 1);
		conn_data(f, 2, MSD_DIR_READ, ++ts, health_resp, sizeof(health_resp) - 1);
	}
	conn_event(f, 1, MSD_CONN_CLOSE, ++ts, true);
	conn_event(f, 2, MSD_CONN_CLOSE, ++ts, true);
	pipeline_finish(f->p, ++ts);
	assert_int_equal(f->sink.ignored, 2);
	assert_int_equal(json_array_size(f->sink.events), 0);
	assert_int_equal(pipeline_stats(f->p)->conns_set_aside, 2);
	assert_int_equal(pipeline_stats(f->p)->conns_mcp, 0);
	fixture_free(f);
}

/* --- found by its HTTP traffic ------------------------------------------------------ */

struct hooks_seen {
	unsigned server, not_mcp;
};

static void seen_server(void *ctx, uint32_t tgid)
{
	(void)tgid;
	((struct hooks_seen *)ctx)->server++;
}

static void seen_not_mcp(void *ctx, uint32_t tgid)
{
	(void)tgid;
	((struct hooks_seen *)ctx)->not_mcp++;
}

/* The kernel found PID by a request it read (MSD_DISCOVER_HTTP): its channel is its stderr
 * only, and the connection is joined at the request's first byte (MSD_CONN_SEEN). */
static void discover_http(struct fixture *f, struct hooks_seen *h, uint64_t ts)
{
	struct msd_discover_rec d = { .hdr = { .kind = MSD_REC_DISCOVER, .abi = MSD_ABI_VERSION, .size = sizeof(d),
					       .ts_ns = ts, .tgid = PID, .tid = PID } };
	struct pipeline_hooks hooks = { .on_server = seen_server, .on_not_mcp = seen_not_mcp, .ctx = h };

	pipeline_set_hooks(f->p, &hooks);
	d.start_ns = 12000000000ull;
	d.flags = MSD_DISCOVER_HTTP;
	memcpy(d.comm, "node", 5);
	pipeline_feed(f->p, &d.hdr);
	conn_event(f, 1, MSD_CONN_SEEN, ts, false);
}

static void post_body(struct fixture *f, uint64_t conn, uint64_t *ts, const char *body, const char *answer)
{
	char req[1024], resp[1024];
	int n = snprintf(req, sizeof(req),
			 "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
			 "Accept: application/json, text/event-stream\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(body), body);
	int m = snprintf(resp, sizeof(resp),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 strlen(answer), answer);

	conn_data(f, conn, MSD_DIR_READ, *ts += 1000, req, (size_t)n);
	conn_data(f, conn, MSD_DIR_WRITE, *ts += 1000, resp, (size_t)m);
}

static json_t *first_of(struct fixture *f, const char *type)
{
	size_t i;
	json_t *e;

	json_array_foreach(f->sink.events, i, e)
		if (strcmp(str(e, "type"), type) == 0)
			return e;
	return NULL;
}

/* Seen from its initialize: a server once it read an MCP method, its session found by
 * discovery, over tcp, listening where its connection's local end is. */
static void test_discovered_http_server(void **state)
{
	struct fixture *f = fixture_new();
	struct hooks_seen h = { 0 };
	uint64_t ts = 3000000000ull;
	json_t *sess, *c;

	(void)state;
	discover_http(f, &h, ts);
	post_body(f, 1, &ts,
		  "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\","
		  "\"clientInfo\":{\"name\":\"agent\",\"version\":\"1\"}}}",
		  "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\","
		  "\"serverInfo\":{\"name\":\"srv\",\"version\":\"2\"}}}");
	post_body(f, 1, &ts, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}",
		  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}");
	pipeline_finish(f->p, ts += 1000);
	assert_int_equal(h.server, 1);
	assert_int_equal(h.not_mcp, 0);
	assert_non_null(sess = first_of(f, "session"));
	assert_string_equal(str(sess, "found"), "discovered");
	assert_string_equal(str(sess, "transport"), "tcp");
	assert_string_equal(str(sess, "listen"), "127.0.0.1:3001");
	assert_non_null(c = call_of(f, "0", "client_to_server", NULL));
	assert_string_equal(str(c, "method"), "initialize");
	assert_non_null(call_of(f, "1", "client_to_server", NULL));
	fixture_free(f);
}

/* An Ethereum node's JSON-RPC over HTTP showed "jsonrpc" to the kernel: no event, and after
 * PIPELINE_NOT_MCP_AFTER methods outside MCP it is let go. */
static void test_discovered_http_not_mcp(void **state)
{
	struct fixture *f = fixture_new();
	struct hooks_seen h = { 0 };
	uint64_t ts = 3000000000ull;

	(void)state;
	discover_http(f, &h, ts);
	for (int i = 0; i < PIPELINE_NOT_MCP_AFTER; i++) {
		assert_int_equal(h.not_mcp, 0);
		post_body(f, 1, &ts, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_blockNumber\",\"params\":[]}",
			  "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x10\"}");
	}
	assert_int_equal(h.not_mcp, 1);
	assert_int_equal(h.server, 0);
	assert_int_equal(count_type(f, "session") + count_type(f, "call"), 0);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_recorded_streamable_server),
		cmocka_unit_test(test_recorded_streamable_client),
		cmocka_unit_test(test_recorded_sse),
		cmocka_unit_test(test_recorded_resume),
		cmocka_unit_test(test_recorded_gzip),
		cmocka_unit_test(test_two_clients_same_ids),
		cmocka_unit_test(test_http_outcomes),
		cmocka_unit_test(test_connections_without_mcp),
		cmocka_unit_test(test_discovered_http_server),
		cmocka_unit_test(test_discovered_http_not_mcp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_pipeline.c -- crafted record sequences through the whole user-space pipeline.
 *
 * Each test feeds kernel-shaped records (msd_data_rec, msd_exit_rec...) into a pipeline and
 * checks the events a sink receives, rendered by event_render as the JSONL sink would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/pipeline.h"

#define PID 4242

struct collect {
	struct sink base;
	json_t *events; /* array of event_render objects, EV_MESSAGE excluded */
};

static void collect_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct collect *c = (struct collect *)s;
	struct event_format_opts fo = { .capture_values = false };
	struct outbuf out = { 0 };
	json_t *o;

	if (ev->type == EV_MESSAGE || ev->type == EV_TOOLS_LIST)
		return;
	event_render(&out, ev, &fo);
	o = json_loadb(out.data, out.len, 0, NULL);
	assert_non_null(o); /* every rendering is valid JSON */
	json_array_append_new(c->events, o);
	outbuf_free(&out);
}

struct fixture {
	struct collect sink;
	struct sink_list sinks;
	struct pipeline *p;
	uint64_t off[3][2];
	uint64_t ts;
};

static struct fixture *fixture_new(size_t max_frame)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct pipeline_opts o;

	pipeline_opts_default(&o);
	if (max_frame)
		o.max_frame = max_frame;
	f->sink.base.on_event = collect_on_event;
	f->sink.events = json_array();
	sinks_add(&f->sinks, &f->sink.base);
	f->p = pipeline_new(&o, &f->sinks);
	f->ts = 1000000000ull;
	return f;
}

static void fixture_free(struct fixture *f)
{
	pipeline_free(f->p);
	json_decref(f->sink.events);
	free(f);
}

/* One syscall's worth of bytes on (fd, dir) at time ts_ms (relative). */
static void feed_at(struct fixture *f, int fd, int dir, uint64_t off, uint64_t ts_ns, const char *data, size_t len)
{
	struct msd_data_rec *d = calloc(1, sizeof(*d) + len);

	d->hdr.kind = MSD_REC_DATA;
	d->hdr.abi = MSD_ABI_VERSION;
	d->hdr.size = (uint32_t)(sizeof(*d) + len);
	d->hdr.ts_ns = ts_ns;
	d->hdr.tgid = PID;
	d->hdr.tid = PID;
	d->fd = fd;
	d->dir = (uint8_t)dir;
	d->fd_kind = MSD_FD_SOCKET;
	d->flags = MSD_DATA_LAST;
	d->syscall_len = len;
	d->stream_off = off;
	d->cap_len = (uint32_t)len;
	memcpy(d->data, data, len);
	pipeline_feed(f->p, &d->hdr);
	free(d);
}

/* In order on (fd, dir), advancing the fixture's clock by step_us. */
static void feed(struct fixture *f, int fd, int dir, uint64_t step_us, const char *s)
{
	size_t len = strlen(s);

	f->ts += step_us * 1000;
	feed_at(f, fd, dir, f->off[fd][dir], f->ts, s, len);
	f->off[fd][dir] += len;
}

static void client(struct fixture *f, uint64_t step_us, const char *s)
{
	feed(f, 0, MSD_DIR_READ, step_us, s);
}

static void server(struct fixture *f, uint64_t step_us, const char *s)
{
	feed(f, 1, MSD_DIR_WRITE, step_us, s);
}

static void exit_with(struct fixture *f, uint32_t code)
{
	struct msd_exit_rec x = { .hdr = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION, .size = sizeof(x),
					   .tgid = PID, .tid = PID } };

	f->ts += 1000000;
	x.hdr.ts_ns = f->ts;
	x.exit_code = code;
	memcpy(x.comm, "node", 5);
	pipeline_feed(f->p, &x.hdr);
}

/* The n-th event of a type (0-based), or NULL. */
static json_t *nth(struct fixture *f, const char *type, size_t n)
{
	size_t i;
	json_t *e;

	json_array_foreach(f->sink.events, i, e)
		if (strcmp(json_string_value(json_object_get(e, "type")), type) == 0 && n-- == 0)
			return e;
	return NULL;
}

static size_t count(struct fixture *f, const char *type)
{
	size_t n = 0;

	while (nth(f, type, n))
		n++;
	return n;
}

static const char *str(json_t *e, const char *key)
{
	return json_string_value(json_object_get(e, key));
}

static long long num(json_t *e, const char *key)
{
	return json_integer_value(json_object_get(e, key));
}

/* The id of a call event, as JSON text: 1 vs "1". */
static char *id_text(json_t *e)
{
	return json_dumps(json_object_get(e, "id"), JSON_ENCODE_ANY);
}

static void test_split_across_syscalls(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *c;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"argu");
	client(f, 100, "ments\":{\"message\":\"secret\"}},\"jsonrpc\":\"2.0\",\"id\":0}\n");
	server(f, 250, "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"secret\"}]},\"jsonrpc\":\"2.0\",\"id\":0}\n");
	c = nth(f, "call", 0);
	assert_non_null(c);
	assert_string_equal(str(c, "method"), "tools/call");
	assert_string_equal(str(c, "tool"), "echo");
	assert_string_equal(str(c, "status"), "ok");
	assert_int_equal(num(c, "id"), 0);
	/* from the read that completed the request to the write of the response: 250 us */
	assert_true(json_real_value(json_object_get(c, "duration_ms")) == 0.25);
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "arg_keys"), 0)), "message");
	{
		char *all = json_dumps(f->sink.events, 0);
		assert_null(strstr(all, "secret"));
		free(all);
	}
	fixture_free(f);
}

static void test_several_messages_and_partial_in_one_read(void **state)
{
	struct fixture *f = fixture_new(0);
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}\n"
		     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"pro");
	assert_int_equal(count(f, "call"), 0);
	client(f, 10, "gress\":1}}\n");
	assert_int_equal(count(f, "notification"), 1);
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[]}}\n");
	assert_int_equal(count(f, "call"), 2);
	assert_string_equal(str(nth(f, "call", 0), "method"), "ping");
	assert_string_equal(str(nth(f, "call", 1), "method"), "tools/list");
	assert_string_equal(str(nth(f, "notification", 0), "direction"), "client_to_server");
	fixture_free(f);
}

static void test_responses_out_of_order(void **state)
{
	struct fixture *f = fixture_new(0);
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"slow\"}}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"fast\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n");
	server(f, 1000, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n");
	assert_string_equal(str(nth(f, "call", 0), "tool"), "fast");
	assert_string_equal(str(nth(f, "call", 1), "tool"), "slow");
	assert_true(json_real_value(json_object_get(nth(f, "call", 1), "duration_ms")) == 1.02);
	fixture_free(f);
}

static void test_integer_and_string_ids_differ(void **state)
{
	struct fixture *f = fixture_new(0);
	char *a, *b;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"int\"}}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"method\":\"tools/call\",\"params\":{\"name\":\"str\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":{\"content\":[]}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32603,\"message\":\"boom\"}}\n");
	assert_string_equal(str(nth(f, "call", 0), "tool"), "str");
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	assert_string_equal(str(nth(f, "call", 1), "tool"), "int");
	assert_string_equal(str(nth(f, "call", 1), "status"), "error");
	assert_int_equal(num(nth(f, "call", 1), "error_code"), -32603);
	a = id_text(nth(f, "call", 0));
	b = id_text(nth(f, "call", 1));
	assert_string_equal(a, "\"1\"");
	assert_string_equal(b, "1");
	free(a);
	free(b);
	fixture_free(f);
}

static void test_gap_inside_a_message(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *a = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"lost\"";
	const char *b = "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"kept\"}}\n";
	json_t *loss;
	(void)state;

	feed_at(f, 0, MSD_DIR_READ, 0, 1000, a, strlen(a));
	/* 40 bytes (the rest of message 7 and its newline) never arrive: a ring buffer drop */
	feed_at(f, 0, MSD_DIR_READ, strlen(a) + 40, 2000, b, strlen(b));
	pipeline_tick(f->p, 100000000ull);
	server(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"content\":[]}}\n");
	loss = nth(f, "loss", 0);
	assert_non_null(loss);
	assert_string_equal(str(loss, "reason"), "gap");
	assert_int_equal(num(loss, "bytes"), 40);
	/* message 8 started right after the gap: the resync waits for the next newline, so it
	 * is dropped too; the stream recovers with the following message */
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"after\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}\n");
	assert_int_equal(count(f, "call"), 1);
	assert_string_equal(str(nth(f, "call", 0), "tool"), "after");
	fixture_free(f);
}

/* The kernel copied 64 bytes of a 200-byte write and flagged the rest truncated: the loss is
 * reported at once (not after a hold timeout) and the next line comes through. */
static void test_truncated_syscall_is_a_gap_at_once(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *next = "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
	struct msd_data_rec *d = calloc(1, sizeof(*d) + 64);
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	d->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = sizeof(*d) + 64,
				       .ts_ns = f->ts + 10, .tgid = PID, .tid = PID };
	d->fd = 1;
	d->dir = MSD_DIR_WRITE;
	d->flags = MSD_DATA_TRUNCATED | MSD_DATA_LAST;
	d->syscall_len = 200;
	d->cap_len = 64;
	memset(d->data, 'x', 64);
	memcpy(d->data, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"pad\":\"", 37);
	pipeline_feed(f->p, &d->hdr);
	free(d);
	assert_non_null(nth(f, "loss", 0));
	assert_int_equal(num(nth(f, "loss", 0), "bytes"), 136);
	feed_at(f, 1, MSD_DIR_WRITE, 200, f->ts + 20, "\n", 1); /* end of the truncated line */
	feed_at(f, 1, MSD_DIR_WRITE, 201, f->ts + 30, next, strlen(next));
	assert_int_equal(count(f, "call"), 1);
	assert_int_equal(num(nth(f, "call", 0), "id"), 2);
	fixture_free(f);
}

static void test_crlf_and_invalid_stdout(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *inv;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\r\n");
	server(f, 10, "Debug: connecting to database...\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\r\n");
	feed(f, 2, MSD_DIR_WRITE, 10, "Traceback (most recent call last):\n  File \"x.py\"\n");
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	inv = nth(f, "invalid", 0);
	assert_non_null(inv);
	assert_int_equal(num(inv, "fd"), 1);
	assert_string_equal(str(inv, "preview"), "Debug: connecting to database...");
	assert_string_equal(str(nth(f, "stderr", 0), "line"), "Traceback (most recent call last):");
	assert_string_equal(str(nth(f, "stderr", 1), "line"), "  File \"x.py\"");
	fixture_free(f);
}

static char *big_response(size_t payload, int id, bool is_error)
{
	char *s = malloc(payload + 256);
	int n = sprintf(s, "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"");

	memset(s + n, 'x', payload);
	sprintf(s + n + payload, "\"}]%s},\"jsonrpc\":\"2.0\",\"id\":%d}\n", is_error ? ",\"isError\":true" : "", id);
	return s;
}

static void test_one_mib_message(void **state)
{
	struct fixture *f = fixture_new(0);
	char *resp = big_response(1 << 20, 5, false);
	size_t len = strlen(resp), off;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{}},\"jsonrpc\":\"2.0\",\"id\":5}\n");
	/* as the kernel delivers it: 32 KiB records */
	for (off = 0; off < len; off += 32768)
		feed_at(f, 1, MSD_DIR_WRITE, off, f->ts + 1000, resp + off, len - off < 32768 ? len - off : 32768);
	assert_int_equal(count(f, "call"), 1);
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	assert_int_equal(num(nth(f, "call", 0), "response_bytes"), (long long)len - 1);
	assert_null(json_object_get(nth(f, "call", 0), "oversized"));
	free(resp);
	fixture_free(f);
}

static void test_oversized_frame_still_correlates(void **state)
{
	struct fixture *f = fixture_new(256 * 1024);
	char *resp = big_response(3 << 20, 6, true);
	size_t len = strlen(resp), off;
	json_t *c;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"dump\"},\"jsonrpc\":\"2.0\",\"id\":6}\n");
	for (off = 0; off < len; off += 32768)
		feed_at(f, 1, MSD_DIR_WRITE, off, f->ts + 1000, resp + off, len - off < 32768 ? len - off : 32768);
	c = nth(f, "call", 0);
	assert_non_null(c);
	assert_int_equal(num(c, "id"), 6);
	assert_string_equal(str(c, "tool"), "dump");
	assert_string_equal(str(c, "status"), "tool_error");
	assert_true(json_is_true(json_object_get(c, "oversized")));
	assert_int_equal(num(c, "response_bytes"), (long long)len - 1);
	free(resp);
	fixture_free(f);
}

static void test_exit_orphans_pending_calls(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *x, *c;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":11,\"method\":\"tools/call\",\"params\":{\"name\":\"trigger-long-running-operation\"}}\n");
	exit_with(f, 11 | 0x80); /* SIGSEGV, core dumped */
	c = nth(f, "call", 0);
	assert_string_equal(str(c, "status"), "orphaned");
	assert_string_equal(str(c, "tool"), "trigger-long-running-operation");
	x = nth(f, "exit", 0);
	assert_string_equal(str(x, "signal"), "SIGSEGV");
	assert_true(json_is_true(json_object_get(x, "core_dumped")));
	assert_false(json_is_true(json_object_get(x, "normal")));
	assert_int_equal(num(x, "pending_calls"), 1);
	fixture_free(f);
}

static void test_stdin_closed_then_sigterm_is_normal(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *x;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	feed_at(f, 0, MSD_DIR_READ, f->off[0][0], f->ts + 10, "", 0); /* EOF */
	exit_with(f, 15);
	assert_int_equal(count(f, "stdin_closed"), 1);
	x = nth(f, "exit", 0);
	assert_string_equal(str(x, "signal"), "SIGTERM");
	assert_string_equal(str(x, "reason"), "shutdown");
	assert_true(json_is_true(json_object_get(x, "normal")));
	fixture_free(f);
}

static void test_cancelled_and_server_requests(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *c;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"slow\"}}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":4}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}\n");
	client(f, 500, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"role\":\"assistant\"}}\n");
	assert_string_equal(str(nth(f, "call", 0), "status"), "cancelled");
	c = nth(f, "call", 1);
	assert_string_equal(str(c, "method"), "sampling/createMessage");
	assert_string_equal(str(c, "direction"), "server_to_client");
	assert_string_equal(str(c, "status"), "ok");
	fixture_free(f);
}

/* The SDK counts from 0 on both sides: id 0 of the client and id 0 of the server coexist. */
static void test_id_spaces_per_direction(void **state)
{
	struct fixture *f = fixture_new(0);
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"tools/call\",\"params\":{\"name\":\"ask\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"roots/list\"}\n");
	client(f, 300, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"roots\":[]}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"content\":[]}}\n");
	assert_int_equal(count(f, "call"), 2);
	assert_string_equal(str(nth(f, "call", 0), "method"), "roots/list");
	assert_string_equal(str(nth(f, "call", 0), "direction"), "server_to_client");
	assert_string_equal(str(nth(f, "call", 1), "method"), "tools/call");
	assert_string_equal(str(nth(f, "call", 1), "direction"), "client_to_server");
	fixture_free(f);
}

static void test_initialize_and_batch(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *s;
	(void)state;

	client(f, 0, "{\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-03-26\",\"capabilities\":{},"
		     "\"clientInfo\":{\"name\":\"test-client\",\"version\":\"1.0\"}},\"jsonrpc\":\"2.0\",\"id\":0}\n");
	server(f, 10, "{\"result\":{\"protocolVersion\":\"2025-03-26\",\"capabilities\":{},"
		      "\"serverInfo\":{\"name\":\"example-server\",\"version\":\"2.1\"}},\"jsonrpc\":\"2.0\",\"id\":0}\n");
	client(f, 10, "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}]\n");
	server(f, 10, "[{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}},{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]\n");
	s = nth(f, "session", 0);
	assert_non_null(s);
	assert_string_equal(str(s, "protocol_version"), "2025-03-26");
	assert_string_equal(str(json_object_get(s, "client"), "name"), "test-client");
	assert_string_equal(str(json_object_get(s, "server_info"), "name"), "example-server");
	assert_int_equal(count(f, "call"), 3);
	assert_string_equal(str(nth(f, "call", 1), "server"), "example-server");
	fixture_free(f);
}

static void test_protocol_version_from_meta(void **state)
{
	struct fixture *f = fixture_new(0);
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{"
		     "\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\","
		     "\"io.modelcontextprotocol/clientCapabilities\":{}}}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resultType\":\"complete\",\"tools\":[]}}\n");
	assert_string_equal(str(nth(f, "session", count(f, "session") - 1), "protocol_version"), "2026-07-28");
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	fixture_free(f);
}

/* A non-blocking writer whose client stopped reading: a short write, then EAGAIN, then
 * silence. Reported once after the threshold; a complete write ends the backlog. */
static void test_short_writes_become_blocked_write(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *part = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"pad\":\"xxxxxxxx";
	struct msd_data_rec *d = calloc(1, sizeof(*d) + 64);
	json_t *bw;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}\n");
	d->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION,
				       .size = (uint32_t)(sizeof(*d) + strlen(part)), .ts_ns = 2000000000ull,
				       .tgid = PID, .tid = PID };
	d->fd = 1;
	d->dir = MSD_DIR_WRITE;
	d->flags = MSD_DATA_LAST | MSD_DATA_SHORT;
	d->syscall_len = d->cap_len = (uint32_t)strlen(part);
	d->requested = 300000;
	memcpy(d->data, part, strlen(part));
	pipeline_feed(f->p, &d->hdr);
	pipeline_tick(f->p, 4000000000ull);
	assert_int_equal(count(f, "blocked_write"), 0); /* 2 s: under the 5 s default */
	pipeline_tick(f->p, 7500000000ull);
	pipeline_tick(f->p, 9000000000ull);
	assert_int_equal(count(f, "blocked_write"), 1);
	bw = nth(f, "blocked_write", 0);
	assert_int_equal(num(bw, "fd"), 1);
	assert_int_equal(num(bw, "bytes"), 300000 - (long long)strlen(part));
	assert_true(json_real_value(json_object_get(bw, "blocked_ms")) == 5500.0);
	free(d);
	fixture_free(f);
}

/* A client that sends 70000 requests the server never answers: the pending table stops at
 * its bound and what it turned away is reported as a loss, not dropped silently. */
static void test_unanswered_ids_are_bounded_and_counted(void **state)
{
	struct fixture *f = fixture_new(0);
	size_t n = PIPELINE_MAX_PENDING + 4464, len = 0, cap = n * 64;
	char *buf = malloc(cap);
	json_t *loss;
	(void)state;

	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(buf + len, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"ping\"}\n", i);
	client(f, 0, buf);
	assert_int_equal(pipeline_pending(f->p), PIPELINE_MAX_PENDING);
	pipeline_tick(f->p, f->ts + 1000000000ull);
	loss = nth(f, "loss", 0);
	assert_non_null(loss);
	assert_string_equal(str(loss, "reason"), "pending_limit");
	assert_int_equal(num(loss, "records"), 4464);
	free(buf);
	fixture_free(f);
}

/* After tools/list, a call that breaks the schema carries its violations, including a call
 * with no arguments at all (its required properties are missing). */
static void test_schema_violations_on_calls(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *v;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"get-sum\",\"inputSchema\":"
		      "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"b\":{\"type\":\"number\"}},"
		      "\"required\":[\"a\",\"b\"]}}]}}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"get-sum\",\"arguments\":{\"a\":\"x\",\"b\":1}}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[],\"isError\":true}}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"get-sum\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[],\"isError\":true}}\n");
	v = json_object_get(nth(f, "call", 1), "schema_violations");
	assert_int_equal(json_array_size(v), 1);
	assert_string_equal(str(json_array_get(v, 0), "kind"), "wrong_type");
	v = json_object_get(nth(f, "call", 2), "schema_violations");
	assert_int_equal(json_array_size(v), 2);
	assert_string_equal(str(json_array_get(v, 0), "kind"), "missing_required");
	assert_null(json_object_get(nth(f, "call", 0), "schema_violations"));
	fixture_free(f);
}

struct pending_probe {
	struct sink base;
	unsigned seen[16];
	int n;
};

static void pending_probe_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct pending_probe *pp = (struct pending_probe *)s;

	if ((ev->type == EV_CALL || (ev->type == EV_MESSAGE && strcmp(ev->message.kind, "request") == 0)) && pp->n < 16)
		pp->seen[pp->n++] = ev->session->pending_calls;
}

/* Sinks learn the pending count from the identity each event carries, current as of that
 * event: a request's message counts it, its call event no longer does. */
static void test_pending_count_as_of_each_event(void **state)
{
	struct fixture *f = fixture_new(0);
	struct pending_probe probe = { .base = { .on_event = pending_probe_on_event } };
	(void)state;

	sinks_add(&f->sinks, &probe.base);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
	assert_int_equal(probe.n, 4);
	assert_int_equal(probe.seen[0], 1);
	assert_int_equal(probe.seen[1], 2);
	assert_int_equal(probe.seen[2], 1);
	assert_int_equal(probe.seen[3], 0);
	fixture_free(f);
}

static void feed_proc(struct fixture *f, const char *comm, const char *args, size_t len, uint32_t flags)
{
	struct msd_proc_rec *r = calloc(1, sizeof(*r) + len);

	r->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_PROC, .abi = MSD_ABI_VERSION,
				       .size = (uint32_t)(sizeof(*r) + len), .ts_ns = f->ts, .tgid = PID, .tid = PID };
	strcpy(r->comm, comm);
	r->cmdline_len = (uint32_t)len;
	r->flags = flags;
	memcpy(r->cmdline, args, len);
	pipeline_feed(f->p, &r->hdr);
	free(r);
}

/* Attached mid-session to "node": the name is the npm package the script belongs to. */
static void test_name_from_cmdline(void **state)
{
	static const char node[] = "/usr/bin/node\0/srv/node_modules/@acme/mcp-db/dist/index.js\0stdio";
	static const char py[] = "python3\0-u\0/opt/weather_server.py";
	struct fixture *f = fixture_new(0);
	(void)state;

	feed_proc(f, "node", node, sizeof(node), MSD_PROC_ON_CHANNEL);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	assert_string_equal(str(nth(f, "session", 0), "server"), "@acme/mcp-db");
	assert_string_equal(str(nth(f, "session", 0), "cmdline"),
			    "/usr/bin/node /srv/node_modules/@acme/mcp-db/dist/index.js stdio");
	feed_proc(f, "python3", py, sizeof(py), MSD_PROC_ON_CHANNEL);
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	assert_string_equal(str(nth(f, "call", 0), "server"), "weather_server.py");
	fixture_free(f);
}

/* A helper the server spawned with pipes of its own (git, a shell...) writes lines that are
 * not MCP: its stdio is ignored, neither calls nor invalid frames nor stderr. */
static void test_helper_stdio_is_not_mcp(void **state)
{
	static const char git[] = "git\0status";
	struct fixture *f = fixture_new(0);
	(void)state;

	feed_proc(f, "git", git, sizeof(git), 0);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	server(f, 10, "On branch main\n");
	feed(f, 2, MSD_DIR_WRITE, 10, "warning: something\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	assert_int_equal(json_array_size(f->sink.events), 0);
	fixture_free(f);
}

/* Records that lie about their lengths (not only in files: any source) are turned away,
 * counted and reported as a loss; the session keeps what it knew. */
static void test_malformed_records_are_counted(void **state)
{
	static const char node[] = "node\0/srv/node_modules/good-server/index.js";
	struct fixture *f = fixture_new(0);
	struct msd_proc_rec *r = calloc(1, sizeof(*r) + 8);
	json_t *loss;
	(void)state;

	feed_proc(f, "node", node, sizeof(node), MSD_PROC_ON_CHANNEL);
	r->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_PROC, .abi = MSD_ABI_VERSION, .size = sizeof(*r) + 8,
				       .ts_ns = f->ts, .tgid = PID, .tid = PID };
	strcpy(r->comm, "evil");
	r->cmdline_len = 1u << 30; /* far past the 8 bytes there */
	memcpy(r->cmdline, "evil\0arg", 8);
	pipeline_feed(f->p, &r->hdr);
	r->cmdline_len = 8;
	memset(r->exe, 'A', sizeof(r->exe)); /* no NUL */
	pipeline_feed(f->p, &r->hdr);
	free(r);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	assert_string_equal(str(nth(f, "call", 0), "server"), "good-server");
	assert_int_equal(pipeline_stats(f->p)->invalid_records, 2);
	pipeline_tick(f->p, f->ts + 1000000000ull);
	loss = nth(f, "loss", 0);
	assert_non_null(loss);
	assert_string_equal(str(loss, "reason"), "invalid_record");
	assert_int_equal(num(loss, "records"), 2);
	fixture_free(f);
}

/* Issue 13 item 11: a flood of garbage on stdout costs one event at once, then one summary
 * per stream and second; every frame is still counted, in the stats and in the events. */
static void test_invalid_flood_is_coalesced(void **state)
{
	struct fixture *f = fixture_new(0);
	uint64_t frames = 0, bytes = 0, sent_bytes = 0;
	size_t i, n;
	json_t *e;
	(void)state;

	for (i = 0; i < 10000; i++) { /* 3 s of garbage, a line every 300 us */
		char line[64];
		int len = snprintf(line, sizeof(line), "\x01garbage %zu\n", i);
		server(f, 300, line);
		sent_bytes += (uint64_t)len - 1;
		pipeline_tick(f->p, f->ts);
	}
	pipeline_finish(f->p, f->ts);
	n = count(f, "invalid");
	assert_true(n >= 2 && n <= 5); /* the first, then a summary per second */
	assert_false(json_is_true(json_object_get(nth(f, "invalid", 0), "coalesced")));
	assert_int_equal(num(nth(f, "invalid", 0), "frames"), 1);
	assert_string_equal(str(nth(f, "invalid", 0), "preview"), ".garbage 0");
	assert_true(json_is_true(json_object_get(nth(f, "invalid", 1), "coalesced")));
	assert_string_equal(str(nth(f, "invalid", 1), "preview"), ".garbage 1");
	json_array_foreach(f->sink.events, i, e) {
		frames += (uint64_t)num(e, "frames");
		bytes += (uint64_t)num(e, "bytes");
	}
	assert_int_equal(frames, 10000);
	assert_int_equal(bytes, sent_bytes);
	assert_int_equal(pipeline_stats(f->p)->invalid_frames, 10000);

	/* After a quiet second the burst is over: the next frame is told at once. */
	f->ts += 3000000000ull;
	pipeline_tick(f->p, f->ts);
	server(f, 10, "late\n");
	e = nth(f, "invalid", n);
	assert_non_null(e);
	assert_string_equal(str(e, "preview"), "late");
	assert_false(json_is_true(json_object_get(e, "coalesced")));
	/* Frames held when the process exits are told before its exit. */
	server(f, 10, "held 1\n");
	server(f, 10, "held 2\n");
	exit_with(f, 0);
	e = nth(f, "invalid", n + 1);
	assert_non_null(e);
	assert_int_equal(num(e, "frames"), 2);
	assert_string_equal(str(e, "preview"), "held 1");
	assert_string_equal(str(json_array_get(f->sink.events, json_array_size(f->sink.events) - 1), "type"), "exit");
	fixture_free(f);
}

/* Issue 13 item 16: a secret never leaves in free text, and calls that carried one say so. */
static void test_secrets_are_masked_and_flagged(void **state)
{
	static const char cmd[] = "node\0server.js\0--api-key=sk-live-123456\0--port\0" "8080";
	struct fixture *f = fixture_new(0);
	char *all;
	json_t *e;
	(void)state;

	feed_proc(f, "node", cmd, sizeof(cmd), MSD_PROC_ON_CHANNEL);
	/* a malformed request line holding a secret argument */
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"login\",\"arguments\":{\"password\":\"hunter2\"}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"login\",\"arguments\":{\"password\":\"hunter2\"}}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32000,\"message\":\"internal failure (db password=hunter2)\"}}\n");
	feed(f, 2, MSD_DIR_WRITE, 10, "connecting with token=hunter2\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"hi\"}}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}}\n");

	all = json_dumps(f->sink.events, 0);
	assert_null(strstr(all, "hunter2"));
	assert_null(strstr(all, "sk-live-123456"));
	free(all);
	assert_string_equal(str(nth(f, "session", 0), "cmdline"), "node server.js --api-key=[REDACTED] --port 8080");
	assert_non_null(strstr(str(nth(f, "invalid", 0), "preview"), "\"password\":\"[REDACTED]\""));
	e = nth(f, "call", 0);
	assert_string_equal(str(e, "error_message"), "internal failure (db password=[REDACTED])");
	assert_true(json_is_true(json_object_get(e, "secret")));
	assert_null(json_object_get(nth(f, "call", 1), "secret"));
	assert_string_equal(str(nth(f, "stderr", 0), "line"), "connecting with token=[REDACTED]");
	fixture_free(f);
}

/* --redact strict drops free text whole; off (--capture-values) keeps it as written. */
static void test_redact_modes(void **state)
{
	static const char cmd[] = "node\0server.js\0--api-key=k1";
	enum redact_mode modes[] = { REDACT_STRICT, REDACT_OFF };
	(void)state;

	for (size_t i = 0; i < 2; i++) {
		struct fixture *f = fixture_new(0);
		struct pipeline_opts o;

		pipeline_opts_default(&o);
		o.redact = modes[i];
		pipeline_free(f->p);
		f->p = pipeline_new(&o, &f->sinks);
		feed_proc(f, "node", cmd, sizeof(cmd), MSD_PROC_ON_CHANNEL);
		feed(f, 2, MSD_DIR_WRITE, 10, "db password=hunter2\n");
		server(f, 10, "not json password=hunter2\n");
		if (modes[i] == REDACT_STRICT) {
			assert_string_equal(str(nth(f, "stderr", 0), "line"), SCRUB_MARK);
			assert_string_equal(str(nth(f, "invalid", 0), "preview"), SCRUB_MARK);
			assert_string_equal(str(nth(f, "stderr", 0), "server"), "server.js");
		} else {
			assert_string_equal(str(nth(f, "stderr", 0), "line"), "db password=hunter2");
			assert_string_equal(str(nth(f, "invalid", 0), "preview"), "not json password=hunter2");
		}
		fixture_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_across_syscalls),
		cmocka_unit_test(test_several_messages_and_partial_in_one_read),
		cmocka_unit_test(test_responses_out_of_order),
		cmocka_unit_test(test_integer_and_string_ids_differ),
		cmocka_unit_test(test_gap_inside_a_message),
		cmocka_unit_test(test_truncated_syscall_is_a_gap_at_once),
		cmocka_unit_test(test_crlf_and_invalid_stdout),
		cmocka_unit_test(test_one_mib_message),
		cmocka_unit_test(test_oversized_frame_still_correlates),
		cmocka_unit_test(test_exit_orphans_pending_calls),
		cmocka_unit_test(test_stdin_closed_then_sigterm_is_normal),
		cmocka_unit_test(test_cancelled_and_server_requests),
		cmocka_unit_test(test_id_spaces_per_direction),
		cmocka_unit_test(test_initialize_and_batch),
		cmocka_unit_test(test_protocol_version_from_meta),
		cmocka_unit_test(test_name_from_cmdline),
		cmocka_unit_test(test_short_writes_become_blocked_write),
		cmocka_unit_test(test_unanswered_ids_are_bounded_and_counted),
		cmocka_unit_test(test_schema_violations_on_calls),
		cmocka_unit_test(test_helper_stdio_is_not_mcp),
		cmocka_unit_test(test_invalid_flood_is_coalesced),
		cmocka_unit_test(test_secrets_are_masked_and_flagged),
		cmocka_unit_test(test_redact_modes),
		cmocka_unit_test(test_pending_count_as_of_each_event),
		cmocka_unit_test(test_malformed_records_are_counted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

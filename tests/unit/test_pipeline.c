/* test_pipeline.c -- crafted record sequences through the whole user-space pipeline.
 *
 * Each test feeds kernel-shaped records (msd_data_rec, msd_exit_rec...) into a pipeline and
 * checks the events a sink receives, rendered by event_render as the JSONL sink would. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/pipeline.h"
#include "mcpsonde/procfs.h"
#include "mcpsonde/tools.h"

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

	if (ev->type == EV_MESSAGE)
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

static struct fixture *fixture_with(const struct pipeline_opts *o)
{
	struct fixture *f = calloc(1, sizeof(*f));

	f->sink.base.on_event = collect_on_event;
	f->sink.events = json_array();
	sinks_add(&f->sinks, &f->sink.base);
	f->p = pipeline_new(o, &f->sinks);
	f->ts = 1000000000ull;
	return f;
}

static struct fixture *fixture_new(size_t max_frame)
{
	struct pipeline_opts o;

	pipeline_opts_default(&o);
	if (max_frame)
		o.max_frame = max_frame;
	return fixture_with(&o);
}

static void fixture_free(struct fixture *f)
{
	pipeline_free(f->p);
	json_decref(f->sink.events);
	free(f);
}

/* A data record as the kernel builds it: the role of (fd, dir) on a server whose stdin,
 * stdout and stderr are three sockets (inodes 100, 101, 102). Caller frees. */
static struct msd_data_rec *data_rec(int fd, int dir, uint64_t off, uint64_t ts_ns, const char *data, size_t len)
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
	d->role = dir == MSD_DIR_READ ? MSD_ROLE_IN : fd == 2 ? MSD_ROLE_ERR : MSD_ROLE_OUT;
	d->syscall = dir == MSD_DIR_READ ? MSD_SYS_READ : MSD_SYS_WRITE;
	d->file_dev = 8;
	d->file_ino = 99 + d->role;
	d->fd_kind = MSD_FD_SOCKET;
	d->flags = MSD_DATA_LAST;
	d->syscall_len = len;
	d->stream_off = off;
	d->cap_len = (uint32_t)len;
	memcpy(d->data, data, len);
	return d;
}

/* One syscall's worth of bytes on (fd, dir) at time ts_ns. */
static void feed_at(struct fixture *f, int fd, int dir, uint64_t off, uint64_t ts_ns, const char *data, size_t len)
{
	struct msd_data_rec *d = data_rec(fd, dir, off, ts_ns, data, len);

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
	/* message 8 started right after the gap (the lost bytes ended a message): it is whole,
	 * so it is kept, and so is everything after it */
	f->off[0][MSD_DIR_READ] = strlen(a) + 40 + strlen(b);
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"after\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}\n");
	assert_int_equal(count(f, "call"), 2);
	assert_string_equal(str(nth(f, "call", 0), "tool"), "kept");
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	assert_string_equal(str(nth(f, "call", 1), "tool"), "after");
	assert_string_equal(str(nth(f, "call", 1), "status"), "ok");
	assert_int_equal(count(f, "invalid"), 0);
	fixture_free(f);

	/* a hole that ends inside a message whose tail begins with '{': the tail is no message,
	 * and not garbage of the server's either */
	f = fixture_new(0);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}}\n");
	{
		const char *head = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":", *tail = "{\"type\":\"text\"}]}}\n";
		feed_at(f, 1, MSD_DIR_WRITE, 0, f->ts, head, strlen(head));
		feed_at(f, 1, MSD_DIR_WRITE, 60, f->ts + 1000, tail, strlen(tail));
		f->off[1][1] = 60 + strlen(tail);
	}
	pipeline_tick(f->p, f->ts + 100000000ull);
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n");
	assert_int_equal(count(f, "invalid"), 0);
	assert_int_equal(count(f, "notification"), 1);
	fixture_free(f);
}

/* A gap that ends inside a message: what follows it up to the next newline is the end of a
 * message whose start was lost. It is dropped without an invalid event; the next is kept. */
static void test_gap_inside_then_tail_dropped(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *a = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\"}}\n";
	const char *b = "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"y\"}}\n";
	(void)state;

	feed_at(f, 0, MSD_DIR_READ, 0, 1000, a, 30);
	/* bytes [30, 50) of message 1 are lost; the rest of it, then message 2, arrive */
	feed_at(f, 0, MSD_DIR_READ, 50, 2000, a + 50, strlen(a) - 50);
	feed_at(f, 0, MSD_DIR_READ, strlen(a), 3000, b, strlen(b));
	pipeline_tick(f->p, 100000000ull);
	f->off[1][MSD_DIR_WRITE] = 0;
	server(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n");
	assert_int_equal(count(f, "call"), 1);
	assert_string_equal(str(nth(f, "call", 0), "tool"), "y");
	assert_int_equal(count(f, "invalid"), 0);
	assert_string_equal(str(nth(f, "loss", 0), "reason"), "gap");
	assert_int_equal(num(nth(f, "loss", 0), "bytes"), 20);
	fixture_free(f);
}

/* One write() of a response longer than the kernel copies: it kept the head and the tail and
 * announced the cut between. The cut response is still correlated (id from its tail), the
 * cut is a loss of that server's stdout, and the next response is intact. */
static void test_cut_syscall_keeps_the_next_message(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *head = "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"xxxxxxxx";
	const char *tail = "xxxx\"}]},\"jsonrpc\":\"2.0\",\"id\":1}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
	uint64_t len = strlen(head) + 5000000 + strlen(tail);
	struct msd_data_rec *h, *t;
	json_t *loss, *call;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"big\"}}\n");
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	h = data_rec(1, MSD_DIR_WRITE, 0, f->ts + 10, head, strlen(head));
	t = data_rec(1, MSD_DIR_WRITE, len - strlen(tail), f->ts + 10, tail, strlen(tail));
	for (struct msd_data_rec *d = h; d; d = d == h ? t : NULL) {
		d->syscall_len = len;
		d->hole_off = strlen(head);
		d->hole_len = 5000000;
		d->flags = MSD_DATA_TRUNCATED | MSD_DATA_CUT | (d == t ? MSD_DATA_LAST : 0);
	}
	t->chunk = 1;
	/* The tail arrives first (records of one syscall may be reordered across CPUs). */
	pipeline_feed(f->p, &t->hdr);
	pipeline_feed(f->p, &h->hdr);
	free(h);
	free(t);
	assert_int_equal(count(f, "call"), 2);
	call = nth(f, "call", 0);
	assert_int_equal(num(call, "id"), 1);
	assert_string_equal(str(call, "status"), "ok");
	assert_true(json_is_true(json_object_get(call, "oversized")));
	assert_int_equal(num(call, "response_bytes"), len - strlen("{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n") - 1);
	assert_int_equal(num(nth(f, "call", 1), "id"), 2);
	loss = nth(f, "loss", 0);
	assert_non_null(loss);
	assert_string_equal(str(loss, "reason"), "truncated");
	assert_int_equal(num(loss, "bytes"), 5000000);
	assert_int_equal(num(loss, "fd"), 1);
	assert_int_equal(num(loss, "pid"), PID);
	assert_int_equal(count(f, "loss"), 1);
	fixture_free(f);
}

/* A reply through a dup of stdout (fd 5 on the same file) continues the same stream. */
static void test_dup_of_stdout_is_the_same_stream(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *a = "{\"jsonrpc\":\"2.0\",\"id\":1,";
	const char *b = "\"result\":{}}\n";
	struct msd_data_rec *d;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	feed_at(f, 1, MSD_DIR_WRITE, 0, f->ts + 10, a, strlen(a));
	d = data_rec(5, MSD_DIR_WRITE, strlen(a), f->ts + 20, b, strlen(b));
	d->syscall = MSD_SYS_PWRITEV2;
	pipeline_feed(f->p, &d->hdr);
	free(d);
	assert_int_equal(count(f, "call"), 1);
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	assert_int_equal(count(f, "invalid"), 0);
	fixture_free(f);
}

/* Bytes that reached stdout through sendfile (not copied): a loss of that stream that says
 * why, then the stream resynchronises and the next response is reported. */
static void test_uncaptured_transfer_is_a_loss(void **state)
{
	struct fixture *f = fixture_new(0);
	const char *next = "\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n";
	struct msd_data_rec *d;
	json_t *loss;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	d = data_rec(1, MSD_DIR_WRITE, 0, f->ts + 10, "", 0);
	d->syscall = MSD_SYS_SENDFILE;
	d->syscall_len = 4096;
	d->hole_off = 0;
	d->hole_len = 4096;
	d->flags = MSD_DATA_LAST | MSD_DATA_TRUNCATED | MSD_DATA_UNCAPTURED;
	pipeline_feed(f->p, &d->hdr);
	free(d);
	feed_at(f, 1, MSD_DIR_WRITE, 4096, f->ts + 20, next, strlen(next));
	loss = nth(f, "loss", 0);
	assert_non_null(loss);
	assert_string_equal(str(loss, "reason"), "uncaptured");
	assert_int_equal(num(loss, "bytes"), 4096);
	assert_int_equal(num(loss, "fd"), 1);
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
	struct msd_data_rec *d = data_rec(1, MSD_DIR_WRITE, 0, 2000000000ull, part, strlen(part));
	json_t *bw;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}\n");
	d->flags = MSD_DATA_LAST | MSD_DATA_SHORT;
	d->requested = 300000;
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

static void feed_proc(struct fixture *f, const char *comm, const char *args, size_t len)
{
	struct msd_proc_rec *r = calloc(1, sizeof(*r) + len);

	r->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_PROC, .abi = MSD_ABI_VERSION,
				       .size = (uint32_t)(sizeof(*r) + len), .ts_ns = f->ts, .tgid = PID, .tid = PID };
	strcpy(r->comm, comm);
	r->cmdline_len = (uint32_t)len;
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

	feed_proc(f, "node", node, sizeof(node));
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	assert_string_equal(str(nth(f, "session", 0), "server"), "@acme/mcp-db");
	assert_string_equal(str(nth(f, "session", 0), "cmdline"),
			    "/usr/bin/node /srv/node_modules/@acme/mcp-db/dist/index.js stdio");
	feed_proc(f, "python3", py, sizeof(py));
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
	assert_string_equal(str(nth(f, "call", 1), "server"), "weather_server.py");
	fixture_free(f);
}

/* What the kernel decided is not the channel never reaches the analysis; a process using
 * io_uring (whose transfers the kernel cannot see) is told about, tied to that server. */
static void test_only_channel_roles_are_analysed(void **state)
{
	struct fixture *f = fixture_new(0);
	struct msd_data_rec *d = data_rec(7, MSD_DIR_WRITE, 0, f->ts, "On branch main\n", 15);
	json_t *loss;
	(void)state;

	d->role = MSD_ROLE_NONE;
	pipeline_feed(f->p, &d->hdr);
	assert_int_equal(json_array_size(f->sink.events), 0);
	free(d);
	d = data_rec(-1, MSD_DIR_WRITE, 0, f->ts, "", 0);
	d->role = MSD_ROLE_NONE;
	d->syscall = MSD_SYS_IO_URING;
	d->flags = MSD_DATA_LAST | MSD_DATA_TRUNCATED | MSD_DATA_UNCAPTURED;
	pipeline_feed(f->p, &d->hdr);
	free(d);
	loss = nth(f, "loss", 0);
	assert_non_null(loss);
	assert_string_equal(str(loss, "reason"), "uncaptured");
	assert_int_equal(num(loss, "records"), 1);
	assert_int_equal(num(loss, "pid"), PID);
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

	feed_proc(f, "node", node, sizeof(node));
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

/* --- protocol revision 2026-07-28, logical calls, probes, lost calls ----------------- */

static struct fixture *fixture_stall(uint64_t stall_ms)
{
	struct pipeline_opts o;

	pipeline_opts_default(&o);
	o.stall_ns = stall_ms * 1000000ull;
	return fixture_with(&o);
}

/* Advances the clock and runs the session ticks. */
static void tick(struct fixture *f, uint64_t ms)
{
	f->ts += ms * 1000000ull;
	pipeline_tick(f->p, f->ts);
}

static double ms(json_t *e, const char *key)
{
	return json_number_value(json_object_get(e, key));
}

static void exit_signal(struct fixture *f, int sig)
{
	exit_with(f, (uint32_t)sig);
}

#define META "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\",\"io.modelcontextprotocol/clientInfo\":{\"name\":\"cli\",\"version\":\"1\"}}"
#define SERVER_META "\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":\"srv\",\"version\":\"2\"}}"

/* A tool that asks for input once: two exchanges, each reported, and one logical call whose
 * end-to-end time is the first request's read to the final answer's write. */
static void test_multi_round_trip_call(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *c;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"confirm\",\"arguments\":{\"a\":1}," META "},\"jsonrpc\":\"2.0\",\"id\":4}\n");
	server(f, 1000, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resultType\":\"input_required\",\"inputRequests\":{},\"requestState\":\"s1\"}}\n");
	/* another call in between, and a retry of another chain that matches nothing */
	client(f, 500, "{\"method\":\"tools/call\",\"params\":{\"name\":\"confirm\",\"requestState\":\"zz\"},\"jsonrpc\":\"2.0\",\"id\":9}\n");
	server(f, 100, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"resultType\":\"complete\",\"content\":[]}}\n");
	client(f, 3000, "{\"method\":\"tools/call\",\"params\":{\"name\":\"confirm\",\"inputResponses\":{\"c\":{}},\"requestState\":\"s1\"},\"jsonrpc\":\"2.0\",\"id\":5}\n");
	server(f, 2000, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"resultType\":\"complete\",\"content\":[]}}\n");
	assert_int_equal(count(f, "call"), 3);
	c = nth(f, "call", 0);
	assert_string_equal(str(c, "status"), "input_required");
	assert_null(json_object_get(c, "rounds"));
	assert_true(ms(c, "duration_ms") == 1.0);
	c = nth(f, "call", 1);
	assert_int_equal(num(c, "id"), 9);
	assert_null(json_object_get(c, "rounds"));
	c = nth(f, "call", 2);
	assert_int_equal(num(c, "id"), 5);
	assert_string_equal(str(c, "status"), "ok");
	assert_true(ms(c, "duration_ms") == 2.0);
	assert_int_equal(num(c, "rounds"), 2);
	assert_true(ms(c, "logical_duration_ms") == 6.6);
	assert_true(ms(c, "input_wait_ms") == 3.6);
	fixture_free(f);
}

/* 2026-07-28 tasks: the tools/call answered with a task, polls as tasks/get calls of their
 * own, and the call's outcome when a poll says completed. */
static void test_task_lifecycle(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *c;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"research\",\"arguments\":{\"q\":1}},\"jsonrpc\":\"2.0\",\"id\":7}\n");
	server(f, 1000, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resultType\":\"task\",\"taskId\":\"t1\",\"status\":\"working\"}}\n");
	for (int i = 0; i < 3; i++) {
		char req[160], resp[200];
		snprintf(req, sizeof(req), "{\"method\":\"tasks/get\",\"params\":{\"taskId\":\"t1\"},\"jsonrpc\":\"2.0\",\"id\":%d}\n", 10 + i);
		snprintf(resp, sizeof(resp), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"taskId\":\"t1\",\"status\":\"%s\"%s}}\n", 10 + i,
			 i < 2 ? "working" : "completed", i < 2 ? "" : ",\"result\":{\"content\":[],\"isError\":true}");
		client(f, 100000, req);
		server(f, 100, resp);
	}
	assert_int_equal(count(f, "call"), 5);
	c = nth(f, "call", 0);
	assert_string_equal(str(c, "status"), "task");
	assert_string_equal(str(c, "task_id"), "t1");
	assert_string_equal(str(c, "task_status"), "working");
	c = nth(f, "call", 1);
	assert_string_equal(str(c, "method"), "tasks/get");
	assert_string_equal(str(c, "status"), "ok");
	assert_string_equal(str(c, "task_id"), "t1");
	c = nth(f, "call", 4);
	assert_string_equal(str(c, "method"), "tools/call");
	assert_int_equal(num(c, "id"), 7);
	assert_string_equal(str(c, "tool"), "research");
	assert_string_equal(str(c, "status"), "tool_error");
	assert_string_equal(str(c, "task_status"), "completed");
	assert_int_equal(num(c, "rounds"), 4);
	assert_true(ms(c, "duration_ms") == 301.3);
	assert_true(ms(c, "logical_duration_ms") == 301.3);
	assert_string_equal(json_string_value(json_array_get(json_object_get(c, "arg_keys"), 0)), "q");
	fixture_free(f);
}

/* 2025-11-25 experimental tasks: result.task, notifications/tasks/status, and the outcome
 * from tasks/result; a failed task is an error with the task's code. */
static void test_task_2025(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *c;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"r\",\"task\":{\"ttl\":60000}},\"jsonrpc\":\"2.0\",\"id\":2}\n");
	server(f, 1000, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"task\":{\"taskId\":\"64fe\",\"status\":\"working\"}}}\n");
	server(f, 1000, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tasks/status\",\"params\":{\"taskId\":\"64fe\",\"status\":\"completed\"}}\n");
	client(f, 1000, "{\"method\":\"tasks/result\",\"params\":{\"taskId\":\"64fe\"},\"jsonrpc\":\"2.0\",\"id\":3}\n");
	assert_int_equal(count(f, "call"), 1); /* completed, but the outcome is the result's */
	server(f, 1000, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[],\"_meta\":{\"io.modelcontextprotocol/related-task\":{\"taskId\":\"64fe\"}}}}\n");
	assert_int_equal(count(f, "call"), 3);
	assert_string_equal(str(nth(f, "call", 0), "status"), "task");
	assert_string_equal(str(nth(f, "call", 1), "method"), "tasks/result");
	c = nth(f, "call", 2);
	assert_int_equal(num(c, "id"), 2);
	assert_string_equal(str(c, "status"), "ok");
	assert_true(ms(c, "duration_ms") == 4.0);

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"r\"},\"jsonrpc\":\"2.0\",\"id\":4}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"task\":{\"taskId\":\"65\",\"status\":\"working\"}}}\n");
	client(f, 10, "{\"method\":\"tasks/get\",\"params\":{\"taskId\":\"65\"},\"jsonrpc\":\"2.0\",\"id\":5}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"taskId\":\"65\",\"status\":\"failed\",\"error\":{\"code\":-32603,\"message\":\"x\"}}}\n");
	c = nth(f, "call", 5);
	assert_int_equal(num(c, "id"), 4);
	assert_string_equal(str(c, "status"), "error");
	assert_int_equal(num(c, "error_code"), -32603);
	assert_string_equal(str(c, "error_name"), "internal_error");
	fixture_free(f);
}

/* A working task is alive while it is polled; when its polls stop, it stalls (once). */
static void test_task_stalls_when_polls_stop(void **state)
{
	struct fixture *f = fixture_stall(1000);
	json_t *st;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"long\"},\"jsonrpc\":\"2.0\",\"id\":1}\n");
	server(f, 100, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"resultType\":\"task\",\"taskId\":\"t\",\"status\":\"working\"}}\n");
	for (int i = 0; i < 10; i++) { /* 3 s of polls, each a moment later in the task's life */
		char req[128], resp[200];
		snprintf(req, sizeof(req), "{\"method\":\"tasks/get\",\"params\":{\"taskId\":\"t\"},\"jsonrpc\":\"2.0\",\"id\":%d}\n", 2 + i);
		snprintf(resp, sizeof(resp), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{\"taskId\":\"t\",\"status\":\"working\",\"lastUpdatedAt\":\"%d\"}}\n", 2 + i, i);
		client(f, 300000, req);
		server(f, 100, resp);
		tick(f, 0);
	}
	assert_int_equal(count(f, "stall"), 0);
	tick(f, 600);
	assert_int_equal(count(f, "stall"), 0);
	tick(f, 600);
	tick(f, 600);
	assert_int_equal(count(f, "stall"), 1);
	st = nth(f, "stall", 0);
	assert_string_equal(str(st, "task_id"), "t");
	assert_string_equal(str(st, "task_status"), "working");
	assert_int_equal(num(st, "id"), 1);
	assert_true(ms(st, "since_poll_ms") > 1000.0);
	fixture_free(f);
}

/* A slow call that reports progress is alive: no stall while progress comes; when it stops,
 * the stall says how long ago the last came. */
static void test_progress_restarts_stall_clock(void **state)
{
	struct fixture *f = fixture_stall(1000);
	json_t *st;
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"slow\",\"_meta\":{\"progressToken\":\"tok\"}},\"jsonrpc\":\"2.0\",\"id\":3}\n");
	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"mute\",\"_meta\":{\"progressToken\":\"other\"}},\"jsonrpc\":\"2.0\",\"id\":4}\n");
	for (int i = 0; i < 8; i++) {
		server(f, 400000, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"tok\",\"progress\":1}}\n");
		tick(f, 0);
	}
	/* 3.2 s: the muted call stalled, the progressing one not */
	assert_int_equal(count(f, "stall"), 1);
	assert_string_equal(str(nth(f, "stall", 0), "tool"), "mute");
	assert_null(json_object_get(nth(f, "stall", 0), "since_progress_ms"));
	tick(f, 1500);
	assert_int_equal(count(f, "stall"), 2);
	st = nth(f, "stall", 1);
	assert_string_equal(str(st, "tool"), "slow");
	assert_true(ms(st, "since_progress_ms") == 1500.0);
	assert_true(ms(st, "pending_ms") == 4700.0);
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[]}}\n");
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	fixture_free(f);
}

/* The v2 SDK's probe of a legacy server: -32601 to server/discover is the probe's outcome,
 * not an error; the probe copy terminated with SIGTERM is a probe, not a crash. */
static void test_discover_probe_is_not_an_error(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *x;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":\"server-discover-probe-1\",\"method\":\"server/discover\",\"params\":{" META "}}\n");
	server(f, 100, "{\"jsonrpc\":\"2.0\",\"id\":\"server-discover-probe-1\",\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n");
	assert_string_equal(str(nth(f, "call", 0), "status"), "probe_failed");
	assert_int_equal(num(nth(f, "call", 0), "error_code"), -32601);
	exit_signal(f, SIGTERM);
	x = nth(f, "exit", 0);
	assert_string_equal(str(x, "reason"), "probe");
	assert_true(json_is_true(json_object_get(x, "normal")));
	assert_int_equal(num(x, "pending_calls"), 0);
	assert_int_equal(count(f, "session"), 1);
	fixture_free(f);

	/* probing in place: the refusal names nobody, the initialize that follows does, once */
	f = fixture_new(0);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"server/discover\",\"params\":{" META "}}\n");
	server(f, 100, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n");
	client(f, 100, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"clientInfo\":{\"name\":\"cli\"}}}\n");
	server(f, 100, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\",\"serverInfo\":{\"name\":\"legacy\"}}}\n");
	assert_int_equal(count(f, "session"), 1);
	assert_string_equal(str(json_object_get(nth(f, "session", 0), "server_info"), "name"), "legacy");
	assert_string_equal(str(nth(f, "session", 0), "protocol_version"), "2025-11-25");
	fixture_free(f);
}

/* A server that never answers the probe, with a subscription open and a session going:
 * neither stalls; a normal shutdown closes them, a crash orphans the subscription only. */
static void test_quiet_calls_at_shutdown(void **state)
{
	struct fixture *f = fixture_stall(1000);
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"server/discover\"}\n");
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscriptions/listen\",\"params\":{}}\n");
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"a\",\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":\"s1\"}}}\n");
	tick(f, 5000);
	assert_int_equal(count(f, "stall"), 0);
	assert_string_equal(str(nth(f, "notification", 0), "subscription_id"), "s1");
	f->ts += 1000;
	{
		struct msd_data_rec *eof = data_rec(0, MSD_DIR_READ, f->off[0][0], f->ts, "", 0);

		pipeline_feed(f->p, &eof->hdr);
		free(eof);
	}
	exit_signal(f, SIGTERM);
	assert_string_equal(str(nth(f, "call", 1), "status"), "probe_failed");
	assert_null(json_object_get(nth(f, "call", 1), "error_code"));
	assert_string_equal(str(nth(f, "call", 2), "status"), "closed");
	assert_string_equal(str(nth(f, "exit", 0), "reason"), "shutdown");
	assert_true(json_is_true(json_object_get(nth(f, "exit", 0), "normal")));
	assert_int_equal(num(nth(f, "exit", 0), "pending_calls"), 0);
	fixture_free(f);

	f = fixture_new(0);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"subscriptions/listen\",\"params\":{}}\n");
	exit_signal(f, SIGSEGV);
	assert_string_equal(str(nth(f, "call", 0), "status"), "orphaned");
	assert_false(json_is_true(json_object_get(nth(f, "exit", 0), "normal")));
	assert_int_equal(num(nth(f, "exit", 0), "pending_calls"), 1);
	fixture_free(f);
}

/* Attached mid-stream to a 2026-07-28 session: protocol and client from the request's _meta,
 * the server from the result's, in one session event; the server is named from it. */
static void test_identity_from_meta(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *s;
	(void)state;

	client(f, 0, "{\"method\":\"tools/list\",\"params\":{" META "},\"jsonrpc\":\"2.0\",\"id\":1}\n");
	assert_int_equal(count(f, "session"), 0); /* waits for the answer that names the server */
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{" SERVER_META ",\"tools\":[],\"resultType\":\"complete\"}}\n");
	client(f, 10, "{\"method\":\"tools/call\",\"params\":{\"name\":\"x\"," META "},\"jsonrpc\":\"2.0\",\"id\":2}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{" SERVER_META ",\"content\":[],\"resultType\":\"complete\"}}\n");
	assert_int_equal(count(f, "session"), 1);
	s = nth(f, "session", 0);
	assert_string_equal(str(s, "protocol_version"), "2026-07-28");
	assert_string_equal(str(json_object_get(s, "client"), "name"), "cli");
	assert_string_equal(str(json_object_get(s, "server_info"), "name"), "srv");
	assert_string_equal(str(nth(f, "call", 1), "server"), "srv");
	/* an unanswered request still gets its session event, a moment later */
	fixture_free(f);
	f = fixture_new(0);
	client(f, 0, "{\"method\":\"ping\",\"params\":{" META "},\"jsonrpc\":\"2.0\",\"id\":1}\n");
	tick(f, 2000);
	assert_int_equal(count(f, "session"), 1);
	assert_string_equal(str(nth(f, "session", 0), "protocol_version"), "2026-07-28");
	fixture_free(f);
}

/* An unknown tool, without any tools/list: the v2 SDK's -32602 "Tool X not found" and the
 * v1 SDK's isError text both say so; another -32602 does not. */
static void test_unknown_tool_from_answers(void **state)
{
	struct fixture *f = fixture_new(0);
	(void)state;

	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"},\"jsonrpc\":\"2.0\",\"id\":1}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32602,\"message\":\"Tool nope not found\"}}\n");
	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"nope\"},\"jsonrpc\":\"2.0\",\"id\":2}\n");
	server(f, 10, "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"MCP error -32602: Tool nope not found\"}],\"isError\":true},\"jsonrpc\":\"2.0\",\"id\":2}\n");
	client(f, 0, "{\"method\":\"tools/call\",\"params\":{\"name\":\"sum\"},\"jsonrpc\":\"2.0\",\"id\":3}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32602,\"message\":\"Invalid arguments: a\"}}\n");
	assert_true(json_is_true(json_object_get(nth(f, "call", 0), "unknown_tool")));
	assert_string_equal(str(nth(f, "call", 0), "error_name"), "invalid_params");
	assert_true(json_is_true(json_object_get(nth(f, "call", 1), "unknown_tool")));
	assert_null(json_object_get(nth(f, "call", 2), "unknown_tool"));
	fixture_free(f);
}

/* An error without id (2025-11-25: the server could not parse the request) is the server's
 * protocol error; newer codes have names. */
static void test_protocol_error_and_error_names(void **state)
{
	struct fixture *f = fixture_new(0);
	json_t *e;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32022,\"message\":\"Unsupported protocol version\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32700,\"message\":\"Parse error\"}}\n");
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"resources/read\",\"params\":{\"uri\":\"x://1\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"code\":-32602,\"message\":\"Resource x://1 not found\"}}\n");
	assert_string_equal(str(nth(f, "call", 0), "error_name"), "unsupported_protocol_version");
	assert_string_equal(str(nth(f, "call", 1), "error_name"), "resource_not_found");
	e = nth(f, "protocol_error", 0);
	assert_non_null(e);
	assert_int_equal(num(e, "error_code"), -32700);
	assert_string_equal(str(e, "error_name"), "parse_error");
	assert_string_equal(str(e, "direction"), "server_to_client");
	assert_int_equal(count(f, "call"), 2);
	fixture_free(f);
}

/* A gap in what the server wrote may have held answers: the calls pending then are in doubt.
 * One answered later completes; the others are lost, at the stall threshold or at the exit,
 * which stays normal. Calls after the gap are all reported. */
static void test_answers_lost_in_a_gap(void **state)
{
	struct fixture *f = fixture_stall(1000);
	const char *answer1 = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}";
	(void)state;

	for (int i = 1; i <= 4; i++) {
		char req[80];
		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}\n", i);
		client(f, 10, req);
	}
	/* the answer to 1 is cut by a lost record: its head, a hole, its newline and 2 */
	feed_at(f, 1, MSD_DIR_WRITE, 0, f->ts, answer1, 10);
	f->off[1][1] = strlen(answer1);
	server(f, 10, "\n{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
	tick(f, 10);
	assert_string_equal(str(nth(f, "loss", 0), "reason"), "gap");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{}}\n"); /* in doubt, answered: fine */
	for (int i = 5; i <= 7; i++) {
		char req[80], resp[80];
		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"ping\"}\n", i);
		snprintf(resp, sizeof(resp), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"result\":{}}\n", i);
		client(f, 10, req);
		server(f, 10, resp);
	}
	tick(f, 2000); /* 1 and 4 were in doubt past the threshold: lost, no stall */
	assert_int_equal(count(f, "stall"), 0);
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"ping\"}\n");
	assert_int_equal(count(f, "call"), 7);
	exit_signal(f, SIGKILL); /* no stdin EOF: not a shutdown, but nothing the server owes */
	{
		size_t lost = 0, ok = 0;
		for (size_t i = 0; nth(f, "call", i); i++) {
			const char *st = str(nth(f, "call", i), "status");
			lost += strcmp(st, "lost") == 0;
			ok += strcmp(st, "ok") == 0;
		}
		assert_int_equal(lost, 2);
		assert_int_equal(ok, 5);
	}
	assert_string_equal(str(nth(f, "call", 7), "status"), "orphaned"); /* 8: after the gap, not in doubt */
	assert_int_equal(num(nth(f, "exit", 0), "pending_calls"), 1);
	fixture_free(f);

	/* the same gap with nothing pending after it: the exit is normal */
	f = fixture_new(0);
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	feed_at(f, 1, MSD_DIR_WRITE, 0, f->ts, answer1, 10);
	f->off[1][1] = strlen(answer1);
	server(f, 10, "\n{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n");
	exit_with(f, 0);
	assert_string_equal(str(nth(f, "call", 0), "status"), "lost");
	assert_true(json_is_true(json_object_get(nth(f, "exit", 0), "normal")));
	assert_int_equal(num(nth(f, "exit", 0), "lost_calls"), 1);
	fixture_free(f);
}

/* A million requests nobody answers: the table keeps the newest, counts what it evicted, and
 * the calls that follow are all reported; stall events come at a bounded rate, the rest counted. */
static void test_million_unanswered_requests(void **state)
{
	struct fixture *f = fixture_stall(1000);
	size_t n = 1000000, per = 20000, cap = per * 48;
	char *buf = malloc(cap);
	uint64_t evicted = 0, suppressed = 0;
	json_t *e;
	size_t i;
	(void)state;

	for (size_t done = 0; done < n; done += per) {
		size_t len = 0;
		for (size_t k = done; k < done + per; k++)
			len += (size_t)sprintf(buf + len, "{\"jsonrpc\":\"2.0\",\"id\":%zu,\"method\":\"x\"}\n", k);
		client(f, 0, buf);
	}
	for (int k = 0; k < 20; k++) {
		char req[80], resp[80];
		snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"id\":\"late-%d\",\"method\":\"ping\"}\n", k);
		snprintf(resp, sizeof(resp), "{\"jsonrpc\":\"2.0\",\"id\":\"late-%d\",\"result\":{}}\n", k);
		client(f, 10, req);
		server(f, 10, resp);
	}
	assert_int_equal(count(f, "call"), 20);
	tick(f, 2000);
	tick(f, 1000);
	json_array_foreach(f->sink.events, i, e) {
		if (strcmp(str(e, "type"), "loss") == 0 && strcmp(str(e, "reason"), "pending_limit") == 0)
			evicted += (uint64_t)num(e, "records");
		if (strcmp(str(e, "type"), "loss") == 0 && strcmp(str(e, "reason"), "stall_limit") == 0)
			suppressed += (uint64_t)num(e, "records");
	}
	assert_int_equal(evicted, n - PIPELINE_MAX_PENDING + 1); /* the late calls freed their room */
	assert_true(count(f, "stall") <= 16 + 2);
	assert_int_equal(count(f, "stall") + suppressed, PIPELINE_MAX_PENDING - 1);
	free(buf);
	fixture_free(f);
}

static char *tools_list(int id, int ntools)
{
	size_t cap = (size_t)ntools * 96 + 128, len = 0;
	char *s = malloc(cap);

	len += (size_t)sprintf(s, "{\"result\":{\"tools\":[");
	for (int i = 0; i < ntools; i++)
		len += (size_t)sprintf(s + len, "%s{\"name\":\"t%05d\",\"inputSchema\":{\"required\":[\"a\"]}}", i ? "," : "", i);
	sprintf(s + len, "]},\"jsonrpc\":\"2.0\",\"id\":%d}\n", id);
	return s;
}

/* 5000 tools: the catalog keeps 4096 and says it is partial; a list too long for the frame
 * cap is learned from the tools in its head. Neither calls a tool beyond them unknown. */
static void test_tool_catalog_cap(void **state)
{
	struct fixture *f = fixture_new(0);
	char *list = tools_list(1, 5000);
	json_t *e;
	(void)state;

	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n");
	server(f, 10, list);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"t04999\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[],\"isError\":true}}\n");
	e = nth(f, "tools_list", 0);
	assert_int_equal(num(e, "count"), 5000);
	assert_int_equal(num(e, "kept"), TOOLS_MAX);
	assert_true(json_is_true(json_object_get(e, "truncated")));
	assert_null(json_object_get(nth(f, "call", 1), "unknown_tool"));
	free(list);
	fixture_free(f);

	f = fixture_new(64 * 1024);
	list = tools_list(1, 5000); /* ~300 KB: only its first 64 KiB are kept */
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n");
	server(f, 10, list);
	assert_string_equal(str(nth(f, "call", 0), "status"), "ok");
	assert_true(json_is_true(json_object_get(nth(f, "call", 0), "oversized")));
	e = nth(f, "tools_list", 0);
	assert_true(num(e, "kept") > 500 && num(e, "kept") < 5000);
	assert_int_equal(num(e, "count"), num(e, "kept"));
	assert_true(json_is_true(json_object_get(e, "truncated")));
	/* a tool from the head is known: its schema is checked */
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"t00001\"}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[]}}\n");
	assert_non_null(json_object_get(nth(f, "call", 1), "schema_violations"));
	free(list);
	fixture_free(f);
}

/* Replayed (not live), an npx server's node_modules/.bin link cannot be read: it is named
 * after the executable, never ".bin". */
static void test_npx_bin_name_offline(void **state)
{
	static const char node[] = "node\0/root/.npm/_npx/1a2b/node_modules/.bin/mcp-server-everything\0stdio";
	struct fixture *f = fixture_new(0);
	(void)state;

	feed_proc(f, "node", node, sizeof(node));
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");
	assert_string_equal(str(nth(f, "call", 0), "server"), "mcp-server-everything");
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

	feed_proc(f, "node", cmd, sizeof(cmd));
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
		feed_proc(f, "node", cmd, sizeof(cmd));
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


/* --- discovered processes (watch --all) ----------------------------------------------------- */

struct hooks_seen {
	unsigned server, not_mcp;
	uint32_t tgid;
};

static void seen_server(void *ctx, uint32_t tgid)
{
	struct hooks_seen *h = ctx;

	h->server++;
	h->tgid = tgid;
}

static void seen_not_mcp(void *ctx, uint32_t tgid)
{
	struct hooks_seen *h = ctx;

	h->not_mcp++;
	h->tgid = tgid;
}

/* The kernel found PID reading JSON-RPC: started start_s seconds after boot, its first
 * JSON-RPC line line_off bytes into the read. */
static void discover(struct fixture *f, struct hooks_seen *h, uint64_t start_s, uint32_t line_off)
{
	struct msd_discover_rec d = { .hdr = { .kind = MSD_REC_DISCOVER, .abi = MSD_ABI_VERSION, .size = sizeof(d),
					       .tgid = PID, .tid = PID } };
	struct pipeline_hooks hooks = { .on_server = seen_server, .on_not_mcp = seen_not_mcp, .ctx = h };

	pipeline_set_hooks(f->p, &hooks);
	f->ts += 1000;
	d.hdr.ts_ns = f->ts;
	d.start_ns = start_s * 1000000000ull;
	d.line_off = line_off;
	memcpy(d.comm, "node", 5);
	pipeline_feed(f->p, &d.hdr);
}

static void test_discovered_from_its_first_mcp_message(void **state)
{
	struct fixture *f = fixture_new(0);
	struct hooks_seen h = { 0 };
	json_t *sess, *c;
	(void)state;

	discover(f, &h, 12, 0);
	assert_int_equal(json_array_size(f->sink.events), 0);
	client(f, 0, "{\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"clientInfo\":{\"name\":\"agent\",\"version\":\"1\"}},\"jsonrpc\":\"2.0\",\"id\":0}\n");
	assert_int_equal(h.server, 1);
	assert_int_equal(h.tgid, PID);
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"protocolVersion\":\"2025-11-25\",\"serverInfo\":{\"name\":\"srv\",\"version\":\"2\"}}}\n");
	client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}\n");
	sess = nth(f, "session", 0);
	assert_non_null(sess);
	assert_string_equal(str(sess, "found"), "discovered");
	assert_int_equal(num(sess, "start_ticks"), 12 * proc_clock_ticks());
	c = nth(f, "call", 0);
	assert_string_equal(str(c, "method"), "initialize");
	assert_int_equal(num(c, "start_ticks"), 12 * proc_clock_ticks());
	assert_int_equal(h.server, 1); /* told once */
	fixture_free(f);
}

/* An editor's language server or another JSON-RPC tool: nothing is told of it, and after
 * PIPELINE_NOT_MCP_AFTER methods it is let go. */
static void test_discovered_json_rpc_that_is_not_mcp(void **state)
{
	struct fixture *f = fixture_new(0);
	struct hooks_seen h = { 0 };
	(void)state;

	discover(f, &h, 12, 0);
	for (int i = 0; i < PIPELINE_NOT_MCP_AFTER; i++) {
		assert_int_equal(h.not_mcp, 0);
		client(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"textDocument/hover\",\"params\":{}}\n");
		server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}\n");
		feed(f, 2, MSD_DIR_WRITE, 10, "a log line\n");
	}
	assert_int_equal(h.not_mcp, 1);
	assert_int_equal(h.server, 0);
	pipeline_release(f->p, PID, "not_mcp", f->ts);
	exit_with(f, 0);
	/* The exit comes after the release: a new session, never announced, told nothing but it. */
	assert_int_equal(count(f, "session") + count(f, "call") + count(f, "stderr") + count(f, "untracked"), 0);
	assert_true(pipeline_stats(f->p)->unconfirmed_frames >= 3 * PIPELINE_NOT_MCP_AFTER);
	fixture_free(f);
}

/* The read that carried the first JSON-RPC line began with the end of an earlier line. */
static void test_discovered_mid_line(void **state)
{
	static const char first[] = "lo\"}}\n{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\"}}\n";
	struct fixture *f = fixture_new(0);
	struct hooks_seen h = { 0 };
	json_t *c;
	(void)state;

	discover(f, &h, 12, 6);
	client(f, 0, first);
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"content\":[]}}\n");
	assert_int_equal(count(f, "invalid"), 0);
	c = nth(f, "call", 0);
	assert_string_equal(str(c, "tool"), "echo");
	assert_string_equal(str(c, "status"), "ok");
	fixture_free(f);
}

static void test_peers_and_release(void **state)
{
	struct fixture *f = fixture_new(0);
	struct proc_ref client_ref = { .pid = 100, .start_ticks = 5, .comm = "agent", .exe = "/usr/bin/agent" };
	struct proc_ref relay_ref = { .pid = 200, .start_ticks = 6, .comm = "socat" };
	struct proc_ref none = { 0 };
	struct hooks_seen h = { 0 };
	json_t *sess;
	(void)state;

	discover(f, &h, 12, 0);
	pipeline_set_peers(f->p, PID, &client_ref, &none, f->ts);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"serverInfo\":{\"name\":\"srv\"}}}\n");
	sess = nth(f, "session", 0);
	assert_int_equal(num(json_object_get(sess, "client_process"), "pid"), 100);
	assert_string_equal(str(json_object_get(sess, "client_process"), "exe"), "/usr/bin/agent");
	assert_null(json_object_get(sess, "relay"));
	/* Announced: a change is told at once; the same again is not. */
	pipeline_set_peers(f->p, PID, &client_ref, &relay_ref, f->ts);
	pipeline_set_peers(f->p, PID, &client_ref, &relay_ref, f->ts);
	assert_int_equal(count(f, "session"), 2);
	assert_int_equal(num(json_object_get(nth(f, "session", 1), "relay"), "pid"), 200);
	pipeline_release(f->p, PID, "gone", f->ts);
	assert_string_equal(str(nth(f, "untracked", 0), "reason"), "gone");
	fixture_free(f);
}

/* A discover record is checked like any other: one whose cmdline_len runs past its array is
 * turned away and counted, and nothing is discovered. */
static void test_discover_record_checked(void **state)
{
	struct fixture *f = fixture_new(0);
	struct msd_discover_rec d = { .hdr = { .kind = MSD_REC_DISCOVER, .abi = MSD_ABI_VERSION, .size = sizeof(d),
					       .tgid = PID, .tid = PID } };
	struct hooks_seen h = { 0 };
	struct pipeline_hooks hooks = { .on_server = seen_server, .on_not_mcp = seen_not_mcp, .ctx = &h };
	(void)state;

	pipeline_set_hooks(f->p, &hooks);
	d.cmdline_len = MSD_DISCOVER_CMDLINE + 1;
	memcpy(d.comm, "node", 5);
	pipeline_feed(f->p, &d.hdr);
	assert_int_equal(pipeline_stats(f->p)->invalid_records, 1);
	d.cmdline_len = 0;
	memset(d.comm, 'x', sizeof(d.comm)); /* no NUL */
	pipeline_feed(f->p, &d.hdr);
	assert_int_equal(pipeline_stats(f->p)->invalid_records, 2);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{}}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{\"serverInfo\":{\"name\":\"srv\"}}}\n");
	assert_string_equal(str(nth(f, "session", 0), "found"), "attached"); /* the fixture's own process */
	fixture_free(f);
}

/* A discovered process with the PID of a session whose exit was lost: that session ends. */
static void test_discover_replaces_a_stale_session(void **state)
{
	struct fixture *f = fixture_new(0);
	struct hooks_seen h = { 0 };
	(void)state;

	discover(f, &h, 12, 0);
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
	discover(f, &h, 30, 0);
	memset(f->off, 0, sizeof(f->off)); /* the new process's streams start at 0 */
	assert_string_equal(str(nth(f, "untracked", 0), "reason"), "gone");
	assert_int_equal(num(nth(f, "untracked", 0), "start_ticks"), 12 * proc_clock_ticks());
	client(f, 0, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
	server(f, 10, "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\n");
	assert_int_equal(num(nth(f, "call", 0), "start_ticks"), 30 * proc_clock_ticks());
	assert_int_equal(pipeline_stats(f->p)->sessions_replaced, 1);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_across_syscalls),
		cmocka_unit_test(test_discovered_from_its_first_mcp_message),
		cmocka_unit_test(test_discovered_json_rpc_that_is_not_mcp),
		cmocka_unit_test(test_discovered_mid_line),
		cmocka_unit_test(test_peers_and_release),
		cmocka_unit_test(test_discover_replaces_a_stale_session),
		cmocka_unit_test(test_discover_record_checked),
		cmocka_unit_test(test_several_messages_and_partial_in_one_read),
		cmocka_unit_test(test_responses_out_of_order),
		cmocka_unit_test(test_integer_and_string_ids_differ),
		cmocka_unit_test(test_gap_inside_a_message),
		cmocka_unit_test(test_gap_inside_then_tail_dropped),
		cmocka_unit_test(test_cut_syscall_keeps_the_next_message),
		cmocka_unit_test(test_dup_of_stdout_is_the_same_stream),
		cmocka_unit_test(test_uncaptured_transfer_is_a_loss),
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
		cmocka_unit_test(test_only_channel_roles_are_analysed),
		cmocka_unit_test(test_invalid_flood_is_coalesced),
		cmocka_unit_test(test_secrets_are_masked_and_flagged),
		cmocka_unit_test(test_redact_modes),
		cmocka_unit_test(test_pending_count_as_of_each_event),
		cmocka_unit_test(test_malformed_records_are_counted),
		cmocka_unit_test(test_multi_round_trip_call),
		cmocka_unit_test(test_task_lifecycle),
		cmocka_unit_test(test_task_2025),
		cmocka_unit_test(test_task_stalls_when_polls_stop),
		cmocka_unit_test(test_progress_restarts_stall_clock),
		cmocka_unit_test(test_discover_probe_is_not_an_error),
		cmocka_unit_test(test_quiet_calls_at_shutdown),
		cmocka_unit_test(test_identity_from_meta),
		cmocka_unit_test(test_unknown_tool_from_answers),
		cmocka_unit_test(test_protocol_error_and_error_names),
		cmocka_unit_test(test_answers_lost_in_a_gap),
		cmocka_unit_test(test_million_unanswered_requests),
		cmocka_unit_test(test_tool_catalog_cap),
		cmocka_unit_test(test_npx_bin_name_offline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_recorder.c -- the flight recorder fed hand-built events: what a report holds, when
 * one is written, EV_REPORT and re-entrancy, and the memory bounds. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcpsonde/procfs.h"
#include "mcpsonde/recorder.h"
#include "mcpsonde/utf8.h"
#include "mcpsonde/report.h"

#define SEC 1000000000ull
#define T0 (1000 * SEC)                   /* CLOCK_MONOTONIC of the first event */
#define MONO_TO_REAL 1795000000000000000ull

/* ---- a sink that remembers what reached it, in order ---- */

struct seen {
	struct sink sink;
	enum ev_type types[64];
	unsigned n;
	char report_path[4096];
	unsigned reports;
};

static void seen_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct seen *c = (struct seen *)s;

	if (c->n < 64)
		c->types[c->n++] = ev->type;
	if (ev->type == EV_REPORT) {
		c->reports++;
		snprintf(c->report_path, sizeof(c->report_path), "%s", ev->report.path);
	}
}

struct fixture {
	char dir[64];
	struct sink_list sinks;
	struct seen seen;
	struct sink *rec;
	struct session_identity id;
	bool helper; /* exits with its stdin off the channel: a helper the server spawned */
};

static struct fixture *fixture_new(void (*tweak)(struct recorder_opts *o))
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct recorder_opts o;
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/mcpsonde-test-rec-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	recorder_opts_default(&o);
	o.report_dir = f->dir;
	if (tweak)
		tweak(&o);
	f->seen.sink.name = "seen";
	f->seen.sink.on_event = seen_on_event;
	sinks_add(&f->sinks, &f->seen.sink);
	f->rec = sink_recorder_new(&o, &f->sinks, err, sizeof(err));
	assert_non_null(f->rec);
	/* Last, as main.c adds it: the recorder emits EV_REPORT into the list it is in. */
	sinks_add(&f->sinks, f->rec);
	f->id.pid = 4242;
	f->id.start_ticks = 777;
	snprintf(f->id.comm, sizeof(f->id.comm), "node");
	f->id.cmdline = "node /srv/everything/dist/index.js stdio";
	f->id.exe = "/usr/bin/node";
	f->id.server_name = "mcp-servers/everything";
	f->id.server_version = "2.0.0";
	f->id.client_name = "e2e";
	f->id.transport = "unix";
	f->id.first_seen_ns = T0;
	return f;
}

static void fixture_free(struct fixture *f)
{
	char cmd[128];

	sinks_close(&f->sinks); /* the recorder's close frees it; seen has none */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
}

static struct sonde_event ev_base(const struct fixture *f, enum ev_type t, uint64_t ts)
{
	struct sonde_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.type = t;
	ev.ts_ns = ts;
	ev.real_ns = ts + MONO_TO_REAL;
	ev.pid = f->id.pid;
	ev.session = &f->id;
	return ev;
}

static void feed_message(struct fixture *f, uint64_t ts, enum call_direction dir, const char *kind,
			 const char *method, const char *id, json_t *root)
{
	struct sonde_event ev = ev_base(f, EV_MESSAGE, ts);

	ev.message.direction = dir;
	ev.message.kind = kind;
	ev.message.method = method;
	ev.message.id = id;
	ev.message.root = root;
	/* as the session fills it from the skim of params */
	ev.message.target = json_string_value(json_object_get(json_object_get(root, "params"), "name"));
	ev.message.bytes = root ? json_dumpb(root, NULL, 0, JSON_COMPACT) + 1 : 100;
	sinks_emit(&f->sinks, &ev);
	json_decref(root);
}

static void feed_tool_request(struct fixture *f, uint64_t ts, const char *id, const char *tool, const char *secret)
{
	json_t *root = json_pack("{s:s, s:{s:s, s:{s:s}}, s:s, s:I}", "method", "tools/call", "params", "name", tool,
				 "arguments", "message", secret, "jsonrpc", "2.0", "id", (json_int_t)atoi(id));

	feed_message(f, ts, DIR_CLIENT_TO_SERVER, "request", "tools/call", id, root);
}

static void feed_result(struct fixture *f, uint64_t ts, const char *id, const char *secret)
{
	json_t *root = json_pack("{s:{s:[{s:s, s:s}]}, s:s, s:I}", "result", "content", "type", "text", "text", secret,
				 "jsonrpc", "2.0", "id", (json_int_t)atoi(id));

	feed_message(f, ts, DIR_SERVER_TO_CLIENT, "result", NULL, id, root);
}

static void feed_call(struct fixture *f, uint64_t ts, const char *id, const char *tool, enum call_status st,
		      uint64_t duration)
{
	struct sonde_event ev = ev_base(f, EV_CALL, ts);

	ev.call.method = "tools/call";
	ev.call.id = id;
	ev.call.tool = tool;
	ev.call.status = st;
	ev.call.duration_ns = duration;
	ev.call.direction = DIR_CLIENT_TO_SERVER;
	sinks_emit(&f->sinks, &ev);
}

static void feed_stderr(struct fixture *f, uint64_t ts, const char *line)
{
	struct sonde_event ev = ev_base(f, EV_STDERR, ts);

	ev.stderr_line.line = line;
	ev.stderr_line.bytes = strlen(line) + 1;
	sinks_emit(&f->sinks, &ev);
}

static void feed_exit(struct fixture *f, uint64_t ts, int code, int sig, bool normal, unsigned pending)
{
	struct sonde_event ev = ev_base(f, EV_EXIT, ts);

	ev.exit.exit_code = sig ? -1 : code;
	ev.exit.signal = sig;
	ev.exit.normal = normal;
	ev.exit.reason = normal ? "shutdown" : sig ? "signal" : "exit";
	ev.exit.pending_calls = pending;
	ev.exit.raw = sig ? (uint32_t)sig : (uint32_t)code << 8;
	ev.exit.on_channel = !f->helper;
	sinks_emit(&f->sinks, &ev);
}

static unsigned report_count(const char *dir)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, REPORT_SUFFIX))
			n++;
	closedir(d);
	return n;
}

static json_t *read_report(const char *path)
{
	char err[256];
	json_t *r = report_read(path, 0, err, sizeof(err));

	if (!r)
		fail_msg("%s", err);
	return r;
}

static char *render_text(const json_t *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	report_render(r, out);
	fclose(out);
	return buf;
}

/* ---- tests ---- */

/* The first case, by hand: a call in flight, SIGSEGV. */
/* A helper the server spawned with its own stdio (git...) exiting 1 is not a server crash. */
static void test_helper_exit_writes_no_report(void **state)
{
	struct fixture *f = fixture_new(NULL);

	(void)state;
	f->helper = true;
	snprintf(f->id.comm, sizeof(f->id.comm), "git");
	feed_stderr(f, T0, "fatal: not a git repository");
	feed_exit(f, T0 + SEC, 128, 0, false, 0);
	assert_int_equal(f->seen.reports, 0);
	assert_int_equal(recorder_stats(f->rec)->reports_written, 0);
	fixture_free(f);
}

static void test_crash_report_and_event(void **state)
{
	struct fixture *f = fixture_new(NULL);
	json_t *r, *pending, *frames, *tl;
	char *text, *dump;
	struct stat st;
	size_t i;
	bool exit_last = false;

	(void)state;
	/* watch --all found who talks to it, through a relay, and where each runs */
	static const struct attrib_record server_pod = { .role = ATTRIB_ROLE_WORKLOAD, .runtime = ATTRIB_RUNTIME_CONTAINERD,
							 .container_id = "c0ffee0a1b2c", .k8s_namespace = "tools",
							 .pod_name = "weather-5d8b", .k8s_container_name = "weather" };
	static const struct attrib_record agent_pod = { .role = ATTRIB_ROLE_WORKLOAD, .runtime = ATTRIB_RUNTIME_CONTAINERD,
							.container_id = "8bd9eccefffa", .k8s_namespace = "team-a",
							.pod_name = "agent-7f9c", .k8s_container_name = "agent" };
	f->id.where = &server_pod;
	f->id.client_process = (struct proc_ref){ .pid = 100, .start_ticks = 5, .comm = "agent", .exe = "/usr/bin/agent",
						  .where = &agent_pod };
	f->id.relay = (struct proc_ref){ .pid = 200, .start_ticks = 6, .comm = "socat" };
	feed_tool_request(f, T0, "1", "echo", "secret-arg-one");
	feed_result(f, T0 + SEC / 100, "1", "secret-result-one");
	feed_call(f, T0 + SEC / 100, "1", "echo", CALL_OK, SEC / 100);
	feed_tool_request(f, T0 + 9 * SEC, "2", "trigger-long-running-operation", "secret-arg-two");
	feed_stderr(f, T0 + 10 * SEC, "about to do something risky");
	/* The pipeline orphans the pending call, then reports the exit. */
	feed_call(f, T0 + 12 * SEC, "2", "trigger-long-running-operation", CALL_ORPHANED, 3 * SEC);
	feed_exit(f, T0 + 12 * SEC, 0, SIGSEGV, false, 1);

	assert_int_equal(f->seen.reports, 1);
	/* The JSONL sink (before the recorder) saw the exit, then the report. */
	for (i = 0; i + 1 < f->seen.n; i++)
		if (f->seen.types[i] == EV_EXIT && f->seen.types[i + 1] == EV_REPORT)
			exit_last = true;
	assert_true(exit_last);
	assert_int_equal(recorder_stats(f->rec)->reports_written, 1);
	assert_int_equal(recorder_stats(f->rec)->servers, 0); /* state freed at exit */
	assert_int_equal(stat(f->seen.report_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_non_null(strstr(f->seen.report_path, "/mcpsonde-node-4242-"));

	r = read_report(f->seen.report_path);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "exit"), "signal_name")), "SIGSEGV");
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "process"), "cmdline")),
			    "node /srv/everything/dist/index.js stdio");
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(r, "process"), "client_process"), "pid")), 100);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(r, "process"), "relay"), "start_ticks")), 6);
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(r, "process"), "resource"), "k8s.pod.name")),
			    "weather-5d8b");
	assert_string_equal(json_string_value(json_object_get(
				    json_object_get(json_object_get(json_object_get(r, "process"), "client_process"), "resource"),
				    "k8s.pod.name")),
			    "agent-7f9c");
	pending = json_object_get(r, "pending_calls");
	assert_int_equal(json_array_size(pending), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(pending, 0), "tool")),
			    "trigger-long-running-operation");
	assert_string_equal(json_string_value(json_object_get(json_array_get(pending, 0), "id")), "2");
	assert_true(json_is_true(json_object_get(json_array_get(pending, 0), "orphaned")));
	assert_float_equal(json_real_value(json_object_get(json_array_get(pending, 0), "age_s")), 3.0, 1e-9);
	frames = json_object_get(r, "frames");
	assert_int_equal(json_array_size(json_object_get(frames, "client_to_server")), 2);
	assert_int_equal(json_array_size(json_object_get(frames, "server_to_client")), 1);
	assert_string_equal(json_string_value(json_object_get(r, "stderr") ?
						      json_object_get(json_object_get(r, "stderr"), "tail") : NULL),
			    "about to do something risky\n");
	tl = json_object_get(r, "timeline");
	assert_string_equal(json_string_value(json_object_get(json_array_get(tl, json_array_size(tl) - 1), "kind")), "exit");
	/* Keys only: no argument or result value anywhere in the report. */
	dump = json_dumps(r, 0);
	assert_null(strstr(dump, "secret-"));
	assert_non_null(strstr(dump, "\"message\"")); /* the argument's key is there */
	free(dump);

	text = render_text(r);
	assert_non_null(strstr(text, "mcp-servers/everything (pid 4242) killed by SIGSEGV"));
	assert_non_null(strstr(text, "1 call pending"));
	assert_non_null(strstr(text, "agent[100] /usr/bin/agent, in pod team-a/agent-7f9c container agent"));
	assert_non_null(strstr(text, "pod tools/weather-5d8b container weather"));
	assert_non_null(strstr(text, "socat[200]"));
	assert_non_null(strstr(text, "trigger-long-running-operation"));
	assert_non_null(strstr(text, "| about to do something risky"));
	free(text);
	json_decref(r);
	fixture_free(f);
}

static void test_normal_shutdown_no_report(void **state)
{
	struct fixture *f = fixture_new(NULL);
	struct sonde_event ev;

	(void)state;
	feed_tool_request(f, T0, "1", "echo", "x");
	feed_result(f, T0 + 1, "1", "y");
	feed_call(f, T0 + 1, "1", "echo", CALL_OK, 1);
	ev = ev_base(f, EV_STDIN_CLOSED, T0 + SEC);
	sinks_emit(&f->sinks, &ev);
	feed_exit(f, T0 + 2 * SEC, -1, SIGTERM, true, 0);
	assert_int_equal(f->seen.reports, 0);
	assert_int_equal(report_count(f->dir), 0);
	assert_int_equal(recorder_stats(f->rec)->servers, 0);
	assert_int_equal(recorder_stats(f->rec)->bytes, 0);

	/* Exit code 0 without a shutdown: normal too. */
	feed_tool_request(f, T0 + 3 * SEC, "1", "echo", "x");
	feed_call(f, T0 + 3 * SEC + 1, "1", "echo", CALL_OK, 1);
	feed_exit(f, T0 + 4 * SEC, 0, 0, true, 0);
	assert_int_equal(report_count(f->dir), 0);
	fixture_free(f);
}

static void test_exit_code_traceback(void **state)
{
	struct fixture *f = fixture_new(NULL);
	static const char *tb[] = {
		"Traceback (most recent call last):",
		"  File \"/srv/server.py\", line 42, in handle",
		"    raise RuntimeError(\"database unreachable\")",
		"RuntimeError: database unreachable",
	};
	char *text;
	const char *tail;
	json_t *r;
	unsigned i;

	(void)state;
	for (i = 0; i < 4; i++)
		feed_stderr(f, T0 + i, tb[i]);
	feed_exit(f, T0 + SEC, 1, 0, false, 0);
	assert_int_equal(f->seen.reports, 1);
	r = read_report(f->seen.report_path);
	tail = json_string_value(json_object_get(json_object_get(r, "stderr"), "tail"));
	assert_non_null(strstr(tail, "Traceback (most recent call last):\n"));
	assert_non_null(strstr(tail, "RuntimeError: database unreachable\n"));
	text = render_text(r);
	assert_non_null(strstr(text, "exited with code 1"));
	assert_non_null(strstr(text, "| RuntimeError: database unreachable"));
	free(text);
	json_decref(r);
	fixture_free(f);
}

/* A request the pipeline never orphaned (its exit says 0 pending) still shows, marked as
 * seen by the recorder only; an answered one does not. */
static void tweak_frames8(struct recorder_opts *o)
{
	o->frames = 8;
}

static void test_frames_bounded_newest_kept(void **state)
{
	struct fixture *f = fixture_new(tweak_frames8);
	json_t *r, *c2s, *seen;
	char id[16];
	int i;

	(void)state;
	for (i = 0; i < 100; i++) {
		snprintf(id, sizeof(id), "%d", i);
		feed_tool_request(f, T0 + (uint64_t)i * 1000, id, "echo", "v");
		feed_result(f, T0 + (uint64_t)i * 1000 + 1, id, "w");
		feed_call(f, T0 + (uint64_t)i * 1000 + 1, id, "echo", CALL_OK, 1);
	}
	feed_exit(f, T0 + SEC, 2, 0, false, 0);
	r = read_report(f->seen.report_path);
	c2s = json_object_get(json_object_get(r, "frames"), "client_to_server");
	assert_int_equal(json_array_size(c2s), 8);
	assert_int_equal(json_array_size(json_object_get(json_object_get(r, "frames"), "server_to_client")), 8);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(c2s, 7), "event"), "id")), 99);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_array_get(c2s, 0), "event"), "id")), 92);
	seen = json_object_get(json_object_get(r, "frames"), "seen");
	assert_int_equal(json_integer_value(json_object_get(seen, "client_to_server")), 100);
	assert_int_equal(json_array_size(json_object_get(r, "pending_calls")), 0);
	json_decref(r);
	fixture_free(f);
}

static void tweak_values(struct recorder_opts *o)
{
	o->capture_values = true;
}

static void test_capture_values(void **state)
{
	struct fixture *f = fixture_new(tweak_values);
	json_t *r;
	char *dump;

	(void)state;
	feed_tool_request(f, T0, "1", "echo", "visible-argument");
	feed_exit(f, T0 + SEC, -1, SIGSEGV, false, 1);
	r = read_report(f->seen.report_path);
	dump = json_dumps(r, 0);
	assert_non_null(strstr(dump, "visible-argument"));
	free(dump);
	json_decref(r);
	fixture_free(f);
}

static void test_stderr_tail_bounded(void **state)
{
	struct fixture *f = fixture_new(NULL);
	char line[1024];
	const char *tail;
	json_t *r, *err;
	int i;

	(void)state;
	for (i = 0; i < 400; i++) { /* ~400 KiB of stderr */
		memset(line, 'a' + i % 26, sizeof(line) - 1);
		line[sizeof(line) - 1] = '\0';
		snprintf(line, 16, "line %05d ", i);
		line[strlen(line)] = '.';
		feed_stderr(f, T0 + (uint64_t)i, line);
	}
	feed_exit(f, T0 + SEC, 1, 0, false, 0);
	r = read_report(f->seen.report_path);
	err = json_object_get(r, "stderr");
	tail = json_string_value(json_object_get(err, "tail"));
	assert_true(strlen(tail) <= RECORDER_STDERR_BYTES_DEFAULT);
	assert_true(strlen(tail) >= RECORDER_STDERR_BYTES_DEFAULT - 2048);
	assert_non_null(strstr(tail, "line 00399 "));
	assert_null(strstr(tail, "line 00000 "));
	assert_int_equal(json_integer_value(json_object_get(err, "lines_seen")), 400);
	assert_true(json_integer_value(json_object_get(err, "lines_dropped")) > 300);
	json_decref(r);
	fixture_free(f);
}

/* Stderr is the server's bytes: invalid UTF-8 in it still gives a report (found by
 * fuzz_capture: jansson refused to encode the whole report). */
static void test_stderr_invalid_utf8(void **state)
{
	struct fixture *f = fixture_new(NULL);
	const char *tail;
	json_t *r;

	(void)state;
	feed_stderr(f, T0, "event: mess\x9f\x98\xdf...");
	feed_stderr(f, T0 + 1, "caf\xc3\xa9 ok");
	feed_exit(f, T0 + SEC, 1, 0, false, 0);
	assert_int_equal(f->seen.reports, 1);
	r = read_report(f->seen.report_path);
	tail = json_string_value(json_object_get(json_object_get(r, "stderr"), "tail"));
	assert_string_equal(tail, "event: mess" UTF8_REPLACEMENT UTF8_REPLACEMENT UTF8_REPLACEMENT "...\ncaf\xc3\xa9 ok\n");
	json_decref(r);
	fixture_free(f);
}

static void test_stall_blocked_loss_in_report(void **state)
{
	struct fixture *f = fixture_new(NULL);
	struct sonde_event ev;
	json_t *r, *events, *health;
	char *text;

	(void)state;
	feed_tool_request(f, T0, "5", "trigger-long-running-operation", "x");
	ev = ev_base(f, EV_STALL, T0 + 30 * SEC);
	ev.stall.method = "tools/call";
	ev.stall.id = "5";
	ev.stall.tool = "trigger-long-running-operation";
	ev.stall.pending_ns = 30 * SEC;
	ev.stall.state = 'T';
	ev.stall.threads = 11;
	ev.stall.wchan = "do_signal_stop";
	sinks_emit(&f->sinks, &ev);
	ev = ev_base(f, EV_BLOCKED_WRITE, T0 + 31 * SEC);
	ev.blocked_write.fd = 1;
	ev.blocked_write.blocked_ns = 5 * SEC;
	ev.blocked_write.bytes = 300000;
	sinks_emit(&f->sinks, &ev);
	ev = ev_base(f, EV_LOSS, T0 + 31 * SEC);
	ev.loss.reason = "gap";
	ev.loss.bytes = 4096;
	ev.loss.records = 1;
	ev.loss.fd = 1;
	sinks_emit(&f->sinks, &ev);
	/* A loss tied to no process, while the server lived. */
	ev = ev_base(f, EV_LOSS, T0 + 31 * SEC);
	ev.pid = 0;
	ev.session = NULL;
	ev.loss.reason = "ringbuf_full";
	ev.loss.records = 3;
	ev.loss.fd = -1;
	sinks_emit(&f->sinks, &ev);
	feed_call(f, T0 + 32 * SEC, "5", "trigger-long-running-operation", CALL_ORPHANED, 32 * SEC);
	feed_exit(f, T0 + 32 * SEC, -1, SIGKILL, false, 1);

	r = read_report(f->seen.report_path);
	events = json_object_get(r, "events");
	assert_int_equal(json_array_size(events), 3);
	assert_string_equal(json_string_value(json_object_get(json_array_get(events, 0), "type")), "stall");
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(events, 0), "event"), "state")),
			    "T");
	assert_string_equal(json_string_value(json_object_get(json_array_get(events, 1), "type")), "blocked_write");
	health = json_object_get(r, "capture_health");
	assert_true(json_is_true(json_object_get(health, "lost")));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(json_object_get(health, "loss_by_reason"), "gap"),
							    "bytes")),
			 4096);
	assert_int_equal(json_array_size(json_object_get(health, "global_losses")), 1);
	text = render_text(r);
	assert_non_null(strstr(text, "state T"));
	assert_non_null(strstr(text, "wchan do_signal_stop"));
	assert_non_null(strstr(text, "blocked for 5.0 s"));
	assert_non_null(strstr(text, "INCOMPLETE"));
	free(text);
	json_decref(r);
	fixture_free(f);
}

/* Two processes with one pid (reuse): two states; the exit of one leaves the other. */
static void test_pid_reuse_separate(void **state)
{
	struct fixture *f = fixture_new(NULL);
	struct session_identity other;
	struct sonde_event ev;
	json_t *r;

	(void)state;
	feed_stderr(f, T0, "first process");
	other = f->id;
	other.start_ticks = 999;
	ev = ev_base(f, EV_STDERR, T0 + 1);
	ev.session = &other;
	ev.stderr_line.line = "second process";
	sinks_emit(&f->sinks, &ev);
	assert_int_equal(recorder_stats(f->rec)->servers, 2);
	feed_exit(f, T0 + SEC, 3, 0, false, 0);
	assert_int_equal(recorder_stats(f->rec)->servers, 1);
	r = read_report(f->seen.report_path);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "stderr"), "tail")), "first process\n");
	json_decref(r);
	fixture_free(f);
}

static void tweak_small_memory(struct recorder_opts *o)
{
	o->max_server_bytes = 16 << 10;
	o->max_total_bytes = 64 << 10;
	o->max_servers = 8;
}

static void test_memory_bounds(void **state)
{
	struct fixture *f = fixture_new(tweak_small_memory);
	const struct recorder_stats *st = recorder_stats(f->rec);
	struct session_identity ids[20];
	char line[512];
	int i, j;

	(void)state;
	memset(line, 'z', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	for (i = 0; i < 20; i++) {
		ids[i] = f->id;
		ids[i].pid = 1000 + (uint32_t)i;
		for (j = 0; j < 100; j++) {
			struct sonde_event ev = ev_base(f, EV_STDERR, T0 + (uint64_t)(i * 100 + j));
			ev.pid = ids[i].pid;
			ev.session = &ids[i];
			ev.stderr_line.line = line;
			sinks_emit(&f->sinks, &ev);
			assert_true(st->bytes <= 64 << 10);
		}
	}
	assert_true(st->servers <= 8);
	assert_int_equal(st->servers_evicted, 12);
	assert_true(st->items_evicted > 0);
	fixture_free(f);
}

/* A live process (this one): cgroup read at the first event, /proc sampled on ticks. */
static void test_resources_and_cgroup_of_live_process(void **state)
{
	struct fixture *f = fixture_new(NULL);
	struct proc_sample ps;
	json_t *r, *res;
	int i;

	(void)state;
	assert_int_equal(proc_sample(getpid(), &ps), 0);
	f->id.pid = (uint32_t)getpid();
	f->id.start_ticks = ps.start_ticks;
	feed_stderr(f, T0, "hello");
	for (i = 1; i <= 70; i++)
		sinks_tick(&f->sinks, T0 + (uint64_t)i * SEC);
	feed_exit(f, T0 + 71 * SEC, 1, 0, false, 0);
	r = read_report(f->seen.report_path);
	res = json_object_get(r, "resources");
	assert_true(json_array_size(res) >= 59 && json_array_size(res) <= 61); /* the last minute */
	assert_true(json_integer_value(json_object_get(json_array_get(res, 0), "rss_bytes")) > 0);
	if (access("/proc/self/cgroup", R_OK) == 0)
		assert_non_null(json_string_value(json_object_get(json_object_get(r, "process"), "cgroup")));
	json_decref(r);
	fixture_free(f);
}

/* Replaying another machine's capture: a pid that exists here with another start time is
 * never sampled. */
static void test_no_sampling_of_other_process(void **state)
{
	struct fixture *f = fixture_new(NULL);
	json_t *r;

	(void)state;
	f->id.pid = (uint32_t)getpid();
	f->id.start_ticks = 1; /* not ours */
	feed_stderr(f, T0, "hello");
	sinks_tick(&f->sinks, T0 + SEC);
	sinks_tick(&f->sinks, T0 + 2 * SEC);
	feed_exit(f, T0 + 3 * SEC, 1, 0, false, 0);
	r = read_report(f->seen.report_path);
	assert_int_equal(json_array_size(json_object_get(r, "resources")), 0);
	assert_true(json_is_null(json_object_get(json_object_get(r, "process"), "cgroup")));
	json_decref(r);
	fixture_free(f);
}

static void tweak_two_reports(struct recorder_opts *o)
{
	o->max_reports = 2;
}

static void test_report_count_bounded(void **state)
{
	struct fixture *f = fixture_new(tweak_two_reports);
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		f->id.pid = 100 + (uint32_t)i;
		feed_stderr(f, T0 + (uint64_t)i * SEC, "bye");
		feed_exit(f, T0 + (uint64_t)i * SEC + 1, 1, 0, false, 0);
	}
	assert_int_equal(f->seen.reports, 5);
	assert_int_equal(report_count(f->dir), 2);
	assert_int_equal(access(f->seen.report_path, F_OK), 0); /* the newest is kept */
	fixture_free(f);
}

static void tweak_no_dir(struct recorder_opts *o)
{
	o->report_dir = NULL;
}

static void test_no_report_dir(void **state)
{
	struct fixture *f = fixture_new(tweak_no_dir);

	(void)state;
	feed_stderr(f, T0, "x");
	feed_exit(f, T0 + 1, -1, SIGSEGV, false, 0);
	assert_int_equal(f->seen.reports, 0);
	assert_int_equal(recorder_stats(f->rec)->servers, 0);
	fixture_free(f);
}

static void test_bad_report_dir_fails_at_start(void **state)
{
	struct recorder_opts o;
	char err[256] = "";

	(void)state;
	recorder_opts_default(&o);
	o.report_dir = "/proc/self/no-such/reports";
	assert_null(sink_recorder_new(&o, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "report dir"));
}

/* An exit of a process never seen before still gets its report. */
static void test_exit_without_history(void **state)
{
	struct fixture *f = fixture_new(NULL);
	json_t *r;

	(void)state;
	feed_exit(f, T0, -1, SIGABRT, false, 0);
	assert_int_equal(f->seen.reports, 1);
	r = read_report(f->seen.report_path);
	assert_string_equal(json_string_value(json_object_get(json_object_get(r, "exit"), "signal_name")), "SIGABRT");
	json_decref(r);
	fixture_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_report_and_event),
		cmocka_unit_test(test_helper_exit_writes_no_report),
		cmocka_unit_test(test_normal_shutdown_no_report),
		cmocka_unit_test(test_exit_code_traceback),
		cmocka_unit_test(test_frames_bounded_newest_kept),
		cmocka_unit_test(test_capture_values),
		cmocka_unit_test(test_stderr_tail_bounded),
		cmocka_unit_test(test_stderr_invalid_utf8),
		cmocka_unit_test(test_stall_blocked_loss_in_report),
		cmocka_unit_test(test_pid_reuse_separate),
		cmocka_unit_test(test_memory_bounds),
		cmocka_unit_test(test_resources_and_cgroup_of_live_process),
		cmocka_unit_test(test_no_sampling_of_other_process),
		cmocka_unit_test(test_report_count_bounded),
		cmocka_unit_test(test_no_report_dir),
		cmocka_unit_test(test_bad_report_dir_fails_at_start),
		cmocka_unit_test(test_exit_without_history),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

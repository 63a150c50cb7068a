/* test_sinks.c -- the output sinks: what a hostile peer's strings become on a terminal, and
 * when the buffered output reaches its file.
 *
 * Issue 13 item 15: serverInfo.name, tool names, ids, error messages, stderr and command
 * lines put raw ESC/BEL and forged lines into the text output. Every line the text sink and
 * the post-mortem rendering write must be inert: no C0 control but the line's own newline,
 * no DEL, no C1 control, no bidirectional override, one line per event. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "mcpsonde/report.h"
#include "mcpsonde/sink.h"
#include "mcpsonde/utf8.h"

#define EVIL_UTF8 "evil\x1b]0;pwned\x07\x1b[2J\rforged line\nroot# \xc2\x9b" "1m\xe2\x80\xae" "txt.exe\x7f"
#define EVIL EVIL_UTF8 "\x9b" "31m" /* and an invalid byte: an 8-bit CSI to some terminals */

/* Fails when text holds anything that acts on a terminal; returns its number of lines. */
static size_t assert_inert(const char *text, size_t len)
{
	size_t lines = 0;

	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)text[i];
		uint32_t cp;
		size_t n;

		if (c == '\n') {
			lines++;
			i++;
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			fail_msg("control 0x%02x at byte %zu: %.*s", c, i, (int)len, text);
		n = utf8_seq_len((const unsigned char *)text + i, len - i, &cp);
		if (!n)
			fail_msg("invalid UTF-8 at byte %zu", i);
		if ((cp >= 0x80 && cp <= 0x9f) || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
			fail_msg("U+%04X at byte %zu", cp, i);
		i += n;
	}
	return lines;
}

static char *slurp(FILE *f, size_t *len)
{
	long n;
	char *buf;

	fflush(f);
	n = ftell(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	rewind(f);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

/* Where it runs: names from a container's config.json, which is untrusted too. */
static struct attrib_record evil_where = { .role = ATTRIB_ROLE_WORKLOAD, .runtime = ATTRIB_RUNTIME_CONTAINERD,
					   .k8s_namespace = "team\x1b[2J", .pod_name = EVIL,
					   .k8s_container_name = "agent\nforged" };

static struct session_identity evil_identity(void)
{
	struct session_identity id = { .pid = 4242, .comm = "node", .where = &evil_where };

	id.server_name = EVIL;
	id.server_version = "1.0" EVIL;
	id.client_name = EVIL;
	id.protocol_version = "2025-11-25";
	id.cmdline = "/usr/bin/node " EVIL;
	id.initialized_ns = 1;
	id.client_process = (struct proc_ref){ .pid = 77, .comm = "agent", .where = &evil_where };
	return id;
}

/* One event of every type that prints a peer's string. */
static void emit_evil_events(struct sink_list *sinks, const struct session_identity *id)
{
	struct sonde_event ev = { .pid = 4242, .session = id, .real_ns = 1795000000000000000ull };

	ev.type = EV_SESSION;
	sinks_emit(sinks, &ev);
	ev.type = EV_CALL;
	ev.call.method = "tools/" EVIL;
	ev.call.tool = EVIL;
	ev.call.id = "\"" EVIL "\"";
	ev.call.status = CALL_ERROR;
	ev.call.error_code = -32000;
	ev.call.error_message = EVIL;
	sinks_emit(sinks, &ev);
	memset(&ev.call, 0, sizeof(ev.call));
	ev.type = EV_NOTIFICATION;
	ev.notification.method = EVIL;
	sinks_emit(sinks, &ev);
	ev.type = EV_INVALID;
	ev.invalid.fd = 1;
	ev.invalid.frames = 1;
	ev.invalid.preview = EVIL;
	sinks_emit(sinks, &ev);
	ev.type = EV_STDERR;
	ev.stderr_line.line = EVIL;
	sinks_emit(sinks, &ev);
	ev.type = EV_STALL;
	memset(&ev.stall, 0, sizeof(ev.stall));
	ev.stall.method = EVIL;
	ev.stall.tool = EVIL;
	ev.stall.id = EVIL;
	ev.stall.wchan = EVIL;
	sinks_emit(sinks, &ev);
}

static void test_text_output_is_inert(void **state)
{
	struct event_format_opts fo = { 0 };
	struct session_identity id = evil_identity();
	struct sink_list sinks = { 0 };
	FILE *f = tmpfile();
	size_t len;
	char *text;

	(void)state;
	assert_non_null(f);
	sinks_add(&sinks, sink_text_new(f, &fo));
	emit_evil_events(&sinks, &id);
	sinks_close(&sinks);
	text = slurp(f, &len);
	assert_int_equal(assert_inert(text, len), 6); /* one line per event, no forged one */
	assert_non_null(strstr(text, "evil\\x1b]0;pwned\\x07\\x1b[2J\\rforged line\\nroot# \\u009b1m\\u202etxt.exe\\x7f\\x9b31m"));
	assert_non_null(strstr(text, ", client agent[77] in pod team\\x1b[2J/evil\\x1b]0;pwned"));
	free(text);
	fclose(f);
}

/* JSONL stays valid JSON, with controls escaped, one line per event. */
static void test_json_output_is_inert(void **state)
{
	struct event_format_opts fo = { 0 };
	struct session_identity id = evil_identity();
	struct sink_list sinks = { 0 };
	FILE *f = tmpfile();
	size_t len, lines = 0;
	char *text, *line, *save = NULL;

	(void)state;
	assert_non_null(f);
	sinks_add(&sinks, sink_json_new(f, &fo));
	emit_evil_events(&sinks, &id);
	sinks_close(&sinks);
	text = slurp(f, &len);
	assert_int_equal(assert_inert(text, len), 6);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *o = json_loads(line, 0, NULL);
		assert_non_null(o);
		assert_non_null(json_object_get(o, "server"));
		/* the client's pod, escaped on the way out and whole on the way back in */
		if (json_object_get(o, "client_process"))
			assert_non_null(strstr(json_string_value(json_object_get(
						       json_object_get(json_object_get(o, "client_process"), "resource"), "k8s.pod.name")),
					       "evil\x1b]0;pwned\x07\x1b[2J\rforged line\nroot# "));
		json_decref(o);
		lines++;
	}
	assert_int_equal(lines, 6);
	free(text);
	fclose(f);
}

/* Output is buffered until the event loop flushes: one write per drain. */
static void test_output_waits_for_flush(void **state)
{
	struct event_format_opts fo = { 0 };
	struct session_identity id = { .pid = 1, .comm = "srv" };
	struct sonde_event ev = { .type = EV_STDERR, .pid = 1, .session = &id };
	struct sink_list sinks = { 0 };
	FILE *jf = tmpfile(), *tf = tmpfile();
	struct stat st;

	(void)state;
	sinks_add(&sinks, sink_json_new(jf, &fo));
	sinks_add(&sinks, sink_text_new(tf, &fo));
	ev.stderr_line.line = "hello";
	for (int i = 0; i < 10; i++)
		sinks_emit(&sinks, &ev);
	assert_int_equal(fstat(fileno(jf), &st), 0);
	assert_int_equal(st.st_size, 0);
	sinks_flush(&sinks);
	assert_int_equal(fstat(fileno(jf), &st), 0);
	assert_true(st.st_size > 0);
	assert_int_equal(fstat(fileno(tf), &st), 0);
	assert_true(st.st_size > 0);
	sinks_close(&sinks);
	fclose(jf);
	fclose(tf);
}

/* The post-mortem rendering of a report with hostile strings, as a tampered file or a
 * hostile server would leave them. */
static void test_report_rendering_is_inert(void **state)
{
	json_t *r = json_pack("{s:i, s:{s:i, s:s, s:s, s:s, s:s, s:s, s:s}, s:{s:s, s:i, s:b}, "
			      "s:[{s:s, s:s, s:s, s:f, s:b}], s:[{s:f, s:s, s:s}], s:{s:s, s:i}, "
			      "s:{s:b, s:{s:{s:i, s:i}}, s:{}}, s:[s]}",
			      "mcpsonde_report", REPORT_VERSION,
			      "process", "pid", 7, "name", EVIL_UTF8, "server_name", EVIL_UTF8, "comm", EVIL_UTF8, "cmdline", EVIL_UTF8,
			      "client_name", EVIL_UTF8, "exe", EVIL_UTF8,
			      "exit", "reason", "exit", "exit_code", 1, "normal", 0,
			      "pending_calls", "method", EVIL_UTF8, "tool", EVIL_UTF8, "id", EVIL_UTF8, "age_s", 1.0, "orphaned", 1,
			      "timeline", "t", -1.0, "kind", EVIL_UTF8, "summary", EVIL_UTF8,
			      "stderr", "tail", EVIL_UTF8 "\n" EVIL_UTF8 "\n", "lines_seen", 2,
			      "capture_health", "lost", 1, "loss_by_reason", EVIL_UTF8, "records", 1, "bytes", 2, "recorder",
			      "trimmed", EVIL_UTF8);
	FILE *f = tmpfile();
	size_t len;
	char *text;

	(void)state;
	assert_non_null(r);
	report_render(r, f);
	text = slurp(f, &len);
	assert_inert(text, len);
	assert_non_null(strstr(text, "  | evil\\x1b]0;pwned")); /* the two stderr lines stay two lines */
	assert_non_null(strstr(strstr(text, "  | evil\\x1b]0;pwned") + 1, "  | evil\\x1b]0;pwned"));
	free(text);
	fclose(f);
	json_decref(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text_output_is_inert),
		cmocka_unit_test(test_json_output_is_inert),
		cmocka_unit_test(test_output_waits_for_flush),
		cmocka_unit_test(test_report_rendering_is_inert),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_metrics.c -- the registry and its exposition formats, label escaping and folding,
 * the metrics sink fed with constructed events, /metrics over HTTP, and --summary. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcpsonde/metrics.h"

#define V(...) ((const char *const[]){ __VA_ARGS__ })
#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void assert_contains(const char *text, const char *needle)
{
	if (!strstr(text, needle))
		fail_msg("missing: %s\n--- in:\n%s", needle, text);
}

static void assert_lacks(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fail_msg("unexpected: %s", needle);
}

/* Runs promtool check metrics over text when promtool is installed: it must say nothing. */
static void assert_promtool_clean(const char *text)
{
	char path[] = "/tmp/mcpsonde-metrics-XXXXXX", cmd[256], out[4096];
	FILE *f, *p;
	size_t n;
	int fd;

	if (access("/usr/bin/promtool", X_OK) != 0)
		return;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
	p = popen(cmd, "r");
	n = fread(out, 1, sizeof(out) - 1, p);
	out[n] = '\0';
	pclose(p);
	unlink(path);
	if (n)
		fail_msg("promtool check metrics: %s", out);
}

/* ---- labels ------------------------------------------------------------------------- */

static void test_label_escape(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(metrics_label_escape("a\\b\"c\nd", out, sizeof(out)), 10);
	assert_string_equal(out, "a\\\\b\\\"c\\nd");
	assert_int_equal(metrics_label_escape("plain", out, sizeof(out)), 5);
	assert_string_equal(out, "plain");
	/* truncated output is still terminated; the return says what was needed */
	assert_int_equal(metrics_label_escape("\"\"\"", out, 4), 6);
	assert_string_equal(out, "\\\"\\");
}

static void test_label_sanitize(void **state)
{
	char out[METRICS_LABEL_MAX + 1], big[1000];

	(void)state;
	metrics_label_sanitize("caf\xc3\xa9", out);
	assert_string_equal(out, "caf\xc3\xa9");
	metrics_label_sanitize("a\xff" "b\xc3", out); /* invalid byte, truncated sequence */
	assert_string_equal(out, "a\xef\xbf\xbd" "b\xef\xbf\xbd");
	metrics_label_sanitize("\xed\xa0\x80", out); /* a UTF-16 surrogate is not UTF-8 */
	assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	metrics_label_sanitize(NULL, out);
	assert_string_equal(out, "");
	/* cut at METRICS_LABEL_MAX bytes, on a character boundary */
	for (size_t i = 0; i + 2 < sizeof(big); i += 2)
		memcpy(big + i, "\xc3\xa9", 2);
	big[sizeof(big) - 2] = '\0';
	metrics_label_sanitize(big, out);
	assert_int_equal(strlen(out), METRICS_LABEL_MAX);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[METRICS_LABEL_MAX - 1] = '\xc3';
	big[METRICS_LABEL_MAX] = '\xa9';
	metrics_label_sanitize(big, out);
	assert_int_equal(strlen(out), METRICS_LABEL_MAX - 1);
}

static void test_label_folder(void **state)
{
	struct label_folder *lf = label_folder_new(2);
	bool folded;

	(void)state;
	assert_string_equal(label_folder_admit(lf, "a", &folded), "a");
	assert_false(folded);
	assert_string_equal(label_folder_admit(lf, "b", &folded), "b");
	assert_string_equal(label_folder_admit(lf, "c", &folded), METRICS_OTHER);
	assert_true(folded);
	assert_string_equal(label_folder_admit(lf, "a", &folded), "a"); /* admitted ones stay */
	assert_false(folded);
	assert_int_equal(label_folder_size(lf), 2);
	label_folder_free(lf);

	/* 100k distinct values cost the cap, not 100k */
	lf = label_folder_new(256);
	for (int i = 0; i < 100000; i++) {
		char v[16];
		snprintf(v, sizeof(v), "m%d", i);
		label_folder_admit(lf, v, NULL);
	}
	assert_int_equal(label_folder_size(lf), 256);
	label_folder_free(lf);
}

/* ---- registry and formats ------------------------------------------------------------- */

static void test_render_text(void **state)
{
	struct metrics_registry *r = metrics_registry_new();
	struct metric_family *c = metrics_counter(r, "demo_requests", "Requests.\nTwo lines \\ here.", L("a", "b"));
	struct metric_family *g = metrics_gauge(r, "demo_up", "Up.", NULL);
	struct metric_family *e = metrics_gauge(r, "demo_empty", "No series yet.", L("x"));
	double bounds[] = { 0.001, 0.5, 1 };
	struct metric_family *h = metrics_histogram(r, "demo_duration_seconds", "Durations.", L("op"), bounds, 3);
	char *text;

	(void)state;
	(void)e;
	metrics_counter_add(c, V("x", "q\"uote"), 1);
	metrics_counter_add(c, V("x", "q\"uote"), 2);
	metrics_counter_add(c, V("y", ""), 1); /* empty: the label is left out */
	metrics_counter_add(c, V("y", NULL), 1);
	metrics_counter_add(c, V("z", "w"), -1); /* counters never go down */
	metrics_gauge_set(g, NULL, 0.1);
	metrics_histogram_observe(h, V("call"), 0.0005);
	metrics_histogram_observe(h, V("call"), 0.001); /* le is inclusive */
	metrics_histogram_observe(h, V("call"), 0.7);
	metrics_histogram_observe(h, V("call"), 5);
	assert_int_equal(metrics_value(c, V("x", "q\"uote")), 3);
	assert_int_equal(metrics_value(h, V("call")), 4);
	assert_int_equal(metrics_family_series(c), 2);

	text = metrics_render(r, METRICS_TEXT, NULL);
	assert_contains(text, "# HELP demo_requests_total Requests.\\nTwo lines \\\\ here.\n"
			      "# TYPE demo_requests_total counter\n"
			      "demo_requests_total{a=\"x\",b=\"q\\\"uote\"} 3\n"
			      "demo_requests_total{a=\"y\"} 2\n");
	assert_lacks(text, "a=\"z\"");
	assert_contains(text, "# TYPE demo_up gauge\ndemo_up 0.1\n");
	assert_lacks(text, "demo_empty");
	assert_contains(text, "# TYPE demo_duration_seconds histogram\n"
			      "demo_duration_seconds_bucket{op=\"call\",le=\"0.001\"} 2\n"
			      "demo_duration_seconds_bucket{op=\"call\",le=\"0.5\"} 2\n"
			      "demo_duration_seconds_bucket{op=\"call\",le=\"1\"} 3\n"
			      "demo_duration_seconds_bucket{op=\"call\",le=\"+Inf\"} 4\n"
			      "demo_duration_seconds_sum{op=\"call\"} 5.7015\n"
			      "demo_duration_seconds_count{op=\"call\"} 4\n");
	assert_lacks(text, "# EOF");
	assert_promtool_clean(text);
	free(text);

	text = metrics_render(r, METRICS_OPENMETRICS, NULL);
	assert_contains(text, "# HELP demo_requests Requests.\\nTwo lines \\\\ here.\n# TYPE demo_requests counter\n"
			      "demo_requests_total{a=\"x\",b=\"q\\\"uote\"} 3\n");
	assert_true(strlen(text) > 6 && strcmp(text + strlen(text) - 6, "# EOF\n") == 0);
	free(text);

	metrics_family_reset(c);
	assert_int_equal(metrics_family_series(c), 0);
	metrics_registry_free(r);
}

static void test_series_cap(void **state)
{
	struct metrics_registry *r = metrics_registry_new();
	struct metric_family *c = metrics_counter(r, "demo_x", "X.", L("v"));
	char v[16];

	(void)state;
	for (int i = 0; i < METRICS_SERIES_MAX + 10; i++) {
		snprintf(v, sizeof(v), "%d", i);
		metrics_counter_add(c, V(v), 1);
	}
	assert_int_equal(metrics_family_series(c), METRICS_SERIES_MAX);
	assert_int_equal(metrics_series_dropped(r), 10);
	metrics_registry_free(r);
}

static void test_negotiate(void **state)
{
	(void)state;
	assert_int_equal(metrics_negotiate(NULL), METRICS_TEXT);
	assert_int_equal(metrics_negotiate("*/*"), METRICS_TEXT);
	assert_int_equal(metrics_negotiate("text/plain;version=0.0.4"), METRICS_TEXT);
	/* Prometheus 2.42's scrape Accept header */
	assert_int_equal(metrics_negotiate("application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
					   "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
			 METRICS_OPENMETRICS);
	assert_int_equal(metrics_negotiate("application/openmetrics-text;version=2.0.0,text/plain"), METRICS_TEXT);
	assert_int_equal(metrics_negotiate("text/plain;q=0.9,application/openmetrics-text;q=0.5"), METRICS_TEXT);
	assert_string_equal(metrics_content_type(METRICS_TEXT), "text/plain; version=0.0.4; charset=utf-8");
}

/* ---- the sink ------------------------------------------------------------------------- */

struct fixture {
	struct sink *sink;
	struct session_identity id;
	uint64_t now;
};

static void fixture_init(struct fixture *fx, const struct metrics_opts *opts)
{
	struct metrics_opts o;
	char err[256];

	memset(fx, 0, sizeof(*fx));
	metrics_opts_default(&o);
	o.listen = NULL;
	o.version = "1.2.3-test";
	if (opts)
		o = *opts;
	fx->sink = sink_metrics_new(&o, err, sizeof(err));
	assert_non_null(fx->sink);
	fx->id.pid = 4242;
	strcpy(fx->id.comm, "node");
	fx->id.server_name = "everything";
	fx->id.protocol_version = "2025-06-18";
	fx->id.transport = "unix";
	fx->id.speaks_mcp = true;
	fx->id.first_seen_ns = 1000000000ull;
	fx->now = 2000000000ull;
}

static void emit(struct fixture *fx, struct sonde_event *ev)
{
	ev->session = &fx->id;
	ev->pid = fx->id.pid;
	ev->ts_ns = fx->now;
	fx->sink->on_event(fx->sink, ev);
}

static void request(struct fixture *fx, const char *method, const char *id)
{
	struct sonde_event ev = { .type = EV_MESSAGE };

	ev.message.direction = DIR_CLIENT_TO_SERVER;
	ev.message.kind = "request";
	ev.message.method = method;
	ev.message.id = id;
	ev.message.bytes = 50;
	/* as the session does: the request is pending as of its message */
	if (fx->id.pending_calls++ == 0)
		fx->id.oldest_pending_ns = fx->now;
	emit(fx, &ev);
}

/* The call event that completes a request already told. */
static void call_done(struct fixture *fx, const char *method, const char *tool, const char *id, enum call_status st,
		      long long code, double seconds)
{
	struct sonde_event ev = { .type = EV_CALL };

	ev.call.method = method;
	ev.call.tool = tool;
	ev.call.id = id;
	ev.call.status = st;
	ev.call.error_code = code;
	ev.call.duration_ns = (uint64_t)(seconds * 1e9);
	ev.call.request_bytes = 50;
	ev.call.response_bytes = 300;
	ev.call.direction = DIR_CLIENT_TO_SERVER;
	/* and no longer pending as of its call event */
	if (--fx->id.pending_calls == 0)
		fx->id.oldest_pending_ns = 0;
	emit(fx, &ev);
}

static void call(struct fixture *fx, const char *method, const char *tool, const char *id, enum call_status st,
		 long long code, double seconds)
{
	request(fx, method, id);
	call_done(fx, method, tool, id, st, code, seconds);
}

static char *render(struct fixture *fx)
{
	char *text = sink_metrics_render(fx->sink, METRICS_TEXT, NULL);

	assert_non_null(text);
	return text;
}

#define OP "mcp_server_operation_duration_seconds"
#define LBL_TAIL "mcp_protocol_version=\"2025-06-18\",network_transport=\"unix\""

static void test_sink_calls(void **state)
{
	struct fixture fx;
	char *text;

	(void)state;
	fixture_init(&fx, NULL);
	call(&fx, "initialize", NULL, "0", CALL_OK, 0, 0.002);
	call(&fx, "tools/call", "echo", "1", CALL_OK, 0, 0.0003);
	call(&fx, "tools/call", "echo", "2", CALL_OK, 0, 0.0004);
	call(&fx, "tools/call", "get-sum", "3", CALL_TOOL_ERROR, 0, 0.001);
	call(&fx, "no/such_method", NULL, "4", CALL_ERROR, -32601, 0.0001);
	call(&fx, "tools/call", "trigger-long-running-operation", "5", CALL_CANCELLED, 0, 1);
	call(&fx, "prompts/get", "simple", "6", CALL_OK, 0, 0.0001);
	call(&fx, "resources/read", "file:///a/very/unique/uri", "7", CALL_ERROR, -32602, 0.0001);
	request(&fx, "tools/call", "8"); /* still pending */

	text = render(&fx);
	assert_contains(text, "mcpsonde_build_info{version=\"1.2.3-test\"} 1\n");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"initialize\"," LBL_TAIL "} 1\n");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\","
				 LBL_TAIL "} 2\n");
	assert_contains(text, OP "_bucket{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\","
				 LBL_TAIL ",le=\"0.0005\"} 2\n");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\","
				 "gen_ai_tool_name=\"get-sum\",error_type=\"tool_error\"," LBL_TAIL "} 1\n");
	/* a non-spec method: its own value (under the cap), error code as a string */
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"no/such_method\","
				 "error_type=\"-32601\"," LBL_TAIL "} 1\n");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"prompts/get\","
				 "gen_ai_prompt_name=\"simple\"," LBL_TAIL "} 1\n");
	/* never a resource URI as a label */
	assert_lacks(text, "unique/uri");
	/* cancelled: no latency, its own counter */
	assert_lacks(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\","
			       "gen_ai_tool_name=\"trigger-long-running-operation\"");
	assert_contains(text, "mcpsonde_calls_abandoned_total{server=\"everything\",mcp_method_name=\"tools/call\","
			      "gen_ai_tool_name=\"trigger-long-running-operation\",reason=\"cancelled\"} 1\n");
	assert_contains(text, "mcpsonde_pending_calls{server=\"everything\"} 1\n");
	assert_contains(text, "mcpsonde_tool_result_bytes_count{server=\"everything\",gen_ai_tool_name=\"echo\"} 2\n");
	assert_contains(text, "mcpsonde_messages_total{server=\"everything\",kind=\"request\",direction=\"client_to_server\"} 9\n");
	assert_lacks(text, "4242"); /* no PID label */
	assert_promtool_clean(text);
	free(text);

	/* the oldest pending request ages with the clock */
	fx.sink->on_tick(fx.sink, fx.now + 3000000000ull);
	text = render(&fx);
	assert_contains(text, "mcpsonde_pending_call_max_age_seconds{server=\"everything\"} 3\n");
	free(text);
	fx.sink->close(fx.sink);
}

static void test_sink_cardinality(void **state)
{
	struct metrics_opts o;
	struct fixture fx;
	char name[64], id[16], *text;

	(void)state;
	metrics_opts_default(&o);
	o.listen = NULL;
	o.max_tools = 5;
	o.max_methods = 3;
	o.max_servers = 2;
	fixture_init(&fx, &o);
	for (int i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "tool-%d", i);
		snprintf(id, sizeof(id), "%d", i);
		call(&fx, "tools/call", name, id, CALL_OK, 0, 0.001);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "hostile/%d", i);
		snprintf(id, sizeof(id), "m%d", i);
		call(&fx, name, NULL, id, CALL_ERROR, -32601, 0.0001);
	}
	call(&fx, "tools/list", NULL, "x", CALL_OK, 0, 0.0001); /* spec methods are never folded */
	/* a hostile server name with everything that needs escaping, and more servers than the cap */
	fx.id.server_name = "evil\"\\\nserver";
	call(&fx, "tools/call", "echo", "e1", CALL_OK, 0, 0.001);
	fx.id.server_name = "third";
	call(&fx, "tools/call", "echo", "e2", CALL_OK, 0, 0.001);

	text = render(&fx);
	assert_contains(text, "gen_ai_tool_name=\"tool-4\"");
	assert_lacks(text, "gen_ai_tool_name=\"tool-5\"");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"_other\","
				 LBL_TAIL "} 3\n");
	assert_contains(text, "mcpsonde_tool_names_folded_total{server=\"everything\"} 3\n");
	assert_contains(text, "mcp_method_name=\"hostile/2\"");
	assert_lacks(text, "mcp_method_name=\"hostile/3\"");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"_other\",error_type=\"-32601\","
				 LBL_TAIL "} 997\n");
	assert_contains(text, "mcpsonde_label_values_folded_total{label=\"mcp_method_name\"} 997\n");
	assert_contains(text, "mcp_method_name=\"tools/list\"");
	assert_contains(text, "server=\"evil\\\"\\\\\\nserver\"");
	assert_contains(text, "server=\"_other\"");
	assert_contains(text, "mcpsonde_label_values_folded_total{label=\"server\"}");
	assert_promtool_clean(text);
	free(text);
	fx.sink->close(fx.sink);
}

static void test_sink_tools(void **state)
{
	struct fixture fx;
	struct sonde_event ev = { .type = EV_TOOLS_LIST };
	json_error_t jerr;
	json_t *tools = json_loads("[{\"name\":\"echo\",\"description\":\"Echoes\",\"inputSchema\":{\"type\":\"object\"}},"
				   "{\"name\":\"add\",\"description\":\"\",\"inputSchema\":{\"type\":\"object\"}}]",
				   0, &jerr);
	json_t *change = json_loads("{\"added\":[\"add\"],\"removed\":[],\"changed\":[{\"name\":\"echo\",\"fields\":"
				    "[\"description\"]}]}",
				    0, &jerr);
	json_t *violations = json_loads("[{\"kind\":\"missing_required\",\"property\":\"message\"},"
					"{\"kind\":\"wrong_type\",\"property\":\"x\"},{\"kind\":\"invented\"}]",
					0, &jerr);
	char *text;

	(void)state;
	fixture_init(&fx, NULL);
	ev.tools.tools = tools;
	ev.tools.count = 2;
	emit(&fx, &ev);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_TOOLS_CHANGED;
	ev.tools.change = change;
	emit(&fx, &ev);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_NOTIFICATION;
	ev.notification.method = "notifications/tools/list_changed";
	ev.notification.direction = DIR_SERVER_TO_CLIENT;
	emit(&fx, &ev);

	memset(&ev, 0, sizeof(ev));
	ev.type = EV_CALL;
	ev.call.method = "tools/call";
	ev.call.tool = "nope";
	ev.call.id = "1";
	ev.call.status = CALL_TOOL_ERROR;
	ev.call.unknown_tool = true; /* the session decides, from the catalog or the answer */
	emit(&fx, &ev);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_CALL;
	ev.call.method = "tools/call";
	ev.call.tool = "echo";
	ev.call.id = "2";
	ev.call.status = CALL_OK;
	ev.call.schema_violations = violations;
	emit(&fx, &ev);

	text = render(&fx);
	assert_contains(text, "mcpsonde_tools{server=\"everything\"} 2\n");
	/* {"name":"echo","description":"Echoes","inputSchema":{"type":"object"}}: 70 bytes */
	assert_contains(text, "mcpsonde_tool_definition_bytes{server=\"everything\",gen_ai_tool_name=\"echo\","
			      "part=\"description\"} 8\n");
	assert_contains(text, "mcpsonde_tool_definition_bytes{server=\"everything\",gen_ai_tool_name=\"echo\","
			      "part=\"schema\"} 17\n");
	assert_contains(text, "mcpsonde_tool_definition_bytes{server=\"everything\",gen_ai_tool_name=\"echo\","
			      "part=\"other\"} 45\n");
	assert_contains(text, "mcpsonde_tool_definition_tokens{server=\"everything\",gen_ai_tool_name=\"echo\"} 18\n");
	assert_contains(text, "mcpsonde_tools_list_changes_total{server=\"everything\"} 1\n");
	assert_contains(text, "mcpsonde_tool_definition_changes_total{server=\"everything\",change=\"added\"} 1\n");
	assert_contains(text, "mcpsonde_tool_definition_changes_total{server=\"everything\",change=\"changed\"} 1\n");
	assert_contains(text, "mcpsonde_tools_list_changed_notifications_total{server=\"everything\"} 1\n");
	assert_contains(text, "mcpsonde_notifications_total{server=\"everything\","
			      "mcp_method_name=\"notifications/tools/list_changed\",direction=\"server_to_client\"} 1\n");
	assert_contains(text, "mcpsonde_unknown_tool_calls_total{server=\"everything\"} 1\n");
	assert_contains(text, "mcpsonde_schema_violations_total{server=\"everything\",gen_ai_tool_name=\"echo\","
			      "kind=\"missing_required\"} 1\n");
	assert_contains(text, "kind=\"other\"} 1\n");
	assert_promtool_clean(text);
	free(text);
	json_decref(tools);
	json_decref(change);
	json_decref(violations);
	fx.sink->close(fx.sink);
}

static void test_sink_exit_and_loss(void **state)
{
	struct fixture fx;
	struct sonde_event ev = { .type = EV_EXIT };
	char *text;

	(void)state;
	fixture_init(&fx, NULL);
	ev.type = EV_STDERR;
	ev.stderr_line.line = "hello";
	ev.stderr_line.bytes = 6;
	emit(&fx, &ev);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_INVALID;
	ev.invalid.frames = 1;
	ev.invalid.bytes = 12;
	emit(&fx, &ev);
	request(&fx, "tools/call", "1");
	call(&fx, "tools/call", "echo", "1", CALL_ORPHANED, 0, 0.5);
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_EXIT;
	ev.exit.reason = "signal";
	ev.exit.signal = 9;
	ev.exit.exit_code = -1;
	ev.exit.pending_calls = 1;
	ev.exit.normal = false;
	fx.now = fx.id.first_seen_ns + 42 * 1000000000ull;
	emit(&fx, &ev);

	memset(&ev, 0, sizeof(ev));
	ev.type = EV_LOSS;
	ev.loss.reason = "ringbuf_full";
	ev.loss.records = 3;
	ev.loss.bytes = 4096;
	ev.loss.fd = -1;
	fx.sink->on_event(fx.sink, &ev); /* not tied to a process */

	text = render(&fx);
	assert_contains(text, "mcpsonde_process_exits_total{server=\"everything\",reason=\"signal\",normal=\"false\"} 1\n");
	assert_contains(text, "mcpsonde_exits_with_pending_calls_total{server=\"everything\"} 1\n");
	assert_contains(text, "mcpsonde_calls_abandoned_total{server=\"everything\",mcp_method_name=\"tools/call\","
			      "gen_ai_tool_name=\"echo\",reason=\"orphaned\"} 1\n");
	assert_contains(text, "mcp_server_session_duration_seconds_sum{server=\"everything\"," LBL_TAIL "} 42\n");
	assert_contains(text, "mcpsonde_capture_lost_records_total{reason=\"ringbuf_full\"} 3\n");
	assert_contains(text, "mcpsonde_capture_lost_bytes_total{reason=\"ringbuf_full\"} 4096\n");
	assert_contains(text, "mcpsonde_stderr_lines_total{server=\"everything\"} 1\n");
	assert_contains(text, "mcpsonde_invalid_frames_total{server=\"everything\",json=\"false\"} 1\n");
	assert_lacks(text, "mcpsonde_pending_calls{"); /* the process is gone */
	assert_promtool_clean(text);
	free(text);
	fx.sink->close(fx.sink);
}

/* A server's series go --series-ttl after its last change once no process of that name runs;
 * a running server's stay however long it is quiet; a name that comes back starts afresh. */
static void test_sink_series_ttl(void **state)
{
	struct metrics_opts o;
	struct fixture fx, other;
	struct sonde_event ev = { .type = EV_EXIT };
	const uint64_t ttl = 60ull * 1000000000ull;
	char *text;

	(void)state;
	metrics_opts_default(&o);
	o.listen = NULL;
	o.version = "1.2.3-test";
	o.series_ttl_ns = ttl;
	fixture_init(&fx, &o);
	/* a quiet server that keeps running */
	call(&fx, "tools/call", "echo", "1", CALL_OK, 0, 0.1);
	/* and one that exits: another process (another identity), the same sink */
	other = fx;
	other.id.pid = 5151;
	other.id.server_name = "memory";
	call(&other, "tools/call", "read_graph", "1", CALL_OK, 0, 0.1);
	ev.exit.reason = "exit";
	ev.exit.normal = true;
	emit(&other, &ev);

	fx.now += ttl - 1000000000ull;
	fx.sink->on_tick(fx.sink, fx.now);
	text = render(&fx);
	assert_contains(text, OP "_count{server=\"memory\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"read_graph\"");
	assert_contains(text, "mcpsonde_series_expired_total 0\n");
	free(text);

	fx.now += 2000000000ull;
	fx.sink->on_tick(fx.sink, fx.now);
	text = render(&fx);
	assert_lacks(text, "server=\"memory\"");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\"");
	assert_lacks(text, "mcpsonde_series_expired_total 0\n");
	assert_promtool_clean(text);
	free(text);

	/* a new process of the same name: its series start from zero */
	other.id.pid = 6161;
	other.now = fx.now;
	call(&other, "tools/call", "read_graph", "2", CALL_OK, 0, 0.1);
	text = render(&fx);
	assert_contains(text, OP "_count{server=\"memory\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"read_graph\"," LBL_TAIL "} 1\n");
	free(text);
	fx.sink->close(fx.sink);
}

/* One server name in two pods: each pod's series carry its namespace, pod and container
 * (never its uid or container id), and a deleted pod's series go after the TTL while the
 * other pod's stay. */
static void test_sink_pod_series(void **state)
{
	struct metrics_opts o;
	struct fixture fx, other;
	struct sonde_event ev = { .type = EV_EXIT };
	struct attrib_record a = { .role = ATTRIB_ROLE_WORKLOAD, .runtime = ATTRIB_RUNTIME_CONTAINERD,
				   .container_id = "0123456789abcdef", .pod_uid = "11111111-2222-3333-4444-555555555555",
				   .k8s_namespace = "team-a", .pod_name = "agent-1", .k8s_container_name = "agent" };
	struct attrib_record b = a;
	const uint64_t ttl = 60ull * 1000000000ull;
	char *text;

	(void)state;
	snprintf(b.pod_name, sizeof(b.pod_name), "agent-2");
	metrics_opts_default(&o);
	o.listen = NULL;
	o.version = "1.2.3-test";
	o.series_ttl_ns = ttl;
	fixture_init(&fx, &o);
	fx.id.where = &a;
	call(&fx, "tools/call", "echo", "1", CALL_OK, 0, 0.1);
	other = fx;
	other.id.pid = 5151;
	other.id.where = &b;
	call(&other, "tools/call", "echo", "1", CALL_OK, 0, 0.1);
	text = render(&fx);
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\"," LBL_TAIL
				  ",k8s_namespace_name=\"team-a\",k8s_pod_name=\"agent-1\",k8s_container_name=\"agent\"} 1\n");
	assert_contains(text, "k8s_pod_name=\"agent-2\",k8s_container_name=\"agent\"} 1\n");
	assert_lacks(text, a.pod_uid);
	assert_lacks(text, a.container_id);
	assert_promtool_clean(text);
	free(text);

	/* the pod agent-1 is deleted: its server exits */
	ev.exit.reason = "signal";
	emit(&fx, &ev);
	fx.now += ttl + 1000000000ull;
	other.now = fx.now;
	fx.sink->on_tick(fx.sink, fx.now);
	text = render(&fx);
	assert_lacks(text, "agent-1");
	assert_contains(text, "k8s_pod_name=\"agent-2\"");
	free(text);
	/* the name both shared is still agent-2's */
	call(&other, "tools/call", "echo", "2", CALL_OK, 0, 0.1);
	text = render(&fx);
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\"," LBL_TAIL
				  ",k8s_namespace_name=\"team-a\",k8s_pod_name=\"agent-2\",k8s_container_name=\"agent\"} 2\n");
	free(text);
	fx.sink->close(fx.sink);
}

/* One tools/call of server "everything" from a process in each place, with --metrics-labels
 * labels; returns the exposition. */
static char *calls_from(const char *labels, const struct attrib_record *const *where, size_t n)
{
	struct metrics_opts o;
	struct fixture fx[4];
	char *text;

	assert_true(n >= 1 && n <= 4);
	metrics_opts_default(&o);
	o.listen = NULL;
	o.version = "1.2.3-test";
	o.labels = labels;
	fixture_init(&fx[0], &o);
	for (size_t i = 0; i < n; i++) {
		fx[i] = fx[0]; /* the same sink, another process */
		fx[i].id.pid = 5000 + (uint32_t)i;
		fx[i].id.where = where[i];
		call(&fx[i], "tools/call", "echo", "1", CALL_OK, 0, 0.1);
	}
	text = render(&fx[0]);
	assert_promtool_clean(text);
	fx[0].sink->close(fx[0].sink);
	return text;
}

/* --metrics-labels: the chosen attributes, in the order given, key a server's series; two
 * pods of one server fold into one series when the pod is not among them. */
static void test_sink_metrics_labels(void **state)
{
	struct attrib_record a = { .role = ATTRIB_ROLE_WORKLOAD, .runtime = ATTRIB_RUNTIME_CONTAINERD,
				   .container_id = "0123456789abcdef", .pod_uid = "11111111-2222-3333-4444-555555555555",
				   .k8s_namespace = "team-a", .pod_name = "agent-1", .k8s_container_name = "agent",
				   .node_name = "node-7" };
	struct attrib_record b = a, host = { .role = ATTRIB_ROLE_HOST, .node_name = "node-7" };
	const struct attrib_record *const pods[] = { &a, &b, &host };
	char *text;

	(void)state;
	snprintf(b.pod_name, sizeof(b.pod_name), "agent-2");
	snprintf(b.pod_uid, sizeof(b.pod_uid), "99999999-2222-3333-4444-555555555555");
	text = calls_from("k8s_node_name,k8s_namespace_name,container_runtime", pods, 2);
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\"," LBL_TAIL
				  ",k8s_node_name=\"node-7\",k8s_namespace_name=\"team-a\",container_runtime=\"containerd\"} 2\n");
	assert_lacks(text, "k8s_pod_name");
	assert_lacks(text, "agent-1");
	free(text);

	/* pod uid and container id when asked; a host process has no resource: no values */
	text = calls_from("k8s_pod_uid,container_id", pods, 3);
	assert_contains(text, LBL_TAIL ",k8s_pod_uid=\"11111111-2222-3333-4444-555555555555\",container_id=\"0123456789abcdef\"} 1\n");
	assert_contains(text, LBL_TAIL ",k8s_pod_uid=\"99999999-2222-3333-4444-555555555555\",container_id=\"0123456789abcdef\"} 1\n");
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\"," LBL_TAIL "} 1\n");
	assert_lacks(text, "node-7");
	free(text);

	/* none: every pod's calls in one series, as outside Kubernetes */
	text = calls_from("none", pods, 2);
	assert_contains(text, OP "_count{server=\"everything\",mcp_method_name=\"tools/call\",gen_ai_tool_name=\"echo\"," LBL_TAIL "} 2\n");
	assert_lacks(text, "k8s_");
	free(text);
}

/* A list that names nothing known, names one twice or is empty is refused, and says why. */
static void test_metrics_labels_parse(void **state)
{
	static const struct {
		const char *list, *error;
	} bad[] = {
		{ "k8s_pod", "unknown label \"k8s_pod\"" },
		{ "k8s.pod.name", "unknown label" },
		{ "k8s_pod_name,K8S_NODE_NAME", "unknown label \"K8S_NODE_NAME\"" },
		{ "k8s_pod_name,k8s_node_name,k8s_pod_name", "k8s_pod_name is given twice" },
		{ "", "an empty name" },
		{ "k8s_pod_name,", "an empty name" },
		{ "none,k8s_pod_name", "none stands alone" },
	};
	struct metrics_scope sc;
	struct metrics_opts o;
	char err[512];

	(void)state;
	assert_int_equal(metrics_scope_parse(METRICS_LABELS_DEFAULT, &sc, err, sizeof(err)), 0);
	assert_int_equal(sc.n, 3);
	assert_string_equal(sc.attr[1], "k8s.pod.name");
	assert_null(sc.label[3]);
	assert_int_equal(metrics_scope_parse("container_runtime,container_name,container_id,k8s_node_name,k8s_container_name,"
					     "k8s_pod_uid,k8s_pod_name,k8s_namespace_name",
					     &sc, err, sizeof(err)),
			 0);
	assert_int_equal(sc.n, METRICS_SCOPE_MAX);
	assert_string_equal(sc.label[0], "container_runtime");
	assert_int_equal(metrics_scope_parse("none", &sc, err, sizeof(err)), 0);
	assert_int_equal(sc.n, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(metrics_scope_parse(bad[i].list, &sc, err, sizeof(err)), -1);
		assert_non_null(strstr(err, bad[i].error));
		assert_null(strchr(err, '\n'));
	}
	/* the sink refuses them too */
	metrics_opts_default(&o);
	o.listen = NULL;
	o.labels = "k8s_pod";
	assert_null(sink_metrics_new(&o, err, sizeof(err)));
	assert_non_null(strstr(err, "--metrics-labels"));
}

/* Traffic before the initialize result is counted under serverInfo.name, not "node";
 * a process that never says its name is counted under its process name after a while. */
static void test_sink_identity_wait(void **state)
{
	struct fixture fx;
	struct sonde_event ev = { .type = EV_STDERR };
	char *text;

	(void)state;
	fixture_init(&fx, NULL);
	fx.id.server_name = NULL;
	fx.now = fx.id.first_seen_ns + 1000;
	ev.stderr_line.bytes = 20;
	emit(&fx, &ev);
	request(&fx, "initialize", "0");
	text = render(&fx);
	assert_lacks(text, "server=\"node\"");
	assert_lacks(text, "mcpsonde_pending_calls{"); /* no series under a name about to change */
	free(text);
	fx.id.server_name = "everything";
	fx.id.initialized_ns = fx.now;
	call_done(&fx, "initialize", NULL, "0", CALL_OK, 0, 0.01);
	text = render(&fx);
	assert_lacks(text, "server=\"node\"");
	assert_contains(text, "mcpsonde_stderr_lines_total{server=\"everything\"} 1\n");
	/* the request held back while the name was unknown is counted, once, under the name */
	assert_contains(text, "mcpsonde_messages_total{server=\"everything\",kind=\"request\",direction=\"client_to_server\"} 1\n");
	assert_contains(text, "mcpsonde_pending_calls{server=\"everything\"} 0\n");
	free(text);
	fx.sink->close(fx.sink);

	fixture_init(&fx, NULL);
	fx.id.server_name = NULL;
	fx.now = fx.id.first_seen_ns + 1000;
	memset(&ev, 0, sizeof(ev));
	ev.type = EV_STDERR;
	ev.stderr_line.bytes = 20;
	emit(&fx, &ev);
	fx.sink->on_tick(fx.sink, fx.id.first_seen_ns + 11000000000ull);
	text = render(&fx);
	assert_contains(text, "mcpsonde_stderr_lines_total{server=\"node\"} 1\n");
	free(text);
	fx.sink->close(fx.sink);
}

/* ---- HTTP ------------------------------------------------------------------------------ */

/* GET path with an optional Accept header; returns the whole response (malloc'd). */
static char *http_get(unsigned port, const char *path, const char *accept)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[512], *resp = NULL;
	size_t len = 0, cap = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s%s%s\r\n", path,
		 accept ? "Accept: " : "", accept ? accept : "", accept ? "\r\n" : "");
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	do {
		if (len + 4096 + 1 > cap)
			resp = realloc(resp, cap = cap * 2 + 8192);
		n = read(fd, resp + len, 4096);
		if (n > 0)
			len += n;
	} while (n > 0);
	resp[len] = '\0';
	close(fd);
	return resp;
}

static void test_http(void **state)
{
	struct metrics_opts o;
	char err[256], *resp;
	struct sink *bad, *s;
	unsigned port;
	const char *om = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

	(void)state;
	metrics_opts_default(&o);
	o.listen = "127.0.0.1:0";
	o.version = "t";
	s = sink_metrics_new(&o, err, sizeof(err));
	assert_non_null(s);
	port = sink_metrics_port(s);
	assert_true(port > 0);

	resp = http_get(port, "/metrics", NULL);
	assert_contains(resp, "HTTP/1.1 200");
	assert_contains(resp, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
	assert_contains(resp, "mcpsonde_build_info{version=\"t\"} 1\n");
	free(resp);

	/* both formats are in every snapshot: the first OpenMetrics request gets it */
	resp = http_get(port, "/metrics", om);
	assert_contains(resp, "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8");
	assert_contains(resp, "# EOF\n");
	free(resp);
	s->on_tick(s, 1);
	resp = http_get(port, "/metrics", om);
	assert_contains(resp, "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8");
	assert_contains(resp, "mcpsonde_metrics_scrapes_total 2\n");
	free(resp);

	resp = http_get(port, "/nope", NULL);
	assert_contains(resp, "HTTP/1.1 404");
	free(resp);

	/* the port is taken: a clear error */
	snprintf(err, sizeof(err), "127.0.0.1:%u", port);
	o.listen = err;
	bad = sink_metrics_new(&o, err, sizeof(err));
	assert_null(bad);
	assert_contains(err, "cannot listen");
	o.listen = "nonsense";
	assert_null(sink_metrics_new(&o, err, sizeof(err)));
	assert_contains(err, "ADDR:PORT");
	s->close(s);
}

/* ---- summary --------------------------------------------------------------------------- */

static void summary_call(struct sink *s, struct session_identity *id, const char *method, const char *tool,
			 enum call_status st, long long code, uint64_t ns)
{
	struct sonde_event ev = { .type = EV_CALL, .session = id };

	ev.call.method = method;
	ev.call.tool = tool;
	ev.call.status = st;
	ev.call.error_code = code;
	ev.call.duration_ns = ns;
	ev.call.request_bytes = 100;
	ev.call.response_bytes = 2048;
	s->on_event(s, &ev);
}

static void test_summary(void **state)
{
	struct session_identity id = { .pid = 1, .comm = "node", .server_name = "everything" };
	char *out = NULL, line[512];
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	struct sink *s = sink_summary_new(f);
	bool found = false;

	(void)state;
	/* echo: 1..1000 us: p50 = 500us, p95 = 950us, p99 = 990us */
	for (int i = 1000; i >= 1; i--)
		summary_call(s, &id, "tools/call", "echo", CALL_OK, 0, (uint64_t)i * 1000);
	summary_call(s, &id, "tools/call", "echo", CALL_TOOL_ERROR, 0, 1000000);
	summary_call(s, &id, "tools/call", "echo", CALL_CANCELLED, 0, 0);
	summary_call(s, &id, "bogus", NULL, CALL_ERROR, -32601, 5000);
	summary_call(s, &id, "initialize", NULL, CALL_OK, 0, 3000000);
	s->close(s);
	fclose(f);

	assert_contains(out, "SERVER");
	assert_contains(out, "P99");
	FILE *in = fmemopen(out, len, "r");
	while (fgets(line, sizeof(line), in)) {
		char server[64], op[64], tool[64], errors[128], p50[16], p95[16], p99[16];
		unsigned long long calls;

		if (sscanf(line, "%63s %63s %63s %llu %127s %15s %15s %15s", server, op, tool, &calls, errors, p50, p95,
			   p99) != 8 || strcmp(tool, "echo") != 0)
			continue;
		found = true;
		assert_int_equal(calls, 1002);
		assert_string_equal(errors, "tool_error:1,cancelled:1");
		assert_true(fabs(strtod(p50, NULL) - 500) / 500 < 0.005);
		assert_true(fabs(strtod(p95, NULL) - 951) / 951 < 0.005);
		assert_true(fabs(strtod(p99, NULL) - 991) / 991 < 0.005);
	}
	fclose(in);
	assert_true(found);
	assert_contains(out, "bogus");
	assert_contains(out, "-32601:1");
	assert_contains(out, "initialize");
	assert_contains(out, "3.00ms");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label_escape),
		cmocka_unit_test(test_label_sanitize),
		cmocka_unit_test(test_label_folder),
		cmocka_unit_test(test_render_text),
		cmocka_unit_test(test_series_cap),
		cmocka_unit_test(test_negotiate),
		cmocka_unit_test(test_sink_calls),
		cmocka_unit_test(test_sink_cardinality),
		cmocka_unit_test(test_sink_tools),
		cmocka_unit_test(test_sink_exit_and_loss),
		cmocka_unit_test(test_sink_series_ttl),
		cmocka_unit_test(test_sink_pod_series),
		cmocka_unit_test(test_sink_metrics_labels),
		cmocka_unit_test(test_metrics_labels_parse),
		cmocka_unit_test(test_sink_identity_wait),
		cmocka_unit_test(test_http),
		cmocka_unit_test(test_summary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_rpc.c -- the skimmer and its fallbacks: key order, escapes, nesting, batches,
 * malformed frames, and agreement between the skim and a full parse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/rpc.h"
#include "mcpsonde/scrub.h"

#define MAX_MSGS 8

struct got {
	int n;
	struct {
		enum rpc_kind kind;
		char id[RPC_ID_MAX], method[RPC_NAME_MAX], name[RPC_NAME_MAX], request_id[RPC_ID_MAX];
		char keys[256];
		long long code;
		bool is_error, has_meta;
		unsigned narg_keys;
		char *root_text; /* rpc_msg_root, dumped */
	} m[MAX_MSGS];
};

static void collect(void *ctx, const struct rpc_msg *m)
{
	struct got *g = ctx;
	json_t *root;

	if (g->n == MAX_MSGS)
		return;
	g->m[g->n].kind = m->kind;
	snprintf(g->m[g->n].id, RPC_ID_MAX, "%s", m->id);
	snprintf(g->m[g->n].method, RPC_NAME_MAX, "%s", m->method ? m->method : "");
	snprintf(g->m[g->n].name, RPC_NAME_MAX, "%s", m->name ? m->name : "");
	snprintf(g->m[g->n].request_id, RPC_ID_MAX, "%s", m->request_id);
	g->m[g->n].keys[0] = '\0';
	for (unsigned i = 0; i < m->narg_keys && i < RPC_ARG_KEYS_MAX; i++) {
		strcat(g->m[g->n].keys, m->arg_keys[i]);
		strcat(g->m[g->n].keys, ",");
	}
	g->m[g->n].code = m->error_code;
	g->m[g->n].is_error = m->is_error;
	g->m[g->n].has_meta = m->has_meta;
	g->m[g->n].narg_keys = m->narg_keys;
	root = rpc_msg_root(m);
	g->m[g->n].root_text = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	g->n++;
}

static int decode(const char *text, struct got *g)
{
	struct frame f = { .data = text, .len = strlen(text), .wire_len = strlen(text) };

	memset(g, 0, sizeof(*g));
	return rpc_decode(&f, collect, g);
}

static void got_free(struct got *g)
{
	for (int i = 0; i < g->n; i++)
		free(g->m[i].root_text);
}

static void test_any_key_order(void **state)
{
	static const char *const orders[] = {
		"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"hi\",\"n\":[1,{\"x\":\"}\"}]}}}",
		"{\"method\":\"tools/call\",\"params\":{\"arguments\":{\"message\":\"hi\",\"n\":[1,{\"x\":\"}\"}]},\"name\":\"echo\"},\"jsonrpc\":\"2.0\",\"id\":5}",
		"  { \"params\" : { \"name\" : \"echo\" , \"arguments\" : { \"message\" : \"hi\" , \"n\" : [ 1 , { \"x\" : \"}\" } ] } } ,\n\t\"id\" : 5 , \"method\" : \"tools/call\" , \"jsonrpc\" : \"2.0\" }  ",
	};
	struct got g;
	(void)state;

	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(decode(orders[i], &g), 1);
		assert_int_equal(g.m[0].kind, RPC_REQUEST);
		assert_string_equal(g.m[0].id, "5");
		assert_string_equal(g.m[0].method, "tools/call");
		assert_string_equal(g.m[0].name, "echo");
		assert_string_equal(g.m[0].keys, "message,n,");
		assert_non_null(g.m[0].root_text);
		got_free(&g);
	}
}

static void test_results_and_errors(void **state)
{
	struct got g;
	(void)state;

	/* isError in result, with a payload that holds "isError":true as escaped text */
	assert_int_equal(decode("{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"{\\\"isError\\\":true}\"}]},\"jsonrpc\":\"2.0\",\"id\":\"a\"}", &g), 1);
	assert_int_equal(g.m[0].kind, RPC_RESULT);
	assert_false(g.m[0].is_error);
	assert_string_equal(g.m[0].id, "\"a\"");
	got_free(&g);
	assert_int_equal(decode("{\"result\":{\"content\":[],\"isError\":true},\"jsonrpc\":\"2.0\",\"id\":1}", &g), 1);
	assert_true(g.m[0].is_error);
	got_free(&g);
	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":2,\"error\":{\"message\":\"Method not found\",\"code\":-32601}}", &g), 1);
	assert_int_equal(g.m[0].kind, RPC_ERROR);
	assert_int_equal(g.m[0].code, -32601);
	got_free(&g);
	/* an error for an unparsable request: id null */
	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"Parse error\"}}", &g), 1);
	assert_int_equal(g.m[0].kind, RPC_ERROR);
	assert_string_equal(g.m[0].id, "");
	got_free(&g);
}

/* Escapes: a string id written two ways is one id; escaped names are decoded. */
static void test_escapes(void **state)
{
	struct got g;
	(void)state;

	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"id\":\"\\u0041\\\"b\",\"method\":\"tools\\/call\",\"params\":{\"name\":\"e\\u0063ho\"}}", &g), 1);
	assert_string_equal(g.m[0].id, "\"A\\\"b\"");
	assert_string_equal(g.m[0].method, "tools/call");
	assert_string_equal(g.m[0].name, "echo");
	got_free(&g);
	assert_int_equal(decode("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"\\u0041\\\"b\",\"_meta\":{}}}", &g), 1);
	assert_int_equal(g.m[0].kind, RPC_NOTIFICATION);
	assert_string_equal(g.m[0].request_id, "\"A\\\"b\"");
	assert_true(g.m[0].has_meta);
	got_free(&g);
}

static void test_not_json_rpc(void **state)
{
	struct got g;
	(void)state;

	assert_int_equal(decode("Debug: connecting...", &g), -1);
	assert_int_equal(decode("{\"id\":1,\"method\":\"x\",}", &g), -1); /* trailing comma: jansson says no */
	assert_int_equal(decode("{not json}", &g), -1);
	assert_int_equal(decode("{\"a\":1", &g), -1);
	assert_int_equal(decode("{\"foo\":1}", &g), 1);
	assert_int_equal(g.m[0].kind, RPC_INVALID);
	got_free(&g);
	assert_int_equal(decode("42", &g), 1);
	assert_int_equal(g.m[0].kind, RPC_INVALID);
	got_free(&g);
}

static void test_batch(void **state)
{
	struct got g;
	(void)state;

	assert_int_equal(decode("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"},{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"},7]", &g), 3);
	assert_int_equal(g.m[0].kind, RPC_REQUEST);
	assert_string_equal(g.m[0].method, "ping");
	assert_non_null(g.m[0].root_text);
	assert_int_equal(g.m[1].kind, RPC_NOTIFICATION);
	assert_int_equal(g.m[2].kind, RPC_INVALID);
	got_free(&g);
}

/* Nesting far deeper than the skimmer's recursion: skipped, not recursed into. */
static void test_deep_nesting(void **state)
{
	size_t depth = 100000, n = 0;
	char *s = malloc(depth * 2 + 128);
	struct got g;
	(void)state;

	n += (size_t)sprintf(s, "{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"x\":");
	for (size_t i = 0; i < depth; i++)
		s[n++] = '[';
	for (size_t i = 0; i < depth; i++)
		s[n++] = ']';
	strcpy(s + n, "}}");
	assert_int_equal(decode(s, &g), 1);
	assert_int_equal(g.m[0].kind, RPC_RESULT);
	assert_string_equal(g.m[0].id, "9");
	assert_null(g.m[0].root_text); /* jansson refuses that depth: no DOM, still classified */
	got_free(&g);
	free(s);
}

static void test_many_argument_keys(void **state)
{
	char *s = malloc(100 * 32 + 256);
	size_t n = (size_t)sprintf(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\",\"arguments\":{");
	struct got g;
	(void)state;

	for (int i = 0; i < 100; i++)
		n += (size_t)sprintf(s + n, "%s\"k%d\":%d", i ? "," : "", i, i);
	strcpy(s + n, "}}}");
	assert_int_equal(decode(s, &g), 1);
	assert_int_equal(g.m[0].narg_keys, 100);
	assert_non_null(strstr(g.m[0].keys, "k63,"));
	assert_null(strstr(g.m[0].keys, "k64,"));
	got_free(&g);
	free(s);
}

/* What one message told of the 2026-07-28 envelope, multi-round-trip requests and tasks. */
struct fields {
	char protocol[64], client[64], client_version[64], server[64], subscription[64];
	char progress[RPC_ID_MAX], result_type[32], task_id[64], task_status[32], error_text[RPC_NAME_MAX];
	uint64_t request_state, task_state;
	bool input_responses, task_nested, task_is_error;
	long long task_error_code;
};

#define COPY(dst, src) snprintf(dst, sizeof(dst), "%s", (src) ? (src) : "")

static void collect_fields(void *ctx, const struct rpc_msg *m)
{
	struct fields *f = ctx;

	COPY(f->protocol, m->protocol_version);
	COPY(f->client, m->client_name);
	COPY(f->client_version, m->client_version);
	COPY(f->server, m->server_name);
	COPY(f->subscription, m->subscription_id);
	COPY(f->progress, m->progress_token);
	COPY(f->result_type, m->result_type);
	COPY(f->task_id, m->task_id);
	COPY(f->task_status, m->task_status);
	COPY(f->error_text, m->error_text);
	f->request_state = m->request_state;
	f->task_state = m->task_state;
	f->input_responses = m->has_input_responses;
	f->task_nested = m->task_nested;
	f->task_is_error = m->task_is_error;
	f->task_error_code = m->task_error_code;
}

static struct fields skim_fields(const char *text)
{
	struct frame fr = { .data = text, .len = strlen(text), .wire_len = strlen(text) };
	struct fields f;

	memset(&f, 0, sizeof(f));
	assert_int_equal(rpc_decode(&fr, collect_fields, &f), 1);
	return f;
}

static void test_envelope_2026(void **state)
{
	struct fields f;
	(void)state;

	f = skim_fields("{\"method\":\"tools/call\",\"params\":{\"name\":\"ok\",\"arguments\":{},\"_meta\":{"
			"\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\",\"io.modelcontextprotocol/clientInfo\":"
			"{\"version\":\"0.1\",\"name\":\"cli\"},\"io.modelcontextprotocol/clientCapabilities\":{\"x\":{}},"
			"\"progressToken\":\"p-1\"}},\"jsonrpc\":\"2.0\",\"id\":3}");
	assert_string_equal(f.protocol, "2026-07-28");
	assert_string_equal(f.client, "cli");
	assert_string_equal(f.client_version, "0.1");
	assert_string_equal(f.progress, "\"p-1\"");
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"_meta\":{\"io.modelcontextprotocol/serverInfo\":"
			"{\"name\":\"srv\",\"version\":\"2\"}},\"content\":[],\"resultType\":\"complete\"}}");
	assert_string_equal(f.server, "srv");
	assert_string_equal(f.result_type, "complete");
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":4,"
			"\"progress\":1}}");
	assert_string_equal(f.progress, "4");
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"x\","
			"\"_meta\":{\"io.modelcontextprotocol/subscriptionId\":\"sub-9\"}}}");
	assert_string_equal(f.subscription, "sub-9");
}

/* A retry echoes the requestState of the input_required result: the two hash alike, whatever
 * the escaping; inputResponses marks the retry. */
static void test_multi_round_trip_fields(void **state)
{
	struct fields r, retry, other;
	(void)state;

	r = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resultType\":\"input_required\",\"inputRequests\":"
			"{\"confirm\":{\"method\":\"elicitation/create\",\"params\":{}}},\"requestState\":\"st/1\"}}");
	assert_string_equal(r.result_type, "input_required");
	assert_true(r.request_state != 0);
	retry = skim_fields("{\"method\":\"tools/call\",\"params\":{\"name\":\"confirm\",\"inputResponses\":{\"confirm\":"
			    "{\"action\":\"accept\"}},\"requestState\":\"st\\/1\"},\"jsonrpc\":\"2.0\",\"id\":5}");
	assert_true(retry.input_responses);
	assert_true(retry.request_state == r.request_state);
	other = skim_fields("{\"method\":\"tools/call\",\"params\":{\"name\":\"confirm\",\"requestState\":\"st/2\"},"
			    "\"jsonrpc\":\"2.0\",\"id\":6}");
	assert_true(other.request_state != r.request_state);
}

static void test_task_fields(void **state)
{
	struct fields a, b, c, f;
	(void)state;

	/* 2026-07-28: the result is the task; tasks/get answers carry its state */
	a = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resultType\":\"task\",\"taskId\":\"t1\",\"status\":"
			"\"working\",\"lastUpdatedAt\":\"10:00\",\"ttlMs\":60000}}");
	assert_string_equal(a.result_type, "task");
	assert_string_equal(a.task_id, "t1");
	assert_string_equal(a.task_status, "working");
	assert_false(a.task_nested);
	b = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"ttlMs\":60000,\"lastUpdatedAt\":\"10:00\",\"status\":"
			"\"working\",\"taskId\":\"t1\",\"resultType\":\"complete\"}}");
	assert_true(b.task_state == a.task_state); /* the same state, members in another order */
	c = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"taskId\":\"t1\",\"status\":\"completed\","
			"\"lastUpdatedAt\":\"10:01\",\"result\":{\"content\":[],\"isError\":true}}}");
	assert_true(c.task_state != a.task_state);
	assert_true(c.task_is_error);
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":10,\"result\":{\"taskId\":\"t1\",\"status\":\"failed\",\"error\":"
			"{\"code\":-32603,\"message\":\"boom\"}}}");
	assert_int_equal(f.task_error_code, -32603);
	/* 2025-11-25: CreateTaskResult nests the task; the status notification has it in params */
	a = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"task\":{\"taskId\":\"64fe\",\"status\":\"working\"}}}");
	assert_true(a.task_nested);
	assert_string_equal(a.task_id, "64fe");
	b = skim_fields("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/tasks/status\",\"params\":{\"taskId\":\"64fe\","
			"\"status\":\"completed\"}}");
	assert_string_equal(b.task_status, "completed");
}

/* An isError result keeps its first text: the v1 SDK answers an unknown tool that way. */
static void test_error_text(void **state)
{
	struct fields f;
	(void)state;

	f = skim_fields("{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"MCP error -32602: Tool x not found\"}],"
			"\"isError\":true},\"jsonrpc\":\"2.0\",\"id\":3}");
	assert_string_equal(f.error_text, "MCP error -32602: Tool x not found");
	f = skim_fields("{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"fine\"}]},\"jsonrpc\":\"2.0\",\"id\":3}");
	assert_string_equal(f.error_text, "");
	/* The first element's text only, whatever follows it; isError may come first. */
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"isError\":true,\"content\":[{\"text\":7,"
			"\"type\":\"text\",\"text\":\"first\",\"text\":\"dup\"},{\"type\":\"text\",\"text\":\"second\"},[],3]}}");
	assert_string_equal(f.error_text, "first");
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"isError\":true,\"content\":[\"x\",{\"text\":\"no\"}]}}");
	assert_string_equal(f.error_text, "");
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"isError\":true,\"content\":[ ]}}");
	assert_string_equal(f.error_text, "");
	f = skim_fields("{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"isError\":true,\"content\":{\"text\":\"no\"}}}");
	assert_string_equal(f.error_text, "");
}

struct secret_seen {
	int n;
	bool known, secret;
};

static void collect_secret(void *ctx, const struct rpc_msg *m)
{
	struct secret_seen *s = ctx;

	s->n++;
	s->known = m->secret_known;
	s->secret = m->secret;
}

/* The skimmer judges each string as it passes it: the same verdict as scrub_json_secret's own
 * walk over the message, for keys and values at any depth, in content, in ids. */
static void test_secret_while_skimming(void **state)
{
	static const char *const msgs[] = {
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"hello there\"}}}",
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"login\",\"arguments\":{\"api_key\":\"abc123\"}}}",
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"deep\":[{\"a\":{\"password\": 1234}}]}}}",
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"key: ghp_0123456789abcdefghijABCDEFGHIJ012345\"}]}}",
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"first\"},{\"type\":\"text\",\"text\":\"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl\"}]}}",
		"{\"jsonrpc\":\"2.0\",\"id\":\"sk-live-0123456789abcdefABCDEF\",\"result\":{}}",
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"escaped \\\"quote\\\" then token: \\\"xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx\\\"\"}]}}",
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"password: must be 8 characters\"}]}}",
		"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":{\"token\":\"\"}}}",
	};
	(void)state;

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct frame fr = { .data = msgs[i], .len = strlen(msgs[i]), .wire_len = strlen(msgs[i]) };
		struct secret_seen s = { 0 };

		assert_int_equal(rpc_decode(&fr, collect_secret, &s), 1);
		assert_true(s.known);
		if (s.secret != scrub_json_secret(msgs[i], strlen(msgs[i])))
			fail_msg("message %zu: skimmer says %d, scrub_json_secret says %d", i, s.secret, !s.secret);
	}
	/* Secrets were found at all: the comparison is not of two constant answers. */
	{
		struct frame fr = { .data = msgs[1], .len = strlen(msgs[1]), .wire_len = strlen(msgs[1]) };
		struct secret_seen s = { 0 };

		rpc_decode(&fr, collect_secret, &s);
		assert_true(s.secret);
	}
	/* A batch goes through jansson: not judged while skimming, the caller reads it. */
	{
		const char *batch = "[{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}]";
		struct frame fr = { .data = batch, .len = strlen(batch), .wire_len = strlen(batch) };
		struct secret_seen s = { 0 };

		assert_int_equal(rpc_decode(&fr, collect_secret, &s), 1);
		assert_false(s.known);
	}
}

struct head_array {
	json_t *tools;
	bool cut;
	enum rpc_kind kind;
};

static void collect_head_array(void *ctx, const struct rpc_msg *m)
{
	struct head_array *got = ctx;

	got->kind = m->kind;
	got->tools = rpc_msg_head_array(m, "tools", &got->cut);
}

/* A tools/list cut by the frame cap: the tools wholly inside the head, and whether it was cut. */
static void test_head_array(void **state)
{
	static const char text[] = "{\"result\":{\"tools\":[{\"name\":\"a\",\"inputSchema\":{\"type\":\"object\"}},"
				   "{\"name\":\"b\"},{\"name\":\"c\",\"description\":\"cut he";
	static const char tail[] = "\"}]},\"jsonrpc\":\"2.0\",\"id\":1}";
	struct frame f = { .data = text, .len = sizeof(text) - 1, .wire_len = 1 << 30, .oversized = true,
			   .tail = tail, .tail_len = sizeof(tail) - 1 };
	struct head_array got = { 0 };
	(void)state;

	assert_int_equal(rpc_decode(&f, collect_head_array, &got), 1);
	assert_int_equal(got.kind, RPC_RESULT);
	assert_non_null(got.tools);
	assert_int_equal(json_array_size(got.tools), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(got.tools, 1), "name")), "b");
	assert_true(got.cut);
	json_decref(got.tools);
	assert_string_equal(rpc_error_name(-32022), "unsupported_protocol_version");
	assert_null(rpc_error_name(-1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_any_key_order),
		cmocka_unit_test(test_results_and_errors),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_not_json_rpc),
		cmocka_unit_test(test_batch),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_many_argument_keys),
		cmocka_unit_test(test_envelope_2026),
		cmocka_unit_test(test_multi_round_trip_fields),
		cmocka_unit_test(test_task_fields),
		cmocka_unit_test(test_error_text),
		cmocka_unit_test(test_secret_while_skimming),
		cmocka_unit_test(test_head_array),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

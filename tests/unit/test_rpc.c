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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

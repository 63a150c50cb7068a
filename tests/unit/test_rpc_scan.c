/* test_rpc_scan.c -- the envelope scan of oversized frames (head and tail only): hostile
 * tails must cost linear time and give the same answer a careful reader would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/rpc.h"

struct got {
	int n;
	enum rpc_kind kind;
	char id[RPC_ID_MAX];
	char method[RPC_NAME_MAX];
	long long code;
	bool is_error;
};

static void collect(void *ctx, const struct rpc_msg *m)
{
	struct got *g = ctx;

	g->n++;
	g->kind = m->kind;
	snprintf(g->id, sizeof(g->id), "%s", m->id);
	snprintf(g->method, sizeof(g->method), "%s", m->method ? m->method : "");
	g->code = m->error_code;
	g->is_error = m->is_error;
}

/* An oversized frame from its head and tail, each in a buffer of exactly its length (no NUL
 * after it), as the framer hands them over. */
static void decode_oversized(const char *head, size_t head_len, const char *tail, size_t tail_len, struct got *g)
{
	char *h = malloc(head_len), *t = malloc(tail_len);
	struct frame f = { .len = head_len, .tail_len = tail_len, .oversized = true };

	assert_non_null(h);
	assert_non_null(t);
	memcpy(h, head, head_len);
	memcpy(t, tail, tail_len);
	f.data = h;
	f.tail = t;
	f.wire_len = 100u << 20;
	memset(g, 0, sizeof(*g));
	assert_int_equal(rpc_decode(&f, collect, g), 1);
	assert_int_equal(g->n, 1);
	free(h);
	free(t);
}

static const char result_head[] = "{\"jsonrpc\":\"2.0\",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"AAAA";

/* A tail ending in a string id made of 4 MiB of backslashes (2 Mi escaped backslashes): the
 * scan back to its opening quote once looked at every backslash again for every backslash,
 * hours of CPU for this tail. The id is there, cut to RPC_ID_MAX. */
static void test_tail_of_backslashes_is_linear(void **state)
{
	static const char pre[] = "AAAA\"}]},\"id\":\"x", post[] = "\"}\n";
	size_t run = 4u << 20, len = sizeof(pre) - 1 + run + sizeof(post) - 1;
	char *tail = malloc(len);
	char want[RPC_ID_MAX];
	struct got g;
	(void)state;

	assert_non_null(tail);
	memcpy(tail, pre, sizeof(pre) - 1);
	memset(tail + sizeof(pre) - 1, '\\', run);
	memcpy(tail + len - (sizeof(post) - 1), post, sizeof(post) - 1);
	decode_oversized(result_head, sizeof(result_head) - 1, tail, len, &g);
	assert_int_equal(g.kind, RPC_RESULT);
	memset(want, '\\', sizeof(want));
	want[0] = '"';
	want[1] = 'x';
	want[sizeof(want) - 1] = '\0';
	assert_string_equal(g.id, want);

	/* Odd: the last quote is escaped, and so is every quote the run precedes: the id's
	 * opening quote is still the nearest unescaped one. */
	memcpy(tail + len - (sizeof(post) - 1) - 2, "\\\"", 2);
	decode_oversized(result_head, sizeof(result_head) - 1, tail, len, &g);
	assert_int_equal(g.kind, RPC_RESULT);
	assert_memory_equal(g.id, "\"x\\\\", 4);
	free(tail);
}

/* Escaped quotes and backslashes inside a trailing string id. */
static void test_tail_string_ids_with_escapes(void **state)
{
	static const struct {
		const char *tail, *id;
	} cases[] = {
		{ "AAA\"}]},\"id\":\"a\\\"b\"}", "\"a\\\"b\"" },       /* "a\"b" */
		{ "AAA\"}]},\"id\":\"a\\\\\"}", "\"a\\\\\"" },         /* "a\\" */
		{ "AAA\"}]},\"id\":\"\\\\\\\"\\\\\"}", "\"\\\\\\\"\\\\\"" }, /* "\\\"\\" */
		{ "AAA\"}]},\"id\":\"\"}", "\"\"" },                   /* "" */
		{ "AAA\"}]},\"id\":42}", "42" },
		{ "\\\\\\\\\"}", "" }, /* no opening quote in the tail: no id */
	};
	struct got g;
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		decode_oversized(result_head, sizeof(result_head) - 1, cases[i].tail, strlen(cases[i].tail), &g);
		assert_string_equal(g.id, cases[i].id);
		assert_int_equal(g.kind, cases[i].id[0] ? RPC_RESULT : RPC_INVALID);
	}
}

/* Values at the very end of the head, with nothing readable after them. */
static void test_head_values_at_the_cut(void **state)
{
	static const char err_head[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32000";
	static const char iserr_head[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"isError\":tr";
	static const char iserr_true[] = "{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"isError\":true";
	struct got g;
	(void)state;

	decode_oversized(err_head, sizeof(err_head) - 1, "xxxx", 4, &g);
	assert_int_equal(g.kind, RPC_ERROR);
	assert_int_equal(g.code, -32000);
	decode_oversized(iserr_head, sizeof(iserr_head) - 1, "xxxx", 4, &g);
	assert_int_equal(g.kind, RPC_RESULT);
	assert_false(g.is_error);
	decode_oversized(iserr_true, sizeof(iserr_true) - 1, "xxxx", 4, &g);
	assert_true(g.is_error);
	assert_string_equal(g.id, "3");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tail_of_backslashes_is_linear),
		cmocka_unit_test(test_tail_string_ids_with_escapes),
		cmocka_unit_test(test_head_values_at_the_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

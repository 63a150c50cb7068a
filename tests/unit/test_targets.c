/* test_targets.c -- --include / --exclude: parsing, and what passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/targets.h"

static bool passes(const struct selectors *s, const char *comm, const char *exe, const char *cmdline)
{
	struct selector_subject subj = { .field = { [SEL_COMM] = comm, [SEL_EXE] = exe, [SEL_CMDLINE] = cmdline } };

	return selectors_pass(s, &subj);
}

static bool passes_pod(const struct selectors *s, const char *ns, const char *pod, const char *container)
{
	struct selector_subject subj = { .field = { [SEL_COMM] = "node", [SEL_NAMESPACE] = ns, [SEL_POD] = pod,
						    [SEL_CONTAINER] = container } };

	return selectors_pass(s, &subj);
}

static void test_parse(void **state)
{
	struct selectors s = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(selectors_add(&s, "comm=node*", true, err, sizeof(err)), 0);
	assert_int_equal(selectors_add(&s, "exe=/usr/bin/*", false, err, sizeof(err)), 0);
	assert_int_equal(selectors_add(&s, "cmdline=*--stdio*", true, err, sizeof(err)), 0);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.nincludes, 2);
	assert_int_equal(selectors_add(&s, "node", true, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "expected comm=, exe=, cmdline=, namespace=, pod= or container=GLOB"));
	assert_int_equal(selectors_add(&s, "uid=x", true, err, sizeof(err)), -1);
	assert_int_equal(selectors_add(&s, "commx=y", true, err, sizeof(err)), -1);
	assert_int_equal(selectors_add(&s, "exe=", false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "empty"));
	assert_int_equal(s.n, 3);
	selectors_free(&s);
	for (int i = 0; i < SELECTORS_MAX; i++)
		assert_int_equal(selectors_add(&s, "comm=x", false, err, sizeof(err)), 0);
	assert_int_equal(selectors_add(&s, "comm=x", false, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "at most"));
	selectors_free(&s);
}

static void test_pass(void **state)
{
	struct selectors s = { 0 };
	char err[128];

	(void)state;
	/* none: everything */
	assert_true(passes(NULL, "node", "/usr/bin/node", "node x.js"));
	assert_true(passes(&s, NULL, NULL, NULL));
	/* excludes only: all but what matches one */
	assert_int_equal(selectors_add(&s, "cmdline=*lsp*", false, err, sizeof(err)), 0);
	assert_true(passes(&s, "node", "/usr/bin/node", "node server.js"));
	assert_false(passes(&s, "node", "/usr/bin/node", "node lsp-server.js"));
	/* with an include: only what matches one, and still no exclude */
	assert_int_equal(selectors_add(&s, "comm=node", true, err, sizeof(err)), 0);
	assert_int_equal(selectors_add(&s, "exe=*/python3*", true, err, sizeof(err)), 0);
	assert_true(passes(&s, "node", "/usr/bin/node", "node server.js"));
	assert_true(passes(&s, "python3", "/usr/bin/python3.11", "python3 -m srv"));
	assert_false(passes(&s, "uvx", "/usr/bin/uvx", "uvx srv"));
	assert_false(passes(&s, "node", "/usr/bin/node", "node lsp-server.js"));
	/* an unknown field is "": an exclude on it does not match, an include on it neither */
	assert_true(passes(&s, "node", NULL, NULL));
	assert_false(passes(&s, "uvx", NULL, NULL));
	selectors_free(&s);
}

/* Kubernetes fields: a host process (or one not attributed yet) has "" for them. */
static void test_pass_pod(void **state)
{
	struct selectors s = { 0 };
	char err[128];

	(void)state;
	assert_int_equal(selectors_add(&s, "namespace=team-*", true, err, sizeof(err)), 0);
	assert_int_equal(selectors_add(&s, "pod=*-canary-*", false, err, sizeof(err)), 0);
	assert_int_equal(selectors_add(&s, "container=istio-proxy", false, err, sizeof(err)), 0);
	assert_true(passes_pod(&s, "team-a", "agent-7f9c", "agent"));
	assert_false(passes_pod(&s, "kube-system", "agent-7f9c", "agent"));
	assert_false(passes_pod(&s, "team-a", "agent-canary-1", "agent"));
	assert_false(passes_pod(&s, "team-a", "agent-7f9c", "istio-proxy"));
	assert_false(passes_pod(&s, NULL, NULL, NULL));
	selectors_free(&s);
}

/* A process found by HTTP and silent since goes after the probation; one that spoke MCP,
 * or that was found by its stdin, stays however long it is quiet. */
static void test_http_idle(void **state)
{
	const uint64_t found = 5000000000ull;

	(void)state;
	assert_false(targets_http_idle(true, false, found, found + TARGETS_HTTP_PROBATION_NS));
	assert_true(targets_http_idle(true, false, found, found + TARGETS_HTTP_PROBATION_NS + 1));
	assert_false(targets_http_idle(true, true, found, found + 100 * TARGETS_HTTP_PROBATION_NS));
	assert_false(targets_http_idle(false, false, found, found + 100 * TARGETS_HTTP_PROBATION_NS));
	assert_false(targets_http_idle(true, false, found, found - 1)); /* a clock behind it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_pass_pod),
		cmocka_unit_test(test_http_idle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

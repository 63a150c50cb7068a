/* test_targets.c -- --include / --exclude: parsing, and what passes; records of processes
 * the stage was never told of. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

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

static unsigned data_delivered;

static void count_data(void *ctx, const struct msd_rec_hdr *rec)
{
	(void)ctx;
	if (rec->kind == MSD_REC_DATA)
		data_delivered++;
}

static unsigned data_after(struct targets *t, uint32_t tgid, int records)
{
	struct msd_rec_hdr rec = { .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = sizeof(rec),
				   .tgid = tgid, .tid = tgid };

	data_delivered = 0;
	for (int i = 0; i < records; i++)
		targets_on_record(t, &rec);
	return data_delivered;
}

/* Watching all, data of a process whose discovery record was lost: judged from /proc like a
 * discovered one, and when /proc no longer has it, not delivered at all (selectors could not
 * judge it): under load this let an excluded workload's calls through. */
static void test_unannounced(void **state)
{
	struct selectors s = { 0 };
	struct targets_opts o = { .all = true, .selectors = &s };
	struct targets_stats st;
	struct targets *t;
	char err[128], comm[17] = "", sel[32];
	pid_t gone = 4194000;

	(void)state;
	while (gone > 1000 && !(kill(gone, 0) < 0 && errno == ESRCH))
		gone--;
	/* this process's own name (test_targets, or valgrind's when run under it) */
	assert_int_equal(prctl(PR_GET_NAME, comm), 0);
	snprintf(sel, sizeof(sel), "comm=%s", comm);
	assert_int_equal(selectors_add(&s, sel, false, err, sizeof(err)), 0);
	assert_non_null(t = targets_new(&o, NULL, count_data, NULL));
	assert_int_equal(data_after(t, (uint32_t)gone, 3), 0);
	assert_int_equal(data_after(t, (uint32_t)getpid(), 3), 0); /* this process: excluded */
	targets_get_stats(t, &st);
	assert_int_equal(st.unidentified, 1);
	assert_int_equal(st.excluded, 1);
	assert_int_equal(st.records_dropped, 6);
	targets_free(t);

	/* No selector: this process is discovered from /proc, and its data goes on. */
	o.selectors = NULL;
	assert_non_null(t = targets_new(&o, NULL, count_data, NULL));
	assert_int_equal(data_after(t, (uint32_t)getpid(), 3), 3);
	targets_get_stats(t, &st);
	assert_int_equal(st.discovered, 1);
	targets_free(t);
	selectors_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_pass_pod),
		cmocka_unit_test(test_http_idle),
		cmocka_unit_test(test_unannounced),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

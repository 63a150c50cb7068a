/* test_golden.c -- `mcpsonde replay` of a recorded real session gives the committed output,
 * byte for byte, as JSONL (with and without --capture-values) and as text.
 *
 * tests/data/golden.msd is server-everything driven by the SDK client (see
 * scripts/record-golden.sh, which re-records it and rewrites the expected outputs). Runs the
 * built binary from the repository root (tests/run.sh runs there), so the CLI, the sinks and
 * their buffering are what is compared. The text output is local time: TZ=UTC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define GOLDEN_CAPTURE "tests/data/golden.msd"
#define SONDE "build/mcpsonde"

static char *slurp_stream(FILE *f, size_t *len)
{
	size_t cap = 1 << 16, n = 0, r;
	char *buf = malloc(cap);

	assert_non_null(buf);
	while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			buf = realloc(buf, cap *= 2);
			assert_non_null(buf);
		}
	}
	*len = n;
	return buf;
}

static char *slurp_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;

	if (!f)
		fail_msg("%s: cannot open (tests run from the repository root)", path);
	buf = slurp_stream(f, len);
	fclose(f);
	return buf;
}

/* Names the first line that differs, so that a failure says what changed. */
static void compare(const char *what, const char *want, size_t wlen, const char *got, size_t glen)
{
	size_t i, line = 1, start = 0;

	for (i = 0; i < wlen && i < glen && want[i] == got[i]; i++)
		if (want[i] == '\n')
			line++, start = i + 1;
	if (i == wlen && i == glen)
		return;
	print_error("%s differs at line %zu:\n  want: %.*s\n  got:  %.*s\n", what, line,
		    (int)strcspn(want + start, "\n") > 400 ? 400 : (int)strcspn(want + start, "\n"), want + start,
		    (int)strcspn(got + start, "\n") > 400 ? 400 : (int)strcspn(got + start, "\n"), got + start);
	fail();
}

static void replay_matches(const char *args, const char *expected)
{
	char cmd[256];
	size_t wlen, glen;
	char *want, *got;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "TZ=UTC %s replay %s %s", SONDE, GOLDEN_CAPTURE, args);
	want = slurp_file(expected, &wlen);
	p = popen(cmd, "r");
	assert_non_null(p);
	got = slurp_stream(p, &glen);
	assert_int_equal(pclose(p), 0);
	compare(expected, want, wlen, got, glen);
	free(want);
	free(got);
}

static void test_golden_jsonl(void **state)
{
	(void)state;
	replay_matches("--json", "tests/data/golden.jsonl");
}

/* Arguments, results and params embedded whole: the values path of the renderer. */
static void test_golden_values(void **state)
{
	(void)state;
	replay_matches("--json --capture-values", "tests/data/golden-values.jsonl");
}

static void test_golden_text(void **state)
{
	(void)state;
	replay_matches("", "tests/data/golden.txt");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_golden_jsonl),
		cmocka_unit_test(test_golden_values),
		cmocka_unit_test(test_golden_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

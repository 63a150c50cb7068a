/* test_report.c -- report files: name, mode, gzip, directory and size bounds, rendering. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "mcpsonde/report.h"

#define T0_REAL 1795000000000000000ull /* 2026-11-18T... UTC */

static char *tmpdir_new(void)
{
	char *d = strdup("/tmp/mcpsonde-test-report-XXXXXX");

	assert_non_null(mkdtemp(d));
	return d;
}

static void tmpdir_free(char *d)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	assert_int_equal(system(cmd), 0);
	free(d);
}

static unsigned dir_count(const char *dir, const char *suffix)
{
	struct dirent *de;
	unsigned n = 0;
	DIR *d = opendir(dir);

	assert_non_null(d);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && (!suffix || strstr(de->d_name, suffix)))
			n++;
	closedir(d);
	return n;
}

/* A report as the recorder builds it, for a server-everything killed by SIGSEGV. */
static json_t *sample_report(void)
{
	json_error_t e;
	json_t *r = json_pack_ex(&e, 0, "{s:i, s:s, s:{s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:f}, "
			 "s:{s:s, s:s, s:i, s:i, s:s, s:b, s:b, s:b, s:b, s:i}, "
			 "s:[{s:s, s:s, s:s, s:f, s:b}], "
			 "s:{s:i, s:[], s:[]}, s:{s:s, s:i}, s:[], "
			 "s:[{s:f, s:s, s:s}, {s:f, s:s, s:s}], s:[], s:{s:b, s:{}, s:{}}}",
			 "mcpsonde_report", REPORT_VERSION, "written_at", "2026-11-18T10:00:00.000000Z",
			 "process", "pid", 1234, "comm", "node", "name", "mcp-servers/everything", "server_name",
			 "mcp-servers/everything", "cmdline", "node dist/index.js stdio", "exe", "/usr/bin/node", "cgroup",
			 "0::/user.slice", "uptime_s", 12.34,
			 "exit", "at", "2026-11-18T10:00:00.000000Z", "reason", "signal", "exit_code", -1, "signal", 11,
			 "signal_name", "SIGSEGV", "core_dumped", 0, "oom_killed", 0, "stdin_closed", 0, "normal", 0,
			 "pending_calls", 1,
			 "pending_calls", "method", "tools/call", "id", "2", "tool", "trigger-long-running-operation",
			 "age_s", 3.25, "orphaned", 1,
			 "frames", "per_direction", 32, "client_to_server", "server_to_client",
			 "stderr", "tail", "Traceback (most recent call last):\nValueError: boom\n", "lines_seen", 2,
			 "events",
			 "timeline", "t", -3.25, "kind", "to server", "summary", "request tools/call id=2",
			 "t", 0.0, "kind", "exit", "summary", "killed by SIGSEGV",
			 "resources", "capture_health", "lost", 0, "loss_by_reason", "recorder");

	if (!r)
		fail_msg("json_pack: %s at %d", e.text, e.position);
	return r;
}

static char *render(const json_t *r)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	report_render(r, f);
	fclose(f);
	return buf;
}

static void test_write_read_mode_name(void **state)
{
	char *dir = tmpdir_new(), path[4096], err[256];
	struct report_opts o = { .dir = dir };
	json_t *r = sample_report(), *back;
	unsigned char magic[2];
	struct stat st;
	FILE *f;

	(void)state;
	assert_int_equal(report_write(&o, r, "node", 1234, T0_REAL + 123456000ull, path, sizeof(path), err, sizeof(err)), 0);
	assert_non_null(strstr(path, "/mcpsonde-node-1234-"));
	assert_non_null(strstr(path, "Z.json.gz"));
	assert_non_null(strstr(path, ".123456Z"));
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(magic, 1, 2, f), 2);
	fclose(f);
	assert_int_equal(magic[0], 0x1f); /* gzip */
	assert_int_equal(magic[1], 0x8b);
	back = report_read(path, 0, err, sizeof(err));
	assert_non_null(back);
	assert_true(json_equal(back, r));
	assert_int_equal(dir_count(dir, NULL), 1); /* no temporary file left behind */
	json_decref(back);
	json_decref(r);
	tmpdir_free(dir);
}

static void test_same_instant_distinct_names(void **state)
{
	char *dir = tmpdir_new(), p1[4096], p2[4096], err[256];
	struct report_opts o = { .dir = dir };
	json_t *r = sample_report();

	(void)state;
	assert_int_equal(report_write(&o, r, "a b/c", 7, T0_REAL, p1, sizeof(p1), err, sizeof(err)), 0);
	assert_int_equal(report_write(&o, r, "a b/c", 7, T0_REAL, p2, sizeof(p2), err, sizeof(err)), 0);
	assert_string_not_equal(p1, p2);
	assert_non_null(strstr(p1, "mcpsonde-a_b_c-7-")); /* no path separator from comm */
	assert_int_equal(dir_count(dir, REPORT_SUFFIX), 2);
	json_decref(r);
	tmpdir_free(dir);
}

static void test_dir_bounded_oldest_removed(void **state)
{
	char *dir = tmpdir_new(), path[4096], err[256], other[4200];
	struct report_opts o = { .dir = dir, .max_files = 3 };
	char first[4096] = "", last[4096] = "";
	json_t *r = sample_report();
	FILE *f;
	int i;

	(void)state;
	snprintf(other, sizeof(other), "%s/notes.txt", dir); /* not ours: never removed */
	f = fopen(other, "w");
	assert_non_null(f);
	fclose(f);
	for (i = 0; i < 6; i++) {
		assert_int_equal(report_write(&o, r, "node", 100 + i, T0_REAL + (uint64_t)i * 1000000000ull, path,
					      sizeof(path), err, sizeof(err)),
				 0);
		if (i == 0)
			snprintf(first, sizeof(first), "%s", path);
		snprintf(last, sizeof(last), "%s", path);
	}
	assert_int_equal(dir_count(dir, REPORT_SUFFIX), 3);
	assert_int_not_equal(access(first, F_OK), 0);
	assert_int_equal(access(last, F_OK), 0);
	assert_int_equal(access(other, F_OK), 0);
	json_decref(r);
	tmpdir_free(dir);
}

static void test_dir_created_0700(void **state)
{
	char *dir = tmpdir_new(), sub[4200], path[4096], err[256];
	struct report_opts o = { .dir = sub };
	json_t *r = sample_report();
	struct stat st;

	(void)state;
	snprintf(sub, sizeof(sub), "%s/a/reports", dir);
	assert_int_equal(report_write(&o, r, "node", 1, T0_REAL, path, sizeof(path), err, sizeof(err)), 0);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	json_decref(r);
	tmpdir_free(dir);
}

static void test_size_cap_trims_bulk_first(void **state)
{
	char *dir = tmpdir_new(), path[4096], err[256], *big, *text;
	struct report_opts o = { .dir = dir, .max_bytes = 6000 };
	json_t *r = sample_report(), *frames, *back, *trimmed;
	size_t i;

	(void)state;
	frames = json_object_get(json_object_get(r, "frames"), "client_to_server");
	for (i = 0; i < 200; i++)
		json_array_append_new(frames, json_pack("{s:f, s:{s:s, s:i}}", "t", -(double)i, "event", "method",
							"tools/call", "seq", (int)i));
	big = malloc(65536 + 1);
	for (i = 0; i < 65536; i++)
		big[i] = i % 64 == 63 ? '\n' : 'x';
	big[65536] = '\0';
	json_object_set_new(json_object_get(r, "stderr"), "tail", json_string(big));
	free(big);

	assert_int_equal(report_write(&o, r, "node", 1, T0_REAL, path, sizeof(path), err, sizeof(err)), 0);
	back = report_read(path, 0, err, sizeof(err));
	assert_non_null(back);
	text = json_dumps(back, JSON_COMPACT);
	assert_true(strlen(text) <= 6000);
	free(text);
	trimmed = json_object_get(back, "trimmed");
	assert_string_equal(json_string_value(json_array_get(trimmed, 0)), "frames");
	assert_string_equal(json_string_value(json_array_get(trimmed, 1)), "stderr");
	/* What the report is for survives: who died, how, and what was pending. */
	assert_string_equal(json_string_value(json_object_get(json_object_get(back, "exit"), "signal_name")), "SIGSEGV");
	assert_int_equal(json_array_size(json_object_get(back, "pending_calls")), 1);
	/* The stderr tail keeps its end, cut on a line boundary. */
	text = (char *)json_string_value(json_object_get(json_object_get(back, "stderr"), "tail"));
	assert_non_null(text);
	assert_true(text[0] == 'x' && strlen(text) % 64 == 0);
	json_decref(back);
	json_decref(r);
	tmpdir_free(dir);
}

static void test_render_headline_and_sections(void **state)
{
	json_t *r = sample_report();
	char headline[256], *out;

	(void)state;
	report_headline(r, headline, sizeof(headline));
	assert_string_equal(headline, "mcp-servers/everything (pid 1234) killed by SIGSEGV after 12.3 s, 1 call pending");
	out = render(r);
	assert_non_null(strstr(out, headline));
	assert_non_null(strstr(out, "Pending at death (1)"));
	assert_non_null(strstr(out, "trigger-long-running-operation"));
	assert_non_null(strstr(out, "id=2"));
	assert_non_null(strstr(out, "age 3.2 s"));
	assert_non_null(strstr(out, "Timeline"));
	assert_non_null(strstr(out, "-3.250"));
	assert_non_null(strstr(out, "| Traceback (most recent call last):"));
	assert_non_null(strstr(out, "| ValueError: boom"));
	assert_non_null(strstr(out, "complete, nothing lost"));
	assert_non_null(strstr(out, "0::/user.slice"));
	free(out);
	json_decref(r);
}

static void test_headline_variants(void **state)
{
	json_t *r = sample_report(), *exit = json_object_get(r, "exit");
	char h[256];

	(void)state;
	json_object_set_new(exit, "signal", json_integer(0));
	json_object_set_new(exit, "signal_name", json_null());
	json_object_set_new(exit, "exit_code", json_integer(1));
	json_object_set_new(exit, "pending_calls", json_integer(0));
	report_headline(r, h, sizeof(h));
	assert_string_equal(h, "mcp-servers/everything (pid 1234) exited with code 1 after 12.3 s");

	json_object_set_new(exit, "signal", json_integer(9));
	json_object_set_new(exit, "signal_name", json_string("SIGKILL"));
	json_object_set_new(exit, "oom_killed", json_true());
	json_object_set_new(exit, "pending_calls", json_integer(2));
	report_headline(r, h, sizeof(h));
	assert_string_equal(h, "mcp-servers/everything (pid 1234) killed by the OOM killer after 12.3 s, 2 calls pending");

	json_object_set_new(exit, "oom_killed", json_false());
	json_object_set_new(exit, "signal", json_integer(6));
	json_object_set_new(exit, "signal_name", json_string("SIGABRT"));
	json_object_set_new(exit, "core_dumped", json_true());
	json_object_set_new(json_object_get(r, "process"), "uptime_s", json_real(250.0));
	report_headline(r, h, sizeof(h));
	assert_string_equal(h, "mcp-servers/everything (pid 1234) killed by SIGABRT (core dumped) after 4m10s, 2 calls pending");
	json_decref(r);
}

static void test_print_file_json_and_errors(void **state)
{
	char *dir = tmpdir_new(), path[4096], err[256], bogus[4200], *buf = NULL;
	struct report_opts o = { .dir = dir };
	json_t *r = sample_report(), *back;
	size_t len = 0;
	FILE *f;

	(void)state;
	assert_int_equal(report_write(&o, r, "node", 1234, T0_REAL, path, sizeof(path), err, sizeof(err)), 0);
	f = open_memstream(&buf, &len);
	assert_int_equal(report_print_file(path, true, 0, f, err, sizeof(err)), 0);
	fclose(f);
	back = json_loads(buf, 0, NULL);
	assert_non_null(back);
	assert_true(json_equal(back, r));
	json_decref(back);
	free(buf);

	snprintf(bogus, sizeof(bogus), "%s/missing.json.gz", dir);
	assert_int_equal(report_print_file(bogus, false, 0, stdout, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "missing.json.gz"));
	snprintf(bogus, sizeof(bogus), "%s/other.json", dir);
	f = fopen(bogus, "w");
	fputs("{\"hello\": 1}", f);
	fclose(f);
	assert_int_equal(report_print_file(bogus, false, 0, stdout, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not an mcpsonde report"));
	json_decref(r);
	tmpdir_free(dir);
}

static void test_unwritable_dir_fails_cleanly(void **state)
{
	char path[4096], err[256];
	struct report_opts o = { .dir = "/proc/mcpsonde-no-such-dir" };
	json_t *r = sample_report();

	(void)state;
	assert_int_equal(report_write(&o, r, "node", 1, T0_REAL, path, sizeof(path), err, sizeof(err)), -1);
	assert_non_null(strstr(err, "report dir"));
	json_decref(r);
}

static void test_format_duration(void **state)
{
	char b[32];

	(void)state;
	report_format_duration(0.0123, b, sizeof(b));
	assert_string_equal(b, "12 ms");
	report_format_duration(12.34, b, sizeof(b));
	assert_string_equal(b, "12.3 s");
	report_format_duration(3725, b, sizeof(b));
	assert_string_equal(b, "1h02m");
	report_format_bytes(1536, b, sizeof(b));
	assert_string_equal(b, "1.5 KiB");
}

static void write_gz(const char *path, const char *text, size_t len)
{
	gzFile gz = gzopen(path, "wb9");

	assert_non_null(gz);
	assert_int_equal(gzwrite(gz, text, (unsigned)len), (int)len);
	assert_int_equal(gzclose(gz), Z_OK);
}

/* A report is at most --max-report-size of JSON by construction: a small file that inflates
 * past it (a 4.3 GB RSS postmortem once) is refused before it is parsed. */
static void test_read_refuses_inflation_past_max(void **state)
{
	char *dir = tmpdir_new(), path[4096], err[256];
	size_t len = 6u << 20;
	char *text = malloc(len);
	struct stat st;
	json_t *r;

	(void)state;
	assert_non_null(text);
	memset(text, ' ', len);
	memcpy(text, "{\"mcpsonde_report\":1,\"pad\":0", 28);
	text[len - 1] = '}';
	snprintf(path, sizeof(path), "%s/bomb.json.gz", dir);
	write_gz(path, text, len);
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size < 64 * 1024);
	assert_null(report_read(path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "inflates past 4194304 bytes"));
	assert_non_null(strstr(err, "--max-report-size"));
	r = report_read(path, 8u << 20, err, sizeof(err));
	assert_non_null(r);
	json_decref(r);
	free(text);
	tmpdir_free(dir);
}

/* Within the size cap, the parse is bounded too: tiny values cost ~70 bytes of tree per byte
 * of text, and nesting is limited. */
static void test_read_bounds_the_parse(void **state)
{
	char *dir = tmpdir_new(), path[4096], err[256];
	size_t len = 3u << 20, i = 0;
	char *text = malloc(len + 8);

	(void)state;
	assert_non_null(text);
	i += (size_t)sprintf(text, "{\"mcpsonde_report\":1,\"a\":[");
	while (i < len)
		i += (size_t)sprintf(text + i, "{},");
	i += (size_t)sprintf(text + i, "{}]}");
	snprintf(path, sizeof(path), "%s/objects.json", dir);
	write_gz(path, text, i);
	assert_null(report_read(path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "would take more than"));

	i = 0;
	i += (size_t)sprintf(text, "{\"mcpsonde_report\":1,\"a\":");
	while (i < 100000)
		text[i++] = '[';
	while (i < 200000)
		text[i++] = ']';
	text[i++] = '}';
	snprintf(path, sizeof(path), "%s/deep.json", dir);
	write_gz(path, text, i);
	assert_null(report_read(path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "not a report"));
	free(text);
	tmpdir_free(dir);
}

/* A report of any shape renders without crashing: wrong types count as absent, numbers out
 * of range are clamped, control characters are escaped, and output stays bounded however
 * long the lists and strings are. */
static void test_render_any_shape(void **state)
{
	json_t *r = json_pack("{s:i, s:[], s:s, s:{}, s:i, s:s, s:[i], s:i}", "mcpsonde_report", 1, "process",
			      "exit", "nope", "pending_calls", "frames", 3, "timeline", "x", "resources", 1,
			      "capture_health", 5);
	json_t *tl = json_array(), *pending = json_array(), *by = json_object(), *proc, *exit, *bigstr;
	json_t *forged = json_string("forged\nline");
	char *out, *big = malloc(1u << 20);
	size_t i;

	(void)state;
	out = render(r);
	assert_non_null(strstr(out, "? (pid 0) exited (unknown)"));
	free(out);
	json_decref(r);

	memset(big, 'A', 1u << 20);
	big[(1u << 20) - 1] = '\0';
	bigstr = json_string(big); /* shared: one MiB, not one per entry */
	for (i = 0; i < 100000; i++) {
		json_array_append_new(tl, json_pack("{s:f, s:s, s:O}", "t", i ? -1e300 : 1e300, "kind", "\x1b[31mred",
						    "summary", i % 2 ? forged : bigstr));
		json_array_append_new(pending, i % 3 ? json_pack("{s:s, s:i}", "method", "\a" "bell", "age_s", -5)
						     : json_string("not an object"));
		if (i < 1000)
			json_object_set_new(by, big + (1u << 20) - 3000 + i, json_pack("{s:f, s:f}", "records", 1e300, "bytes", -1e300));
	}
	proc = json_pack("{s:s, s:f, s:f, s:s}", "name", "srv\x1b]0;title\x07", "pid", -1e300, "uptime_s", 1e308,
			 "cmdline", big);
	exit = json_pack("{s:f, s:f, s:f}", "exit_code", 1e300, "signal", -1e300, "pending_calls", 1e300);
	r = json_pack("{s:i, s:o, s:o, s:o, s:o, s:{s:b, s:o}, s:{s:s, s:f}}", "mcpsonde_report", 1, "process", proc,
		      "exit", exit, "timeline", tl, "pending_calls", pending, "capture_health", "lost", 1,
		      "loss_by_reason", by, "stderr", "tail", big, "lines_seen", 1e300);
	assert_non_null(r);
	json_decref(bigstr);
	json_decref(forged);
	out = render(r);
	assert_true(strlen(out) < (2u << 20));
	assert_null(strchr(out, '\x1b'));
	assert_null(strchr(out, '\x07'));
	assert_non_null(strstr(out, "srv\\x1b]0;title\\x07 (pid 0)"));
	assert_non_null(strstr(out, "\\x1b[31mred"));
	assert_non_null(strstr(out, "forged\\nline"));
	assert_non_null(strstr(out, "... 99744 more"));
	assert_non_null(strstr(out, "99744 earlier entries"));
	free(out);
	json_decref(r);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_read_mode_name),
		cmocka_unit_test(test_same_instant_distinct_names),
		cmocka_unit_test(test_dir_bounded_oldest_removed),
		cmocka_unit_test(test_dir_created_0700),
		cmocka_unit_test(test_size_cap_trims_bulk_first),
		cmocka_unit_test(test_render_headline_and_sections),
		cmocka_unit_test(test_headline_variants),
		cmocka_unit_test(test_print_file_json_and_errors),
		cmocka_unit_test(test_unwritable_dir_fails_cleanly),
		cmocka_unit_test(test_format_duration),
		cmocka_unit_test(test_read_refuses_inflation_past_max),
		cmocka_unit_test(test_read_bounds_the_parse),
		cmocka_unit_test(test_render_any_shape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_jsonw.c -- the JSON writer and the UTF-8 helpers.
 *
 * The writer must write what jansson writes for every value jansson accepts (strings,
 * integers, reals, ids, whole documents), and something valid where jansson gives up:
 * invalid UTF-8, strings cut inside a character, controls. Expectations come from jansson
 * itself, never from a copy of our own output. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/event.h"
#include "mcpsonde/jsonw.h"
#include "mcpsonde/utf8.h"

/* What jansson writes for v (which it owns). */
static char *jansson_text(json_t *v)
{
	char *s = json_dumps(v, EVENT_JSON_FLAGS | JSON_ENCODE_ANY);

	assert_non_null(s);
	json_decref(v);
	return s;
}

/* The writer's text of one value, NUL-terminated, in out (freed by the caller). */
#define WRITE(out, call)                           \
	do {                                       \
		struct jsonw w_;                   \
		(out)->len = 0;                    \
		jsonw_begin(&w_, (out));           \
		call;                              \
		outbuf_putc((out), '\0');          \
	} while (0)

static uint64_t rng = 88172645463325252ull;

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_strings_as_jansson(void **state)
{
	static const char *const cases[] = {
		"", "plain", "quote\" backslash\\ slash/", "\b\f\n\r\t", "\x01\x1f", "caf\xc3\xa9",
		"\xe2\x82\xac \xf0\x9f\x98\x80", "tools/call",
	};
	struct outbuf out = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *want = jansson_text(json_string(cases[i]));
		WRITE(&out, jsonw_string(&w_, cases[i]));
		assert_string_equal(out.data, want);
		free(want);
	}
	/* Random valid UTF-8 made of ASCII (controls and quotes included) and multi-byte
	 * characters, without DEL and C1, which the writer escapes and jansson does not. */
	for (int round = 0; round < 2000; round++) {
		char s[64];
		size_t n = 0, len = xorshift() % 40;
		while (n < len) {
			unsigned kind = xorshift() % 4;
			if (kind < 2) {
				char c = (char)(xorshift() % 0x7f);
				s[n++] = c ? c : 'x';
			} else if (kind == 2) {
				s[n++] = '\xc3', s[n++] = (char)(0xa0 + xorshift() % 0x1f);
			} else {
				s[n++] = '\xe4', s[n++] = '\xb8', s[n++] = (char)(0x80 + xorshift() % 0x3f);
			}
		}
		s[n] = '\0';
		char *want = jansson_text(json_string(s));
		WRITE(&out, jsonw_string(&w_, s));
		assert_string_equal(out.data, want);
		free(want);
	}
	outbuf_free(&out);
}

/* Where jansson refuses or writes raw bytes, the writer still writes valid, inert JSON. */
static void test_strings_never_lost(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
		{ "a\xff" "b", 3, "\"a\xef\xbf\xbd" "b\"" },               /* invalid byte */
		{ "cut \xc3", 5, "\"cut \xef\xbf\xbd\"" },                 /* cut inside a character */
		{ "\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"" },          /* overlong '/' */
		{ "\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"" }, /* surrogate */
		{ "\x1b[31mred\x07", 9, "\"\\u001B[31mred\\u0007\"" },     /* ESC and BEL */
		{ "del\x7f", 4, "\"del\\u007F\"" },
		{ "csi\xc2\x9b" "2J", 7, "\"csi\\u009B2J\"" },              /* 8-bit CSI */
		{ "nul\0byte", 8, "\"nul\\u0000byte\"" },
		{ "\xe2\x80\xae" "exe.txt \xe2\x80\xa8", 14, "\"\\u202Eexe.txt \\u2028\"" }, /* bidi, separator */
	};
	struct outbuf out = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *back;
		WRITE(&out, jsonw_stringn(&w_, cases[i].in, cases[i].len));
		assert_string_equal(out.data, cases[i].want);
		back = json_loads(out.data, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		assert_non_null(back);
		json_decref(back);
	}
	outbuf_free(&out);
}

static void test_numbers_as_jansson(void **state)
{
	static const long long ints[] = { 0, 1, -1, 9, 10, 4242, -32601, LLONG_MAX, LLONG_MIN };
	static const double reals[] = { 0.0, -0.0, 1.0, 0.493, 3.0, 1e15, 1e16, 1e17, 1e-5, 0.0001, 123456.789,
					1e300, 5e-324, -2.5, 1.0 / 3.0, 299792458.0 };
	struct outbuf out = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		char *want = jansson_text(json_integer(ints[i]));
		WRITE(&out, jsonw_int(&w_, ints[i]));
		assert_string_equal(out.data, want);
		free(want);
	}
	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		char *want = jansson_text(json_real(reals[i]));
		WRITE(&out, jsonw_real(&w_, reals[i]));
		assert_string_equal(out.data, want);
		free(want);
	}
	for (int i = 0; i < 5000; i++) {
		double d;
		uint64_t bits = xorshift();
		memcpy(&d, &bits, sizeof(d));
		if (!isfinite(d))
			continue;
		char *want = jansson_text(json_real(d));
		WRITE(&out, jsonw_real(&w_, d));
		assert_string_equal(out.data, want);
		free(want);
	}
	WRITE(&out, jsonw_real(&w_, NAN));
	assert_string_equal(out.data, "null");
	outbuf_free(&out);
}

/* Durations: the fast path must print what json_real(round(ns / 1e3) / 1e3) prints. */
static void check_ms(struct outbuf *out, uint64_t ns)
{
	char *want = jansson_text(json_real(round((double)ns / 1000.0) / 1000.0));

	WRITE(out, jsonw_ms(&w_, ns));
	if (strcmp(out->data, want))
		fail_msg("ns %llu: got %s, want %s", (unsigned long long)ns, out->data, want);
	free(want);
}

static void test_ms_as_jansson(void **state)
{
	struct outbuf out = { 0 };

	(void)state;
	for (uint64_t ns = 0; ns < 20000; ns++)
		check_ms(&out, ns);
	for (int i = 0; i < 20000; i++) {
		check_ms(&out, xorshift() % 5000000000000ull);
		check_ms(&out, xorshift() % 1000000000ull);
	}
	for (uint64_t ns = 3999999990000ull; ns < 4000000010000ull; ns += 499)
		check_ms(&out, ns);
	check_ms(&out, UINT64_MAX / 3);
	outbuf_free(&out);
}

/* A document from jansson (what --capture-values embeds) comes out as jansson writes it. */
static void test_values_as_jansson(void **state)
{
	const char *doc = "{\"content\":[{\"type\":\"text\",\"text\":\"a\\nb \\u00e9\"}],\"isError\":false,"
			  "\"n\":[1,-2,3.5,1e20,null,true],\"nested\":{\"a\":{\"b\":{}}},\"empty\":[]}";
	json_t *v = json_loads(doc, 0, NULL);
	struct outbuf out = { 0 };
	char *want;

	(void)state;
	assert_non_null(v);
	WRITE(&out, jsonw_value(&w_, v));
	want = jansson_text(v);
	assert_string_equal(out.data, want);
	free(want);
	outbuf_free(&out);
}

static void test_members_and_nesting(void **state)
{
	struct outbuf out = { 0 };
	struct jsonw w;

	(void)state;
	jsonw_begin(&w, &out);
	jsonw_object_open(&w);
	jsonw_member_str(&w, "a", "x");
	jsonw_member_str(&w, "skipped", NULL);
	jsonw_member_int(&w, "b", 2);
	jsonw_key(&w, "c");
	jsonw_array_open(&w);
	jsonw_int(&w, 1);
	jsonw_object_open(&w);
	jsonw_object_close(&w);
	jsonw_string(&w, NULL);
	jsonw_array_close(&w);
	jsonw_member_bool(&w, "d", false);
	jsonw_member_ms(&w, "e", 1500);
	jsonw_object_close(&w);
	outbuf_putc(&out, '\0');
	assert_string_equal(out.data, "{\"a\":\"x\",\"b\":2,\"c\":[1,{},null],\"d\":false,\"e\":0.002}");
	outbuf_free(&out);
}

static struct session_identity identity(void)
{
	struct session_identity id = { .pid = 7, .comm = "node" };

	return id;
}

/* Ids are written back as the JSON value they were on the wire, as parsing them would. */
static void test_ids(void **state)
{
	static const char *const ids[] = { "1", "0", "-5", "\"abc\"", "\"a\\u0041\\n\"", "1.5", "\"\"", "null" };
	struct session_identity id = identity();
	struct sonde_event ev = { .type = EV_CALL, .pid = 7, .session = &id };
	struct outbuf out = { 0 };

	(void)state;
	ev.call.method = "ping";
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		json_t *o, *want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
		assert_non_null(want);
		ev.call.id = ids[i];
		out.len = 0;
		event_render(&out, &ev, NULL);
		o = json_loadb(out.data, out.len, 0, NULL);
		assert_non_null(o);
		assert_true(json_equal(json_object_get(o, "id"), want));
		json_decref(o);
		json_decref(want);
	}
	outbuf_free(&out);
}

/* Issue 13 item 10: invalid UTF-8 in method, tool, id, server name or preview made jansson
 * drop the member. Every member is there, and the line is valid JSON. */
static void test_event_fields_never_lost(void **state)
{
	struct session_identity id = identity();
	struct sonde_event ev = { .type = EV_CALL, .pid = 7, .session = &id };
	struct outbuf out = { 0 };
	json_t *o;

	(void)state;
	id.server_name = "srv\xff\x1b]0;owned\x07";
	ev.call.method = "tools/\xc3";
	ev.call.tool = "t\xe2\x82";
	ev.call.id = "\"\xfe\"";
	ev.call.status = CALL_ERROR;
	ev.call.error_message = "bad \xf0\x9f";
	event_render(&out, &ev, NULL);
	o = json_loadb(out.data, out.len, 0, NULL);
	assert_non_null(o);
	assert_string_equal(json_string_value(json_object_get(o, "server")), "srv\xef\xbf\xbd\x1b]0;owned\x07");
	assert_string_equal(json_string_value(json_object_get(o, "method")), "tools/\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(o, "tool")), "t\xef\xbf\xbd\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(o, "id")), "\xef\xbf\xbd");
	assert_string_equal(json_string_value(json_object_get(o, "error_message")), "bad \xef\xbf\xbd\xef\xbf\xbd");
	assert_null(memchr(out.data, 0x1b, out.len)); /* escaped in the text */
	json_decref(o);

	memset(&ev.call, 0, sizeof(ev.call));
	ev.type = EV_INVALID;
	ev.invalid.preview = "\x80\x81garbage";
	out.len = 0;
	event_render(&out, &ev, NULL);
	o = json_loadb(out.data, out.len, 0, NULL);
	assert_non_null(o);
	assert_non_null(json_string_value(json_object_get(o, "preview")));
	json_decref(o);
	outbuf_free(&out);
}

static void test_utf8_cut(void **state)
{
	const char *s = "ab\xc3\xa9" "c\xe2\x82\xac\xf0\x9f\x98\x80";

	(void)state;
	assert_int_equal(utf8_cut(s, 12, 100), 12);
	assert_int_equal(utf8_cut(s, 12, 3), 2);   /* inside é */
	assert_int_equal(utf8_cut(s, 12, 4), 4);
	assert_int_equal(utf8_cut(s, 12, 6), 5);   /* inside € */
	assert_int_equal(utf8_cut(s, 12, 7), 5);
	assert_int_equal(utf8_cut(s, 12, 10), 8);  /* inside the emoji */
	assert_int_equal(utf8_cut("\xff\xff\xff", 3, 2), 2); /* invalid bytes are single units */
	assert_int_equal(utf8_cut("a\x80\x80\x80\x80", 5, 3), 3);
}

static void test_utf8_sanitize(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(utf8_sanitize("a\xff" "b", 3, out, sizeof(out)), 5);
	assert_string_equal(out, "a\xef\xbf\xbd" "b");
	utf8_sanitize("\xc3\xa9\xc3\xa9", 4, out, 4); /* room for one character only */
	assert_string_equal(out, "\xc3\xa9");
}

static void test_utf8_escape_controls(void **state)
{
	const char *in = "ok \x1b[2J\x07\n\r\t\x7f \xc2\x9b \xe2\x80\xae \xff \xc3\xa9";
	const char *want = "ok \\x1b[2J\\x07\\n\\r\\t\\x7f \\u009b \\u202e \\xff \xc3\xa9";
	char out[128], small[8];
	size_t n;

	(void)state;
	n = utf8_escape_controls(in, strlen(in), out, sizeof(out));
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
	/* Cut: never half an escape, and the full length is still told. */
	n = utf8_escape_controls("ab\x1b", 3, small, 5);
	assert_string_equal(small, "ab");
	assert_int_equal(n, 6);
	n = utf8_escape_controls("abcdefghij", 10, small, sizeof(small));
	assert_string_equal(small, "abcdefg");
	assert_int_equal(n, 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings_as_jansson),
		cmocka_unit_test(test_strings_never_lost),
		cmocka_unit_test(test_numbers_as_jansson),
		cmocka_unit_test(test_ms_as_jansson),
		cmocka_unit_test(test_values_as_jansson),
		cmocka_unit_test(test_members_and_nesting),
		cmocka_unit_test(test_ids),
		cmocka_unit_test(test_event_fields_never_lost),
		cmocka_unit_test(test_utf8_cut),
		cmocka_unit_test(test_utf8_sanitize),
		cmocka_unit_test(test_utf8_escape_controls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

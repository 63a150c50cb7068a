/* test_hdrscrub.c -- secret header values never leave hdrscrub: every way the bytes can be
 * split into records, connections seen mid-stream, after a gap, out of order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/hdrscrub.h"

#define TGID 77

static const char *const secrets[] = { "S3CRET-A", "S3CRET-B", "S3CRET-C", "S3CRET-D", "S3CRET-E", "S3CRET-F", NULL };

static void accept_rec(struct hdrscrub *h, uint64_t conn)
{
	struct msd_conn_rec r = { .hdr = { .kind = MSD_REC_CONN, .abi = MSD_ABI_VERSION, .size = sizeof(r), .tgid = TGID } };

	r.conn_id = conn;
	r.event = MSD_CONN_ACCEPT;
	assert_ptr_equal(hdrscrub_record(h, &r.hdr), &r.hdr);
}

/* Passes len bytes at stream offset off through h; the output is appended to out. */
static void pass(struct hdrscrub *h, uint64_t conn, uint8_t role, uint64_t off, const char *p, size_t len, char *out)
{
	struct msd_data_rec *d = calloc(1, sizeof(*d) + len);
	const struct msd_rec_hdr *r;

	d->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = (uint32_t)(sizeof(*d) + len),
				       .tgid = TGID };
	d->role = role;
	d->dir = MSD_DIR_READ;
	d->conn_id = conn;
	d->stream_off = off;
	d->cap_len = (uint32_t)len;
	memcpy(d->data, p, len);
	r = hdrscrub_record(h, &d->hdr);
	assert_non_null(r);
	assert_int_equal(r->size, d->hdr.size);
	memcpy(out, ((const struct msd_data_rec *)r)->data, len);
	free(d);
}

static void assert_no_secret(const char *out, size_t len)
{
	for (int i = 0; secrets[i]; i++)
		if (memmem(out, len, secrets[i], strlen(secrets[i])))
			fail_msg("%s survived in: %.*s", secrets[i], (int)len, out);
}

static void assert_has(const char *out, size_t len, const char *s)
{
	if (!memmem(out, len, s, strlen(s)))
		fail_msg("\"%s\" was blanked too: %.*s", s, (int)len, out);
}

static const char request[] = "POST /mcp?x=1 HTTP/1.1\r\n"
			      "Host: 127.0.0.1:3001\r\n"
			      "Authorization: Bearer S3CRET-A\r\n"
			      "cookie: a=S3CRET-B; b=c\r\n"
			      "X-Api-Key:S3CRET-C\r\n"
			      "Proxy-Authorization: Basic\r\n"
			      "\tS3CRET-D\r\n"
			      "Content-Type: application/json\r\n"
			      "Mcp-Session-Id: 1234\r\n"
			      "Transfer-Encoding: chunked\r\n"
			      "\r\n"
			      "1b\r\n{\"jsonrpc\":\"2.0\",\"id\":1}\r\n"
			      "0\r\n"
			      "X-Trailer-Secret: S3CRET-E\r\n"
			      "\r\n"
			      "HTTP/1.1 200 OK\r\nSet-Cookie: s=S3CRET-F\r\nContent-Length: 2\r\n\r\n{}";

/* Seen from its start, cut into two records at every byte, and one byte at a time. */
static void test_every_split(void **state)
{
	size_t len = sizeof(request) - 1;
	char out[sizeof(request)], whole[sizeof(request)];

	(void)state;
	for (size_t at = 0; at <= len; at++) {
		struct hdrscrub *h = hdrscrub_new();

		accept_rec(h, 1);
		if (at)
			pass(h, 1, MSD_ROLE_CONN, 0, request, at, out);
		if (at < len)
			pass(h, 1, MSD_ROLE_CONN, at, request + at, len - at, out + at);
		assert_no_secret(out, len);
		if (at == 0)
			memcpy(whole, out, len);
		else
			assert_memory_equal(out, whole, len);
		hdrscrub_free(h);
	}
	assert_has(whole, len, "Authorization:xxxxxxxxxxxxxxxx\r\n"); /* same length */
	assert_has(whole, len, "Host: 127.0.0.1:3001\r\n");
	assert_has(whole, len, "Content-Type: application/json\r\n");
	assert_has(whole, len, "Mcp-Session-Id: 1234\r\n");
	assert_has(whole, len, "{\"jsonrpc\":\"2.0\",\"id\":1}");
	assert_has(whole, len, "HTTP/1.1 200 OK\r\n");
	{
		struct hdrscrub *h = hdrscrub_new();
		struct hdrscrub_stats st;

		accept_rec(h, 1);
		for (size_t i = 0; i < len; i++)
			pass(h, 1, MSD_ROLE_CONN, i, request + i, 1, out + i);
		assert_memory_equal(out, whole, len);
		hdrscrub_stats(h, &st);
		assert_int_equal(st.values, 7); /* the folded line counts as its own */
		hdrscrub_free(h);
	}
}

/* Mid-stream (no accept seen) and after a gap, the first partial line may be the rest of a
 * secret value: blanked when it ends with CRLF, kept when it holds a message boundary or
 * is too long to be a header line. */
static void test_position_not_known(void **state)
{
	static const char tail[] = "T-A\r\nHost: h\r\nAuthorization: S3CRET-B\r\n\r\n";
	static const char boundary[] = "\"id\":5}HTTP/1.1 200 OK\r\nX-Token: S3CRET-C\r\n\r\n";
	static const char sse[] = "x\"}\n\nevent: message\n";
	char out[64 * 1024];
	char *body = malloc(HDRSCRUB_LINE_MAX + 100);
	struct hdrscrub *h = hdrscrub_new();

	(void)state;
	pass(h, 2, MSD_ROLE_CONN, 500, tail, sizeof(tail) - 1, out);
	assert_true(strncmp(out, "xxx\r\nHost: h\r\n", 14) == 0);
	assert_no_secret(out, sizeof(tail) - 1);

	/* a gap in the stream: the next record's first line is again not known */
	pass(h, 2, MSD_ROLE_CONN, 9000, boundary, sizeof(boundary) - 1, out);
	assert_has(out, sizeof(boundary) - 1, "\"id\":5}HTTP/1.1 200 OK\r\n");
	assert_no_secret(out, sizeof(boundary) - 1);

	pass(h, 3, MSD_ROLE_CONN, 70, sse, sizeof(sse) - 1, out);
	assert_memory_equal(out, sse, sizeof(sse) - 1); /* a bare LF: not a header line */

	/* a line longer than any header line: a body, kept */
	memset(body, 'b', HDRSCRUB_LINE_MAX + 10);
	memcpy(body + HDRSCRUB_LINE_MAX + 10, "}\r\n", 3);
	pass(h, 4, MSD_ROLE_CONN, 12345, body, HDRSCRUB_LINE_MAX + 13, out);
	assert_memory_equal(out, body, HDRSCRUB_LINE_MAX + 13);
	/* a short line with its end in the next record: blanked as it goes */
	pass(h, 5, MSD_ROLE_CONN, 1, "abcS3CRET", 9, out);
	pass(h, 5, MSD_ROLE_CONN, 10, "-D\r\nHost: h\r\n", 13, out + 9);
	assert_no_secret(out, 22);
	assert_has(out, 22, "Host: h\r\n");
	free(body);
	hdrscrub_free(h);
}

/* A record that comes behind its stream is scanned on its own; the stream goes on. */
static void test_out_of_order(void **state)
{
	static const char a[] = "GET / HTTP/1.1\r\nCookie: S3CRET-A\r\n", b[] = "Host: h\r\nX-Secret: S3CRET-B\r\n\r\n";
	char out[128];
	struct hdrscrub *h = hdrscrub_new();

	(void)state;
	accept_rec(h, 9);
	pass(h, 9, MSD_ROLE_CONN, sizeof(a) - 1, b, sizeof(b) - 1, out);
	assert_no_secret(out, sizeof(b) - 1);
	pass(h, 9, MSD_ROLE_CONN, 0, a, sizeof(a) - 1, out);
	assert_no_secret(out, sizeof(a) - 1);
	hdrscrub_free(h);
}

/* Only connections are touched: a secret-looking line on stdio is the pipeline's business. */
static void test_channels_untouched(void **state)
{
	static const char line[] = "Authorization: S3CRET-A\r\n";
	char out[64];
	struct hdrscrub *h = hdrscrub_new();

	(void)state;
	pass(h, 0, MSD_ROLE_IN, 0, line, sizeof(line) - 1, out);
	assert_memory_equal(out, line, sizeof(line) - 1);
	hdrscrub_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_split),
		cmocka_unit_test(test_position_not_known),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_channels_untouched),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

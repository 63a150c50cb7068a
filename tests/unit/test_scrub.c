/* test_scrub.c -- the scrubber: what it masks, what it must leave alone, the three modes,
 * and the secret flag on JSON-RPC messages. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mcpsonde/scrub.h"

static char *scrubbed(const char *in, unsigned *masked)
{
	size_t cap = SCRUB_OUT_MAX(strlen(in));
	char *out = malloc(cap);

	assert_non_null(out);
	scrub_text(REDACT_MASK, in, strlen(in), out, cap, masked);
	return out;
}

static void expect(const char *in, const char *want)
{
	unsigned masked;
	char *out = scrubbed(in, &masked);

	if (strcmp(out, want))
		fail_msg("scrub(%s)\n  got  %s\n  want %s", in, out, want);
	free(out);
}

/* Positives: every secret form named in scrub.h, in the context it shows up in. */
static void test_masks_secrets(void **state)
{
	(void)state;
	/* name=value, flags, JSON, headers */
	expect("internal failure (db password=hunter2)", "internal failure (db password=[REDACTED])");
	expect("node server.js --api-key=abc123def --port 3000", "node server.js --api-key=[REDACTED] --port 3000");
	expect("server --token s3cr3t-value --verbose", "server --token [REDACTED] --verbose");
	expect("{\"name\":\"login\",\"arguments\":{\"password\":\"hunter2\",\"user\":\"bob\"}}",
	       "{\"name\":\"login\",\"arguments\":{\"password\":\"[REDACTED]\",\"user\":\"bob\"}}");
	expect("{\"api_key\": \"k-1\", \"clientSecret\":\"x\"}", "{\"api_key\": \"[REDACTED]\", \"clientSecret\":\"[REDACTED]\"}");
	expect("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENG", "AWS_SECRET_ACCESS_KEY=[REDACTED]");
	expect("GITHUB_TOKEN='ghtoken' next", "GITHUB_TOKEN='[REDACTED]' next");
	expect("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9x.payload", "Authorization: [REDACTED]");
	expect("X-Api-Key: AbCd1234efgh", "X-Api-Key: [REDACTED]");
	expect("GET /v1/items?auth=1234&page=2", "GET /v1/items?auth=[REDACTED]&page=2");
	expect("Cookie: session=Ab12Cd34", "Cookie: [REDACTED]");
	/* credentials after a scheme word */
	expect("sent header bearer AbC123xYz789 to upstream", "sent header bearer [REDACTED] to upstream");
	/* well-known formats, anywhere */
	expect("key AKIAIOSFODNN7EXAMPLE in use", "key [REDACTED] in use");
	expect("using ghp_16C7e42F292c6912E7710c838347Ae178B4a now", "using [REDACTED] now");
	expect("slack xoxb-1234567890-abcdefghij ok", "slack [REDACTED] ok");
	expect("openai sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z7 done", "openai [REDACTED] done");
	expect("anthropic sk-ant-api03-AbCdEf0123456789AbCdEf0123456789 x", "anthropic [REDACTED] x");
	expect("google AIzaSyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW", "google [REDACTED]");
	expect("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [REDACTED]");
	expect("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
	       "jwt [REDACTED] end");
	expect("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1234\n-----END RSA PRIVATE KEY-----\nafter",
	       "-----BEGIN RSA PRIVATE KEY-----[REDACTED]\nafter");
	expect("connecting to postgres://app:hunter2@db:5432/prod", "connecting to postgres://app:[REDACTED]@db:5432/prod");
	/* random-looking tokens */
	expect("nonce wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY1 sent", "nonce [REDACTED] sent");
	expect("reading /run/secrets/q8ZfW2nLx7RtB4vKj9PmYc3HsD6gTa1E now",
	       "reading /run/secrets/[REDACTED] now");
	expect("key in /etc/app/AKIAIOSFODNN7EXAMPLE.txt", "key in /etc/app/[REDACTED].txt");
}

/* Negatives: ordinary diagnostics, ids and identifiers are never masked. */
static void test_leaves_ordinary_text(void **state)
{
	static const char *const plain[] = {
		"Starting default (STDIO) server...",
		"Failed to request roots from client undefined: MCP error -32601: Method not found",
		"The user's password: must be at least 8 characters",
		"token budget exceeded: 4096 tokens used, max_tokens=4096",
		"progressToken=42 nextCursor=abc pageToken=2",
		"{\"inputSchema\":{\"properties\":{\"password\":{\"type\":\"string\"}},\"required\":[\"password\"]}}",
		"request 550e8400-e29b-41d4-a716-446655440000 took 12 ms",
		"commit 2f3a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a merged",
		"/usr/lib/node_modules/@modelcontextprotocol/server-everything/dist/index.js stdio",
		"getUserAccountDetails2024 CreateUserAccountRequest2024V2 MyComponentProps12345Handler",
		"--password-file /etc/app/pw --token-env APP_TOKEN --secret-id prod/db",
		"authors: Ada Lovelace; keyboard: qwerty; monkey=banana; key=user:42",
		"basic usage: run with --help",
		"image iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
		"risk-assessment-report-2024-final-version-b",
		"password=null token=true",
		"at file:///tmp/mcpsonde-stderr-Ab3xY9/server.cjs:2:7",
		"/tmp/tmp-4127-Zq8Rw2Lk/run/AbCdEf12-GhIj34Kl.sock",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
		expect(plain[i], plain[i]);
}

static void test_modes_and_counts(void **state)
{
	const char *in = "password=a token=b fine";
	char out[128];
	unsigned masked;
	uint64_t before = scrub_masked_total();
	size_t len;

	(void)state;
	len = scrub_text(REDACT_MASK, in, strlen(in), out, sizeof(out), &masked);
	assert_int_equal(len, strlen(out));
	assert_string_equal(out, "password=[REDACTED] token=[REDACTED] fine");
	assert_int_equal(masked, 2);
	assert_int_equal(scrub_masked_total() - before, 2);
	scrub_text(REDACT_OFF, in, strlen(in), out, sizeof(out), &masked);
	assert_string_equal(out, in);
	assert_int_equal(masked, 0);
	scrub_text(REDACT_STRICT, in, strlen(in), out, sizeof(out), NULL);
	assert_string_equal(out, SCRUB_MARK);
	scrub_text(REDACT_STRICT, "", 0, out, sizeof(out), NULL);
	assert_string_equal(out, "");
	assert_int_equal(scrub_parse_mode("mask"), REDACT_MASK);
	assert_int_equal(scrub_parse_mode("strict"), REDACT_STRICT);
	assert_int_equal(scrub_parse_mode("off"), REDACT_OFF);
	assert_int_equal(scrub_parse_mode("lax"), -1);
}

/* A small output buffer cuts on a character boundary and never overflows. */
static void test_small_output(void **state)
{
	const char *in = "caf\xc3\xa9 password=hunter2 \xc3\xa9\xc3\xa9\xc3\xa9";
	char out[6];

	(void)state;
	scrub_text(REDACT_MASK, in, strlen(in), out, sizeof(out), NULL);
	assert_string_equal(out, "caf\xc3\xa9");
	scrub_text(REDACT_MASK, in, strlen(in), out, 5, NULL);
	assert_string_equal(out, "caf");
}

static void test_json_secret_flag(void **state)
{
	static const char *const secret[] = {
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"login\",\"arguments\":{\"password\":\"hunter2\"}}}",
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"your key is AKIAIOSFODNN7EXAMPLE\"}]}}",
		"{\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"DB_URL=postgres://u:pw123@h/db\"}]}}",
	};
	static const char *const clean[] = {
		"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"hi\"},\"_meta\":{\"progressToken\":1}}}",
		"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"tools\":[{\"name\":\"login\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"password\":{\"type\":\"string\"}}}}]}}",
		"{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"Echo: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]}}",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		assert_true(scrub_json_secret(secret[i], strlen(secret[i])));
	for (size_t i = 0; i < sizeof(clean) / sizeof(clean[0]); i++)
		assert_false(scrub_json_secret(clean[i], strlen(clean[i])));
}

/* Token runs: every byte value, at every position of a long run and on either side of the
 * vector blocks, ends a run exactly where the byte table says, on the AVX2 path and on the
 * portable one. */
static void test_token_runs(void **state)
{
	static const char token_bytes[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+/";
	char buf[160];

	(void)state;
	for (int avx2 = 0; avx2 < 2; avx2++) {
		scrub_use_avx2(avx2);
		for (int b = 0; b < 256; b++) {
			bool is_tok = b && strchr(token_bytes, b) != NULL;

			for (size_t at = 0; at < sizeof(buf); at++) {
				size_t want = is_tok ? sizeof(buf) : at;

				for (size_t i = 0; i < sizeof(buf); i++)
					buf[i] = token_bytes[(i * 7 + at) % (sizeof(token_bytes) - 1)];
				buf[at] = (char)b;
				if (scrub_token_len(buf, sizeof(buf)) != want)
					fail_msg("byte 0x%02x at %zu (avx2 %d): run %zu, want %zu", b, at, avx2,
						 scrub_token_len(buf, sizeof(buf)), want);
				/* The run also ends at the end of the input, whatever follows in memory. */
				if (scrub_token_len(buf, at) != at)
					fail_msg("run cut at %zu (avx2 %d): %zu", at, avx2, scrub_token_len(buf, at));
			}
		}
	}
	scrub_use_avx2(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_masks_secrets),
		cmocka_unit_test(test_leaves_ordinary_text),
		cmocka_unit_test(test_modes_and_counts),
		cmocka_unit_test(test_small_output),
		cmocka_unit_test(test_json_secret_flag),
		cmocka_unit_test(test_token_runs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

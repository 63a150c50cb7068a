/* scrub.h -- the one scrubber: free text leaves mcpsonde with its secret-looking values masked.
 *
 * Previews of invalid lines, error messages, stderr lines, resource URIs and command lines
 * are written by observed processes and are kept as diagnostics, in events, reports and
 * terminals. Each passes through scrub_text() once, where it enters the pipeline (session.c),
 * so every sink sees the same masked text. What is masked (the value becomes SCRUB_MARK):
 *   - the value of a name that says password, passphrase, secret, credential, token, an
 *     API/access/private/... key, auth or authorization, or cookie, in name=value,
 *     "name": "value", --name=value, --name value and Name: Value (header) forms;
 *   - Bearer and Basic credentials;
 *   - well-known key formats: AWS access key ids, GitHub, Slack, npm, OpenAI and
 *     Anthropic (sk-...), Stripe and Google API keys, JWTs, PEM private keys;
 *   - the password of a URL (scheme://user:password@host);
 *   - tokens of 20 to 256 characters that look random: upper and lower case and digits,
 *     changing class often, with high entropy.
 * Ordinary words, identifiers, paths, numbers, UUIDs, hex digests and ids are left alone.
 *
 * scrub_json_secret() reads a JSON-RPC message with the same rules and says only whether
 * it holds such a value: the flag a call carries when its arguments or result did.
 *
 * Cost: one pass, tokens found 32 bytes at a time with AVX2 (16 where the compiler has
 * vectors); names and formats are checked per token, entropy only for tokens of the right
 * length and mix. */
#ifndef MCPSONDE_SCRUB_H
#define MCPSONDE_SCRUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum redact_mode {
	REDACT_MASK,   /* default: secret-looking values masked */
	REDACT_STRICT, /* --redact strict: free text dropped whole */
	REDACT_OFF,    /* --capture-values, or --redact off: text as written */
};

#define SCRUB_MARK "[REDACTED]"
/* Room scrub_text needs for an input of n bytes never to cut its output. */
#define SCRUB_OUT_MAX(n) (3 * (n) + sizeof(SCRUB_MARK) + 16)

/* Writes s[0..n) to out (cap >= 1 bytes, NUL-terminated) as mode says; text longer than
 * cap - 1 is cut on a character boundary. Returns the bytes written; *masked (may be NULL)
 * gets the number of values masked, which are also added to scrub_masked_total(). */
size_t scrub_text(enum redact_mode mode, const char *s, size_t n, char *out, size_t cap, unsigned *masked);
/* scrub_text into a new string (malloc'd; NULL when out of memory). */
char *scrub_strdup(enum redact_mode mode, const char *s, size_t n);
/* Whether the text of a JSON-RPC message holds a secret-looking value. */
bool scrub_json_secret(const char *s, size_t n);
/* The same for one string of that text, whose contents run from start to its closing quote
 * at end: a key (followed by ':') naming a secret and given a value, or a value in which the
 * text rules find one. For a reader that finds the strings itself (rpc.c's skimmer): the
 * strings of a message, each judged once, say what scrub_json_secret says of it. */
bool scrub_json_string_secret(const char *s, size_t n, size_t start, size_t end);
/* Values masked by scrub_text since the process started (the pipeline thread's). */
uint64_t scrub_masked_total(void);
/* "mask", "strict", "off" -> mode; -1 for anything else. */
int scrub_parse_mode(const char *name);
/* For tests: the length of the run of token bytes (letters, digits, _ - + /) at s, and the
 * switch that makes it take its portable path, the one a CPU without AVX2 takes. */
size_t scrub_token_len(const char *s, size_t n);
void scrub_use_avx2(bool on);

#endif

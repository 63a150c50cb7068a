/* scrub.c -- masking secret-looking values in free text (scrub.h).
 *
 * One scanner serves both uses: it walks the text token by token (a token is a run of
 * letters, digits and _ - + /), decides for each token whether it names a secret, is one, or
 * opens a credential, and either writes the text with those values replaced by SCRUB_MARK
 * (out set) or stops at the first one (out NULL). Text between masks is copied in one piece
 * at the next mask or at the end. scrub_json_secret reads a message from string to string:
 * keys are checked as names, and each value string goes through the scanner.
 *
 * Names are compared after folding case and dropping everything but letters and digits, so
 * API_KEY, api-key, apiKey and --api-key are one name. A name must be followed by = or : (or
 * be a --flag followed by a value) to mask anything; after a bare "name:" (prose, headers) the
 * value must look like a secret itself, so "password: must be 8 characters" stays. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mcpsonde/scrub.h"
#include "mcpsonde/utf8.h"

#define NAME_MAX_LEN 64      /* a longer token is not a name */
#define ENTROPY_MIN_LEN 20
#define ENTROPY_MAX_LEN 256  /* longer runs are data (images, blobs), not keys */
#define CREDENTIAL_MIN_LEN 8 /* after Bearer / Basic */

static uint64_t scrub_masked;

/* Token bytes: letters, digits, _ - + / (base64 and base64url, paths, flags). */
static const unsigned char tok[256] = {
	['+'] = 1, ['-'] = 1, ['/'] = 1, ['_'] = 1,
	['0'] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['A'] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['a'] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

/* ASCII classes without the locale's tables: these run for every byte of every name. */
static inline bool ascii_lower(unsigned char c)
{
	return (unsigned)(c - 'a') < 26;
}

static inline bool ascii_upper(unsigned char c)
{
	return (unsigned)(c - 'A') < 26;
}

static inline bool ascii_digit(unsigned char c)
{
	return (unsigned)(c - '0') < 10;
}

/* Token bytes found 32 at a time with AVX2 (where the CPU has it), by nibble tables: a
 * byte's low nibble and its high nibble each pick a set of classes, and the byte is a token
 * byte when the two sets meet. Classes: 0 "+-/" (0x2B 0x2D 0x2F), 1 digits (0x30-0x39),
 * 2 letters of 0x41-0x4F and 0x61-0x6F, 3 letters of 0x50-0x5A and 0x70-0x7A, 4 '_' (0x5F).
 * A byte >= 0x80 has the high bit that makes the shuffle give 0: never a token byte.
 * Returns the index of the first byte that is not one, or where fewer than 32 bytes remain. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TOKEN_AVX2 1

__attribute__((target("avx2"))) static size_t token_run_avx2(const unsigned char *p, size_t n, size_t i)
{
#define LO_NIBBLES 0x0a, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0e, 0x0c, 0x05, 0x04, 0x05, 0x04, 0x15
#define HI_NIBBLES 0, 0, 0x01, 0x02, 0x04, 0x18, 0x04, 0x08, 0, 0, 0, 0, 0, 0, 0, 0
	const __m256i lo_sets = _mm256_setr_epi8(LO_NIBBLES, LO_NIBBLES),
		      hi_sets = _mm256_setr_epi8(HI_NIBBLES, HI_NIBBLES), nibble = _mm256_set1_epi8(0x0f),
		      zero = _mm256_setzero_si256();
#undef LO_NIBBLES
#undef HI_NIBBLES

	for (; i + 32 <= n; i += 32) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(p + i));
		__m256i lo = _mm256_shuffle_epi8(lo_sets, x);
		__m256i hi = _mm256_shuffle_epi8(hi_sets, _mm256_and_si256(_mm256_srli_epi16(x, 4), nibble));
		unsigned stop = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_and_si256(lo, hi), zero));

		if (stop)
			return i + (size_t)__builtin_ctz(stop);
	}
	return i;
}
#endif

static bool token_avx2 = true; /* switched off by tests, to run the portable path too */

void scrub_use_avx2(bool on)
{
	token_avx2 = on;
}

/* Length of the run of token bytes at p: most tokens are short words, looked at byte by
 * byte; past 16 bytes (long values, base64 blobs) 32 or 16 at a time. */
static size_t token_run(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n && i < 16 && tok[p[i]])
		i++;
	if (i < 16)
		return i;
#ifdef TOKEN_AVX2
	if (token_avx2 && __builtin_cpu_supports("avx2"))
		i = token_run_avx2(p, n, i);
	else
#endif
#if defined(__GNUC__)
	{
		typedef signed char v16 __attribute__((vector_size(16)));
		for (; i + 16 <= n; i += 16) {
			v16 x, l, ok;
			uint64_t h[2];

			memcpy(&x, p + i, 16);
			l = x | 0x20;
			ok = ((l >= 'a') & (l <= 'z')) | ((x >= '0') & (x <= '9')) | (x == '_') | (x == '-') |
			     (x == '+') | (x == '/');
			memcpy(h, &ok, 16);
			if ((h[0] & h[1]) != ~0ull)
				break;
		}
	}
#endif
	while (i < n && tok[p[i]])
		i++;
	return i;
}

size_t scrub_token_len(const char *s, size_t n)
{
	return token_run((const unsigned char *)s, n);
}

/* s ends with the literal suffix (compiled to a few compares). */
#define ENDS(s, n, lit) ((n) >= sizeof(lit) - 1 && !memcmp((s) + (n) - (sizeof(lit) - 1), lit, sizeof(lit) - 1))
#define AT(t, r, lit) ((r) >= sizeof(lit) - 1 && !memcmp(t, lit, sizeof(lit) - 1))

/* Names that end like a secret's but hold something else: where it is, what it is called,
 * how long it is, or a page and progress marker. */
static bool secret_name_excluded(const char *s, size_t n)
{
	return ENDS(s, n, "file") || ENDS(s, n, "path") || ENDS(s, n, "dir") || ENDS(s, n, "env") ||
	       ENDS(s, n, "name") || ENDS(s, n, "type") || ENDS(s, n, "length") || ENDS(s, n, "len") ||
	       ENDS(s, n, "count") || ENDS(s, n, "size") || ENDS(s, n, "url") || ENDS(s, n, "uri") ||
	       ENDS(s, n, "id") || ENDS(s, n, "ids") || ENDS(s, n, "progresstoken") || ENDS(s, n, "pagetoken") ||
	       ENDS(s, n, "nexttoken") || ENDS(s, n, "continuationtoken") || ENDS(s, n, "cancellationtoken") ||
	       ENDS(s, n, "synctoken") || ENDS(s, n, "maxtoken");
}

/* The members every JSON-RPC message and MCP result is made of: none names a secret. */
static bool common_key(const unsigned char *w, size_t len)
{
#define IS(lit) (len == sizeof(lit) - 1 && !memcmp(w, lit, sizeof(lit) - 1))
	switch (len) {
	case 2: return IS("id");
	case 4: return IS("name") || IS("type") || IS("text") || IS("code") || IS("data");
	case 6: return IS("method") || IS("params") || IS("result");
	case 7: return IS("jsonrpc") || IS("content") || IS("message") || IS("isError");
	case 9: return IS("arguments");
	}
	return false;
#undef IS
}

/* Whether a token names a secret: API_KEY, --api-key, apiKey, db.password, X-Auth-Token...
 * Every JSON key of every message comes here: the common case (no) is decided on the last
 * letter and one pass. */
static bool secret_name(const unsigned char *w, size_t len)
{
	char s[NAME_MAX_LEN];
	size_t n = 0;
	bool named = false;

	if (len > NAME_MAX_LEN || common_key(w, len))
		return false;
	for (size_t i = 0; i < len; i++)
		if (ascii_lower(w[i]) || ascii_digit(w[i]))
			s[n++] = (char)w[i];
		else if (ascii_upper(w[i]))
			s[n++] = (char)(w[i] | 0x20);
	if (n < 3)
		return false;
	switch (s[n - 1]) {
	case 'n': /* token, authorization */
		named = ENDS(s, n, "token") || ENDS(s, n, "authorization");
		break;
	case 'y': /* an API, access, private... key, but not any key */
		named = ENDS(s, n, "apikey") || ENDS(s, n, "accesskey") || ENDS(s, n, "privatekey") ||
			ENDS(s, n, "signingkey") || ENDS(s, n, "encryptionkey") || ENDS(s, n, "masterkey") ||
			ENDS(s, n, "authkey") || ENDS(s, n, "clientkey") || ENDS(s, n, "sessionkey") ||
			ENDS(s, n, "licensekey") || ENDS(s, n, "subscriptionkey") || ENDS(s, n, "sshkey");
		break;
	case 'h':
		named = ENDS(s, n, "auth");
		break;
	case 'e':
		named = ENDS(s, n, "cookie");
		break;
	case 's':
		named = n == 4 && !memcmp(s, "pass", 4);
		break;
	}
	for (size_t i = 0; !named && i + 6 <= n; i++) {
		const char *t = s + i;
		size_t r = n - i;
		named = (t[0] == 'p' && (AT(t, r, "passwd") || AT(t, r, "password") || AT(t, r, "passphrase"))) ||
			(t[0] == 's' && AT(t, r, "secret")) || (t[0] == 'c' && AT(t, r, "credential"));
	}
	return named && !secret_name_excluded(s, n);
}

/* A value after "name:" in prose or a header must look like a secret by itself: a digit, an
 * upper-case letter after the first, or a symbol. */
static bool looks_secret(const unsigned char *v, size_t n)
{
	if (n < 4)
		return false;
	for (size_t i = 0; i < n; i++)
		if (isdigit(v[i]) || (i && isupper(v[i])) || strchr("+/=_-.~!@#$%^&*", v[i]))
			return true;
	return false;
}

static size_t count_class(const unsigned char *p, size_t n, size_t from, int (*cls)(int))
{
	size_t i = from;

	while (i < n && cls(p[i]))
		i++;
	return i - from;
}

static int is_b64url(int c)
{
	return isalnum(c) || c == '_' || c == '-';
}

static int is_upper_digit(int c)
{
	return isupper(c) || isdigit(c);
}

static int is_slack(int c)
{
	return isalnum(c) || c == '-';
}

static bool has_digit(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (isdigit(p[i]))
			return true;
	return false;
}

/* The length of a well-known key format starting at p (n bytes of text), 0 when none. Key
 * bodies are random: one without a digit is a word that happens to share the prefix. */
static size_t known_format(const unsigned char *p, size_t n)
{
#define FORMAT(prefix, cls, min) { prefix, sizeof(prefix) - 1, cls, min }
	static const struct {
		const char *prefix;
		size_t k;
		int (*cls)(int);
		size_t min;   /* characters of cls after the prefix */
	} formats[] = { /* grouped by first letter: the switch below says where each group is */
		FORMAT("AKIA", is_upper_digit, 16), FORMAT("ASIA", is_upper_digit, 16), /* AWS access key ids */
		FORMAT("AIza", is_b64url, 30),                                       /* Google */
		FORMAT("ghp_", isalnum, 30), FORMAT("gho_", isalnum, 30), FORMAT("ghu_", isalnum, 30),
		FORMAT("ghs_", isalnum, 30), FORMAT("ghr_", isalnum, 30), FORMAT("github_pat_", is_b64url, 22),
		FORMAT("npm_", isalnum, 30),
		FORMAT("rk_live_", isalnum, 10), FORMAT("rk_test_", isalnum, 10),   /* Stripe */
		FORMAT("sk_live_", isalnum, 10), FORMAT("sk_test_", isalnum, 10),
		FORMAT("sk-", is_b64url, 32),                                        /* OpenAI, Anthropic */
		FORMAT("xoxb-", is_slack, 10), FORMAT("xoxp-", is_slack, 10), FORMAT("xoxa-", is_slack, 10),
		FORMAT("xoxr-", is_slack, 10), FORMAT("xoxs-", is_slack, 10), FORMAT("xapp-", is_slack, 10),
	};
#undef FORMAT
	_Static_assert(sizeof(formats) / sizeof(formats[0]) == 21, "the groups below index this table");
	size_t first, last; /* the formats starting with p[0] */

	if (n < 10)
		return 0;
	switch (p[0]) {
	case 'A': first = 0, last = 3; break;
	case 'e': first = last = 0; break;
	case 'g': first = 3, last = 9; break;
	case 'n': first = 9, last = 10; break;
	case 'r': first = 10, last = 12; break;
	case 's': first = 12, last = 15; break;
	case 'x': first = 15, last = 21; break;
	default: return 0;
	}
	if (!memcmp(p, "eyJ", 3)) { /* a JWT: three base64url parts, the first two JSON */
		size_t a = count_class(p, n, 0, is_b64url), b, c;
		if (a >= 10 && a < n && p[a] == '.') {
			b = count_class(p, n, a + 1, is_b64url);
			if (b >= 10 && a + 1 + b < n && p[a + 1 + b] == '.') {
				c = count_class(p, n, a + 2 + b, is_b64url);
				return a + 2 + b + c;
			}
		}
		return 0;
	}
	for (size_t i = first; i < last; i++) {
		size_t k = formats[i].k, body, j = 1;
		if (n < k + formats[i].min)
			continue;
		while (j < k && p[j] == (unsigned char)formats[i].prefix[j])
			j++;
		if (j < k)
			continue;
		body = count_class(p, n, k, formats[i].cls);
		if (body >= formats[i].min && has_digit(p + k, body))
			return k + body;
	}
	return 0;
}

/* 0 lower, 1 upper, 2 digit, 3 anything else. */
static const unsigned char char_classes[256] = {
	['0' ... '9'] = 2, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 0,
	[0 ... '0' - 1] = 3, ['9' + 1 ... 'A' - 1] = 3, ['Z' + 1 ... 'a' - 1] = 3, ['z' + 1 ... 255] = 3,
};

static inline int char_class(unsigned char c)
{
	return char_classes[c];
}

/* A token that looks random: both cases and digits, the class changing at least 40% of the
 * time (words and identifiers change rarely: getUserAccount2024), and at least 3.5 bits of
 * entropy per character. Data blobs announce themselves by their magic numbers. */
static bool high_entropy(const unsigned char *p, size_t n)
{
	static const char *const magic[] = { "iVBORw0KGgo", "/9j/", "R0lGOD", "UklGR", "JVBERi0", "H4sI", "UEsDB", NULL };
	unsigned counts[256], changes = 0, seen[4] = { 0 };
	double h = 0;
	size_t i;

	uint64_t head;

	if (n < ENTROPY_MIN_LEN || n > ENTROPY_MAX_LEN)
		return false;
	memcpy(&head, p, sizeof(head));
	if (head == p[0] * 0x0101010101010101ull) /* a run of one character (padding, xxxx) */
		return false;
	/* Cheap first: a random token changes class within its first characters already. */
	for (i = 1; i < ENTROPY_MIN_LEN; i++)
		changes += char_class(p[i]) != char_class(p[i - 1]);
	if (changes < 3)
		return false;
	for (; i < n; i++)
		changes += char_class(p[i]) != char_class(p[i - 1]);
	if (changes * 10 < (n - 1) * 4)
		return false;
	for (i = 0; i < n; i++)
		seen[char_class(p[i])]++;
	if (!seen[0] || !seen[1] || !seen[2])
		return false;
	for (const char *const *m = magic; *m; m++)
		if (n >= strlen(*m) && !memcmp(p, *m, strlen(*m)))
			return false;
	memset(counts, 0, sizeof(counts));
	for (i = 0; i < n; i++)
		counts[p[i]]++;
	for (size_t c = 0; c < 256; c++)
		if (counts[c])
			h -= (double)counts[c] / (double)n * log2((double)counts[c] / (double)n);
	return h >= 3.5;
}

struct scan {
	const unsigned char *p;
	size_t n;
	char *out; /* NULL: find the first secret only */
	size_t cap, w;
	size_t copied; /* input bytes up to here are written */
	bool full;     /* out was cut: nothing more is written */
	unsigned masked;
};

/* Writes input bytes [copied, upto), cut on a character boundary when out is full. */
static void scan_copy(struct scan *sc, size_t upto)
{
	size_t len = upto - sc->copied, room = sc->cap - 1 - sc->w;

	if (sc->out && !sc->full && len) {
		if (len > room) {
			len = utf8_cut((const char *)sc->p + sc->copied, len, room);
			sc->full = true;
		}
		memcpy(sc->out + sc->w, sc->p + sc->copied, len);
		sc->w += len;
	}
	sc->copied = upto;
}

/* Masks input bytes [from, to). */
static void scan_mask(struct scan *sc, size_t from, size_t to)
{
	scan_copy(sc, from);
	if (sc->out && !sc->full) {
		if (sc->cap - 1 - sc->w >= sizeof(SCRUB_MARK) - 1) {
			memcpy(sc->out + sc->w, SCRUB_MARK, sizeof(SCRUB_MARK) - 1);
			sc->w += sizeof(SCRUB_MARK) - 1;
		} else {
			sc->full = true;
		}
	}
	sc->copied = to;
	sc->masked++;
}

static size_t skip_blanks(const unsigned char *p, size_t n, size_t i)
{
	while (i < n && (p[i] == ' ' || p[i] == '\t'))
		i++;
	return i;
}

/* The credential after a Bearer or Basic at i (a token, base64 padding and . ~ included);
 * its end, or i when there is none that looks like one. */
static size_t credential_end(const unsigned char *p, size_t n, size_t i)
{
	size_t e = i;

	while (e < n && (tok[p[e]] || p[e] == '=' || p[e] == '.' || p[e] == '~'))
		e++;
	return e - i >= CREDENTIAL_MIN_LEN && looks_secret(p + i, e - i) ? e : i;
}

static bool is_scheme(const unsigned char *p, size_t n)
{
	return (n == 6 && !strncasecmp((const char *)p, "bearer", 6)) || (n == 5 && !strncasecmp((const char *)p, "basic", 5));
}

/* The value of a secret name ending at te: masked when there is one. Returns where the scan
 * goes on, te when nothing was masked. */
static size_t scan_named_value(struct scan *sc, size_t ts, size_t te)
{
	const unsigned char *p = sc->p;
	size_t n = sc->n, k = te, vs, ve;
	bool quoted_key = false, prose = false;

	if (k < n && (p[k] == '"' || p[k] == '\'')) {
		quoted_key = true;
		k++;
	} else if (k + 1 < n && p[k] == '\\' && p[k + 1] == '"') { /* JSON inside a JSON string */
		quoted_key = true;
		k += 2;
	}
	k = skip_blanks(p, n, k);
	if (k < n && (p[k] == '=' || p[k] == ':')) {
		prose = p[k] == ':' && !quoted_key;
		k = skip_blanks(p, n, k + 1);
	} else if (!(p[ts] == '-' && !quoted_key && te < n && p[te] == ' ')) {
		return te; /* no separator: not a name=value */
	}
	if (!secret_name(p + ts, te - ts))
		return te;
	if (k < n && (p[k] == '"' || p[k] == '\'')) { /* quoted: up to the closing quote */
		unsigned char q = p[k];
		vs = ve = k + 1;
		while (ve < n && p[ve] != q)
			ve += p[ve] == '\\' && ve + 1 < n ? 2 : 1;
		if (ve > vs)
			scan_mask(sc, vs, ve);
		return ve;
	}
	if (k + 1 < n && p[k] == '\\' && p[k + 1] == '"') { /* \"...\" inside a JSON string */
		const unsigned char *close = memmem(p + k + 2, n - k - 2, "\\\"", 2);
		vs = k + 2;
		ve = close ? (size_t)(close - p) : n;
		if (ve > vs)
			scan_mask(sc, vs, ve);
		return ve;
	}
	if (k < n && (p[k] == '{' || p[k] == '[' || (p[ts] == '-' && p[k] == '-')))
		return te; /* a structure, or the next flag */
	vs = ve = k;
	while (ve < n && !isspace(p[ve]) && !strchr(",;&)}]\"'<>", p[ve]))
		ve++;
	if (ve == vs || (ve - vs == 4 && (!memcmp(p + vs, "null", 4) || !memcmp(p + vs, "true", 4))) ||
	    (ve - vs == 5 && !memcmp(p + vs, "false", 5)))
		return te;
	if (is_scheme(p + vs, ve - vs) && ve < n && p[ve] == ' ') { /* Authorization: Bearer xyz */
		size_t ce = credential_end(p, n, skip_blanks(p, n, ve));
		if (ce > ve)
			ve = ce;
	} else if (prose && !looks_secret(p + vs, ve - vs)) {
		return te;
	}
	scan_mask(sc, vs, ve);
	return ve;
}

/* A PEM private key starting at ts: its body up to and with the END line is masked. */
static size_t scan_pem(struct scan *sc, size_t ts)
{
	const unsigned char *p = sc->p, *hdr, *end;
	size_t n = sc->n, body, stop;

	hdr = memmem(p + ts, n - ts < 80 ? n - ts : 80, "PRIVATE KEY-----", 16);
	if (!hdr)
		return ts;
	body = (size_t)(hdr - p) + 16;
	end = memmem(p + body, n - body, "-----END", 8);
	stop = n;
	if (end) {
		const unsigned char *close = memmem(end + 8, (size_t)(p + n - end - 8), "-----", 5);
		stop = close ? (size_t)(close - p) + 5 : n;
	}
	scan_mask(sc, body, stop);
	return stop;
}

/* scheme://user:password@host: the password, when there is one. */
static size_t scan_url(struct scan *sc, size_t colon)
{
	const unsigned char *p = sc->p;
	size_t n = sc->n, i = colon + 3, pw = 0;

	for (; i < n && !strchr("/?#@ \t\"'<>", p[i]); i++)
		if (p[i] == ':' && !pw)
			pw = i + 1;
	if (i < n && p[i] == '@' && pw && i > pw) {
		scan_mask(sc, pw, i);
		return i;
	}
	return colon + 1;
}

/* An absolute path is judged piece by piece (between / - _): a directory made by mkdtemp
 * (mcpsonde-stderr-Ab3xY9) is not a secret as a whole, but a key stored as a file name still is. */
static void scan_path(struct scan *sc, size_t ts, size_t te)
{
	const unsigned char *p = sc->p;
	size_t s = ts, len;

	for (size_t i = ts; i <= te; i++) {
		if (i < te && p[i] != '/' && p[i] != '-' && p[i] != '_')
			continue;
		if (i - s >= 10 && ((len = known_format(p + s, i - s)) || (high_entropy(p + s, i - s) && (len = i - s))))
			scan_mask(sc, s, s + len);
		s = i + 1;
	}
}

static void scan(struct scan *sc)
{
	const unsigned char *p = sc->p;
	size_t n = sc->n, i = 0;

	while (i < n && (sc->out || !sc->masked)) {
		size_t ts, te, tl, next, len;
		unsigned char after;

		if (!tok[p[i]]) {
			if (p[i] == ':' && i + 2 < n && p[i + 1] == '/' && p[i + 2] == '/')
				i = scan_url(sc, i);
			else
				i++;
			continue;
		}
		ts = i;
		te = ts + token_run(p + ts, n - ts);
		tl = te - ts;
		after = te < n ? p[te] : 0;
		i = te;
		/* What can follow a name: a separator, the quote closing a JSON key, a flag's space. */
		if (tl <= NAME_MAX_LEN && (after == '=' || after == ':' || after == '"' || after == '\'' ||
					   after == '\\' || after == ' ' || after == '\t') &&
		    (next = scan_named_value(sc, ts, te)) > te) {
			i = next;
			continue;
		}
		if ((tl == 5 || tl == 6) && after == ' ' && is_scheme(p + ts, tl)) { /* Bearer xyz */
			size_t cs = skip_blanks(p, n, te), ce = credential_end(p, n, cs);
			if (ce > cs) {
				scan_mask(sc, cs, ce);
				i = ce;
			}
			continue;
		}
		if (tl < 10)
			continue; /* shorter than any key format or random token */
		if (p[ts] == '-' && !memcmp(p + ts, "-----BEGIN", 10) && (next = scan_pem(sc, ts)) > ts) {
			i = next;
			continue;
		}
		if (p[ts] == '/') {
			scan_path(sc, ts, te);
			continue;
		}
		if ((len = known_format(p + ts, n - ts)) ||
		    (len = tl >= ENTROPY_MIN_LEN && tl <= ENTROPY_MAX_LEN && high_entropy(p + ts, tl) ? tl : 0)) {
			scan_mask(sc, ts, ts + len);
			i = ts + len;
		}
	}
}

size_t scrub_text(enum redact_mode mode, const char *s, size_t n, char *out, size_t cap, unsigned *masked)
{
	struct scan sc = { .p = (const unsigned char *)s, .n = n, .out = out, .cap = cap };
	size_t len;

	if (masked)
		*masked = 0;
	if (mode == REDACT_STRICT) {
		len = n ? utf8_cut(SCRUB_MARK, sizeof(SCRUB_MARK) - 1, cap - 1) : 0;
		memcpy(out, SCRUB_MARK, len);
		out[len] = '\0';
		return len;
	}
	if (mode == REDACT_MASK)
		scan(&sc);
	scan_copy(&sc, n);
	out[sc.w] = '\0';
	scrub_masked += sc.masked;
	if (masked)
		*masked = sc.masked;
	return sc.w;
}

char *scrub_strdup(enum redact_mode mode, const char *s, size_t n)
{
	char *out = malloc(SCRUB_OUT_MAX(n));

	if (out)
		scrub_text(mode, s, n, out, SCRUB_OUT_MAX(n), NULL);
	return out;
}

/* The end of the JSON string whose contents start at i: its closing quote, or n. */
static size_t json_string_end(const unsigned char *p, size_t n, size_t i)
{
	for (;;) {
		const unsigned char *q = memchr(p + i, '"', n - i);
		size_t k, b;

		if (!q)
			return n;
		k = b = (size_t)(q - p);
		while (b > i && p[b - 1] == '\\')
			b--;
		if ((k - b) % 2 == 0)
			return k;
		i = k + 1;
	}
}

/* A key naming a secret with a value, or a value string the text rules find a secret in. */
bool scrub_json_string_secret(const char *s, size_t n, size_t start, size_t end)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t k = end + 1;

	while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n'))
		k++;
	if (k < n && p[k] == ':') { /* a key */
		if (end - start <= NAME_MAX_LEN && secret_name(p + start, end - start)) {
			k++;
			while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n'))
				k++;
			if (k + 1 < n && ((p[k] == '"' && p[k + 1] != '"') || ascii_digit(p[k]) || p[k] == '-'))
				return true;
		}
	} else if (end - start >= 6) { /* a value: the text rules, inside it */
		struct scan sc = { .p = p + start, .n = end - start };
		scan(&sc);
		if (sc.masked)
			return true;
	}
	return false;
}

/* A JSON message is read string by string (memchr from quote to quote): structure, numbers
 * and literals between strings can hold no secret. */
bool scrub_json_secret(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n) {
		const unsigned char *q = memchr(p + i, '"', n - i);
		size_t start, end;

		if (!q)
			break;
		start = (size_t)(q - p) + 1;
		end = json_string_end(p, n, start);
		if (scrub_json_string_secret(s, n, start, end))
			return true;
		i = end + 1;
	}
	return false;
}

uint64_t scrub_masked_total(void)
{
	return scrub_masked;
}

int scrub_parse_mode(const char *name)
{
	if (!strcmp(name, "mask"))
		return REDACT_MASK;
	if (!strcmp(name, "strict"))
		return REDACT_STRICT;
	if (!strcmp(name, "off"))
		return REDACT_OFF;
	return -1;
}

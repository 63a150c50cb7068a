/* jsonw.c -- output buffers and the JSON encoder (jsonw.h).
 *
 * Strings are copied in runs of bytes that need no escape (a table lookup per byte); only
 * the bytes after a run are looked at closely. Numbers are formatted without printf where
 * the result is known to be exact (integers, millisecond durations); reals fall back to
 * jansson's own method, "%.15g" and its fix-ups, so both agree on every value. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpsonde/jsonw.h"
#include "mcpsonde/utf8.h"

/* ---- output buffers ---- */

bool outbuf_grow(struct outbuf *b, size_t n)
{
	size_t cap;
	char *nd;

	if (b->failed)
		return false;
	cap = b->cap ? b->cap : 4096;
	while (cap - b->len < n) {
		if (cap > SIZE_MAX / 2) {
			b->failed = true;
			return false;
		}
		cap *= 2;
	}
	nd = realloc(b->data, cap);
	if (!nd) {
		b->failed = true;
		return false;
	}
	b->data = nd;
	b->cap = cap;
	return true;
}

void outbuf_printf(struct outbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (!outbuf_reserve(b, 256))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= b->cap - b->len) {
		if (!outbuf_reserve(b, (size_t)n + 1))
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

void outbuf_put_safe(struct outbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0, need;

	if (!n || !outbuf_reserve(b, n + 1))
		return;
	need = utf8_escape_controls(s, n, b->data + b->len, b->cap - b->len);
	if (need >= b->cap - b->len) {
		if (!outbuf_reserve(b, need + 1))
			return;
		utf8_escape_controls(s, n, b->data + b->len, b->cap - b->len);
	}
	b->len += need;
}

int outbuf_flush(struct outbuf *b, FILE *f)
{
	int fd = fileno(f), rc = 0;
	size_t off = 0;

	if (b->failed) {
		b->len = 0;
		b->failed = false;
		return -1;
	}
	if (!b->len)
		return 0;
	if (fd < 0) { /* a memory stream: no descriptor */
		if (fwrite(b->data, 1, b->len, f) != b->len || fflush(f) != 0)
			rc = -1;
		b->len = 0;
		return rc;
	}
	if (fflush(f) != 0) /* whatever stdio holds goes first */
		rc = -1;
	while (off < b->len) {
		ssize_t n = write(fd, b->data + off, b->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = -1;
			break;
		}
		off += (size_t)n;
	}
	b->len = 0;
	return rc;
}

void outbuf_free(struct outbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---- the encoder ---- */

/* 1: copied as it is inside a JSON string; 0: escaped, or the start of a UTF-8 sequence. */
static const unsigned char json_plain[256] = {
	[0x20] = 1, 1, 0 /* " */, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x30] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x40] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x50] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 /* \ */, 1, 1, 1,
	[0x60] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	[0x70] = 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0 /* DEL */,
};

static const char hexu[] = "0123456789ABCDEF";

void jsonw_begin(struct jsonw *w, struct outbuf *out)
{
	w->out = out;
	w->comma = false;
}

static void jsonw_sep(struct jsonw *w)
{
	if (w->comma)
		outbuf_putc(w->out, ',');
	w->comma = true;
}

void jsonw_object_open(struct jsonw *w)
{
	jsonw_sep(w);
	outbuf_putc(w->out, '{');
	w->comma = false;
}

void jsonw_object_close(struct jsonw *w)
{
	outbuf_putc(w->out, '}');
	w->comma = true;
}

void jsonw_array_open(struct jsonw *w)
{
	jsonw_sep(w);
	outbuf_putc(w->out, '[');
	w->comma = false;
}

void jsonw_array_close(struct jsonw *w)
{
	outbuf_putc(w->out, ']');
	w->comma = true;
}

/* One byte (or sequence) that is not plain: its escape, U+FFFD, or the valid sequence. */
static size_t json_escape_at(struct outbuf *o, const unsigned char *p, size_t n)
{
	char esc[6] = { '\\', 'u', '0', '0', 0, 0 };
	uint32_t cp;
	size_t len;

	if (p[0] < 0x80) {
		const char *named = NULL;
		switch (p[0]) {
		case '"': named = "\\\""; break;
		case '\\': named = "\\\\"; break;
		case '\b': named = "\\b"; break;
		case '\f': named = "\\f"; break;
		case '\n': named = "\\n"; break;
		case '\r': named = "\\r"; break;
		case '\t': named = "\\t"; break;
		}
		if (named) {
			outbuf_put(o, named, 2);
		} else {
			esc[4] = hexu[p[0] >> 4];
			esc[5] = hexu[p[0] & 15];
			outbuf_put(o, esc, 6);
		}
		return 1;
	}
	len = utf8_seq_len(p, n, &cp);
	if (!len) {
		outbuf_put(o, UTF8_REPLACEMENT, 3);
		return 1;
	}
	if (utf8_is_layout_control(cp)) { /* C1 controls, separators, bidi overrides */
		for (int k = 0; k < 4; k++)
			esc[2 + k] = hexu[(cp >> (12 - 4 * k)) & 15];
		outbuf_put(o, esc, 6);
	} else {
		outbuf_put(o, p, len);
	}
	return len;
}

/* Whether any of 8 bytes needs a look: below 0x20, '"', '\\', DEL, or non-ASCII. */
static inline bool json_word_special(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	uint64_t quote = x ^ (ones * '"'), bslash = x ^ (ones * '\\'), del = x ^ (ones * 0x7f);

	return (((x - ones * 0x20) | (quote - ones) | (bslash - ones) | (del - ones) | x) & high) != 0;
}

static void json_put_string(struct outbuf *o, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	if (!outbuf_reserve(o, n + 2))
		return;
	o->data[o->len++] = '"';
	while (i < n) {
		size_t j = i;
		for (uint64_t x; j + 8 <= n && (memcpy(&x, p + j, 8), !json_word_special(x));)
			j += 8;
		while (j < n && json_plain[p[j]])
			j++;
		if (j > i) {
			outbuf_put(o, p + i, j - i);
			i = j;
		}
		if (i < n)
			i += json_escape_at(o, p + i, n - i);
	}
	outbuf_putc(o, '"');
}

void jsonw_stringn(struct jsonw *w, const char *s, size_t n)
{
	jsonw_sep(w);
	json_put_string(w->out, s, n);
}

void jsonw_string(struct jsonw *w, const char *s)
{
	if (!s)
		jsonw_null(w);
	else
		jsonw_stringn(w, s, strlen(s));
}

/* Decimal digits of v, written backwards ending at end; returns the first. */
static char *u64_digits(uint64_t v, char *end)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

void jsonw_int(struct jsonw *w, long long v)
{
	char buf[24], *end = buf + sizeof(buf), *p;

	jsonw_sep(w);
	p = u64_digits(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, end);
	if (v < 0)
		*--p = '-';
	outbuf_put(w->out, p, (size_t)(end - p));
}

/* jansson's real formatting: "%.15g", ".0" when it reads as an integer, and an exponent
 * without '+' or leading zeros. */
void jsonw_real(struct jsonw *w, double v)
{
	char buf[40], *e;
	int n;

	if (!isfinite(v)) {
		jsonw_null(w);
		return;
	}
	jsonw_sep(w);
	n = snprintf(buf, sizeof(buf), "%.15g", v);
	if (n < 0 || (size_t)n >= sizeof(buf) - 3)
		return;
	if (!strchr(buf, '.') && !strchr(buf, 'e')) {
		memcpy(buf + n, ".0", 3);
		n += 2;
	}
	if ((e = strchr(buf, 'e'))) {
		char *start = e + 1, *end = start + 1;
		if (*start == '-')
			start++;
		while (*end == '0')
			end++;
		if (end != start) {
			memmove(start, end, (size_t)(buf + n - end) + 1);
			n -= (int)(end - start);
		}
	}
	outbuf_put(w->out, buf, (size_t)n);
}

/* Below this, ns / 1000 rounded is exact in integers and its decimal form has few enough
 * digits that "%.15g" of the millisecond double prints exactly that decimal: the fast path
 * gives jansson's bytes (the unit test compares them). */
#define JSONW_MS_EXACT_NS 4000000000000ull

void jsonw_ms(struct jsonw *w, uint64_t ns)
{
	char buf[32], *end = buf + sizeof(buf), *p;
	uint64_t us, frac;

	if (ns >= JSONW_MS_EXACT_NS) {
		jsonw_real(w, round((double)ns / 1000.0) / 1000.0);
		return;
	}
	jsonw_sep(w);
	us = (ns + 500) / 1000;
	frac = us % 1000;
	p = end;
	if (!frac) {
		*--p = '0';
	} else {
		int digits = 3;
		while (frac % 10 == 0)
			frac /= 10, digits--;
		while (digits--) {
			*--p = (char)('0' + frac % 10);
			frac /= 10;
		}
	}
	*--p = '.';
	p = u64_digits(us / 1000, p);
	outbuf_put(w->out, p, (size_t)(end - p));
}

void jsonw_bool(struct jsonw *w, bool v)
{
	jsonw_sep(w);
	outbuf_put(w->out, v ? "true" : "false", v ? 4 : 5);
}

void jsonw_null(struct jsonw *w)
{
	jsonw_sep(w);
	outbuf_put(w->out, "null", 4);
}

void jsonw_raw(struct jsonw *w, const char *json, size_t n)
{
	jsonw_sep(w);
	outbuf_put(w->out, json, n);
}

/* Parsed values nest at most as deep as jansson's parser allows (2048): recursion is bounded. */
void jsonw_value(struct jsonw *w, const json_t *v)
{
	const char *key;
	json_t *item;
	size_t i;

	switch (v ? json_typeof(v) : JSON_NULL) {
	case JSON_OBJECT:
		jsonw_object_open(w);
		json_object_foreach ((json_t *)v, key, item) {
			jsonw_sep(w);
			json_put_string(w->out, key, strlen(key));
			outbuf_putc(w->out, ':');
			w->comma = false;
			jsonw_value(w, item);
		}
		jsonw_object_close(w);
		break;
	case JSON_ARRAY:
		jsonw_array_open(w);
		json_array_foreach (v, i, item)
			jsonw_value(w, item);
		jsonw_array_close(w);
		break;
	case JSON_STRING:
		jsonw_stringn(w, json_string_value(v), json_string_length(v));
		break;
	case JSON_INTEGER:
		jsonw_int(w, json_integer_value(v));
		break;
	case JSON_REAL:
		jsonw_real(w, json_real_value(v));
		break;
	case JSON_TRUE:
	case JSON_FALSE:
		jsonw_bool(w, json_is_true(v));
		break;
	case JSON_NULL:
		jsonw_null(w);
		break;
	}
}

void jsonw_member_str(struct jsonw *w, const char *key, const char *s)
{
	if (!s)
		return;
	jsonw_key(w, key);
	jsonw_string(w, s);
}

void jsonw_member_int(struct jsonw *w, const char *key, long long v)
{
	jsonw_key(w, key);
	jsonw_int(w, v);
}

void jsonw_member_bool(struct jsonw *w, const char *key, bool v)
{
	jsonw_key(w, key);
	jsonw_bool(w, v);
}

void jsonw_member_ms(struct jsonw *w, const char *key, uint64_t ns)
{
	jsonw_key(w, key);
	jsonw_ms(w, ns);
}

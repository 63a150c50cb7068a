/* jsonw.h -- mcpsonde's JSON encoder: members written straight into a growable buffer.
 *
 * struct outbuf is the byte buffer every output sink writes into and empties once per drain
 * (outbuf_flush), so that a burst of events costs one write(). struct jsonw writes JSON
 * text into one: the event renderer (event_render), the JSONL sink, the flight recorder and
 * the reports all go through it, so the wire format has one encoder.
 *
 * Output is byte for byte what jansson's json_dumpb(JSON_COMPACT | JSON_REAL_PRECISION(15))
 * writes for the same values, with two differences that make it total: a string that is not
 * valid UTF-8 is written with each invalid byte replaced by U+FFFD (jansson refuses such a
 * string, and the member silently disappears), and DEL, the C1 controls, the line and
 * paragraph separators and the bidirectional overrides are escaped (\u007F, \u009B,
 * \u202E...) like the C0 controls, so that JSONL shown on a terminal stays inert.
 *
 * Invariants: whatever the input bytes, what is written is valid UTF-8 and, once every
 * opened container is closed, valid JSON. Keys given to jsonw_key and the jsonw_member_*
 * helpers are literals of plain ASCII, written as they are. An allocation failure marks the
 * buffer failed: writes stop, and outbuf_flush drops the incomplete text instead of
 * writing it. */
#ifndef MCPSONDE_JSONW_H
#define MCPSONDE_JSONW_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct outbuf {
	char *data;
	size_t len, cap;
	bool failed; /* an allocation failed since the last flush */
};

#define OUTBUF_FLUSH_BYTES (64u << 10) /* sinks write out before their buffer passes this */

/* Grows b for n more bytes; false (and failed set) when it cannot. */
bool outbuf_grow(struct outbuf *b, size_t n);

/* Room for n more bytes; false when the buffer cannot grow. */
static inline bool outbuf_reserve(struct outbuf *b, size_t n)
{
	return b->cap - b->len >= n || outbuf_grow(b, n);
}

static inline void outbuf_put(struct outbuf *b, const void *p, size_t n)
{
	if (!outbuf_reserve(b, n))
		return;
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static inline void outbuf_puts(struct outbuf *b, const char *s)
{
	outbuf_put(b, s, strlen(s));
}

static inline void outbuf_putc(struct outbuf *b, char c)
{
	if (!outbuf_reserve(b, 1))
		return;
	b->data[b->len++] = c;
}

void outbuf_printf(struct outbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* s with terminal controls escaped (utf8_escape_controls); nothing for NULL. */
void outbuf_put_safe(struct outbuf *b, const char *s);
/* Writes the buffer to f (one write() when f has a descriptor) and empties it. A failed
 * buffer is emptied without writing. Returns -1 when writing failed. */
int outbuf_flush(struct outbuf *b, FILE *f);
void outbuf_free(struct outbuf *b);

struct jsonw {
	struct outbuf *out;
	bool comma; /* a member or element precedes: the next one needs a comma */
};

/* Starts a JSON text at the end of out. */
void jsonw_begin(struct jsonw *w, struct outbuf *out);
void jsonw_object_open(struct jsonw *w);
void jsonw_object_close(struct jsonw *w);
void jsonw_array_open(struct jsonw *w);
void jsonw_array_close(struct jsonw *w);
/* The key of the next member: a plain ASCII literal. */
static inline void jsonw_key(struct jsonw *w, const char *key)
{
	size_t n = strlen(key);
	char *p;

	if (!outbuf_reserve(w->out, n + 4))
		return;
	p = w->out->data + w->out->len;
	if (w->comma)
		*p++ = ',';
	*p++ = '"';
	memcpy(p, key, n);
	p += n;
	*p++ = '"';
	*p++ = ':';
	w->out->len = (size_t)(p - w->out->data);
	w->comma = false;
}

/* Values (elements of an array, or after jsonw_key). */
void jsonw_string(struct jsonw *w, const char *s);           /* NULL: null */
void jsonw_stringn(struct jsonw *w, const char *s, size_t n); /* any bytes, NULs included */
void jsonw_int(struct jsonw *w, long long v);
void jsonw_real(struct jsonw *w, double v);                   /* NaN and infinities: null */
/* Milliseconds with microsecond precision, from nanoseconds: 0.493, 3.0, 1003.716. */
void jsonw_ms(struct jsonw *w, uint64_t ns);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);
/* A jansson value, as json_dumpb would write it (NULL: null). */
void jsonw_value(struct jsonw *w, const json_t *v);
/* Text that is already one JSON value, written as it is. */
void jsonw_raw(struct jsonw *w, const char *json, size_t n);

/* Members: key and value. jsonw_member_str writes nothing for NULL. */
void jsonw_member_str(struct jsonw *w, const char *key, const char *s);
void jsonw_member_int(struct jsonw *w, const char *key, long long v);
void jsonw_member_bool(struct jsonw *w, const char *key, bool v);
void jsonw_member_ms(struct jsonw *w, const char *key, uint64_t ns);

#endif

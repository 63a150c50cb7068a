/* hdrscrub.c -- secret HTTP header values blanked in connection records (see hdrscrub.h).
 *
 * One scanner per (process, connection, direction), fed the records of that stream in
 * offset order: a small state machine over line starts, header names and values. A record
 * that does not start where the stream left off (a gap, a cut, a record out of order, a
 * stream never seen from its start) puts the scanner in the state "position not known" for
 * its first partial line. A record that arrives behind its stream is scanned on its own,
 * from a position not known, and leaves the stream's scanner as it was. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/hdrscrub.h"
#include "mcpsonde/http.h"

enum hs_state {
	HS_LINE_START, /* the next byte starts a line */
	HS_NAME,       /* in a token at a line start: maybe a header name */
	HS_VALUE,      /* in a secret value: blanked */
	HS_VALUE_CR,   /* a secret value's CR: an LF ends the line */
	HS_AFTER,      /* after a secret value's line: a space or tab folds it on */
	HS_SKIP,       /* in a line that is not a secret header: up to its LF */
	HS_UNSURE,     /* position not known: the partial line may be the rest of a secret */
};

struct hs_scan {
	uint8_t state;
	uint8_t name_len;
	bool name_cut;
	bool unsure_cr;    /* HS_UNSURE: the last byte scanned was a CR */
	uint32_t unsure_len; /* HS_UNSURE: bytes of the partial line scanned so far */
	char name[HTTP_NAME_MAX];
};

struct hs_key {
	uint64_t conn_id;
	uint32_t tgid;
	uint32_t dir;
};

struct hs_stream {
	struct hs_key key;
	uint64_t next_off;
	struct hs_scan scan;
	UT_hash_handle hh; /* insertion order: the oldest is forgotten first */
};

struct hdrscrub {
	struct hs_stream *streams;
	unsigned nstreams;
	char *copy; /* the scrubbed record */
	size_t copy_cap;
	struct hdrscrub_stats stats;
};

/* The record being scanned, copied before its first byte is blanked. */
struct hs_out {
	struct hdrscrub *h;
	const struct msd_rec_hdr *rec;
	char *data; /* the copy's payload, NULL until copied */
	size_t base; /* offset of the scanned bytes in the payload */
};

struct hdrscrub *hdrscrub_new(void)
{
	return calloc(1, sizeof(struct hdrscrub));
}

void hdrscrub_free(struct hdrscrub *h)
{
	struct hs_stream *st, *tmp;

	if (!h)
		return;
	HASH_ITER(hh, h->streams, st, tmp) {
		HASH_DEL(h->streams, st);
		free(st);
	}
	free(h->copy);
	free(h);
}

void hdrscrub_stats(const struct hdrscrub *h, struct hdrscrub_stats *out)
{
	*out = h->stats;
}

/* Overwrites [i, j) of the scanned bytes with 'x', line ends excepted. Returns false when
 * there is no memory for the copy: the caller drops the record rather than pass a secret. */
static bool hs_blank(struct hs_out *o, const char *p, size_t i, size_t j)
{
	struct hdrscrub *h = o->h;

	if (i >= j)
		return true;
	if (!o->data) {
		size_t size = o->rec->size;

		if (size > h->copy_cap) {
			char *n = realloc(h->copy, size);
			if (!n)
				return false;
			h->copy = n;
			h->copy_cap = size;
		}
		memcpy(h->copy, o->rec, size);
		o->data = h->copy + sizeof(struct msd_data_rec);
	}
	for (size_t k = i; k < j; k++) {
		if (p[k] != '\r' && p[k] != '\n') {
			o->data[o->base + k] = 'x';
			h->stats.bytes++;
		}
	}
	return true;
}

/* RFC 9110 token characters: what a header name is made of. */
static bool is_tchar(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* The partial line at p[i..) when the position is not known: see hdrscrub.h. Returns where
 * the scan goes on. */
static size_t hs_unsure(struct hs_scan *sc, struct hs_out *o, const char *p, size_t i, size_t n, bool *ok)
{
	const char *nl = memchr(p + i, '\n', n - i);
	size_t end = nl ? (size_t)(nl - p) : n, len = end - i;
	uint64_t total = sc->unsure_len + len;
	bool boundary = memmem(p + i, len, "HTTP/1.", 7) != NULL;

	if (nl) {
		bool crlf = len ? p[end - 1] == '\r' : sc->unsure_cr;

		if (total <= HDRSCRUB_LINE_MAX && !boundary && crlf)
			*ok = hs_blank(o, p, i, end);
		sc->state = HS_LINE_START;
		return end + 1;
	}
	if (total > HDRSCRUB_LINE_MAX || boundary) {
		sc->state = HS_SKIP;
		return n;
	}
	*ok = hs_blank(o, p, i, n);
	sc->unsure_len = (uint32_t)total;
	sc->unsure_cr = p[n - 1] == '\r';
	return n;
}

static void hs_value_begin(struct hs_scan *sc, struct hs_out *o)
{
	sc->state = HS_VALUE;
	o->h->stats.values++;
}

/* Scans p[0..n), blanking secret values through o. Returns false when a blank could not
 * be made. */
static bool hs_scan(struct hs_scan *sc, struct hs_out *o, const char *p, size_t n)
{
	size_t i = 0;
	bool ok = true;

	while (i < n && ok) {
		unsigned char c = (unsigned char)p[i];
		const char *nl;
		size_t j;

		switch (sc->state) {
		case HS_UNSURE:
			i = hs_unsure(sc, o, p, i, n, &ok);
			break;
		case HS_SKIP:
			if (!(nl = memchr(p + i, '\n', n - i)))
				return true;
			i = (size_t)(nl - p) + 1;
			sc->state = HS_LINE_START;
			break;
		case HS_VALUE:
			for (j = i; j < n && p[j] != '\r' && p[j] != '\n'; j++)
				;
			ok = hs_blank(o, p, i, j);
			if (j < n)
				sc->state = p[j] == '\r' ? HS_VALUE_CR : HS_AFTER;
			i = j < n ? j + 1 : n;
			break;
		case HS_VALUE_CR: /* a CR alone inside a value is still the value */
			sc->state = c == '\n' ? HS_AFTER : HS_VALUE;
			i += c == '\n';
			break;
		case HS_AFTER:
			if (c == ' ' || c == '\t')
				hs_value_begin(sc, o);
			else
				sc->state = HS_LINE_START;
			break;
		case HS_LINE_START:
			if (is_tchar(c)) {
				sc->state = HS_NAME;
				sc->name_len = 0;
				sc->name_cut = false;
				break;
			}
			sc->state = c == '\n' || c == '\r' ? HS_LINE_START : HS_SKIP;
			i++;
			break;
		case HS_NAME:
			i++;
			if (is_tchar(c)) {
				if (sc->name_len < sizeof(sc->name))
					sc->name[sc->name_len++] = (char)tolower(c);
				else
					sc->name_cut = true;
			} else if (c == ':' && http_header_secret(sc->name, sc->name_len, sc->name_cut)) {
				hs_value_begin(sc, o);
			} else {
				sc->state = c == '\n' ? HS_LINE_START : HS_SKIP;
			}
			break;
		}
	}
	return ok;
}

static void hs_forget(struct hdrscrub *h, struct hs_stream *st)
{
	HASH_DEL(h->streams, st);
	h->nstreams--;
	free(st);
}

static struct hs_stream *hs_stream_get(struct hdrscrub *h, const struct hs_key *key, bool from_start)
{
	struct hs_stream *st;

	HASH_FIND(hh, h->streams, key, sizeof(*key), st);
	if (st && !from_start)
		return st;
	if (st) {
		hs_forget(h, st);
	} else if (h->nstreams >= HDRSCRUB_STREAMS_MAX) {
		hs_forget(h, h->streams);
		h->stats.forgotten++;
	}
	if (!(st = calloc(1, sizeof(*st))))
		return NULL;
	st->key = *key;
	st->scan.state = from_start ? HS_LINE_START : HS_UNSURE;
	HASH_ADD(hh, h->streams, key, sizeof(st->key), st);
	h->nstreams++;
	return st;
}

static void hs_on_conn(struct hdrscrub *h, const struct msd_conn_rec *r)
{
	for (uint32_t dir = 0; dir < 2; dir++) {
		struct hs_key key = { .conn_id = r->conn_id, .tgid = r->hdr.tgid, .dir = dir };
		struct hs_stream *st;

		if (r->event == MSD_CONN_ACCEPT || r->event == MSD_CONN_CONNECT) {
			hs_stream_get(h, &key, true);
		} else if (r->event == MSD_CONN_CLOSE) {
			HASH_FIND(hh, h->streams, &key, sizeof(key), st);
			if (st)
				hs_forget(h, st);
		}
	}
}

/* Returns false when the record must not go on (a blank could not be made). */
static bool hs_on_data(struct hdrscrub *h, const struct msd_data_rec *d, struct hs_out *o)
{
	struct hs_key key = { .conn_id = d->conn_id, .tgid = d->hdr.tgid, .dir = d->dir & 1 };
	struct hs_stream *st = hs_stream_get(h, &key, false);
	struct hs_scan alone = { .state = HS_UNSURE };
	struct hs_scan *sc = &alone;

	if (!st) /* no memory for its state: scanned as if its position were not known */
		return hs_scan(sc, o, (const char *)d->data, d->cap_len);
	if (d->stream_off >= st->next_off) {
		if (d->stream_off > st->next_off && st->scan.state != HS_UNSURE) {
			st->scan.state = HS_UNSURE;
			st->scan.unsure_len = 0;
			st->scan.unsure_cr = false;
		}
		sc = &st->scan;
		st->next_off = d->stream_off + d->cap_len;
	}
	if (sc->state == HS_UNSURE)
		h->stats.unsure++;
	return hs_scan(sc, o, (const char *)d->data, d->cap_len);
}

const struct msd_rec_hdr *hdrscrub_record(struct hdrscrub *h, const struct msd_rec_hdr *rec)
{
	const struct msd_data_rec *d = (const struct msd_data_rec *)rec;
	struct hs_out o = { .h = h, .rec = rec };

	if (rec->kind == MSD_REC_CONN && rec->size >= sizeof(struct msd_conn_rec)) {
		hs_on_conn(h, (const struct msd_conn_rec *)rec);
		return rec;
	}
	if (rec->kind != MSD_REC_DATA || rec->size < sizeof(*d) || d->role != MSD_ROLE_CONN || !d->cap_len ||
	    rec->size < sizeof(*d) + d->cap_len)
		return rec;
	if (!hs_on_data(h, d, &o))
		return NULL;
	return o.data ? (const struct msd_rec_hdr *)h->copy : rec;
}

/* sse.h -- Server-Sent Events: the text/event-stream format (WHATWG HTML, "event stream
 * interpretation"), parsed as a stream.
 *
 * Lines end with CRLF, LF or CR; a CRLF split across two chunks is one line end. A line
 * "name: value" (one leading space of the value dropped; no colon: the whole line is the
 * name, the value empty) sets event, data, id or retry; other names are ignored; a line
 * starting with ":" is a comment (a keepalive); an empty line ends an event. One leading
 * UTF-8 BOM is skipped.
 *
 * Invariants:
 * - The data of an event is never held here: it is handed to on_data as it arrives, data
 *   lines joined by the "\n" pieces this parser inserts between them, so an event of any
 *   size costs the caller's buffer only.
 * - Everything else is bounded: event types over SSE_TYPE_MAX and ids over SSE_ID_MAX bytes
 *   are cut (counted), field names are matched on SSE_FIELD_MAX bytes.
 * - on_event is called for every block of lines that had a field line, also without data
 *   (its id still counts, as for a browser); per the spec, an event is dispatched only when
 *   data_lines > 0. The last event id persists from event to event, and across sse_reset. */
#ifndef MCPSONDE_SSE_H
#define MCPSONDE_SSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SSE_TYPE_MAX 32
#define SSE_ID_MAX 127
#define SSE_FIELD_MAX 8

struct sse_event {
	const char *type;     /* the event: field, "message" when none */
	bool type_cut;        /* longer than SSE_TYPE_MAX: cut, so it names no known type */
	const char *id;       /* the stream's last event id after this block, "" if none yet */
	bool id_set;          /* this block had an id line */
	int64_t retry_ms;     /* this block's retry: value, -1 if none */
	unsigned data_lines;  /* 0: nothing to dispatch */
	uint64_t ts_first;    /* syscall that carried the block's first field line */
	uint64_t ts_last;     /* syscall that carried the empty line ending it */
};

struct sse_callbacks {
	void (*on_data)(void *ctx, const char *p, size_t n, uint64_t ts_ns);
	void (*on_event)(void *ctx, const struct sse_event *ev);
};

struct sse_stats {
	uint64_t comments;  /* comment lines */
	uint64_t cut;       /* types and ids cut to their bound */
	uint64_t discarded; /* partial events dropped by sse_reset or sse_finish */
};

struct sse_parser {
	uint8_t state;
	uint8_t field;        /* the field of the line being read */
	uint8_t bom;          /* BOM bytes matched at the start of the stream; 3: done */
	bool after_cr;        /* the last line ended with CR: an LF next is part of it */
	bool in_event;        /* a field line since the last empty line */
	char name[SSE_FIELD_MAX + 1];
	uint8_t name_len;
	char value[SSE_ID_MAX + 1]; /* the value of an event, id or retry line */
	size_t value_len;
	bool value_cut;
	char type[SSE_TYPE_MAX + 1];
	bool type_set, type_cut;
	char id[SSE_ID_MAX + 1];
	bool id_set;
	int64_t retry_ms;
	unsigned data_lines;
	uint64_t ts_first;
	struct sse_stats stats;
};

void sse_init(struct sse_parser *s);
void sse_feed(struct sse_parser *s, const char *p, size_t n, uint64_t ts_ns, const struct sse_callbacks *cb, void *ctx);
/* Whether the next byte is inside the value of a data line: bytes missing there (cut out of
 * a long write) leave the event's framing intact. */
bool sse_in_data(const struct sse_parser *s);
/* Bytes were lost: drop the partial event; the next byte starts a line. */
void sse_reset(struct sse_parser *s);
/* The stream ended: a partial event is dropped (an event needs its empty line). */
void sse_finish(struct sse_parser *s);

#endif

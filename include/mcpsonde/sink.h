/* sink.h -- subscribers to pipeline events (text, JSONL, metrics, flight recorder...).
 *
 * A sink must never block the pipeline: it formats and writes, or copies into its own
 * bounded state, and returns. on_tick, when set, is called from the event loop's timer.
 * Output sinks buffer what they format and write it out on flush: the event loop calls
 * sinks_flush() after each drain of the ring buffer, before it waits, so that a burst of
 * events costs one write() and a person watching still sees every event at once. Between
 * flushes a sink writes out by itself only when its buffer passes OUTBUF_FLUSH_BYTES. */
#ifndef MCPSONDE_SINK_H
#define MCPSONDE_SINK_H

#include <stdint.h>
#include <stdio.h>

#include "event.h"

struct sink {
	const char *name;
	void (*on_event)(struct sink *s, const struct sonde_event *ev);
	void (*on_tick)(struct sink *s, uint64_t now_ns);
	void (*flush)(struct sink *s); /* writes out what it buffered */
	void (*close)(struct sink *s); /* flushes and frees the sink */
	struct sink *next;
};

struct sink_list {
	struct sink *head;
};

void sinks_add(struct sink_list *l, struct sink *s); /* appends: sinks see events in order added */
void sinks_emit(struct sink_list *l, const struct sonde_event *ev);
void sinks_tick(struct sink_list *l, uint64_t now_ns);
void sinks_flush(struct sink_list *l);
void sinks_close(struct sink_list *l);

/* Human-readable lines, one per call; every peer-controlled string is shown with its
 * terminal controls escaped. */
struct sink *sink_text_new(FILE *out, const struct event_format_opts *opts);
/* JSONL, one event per line. EV_MESSAGE and EV_TOOLS_LIST are skipped. */
struct sink *sink_json_new(FILE *out, const struct event_format_opts *opts);

#endif

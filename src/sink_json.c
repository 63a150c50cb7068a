/* sink_json.c -- JSONL output: one event per line, rendered straight into a buffer that is
 * written out once per drain (sinks_flush), or when it passes OUTBUF_FLUSH_BYTES.
 * EV_MESSAGE and EV_UNTRACKED are for other sinks, and so is EV_HTTP of an exchange that did not
 * fail. */
#include <stdlib.h>

#include "mcpsonde/sink.h"

struct sink_json {
	struct sink base;
	FILE *out;
	struct event_format_opts opts;
	struct outbuf buf;
};

static void sink_json_flush(struct sink *s)
{
	struct sink_json *j = (struct sink_json *)s;

	outbuf_flush(&j->buf, j->out);
}

static void sink_json_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct sink_json *j = (struct sink_json *)s;

	if (ev->type == EV_MESSAGE || ev->type == EV_UNTRACKED || (ev->type == EV_HTTP && !ev->http.failed))
		return;
	event_render(&j->buf, ev, &j->opts);
	outbuf_putc(&j->buf, '\n');
	if (j->buf.len >= OUTBUF_FLUSH_BYTES)
		sink_json_flush(s);
}

static void sink_json_close(struct sink *s)
{
	struct sink_json *j = (struct sink_json *)s;

	sink_json_flush(s);
	outbuf_free(&j->buf);
	free(j);
}

struct sink *sink_json_new(FILE *out, const struct event_format_opts *opts)
{
	struct sink_json *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->base.name = "json";
	j->base.on_event = sink_json_on_event;
	j->base.flush = sink_json_flush;
	j->base.close = sink_json_close;
	j->out = out;
	j->opts = *opts;
	return &j->base;
}

/* sink_json.c -- JSONL output: one event per line, flushed per event so that `| jq` and
 * tests see each event as it happens. EV_MESSAGE and EV_TOOLS_LIST are for other sinks. */
#include <stdlib.h>

#include "mcpsonde/sink.h"

struct sink_json {
	struct sink base;
	FILE *out;
	struct event_format_opts opts;
};

static void sink_json_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct sink_json *j = (struct sink_json *)s;
	json_t *o;

	if (ev->type == EV_MESSAGE || ev->type == EV_TOOLS_LIST)
		return;
	o = event_to_json(ev, &j->opts);
	json_dumpf(o, j->out, EVENT_JSON_FLAGS);
	fputc('\n', j->out);
	fflush(j->out);
	json_decref(o);
}

static void sink_json_close(struct sink *s)
{
	struct sink_json *j = (struct sink_json *)s;

	fflush(j->out);
	free(j);
}

struct sink *sink_json_new(FILE *out, const struct event_format_opts *opts)
{
	struct sink_json *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->base.name = "json";
	j->base.on_event = sink_json_on_event;
	j->base.close = sink_json_close;
	j->out = out;
	j->opts = *opts;
	return &j->base;
}

/* sink_json.c -- JSONL output: one event per line, flushed per event so that `| jq` and
 * tests see each event as it happens. EV_MESSAGE is for other sinks. */
#include <stdlib.h>

#include "mcpsonde/sink.h"

struct sink_json {
	struct sink base;
	FILE *out;
	struct event_format_opts opts;
	char *buf; /* the line being written: rendered whole, then written once */
	size_t cap;
};

static void sink_json_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct sink_json *j = (struct sink_json *)s;
	json_t *o;
	size_t n;

	if (ev->type == EV_MESSAGE)
		return;
	o = event_to_json(ev, &j->opts);
	n = json_dumpb(o, j->buf, j->cap, EVENT_JSON_FLAGS);
	if (n >= j->cap) { /* grow once to this size and render again */
		char *nb = realloc(j->buf, n + 1);
		if (nb) {
			j->buf = nb;
			j->cap = n + 1;
			n = json_dumpb(o, j->buf, j->cap, EVENT_JSON_FLAGS);
		}
	}
	json_decref(o);
	if (n == 0 || n >= j->cap)
		return;
	j->buf[n] = '\n';
	fwrite(j->buf, 1, n + 1, j->out);
	fflush(j->out);
}

static void sink_json_close(struct sink *s)
{
	struct sink_json *j = (struct sink_json *)s;

	fflush(j->out);
	free(j->buf);
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
	j->cap = 4096;
	j->buf = malloc(j->cap);
	if (!j->buf) {
		free(j);
		return NULL;
	}
	return &j->base;
}

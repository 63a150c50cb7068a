/* fuzz_render.h -- a sink for the harnesses: every event rendered to JSON text, as the JSONL
 * sink would (values included), then dropped. */
#ifndef MCPSONDE_FUZZ_RENDER_H
#define MCPSONDE_FUZZ_RENDER_H

#include <stdlib.h>

#include "mcpsonde/event.h"
#include "mcpsonde/sink.h"

static void fuzz_render_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct event_format_opts fo = { .capture_values = true };
	json_t *o = event_to_json(ev, &fo);
	char *text = json_dumps(o, EVENT_JSON_FLAGS);

	(void)s;
	free(text);
	json_decref(o);
}

#endif

/* fuzz_render.h -- a sink for the harnesses: every event rendered as the JSONL sink would
 * (values included), checked to parse back as JSON whatever bytes it carries, then dropped. */
#ifndef MCPSONDE_FUZZ_RENDER_H
#define MCPSONDE_FUZZ_RENDER_H

#include <stdlib.h>

#include "mcpsonde/event.h"
#include "mcpsonde/jsonw.h"
#include "mcpsonde/sink.h"

static void fuzz_render_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct event_format_opts fo = { .capture_values = true };
	struct outbuf out = { 0 };
	json_t *back;

	(void)s;
	event_render(&out, ev, &fo);
	back = out.failed ? NULL : json_loadb(out.data, out.len, 0, NULL);
	if (!out.failed && !back)
		abort();
	json_decref(back);
	outbuf_free(&out);
}

#endif

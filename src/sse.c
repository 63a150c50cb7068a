/* sse.c -- Server-Sent Events parsing, as a stream.
 *
 * Invariants:
 * - state says where the next byte falls: at the start of a line, in a field name, just
 *   after its colon (a space there is dropped), in a value, or in a comment. A line is
 *   consumed in spans found with memchr, so a megabyte data line costs two scans.
 * - after_cr is set when a line ended with CR; an LF as the very next byte (maybe in the
 *   next chunk) belongs to the same line end and is skipped.
 * - Only event, id and retry values are copied (bounded); data goes to on_data. */
#include <string.h>

#include "mcpsonde/sse.h"

enum sse_state { SSE_LINE_START, SSE_NAME, SSE_VALUE_START, SSE_VALUE, SSE_COMMENT };
enum sse_field { SSE_F_OTHER, SSE_F_DATA, SSE_F_EVENT, SSE_F_ID, SSE_F_RETRY };

static const char sse_bom[3] = { '\xef', '\xbb', '\xbf' };

void sse_init(struct sse_parser *s)
{
	memset(s, 0, sizeof(*s));
	s->retry_ms = -1;
}

static void sse_clear_event(struct sse_parser *s)
{
	s->in_event = false;
	s->type_set = false;
	s->type_cut = false;
	s->id_set = false;
	s->retry_ms = -1;
	s->data_lines = 0;
}

bool sse_in_data(const struct sse_parser *s)
{
	return (s->state == SSE_VALUE || s->state == SSE_VALUE_START) && s->field == SSE_F_DATA;
}

void sse_reset(struct sse_parser *s)
{
	if (s->in_event || s->state != SSE_LINE_START)
		s->stats.discarded++;
	sse_clear_event(s);
	s->state = SSE_LINE_START;
	s->after_cr = false;
}

void sse_finish(struct sse_parser *s)
{
	sse_reset(s);
}

/* Where the line that starts at p ends (CR or LF), or end. */
static const char *sse_line_end(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));
	const char *cr = memchr(p, '\r', (size_t)((lf ? lf : end) - p));

	return cr ? cr : lf ? lf : end;
}

static enum sse_field sse_field_of(const struct sse_parser *s)
{
	static const struct {
		const char *name;
		enum sse_field field;
	} fields[] = {
		{ "data", SSE_F_DATA }, { "event", SSE_F_EVENT }, { "id", SSE_F_ID }, { "retry", SSE_F_RETRY },
	};

	if (s->name_len > SSE_FIELD_MAX)
		return SSE_F_OTHER;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (strlen(fields[i].name) == s->name_len && memcmp(fields[i].name, s->name, s->name_len) == 0)
			return fields[i].field;
	}
	return SSE_F_OTHER;
}

static void sse_value_begin(struct sse_parser *s, uint64_t ts, const struct sse_callbacks *cb, void *ctx)
{
	s->field = (uint8_t)sse_field_of(s);
	s->value_len = 0;
	s->value_cut = false;
	if (s->field == SSE_F_DATA) {
		if (s->data_lines++ > 0)
			cb->on_data(ctx, "\n", 1, ts);
	}
}

static void sse_value_append(struct sse_parser *s, const char *p, size_t n, uint64_t ts,
			     const struct sse_callbacks *cb, void *ctx)
{
	size_t room;

	if (n == 0)
		return;
	switch (s->field) {
	case SSE_F_DATA:
		cb->on_data(ctx, p, n, ts);
		return;
	case SSE_F_EVENT:
	case SSE_F_ID:
	case SSE_F_RETRY:
		room = (s->field == SSE_F_EVENT ? SSE_TYPE_MAX : SSE_ID_MAX) - s->value_len;
		if (n > room) {
			n = room;
			s->value_cut = true;
		}
		memcpy(s->value + s->value_len, p, n);
		s->value_len += n;
		return;
	default:
		return;
	}
}

static void sse_value_end(struct sse_parser *s)
{
	bool digits = s->value_len > 0 && !s->value_cut;

	switch (s->field) {
	case SSE_F_EVENT:
		memcpy(s->type, s->value, s->value_len);
		s->type[s->value_len] = '\0';
		s->type_set = true;
		s->type_cut = s->value_cut;
		s->stats.cut += s->value_cut;
		break;
	case SSE_F_ID:
		/* An id with a NUL is ignored, as by a browser. */
		if (memchr(s->value, '\0', s->value_len))
			break;
		memcpy(s->id, s->value, s->value_len);
		s->id[s->value_len] = '\0';
		s->id_set = true;
		s->stats.cut += s->value_cut;
		break;
	case SSE_F_RETRY:
		for (size_t i = 0; i < s->value_len && digits; i++)
			digits = s->value[i] >= '0' && s->value[i] <= '9';
		if (digits && s->value_len <= 18) {
			s->retry_ms = 0;
			for (size_t i = 0; i < s->value_len; i++)
				s->retry_ms = s->retry_ms * 10 + (s->value[i] - '0');
		}
		break;
	default:
		break;
	}
}

static void sse_dispatch(struct sse_parser *s, uint64_t ts, const struct sse_callbacks *cb, void *ctx)
{
	struct sse_event ev = {
		.type = s->type_set ? s->type : "message",
		.type_cut = s->type_cut,
		.id = s->id,
		.id_set = s->id_set,
		.retry_ms = s->retry_ms,
		.data_lines = s->data_lines,
		.ts_first = s->ts_first,
		.ts_last = ts > s->ts_first ? ts : s->ts_first,
	};

	if (s->in_event)
		cb->on_event(ctx, &ev);
	sse_clear_event(s);
}

void sse_feed(struct sse_parser *s, const char *p, size_t n, uint64_t ts, const struct sse_callbacks *cb, void *ctx)
{
	const char *end = p + n;

	while (p < end) {
		const char *q;

		if (s->after_cr) {
			s->after_cr = false;
			if (*p == '\n') {
				p++;
				continue;
			}
		}
		if (s->bom < 3) {
			if (*p == sse_bom[s->bom]) {
				s->bom++;
				p++;
				continue;
			}
			s->bom = 3;
		}
		switch (s->state) {
		case SSE_LINE_START:
			if (*p == '\r' || *p == '\n') {
				s->after_cr = *p == '\r';
				p++;
				sse_dispatch(s, ts, cb, ctx);
				continue;
			}
			if (*p == ':') {
				s->stats.comments++;
				s->state = SSE_COMMENT;
				p++;
				continue;
			}
			if (!s->in_event) {
				s->in_event = true;
				s->ts_first = ts;
			}
			s->name_len = 0;
			s->state = SSE_NAME;
			continue;
		case SSE_NAME:
			while (p < end && *p != ':' && *p != '\r' && *p != '\n') {
				if (s->name_len <= SSE_FIELD_MAX)
					s->name[s->name_len++] = *p;
				p++;
			}
			if (p == end)
				return;
			sse_value_begin(s, ts, cb, ctx);
			if (*p == ':') {
				s->state = SSE_VALUE_START;
				p++;
			} else {
				s->state = SSE_VALUE; /* no colon: the value is empty, the line ends here */
			}
			continue;
		case SSE_VALUE_START:
			s->state = SSE_VALUE;
			if (*p == ' ')
				p++;
			continue;
		case SSE_VALUE:
			q = sse_line_end(p, end);
			sse_value_append(s, p, (size_t)(q - p), ts, cb, ctx);
			if (q == end)
				return;
			sse_value_end(s);
			s->after_cr = *q == '\r';
			s->state = SSE_LINE_START;
			p = q + 1;
			continue;
		case SSE_COMMENT:
			q = sse_line_end(p, end);
			if (q == end)
				return;
			s->after_cr = *q == '\r';
			s->state = SSE_LINE_START;
			p = q + 1;
			continue;
		}
	}
}

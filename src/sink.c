/* sink.c -- the list of sinks events are delivered to, in the order they were added. */
#include <stddef.h>

#include "mcpsonde/sink.h"

void sinks_add(struct sink_list *l, struct sink *s)
{
	struct sink **pp = &l->head;

	while (*pp)
		pp = &(*pp)->next;
	s->next = NULL;
	*pp = s;
}

void sinks_emit(struct sink_list *l, const struct sonde_event *ev)
{
	for (struct sink *s = l->head; s; s = s->next)
		if (s->on_event)
			s->on_event(s, ev);
}

void sinks_tick(struct sink_list *l, uint64_t now_ns)
{
	for (struct sink *s = l->head; s; s = s->next)
		if (s->on_tick)
			s->on_tick(s, now_ns);
}

void sinks_flush(struct sink_list *l)
{
	for (struct sink *s = l->head; s; s = s->next)
		if (s->flush)
			s->flush(s);
}

void sinks_close(struct sink_list *l)
{
	struct sink *s = l->head, *next;

	l->head = NULL;
	for (; s; s = next) {
		next = s->next;
		if (s->close)
			s->close(s);
	}
}

/* calls.c -- logical calls: multi-round-trip chains and tasks, between their exchanges.
 *
 * One hash holds both kinds, keyed by what the next exchange will carry: a chain waiting for
 * the client's retry by "R" method, target and requestState hash; a task by "T" and its id.
 * uthash keeps insertion order, so the head is the oldest entry: eviction and expiry take
 * from the head. A logical call is in the table, or owned by the pending exchange that
 * continues it, never both. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/calls.h"

struct calls {
	struct logical_call *by_key;
	unsigned n;
	uint64_t *evicted;
};

struct calls *calls_new(uint64_t *evicted)
{
	struct calls *t = calloc(1, sizeof(*t));

	if (t)
		t->evicted = evicted;
	return t;
}

void calls_end(struct logical_call *lc)
{
	if (!lc)
		return;
	free(lc->method);
	free(lc->tool);
	free(lc->task_id);
	free(lc->task_status);
	json_decref(lc->arguments);
	free(lc);
}

void calls_remove(struct calls *t, struct logical_call *lc)
{
	HASH_DEL(t->by_key, lc);
	t->n--;
}

void calls_free(struct calls *t)
{
	struct logical_call *lc, *tmp;

	if (!t)
		return;
	HASH_ITER(hh, t->by_key, lc, tmp) {
		calls_remove(t, lc);
		calls_end(lc);
	}
	free(t);
}

struct logical_call *calls_begin(const char *id, const char *method, const char *tool, json_t *arguments,
				 enum call_direction dir, uint64_t start_ns)
{
	struct logical_call *lc = calloc(1, sizeof(*lc));

	if (!lc)
		return NULL;
	snprintf(lc->id, sizeof(lc->id), "%s", id);
	lc->method = method ? strdup(method) : NULL;
	lc->tool = tool ? strdup(tool) : NULL;
	lc->arguments = json_incref(arguments);
	lc->dir = dir;
	lc->start_ns = start_ns;
	return lc;
}

/* Files lc under its key, making room first: the oldest entry goes. */
static void calls_insert(struct calls *t, struct logical_call *lc)
{
	struct logical_call *old;

	HASH_FIND_STR(t->by_key, lc->key, old);
	if (old) { /* the same requestState or task id twice: the newer sighting wins */
		calls_remove(t, old);
		calls_end(old);
		(*t->evicted)++;
	}
	if (t->n >= CALLS_MAX && (old = t->by_key)) {
		calls_remove(t, old);
		calls_end(old);
		(*t->evicted)++;
	}
	HASH_ADD_STR(t->by_key, key, lc);
	t->n++;
}

static void retry_key(char *key, size_t len, const char *method, const char *target, uint64_t state)
{
	snprintf(key, len, "R%s\x1f%s\x1f%016" PRIx64, method ? method : "", target ? target : "", state);
}

void calls_wait_input(struct calls *t, struct logical_call *lc, const char *target, uint64_t state,
		      uint64_t ts_ns)
{
	lc->last_ns = ts_ns;
	retry_key(lc->key, sizeof(lc->key), lc->method, target, state);
	calls_insert(t, lc);
}

struct logical_call *calls_retry(struct calls *t, const char *method, const char *target, uint64_t state,
				 uint64_t ts_ns)
{
	char key[sizeof(((struct logical_call *)0)->key)];
	struct logical_call *lc;

	retry_key(key, sizeof(key), method, target, state);
	HASH_FIND_STR(t->by_key, key, lc);
	if (!lc)
		return NULL;
	calls_remove(t, lc);
	if (ts_ns > lc->last_ns)
		lc->input_wait_ns += ts_ns - lc->last_ns;
	return lc;
}

static void replace(char **dst, const char *src)
{
	if (!src || (*dst && strcmp(*dst, src) == 0))
		return;
	free(*dst);
	*dst = strdup(src);
}

void calls_task_created(struct calls *t, struct logical_call *lc, const struct rpc_msg *m, uint64_t ts_ns)
{
	replace(&lc->task_id, m->task_id);
	replace(&lc->task_status, m->task_status);
	lc->task_state = m->task_state;
	lc->task_nested = m->task_nested;
	lc->last_ns = lc->polled_ns = lc->changed_ns = ts_ns;
	snprintf(lc->key, sizeof(lc->key), "T%s", m->task_id);
	calls_insert(t, lc);
}

struct logical_call *calls_task(struct calls *t, const char *task_id)
{
	char key[sizeof(((struct logical_call *)0)->key)];
	struct logical_call *lc;

	if (!task_id)
		return NULL;
	snprintf(key, sizeof(key), "T%s", task_id);
	HASH_FIND_STR(t->by_key, key, lc);
	return lc;
}

bool calls_task_seen(struct logical_call *lc, const struct rpc_msg *m, uint64_t ts_ns, bool poll)
{
	bool moved = m->task_state && m->task_state != lc->task_state;

	if (poll) {
		lc->rounds++;
		lc->polled_ns = ts_ns;
		lc->last_ns = ts_ns;
	}
	if (moved) {
		replace(&lc->task_status, m->task_status);
		lc->task_state = m->task_state;
		lc->changed_ns = ts_ns;
		lc->stalled = false;
	}
	return moved;
}

bool calls_task_terminal(const char *status)
{
	return status && (strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
			  strcmp(status, "cancelled") == 0);
}

struct logical_call *calls_first(struct calls *t)
{
	return t->by_key;
}

struct logical_call *calls_next(struct logical_call *lc)
{
	return lc->hh.next;
}

void calls_expire(struct calls *t, uint64_t now_ns)
{
	struct logical_call *lc, *tmp;

	HASH_ITER(hh, t->by_key, lc, tmp) {
		if (lc->task_id || now_ns < lc->last_ns + CALLS_WAIT_MAX_NS)
			continue;
		calls_remove(t, lc);
		calls_end(lc);
	}
}

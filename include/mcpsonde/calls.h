/* calls.h -- logical calls: one MCP operation that spans several JSON-RPC exchanges.
 *
 * Two shapes exist (protocol revision 2026-07-28 and the tasks extension):
 * - a multi-round-trip request (MRTR): a result with resultType "input_required" is not the
 *   end of the call; the client retries the same method and target with a new id, echoing
 *   the result's requestState. The chain is found again by (method, target, requestState).
 * - a task: a tools/call answered with resultType "task" (or, 2025-11-25, result.task) runs
 *   on; the client polls tasks/get with its taskId until a terminal status.
 *
 * The session owns the exchanges (pending calls) and emits the events; this table keeps what
 * links them, between exchanges: a chain waiting for the client's retry, or a task being
 * polled. A chain whose retry is pending belongs to that pending call and is not in the table.
 * Bounded: CALLS_MAX per session, the oldest given up first (counted: its next exchanges are
 * reported as plain calls); a chain the client never retries is forgotten after
 * CALLS_WAIT_MAX_NS (its exchanges were all reported already). */
#ifndef MCPSONDE_CALLS_H
#define MCPSONDE_CALLS_H

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>

#include "event.h"
#include "rpc.h"

#define CALLS_MAX 4096
#define CALLS_WAIT_MAX_NS (3600ull * 1000000000ull)

struct logical_call {
	char key[RPC_NAME_MAX * 2 + 24]; /* "R" method \x1f target \x1f state, or "T" task id */
	char id[RPC_ID_MAX];             /* of the first request */
	char *method, *tool;
	json_t *arguments;       /* of the first request, as the pending call kept them */
	enum call_direction dir;
	uint64_t start_ns;       /* the first request was read */
	uint64_t last_ns;        /* the latest response was written */
	uint64_t input_wait_ns;  /* between an input_required answer and the retry */
	uint64_t request_bytes;  /* of all its requests */
	unsigned rounds;         /* exchanges so far */
	/* tasks */
	char *task_id;
	char *task_status;       /* the latest status seen */
	uint64_t task_state;     /* rpc_msg.task_state of the latest sighting */
	uint64_t polled_ns;      /* the latest tasks/get answer (or the creation) */
	uint64_t changed_ns;     /* when task_state last changed */
	bool task_nested;        /* 2025-11-25: the result comes by tasks/result */
	bool stalled;            /* a stall was reported since the last change */
	UT_hash_handle hh;       /* in the table: insertion order is age */
};

struct calls;

/* *evicted counts the entries given up for room. */
struct calls *calls_new(uint64_t *evicted);
void calls_free(struct calls *t);

/* A new logical call from its first exchange (not in the table yet). */
struct logical_call *calls_begin(const char *id, const char *method, const char *tool, json_t *arguments,
				 enum call_direction dir, uint64_t start_ns);
void calls_end(struct logical_call *lc);

/* An exchange of lc was answered input_required at ts_ns, with requestState state: lc waits
 * in the table for the retry. */
void calls_wait_input(struct calls *t, struct logical_call *lc, const char *target, uint64_t state,
		      uint64_t ts_ns);
/* The chain a retry (method, target, state) continues, taken out of the table; NULL when none
 * (its first round was before mcpsonde attached). The wait is added to input_wait_ns. */
struct logical_call *calls_retry(struct calls *t, const char *method, const char *target, uint64_t state,
				 uint64_t ts_ns);

/* lc's exchange was answered with a task: lc stays in the table under the task id. */
void calls_task_created(struct calls *t, struct logical_call *lc, const struct rpc_msg *m, uint64_t ts_ns);
struct logical_call *calls_task(struct calls *t, const char *task_id);
/* A sighting of lc's task (a tasks/get answer, notifications/tasks/status...). Returns true
 * when its state moved. */
bool calls_task_seen(struct logical_call *lc, const struct rpc_msg *m, uint64_t ts_ns, bool poll);
/* Takes lc out of the table (the caller then ends it). */
void calls_remove(struct calls *t, struct logical_call *lc);
bool calls_task_terminal(const char *status);

/* Oldest first; lc may be removed during the walk. */
struct logical_call *calls_first(struct calls *t);
struct logical_call *calls_next(struct logical_call *lc);
/* Forgets chains never retried for CALLS_WAIT_MAX_NS. */
void calls_expire(struct calls *t, uint64_t now_ns);

#endif

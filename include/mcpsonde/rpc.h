/* rpc.h -- JSON-RPC 2.0 classification of one frame.
 *
 * Every frame is skimmed, not parsed: one forward pass that tracks depth and skips strings
 * with memchr finds the envelope (id, method, error code and message, isError) and the few
 * params the session always needs (name, uri, requestId, the keys of arguments, whether
 * _meta is there), in any key order. The jansson DOM of a message is built only when a
 * consumer asks for it (rpc_msg_root: initialize, tools/list, schema checks, captured
 * values), because parsing every byte costs ten times the rest of the pipeline. A frame
 * the skimmer finds irregular, and a batch (a JSON array, 2025-03-26 only), go through
 * jansson whole. An oversized frame (head and tail only) is never parsed: its envelope is
 * scanned from the head, and from the tail where the TS SDK puts the id. */
#ifndef MCPSONDE_RPC_H
#define MCPSONDE_RPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

enum rpc_kind {
	RPC_REQUEST,      /* method and id */
	RPC_NOTIFICATION, /* method, no id */
	RPC_RESULT,       /* id and result */
	RPC_ERROR,        /* error, id (may be absent or null when the request was unparsable) */
	RPC_INVALID,      /* JSON, but not a JSON-RPC message */
};

#define RPC_ID_MAX 128      /* ids longer than this, as JSON text, are truncated */
#define RPC_NAME_MAX 256    /* method, params.name, params.uri, error message: longer is cut */
#define RPC_ARG_KEYS_MAX 64 /* keys of params.arguments kept; more are counted in narg_keys */

struct rpc_dom; /* the lazily parsed message */

struct rpc_msg {
	enum rpc_kind kind;
	char id[RPC_ID_MAX];        /* the id as JSON text: 1 and "1" differ; "" when absent */
	const char *method;         /* requests and notifications; NULL otherwise */
	long long error_code;
	const char *error_message;  /* RPC_ERROR, when known */
	bool is_error;              /* RPC_RESULT with result.isError == true */
	bool oversized;
	size_t wire_len;            /* bytes of the frame this message came from */
	/* params, as skimmed */
	const char *name;           /* params.name (tools/call, prompts/get), NULL if absent */
	const char *uri;            /* params.uri (resources/read) */
	char request_id[RPC_ID_MAX];/* params.requestId as JSON text (notifications/cancelled) */
	bool has_meta;              /* params._meta is there */
	bool has_arguments;         /* params.arguments is an object */
	unsigned narg_keys;         /* keys of params.arguments, all of them (arg_keys: the first) */
	/* The 2026-07-28 envelope in _meta (io.modelcontextprotocol/...): protocolVersion and
	 * clientInfo of a request, serverInfo of a result, subscriptionId of a notification. */
	const char *protocol_version;
	const char *client_name, *client_version;
	const char *server_name, *server_version;
	const char *subscription_id;
	char progress_token[RPC_ID_MAX]; /* params._meta.progressToken of a request, params.progressToken
					  * of notifications/progress, as JSON text; "" when absent */
	/* Multi-round-trip requests and tasks. */
	const char *result_type;    /* result.resultType: "complete", "input_required", "task"... */
	uint64_t request_state;     /* hash of params.requestState (a retry) or result.requestState
				     * (input_required); 0 when absent */
	bool has_input_responses;   /* params.inputResponses: a retry carrying the client's input */
	const char *task_id;        /* params.taskId, result.taskId, or result.task.taskId (2025-11-25) */
	const char *task_status;    /* status next to that taskId: working, input_required, completed,
				     * failed, cancelled */
	uint64_t task_state;        /* hash of the task's status, statusMessage and lastUpdatedAt: it
				     * changes when the task moves */
	bool task_nested;           /* the task came as result.task{} (2025-11-25 CreateTaskResult) */
	bool task_is_error;         /* a completed task's result.result.isError */
	long long task_error_code;  /* a failed task's result.error.code */
	const char *error_text;     /* a result with isError: the first content text, cut */
	/* Whether a string of the message looks like a secret (scrub_json_secret), judged as the
	 * skimmer passed each one: known only for a frame skimmed as it came (not an oversized
	 * one, not one jansson had to parse first). */
	bool secret_known, secret;
	struct rpc_dom *dom;
	const char *arg_keys[RPC_ARG_KEYS_MAX]; /* last: rpc_msg_init clears everything before it */
};

typedef void (*rpc_fn)(void *ctx, const struct rpc_msg *m);

/* Decodes f, calling fn once per message (once per element of a batch). Returns the number
 * of messages, or -1 when the frame is not JSON at all (the caller reports it as invalid).
 * Everything m points to is valid during the callback only. */
int rpc_decode(const struct frame *f, rpc_fn fn, void *ctx);
/* The message as a jansson object, parsed on first use; NULL when oversized or when the
 * text is not valid JSON after all. Borrowed: valid during the callback. */
json_t *rpc_msg_root(const struct rpc_msg *m);
/* An oversized result's array member result.<member> as far as its head goes: a new array of
 * the elements that lie wholly inside the head (the rest were cut), or NULL when the head
 * holds no such array. *cut says whether elements were left out. */
json_t *rpc_msg_head_array(const struct rpc_msg *m, const char *member, bool *cut);
const char *rpc_kind_name(enum rpc_kind k);
/* Whether method is one of the MCP specification's (any revision): what tells an MCP peer
 * from other JSON-RPC. */
bool rpc_is_mcp_method(const char *method);
/* The name of a JSON-RPC or MCP error code ("method_not_found"), NULL for one without. */
const char *rpc_error_name(long long code);

#endif

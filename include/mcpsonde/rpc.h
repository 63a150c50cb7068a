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
	unsigned narg_keys;         /* keys of params.arguments, all of them */
	const char *arg_keys[RPC_ARG_KEYS_MAX];
	struct rpc_dom *dom;
};

typedef void (*rpc_fn)(void *ctx, const struct rpc_msg *m);

/* Decodes f, calling fn once per message (once per element of a batch). Returns the number
 * of messages, or -1 when the frame is not JSON at all (the caller reports it as invalid).
 * Everything m points to is valid during the callback only. */
int rpc_decode(const struct frame *f, rpc_fn fn, void *ctx);
/* The message as a jansson object, parsed on first use; NULL when oversized or when the
 * text is not valid JSON after all. Borrowed: valid during the callback. */
json_t *rpc_msg_root(const struct rpc_msg *m);
const char *rpc_kind_name(enum rpc_kind k);

#endif

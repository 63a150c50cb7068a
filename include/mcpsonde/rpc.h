/* rpc.h -- JSON-RPC 2.0 classification of one frame, with jansson.
 *
 * A frame is one message or a batch (a JSON array, 2025-03-26 only). Key order is never
 * assumed. An oversized frame is not parsed: a tolerant scan of its head and tail finds the
 * envelope (id, method, error code, isError) and the message is flagged oversized. */
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

#define RPC_ID_MAX 128 /* ids longer than this, as JSON text, are truncated (and still unique enough) */

struct rpc_msg {
	enum rpc_kind kind;
	json_t *root;       /* the message object; NULL when oversized */
	char id[RPC_ID_MAX];/* the id as JSON text: 1 and "1" differ; "" when absent */
	const char *method; /* requests and notifications; NULL otherwise */
	long long error_code;
	const char *error_message; /* RPC_ERROR, when known */
	bool is_error;      /* RPC_RESULT with result.isError == true */
	bool oversized;
	size_t wire_len;    /* bytes of the frame this message came from */
};

typedef void (*rpc_fn)(void *ctx, const struct rpc_msg *m);

/* Decodes f, calling fn once per message (once per element of a batch). Returns the number
 * of messages, or -1 when the frame is not JSON at all (the caller reports it as invalid). */
int rpc_decode(const struct frame *f, rpc_fn fn, void *ctx);
const char *rpc_kind_name(enum rpc_kind k);

#endif

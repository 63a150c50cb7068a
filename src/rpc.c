/* rpc.c -- JSON-RPC 2.0 classification of frames.
 *
 * The skimmer makes one forward pass over a message: strings are skipped with memchr, nested
 * values by counting brackets, and only the members the pipeline uses are copied out: the
 * envelope at the top level, isError in result, code and message in error, and name, uri,
 * requestId, _meta and the keys of arguments in params. Recursion stops at params.arguments;
 * deeper values are skipped iteratively, so a hostile nesting depth costs nothing extra.
 * Anything the skimmer finds irregular is parsed by jansson, re-serialised and skimmed again,
 * so both paths classify alike and malformed input is judged by a real parser. Each string is
 * also judged for secret-looking values as the skimmer passes it (scrub.h), so that a call's
 * secret flag costs no second walk over the message. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "mcpsonde/rpc.h"
#include "mcpsonde/scrub.h"
#include "mcpsonde/utf8.h"

#define SKIM_ARENA 8192

struct rpc_dom {
	const char *text;
	size_t len;
	json_t *root;
	bool parsed;
	bool head_only; /* an oversized frame's head: never parsed whole */
};

/* Methods of the MCP specification (all revisions), sorted. */
static const char *const mcp_methods[] = {
	"completion/complete",
	"elicitation/create",
	"initialize",
	"logging/setLevel",
	"notifications/cancelled",
	"notifications/elicitation/complete",
	"notifications/initialized",
	"notifications/message",
	"notifications/progress",
	"notifications/prompts/list_changed",
	"notifications/resources/list_changed",
	"notifications/resources/updated",
	"notifications/roots/list_changed",
	"notifications/subscriptions/acknowledged",
	"notifications/tasks/status",
	"notifications/tools/list_changed",
	"ping",
	"prompts/get",
	"prompts/list",
	"resources/list",
	"resources/read",
	"resources/subscribe",
	"resources/templates/list",
	"resources/unsubscribe",
	"roots/list",
	"sampling/createMessage",
	"server/discover",
	"subscriptions/listen",
	"tasks/cancel",
	"tasks/get",
	"tasks/list",
	"tasks/result",
	"tasks/update",
	"tools/call",
	"tools/list",
};

static int method_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

bool rpc_is_mcp_method(const char *method)
{
	return method && bsearch(&method, mcp_methods, sizeof(mcp_methods) / sizeof(mcp_methods[0]), sizeof(mcp_methods[0]),
				 method_cmp) != NULL;
}

const char *rpc_kind_name(enum rpc_kind k)
{
	switch (k) {
	case RPC_REQUEST: return "request";
	case RPC_NOTIFICATION: return "notification";
	case RPC_RESULT: return "result";
	case RPC_ERROR: return "error";
	case RPC_INVALID: return "invalid";
	}
	return "?";
}

const char *rpc_error_name(long long code)
{
	switch (code) {
	case -32700: return "parse_error";
	case -32600: return "invalid_request";
	case -32601: return "method_not_found";
	case -32602: return "invalid_params";
	case -32603: return "internal_error";
	case -32002: return "resource_not_found";      /* up to 2025-11-25 */
	case -32020: return "header_mismatch";         /* 2026-07-28 */
	case -32021: return "missing_client_capability";
	case -32022: return "unsupported_protocol_version";
	case -32042: return "url_elicitation_required"; /* 2025-11-25 */
	}
	return NULL;
}

json_t *rpc_msg_root(const struct rpc_msg *m)
{
	struct rpc_dom *d = m->dom;

	if (!d || d->head_only)
		return NULL;
	if (!d->parsed) {
		d->parsed = true;
		d->root = json_loadb(d->text, d->len, 0, NULL);
	}
	return d->root;
}

/* --- the skimmer ------------------------------------------------------------------- */

struct span {
	const char *s;
	size_t len;
	bool escaped;
};

struct skim {
	const char *p, *end;
	const char *text; /* the message's first byte */
	bool *secret;     /* non-NULL: set when a string looks like a secret (scrub.h) */
	bool bad;
	struct rpc_msg *m;
	bool has_method, has_id, id_null, has_result, has_error;
	struct span error_text; /* the first content text of a result, copied if isError */
	char arena[SKIM_ARENA]; /* copies of the strings m points to */
	size_t used;
};

static void skim_ws(struct skim *k)
{
	while (k->p < k->end && (*k->p == ' ' || *k->p == '\t' || *k->p == '\r' || *k->p == '\n'))
		k->p++;
}

static bool skim_expect(struct skim *k, char c)
{
	skim_ws(k);
	if (k->p < k->end && *k->p == c) {
		k->p++;
		return true;
	}
	k->bad = true;
	return false;
}

/* At an opening quote: moves past the closing one; sp gets the contents. */
static bool skim_string(struct skim *k, struct span *sp)
{
	const char *start = ++k->p, *q = start;

	for (;;) {
		const char *b;

		q = memchr(q, '"', (size_t)(k->end - q));
		if (!q) {
			k->bad = true;
			return false;
		}
		for (b = q; b > start && b[-1] == '\\'; b--)
			;
		if ((q - b) % 2 == 0)
			break;
		q++;
	}
	if (sp) {
		sp->s = start;
		sp->len = (size_t)(q - start);
		sp->escaped = memchr(start, '\\', sp->len) != NULL;
	}
	/* Every string of a message passes here once: the secret check reads it now, while it
	 * is in the cache, rather than in a second walk over the message. */
	if (k->secret && !*k->secret &&
	    scrub_json_string_secret(k->text, (size_t)(k->end - k->text), (size_t)(start - k->text),
				     (size_t)(q - k->text)))
		*k->secret = true;
	k->p = q + 1;
	return true;
}

/* Skips any value; sp, when given, gets its text (a string's with its quotes). */
static void skim_value(struct skim *k, struct span *sp)
{
	const char *v;
	int depth = 0;

	skim_ws(k);
	v = k->p;
	if (k->p >= k->end) {
		k->bad = true;
		return;
	}
	if (*k->p == '"') {
		skim_string(k, NULL);
	} else if (*k->p == '{' || *k->p == '[') {
		do {
			char c = *k->p;
			if (c == '"') {
				if (!skim_string(k, NULL))
					return;
				continue;
			}
			if (c == '{' || c == '[')
				depth++;
			else if (c == '}' || c == ']')
				depth--;
			k->p++;
		} while (depth > 0 && k->p < k->end);
		if (depth)
			k->bad = true;
	} else {
		while (k->p < k->end && !strchr(",}] \t\r\n", *k->p))
			k->p++;
		if (k->p == v)
			k->bad = true;
	}
	if (sp) {
		sp->s = v;
		sp->len = (size_t)(k->p - v);
		sp->escaped = false;
	}
}

/* A copy in the arena, escapes decoded (by jansson: they are rare), cut at max bytes. */
static const char *skim_copy(struct skim *k, const struct span *sp, size_t max)
{
	const char *src = sp->s;
	size_t n = sp->len;
	json_t *decoded = NULL;
	char *dst;

	if (sp->escaped) {
		decoded = json_loadb(sp->s - 1, sp->len + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		if (json_is_string(decoded)) {
			src = json_string_value(decoded);
			n = json_string_length(decoded);
		}
	}
	n = utf8_cut(src, n, max - 1);
	if (k->used + n + 1 > sizeof(k->arena)) {
		json_decref(decoded);
		return NULL;
	}
	dst = k->arena + k->used;
	memcpy(dst, src, n);
	dst[n] = '\0';
	k->used += n + 1;
	json_decref(decoded);
	return dst;
}

/* An id (or requestId) as JSON text; an escaped string is re-encoded the way jansson writes
 * it, so that "\u0041" from one side matches "A" from the other. */
static void skim_id(struct skim *k, char *out, size_t len)
{
	struct span sp;
	size_t n;

	skim_value(k, &sp);
	if (k->bad)
		return;
	if (sp.len && sp.s[0] == '"' && memchr(sp.s, '\\', sp.len)) {
		json_t *v = json_loadb(sp.s, sp.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
		n = v ? json_dumpb(v, out, len - 1, JSON_ENCODE_ANY | JSON_COMPACT) : 0;
		out[n < len ? n : len - 1] = '\0';
		json_decref(v);
		return;
	}
	n = sp.len < len ? sp.len : len - 1;
	memcpy(out, sp.s, n);
	out[n] = '\0';
}

typedef void (*skim_member_fn)(struct skim *k, const struct span *key);

/* At '{': calls fn for each member; fn consumes the value. */
static void skim_object(struct skim *k, skim_member_fn fn)
{
	struct span key;

	if (!skim_expect(k, '{'))
		return;
	skim_ws(k);
	if (k->p < k->end && *k->p == '}') {
		k->p++;
		return;
	}
	while (!k->bad) {
		skim_ws(k);
		if (k->p >= k->end || *k->p != '"' || !skim_string(k, &key) || !skim_expect(k, ':'))
			break;
		fn(k, &key);
		skim_ws(k);
		if (k->p < k->end && *k->p == ',') {
			k->p++;
			continue;
		}
		skim_expect(k, '}');
		return;
	}
	k->bad = true;
}

static bool key_is(const struct span *key, const char *name)
{
	return key->len == strlen(name) && memcmp(key->s, name, key->len) == 0;
}

static bool skim_at(struct skim *k, char c)
{
	skim_ws(k);
	return k->p < k->end && *k->p == c;
}

static void skim_string_member(struct skim *k, const char **out)
{
	struct span sp;

	if (!skim_at(k, '"')) {
		skim_value(k, NULL);
		return;
	}
	if (skim_string(k, &sp))
		*out = skim_copy(k, &sp, RPC_NAME_MAX);
}

static void skim_arguments_member(struct skim *k, const struct span *key)
{
	struct rpc_msg *m = k->m;

	if (m->narg_keys < RPC_ARG_KEYS_MAX)
		m->arg_keys[m->narg_keys] = skim_copy(k, key, RPC_NAME_MAX);
	m->narg_keys++;
	skim_value(k, NULL);
}

/* FNV-1a: requestState and task states are compared, never kept. */
static uint64_t hash_bytes(uint64_t h, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
	return h;
}

#define HASH_SEED 0xcbf29ce484222325ull

/* A value's hash, strings by their decoded text so that escaping differences between the two
 * sides do not matter. Never 0 (0 means absent). */
static uint64_t skim_hash_value(struct skim *k)
{
	struct span sp;
	uint64_t h;

	if (skim_at(k, '"')) {
		if (!skim_string(k, &sp))
			return 0;
		if (sp.escaped) {
			json_t *v = json_loadb(sp.s - 1, sp.len + 2, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
			h = json_is_string(v) ? hash_bytes(HASH_SEED, json_string_value(v), json_string_length(v)) : 0;
			json_decref(v);
		} else {
			h = hash_bytes(HASH_SEED, sp.s, sp.len);
		}
	} else {
		skim_value(k, &sp);
		h = k->bad ? 0 : hash_bytes(HASH_SEED, sp.s, sp.len);
	}
	return h ? h : 1;
}

/* The members of a task (2026-07-28: the result itself; 2025-11-25: result.task, or the params
 * of notifications/tasks/status) that identify it and say where it is. Returns false when key
 * is not one of them (the caller consumes the value). The state hash is a sum of per-member
 * hashes, so member order does not matter. */
static bool skim_task_field(struct skim *k, const struct span *key)
{
	struct rpc_msg *m = k->m;

	if (key_is(key, "taskId")) {
		skim_string_member(k, &m->task_id);
	} else if (key_is(key, "status")) {
		skim_string_member(k, &m->task_status);
		if (m->task_status)
			m->task_state += hash_bytes(hash_bytes(HASH_SEED, "s", 1), m->task_status, strlen(m->task_status));
	} else if (key_is(key, "statusMessage") || key_is(key, "lastUpdatedAt")) {
		m->task_state += hash_bytes(skim_hash_value(k), key->s, key->len);
	} else {
		return false;
	}
	return true;
}

static void skim_client_info_member(struct skim *k, const struct span *key)
{
	if (key_is(key, "name"))
		skim_string_member(k, &k->m->client_name);
	else if (key_is(key, "version"))
		skim_string_member(k, &k->m->client_version);
	else
		skim_value(k, NULL);
}

static void skim_server_info_member(struct skim *k, const struct span *key)
{
	if (key_is(key, "name"))
		skim_string_member(k, &k->m->server_name);
	else if (key_is(key, "version"))
		skim_string_member(k, &k->m->server_version);
	else
		skim_value(k, NULL);
}

#define META_PREFIX "io.modelcontextprotocol/"

/* _meta of params or result: the reserved keys of the 2026-07-28 envelope, progressToken. */
static void skim_meta_member(struct skim *k, const struct span *key)
{
	struct rpc_msg *m = k->m;
	struct span sub = *key;

	if (key_is(key, "progressToken")) {
		skim_id(k, m->progress_token, sizeof(m->progress_token));
		return;
	}
	if (key->len <= strlen(META_PREFIX) || memcmp(key->s, META_PREFIX, strlen(META_PREFIX)) != 0) {
		skim_value(k, NULL);
		return;
	}
	sub.s += strlen(META_PREFIX);
	sub.len -= strlen(META_PREFIX);
	if (key_is(&sub, "protocolVersion"))
		skim_string_member(k, &m->protocol_version);
	else if (key_is(&sub, "subscriptionId"))
		skim_string_member(k, &m->subscription_id);
	else if (key_is(&sub, "clientInfo") && skim_at(k, '{'))
		skim_object(k, skim_client_info_member);
	else if (key_is(&sub, "serverInfo") && skim_at(k, '{'))
		skim_object(k, skim_server_info_member);
	else
		skim_value(k, NULL);
}

static void skim_params_member(struct skim *k, const struct span *key)
{
	struct rpc_msg *m = k->m;

	if (key_is(key, "name")) {
		skim_string_member(k, &m->name);
	} else if (key_is(key, "uri")) {
		skim_string_member(k, &m->uri);
	} else if (key_is(key, "requestId")) {
		skim_id(k, m->request_id, sizeof(m->request_id));
	} else if (key_is(key, "arguments") && skim_at(k, '{')) {
		m->has_arguments = true;
		skim_object(k, skim_arguments_member);
	} else if (key_is(key, "_meta") && skim_at(k, '{')) {
		m->has_meta = true;
		skim_object(k, skim_meta_member);
	} else if (key_is(key, "progressToken")) {
		skim_id(k, m->progress_token, sizeof(m->progress_token));
	} else if (key_is(key, "requestState")) {
		m->request_state = skim_hash_value(k);
	} else if (key_is(key, "inputResponses")) {
		m->has_input_responses = true;
		skim_value(k, NULL);
	} else if (!skim_task_field(k, key)) {
		skim_value(k, NULL);
	}
}

/* result.task of a 2025-11-25 CreateTaskResult. */
static void skim_task_member(struct skim *k, const struct span *key)
{
	if (!skim_task_field(k, key))
		skim_value(k, NULL);
}

/* Consumes a value: true when it is the literal true. */
static bool skim_true(struct skim *k)
{
	struct span v;

	skim_value(k, &v);
	return !k->bad && v.len == 4 && memcmp(v.s, "true", 4) == 0;
}

/* result.result of a completed task (tasks/get, 2026-07-28): the tool's own result. */
static void skim_task_result_member(struct skim *k, const struct span *key)
{
	if (key_is(key, "isError"))
		k->m->task_is_error = skim_true(k);
	else
		skim_value(k, NULL);
}

/* result.error of a failed task. */
static void skim_task_error_member(struct skim *k, const struct span *key)
{
	struct span v;

	skim_value(k, &v);
	if (key_is(key, "code") && !k->bad)
		k->m->task_error_code = strtoll(v.s, NULL, 10);
}

/* A member of result.content[0]: its first string "text" is kept. */
static void skim_first_content_member(struct skim *k, const struct span *key)
{
	struct span v;

	if (!k->error_text.s && key_is(key, "text") && skim_at(k, '"')) {
		if (skim_string(k, &v))
			k->error_text = v;
		return;
	}
	skim_value(k, NULL);
}

/* result.content: the span of the first text, in case the result turns out to be isError.
 * One pass: a content text is often most of a result's bytes. */
static void skim_content(struct skim *k)
{
	if (!skim_at(k, '[')) {
		skim_value(k, NULL);
		return;
	}
	k->p++;
	if (skim_at(k, ']')) {
		k->p++;
		return;
	}
	for (bool first = true; !k->bad; first = false) {
		if (first && skim_at(k, '{'))
			skim_object(k, skim_first_content_member);
		else
			skim_value(k, NULL);
		if (skim_at(k, ',')) {
			k->p++;
			continue;
		}
		skim_expect(k, ']');
		return;
	}
}

static void skim_result_member(struct skim *k, const struct span *key)
{
	struct rpc_msg *m = k->m;

	if (key_is(key, "resultType")) {
		skim_string_member(k, &m->result_type);
	} else if (key_is(key, "requestState")) {
		m->request_state = skim_hash_value(k);
	} else if (key_is(key, "_meta") && skim_at(k, '{')) {
		skim_object(k, skim_meta_member);
	} else if (key_is(key, "task") && skim_at(k, '{')) {
		m->task_nested = true;
		skim_object(k, skim_task_member);
	} else if (key_is(key, "result") && skim_at(k, '{')) {
		skim_object(k, skim_task_result_member);
	} else if (key_is(key, "error") && skim_at(k, '{')) {
		skim_object(k, skim_task_error_member);
	} else if (key_is(key, "content")) {
		skim_content(k);
	} else if (key_is(key, "isError")) {
		m->is_error = skim_true(k);
	} else if (!skim_task_field(k, key)) {
		skim_value(k, NULL);
	}
}

static void skim_error_member(struct skim *k, const struct span *key)
{
	struct span v;

	if (key_is(key, "message")) {
		skim_string_member(k, &k->m->error_message);
		return;
	}
	skim_value(k, &v);
	if (key_is(key, "code") && !k->bad)
		k->m->error_code = strtoll(v.s, NULL, 10);
}

static void skim_top_member(struct skim *k, const struct span *key)
{
	struct rpc_msg *m = k->m;

	if (key_is(key, "id")) {
		k->has_id = true;
		k->id_null = skim_at(k, 'n');
		skim_id(k, m->id, sizeof(m->id));
	} else if (key_is(key, "method") && skim_at(k, '"')) {
		k->has_method = true;
		skim_string_member(k, &m->method);
	} else if (key_is(key, "result")) {
		k->has_result = true;
		if (skim_at(k, '{'))
			skim_object(k, skim_result_member);
		else
			skim_value(k, NULL);
	} else if (key_is(key, "error") && skim_at(k, '{')) {
		k->has_error = true;
		skim_object(k, skim_error_member);
	} else if (key_is(key, "params") && skim_at(k, '{')) {
		skim_object(k, skim_params_member);
	} else {
		skim_value(k, NULL);
	}
}

/* At '{': moves to the value of member name (true), or past the object (false). */
static bool skim_find_member(struct skim *k, const char *name)
{
	struct span key;

	if (!skim_expect(k, '{'))
		return false;
	while (!k->bad) {
		skim_ws(k);
		if (k->p >= k->end || *k->p != '"' || !skim_string(k, &key) || !skim_expect(k, ':'))
			return false;
		if (key_is(&key, name))
			return true;
		skim_value(k, NULL);
		skim_ws(k);
		if (k->p >= k->end || *k->p != ',')
			return false;
		k->p++;
	}
	return false;
}

json_t *rpc_msg_head_array(const struct rpc_msg *m, const char *member, bool *cut)
{
	struct rpc_dom *d = m->dom;
	struct skim k = { .m = NULL };
	json_t *out;

	*cut = false;
	if (!d)
		return NULL;
	k.p = d->text;
	k.end = d->text + d->len;
	if (!skim_find_member(&k, "result") || !skim_at(&k, '{') || !skim_find_member(&k, member) ||
	    !skim_at(&k, '['))
		return NULL;
	out = json_array();
	k.p++;
	for (;;) {
		const char *start;
		json_t *el;

		skim_ws(&k);
		if (k.p < k.end && *k.p == ']')
			break;
		start = k.p;
		skim_value(&k, NULL);
		if (k.bad || k.p >= k.end || !(el = json_loadb(start, (size_t)(k.p - start), 0, NULL))) {
			*cut = true;
			break;
		}
		json_array_append_new(out, el);
		skim_ws(&k);
		if (k.p < k.end && *k.p == ',') {
			k.p++;
			continue;
		}
		*cut = k.p >= k.end || *k.p != ']';
		break;
	}
	return out;
}

/* Skims one message (text holds exactly it). false when the text is irregular. secret, when
 * given, is set if a string of it looks like a secret. */
static bool skim_message(struct skim *k, struct rpc_msg *m, const char *text, size_t len, bool *secret)
{
	k->p = text;
	k->end = text + len;
	k->text = text;
	k->secret = secret;
	k->bad = false;
	k->m = m;
	k->has_method = k->has_id = k->id_null = k->has_result = k->has_error = false;
	k->error_text.s = NULL;
	k->used = 0;
	skim_object(k, skim_top_member);
	skim_ws(k);
	if (k->bad || k->p != k->end)
		return false;
	if (m->is_error && k->error_text.s)
		m->error_text = skim_copy(k, &k->error_text, RPC_NAME_MAX);
	if (k->has_method && m->method) {
		m->kind = k->has_id && !k->id_null ? RPC_REQUEST : RPC_NOTIFICATION;
	} else if (k->has_result && k->has_id) {
		m->kind = RPC_RESULT;
	} else if (k->has_error) {
		m->kind = RPC_ERROR;
	} else {
		m->kind = RPC_INVALID;
	}
	if (m->kind == RPC_NOTIFICATION || k->id_null)
		m->id[0] = '\0';
	return true;
}

static void rpc_msg_init(struct rpc_msg *m, const struct frame *f, struct rpc_dom *dom)
{
	memset(m, 0, offsetof(struct rpc_msg, arg_keys));
	m->kind = RPC_INVALID;
	m->wire_len = f->wire_len;
	m->dom = dom;
}

/* --- tolerant envelope scan for oversized frames ------------------------------------ */

struct rpc_scan {
	char method[256];
	char id[RPC_ID_MAX];
	bool has_result, has_error, is_error;
	long long error_code;
};

static const char *scan_skip_ws(const char *p, const char *end)
{
	while (p < end && isspace((unsigned char)*p))
		p++;
	return p;
}

/* p at an opening quote; returns the position after the closing quote, or end. */
static const char *scan_string_end(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return end;
}

/* close at a closing quote; returns the string's opening quote (the nearest quote before
 * close preceded by an even run of backslashes), or NULL. Linear: a run of backslashes is
 * counted once, at the quote it precedes, then jumped over, so each byte is looked at no
 * more than twice (a tail of 64 KiB of backslashes cost ~2^31 steps when every quote
 * candidate counted its run again). */
static const char *scan_string_start(const char *t, const char *close)
{
	const char *v = close;

	while (v > t) {
		const char *run;

		if (*--v != '"')
			continue;
		for (run = v; run > t && run[-1] == '\\'; run--)
			;
		if ((v - run) % 2 == 0)
			return v;
		v = run;
	}
	return NULL;
}

/* Copies a scalar value (string with its quotes, number, literal) starting at p. */
static void scan_copy_scalar(const char *p, const char *end, char *out, size_t len)
{
	const char *v = p;
	size_t n;

	if (p < end && *p == '"')
		p = scan_string_end(p, end);
	else
		while (p < end && !strchr(",}] \t\r\n", *p))
			p++;
	n = (size_t)(p - v);
	if (n >= len)
		n = len - 1;
	memcpy(out, v, n);
	out[n] = '\0';
}

/* Forward over the head: members of the top-level object, and the direct members of its
 * "error" object (code) and "result" object (isError). */
static void scan_head(const char *p, const char *end, struct rpc_scan *s)
{
	char key[32] = "", parent[32] = "";
	int depth = 0;

	p = scan_skip_ws(p, end);
	if (p >= end || *p != '{')
		return;
	while (p < end) {
		if (*p == '"') {
			const char *ke = scan_string_end(p, end);
			const char *after = scan_skip_ws(ke, end);
			size_t n = (size_t)(ke - p) - 2;

			if (ke >= end || after >= end || *after != ':' || depth < 1 || depth > 2) {
				p = ke;
				continue;
			}
			if (n >= sizeof(key))
				n = sizeof(key) - 1;
			memcpy(key, p + 1, n);
			key[n] = '\0';
			p = scan_skip_ws(after + 1, end);
			if (depth == 1 && strcmp(key, "method") == 0 && p < end && *p == '"') {
				scan_copy_scalar(p, end, s->method, sizeof(s->method));
				n = strlen(s->method);
				if (n >= 2) { /* strip the quotes: method names carry no escapes */
					memmove(s->method, s->method + 1, n - 2);
					s->method[n - 2] = '\0';
				}
			} else if (depth == 1 && strcmp(key, "id") == 0 && !s->id[0]) {
				scan_copy_scalar(p, end, s->id, sizeof(s->id));
			} else if (depth == 1 && strcmp(key, "result") == 0) {
				s->has_result = true;
			} else if (depth == 1 && strcmp(key, "error") == 0) {
				s->has_error = true;
			} else if (depth == 2 && strcmp(parent, "error") == 0 && strcmp(key, "code") == 0) {
				char code[24]; /* the head is not NUL-terminated: parse a bounded copy */
				scan_copy_scalar(p, end, code, sizeof(code));
				s->error_code = strtoll(code, NULL, 10);
			} else if (depth == 2 && strcmp(parent, "result") == 0 && strcmp(key, "isError") == 0) {
				s->is_error = end - p >= 4 && memcmp(p, "true", 4) == 0;
			}
			continue;
		}
		if (*p == '{' || *p == '[') {
			if (depth == 1)
				memcpy(parent, key, sizeof(parent));
			depth++;
		} else if (*p == '}' || *p == ']') {
			depth--;
		}
		p++;
	}
}

/* Backwards over the tail: the TS SDK ends a response with "id":N} and puts "isError" as
 * the last member of result. Only a trailing id is trusted: an "id" elsewhere in the tail
 * may belong to the payload. */
static void scan_tail(const char *t, size_t len, struct rpc_scan *s)
{
	const char *end = t + len, *p = end, *v, *hit;
	static const char is_error_true[] = "\"isError\":true";

	while (p > t && isspace((unsigned char)p[-1]))
		p--;
	if (p > t && p[-1] == '}') {
		const char *close = --p;
		if (p > t && p[-1] == '"') { /* string id: back to its unescaped opening quote */
			v = scan_string_start(t, p - 1);
			if (!v)
				v = t;
		} else {
			v = p;
			while (v > t && (isdigit((unsigned char)v[-1]) || v[-1] == '-'))
				v--;
		}
		if (v - t >= 5 && memcmp(v - 5, "\"id\":", 5) == 0 && !s->id[0]) {
			size_t n = (size_t)(close - v);
			if (n >= sizeof(s->id))
				n = sizeof(s->id) - 1;
			memcpy(s->id, v, n);
			s->id[n] = '\0';
		}
	}
	hit = memmem(t, len, is_error_true, sizeof(is_error_true) - 1);
	if (hit)
		s->is_error = true;
	if (memmem(t, len, "\"result\":", 9))
		s->has_result = true;
}

static int rpc_decode_oversized(const struct frame *f, rpc_fn fn, void *ctx)
{
	struct rpc_scan s = { .error_code = 0 };
	struct rpc_dom head = { .text = f->data, .len = f->len, .head_only = true };
	struct rpc_msg m = { .kind = RPC_INVALID, .oversized = true, .wire_len = f->wire_len, .dom = &head };
	const char *p = scan_skip_ws(f->data, f->data + f->len);

	if (p >= f->data + f->len || (*p != '{' && *p != '['))
		return -1;
	scan_head(f->data, f->data + f->len, &s);
	scan_tail(f->tail, f->tail_len, &s);
	memcpy(m.id, s.id, sizeof(m.id));
	if (s.method[0]) {
		m.method = s.method;
		m.kind = s.id[0] ? RPC_REQUEST : RPC_NOTIFICATION;
	} else if (s.has_error && !s.has_result) {
		m.kind = RPC_ERROR;
		m.error_code = s.error_code;
	} else if (s.has_result && s.id[0]) {
		m.kind = RPC_RESULT;
		m.is_error = s.is_error;
	}
	fn(ctx, &m);
	return 1;
}


/* The slow path: jansson judges the frame; each object is re-serialised and skimmed. */
static int rpc_decode_parsed(const struct frame *f, struct skim *k, rpc_fn fn, void *ctx)
{
	json_t *root = json_loadb(f->data, f->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL), *el;
	size_t i, n;
	int count = 0;

	if (!root)
		return -1;
	n = json_is_array(root) ? json_array_size(root) : 1;
	for (i = 0; i < n || (n == 0 && i == 0); i++) {
		struct rpc_dom dom = { .parsed = true };
		struct rpc_msg m;
		char *text = NULL;

		el = json_is_array(root) ? json_array_get(root, i) : root;
		rpc_msg_init(&m, f, &dom);
		if (json_is_object(el) && (text = json_dumps(el, JSON_COMPACT)) &&
		    skim_message(k, &m, text, strlen(text), NULL)) {
			dom.root = el;
			dom.text = text;
			dom.len = strlen(text);
		} else {
			rpc_msg_init(&m, f, NULL);
		}
		fn(ctx, &m);
		free(text);
		count++;
		if (n == 0)
			break;
	}
	json_decref(root);
	return count;
}

int rpc_decode(const struct frame *f, rpc_fn fn, void *ctx)
{
	struct rpc_dom dom = { .text = f->data, .len = f->len };
	struct skim k;
	struct rpc_msg m;
	int n = 1;

	if (f->oversized)
		return rpc_decode_oversized(f, fn, ctx);
	rpc_msg_init(&m, f, &dom);
	if (f->len && f->data[0] == '{' && skim_message(&k, &m, f->data, f->len, &m.secret)) {
		m.secret_known = true;
		fn(ctx, &m);
	} else {
		n = rpc_decode_parsed(f, &k, fn, ctx);
	}
	if (dom.root)
		json_decref(dom.root);
	return n;
}

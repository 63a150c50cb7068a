/* rpc.c -- JSON-RPC 2.0 classification of frames.
 *
 * A normal frame is parsed whole with jansson and classified by which members it has, in
 * any order. An oversized frame (head and tail only) is never parsed: a tolerant scan
 * finds the envelope. The head is scanned forwards from the opening brace, tracking depth
 * and strings, for top-level members; the tail is checked for the TS SDK's layout, which
 * ends a response with ,"jsonrpc":"2.0","id":N} and puts isError at the end of result. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/rpc.h"

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

static void rpc_format_id(const json_t *id, char *buf, size_t len)
{
	size_t n;

	buf[0] = '\0';
	if (!id)
		return;
	if (json_is_integer(id)) {
		snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(id));
		return;
	}
	n = json_dumpb(id, buf, len - 1, JSON_ENCODE_ANY | JSON_COMPACT);
	buf[n < len ? n : len - 1] = '\0';
}

static void rpc_classify(json_t *obj, const struct frame *f, rpc_fn fn, void *ctx)
{
	struct rpc_msg m = { .kind = RPC_INVALID, .root = obj, .wire_len = f->wire_len };
	json_t *method, *id, *result, *error;

	if (!json_is_object(obj)) {
		fn(ctx, &m);
		return;
	}
	method = json_object_get(obj, "method");
	id = json_object_get(obj, "id");
	result = json_object_get(obj, "result");
	error = json_object_get(obj, "error");
	if (json_is_string(method)) {
		m.method = json_string_value(method);
		m.kind = (id && !json_is_null(id)) ? RPC_REQUEST : RPC_NOTIFICATION;
	} else if (result && id) {
		m.kind = RPC_RESULT;
		m.is_error = json_is_true(json_object_get(result, "isError"));
	} else if (json_is_object(error)) {
		m.kind = RPC_ERROR;
		m.error_code = json_integer_value(json_object_get(error, "code"));
		m.error_message = json_string_value(json_object_get(error, "message"));
	}
	if (m.kind != RPC_INVALID && m.kind != RPC_NOTIFICATION && !json_is_null(id))
		rpc_format_id(id, m.id, sizeof(m.id));
	fn(ctx, &m);
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
				s->error_code = strtoll(p, NULL, 10);
			} else if (depth == 2 && strcmp(parent, "result") == 0 && strcmp(key, "isError") == 0) {
				s->is_error = strncmp(p, "true", 4) == 0;
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
			for (v = p - 2; v >= t; v--) {
				const char *q = v;
				while (q > t && q[-1] == '\\')
					q--;
				if (*v == '"' && (v - q) % 2 == 0)
					break;
			}
			if (v < t)
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
	struct rpc_msg m = { .kind = RPC_INVALID, .oversized = true, .wire_len = f->wire_len };
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

int rpc_decode(const struct frame *f, rpc_fn fn, void *ctx)
{
	json_error_t err;
	json_t *root;
	int n = 1;

	if (f->oversized)
		return rpc_decode_oversized(f, fn, ctx);
	root = json_loadb(f->data, f->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
	if (!root)
		return -1;
	if (json_is_array(root)) {
		size_t i;
		json_t *el;

		n = (int)json_array_size(root);
		if (n == 0)
			rpc_classify(root, f, fn, ctx), n = 1;
		json_array_foreach(root, i, el)
			rpc_classify(el, f, fn, ctx);
	} else {
		rpc_classify(root, f, fn, ctx);
	}
	json_decref(root);
	return n;
}

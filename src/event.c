/* event.c -- names of event types and the one JSON rendering of an event.
 *
 * Every consumer that writes an event as JSON (the JSONL sink, the flight recorder, the
 * reports) goes through event_render(), so the wire format is defined in one place. It
 * writes through jsonw: straight into the caller's buffer, no DOM, no field ever lost.
 * Argument and result values appear only with capture_values; otherwise only the keys
 * of the arguments do. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpsonde/event.h"

static const char *const ev_type_names[EV__COUNT] = {
	[EV_CALL] = "call",
	[EV_NOTIFICATION] = "notification",
	[EV_SESSION] = "session",
	[EV_INVALID] = "invalid",
	[EV_STDERR] = "stderr",
	[EV_EXIT] = "exit",
	[EV_LOSS] = "loss",
	[EV_TOOLS_CHANGED] = "tools_changed",
	[EV_TOOLS_LIST] = "tools_list",
	[EV_MESSAGE] = "message",
	[EV_STALL] = "stall",
	[EV_BLOCKED_WRITE] = "blocked_write",
	[EV_STDIN_CLOSED] = "stdin_closed",
	[EV_REPORT] = "report",
	[EV_PROTOCOL_ERROR] = "protocol_error",
	[EV_HTTP] = "http",
	[EV_UNTRACKED] = "untracked",
};

const char *ev_type_name(enum ev_type t)
{
	return (unsigned)t < EV__COUNT ? ev_type_names[t] : "?";
}

const char *call_status_name(enum call_status s)
{
	switch (s) {
	case CALL_OK: return "ok";
	case CALL_ERROR: return "error";
	case CALL_TOOL_ERROR: return "tool_error";
	case CALL_CANCELLED: return "cancelled";
	case CALL_ORPHANED: return "orphaned";
	case CALL_INPUT_REQUIRED: return "input_required";
	case CALL_TASK: return "task";
	case CALL_PROBE_FAILED: return "probe_failed";
	case CALL_LOST: return "lost";
	case CALL_CLOSED: return "closed";
	case CALL_HTTP_ERROR: return "http_error";
	}
	return "?";
}

const char *call_direction_name(enum call_direction d)
{
	return d == DIR_CLIENT_TO_SERVER ? "client_to_server" : "server_to_client";
}

const char *session_identity_name(const struct session_identity *id)
{
	if (!id)
		return NULL;
	if (id->server_name && id->server_name[0])
		return id->server_name;
	if (id->program && id->program[0])
		return id->program;
	return id->comm;
}

const char *event_server_name(const struct sonde_event *ev, char *buf, size_t len)
{
	const struct ev_net *n = ev->net;

	if (n && n->client) {
		if (n->server_name && n->server_name[0])
			return n->server_name;
		if (n->server_address && n->server_port) {
			snprintf(buf, len, strchr(n->server_address, ':') ? "[%s]:%u" : "%s:%u", n->server_address,
				 n->server_port);
			return buf;
		}
		if (n->server_address)
			return n->server_address;
	}
	return ev->session ? session_identity_name(ev->session) : NULL;
}

/* Events come in bursts within the same second: its formatted form is kept. */
void event_format_time(uint64_t real_ns, char *buf, size_t len)
{
	static _Thread_local time_t cached_sec = (time_t)-1;
	static _Thread_local char cached[24];
	static _Thread_local size_t cached_len;
	time_t sec = (time_t)(real_ns / 1000000000ull);
	unsigned us = (unsigned)(real_ns % 1000000000ull / 1000);
	char frac[9] = { '.', 0, 0, 0, 0, 0, 0, 'Z', 0 };

	if (sec != cached_sec) {
		struct tm tm;
		gmtime_r(&sec, &tm);
		cached_len = strftime(cached, sizeof(cached), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = sec;
	}
	for (int i = 6; i >= 1; i--, us /= 10)
		frac[i] = (char)('0' + us % 10);
	if (len < cached_len + sizeof(frac)) {
		if (len)
			buf[0] = '\0';
		return;
	}
	memcpy(buf, cached, cached_len);
	memcpy(buf + cached_len, frac, sizeof(frac));
}

/* An id is kept as its JSON text; it is written back as the same JSON value. */
static void render_id(struct jsonw *w, const char *id)
{
	size_t n;
	json_t *v;
	char *end;
	long long num;

	if (!id || !id[0]) {
		jsonw_null(w);
		return;
	}
	num = strtoll(id, &end, 10); /* the common case, an integer, without a parse */
	if (*end == '\0' && end != id && (id[0] != '0' || id[1] == '\0')) {
		jsonw_int(w, num);
		return;
	}
	n = strlen(id);
	if (n >= 2 && id[0] == '"' && id[n - 1] == '"' && !memchr(id + 1, '\\', n - 2) && !memchr(id + 1, '"', n - 2)) {
		jsonw_stringn(w, id + 1, n - 2); /* a string without escapes: as parsing it would */
		return;
	}
	v = json_loads(id, JSON_DECODE_ANY, NULL);
	if (v)
		jsonw_value(w, v);
	else
		jsonw_string(w, id);
	json_decref(v);
}

static void render_name_version(struct jsonw *w, const char *key, const char *name, const char *version)
{
	if (!name && !version)
		return;
	jsonw_key(w, key);
	jsonw_object_open(w);
	jsonw_member_str(w, "name", name);
	jsonw_member_str(w, "version", version);
	jsonw_object_close(w);
}

/* The keys of an object, as an array of strings. */
static void render_keys(struct jsonw *w, const char *key, const json_t *obj)
{
	const char *k;
	json_t *v;

	jsonw_key(w, key);
	jsonw_array_open(w);
	json_object_foreach ((json_t *)obj, k, v)
		jsonw_string(w, k);
	jsonw_array_close(w);
}

static void render_call(struct jsonw *w, const struct ev_call *c, const struct event_format_opts *opts)
{
	jsonw_member_str(w, "method", c->method);
	jsonw_key(w, "id");
	render_id(w, c->id);
	jsonw_member_str(w, "tool", c->tool);
	jsonw_member_str(w, "status", call_status_name(c->status));
	if (c->status == CALL_ERROR || (c->status == CALL_PROBE_FAILED && c->error_code)) {
		jsonw_member_int(w, "error_code", c->error_code);
		jsonw_member_str(w, "error_name", c->error_name);
		jsonw_member_str(w, "error_message", c->error_message);
	}
	jsonw_member_ms(w, "duration_ms", c->duration_ns);
	if (c->rounds) {
		jsonw_member_int(w, "rounds", c->rounds);
		jsonw_member_ms(w, "logical_duration_ms", c->logical_ns);
		jsonw_member_ms(w, "input_wait_ms", c->input_wait_ns);
	}
	jsonw_member_str(w, "task_id", c->task_id);
	jsonw_member_str(w, "task_status", c->task_status);
	if (c->http_status)
		jsonw_member_int(w, "http_status", c->http_status);
	jsonw_member_str(w, "header_mismatch", c->header_mismatch);
	if (c->unknown_tool)
		jsonw_member_bool(w, "unknown_tool", true);
	jsonw_member_int(w, "request_bytes", (long long)c->request_bytes);
	jsonw_member_int(w, "response_bytes", (long long)c->response_bytes);
	jsonw_member_str(w, "direction", call_direction_name(c->direction));
	if (c->arguments && json_is_object(c->arguments)) {
		render_keys(w, "arg_keys", c->arguments);
	} else if (c->tool && c->method && strcmp(c->method, "tools/call") == 0) {
		jsonw_key(w, "arg_keys");
		jsonw_array_open(w);
		jsonw_array_close(w);
	}
	if (c->schema_violations) {
		jsonw_key(w, "schema_violations");
		jsonw_value(w, c->schema_violations);
	}
	if (c->oversized)
		jsonw_member_bool(w, "oversized", true);
	if (c->secret)
		jsonw_member_bool(w, "secret", true);
	if (opts && opts->capture_values) {
		if (c->arguments) {
			jsonw_key(w, "arguments");
			jsonw_value(w, c->arguments);
		}
		if (c->result) {
			jsonw_key(w, c->status == CALL_ERROR ? "error" : "result");
			jsonw_value(w, c->result);
		}
	}
}

const char *event_signal_name(int sig, char *buf, size_t len)
{
	const char *abbrev = sigabbrev_np(sig);

	if (abbrev)
		snprintf(buf, len, "SIG%s", abbrev);
	else
		snprintf(buf, len, "signal %d", sig);
	return buf;
}

static void render_exit(struct jsonw *w, const struct ev_exit *x)
{
	if (x->signal) {
		char name[32];
		jsonw_key(w, "signal");
		if (sigabbrev_np(x->signal))
			jsonw_string(w, event_signal_name(x->signal, name, sizeof(name)));
		else
			jsonw_int(w, x->signal);
	} else {
		jsonw_member_int(w, "exit_code", x->exit_code);
	}
	jsonw_member_bool(w, "core_dumped", x->core_dumped);
	jsonw_member_bool(w, "oom_killed", x->oom_killed);
	jsonw_member_bool(w, "stdin_closed", x->stdin_closed);
	jsonw_member_bool(w, "normal", x->normal);
	jsonw_member_str(w, "reason", x->reason);
	jsonw_member_int(w, "pending_calls", x->pending_calls);
	if (x->lost_calls)
		jsonw_member_int(w, "lost_calls", x->lost_calls);
}

void proc_ref_assign(struct proc_ref *dst, const struct proc_ref *src)
{
	const struct attrib_record *old = dst->where;

	*dst = *src;
	attrib_record_hold(dst->where);
	attrib_record_release(old);
}

void proc_ref_clear(struct proc_ref *r)
{
	attrib_record_release(r->where);
	memset(r, 0, sizeof(*r));
}

/* A process other than the server: what names it, what identifies it, and where it runs
 * when that is not the server's own container (an agent in another pod, or on the host). */
static void render_proc_ref(struct jsonw *w, const char *key, const struct proc_ref *r,
			    const struct attrib_record *server)
{
	if (!r->pid)
		return;
	jsonw_key(w, key);
	jsonw_object_open(w);
	jsonw_member_int(w, "pid", r->pid);
	jsonw_member_int(w, "start_ticks", (long long)r->start_ticks);
	jsonw_member_str(w, "comm", r->comm);
	if (r->exe[0])
		jsonw_member_str(w, "exe", r->exe);
	if (attrib_same_container(r->where, server))
		jsonw_member_bool(w, "same_container", true);
	else
		event_render_resource(w, r->where);
	jsonw_object_close(w);
}

json_t *proc_ref_json(const struct proc_ref *r, const struct attrib_record *server)
{
	json_t *o, *res;

	if (!r->pid)
		return NULL;
	o = json_object();
	json_object_set_new(o, "pid", json_integer(r->pid));
	json_object_set_new(o, "start_ticks", json_integer((json_int_t)r->start_ticks));
	json_object_set_new(o, "comm", json_string(r->comm));
	if (r->exe[0])
		json_object_set_new(o, "exe", json_string(r->exe));
	if (attrib_same_container(r->where, server))
		json_object_set_new(o, "same_container", json_true());
	else if ((res = event_resource_json(r->where)))
		json_object_set_new(o, "resource", res);
	return o;
}

json_t *event_resource_json(const struct attrib_record *where)
{
	struct attrib_attr attrs[ATTRIB_ATTRS_MAX];
	json_t *res;
	size_t n;

	if (!where || where->role == ATTRIB_ROLE_HOST || !(res = json_object()))
		return NULL;
	n = attrib_attributes(where, attrs);
	for (size_t i = 0; i < n; i++)
		json_object_set_new(res, attrs[i].key, json_string(attrs[i].value));
	return res;
}

static void render_session(struct jsonw *w, const struct session_identity *id)
{
	jsonw_member_str(w, "protocol_version", id->protocol_version);
	render_name_version(w, "client", id->client_name, id->client_version);
	render_name_version(w, "server_info", id->server_name, id->server_version);
	jsonw_member_str(w, "comm", id->comm);
	jsonw_member_str(w, "program", id->program);
	jsonw_member_str(w, "cmdline", id->cmdline);
	jsonw_member_str(w, "transport", id->transport);
	jsonw_member_str(w, "stdio", id->stdio);
	jsonw_member_str(w, "found", id->discovered ? "discovered" : "attached");
	render_proc_ref(w, "client_process", &id->client_process, id->where);
	render_proc_ref(w, "relay", &id->relay, id->where);
	event_render_resource(w, id->where);
}

void event_render_resource(struct jsonw *w, const struct attrib_record *where)
{
	struct attrib_attr attrs[ATTRIB_ATTRS_MAX];
	size_t n;

	if (!where || where->role == ATTRIB_ROLE_HOST)
		return;
	n = attrib_attributes(where, attrs);
	jsonw_key(w, "resource");
	jsonw_object_open(w);
	for (size_t i = 0; i < n; i++)
		jsonw_member_str(w, attrs[i].key, attrs[i].value);
	jsonw_object_close(w);
}

static void render_message(struct jsonw *w, const struct ev_message *m, const struct event_format_opts *opts)
{
	jsonw_member_str(w, "direction", call_direction_name(m->direction));
	jsonw_member_str(w, "kind", m->kind);
	jsonw_member_str(w, "method", m->method);
	if (m->id && m->id[0]) {
		jsonw_key(w, "id");
		render_id(w, m->id);
	}
	jsonw_member_int(w, "bytes", (long long)m->bytes);
	if (m->root && json_is_object(m->root)) {
		if (opts && opts->capture_values) {
			jsonw_key(w, "message");
			jsonw_value(w, m->root);
		} else {
			render_keys(w, "keys", m->root);
		}
	}
}

static void render_stall(struct jsonw *w, const struct ev_stall *st)
{
	jsonw_member_str(w, "method", st->method);
	jsonw_key(w, "id");
	render_id(w, st->id);
	jsonw_member_str(w, "tool", st->tool);
	jsonw_member_ms(w, "pending_ms", st->pending_ns);
	if (st->since_progress_ns)
		jsonw_member_ms(w, "since_progress_ms", st->since_progress_ns);
	jsonw_member_str(w, "task_id", st->task_id);
	jsonw_member_str(w, "task_status", st->task_status);
	if (st->task_id)
		jsonw_member_ms(w, "since_poll_ms", st->since_poll_ns);
	if (st->state) {
		char state[2] = { st->state, 0 };
		jsonw_member_str(w, "state", state);
	}
	jsonw_member_ms(w, "cpu_ms", st->cpu_ns);
	jsonw_member_int(w, "threads", st->threads);
	if (st->wchan && st->wchan[0])
		jsonw_member_str(w, "wchan", st->wchan);
}

/* Where the event's message travelled, when not on stdio. */
static void render_net(struct jsonw *w, const struct ev_net *n)
{
	jsonw_key(w, "net");
	jsonw_object_open(w);
	jsonw_member_str(w, "transport", n->transport);
	jsonw_member_str(w, "side", n->client ? "client" : "server");
	if (n->local && n->local[0])
		jsonw_member_str(w, "local", n->local);
	if (n->peer && n->peer[0])
		jsonw_member_str(w, "peer", n->peer);
	jsonw_member_str(w, "session_id", n->session_id);
	if (n->client) {
		jsonw_member_str(w, "server_address", n->server_address);
		if (n->server_port)
			jsonw_member_int(w, "server_port", n->server_port);
		render_name_version(w, "server_info", n->server_name, n->server_version);
	}
	jsonw_object_close(w);
}

static void render_http(struct jsonw *w, const struct ev_http *h)
{
	jsonw_member_str(w, "method", h->method);
	jsonw_member_str(w, "target", h->target);
	if (h->status)
		jsonw_member_int(w, "status", h->status);
	jsonw_member_str(w, "end", h->end);
	jsonw_member_str(w, "mcp_method", h->mcp_method);
	jsonw_member_int(w, "requests", h->requests);
	if (h->unanswered)
		jsonw_member_int(w, "unanswered", h->unanswered);
	if (h->sse)
		jsonw_member_bool(w, "sse", true);
	if (h->duration_ns)
		jsonw_member_ms(w, "duration_ms", h->duration_ns);
	jsonw_member_bool(w, "failed", h->failed);
}

void event_render(struct outbuf *out, const struct sonde_event *ev, const struct event_format_opts *opts)
{
	struct jsonw w;
	char ts[40];

	jsonw_begin(&w, out);
	jsonw_object_open(&w);
	jsonw_member_str(&w, "type", ev_type_name(ev->type));
	event_format_time(ev->real_ns, ts, sizeof(ts));
	jsonw_member_str(&w, "ts", ts);
	jsonw_member_int(&w, "pid", ev->pid);
	if (ev->session && ev->session->start_ticks)
		jsonw_member_int(&w, "start_ticks", (long long)ev->session->start_ticks);
	jsonw_key(&w, "server");
	jsonw_string(&w, ev->session ? session_identity_name(ev->session) : NULL);

	switch (ev->type) {
	case EV_CALL:
		render_call(&w, &ev->call, opts);
		break;
	case EV_NOTIFICATION:
		jsonw_member_str(&w, "method", ev->notification.method);
		jsonw_member_str(&w, "direction", call_direction_name(ev->notification.direction));
		jsonw_member_int(&w, "bytes", (long long)ev->notification.bytes);
		jsonw_member_str(&w, "subscription_id", ev->notification.subscription_id);
		if (opts && opts->capture_values && ev->notification.params) {
			jsonw_key(&w, "params");
			jsonw_value(&w, ev->notification.params);
		}
		break;
	case EV_SESSION:
		if (ev->session)
			render_session(&w, ev->session);
		break;
	case EV_INVALID:
		jsonw_member_int(&w, "fd", ev->invalid.fd);
		jsonw_member_int(&w, "bytes", (long long)ev->invalid.bytes);
		jsonw_member_str(&w, "preview", ev->invalid.preview);
		jsonw_member_bool(&w, "json", ev->invalid.json);
		jsonw_member_int(&w, "frames", (long long)ev->invalid.frames);
		if (ev->invalid.coalesced)
			jsonw_member_bool(&w, "coalesced", true);
		break;
	case EV_STDERR:
		jsonw_member_str(&w, "line", ev->stderr_line.line);
		break;
	case EV_EXIT:
		render_exit(&w, &ev->exit);
		break;
	case EV_LOSS:
		jsonw_member_str(&w, "reason", ev->loss.reason);
		if (ev->loss.bytes)
			jsonw_member_int(&w, "bytes", (long long)ev->loss.bytes);
		if (ev->loss.records)
			jsonw_member_int(&w, "records", (long long)ev->loss.records);
		if (ev->loss.fd >= 0)
			jsonw_member_int(&w, "fd", ev->loss.fd);
		break;
	case EV_TOOLS_CHANGED:
		if (ev->tools.change) {
			const char *k;
			json_t *v;
			json_object_foreach (ev->tools.change, k, v) {
				jsonw_key(&w, k);
				jsonw_value(&w, v);
			}
		}
		break;
	case EV_TOOLS_LIST:
		jsonw_member_int(&w, "count", ev->tools.count);
		jsonw_member_int(&w, "kept", ev->tools.kept);
		if (ev->tools.truncated)
			jsonw_member_bool(&w, "truncated", true);
		break;
	case EV_MESSAGE:
		render_message(&w, &ev->message, opts);
		break;
	case EV_STALL:
		render_stall(&w, &ev->stall);
		break;
	case EV_BLOCKED_WRITE:
		jsonw_member_int(&w, "fd", ev->blocked_write.fd);
		jsonw_member_ms(&w, "blocked_ms", ev->blocked_write.blocked_ns);
		jsonw_member_int(&w, "bytes", (long long)ev->blocked_write.bytes);
		break;
	case EV_STDIN_CLOSED:
		jsonw_member_bool(&w, "lingering", ev->stdin_closed.lingering);
		if (ev->stdin_closed.lingering)
			jsonw_member_ms(&w, "since_ms", ev->stdin_closed.since_ns);
		break;
	case EV_REPORT:
		jsonw_member_str(&w, "path", ev->report.path);
		break;
	case EV_PROTOCOL_ERROR:
		jsonw_member_int(&w, "error_code", ev->protocol_error.error_code);
		jsonw_member_str(&w, "error_name", ev->protocol_error.error_name);
		jsonw_member_str(&w, "error_message", ev->protocol_error.error_message);
		jsonw_member_str(&w, "direction", call_direction_name(ev->protocol_error.direction));
		jsonw_member_int(&w, "bytes", (long long)ev->protocol_error.bytes);
		break;
	case EV_HTTP:
		render_http(&w, &ev->http);
		break;
	case EV_UNTRACKED:
		jsonw_member_str(&w, "reason", ev->untracked.reason);
		break;
	case EV__COUNT:
		break;
	}
	if (ev->net)
		render_net(&w, ev->net);
	jsonw_object_close(&w);
}

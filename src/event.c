/* event.c -- names of event types and the one JSON rendering of an event.
 *
 * Every consumer that writes an event as JSON (the JSONL sink, the flight recorder, the
 * reports) goes through event_to_json(), so the wire format is defined in one place.
 * Argument and result values appear only with capture_values; otherwise only the keys
 * of the arguments do. */
#include <inttypes.h>
#include <math.h>
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

void event_format_time(uint64_t real_ns, char *buf, size_t len)
{
	time_t sec = (time_t)(real_ns / 1000000000ull);
	struct tm tm;
	size_t n;

	gmtime_r(&sec, &tm);
	n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%06uZ", (unsigned)(real_ns % 1000000000ull / 1000));
}

/* Milliseconds with microsecond precision, as a JSON number. */
static json_t *json_ms(uint64_t ns)
{
	return json_real(round((double)ns / 1000.0) / 1000.0);
}

static void json_set_str(json_t *o, const char *key, const char *v)
{
	if (v)
		json_object_set_new(o, key, json_string(v));
}

/* An id is kept as its JSON text; it is written back as the same JSON value. */
static json_t *json_id(const char *id)
{
	json_t *v;
	char *end;
	long long n;

	if (!id || !id[0])
		return json_null();
	n = strtoll(id, &end, 10); /* the common case, an integer, without a parse */
	if (*end == '\0' && end != id && (id[0] != '0' || id[1] == '\0'))
		return json_integer(n);
	v = json_loads(id, JSON_DECODE_ANY, NULL);
	return v ? v : json_string(id);
}

static json_t *json_name_version(const char *name, const char *version)
{
	json_t *o;

	if (!name && !version)
		return NULL;
	o = json_object();
	json_set_str(o, "name", name);
	json_set_str(o, "version", version);
	return o;
}

static void event_call_json(json_t *o, const struct ev_call *c, const struct event_format_opts *opts)
{
	json_set_str(o, "method", c->method);
	json_object_set_new(o, "id", json_id(c->id));
	json_set_str(o, "tool", c->tool);
	json_object_set_new(o, "status", json_string(call_status_name(c->status)));
	if (c->status == CALL_ERROR || (c->status == CALL_PROBE_FAILED && c->error_code)) {
		json_object_set_new(o, "error_code", json_integer(c->error_code));
		json_set_str(o, "error_name", c->error_name);
		json_set_str(o, "error_message", c->error_message);
	}
	json_object_set_new(o, "duration_ms", json_ms(c->duration_ns));
	if (c->rounds) {
		json_object_set_new(o, "rounds", json_integer(c->rounds));
		json_object_set_new(o, "logical_duration_ms", json_ms(c->logical_ns));
		json_object_set_new(o, "input_wait_ms", json_ms(c->input_wait_ns));
	}
	json_set_str(o, "task_id", c->task_id);
	json_set_str(o, "task_status", c->task_status);
	if (c->unknown_tool)
		json_object_set_new(o, "unknown_tool", json_true());
	json_object_set_new(o, "request_bytes", json_integer((json_int_t)c->request_bytes));
	json_object_set_new(o, "response_bytes", json_integer((json_int_t)c->response_bytes));
	json_object_set_new(o, "direction", json_string(call_direction_name(c->direction)));
	if (c->arguments && json_is_object(c->arguments)) {
		json_t *keys = json_array();
		const char *k;
		json_t *v;

		json_object_foreach((json_t *)c->arguments, k, v)
			json_array_append_new(keys, json_string(k));
		json_object_set_new(o, "arg_keys", keys);
	} else if (c->tool && c->method && strcmp(c->method, "tools/call") == 0) {
		json_object_set_new(o, "arg_keys", json_array());
	}
	if (c->schema_violations)
		json_object_set(o, "schema_violations", c->schema_violations);
	if (c->oversized)
		json_object_set_new(o, "oversized", json_true());
	if (opts && opts->capture_values) {
		if (c->arguments)
			json_object_set(o, "arguments", (json_t *)c->arguments);
		if (c->result)
			json_object_set(o, c->status == CALL_ERROR ? "error" : "result", (json_t *)c->result);
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

static json_t *json_signal_name(int sig)
{
	char name[32];

	if (!sigabbrev_np(sig))
		return json_integer(sig);
	return json_string(event_signal_name(sig, name, sizeof(name)));
}

static void event_exit_json(json_t *o, const struct ev_exit *x)
{
	if (x->signal)
		json_object_set_new(o, "signal", json_signal_name(x->signal));
	else
		json_object_set_new(o, "exit_code", json_integer(x->exit_code));
	json_object_set_new(o, "core_dumped", json_boolean(x->core_dumped));
	json_object_set_new(o, "oom_killed", json_boolean(x->oom_killed));
	json_object_set_new(o, "stdin_closed", json_boolean(x->stdin_closed));
	json_object_set_new(o, "normal", json_boolean(x->normal));
	json_set_str(o, "reason", x->reason);
	json_object_set_new(o, "pending_calls", json_integer(x->pending_calls));
	if (x->lost_calls)
		json_object_set_new(o, "lost_calls", json_integer(x->lost_calls));
}

static void event_session_json(json_t *o, const struct session_identity *id)
{
	json_t *v;

	json_set_str(o, "protocol_version", id->protocol_version);
	if ((v = json_name_version(id->client_name, id->client_version)))
		json_object_set_new(o, "client", v);
	if ((v = json_name_version(id->server_name, id->server_version)))
		json_object_set_new(o, "server_info", v);
	json_set_str(o, "comm", id->comm);
	json_set_str(o, "program", id->program);
	json_set_str(o, "cmdline", id->cmdline);
	json_set_str(o, "transport", id->transport);
	json_set_str(o, "stdio", id->stdio);
}

json_t *event_to_json(const struct sonde_event *ev, const struct event_format_opts *opts)
{
	json_t *o = json_object();
	char ts[40];

	json_object_set_new(o, "type", json_string(ev_type_name(ev->type)));
	event_format_time(ev->real_ns, ts, sizeof(ts));
	json_object_set_new(o, "ts", json_string(ts));
	json_object_set_new(o, "pid", json_integer(ev->pid));
	json_object_set_new(o, "server", ev->session ? json_string(session_identity_name(ev->session)) : json_null());

	switch (ev->type) {
	case EV_CALL:
		event_call_json(o, &ev->call, opts);
		break;
	case EV_NOTIFICATION:
		json_set_str(o, "method", ev->notification.method);
		json_object_set_new(o, "direction", json_string(call_direction_name(ev->notification.direction)));
		json_object_set_new(o, "bytes", json_integer((json_int_t)ev->notification.bytes));
		json_set_str(o, "subscription_id", ev->notification.subscription_id);
		if (opts && opts->capture_values && ev->notification.params)
			json_object_set(o, "params", (json_t *)ev->notification.params);
		break;
	case EV_SESSION:
		if (ev->session)
			event_session_json(o, ev->session);
		break;
	case EV_INVALID:
		json_object_set_new(o, "fd", json_integer(ev->invalid.fd));
		json_object_set_new(o, "bytes", json_integer((json_int_t)ev->invalid.bytes));
		json_set_str(o, "preview", ev->invalid.preview);
		json_object_set_new(o, "json", json_boolean(ev->invalid.json));
		break;
	case EV_STDERR:
		json_set_str(o, "line", ev->stderr_line.line);
		break;
	case EV_EXIT:
		event_exit_json(o, &ev->exit);
		break;
	case EV_LOSS:
		json_set_str(o, "reason", ev->loss.reason);
		if (ev->loss.bytes)
			json_object_set_new(o, "bytes", json_integer((json_int_t)ev->loss.bytes));
		if (ev->loss.records)
			json_object_set_new(o, "records", json_integer((json_int_t)ev->loss.records));
		if (ev->loss.fd >= 0)
			json_object_set_new(o, "fd", json_integer(ev->loss.fd));
		break;
	case EV_TOOLS_CHANGED:
		if (ev->tools.change)
			json_object_update(o, ev->tools.change);
		break;
	case EV_TOOLS_LIST:
		json_object_set_new(o, "count", json_integer(ev->tools.count));
		json_object_set_new(o, "kept", json_integer(ev->tools.kept));
		if (ev->tools.truncated)
			json_object_set_new(o, "truncated", json_true());
		break;
	case EV_MESSAGE:
		json_object_set_new(o, "direction", json_string(call_direction_name(ev->message.direction)));
		json_set_str(o, "kind", ev->message.kind);
		json_set_str(o, "method", ev->message.method);
		if (ev->message.id && ev->message.id[0])
			json_object_set_new(o, "id", json_id(ev->message.id));
		json_object_set_new(o, "bytes", json_integer((json_int_t)ev->message.bytes));
		if (ev->message.root && json_is_object(ev->message.root)) {
			if (opts && opts->capture_values) {
				json_object_set(o, "message", (json_t *)ev->message.root);
			} else {
				json_t *keys = json_array();
				const char *k;
				json_t *v;

				json_object_foreach((json_t *)ev->message.root, k, v)
					json_array_append_new(keys, json_string(k));
				json_object_set_new(o, "keys", keys);
			}
		}
		break;
	case EV_STALL:
		json_set_str(o, "method", ev->stall.method);
		json_object_set_new(o, "id", json_id(ev->stall.id));
		json_set_str(o, "tool", ev->stall.tool);
		json_object_set_new(o, "pending_ms", json_ms(ev->stall.pending_ns));
		if (ev->stall.since_progress_ns)
			json_object_set_new(o, "since_progress_ms", json_ms(ev->stall.since_progress_ns));
		json_set_str(o, "task_id", ev->stall.task_id);
		json_set_str(o, "task_status", ev->stall.task_status);
		if (ev->stall.task_id)
			json_object_set_new(o, "since_poll_ms", json_ms(ev->stall.since_poll_ns));
		if (ev->stall.state) {
			char st[2] = { ev->stall.state, 0 };
			json_object_set_new(o, "state", json_string(st));
		}
		json_object_set_new(o, "cpu_ms", json_ms(ev->stall.cpu_ns));
		json_object_set_new(o, "threads", json_integer(ev->stall.threads));
		if (ev->stall.wchan && ev->stall.wchan[0])
			json_set_str(o, "wchan", ev->stall.wchan);
		break;
	case EV_BLOCKED_WRITE:
		json_object_set_new(o, "fd", json_integer(ev->blocked_write.fd));
		json_object_set_new(o, "blocked_ms", json_ms(ev->blocked_write.blocked_ns));
		json_object_set_new(o, "bytes", json_integer((json_int_t)ev->blocked_write.bytes));
		break;
	case EV_STDIN_CLOSED:
		json_object_set_new(o, "lingering", json_boolean(ev->stdin_closed.lingering));
		if (ev->stdin_closed.lingering)
			json_object_set_new(o, "since_ms", json_ms(ev->stdin_closed.since_ns));
		break;
	case EV_REPORT:
		json_set_str(o, "path", ev->report.path);
		break;
	case EV_PROTOCOL_ERROR:
		json_object_set_new(o, "error_code", json_integer(ev->protocol_error.error_code));
		json_set_str(o, "error_name", ev->protocol_error.error_name);
		json_set_str(o, "error_message", ev->protocol_error.error_message);
		json_object_set_new(o, "direction", json_string(call_direction_name(ev->protocol_error.direction)));
		json_object_set_new(o, "bytes", json_integer((json_int_t)ev->protocol_error.bytes));
		break;
	case EV__COUNT:
		break;
	}
	return o;
}

/* sink_text.c -- human-readable output: one line per call, notification, exit...
 *
 *   19:18:25.123456 server-everything[4242] tools/call echo #3 ok 0.412 ms  45 B -> 120 B
 *
 * Times are local wall-clock; the JSONL sink carries the exact UTC timestamps. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpsonde/sink.h"

struct sink_text {
	struct sink base;
	FILE *out;
	struct event_format_opts opts;
};

static void text_prefix(FILE *out, const struct sonde_event *ev)
{
	time_t sec = (time_t)(ev->real_ns / 1000000000ull);
	struct tm tm;
	char hms[16];

	localtime_r(&sec, &tm);
	strftime(hms, sizeof(hms), "%H:%M:%S", &tm);
	fprintf(out, "%s.%06u %s[%u] ", hms, (unsigned)(ev->real_ns % 1000000000ull / 1000),
		ev->session ? session_identity_name(ev->session) : "-", ev->pid);
}

static void text_call(FILE *out, const struct ev_call *c)
{
	fprintf(out, "%s%s%s%s #%s %s", c->direction == DIR_SERVER_TO_CLIENT ? "(to client) " : "",
		c->method ? c->method : "?", c->tool ? " " : "", c->tool ? c->tool : "", c->id,
		call_status_name(c->status));
	if (c->status == CALL_ERROR || (c->status == CALL_PROBE_FAILED && c->error_code))
		fprintf(out, " %lld%s%s%s%s", c->error_code, c->error_name ? " " : "", c->error_name ? c->error_name : "",
			c->error_message ? " " : "", c->error_message ? c->error_message : "");
	if (c->task_id)
		fprintf(out, " task %s %s", c->task_id, c->task_status ? c->task_status : "");
	fprintf(out, " %.3f ms  %" PRIu64 " B -> %" PRIu64 " B%s%s", (double)c->duration_ns / 1e6, c->request_bytes,
		c->response_bytes, c->oversized ? " (oversized)" : "", c->unknown_tool ? " (unknown tool)" : "");
	if (c->rounds && c->task_id)
		fprintf(out, "  [task of %u exchanges]", c->rounds);
	else if (c->rounds)
		fprintf(out, "  [%u rounds, %.3f ms in all, %.3f ms waiting for input]", c->rounds,
			(double)c->logical_ns / 1e6, (double)c->input_wait_ns / 1e6);
	fputc('\n', out);
	if (c->schema_violations && json_array_size(c->schema_violations)) {
		char *v = json_dumps(c->schema_violations, JSON_COMPACT);
		fprintf(out, "    schema violations: %s\n", v ? v : "?");
		free(v);
	}
}

/* Only what is known: attached mid-session, that is the command line alone. */
static void text_session(FILE *out, const struct session_identity *id)
{
	fputs("session:", out);
	if (id->protocol_version)
		fprintf(out, " protocol %s,", id->protocol_version);
	if (id->client_name)
		fprintf(out, " client %s %s,", id->client_name, id->client_version ? id->client_version : "");
	if (id->server_name)
		fprintf(out, " server %s %s,", id->server_name, id->server_version ? id->server_version : "");
	if (!id->initialized_ns)
		fputs(" attached mid-session,", out);
	fprintf(out, " %s over %s\n", id->cmdline ? id->cmdline : id->comm, id->stdio ? id->stdio : "stdio");
}

static void sink_text_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct sink_text *t = (struct sink_text *)s;
	FILE *out = t->out;

	if (ev->type == EV_MESSAGE || (ev->type == EV_TOOLS_LIST && !ev->tools.truncated))
		return;
	text_prefix(out, ev);
	switch (ev->type) {
	case EV_CALL:
		text_call(out, &ev->call);
		break;
	case EV_NOTIFICATION:
		fprintf(out, "%s %s\n", ev->notification.direction == DIR_CLIENT_TO_SERVER ? "<-" : "->",
			ev->notification.method);
		break;
	case EV_SESSION:
		text_session(out, ev->session);
		break;
	case EV_INVALID:
		fprintf(out, "INVALID frame on fd %d (%" PRIu64 " B): %s\n", ev->invalid.fd, ev->invalid.bytes,
			ev->invalid.preview ? ev->invalid.preview : "");
		break;
	case EV_STDERR:
		fprintf(out, "stderr: %s\n", ev->stderr_line.line);
		break;
	case EV_EXIT: {
		const struct ev_exit *x = &ev->exit;
		char sig[32];

		if (x->signal)
			fprintf(out, "exit: killed by %s%s", event_signal_name(x->signal, sig, sizeof(sig)),
				x->core_dumped ? " (core dumped)" : "");
		else
			fprintf(out, "exit: code %d", x->exit_code);
		fprintf(out, " [%s%s%s], %u call(s) pending\n", x->reason, x->oom_killed ? ", OOM" : "",
			x->normal ? ", normal" : ", abnormal", x->pending_calls);
		break;
	}
	case EV_LOSS:
		fprintf(out, "LOSS: %s %" PRIu64 " B %" PRIu64 " record(s)\n", ev->loss.reason, ev->loss.bytes,
			ev->loss.records);
		break;
	case EV_TOOLS_CHANGED: {
		char *c = ev->tools.change ? json_dumps(ev->tools.change, JSON_COMPACT) : NULL;
		fprintf(out, "tools changed: %s\n", c ? c : "");
		free(c);
		break;
	}
	case EV_STALL:
		fprintf(out, "STALL: %s%s%s #%s pending %.1f s, state %c, cpu %.1f ms, %u threads%s%s",
			ev->stall.method ? ev->stall.method : "?", ev->stall.tool ? " " : "",
			ev->stall.tool ? ev->stall.tool : "", ev->stall.id ? ev->stall.id : "",
			(double)ev->stall.pending_ns / 1e9, ev->stall.state ? ev->stall.state : '?',
			(double)ev->stall.cpu_ns / 1e6, ev->stall.threads,
			ev->stall.wchan && ev->stall.wchan[0] ? ", wchan " : "", ev->stall.wchan ? ev->stall.wchan : "");
		if (ev->stall.since_progress_ns)
			fprintf(out, ", last progress %.1f s ago", (double)ev->stall.since_progress_ns / 1e9);
		if (ev->stall.task_id)
			fprintf(out, ", task %s %s, last poll %.1f s ago", ev->stall.task_id,
				ev->stall.task_status ? ev->stall.task_status : "", (double)ev->stall.since_poll_ns / 1e9);
		fputc('\n', out);
		break;
	case EV_BLOCKED_WRITE:
		fprintf(out, "BLOCKED WRITE on fd %d for %.1f s (%" PRIu64 " B): the client is not reading\n",
			ev->blocked_write.fd, (double)ev->blocked_write.blocked_ns / 1e9, ev->blocked_write.bytes);
		break;
	case EV_STDIN_CLOSED:
		if (ev->stdin_closed.lingering)
			fprintf(out, "still running %.1f s after the client closed stdin\n",
				(double)ev->stdin_closed.since_ns / 1e9);
		else
			fprintf(out, "client closed stdin\n");
		break;
	case EV_REPORT:
		fprintf(out, "report written: %s\n", ev->report.path);
		break;
	case EV_PROTOCOL_ERROR:
		fprintf(out, "PROTOCOL ERROR %s: %lld %s %s\n",
			ev->protocol_error.direction == DIR_SERVER_TO_CLIENT ? "from the server" : "from the client",
			ev->protocol_error.error_code, ev->protocol_error.error_name ? ev->protocol_error.error_name : "",
			ev->protocol_error.error_message ? ev->protocol_error.error_message : "");
		break;
	case EV_TOOLS_LIST:
		fprintf(out, "tools/list: %u tools, %u in the catalog: drift and argument checks cover those only\n",
			ev->tools.count, ev->tools.kept);
		break;
	case EV_MESSAGE:
	case EV__COUNT:
		break;
	}
	fflush(out);
}

static void sink_text_close(struct sink *s)
{
	struct sink_text *t = (struct sink_text *)s;

	fflush(t->out);
	free(t);
}

struct sink *sink_text_new(FILE *out, const struct event_format_opts *opts)
{
	struct sink_text *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->base.name = "text";
	t->base.on_event = sink_text_on_event;
	t->base.close = sink_text_close;
	t->out = out;
	t->opts = *opts;
	return &t->base;
}

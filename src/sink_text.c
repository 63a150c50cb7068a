/* sink_text.c -- human-readable output: one line per call, notification, exit...
 *
 *   19:18:25.123456 server-everything[4242] tools/call echo #3 ok 0.412 ms  45 B -> 120 B
 *
 * Times are local wall-clock; the JSONL sink carries the exact UTC timestamps. Lines are
 * formatted into a buffer written out once per drain (sinks_flush). Every string a peer
 * controls (names, methods, ids, messages, stderr, previews, command lines) goes through
 * outbuf_put_safe: no escape sequence, bell or forged line of an observed process reaches
 * the terminal; the numbers and words around them are ours. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mcpsonde/sink.h"

struct sink_text {
	struct sink base;
	FILE *out;
	struct event_format_opts opts;
	struct outbuf buf;
	time_t hms_sec; /* the second hms holds, as local time */
	char hms[16];
};

static void put_u64(struct outbuf *b, uint64_t v)
{
	char digits[24], *end = digits + sizeof(digits), *p = end;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	outbuf_put(b, p, (size_t)(end - p));
}

/* Nanoseconds as milliseconds with three decimals, as "%.3f" of ns / 1e6 prints them. An
 * exact half microsecond rounds as printf rounds that double: left to printf. */
static void put_ms3(struct outbuf *b, uint64_t ns)
{
	uint64_t us;
	char frac[4];

	if (ns % 1000 == 500 || ns >= (1ull << 52)) {
		outbuf_printf(b, "%.3f", (double)ns / 1e6);
		return;
	}
	us = (ns + 500) / 1000;
	put_u64(b, us / 1000);
	frac[0] = '.';
	frac[1] = (char)('0' + us / 100 % 10);
	frac[2] = (char)('0' + us / 10 % 10);
	frac[3] = (char)('0' + us % 10);
	outbuf_put(b, frac, 4);
}

static void text_prefix(struct sink_text *t, const struct sonde_event *ev)
{
	time_t sec = (time_t)(ev->real_ns / 1000000000ull);
	unsigned us = (unsigned)(ev->real_ns % 1000000000ull / 1000);
	char frac[8] = { '.' };

	if (sec != t->hms_sec) {
		struct tm tm;
		localtime_r(&sec, &tm);
		strftime(t->hms, sizeof(t->hms), "%H:%M:%S", &tm);
		t->hms_sec = sec;
	}
	for (int i = 6; i >= 1; i--, us /= 10)
		frac[i] = (char)('0' + us % 10);
	frac[7] = ' ';
	outbuf_puts(&t->buf, t->hms);
	outbuf_put(&t->buf, frac, 8);
	outbuf_put_safe(&t->buf, ev->session ? session_identity_name(ev->session) : "-");
	outbuf_putc(&t->buf, '[');
	put_u64(&t->buf, ev->pid);
	outbuf_put(&t->buf, "] ", 2);
}

/* A jansson value (schema violations, tool changes) as compact JSON: JSON escapes every
 * control character, so it needs no escaping of its own. */
static void text_json(struct outbuf *b, const json_t *v)
{
	struct jsonw w;

	jsonw_begin(&w, b);
	jsonw_value(&w, v);
}

/* The connection of an HTTP call: the peer, the remote server of a client. */
static void text_net(struct outbuf *b, const struct ev_net *n, unsigned status)
{
	outbuf_puts(b, "  [http");
	if (status)
		outbuf_printf(b, " %u", status);
	if (n->client) {
		outbuf_puts(b, " to ");
		if (n->server_name) {
			outbuf_put_safe(b, n->server_name);
			outbuf_putc(b, ' ');
		}
		outbuf_put_safe(b, n->peer && n->peer[0] ? n->peer : "?");
	} else if (n->peer && n->peer[0]) {
		outbuf_puts(b, " from ");
		outbuf_put_safe(b, n->peer);
	}
	outbuf_putc(b, ']');
}

static void text_http(struct outbuf *b, const struct ev_http *h)
{
	outbuf_puts(b, "HTTP ");
	outbuf_put_safe(b, h->method);
	outbuf_putc(b, ' ');
	outbuf_put_safe(b, h->target);
	if (h->status)
		outbuf_printf(b, " %u%s", h->status, h->status == 401 || h->status == 403 ? " (auth failure)" : "");
	else
		outbuf_puts(b, " no response");
	outbuf_putc(b, ' ');
	outbuf_puts(b, h->end);
	if (h->mcp_method) {
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, h->mcp_method);
	}
	if (h->unanswered)
		outbuf_printf(b, ", %u request(s) unanswered", h->unanswered);
}

static void text_call(struct outbuf *b, const struct ev_call *c, const struct ev_net *net)
{
	if (c->direction == DIR_SERVER_TO_CLIENT)
		outbuf_puts(b, "(to client) ");
	outbuf_put_safe(b, c->method ? c->method : "?");
	if (c->tool) {
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, c->tool);
	}
	outbuf_put(b, " #", 2);
	outbuf_put_safe(b, c->id);
	outbuf_putc(b, ' ');
	outbuf_puts(b, call_status_name(c->status));
	if (c->status == CALL_ERROR || (c->status == CALL_PROBE_FAILED && c->error_code)) {
		outbuf_printf(b, " %lld", c->error_code);
		if (c->error_name)
			outbuf_printf(b, " %s", c->error_name);
		if (c->error_message) {
			outbuf_putc(b, ' ');
			outbuf_put_safe(b, c->error_message);
		}
	}
	if (c->task_id) {
		outbuf_puts(b, " task ");
		outbuf_put_safe(b, c->task_id);
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, c->task_status ? c->task_status : "");
	}
	outbuf_putc(b, ' ');
	put_ms3(b, c->duration_ns);
	outbuf_put(b, " ms  ", 5);
	put_u64(b, c->request_bytes);
	outbuf_put(b, " B -> ", 6);
	put_u64(b, c->response_bytes);
	outbuf_put(b, " B", 2);
	if (c->oversized)
		outbuf_puts(b, " (oversized)");
	if (c->secret)
		outbuf_puts(b, " (secret-looking value)");
	if (c->unknown_tool)
		outbuf_puts(b, " (unknown tool)");
	if (c->header_mismatch) {
		outbuf_puts(b, " (");
		outbuf_puts(b, c->header_mismatch);
		outbuf_puts(b, " header disagrees with the body)");
	}
	if (c->rounds && c->task_id) {
		outbuf_printf(b, "  [task of %u exchanges]", c->rounds);
	} else if (c->rounds) {
		outbuf_printf(b, "  [%u rounds, ", c->rounds);
		put_ms3(b, c->logical_ns);
		outbuf_puts(b, " ms in all, ");
		put_ms3(b, c->input_wait_ns);
		outbuf_puts(b, " ms waiting for input]");
	}
	if (net)
		text_net(b, net, c->http_status);
	outbuf_putc(b, '\n');
	if (c->schema_violations && json_array_size(c->schema_violations)) {
		outbuf_puts(b, "    schema violations: ");
		text_json(b, c->schema_violations);
		outbuf_putc(b, '\n');
	}
}

/* Only what is known: attached mid-session, that is the command line alone. */
/* "comm[pid]" of a process at the other end, when known, and its pod when it is not the
 * server's container. */
static void text_proc_ref(struct outbuf *b, const char *label, const struct proc_ref *r,
			  const struct attrib_record *server)
{
	if (!r->pid)
		return;
	outbuf_puts(b, label);
	outbuf_put_safe(b, r->comm);
	outbuf_printf(b, "[%u]", r->pid);
	if (r->where && r->where->pod_name[0] && !attrib_same_container(r->where, server)) {
		outbuf_puts(b, " in pod ");
		outbuf_put_safe(b, r->where->k8s_namespace);
		outbuf_putc(b, '/');
		outbuf_put_safe(b, r->where->pod_name);
	}
}

static void text_session(struct outbuf *b, const struct session_identity *id)
{
	outbuf_puts(b, "session:");
	if (id->protocol_version) {
		outbuf_puts(b, " protocol ");
		outbuf_put_safe(b, id->protocol_version);
		outbuf_putc(b, ',');
	}
	if (id->client_name) {
		outbuf_puts(b, " client ");
		outbuf_put_safe(b, id->client_name);
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, id->client_version);
		outbuf_putc(b, ',');
	}
	if (id->server_name) {
		outbuf_puts(b, " server ");
		outbuf_put_safe(b, id->server_name);
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, id->server_version);
		outbuf_putc(b, ',');
	}
	if (!id->initialized_ns)
		outbuf_puts(b, id->discovered ? " found mid-session," : " attached mid-session,");
	outbuf_putc(b, ' ');
	outbuf_put_safe(b, id->cmdline ? id->cmdline : id->comm);
	outbuf_puts(b, " over ");
	if (id->transport && strcmp(id->transport, "pipe") != 0)
		outbuf_puts(b, id->transport);
	else
		outbuf_put_safe(b, id->stdio ? id->stdio : "stdio");
	text_proc_ref(b, ", client ", &id->client_process, id->where);
	text_proc_ref(b, ", via ", &id->relay, id->where);
	if (id->where && id->where->pod_name[0]) {
		outbuf_puts(b, ", pod ");
		outbuf_put_safe(b, id->where->k8s_namespace);
		outbuf_putc(b, '/');
		outbuf_put_safe(b, id->where->pod_name);
		outbuf_puts(b, " container ");
		outbuf_put_safe(b, id->where->k8s_container_name);
	} else if (id->where && id->where->container_name[0]) {
		outbuf_puts(b, ", container ");
		outbuf_put_safe(b, id->where->container_name);
	}
	outbuf_putc(b, '\n');
}

static void text_stall(struct outbuf *b, const struct ev_stall *st)
{
	outbuf_puts(b, "STALL: ");
	outbuf_put_safe(b, st->method ? st->method : "?");
	if (st->tool) {
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, st->tool);
	}
	outbuf_put(b, " #", 2);
	outbuf_put_safe(b, st->id);
	outbuf_printf(b, " pending %.1f s, state %c, cpu %.1f ms, %u threads", (double)st->pending_ns / 1e9,
		      st->state ? st->state : '?', (double)st->cpu_ns / 1e6, st->threads);
	if (st->wchan && st->wchan[0]) {
		outbuf_puts(b, ", wchan ");
		outbuf_put_safe(b, st->wchan);
	}
	if (st->since_progress_ns)
		outbuf_printf(b, ", last progress %.1f s ago", (double)st->since_progress_ns / 1e9);
	if (st->task_id) {
		outbuf_puts(b, ", task ");
		outbuf_put_safe(b, st->task_id);
		outbuf_putc(b, ' ');
		outbuf_put_safe(b, st->task_status ? st->task_status : "");
		outbuf_printf(b, ", last poll %.1f s ago", (double)st->since_poll_ns / 1e9);
	}
	outbuf_putc(b, '\n');
}

static void sink_text_flush(struct sink *s)
{
	struct sink_text *t = (struct sink_text *)s;

	outbuf_flush(&t->buf, t->out);
}

static void sink_text_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct sink_text *t = (struct sink_text *)s;
	struct outbuf *b = &t->buf;

	if (ev->type == EV_MESSAGE || ev->type == EV_UNTRACKED || (ev->type == EV_TOOLS_LIST && !ev->tools.truncated) ||
	    (ev->type == EV_HTTP && !ev->http.failed))
		return;
	text_prefix(t, ev);
	switch (ev->type) {
	case EV_CALL:
		text_call(b, &ev->call, ev->net);
		break;
	case EV_NOTIFICATION:
		outbuf_puts(b, ev->notification.direction == DIR_CLIENT_TO_SERVER ? "<- " : "-> ");
		outbuf_put_safe(b, ev->notification.method);
		outbuf_putc(b, '\n');
		break;
	case EV_SESSION:
		text_session(b, ev->session);
		break;
	case EV_INVALID:
		if (ev->invalid.coalesced)
			outbuf_printf(b, "INVALID frames on fd %d: %" PRIu64 " more (%" PRIu64 " B), the first of them: ",
				      ev->invalid.fd, ev->invalid.frames, ev->invalid.bytes);
		else
			outbuf_printf(b, "INVALID frame on fd %d (%" PRIu64 " B): ", ev->invalid.fd, ev->invalid.bytes);
		outbuf_put_safe(b, ev->invalid.preview);
		outbuf_putc(b, '\n');
		break;
	case EV_STDERR:
		outbuf_puts(b, "stderr: ");
		outbuf_put_safe(b, ev->stderr_line.line);
		outbuf_putc(b, '\n');
		break;
	case EV_EXIT: {
		const struct ev_exit *x = &ev->exit;
		char sig[32];

		if (x->signal)
			outbuf_printf(b, "exit: killed by %s%s", event_signal_name(x->signal, sig, sizeof(sig)),
				      x->core_dumped ? " (core dumped)" : "");
		else
			outbuf_printf(b, "exit: code %d", x->exit_code);
		outbuf_printf(b, " [%s%s%s], %u call(s) pending\n", x->reason, x->oom_killed ? ", OOM" : "",
			      x->normal ? ", normal" : ", abnormal", x->pending_calls);
		break;
	}
	case EV_LOSS:
		outbuf_printf(b, "LOSS: %s %" PRIu64 " B %" PRIu64 " record(s)\n", ev->loss.reason, ev->loss.bytes,
			      ev->loss.records);
		break;
	case EV_TOOLS_CHANGED:
		outbuf_puts(b, "tools changed: ");
		if (ev->tools.change)
			text_json(b, ev->tools.change);
		outbuf_putc(b, '\n');
		break;
	case EV_STALL:
		text_stall(b, &ev->stall);
		break;
	case EV_BLOCKED_WRITE:
		outbuf_printf(b, "BLOCKED WRITE on fd %d for %.1f s (%" PRIu64 " B): the client is not reading\n",
			      ev->blocked_write.fd, (double)ev->blocked_write.blocked_ns / 1e9, ev->blocked_write.bytes);
		break;
	case EV_STDIN_CLOSED:
		if (ev->stdin_closed.lingering)
			outbuf_printf(b, "still running %.1f s after the client closed stdin\n",
				      (double)ev->stdin_closed.since_ns / 1e9);
		else
			outbuf_puts(b, "client closed stdin\n");
		break;
	case EV_REPORT:
		outbuf_puts(b, "report written: ");
		outbuf_put_safe(b, ev->report.path);
		outbuf_putc(b, '\n');
		break;
	case EV_PROTOCOL_ERROR:
		outbuf_printf(b, "PROTOCOL ERROR from the %s: %lld %s ",
			      ev->protocol_error.direction == DIR_SERVER_TO_CLIENT ? "server" : "client",
			      ev->protocol_error.error_code,
			      ev->protocol_error.error_name ? ev->protocol_error.error_name : "");
		outbuf_put_safe(b, ev->protocol_error.error_message);
		outbuf_putc(b, '\n');
		break;
	case EV_TOOLS_LIST:
		outbuf_printf(b, "tools/list: %u tools, %u in the catalog: drift and argument checks cover those only\n",
			      ev->tools.count, ev->tools.kept);
		break;
	case EV_HTTP:
		text_http(b, &ev->http);
		if (ev->net)
			text_net(b, ev->net, 0);
		outbuf_putc(b, '\n');
		break;
	case EV_MESSAGE:
	case EV_UNTRACKED:
	case EV__COUNT:
		break;
	}
	if (b->len >= OUTBUF_FLUSH_BYTES)
		sink_text_flush(s);
}

static void sink_text_close(struct sink *s)
{
	struct sink_text *t = (struct sink_text *)s;

	sink_text_flush(s);
	outbuf_free(&t->buf);
	free(t);
}

struct sink *sink_text_new(FILE *out, const struct event_format_opts *opts)
{
	struct sink_text *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->base.name = "text";
	t->base.on_event = sink_text_on_event;
	t->base.flush = sink_text_flush;
	t->base.close = sink_text_close;
	t->out = out;
	t->opts = *opts;
	t->hms_sec = (time_t)-1;
	return &t->base;
}

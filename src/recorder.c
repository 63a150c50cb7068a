/* recorder.c -- the flight recorder sink: the recent past of each server, and its report.
 *
 * What is remembered per server (struct rec_server, keyed by pid + start_ticks):
 *   frames[dir]  the last opts.frames EV_MESSAGE renderings per direction (event_render:
 *                keys only unless capture_values)
 *   stderr_q     the last opts.stderr_bytes of stderr lines
 *   events       the last RECORDER_EVENTS stall / blocked_write / stdin_closed / loss /
 *                invalid-output events
 *   orphans      the calls in flight at death: EV_CALL orphaned, which the pipeline sends
 *                for every pending call just before the EV_EXIT of the same process
 *   samples      /proc RSS / CPU / threads / state, one per second, the last minute
 * Items are kept as compact JSON text, so their memory is exactly what is accounted.
 *
 * Bounds: every queue has a count or byte bound; a server over max_server_bytes loses the
 * oldest items of its biggest queue; over max_total_bytes the biggest server loses items,
 * and a server with nothing left to give is forgotten (least recently active first); at
 * max_servers the least recently active server is forgotten. All of it is counted, and a
 * report says what its server lost.
 *
 * Re-entrancy: EV_REPORT is emitted as the very last step of handling an EV_EXIT, after the
 * server's state is freed and no pointer into the recorder is held; the recorder ignores
 * EV_REPORT, so it may be in the list it emits to. */
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mcpsonde/procfs.h"
#include "mcpsonde/recorder.h"
#include "mcpsonde/report.h"
#include "mcpsonde/utf8.h"
#include "version.h"

#define RECORDER_EVENTS 64          /* stall, blocked_write... per server */
#define RECORDER_CALLS 256          /* orphaned calls per server */
#define RECORDER_GLOBAL_LOSS 64     /* losses tied to no process */
#define RECORDER_SAMPLES 64         /* resource samples per server: a minute at 1 Hz */
#define RECORDER_SAMPLE_NS 1000000000ull
#define RECORDER_SAMPLE_KEEP_NS (60 * 1000000000ull)
#define RECORDER_TIMELINE 40        /* entries in a report's timeline */
#define RECORDER_TIMELINE_STDERR 10 /* of which stderr lines at most */
#define RECORDER_LOSS_REASONS 16
#define RECORDER_BUCKETS 1024
#define RECORDER_SUMMARY_MAX 240

/* One remembered thing. Summary and JSON live in the same allocation, after the struct. */
struct rec_item {
	struct rec_item *next;
	uint64_t ts_ns, real_ns;
	size_t cost;
	const char *kind;   /* the timeline's column: "to server", "stderr", "stall"... */
	const char *type;   /* ev_type_name() */
	char *summary;      /* one line for a person (for stderr: the line itself) */
	char *json;         /* event_render(), compact; NULL when not kept */
};

struct rec_queue {
	struct rec_item *head, *tail; /* oldest first */
	unsigned count;
	size_t bytes;
};

struct rec_call {
	struct rec_call *next;
	uint64_t ts_ns;     /* request seen; for orphans: the death */
	uint64_t age_ns;    /* orphans: age at death, as the pipeline measured it */
	size_t cost;
	char *method, *id, *tool; /* tool may be NULL */
};

struct rec_sample {
	uint64_t ts_ns, cpu_ns, rss_bytes;
	unsigned threads;
	char state;
};

struct rec_loss_tally {
	char reason[32];
	uint64_t records, bytes;
};

struct rec_server {
	struct rec_server *hnext;
	struct rec_server *lru_prev, *lru_next; /* least recently active at the list's head */
	uint32_t pid;
	uint64_t start_ticks;
	uint64_t first_ts;
	char *cgroup;
	struct rec_queue frames[2], stderr_q, events;
	struct rec_call *orphans;
	unsigned norphans;
	uint64_t frames_seen[2], stderr_lines, stderr_bytes;
	uint64_t items_evicted, calls_dropped;
	struct rec_sample samples[RECORDER_SAMPLES];
	unsigned sample_next, nsamples;
	struct rec_loss_tally loss[RECORDER_LOSS_REASONS];
	unsigned nloss;
	size_t bytes;
};

struct recorder {
	struct sink sink; /* first: a struct sink * is a struct recorder * */
	struct recorder_opts opts;
	char *report_dir;
	struct sink_list *emit;
	struct event_format_opts fmt;
	struct outbuf scratch; /* the event being rendered, before it is copied into an item */
	struct rec_server *buckets[RECORDER_BUCKETS];
	struct rec_server *lru_head, *lru_tail;
	struct rec_queue global_loss;
	struct recorder_stats stats;
	long clk_tck;
};

/* ---- items and queues ---- */

static size_t recorder_item_max(const struct recorder *r)
{
	size_t m = r->opts.max_server_bytes / 4;

	return m < (64u << 10) ? m : (64u << 10);
}

/* json: the event's rendering, json_len bytes, or NULL. */
static struct rec_item *item_new(const struct sonde_event *ev, const char *kind, const char *summary,
				 const char *json, size_t json_len)
{
	size_t sl = strlen(summary) + 1, jl = json ? json_len + 1 : 0;
	struct rec_item *it = malloc(sizeof(*it) + sl + jl);

	if (!it)
		return NULL;
	it->next = NULL;
	it->ts_ns = ev->ts_ns;
	it->real_ns = ev->real_ns;
	it->kind = kind;
	it->type = ev_type_name(ev->type);
	it->summary = (char *)(it + 1);
	memcpy(it->summary, summary, sl);
	it->json = json ? it->summary + sl : NULL;
	if (json) {
		memcpy(it->json, json, json_len);
		it->json[json_len] = '\0';
	}
	it->cost = sizeof(*it) + sl + jl;
	return it;
}

static void queue_push(struct rec_queue *q, struct rec_item *it)
{
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->count++;
	q->bytes += it->cost;
}

static size_t queue_pop(struct rec_queue *q)
{
	struct rec_item *it = q->head;
	size_t cost;

	if (!it)
		return 0;
	q->head = it->next;
	if (!q->head)
		q->tail = NULL;
	q->count--;
	q->bytes -= it->cost;
	cost = it->cost;
	free(it);
	return cost;
}

static void queue_clear(struct rec_queue *q)
{
	while (q->head)
		queue_pop(q);
}

static void calls_free(struct rec_call *c)
{
	while (c) {
		struct rec_call *next = c->next;
		free(c);
		c = next;
	}
}

/* ---- servers ---- */

static unsigned server_bucket(uint32_t pid)
{
	return (pid * 2654435761u) % RECORDER_BUCKETS;
}

static void lru_unlink(struct recorder *r, struct rec_server *s)
{
	if (s->lru_prev)
		s->lru_prev->lru_next = s->lru_next;
	else
		r->lru_head = s->lru_next;
	if (s->lru_next)
		s->lru_next->lru_prev = s->lru_prev;
	else
		r->lru_tail = s->lru_prev;
	s->lru_prev = s->lru_next = NULL;
}

static void lru_append(struct recorder *r, struct rec_server *s)
{
	s->lru_prev = r->lru_tail;
	s->lru_next = NULL;
	if (r->lru_tail)
		r->lru_tail->lru_next = s;
	else
		r->lru_head = s;
	r->lru_tail = s;
}

/* Unhooks s from the table and the LRU list and frees it. */
static void server_forget(struct recorder *r, struct rec_server *s)
{
	struct rec_server **pp = &r->buckets[server_bucket(s->pid)];

	while (*pp && *pp != s)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = s->hnext;
	lru_unlink(r, s);
	queue_clear(&s->frames[0]);
	queue_clear(&s->frames[1]);
	queue_clear(&s->stderr_q);
	queue_clear(&s->events);
	calls_free(s->orphans);
	r->stats.bytes -= s->bytes;
	r->stats.servers--;
	free(s->cgroup);
	free(s);
}

static struct rec_server *server_find(struct recorder *r, const struct sonde_event *ev)
{
	uint32_t pid = ev->session ? ev->session->pid : ev->pid;
	struct rec_server *s;

	for (s = r->buckets[server_bucket(pid)]; s; s = s->hnext)
		if (s->pid == pid && (!ev->session || s->start_ticks == ev->session->start_ticks))
			return s;
	return NULL;
}

static void recorder_evict_lru(struct recorder *r)
{
	if (!r->lru_head)
		return;
	r->stats.servers_evicted++;
	server_forget(r, r->lru_head);
}

/* The server an event belongs to, created on its first event; NULL for events tied to no
 * process. Marks it most recently active. */
static struct rec_server *server_get(struct recorder *r, const struct sonde_event *ev)
{
	struct rec_server *s = server_find(r, ev);
	uint32_t pid = ev->session ? ev->session->pid : ev->pid;
	unsigned b;

	if (s) {
		lru_unlink(r, s);
		lru_append(r, s);
		return s;
	}
	if (!pid)
		return NULL;
	while (r->stats.servers >= r->opts.max_servers)
		recorder_evict_lru(r);
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pid = pid;
	s->start_ticks = ev->session ? ev->session->start_ticks : 0;
	s->first_ts = ev->ts_ns;
	/* Read while it lives, for its report; proc_cgroup checks start_ticks, so never another
	 * process's after PID reuse, or a local one's while replaying a capture. */
	s->cgroup = proc_cgroup((pid_t)pid, s->start_ticks);
	s->bytes = sizeof(*s) + (s->cgroup ? strlen(s->cgroup) + 1 : 0);
	b = server_bucket(pid);
	s->hnext = r->buckets[b];
	r->buckets[b] = s;
	lru_append(r, s);
	r->stats.servers++;
	r->stats.bytes += s->bytes;
	return s;
}

/* ---- memory bounds ---- */

/* Drops the oldest item of s's biggest queue; returns the bytes freed (0: nothing left). */
static size_t server_shed(struct recorder *r, struct rec_server *s)
{
	struct rec_queue *qs[] = { &s->frames[0], &s->frames[1], &s->stderr_q, &s->events }, *big = NULL;
	size_t i, freed;

	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		if (qs[i]->count && (!big || qs[i]->bytes > big->bytes))
			big = qs[i];
	if (!big)
		return 0;
	freed = queue_pop(big);
	s->bytes -= freed;
	r->stats.bytes -= freed;
	s->items_evicted++;
	r->stats.items_evicted++;
	return freed;
}

static void recorder_enforce_total(struct recorder *r, struct rec_server *keep)
{
	while (r->stats.bytes > r->opts.max_total_bytes && r->lru_head) {
		struct rec_server *s, *big = NULL;
		for (s = r->lru_head; s; s = s->lru_next)
			if (!big || s->bytes > big->bytes)
				big = s;
		if (server_shed(r, big))
			continue;
		/* Every server is down to its bare state: forget the least recently active. */
		if (r->lru_head == keep && !keep->lru_next)
			break;
		r->stats.servers_evicted++;
		server_forget(r, r->lru_head == keep ? keep->lru_next : r->lru_head);
	}
}

static void server_account(struct recorder *r, struct rec_server *s, size_t cost)
{
	s->bytes += cost;
	r->stats.bytes += cost;
	while (s->bytes > r->opts.max_server_bytes && server_shed(r, s))
		;
	recorder_enforce_total(r, s);
}

static void server_push(struct recorder *r, struct rec_server *s, struct rec_queue *q, struct rec_item *it,
			unsigned max_count)
{
	queue_push(q, it);
	while (q->count > max_count) {
		size_t freed = queue_pop(q);
		s->bytes -= freed;
		r->stats.bytes -= freed;
	}
	server_account(r, s, it->cost);
}

/* ---- what each event leaves behind ---- */

/* The rendering kept for an item, in r->scratch: with values when asked and small enough,
 * else keys only; false when even that is too big (the summary stays). */
static bool render_bounded(struct recorder *r, const struct sonde_event *ev)
{
	size_t max = recorder_item_max(r);
	struct event_format_opts fmt = r->fmt;

	r->scratch.len = 0;
	event_render(&r->scratch, ev, &fmt);
	if (r->scratch.len > max && fmt.capture_values) {
		fmt.capture_values = false;
		r->scratch.len = 0;
		event_render(&r->scratch, ev, &fmt);
	}
	if (r->scratch.failed || r->scratch.len > max) {
		r->scratch.len = 0;
		r->scratch.failed = false;
		return false;
	}
	return true;
}

static void summary_append(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	va_list ap;

	if (used + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

/* The tool (or prompt, or resource) a request names. */
static const char *message_target(const struct ev_message *m)
{
	return m->method ? m->target : NULL;
}

static struct rec_call *call_new(uint64_t ts_ns, const char *method, const char *id, const char *tool)
{
	size_t ml = strlen(method ? method : "?") + 1, il = strlen(id ? id : "") + 1, tl = tool ? strlen(tool) + 1 : 0;
	struct rec_call *c = malloc(sizeof(*c) + ml + il + tl);

	if (!c)
		return NULL;
	c->next = NULL;
	c->ts_ns = ts_ns;
	c->age_ns = 0;
	c->cost = sizeof(*c) + ml + il + tl;
	c->method = (char *)(c + 1);
	memcpy(c->method, method ? method : "?", ml);
	c->id = c->method + ml;
	memcpy(c->id, id ? id : "", il);
	c->tool = tool ? c->id + il : NULL;
	if (tool)
		memcpy(c->tool, tool, tl);
	return c;
}

static void server_add_call(struct recorder *r, struct rec_server *s, struct rec_call **list, unsigned *n,
			    struct rec_call *c)
{
	if (!c)
		return;
	if (*n >= RECORDER_CALLS) {
		s->calls_dropped++;
		free(c);
		return;
	}
	c->next = *list;
	*list = c;
	(*n)++;
	server_account(r, s, c->cost);
}

static void recorder_on_message(struct recorder *r, struct rec_server *s, const struct sonde_event *ev)
{
	const struct ev_message *m = &ev->message;
	const char *target = message_target(m), *kind = m->kind ? m->kind : "message";
	char summary[RECORDER_SUMMARY_MAX] = "", size[24];
	unsigned dir = m->direction == DIR_SERVER_TO_CLIENT;
	struct rec_item *it;
	bool rendered;

	report_format_bytes((double)m->bytes, size, sizeof(size));
	summary_append(summary, sizeof(summary), "%s", kind);
	if (m->method)
		summary_append(summary, sizeof(summary), " %s", m->method);
	if (m->id && *m->id)
		summary_append(summary, sizeof(summary), " id=%s", m->id);
	if (target)
		summary_append(summary, sizeof(summary), " (%s)", target);
	summary_append(summary, sizeof(summary), ", %s", size);

	rendered = render_bounded(r, ev);
	it = item_new(ev, dir ? "from server" : "to server", summary, rendered ? r->scratch.data : NULL, r->scratch.len);
	s->frames_seen[dir]++;
	if (it)
		server_push(r, s, &s->frames[dir], it, r->opts.frames);

}

static void recorder_on_call(struct recorder *r, struct rec_server *s, const struct sonde_event *ev)
{
	const struct ev_call *c = &ev->call;
	struct rec_call *orphan;

	if (c->status != CALL_ORPHANED)
		return;
	orphan = call_new(ev->ts_ns, c->method, c->id, c->tool);
	if (orphan)
		orphan->age_ns = c->duration_ns;
	server_add_call(r, s, &s->orphans, &s->norphans, orphan);
}

static void recorder_on_stderr(struct recorder *r, struct rec_server *s, const struct sonde_event *ev)
{
	const char *line = ev->stderr_line.line ? ev->stderr_line.line : "";
	size_t len = strlen(line), max = r->opts.stderr_bytes;
	struct rec_item *it;

	s->stderr_lines++;
	s->stderr_bytes += ev->stderr_line.bytes ? ev->stderr_line.bytes : len;
	if (len > max) { /* a line longer than the whole tail: its end is what matters */
		line += len - max;
		while ((*line & 0xc0) == 0x80) /* from a character's start */
			line++;
	}
	it = item_new(ev, "stderr", line, NULL, 0);
	if (!it)
		return;
	queue_push(&s->stderr_q, it);
	while (s->stderr_q.count > 1 && s->stderr_q.bytes - s->stderr_q.count * sizeof(struct rec_item) > max) {
		size_t freed = queue_pop(&s->stderr_q);
		s->bytes -= freed;
		r->stats.bytes -= freed;
	}
	server_account(r, s, it->cost);
}

static void format_event_summary(const struct sonde_event *ev, char *buf, size_t len)
{
	char a[24], b[24];

	buf[0] = '\0';
	switch (ev->type) {
	case EV_STALL: {
		const struct ev_stall *st = &ev->stall;
		report_format_duration(st->pending_ns / 1e9, a, sizeof(a));
		report_format_duration(st->cpu_ns / 1e9, b, sizeof(b));
		summary_append(buf, len, "%s id=%s", st->method ? st->method : "?", st->id ? st->id : "?");
		if (st->tool)
			summary_append(buf, len, " (%s)", st->tool);
		summary_append(buf, len, " pending %s; state %c, cpu %s, %u threads", a, st->state ? st->state : '?', b,
			       st->threads);
		if (st->wchan && *st->wchan)
			summary_append(buf, len, ", wchan %s", st->wchan);
		break;
	}
	case EV_BLOCKED_WRITE:
		report_format_bytes((double)ev->blocked_write.bytes, a, sizeof(a));
		report_format_duration(ev->blocked_write.blocked_ns / 1e9, b, sizeof(b));
		summary_append(buf, len, "write of %s to fd %d blocked for %s (the client is not reading)", a,
			       ev->blocked_write.fd, b);
		break;
	case EV_STDIN_CLOSED:
		if (ev->stdin_closed.lingering) {
			report_format_duration(ev->stdin_closed.since_ns / 1e9, a, sizeof(a));
			summary_append(buf, len, "still alive %s after its stdin was closed", a);
		} else {
			summary_append(buf, len, "the client closed the server's stdin");
		}
		break;
	case EV_LOSS:
		report_format_bytes((double)ev->loss.bytes, a, sizeof(a));
		summary_append(buf, len, "capture lost: %s, %llu records, %s", ev->loss.reason ? ev->loss.reason : "?",
			       (unsigned long long)ev->loss.records, a);
		if (ev->loss.fd >= 0)
			summary_append(buf, len, " on fd %d", ev->loss.fd);
		break;
	case EV_INVALID:
		report_format_bytes((double)ev->invalid.bytes, a, sizeof(a));
		if (ev->invalid.coalesced)
			summary_append(buf, len, "%llu more frames ", (unsigned long long)ev->invalid.frames);
		summary_append(buf, len, "%s on fd %d (%s): %s", ev->invalid.json ? "JSON that is not JSON-RPC" :
										    "not JSON-RPC",
			       ev->invalid.fd, a, ev->invalid.preview ? ev->invalid.preview : "");
		break;
	default:
		summary_append(buf, len, "%s", ev_type_name(ev->type));
		break;
	}
}

static void loss_tally(struct rec_loss_tally *t, unsigned *n, const struct ev_loss *l)
{
	const char *reason = l->reason ? l->reason : "unknown";
	unsigned i;

	for (i = 0; i < *n; i++)
		if (!strcmp(t[i].reason, reason))
			break;
	if (i == *n) {
		if (*n == RECORDER_LOSS_REASONS)
			i = *n - 1; /* folded into the last reason: bounded, still counted */
		else
			snprintf(t[(*n)++].reason, sizeof(t[i].reason), "%s", reason);
	}
	t[i].records += l->records;
	t[i].bytes += l->bytes;
}

static void recorder_on_notable(struct recorder *r, struct rec_server *s, const struct sonde_event *ev)
{
	static const char *kinds[EV__COUNT] = {
		[EV_STALL] = "stall", [EV_BLOCKED_WRITE] = "blocked write", [EV_STDIN_CLOSED] = "stdin closed",
		[EV_LOSS] = "loss", [EV_INVALID] = "invalid output",
	};
	char summary[RECORDER_SUMMARY_MAX];
	struct rec_item *it;
	bool rendered;

	format_event_summary(ev, summary, sizeof(summary));
	rendered = render_bounded(r, ev);
	it = item_new(ev, kinds[ev->type], summary, rendered ? r->scratch.data : NULL, r->scratch.len);
	if (!it)
		return;
	if (!s) { /* a loss tied to no process: every report of a server alive then shows it */
		queue_push(&r->global_loss, it);
		r->stats.bytes += it->cost;
		while (r->global_loss.count > RECORDER_GLOBAL_LOSS)
			r->stats.bytes -= queue_pop(&r->global_loss);
		return;
	}
	if (ev->type == EV_LOSS)
		loss_tally(s->loss, &s->nloss, &ev->loss);
	server_push(r, s, &s->events, it, RECORDER_EVENTS);
}

/* ---- the report ---- */

static double rel_s(uint64_t ts_ns, uint64_t death_ns)
{
	return ((double)(int64_t)(ts_ns - death_ns)) / 1e9;
}

static json_t *json_str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *json_time(uint64_t real_ns)
{
	char buf[40];

	if (!real_ns)
		return json_null();
	event_format_time(real_ns, buf, sizeof(buf));
	return json_string(buf);
}

static json_t *item_json(const struct rec_item *it)
{
	json_t *j = it->json ? json_loads(it->json, 0, NULL) : NULL;

	return j ? j : json_null();
}

/* The event as the JSONL output has it, embedded in the report. */
static json_t *report_event(struct recorder *r, const struct sonde_event *ev)
{
	json_t *j = render_bounded(r, ev) ? json_loadb(r->scratch.data, r->scratch.len, 0, NULL) : NULL;

	return j ? j : json_null();
}

static json_t *report_process(const struct recorder *r, const struct rec_server *s, const struct sonde_event *ev)
{
	const struct session_identity *id = ev->session;
	/* Unsigned: a capture file's clock offset and stamps may be anything, and the sums wrap
	 * where signed ones would overflow. */
	uint64_t mono_to_real = ev->real_ns - ev->ts_ns;
	uint64_t start_ticks = id ? id->start_ticks : s->start_ticks;
	uint64_t start_ns = start_ticks ? start_ticks * (1000000000ull / (uint64_t)r->clk_tck) : 0;
	json_t *p = json_object(), *res;

	json_object_set_new(p, "pid", json_integer(ev->pid ? ev->pid : s->pid));
	json_object_set_new(p, "comm", json_str_or_null(id ? id->comm : NULL));
	json_object_set_new(p, "name", json_str_or_null(id ? session_identity_name(id) : NULL));
	json_object_set_new(p, "server_name", json_str_or_null(id ? id->server_name : NULL));
	json_object_set_new(p, "server_version", json_str_or_null(id ? id->server_version : NULL));
	json_object_set_new(p, "client_name", json_str_or_null(id ? id->client_name : NULL));
	json_object_set_new(p, "client_version", json_str_or_null(id ? id->client_version : NULL));
	json_object_set_new(p, "protocol_version", json_str_or_null(id ? id->protocol_version : NULL));
	json_object_set_new(p, "transport", json_str_or_null(id ? id->transport : NULL));
	json_object_set_new(p, "cmdline", json_str_or_null(id ? id->cmdline : NULL));
	json_object_set_new(p, "exe", json_str_or_null(id ? id->exe : NULL));
	json_object_set_new(p, "cgroup", json_str_or_null(s->cgroup));
	json_object_set_new(p, "start_ticks", json_integer((json_int_t)start_ticks));
	if (id && (res = event_resource_json(id->where)))
		json_object_set_new(p, "resource", res);
	if (id && id->client_process.pid)
		json_object_set_new(p, "client_process", proc_ref_json(&id->client_process, id->where));
	if (id && id->relay.pid)
		json_object_set_new(p, "relay", proc_ref_json(&id->relay, id->where));
	/* start_ticks count from boot (CLOCK_BOOTTIME), the records from CLOCK_MONOTONIC: the
	 * same clock unless the machine was suspended. */
	if (start_ns && start_ns <= ev->ts_ns) {
		json_object_set_new(p, "started_at", json_time(start_ns + mono_to_real));
		json_object_set_new(p, "uptime_s", json_real((double)(ev->ts_ns - start_ns) / 1e9));
	} else {
		uint64_t first = id && id->first_seen_ns ? id->first_seen_ns : s->first_ts;
		json_object_set_new(p, "started_at", json_null());
		json_object_set_new(p, "uptime_s", json_real((double)(ev->ts_ns - first) / 1e9));
	}
	json_object_set_new(p, "first_seen_at",
			    json_time((id && id->first_seen_ns ? id->first_seen_ns : s->first_ts) + mono_to_real));
	return p;
}

static json_t *report_exit(struct recorder *r, const struct sonde_event *ev)
{
	const struct ev_exit *x = &ev->exit;
	json_t *e = json_object();
	char sig[32];

	json_object_set_new(e, "at", json_time(ev->real_ns));
	json_object_set_new(e, "reason", json_str_or_null(x->reason));
	json_object_set_new(e, "exit_code", json_integer(x->exit_code));
	json_object_set_new(e, "signal", json_integer(x->signal));
	/* Named as the event names it ("SIGSEGV"), null for a signal without a name. */
	json_object_set_new(e, "signal_name", x->signal && sigabbrev_np(x->signal) ?
						      json_string(event_signal_name(x->signal, sig, sizeof(sig))) : json_null());
	json_object_set_new(e, "core_dumped", json_boolean(x->core_dumped));
	json_object_set_new(e, "oom_killed", json_boolean(x->oom_killed));
	json_object_set_new(e, "stdin_closed", json_boolean(x->stdin_closed));
	json_object_set_new(e, "normal", json_boolean(x->normal));
	json_object_set_new(e, "pending_calls", json_integer(x->pending_calls));
	json_object_set_new(e, "raw", json_integer(x->raw));
	json_object_set_new(e, "event", report_event(r, ev));
	return e;
}

/* A call in flight at death, as the pipeline orphaned it: its age is the pipeline's. */
static json_t *call_json(const struct rec_call *c)
{
	json_t *j = json_object();

	json_object_set_new(j, "method", json_string(c->method));
	json_object_set_new(j, "id", json_string(c->id));
	json_object_set_new(j, "tool", json_str_or_null(c->tool));
	json_object_set_new(j, "age_s", json_real((double)c->age_ns / 1e9));
	json_object_set_new(j, "orphaned", json_true());
	return j;
}

static json_t *report_pending(const struct rec_server *s)
{
	json_t *a = json_array();
	const struct rec_call *c;

	for (c = s->orphans; c; c = c->next)
		json_array_append_new(a, call_json(c));
	return a;
}

static json_t *queue_json(const struct rec_queue *q, uint64_t death_ns, bool with_summary)
{
	json_t *a = json_array();
	const struct rec_item *it;

	for (it = q->head; it; it = it->next) {
		json_t *e = json_object();
		json_object_set_new(e, "t", json_real(rel_s(it->ts_ns, death_ns)));
		json_object_set_new(e, "at", json_time(it->real_ns));
		if (with_summary) {
			json_object_set_new(e, "type", json_string(it->type));
			json_object_set_new(e, "summary", json_string(it->summary));
		}
		json_object_set_new(e, "event", item_json(it));
		json_array_append_new(a, e);
	}
	return a;
}

static json_t *report_frames(const struct recorder *r, const struct rec_server *s, uint64_t death_ns)
{
	json_t *f = json_object(), *seen = json_object();

	json_object_set_new(f, "per_direction", json_integer(r->opts.frames));
	json_object_set_new(f, "client_to_server", queue_json(&s->frames[0], death_ns, false));
	json_object_set_new(f, "server_to_client", queue_json(&s->frames[1], death_ns, false));
	json_object_set_new(seen, "client_to_server", json_integer((json_int_t)s->frames_seen[0]));
	json_object_set_new(seen, "server_to_client", json_integer((json_int_t)s->frames_seen[1]));
	json_object_set_new(f, "seen", seen);
	return f;
}

static json_t *report_stderr(const struct rec_server *s)
{
	size_t len = 0, off = 0, cap;
	const struct rec_item *it;
	json_t *e = json_object();
	char *tail, *valid;

	for (it = s->stderr_q.head; it; it = it->next)
		len += strlen(it->summary) + 1;
	tail = malloc(len + 1);
	/* The lines are the server's bytes: invalid UTF-8 (U+FFFD, 3 bytes, for each bad byte)
	 * would make the whole report unencodable, and a hostile server would leave none. */
	cap = 3 * len + 1;
	valid = malloc(cap);
	if (tail && valid) {
		for (it = s->stderr_q.head; it; it = it->next) {
			size_t n = strlen(it->summary);
			memcpy(tail + off, it->summary, n);
			off += n;
			tail[off++] = '\n';
		}
		off = utf8_sanitize(tail, off, valid, cap);
		json_object_set_new(e, "tail", json_stringn(valid, off));
	}
	free(tail);
	free(valid);
	json_object_set_new(e, "tail_bytes", json_integer((json_int_t)off));
	json_object_set_new(e, "lines_seen", json_integer((json_int_t)s->stderr_lines));
	json_object_set_new(e, "bytes_seen", json_integer((json_int_t)s->stderr_bytes));
	json_object_set_new(e, "lines_dropped", json_integer((json_int_t)(s->stderr_lines - s->stderr_q.count)));
	return e;
}

static json_t *report_resources(const struct rec_server *s, uint64_t death_ns)
{
	json_t *a = json_array();
	unsigned i;

	for (i = 0; i < s->nsamples; i++) {
		const struct rec_sample *x =
			&s->samples[(s->sample_next + RECORDER_SAMPLES - s->nsamples + i) % RECORDER_SAMPLES];
		char state[2] = { x->state, '\0' };
		json_t *e;
		if (x->ts_ns + RECORDER_SAMPLE_KEEP_NS < death_ns)
			continue;
		e = json_object();
		json_object_set_new(e, "t", json_real(rel_s(x->ts_ns, death_ns)));
		json_object_set_new(e, "rss_bytes", json_integer((json_int_t)x->rss_bytes));
		json_object_set_new(e, "cpu_ns", json_integer((json_int_t)x->cpu_ns));
		json_object_set_new(e, "threads", json_integer(x->threads));
		json_object_set_new(e, "state", json_string(state));
		json_array_append_new(a, e);
	}
	return a;
}

static void health_add(json_t *by, const char *reason, uint64_t records, uint64_t bytes)
{
	json_t *t = json_object_get(by, reason);

	if (!t) {
		t = json_object();
		json_object_set_new(t, "records", json_integer(0));
		json_object_set_new(t, "bytes", json_integer(0));
		json_object_set_new(by, reason, t);
	}
	json_object_set_new(t, "records", json_integer(json_integer_value(json_object_get(t, "records")) + (json_int_t)records));
	json_object_set_new(t, "bytes", json_integer(json_integer_value(json_object_get(t, "bytes")) + (json_int_t)bytes));
}

static json_t *report_health(const struct recorder *r, const struct rec_server *s)
{
	json_t *h = json_object(), *by = json_object(), *global = json_array(), *rec = json_object();
	const struct rec_item *it;
	unsigned i;

	for (i = 0; i < s->nloss; i++)
		health_add(by, s->loss[i].reason, s->loss[i].records, s->loss[i].bytes);
	/* Losses tied to no process, while this server was alive: its bytes may be among them. */
	for (it = r->global_loss.head; it; it = it->next) {
		json_t *ev;
		if (it->ts_ns < s->first_ts)
			continue;
		ev = item_json(it);
		json_array_append_new(global, json_pack("{s:s, s:o}", "summary", it->summary, "event", ev));
	}
	json_object_set_new(rec, "items_evicted", json_integer((json_int_t)s->items_evicted));
	json_object_set_new(rec, "calls_dropped", json_integer((json_int_t)s->calls_dropped));
	json_object_set_new(h, "lost", json_boolean(s->nloss > 0 || json_array_size(global) > 0));
	json_object_set_new(h, "loss_by_reason", by);
	json_object_set_new(h, "global_losses", global);
	json_object_set_new(h, "recorder", rec);
	return h;
}

static int timeline_cmp(const void *a, const void *b)
{
	const struct rec_item *x = *(const struct rec_item *const *)a, *y = *(const struct rec_item *const *)b;

	return x->ts_ns < y->ts_ns ? -1 : x->ts_ns > y->ts_ns;
}

static void timeline_add(json_t *a, uint64_t ts_ns, uint64_t death_ns, const char *kind, const char *summary)
{
	json_array_append_new(a, json_pack("{s:f, s:s, s:s}", "t", rel_s(ts_ns, death_ns), "kind", kind, "summary",
					   summary));
}

/* The last RECORDER_TIMELINE things that happened, oldest first, ending with the death. */
static json_t *report_timeline(const struct rec_server *s, const struct sonde_event *ev, const char *how)
{
	const struct rec_queue *qs[] = { &s->frames[0], &s->frames[1], &s->events };
	size_t n = 0, cap = 0, i, start, skip_stderr;
	const struct rec_item *it, **v;
	const struct rec_call *c;
	json_t *a = json_array();

	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		cap += qs[i]->count;
	cap += RECORDER_TIMELINE_STDERR;
	v = malloc((cap ? cap : 1) * sizeof(*v));
	if (!v)
		return a;
	for (i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
		for (it = qs[i]->head; it; it = it->next)
			v[n++] = it;
	skip_stderr = s->stderr_q.count > RECORDER_TIMELINE_STDERR ? s->stderr_q.count - RECORDER_TIMELINE_STDERR : 0;
	for (it = s->stderr_q.head; it; it = it->next)
		if (skip_stderr)
			skip_stderr--;
		else
			v[n++] = it;
	qsort(v, n, sizeof(*v), timeline_cmp);
	start = n > RECORDER_TIMELINE ? n - RECORDER_TIMELINE : 0;
	for (i = start; i < n; i++)
		timeline_add(a, v[i]->ts_ns, ev->ts_ns, v[i]->kind, v[i]->summary);
	free(v);
	for (c = s->orphans; c; c = c->next) {
		char summary[RECORDER_SUMMARY_MAX], age[24];
		report_format_duration((double)c->age_ns / 1e9, age, sizeof(age));
		snprintf(summary, sizeof(summary), "%s id=%s%s%s%s orphaned, pending for %s", c->method, c->id,
			 c->tool ? " (" : "", c->tool ? c->tool : "", c->tool ? ")" : "", age);
		timeline_add(a, c->ts_ns, ev->ts_ns, "orphaned", summary);
	}
	timeline_add(a, ev->ts_ns, ev->ts_ns, "exit", how);
	return a;
}

static json_t *report_build(struct recorder *r, const struct rec_server *s, const struct sonde_event *ev)
{
	json_t *rep = json_object(), *exit, *events;
	char headline[512], how[128];

	json_object_set_new(rep, "mcpsonde_report", json_integer(REPORT_VERSION));
	json_object_set_new(rep, "written_at", json_time(ev->real_ns));
	json_object_set_new(rep, "generator", json_string("mcpsonde " MCPSONDE_VERSION));
	json_object_set_new(rep, "process", report_process(r, s, ev));
	exit = report_exit(r, ev);
	json_object_set_new(rep, "exit", exit);
	report_headline(rep, headline, sizeof(headline));
	json_object_set_new(exit, "headline", json_string(headline));
	report_describe_exit(exit, how, sizeof(how));
	json_object_set_new(rep, "pending_calls", report_pending(s));
	json_object_set_new(rep, "frames", report_frames(r, s, ev->ts_ns));
	json_object_set_new(rep, "stderr", report_stderr(s));
	events = queue_json(&s->events, ev->ts_ns, true);
	json_object_set_new(rep, "events", events);
	json_object_set_new(rep, "timeline", report_timeline(s, ev, how));
	json_object_set_new(rep, "resources", report_resources(s, ev->ts_ns));
	json_object_set_new(rep, "capture_health", report_health(r, s));
	return rep;
}

/* A signal alone is not abnormal when the pipeline classified the exit as the stdio
 * shutdown sequence (stdin closed, then SIGTERM/SIGKILL): that is ev->exit.normal. */
static bool exit_is_abnormal(const struct rec_server *s, const struct ev_exit *x)
{
	return !x->normal || x->oom_killed || x->pending_calls > 0 || (s && s->norphans > 0);
}

static void recorder_on_exit(struct recorder *r, struct rec_server *s, const struct sonde_event *ev)
{
	struct report_opts ro = { r->report_dir, r->opts.max_reports, r->opts.max_report_bytes };
	char path[4096], err[256];
	struct sonde_event rep_ev;
	bool written = false;

	/* Servers only: a helper the server spawned (with its own stdio) exiting 1 is its
	 * business, not a crash to report. */
	if (s && r->report_dir && exit_is_abnormal(s, &ev->exit) && ev->session &&
	    (ev->exit.on_channel || ev->session->speaks_mcp)) {
		json_t *rep = report_build(r, s, ev);
		const char *comm = ev->session ? ev->session->comm : NULL;
		if (report_write(&ro, rep, comm && *comm ? comm : "unknown", s->pid, ev->real_ns, path, sizeof(path),
				 err, sizeof(err)) == 0) {
			r->stats.reports_written++;
			written = true;
		} else {
			r->stats.reports_failed++;
			fprintf(stderr, "mcpsonde: %s\n", err);
		}
		json_decref(rep);
	}
	if (s)
		server_forget(r, s);
	if (!written || !r->emit)
		return;
	/* Last: nothing of the recorder is held across the emit, and EV_REPORT is ignored. */
	memset(&rep_ev, 0, sizeof(rep_ev));
	rep_ev.type = EV_REPORT;
	rep_ev.ts_ns = ev->ts_ns;
	rep_ev.real_ns = ev->real_ns;
	rep_ev.pid = ev->pid;
	rep_ev.session = ev->session;
	rep_ev.report.path = path;
	sinks_emit(r->emit, &rep_ev);
}

/* ---- the sink ---- */

static void recorder_on_event(struct sink *sink, const struct sonde_event *ev)
{
	struct recorder *r = (struct recorder *)sink;
	struct rec_server *s;

	if (ev->type == EV_REPORT || ev->type >= EV__COUNT)
		return;
	if (ev->type == EV_LOSS && !ev->session && !ev->pid) {
		recorder_on_notable(r, NULL, ev);
		return;
	}
	s = server_get(r, ev);
	if (!s)
		return;
	switch (ev->type) {
	case EV_MESSAGE:
		recorder_on_message(r, s, ev);
		break;
	case EV_CALL:
		recorder_on_call(r, s, ev);
		break;
	case EV_STDERR:
		recorder_on_stderr(r, s, ev);
		break;
	case EV_STALL:
	case EV_BLOCKED_WRITE:
	case EV_STDIN_CLOSED:
	case EV_LOSS:
	case EV_INVALID:
		recorder_on_notable(r, s, ev);
		break;
	case EV_EXIT:
		recorder_on_exit(r, s, ev);
		break;
	default:
		break;
	}
}

/* One /proc sample per server per second. Only a process whose start_ticks match is
 * sampled: after PID reuse, or while replaying another machine's capture, /proc's process
 * of that pid is not the server. */
static void recorder_on_tick(struct sink *sink, uint64_t now_ns)
{
	struct recorder *r = (struct recorder *)sink;
	struct rec_server *s;

	for (s = r->lru_head; s; s = s->lru_next) {
		struct rec_sample *x;
		struct proc_sample ps;
		const struct rec_sample *prev = s->nsamples ?
			&s->samples[(s->sample_next + RECORDER_SAMPLES - 1) % RECORDER_SAMPLES] : NULL;
		if (!s->start_ticks || (prev && now_ns - prev->ts_ns < RECORDER_SAMPLE_NS * 9 / 10))
			continue;
		if (proc_sample((pid_t)s->pid, &ps) < 0 || ps.start_ticks != s->start_ticks)
			continue;
		x = &s->samples[s->sample_next];
		x->ts_ns = now_ns;
		x->cpu_ns = ps.cpu_ns;
		x->rss_bytes = ps.rss_bytes;
		x->threads = ps.threads;
		x->state = ps.state;
		s->sample_next = (s->sample_next + 1) % RECORDER_SAMPLES;
		if (s->nsamples < RECORDER_SAMPLES)
			s->nsamples++;
	}
}

static void recorder_close(struct sink *sink)
{
	struct recorder *r = (struct recorder *)sink;

	while (r->lru_head)
		server_forget(r, r->lru_head);
	queue_clear(&r->global_loss);
	outbuf_free(&r->scratch);
	free(r->report_dir);
	free(r);
}

void recorder_opts_default(struct recorder_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->frames = RECORDER_FRAMES_DEFAULT;
	o->max_reports = REPORT_MAX_FILES_DEFAULT;
	o->max_report_bytes = REPORT_MAX_BYTES_DEFAULT;
	o->stderr_bytes = RECORDER_STDERR_BYTES_DEFAULT;
	o->max_server_bytes = RECORDER_SERVER_BYTES_DEFAULT;
	o->max_total_bytes = RECORDER_TOTAL_BYTES_DEFAULT;
	o->max_servers = RECORDER_MAX_SERVERS_DEFAULT;
}

struct sink *sink_recorder_new(const struct recorder_opts *opts, struct sink_list *emit, char *err, size_t errlen)
{
	struct recorder_opts dflt;
	struct recorder *r;

	recorder_opts_default(&dflt);
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->opts = *opts;
	/* Zero means "the default" for every bound: a bound of 0 would record nothing. */
	if (!r->opts.frames)
		r->opts.frames = dflt.frames;
	if (!r->opts.max_reports)
		r->opts.max_reports = dflt.max_reports;
	if (!r->opts.max_report_bytes)
		r->opts.max_report_bytes = dflt.max_report_bytes;
	if (!r->opts.stderr_bytes)
		r->opts.stderr_bytes = dflt.stderr_bytes;
	if (!r->opts.max_server_bytes)
		r->opts.max_server_bytes = dflt.max_server_bytes;
	if (!r->opts.max_total_bytes)
		r->opts.max_total_bytes = dflt.max_total_bytes;
	if (!r->opts.max_servers)
		r->opts.max_servers = dflt.max_servers;
	r->opts.report_dir = NULL;
	if (opts->report_dir && *opts->report_dir) {
		/* Made now, so that a bad --report-dir fails at startup, not at the first crash. */
		if (report_dir_prepare(opts->report_dir, err, errlen) < 0) {
			free(r);
			return NULL;
		}
		r->report_dir = strdup(opts->report_dir);
		if (!r->report_dir) {
			snprintf(err, errlen, "out of memory");
			free(r);
			return NULL;
		}
	}
	r->emit = emit;
	r->fmt.capture_values = opts->capture_values;
	r->clk_tck = sysconf(_SC_CLK_TCK);
	if (r->clk_tck <= 0)
		r->clk_tck = 100;
	r->sink.name = "recorder";
	r->sink.on_event = recorder_on_event;
	r->sink.on_tick = recorder_on_tick;
	r->sink.close = recorder_close;
	return &r->sink;
}

const struct recorder_stats *recorder_stats(const struct sink *s)
{
	return &((const struct recorder *)s)->stats;
}

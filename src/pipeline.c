/* pipeline.c -- records in, events out: stream -> frame -> rpc -> session -> sinks.
 *
 * The kernel says what each record is to its process (events.h, its role): IN is the MCP
 * channel client -> server, OUT server -> client, ERR the server's stderr lines. A stream is
 * (process, channel file, role), as the kernel numbers it, so a dup'd stdout is the same
 * stream; events name it by the fd the role stands for (0, 1, 2). Streams and sessions are
 * created on first sight and bounded in number; a session ends with its process's exit
 * record. Loss is never silent: kernel drop counters (MSD_REC_LOSS), stream gaps, cut and
 * uncaptured bytes become EV_LOSS. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/conns.h"
#include "mcpsonde/pipeline.h"
#include "mcpsonde/procfs.h"
#include "mcpsonde/record.h"
#include "mcpsonde/rpc.h"
#include "mcpsonde/session.h"
#include "mcpsonde/stream.h"

#define HOLD_TIMEOUT_NS 2000000ull /* a record ahead of its stream waits this long for the hole */
#define TICK_SESSIONS_NS 250000000ull

/* As the kernel keys its stream offsets. */
struct pstream_key {
	uint32_t tgid;
	uint32_t role; /* enum msd_role */
	uint64_t ino;
	uint32_t dev;
	uint32_t pad;
};

struct pstream {
	struct pstream_key key;
	struct pipeline *p;
	struct psession *ps;
	struct session *sess;
	enum msd_role role;
	struct stream s;
	struct stream_stats reported; /* losses already turned into EV_LOSS */
	struct framer_stats budget_reported; /* the framer's budget_* already turned into EV_LOSS */
	uint64_t held_since_ns; /* 0 when nothing is held */
	uint64_t backlog_since_ns; /* MCP out: first short write since the last complete one */
	uint64_t backlog_bytes;    /* what the latest short write could not move */
	UT_hash_handle hh;
};

struct psession {
	uint32_t tgid;
	struct session *s;
	bool pending;      /* discovered, and no MCP method yet: told nothing */
	bool server_told;  /* hooks.on_server was called */
	bool resync_in;    /* its first captured read began inside a line: skip to the next */
	unsigned not_mcp;  /* methods outside MCP it read while pending */
	UT_hash_handle hh;
};

/* What the hooks are told after the record or tick at hand: bounded, one per process. */
#define NEWS_MAX 64
struct news {
	uint32_t tgid;
	bool not_mcp; /* else: a server */
};

struct pipeline {
	struct pipeline_opts opts;
	struct sink_list *sinks;
	struct session_env env;
	struct pipeline_stats stats;
	struct pstream *streams;
	unsigned nstreams;
	struct psession *sessions;
	unsigned nsessions;
	struct frame_budget budget; /* every stream's buffered bytes together */
	unsigned nheld; /* streams holding out-of-order records */
	uint64_t newest_ts_ns; /* the latest record's timestamp */
	bool behind;           /* records wait upstream (pipeline_set_behind) */
	uint64_t last_session_tick_ns;
	struct pipeline_stats reported; /* limit counters already turned into EV_LOSS */
	bool live;
	struct conns *conns; /* connections: the HTTP transport */
	pipeline_conn_ignore_fn conn_ignore;
	void *conn_ignore_ctx;
	struct pipeline_hooks hooks;
	struct news news[NEWS_MAX];
	unsigned nnews;
};

static const char *const drop_reason_names[MSD_DROP__MAX] = {
	[MSD_DROP_RINGBUF] = "ringbuf_full",
	[MSD_DROP_COPY] = "copy_failed",
	[MSD_DROP_TRUNCATED] = "truncated",
	[MSD_DROP_NO_ENTRY] = "no_entry",
	[MSD_DROP_EVENT] = "event_lost",
	[MSD_DROP_PROC_LIMIT] = "proc_limit",
	[MSD_DROP_UNCAPTURED] = "uncaptured",
	[MSD_DROP_BACKLOG] = "backlog",
	[MSD_DROP_CONN] = "conn_event_lost",
};

/* The fd each role stands for, in events: stdin, stdout, stderr. */
static int role_fd(enum msd_role role)
{
	return role == MSD_ROLE_IN ? 0 : role == MSD_ROLE_OUT ? 1 : role == MSD_ROLE_ERR ? 2 : -1;
}

void pipeline_opts_default(struct pipeline_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_frame = PIPELINE_MAX_FRAME_DEFAULT;
	o->memory_budget = PIPELINE_MEMORY_BUDGET_DEFAULT;
	o->stall_ns = 30ull * 1000000000ull;
	o->stall_p99_factor = 10;
	o->stdin_linger_ns = 10ull * 1000000000ull;
	o->init_timeout_ns = 10ull * 1000000000ull;
	o->blocked_write_ns = 5ull * 1000000000ull;
}

static struct session *session_get(struct pipeline *p, uint32_t tgid, uint64_t ts_ns);
static struct psession *psession_find(struct pipeline *p, uint32_t tgid);

static struct session *pipeline_session_of(void *ctx, uint32_t tgid, uint64_t ts_ns)
{
	return session_get(ctx, tgid, ts_ns);
}

static bool psession_admit(struct pipeline *p, struct psession *ps, const struct rpc_msg *m, enum msd_dir dir);

static bool pipeline_conn_admit(void *ctx, uint32_t tgid, const struct rpc_msg *m, enum msd_dir dir)
{
	struct pipeline *p = ctx;
	struct psession *ps = psession_find(p, tgid);

	return !ps || psession_admit(p, ps, m, dir);
}

static void pipeline_conn_ignored(void *ctx, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id)
{
	struct pipeline *p = ctx;

	if (p->conn_ignore)
		p->conn_ignore(p->conn_ignore_ctx, tgid, dev, ino, conn_id);
}

struct pipeline *pipeline_new(const struct pipeline_opts *opts, struct sink_list *sinks)
{
	struct pipeline *p = calloc(1, sizeof(*p));
	struct conns_env ce;

	if (!p)
		return NULL;
	p->opts = *opts;
	p->sinks = sinks;
	p->env.sinks = sinks;
	p->env.opts = &p->opts;
	p->env.stats = &p->stats;
	p->budget.limit = opts->memory_budget ? opts->memory_budget : PIPELINE_MEMORY_BUDGET_DEFAULT;
	ce = (struct conns_env){ .opts = &p->opts, .stats = &p->stats, .session_of = pipeline_session_of,
				 .admit = pipeline_conn_admit, .ignore = pipeline_conn_ignored, .ctx = p, .ignore_ctx = p };
	if (!(p->conns = conns_new(&ce))) {
		free(p);
		return NULL;
	}
	return p;
}

void pipeline_set_conn_ignore(struct pipeline *p, pipeline_conn_ignore_fn fn, void *ctx)
{
	p->conn_ignore = fn;
	p->conn_ignore_ctx = ctx;
}

void pipeline_set_live(struct pipeline *p, bool live)
{
	p->live = live;
	p->env.live = live;
}

void pipeline_set_hooks(struct pipeline *p, const struct pipeline_hooks *hooks)
{
	p->hooks = *hooks;
}

static struct psession *psession_find(struct pipeline *p, uint32_t tgid)
{
	struct psession *ps;

	HASH_FIND(hh, p->sessions, &tgid, sizeof(tgid), ps);
	return ps;
}

static struct session *session_find(struct pipeline *p, uint32_t tgid)
{
	struct psession *ps = psession_find(p, tgid);

	return ps ? ps->s : NULL;
}

static struct psession *psession_get(struct pipeline *p, uint32_t tgid, uint64_t ts_ns)
{
	struct psession *ps = psession_find(p, tgid);

	if (ps)
		return ps;
	if (p->nsessions >= PIPELINE_MAX_SESSIONS) {
		p->stats.sessions_dropped++;
		return NULL;
	}
	ps = calloc(1, sizeof(*ps));
	if (!ps || !(ps->s = session_new(tgid, ts_ns, &p->env))) {
		free(ps);
		return NULL;
	}
	ps->tgid = tgid;
	HASH_ADD(hh, p->sessions, tgid, sizeof(ps->tgid), ps);
	p->nsessions++;
	return ps;
}

static struct session *session_get(struct pipeline *p, uint32_t tgid, uint64_t ts_ns)
{
	struct psession *ps = psession_get(p, tgid, ts_ns);

	return ps ? ps->s : NULL;
}

static void pstream_free(struct pipeline *p, struct pstream *ps)
{
	if (ps->held_since_ns)
		p->nheld--;
	HASH_DEL(p->streams, ps);
	p->nstreams--;
	stream_free(&ps->s);
	free(ps);
}

static void session_end(struct pipeline *p, uint32_t tgid)
{
	struct pstream *st, *tmp;
	struct psession *ps;

	HASH_ITER(hh, p->streams, st, tmp)
		if (st->key.tgid == tgid)
			pstream_free(p, st);
	conns_end_process(p->conns, tgid);
	HASH_FIND(hh, p->sessions, &tgid, sizeof(tgid), ps);
	if (!ps)
		return;
	HASH_DEL(p->sessions, ps);
	p->nsessions--;
	session_free(ps->s);
	free(ps);
}

/* --- frames to messages ------------------------------------------------------------- */

struct decode_ctx {
	struct pstream *st;
	const struct frame *f;
};

static void news_add(struct pipeline *p, uint32_t tgid, bool not_mcp)
{
	if (p->nnews < NEWS_MAX)
		p->news[p->nnews++] = (struct news){ .tgid = tgid, .not_mcp = not_mcp };
}

/* Tells the hooks, now that nothing of the pipeline is in use up the stack. */
static void news_flush(struct pipeline *p)
{
	for (unsigned i = 0; i < p->nnews; i++) {
		const struct news *n = &p->news[i];

		if (n->not_mcp && p->hooks.on_not_mcp)
			p->hooks.on_not_mcp(p->hooks.ctx, n->tgid);
		else if (!n->not_mcp && p->hooks.on_server)
			p->hooks.on_server(p->hooks.ctx, n->tgid);
	}
	p->nnews = 0;
}

/* Whether a message of ps is told. A discovered process is an MCP server from its first MCP
 * method on; JSON-RPC without one (an editor's language server, another tool) is told
 * nothing, and after PIPELINE_NOT_MCP_AFTER methods it is let go. */
static bool psession_admit(struct pipeline *p, struct psession *ps, const struct rpc_msg *m, enum msd_dir dir)
{
	if (ps->pending) {
		if (!rpc_is_mcp_method(m->method)) {
			p->stats.unconfirmed_frames++;
			/* Once: a failed news_add is retried at the next message. */
			if (m->method && dir == MSD_DIR_READ && ++ps->not_mcp >= PIPELINE_NOT_MCP_AFTER &&
			    p->nnews < NEWS_MAX) {
				news_add(p, ps->tgid, true);
				ps->not_mcp = 0;
			}
			return false;
		}
		ps->pending = false;
		session_set_quiet(ps->s, false);
	}
	if (!ps->server_told && p->nnews < NEWS_MAX) {
		ps->server_told = true;
		news_add(p, ps->tgid, false);
	}
	return true;
}

static void pipeline_on_message(void *ctx, const struct rpc_msg *m)
{
	struct decode_ctx *d = ctx;
	enum msd_dir dir = d->st->role == MSD_ROLE_IN ? MSD_DIR_READ : MSD_DIR_WRITE;

	if (psession_admit(d->st->p, d->st->ps, m, dir))
		session_on_message(d->st->sess, dir, m, d->f);
}

static void pipeline_on_frame(void *ctx, const struct frame *f)
{
	struct pstream *st = ctx;
	struct decode_ctx d = { .st = st, .f = f };

	st->p->stats.frames++;
	if (st->ps->pending) {
		/* Before it is known to be a server, only what it reads can make it one. */
		if (st->role != MSD_ROLE_IN || rpc_decode(f, pipeline_on_message, &d) < 0)
			st->p->stats.unconfirmed_frames++;
		return;
	}
	if (f->oversized)
		st->p->stats.oversized_frames++;
	if (f->after_gap) {
		/* The line that follows a gap: kept when it is a whole message (the gap ended at
		 * a message boundary, as when a whole write's record was lost), dropped when it is
		 * the end of one whose start was lost. */
		if (st->role == MSD_ROLE_ERR || rpc_decode(f, pipeline_on_message, &d) < 0)
			st->p->stats.gap_tails++;
		return;
	}
	if (st->role == MSD_ROLE_ERR) {
		session_on_stderr(st->sess, f);
		return;
	}
	if (rpc_decode(f, pipeline_on_message, &d) < 0)
		session_on_invalid(st->sess, role_fd(st->role), f, false);
}

static void pipeline_report_loss(struct session *sess, const char *reason, uint64_t bytes, uint64_t records, int fd,
				 const struct ev_net *net, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_LOSS, .ts_ns = ts_ns, .net = net };

	ev.loss.reason = reason;
	ev.loss.bytes = bytes;
	ev.loss.records = records;
	ev.loss.fd = fd;
	session_emit(sess, &ev);
}

/* What the stream lost since the last call, by kind: records lost on the way (gap), the
 * middle of syscalls too long to copy (truncated), bytes moved by splice, sendfile...
 * (uncaptured). Each is a loss of this server's stream, never blamed on the server. */
bool pipeline_stream_losses(struct pipeline_stats *stats, struct session *sess, const struct stream_stats *now,
			    struct stream_stats *seen, int fd, const struct ev_net *net, uint64_t ts_ns)
{
	bool lost = now->gap_bytes != seen->gap_bytes || now->lost_bytes != seen->lost_bytes;

	if (now->gap_bytes != seen->gap_bytes) {
		stats->gaps += now->gaps - seen->gaps;
		stats->gap_bytes += now->gap_bytes - seen->gap_bytes;
		pipeline_report_loss(sess, "gap", now->gap_bytes - seen->gap_bytes, 0, fd, net, ts_ns);
	}
	if (now->cut_bytes != seen->cut_bytes) {
		stats->cut_bytes += now->cut_bytes - seen->cut_bytes;
		pipeline_report_loss(sess, "truncated", now->cut_bytes - seen->cut_bytes, 0, fd, net, ts_ns);
	}
	if (now->lost_bytes != seen->lost_bytes) {
		stats->uncaptured_bytes += now->lost_bytes - seen->lost_bytes;
		pipeline_report_loss(sess, "uncaptured", now->lost_bytes - seen->lost_bytes, 0, fd, net, ts_ns);
	}
	*seen = *now;
	return lost;
}

static void pipeline_report_gaps(struct pipeline *p, struct pstream *st, uint64_t ts_ns)
{
	const struct framer_stats *fr = &st->s.framer.stats;
	struct framer_stats *fseen = &st->budget_reported;
	bool budget_dropped = fr->budget_dropped != fseen->budget_dropped;
	bool lost = pipeline_stream_losses(&p->stats, st->sess, &st->s.stats, &st->reported, role_fd(st->role), NULL,
					   ts_ns);

	/* Answers may have gone in a gap, uncaptured bytes or a line given up for the memory
	 * budget (a cut message is still seen). */
	if (st->role != MSD_ROLE_ERR && (lost || budget_dropped))
		session_on_gap(st->sess, st->role == MSD_ROLE_IN ? MSD_DIR_READ : MSD_DIR_WRITE);
	if (budget_dropped || fr->budget_cut != fseen->budget_cut)
		pipeline_report_loss(st->sess, "memory_budget", fr->budget_dropped_bytes - fseen->budget_dropped_bytes,
				     fr->budget_dropped - fseen->budget_dropped + fr->budget_cut - fseen->budget_cut,
				     role_fd(st->role), NULL, ts_ns);
	*fseen = *fr;
}

/* Only held data waits for a timeout: a hole announced ahead (a long syscall's cut) is
 * reached by the records of its own syscall, which come in order. */
static void pipeline_track_hold(struct pipeline *p, struct pstream *st, uint64_t ts_ns)
{
	bool waits = stream_holds_data(&st->s);

	if (waits && !st->held_since_ns) {
		st->held_since_ns = ts_ns;
		p->nheld++;
	} else if (!waits && st->held_since_ns) {
		st->held_since_ns = 0;
		p->nheld--;
	}
}

static struct pstream *pstream_get(struct pipeline *p, const struct msd_data_rec *d)
{
	struct pstream_key key = { .tgid = d->hdr.tgid, .role = d->role, .ino = d->file_ino, .dev = d->file_dev };
	struct psession *ps;
	struct pstream *st;

	HASH_FIND(hh, p->streams, &key, sizeof(key), st);
	if (st)
		return st;
	if (p->nstreams >= PIPELINE_MAX_STREAMS) {
		p->stats.streams_dropped++;
		return NULL;
	}
	ps = psession_get(p, d->hdr.tgid, d->hdr.ts_ns);
	if (!ps)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->key = key;
	st->p = p;
	st->ps = ps;
	st->sess = ps->s;
	st->role = (enum msd_role)d->role;
	stream_init(&st->s, p->opts.max_frame);
	framer_set_budget(&st->s.framer, &p->budget);
	if (st->role == MSD_ROLE_IN && ps->resync_in) {
		/* What precedes the first whole line is the end of one sent before discovery. */
		st->s.framer.resync = true;
		ps->resync_in = false;
	}
	HASH_ADD(hh, p->streams, key, sizeof(st->key), st);
	p->nstreams++;
	return st;
}

/* A tracked process used a transfer the kernel cannot copy and cannot tie to a file
 * (io_uring): its traffic through it is invisible, which must be said. */
static void pipeline_on_uncaptured(struct pipeline *p, const struct msd_data_rec *d)
{
	struct sonde_event ev = { .type = EV_LOSS, .ts_ns = d->hdr.ts_ns };
	struct session *s = session_get(p, d->hdr.tgid, d->hdr.ts_ns);

	if (!s)
		return;
	ev.loss.reason = "uncaptured";
	ev.loss.records = 1;
	ev.loss.fd = -1;
	session_emit(s, &ev);
}

static void pipeline_on_data(struct pipeline *p, const struct msd_data_rec *d)
{
	struct pstream *st;

	if (d->role == MSD_ROLE_CONN) {
		conns_on_data(p->conns, d);
		return;
	}
	if (d->role != MSD_ROLE_IN && d->role != MSD_ROLE_OUT && d->role != MSD_ROLE_ERR) {
		if (d->flags & MSD_DATA_UNCAPTURED)
			pipeline_on_uncaptured(p, d);
		return;
	}
	st = pstream_get(p, d);
	if (!st)
		return;
	if (d->role == MSD_ROLE_IN && d->syscall_len == 0 && !(d->flags & MSD_DATA_UNCAPTURED)) {
		session_on_stdin_eof(st->sess, d->hdr.ts_ns);
		return;
	}
	if (d->role == MSD_ROLE_OUT && (d->flags & MSD_DATA_LAST)) {
		if (!(d->flags & MSD_DATA_SHORT))
			st->backlog_since_ns = 0;
		else if (!st->backlog_since_ns)
			st->backlog_since_ns = d->hdr.ts_ns;
		if (d->flags & MSD_DATA_SHORT)
			st->backlog_bytes = d->requested > d->syscall_len ? d->requested - d->syscall_len : 0;
	}
	if (d->role == MSD_ROLE_IN && !session_identity(st->sess)->stdio)
		session_on_stdio_kind(st->sess, (enum msd_fd_kind)d->fd_kind);
	p->stats.data_bytes += d->cap_len;
	/* Every record of a syscall with a hole announces it: the first to arrive places it. */
	if (d->flags & MSD_DATA_TRUNCATED)
		stream_hole(&st->s, d->hole_off, d->hole_len, (d->flags & MSD_DATA_CUT) ? STREAM_HOLE_CUT : STREAM_HOLE_LOST,
			    d->hdr.ts_ns, pipeline_on_frame, st);
	stream_feed(&st->s, d->stream_off, d->data, d->cap_len, d->hdr.ts_ns, pipeline_on_frame, st);
	pipeline_track_hold(p, st, d->hdr.ts_ns);
	pipeline_report_gaps(p, st, d->hdr.ts_ns);
}

static void pipeline_on_loss(struct pipeline *p, const struct msd_loss_rec *l)
{
	struct sonde_event ev = { .type = EV_LOSS, .ts_ns = l->hdr.ts_ns };

	if (l->reason >= MSD_DROP__MAX)
		return;
	p->stats.loss_records[l->reason] += l->records;
	p->stats.loss_bytes[l->reason] += l->bytes;
	ev.real_ns = ev.ts_ns + (uint64_t)p->opts.mono_to_real_ns;
	ev.loss.reason = drop_reason_names[l->reason];
	ev.loss.records = l->records;
	ev.loss.bytes = l->bytes;
	ev.loss.fd = -1;
	sinks_emit(p->sinks, &ev);
}

static void pstream_flush(struct pipeline *p, struct pstream *st, uint64_t ts_ns)
{
	stream_flush(&st->s, pipeline_on_frame, st);
	pipeline_track_hold(p, st, ts_ns);
	pipeline_report_gaps(p, st, ts_ns);
}

/* Before an exit is handled, whatever its streams still hold is delivered. */
static void pipeline_flush_process(struct pipeline *p, uint32_t tgid, uint64_t ts_ns)
{
	struct pstream *st, *tmp;

	HASH_ITER(hh, p->streams, st, tmp)
		if (st->key.tgid == tgid && st->s.nheld)
			pstream_flush(p, st, ts_ns);
}

static uint64_t ns_to_ticks(uint64_t ns)
{
	return ns / (1000000000ull / (uint64_t)proc_clock_ticks());
}

/* The kernel tracks a process it found reading JSON-RPC: a session told nothing until its
 * first MCP method. A session left by an earlier process of that PID (its exit lost) ends. */
static void pipeline_on_discover(struct pipeline *p, const struct msd_discover_rec *d)
{
	uint64_t ticks = ns_to_ticks(d->start_ns);
	struct psession *ps = psession_find(p, d->hdr.tgid);

	if (ps && session_identity(ps->s)->start_ticks && session_identity(ps->s)->start_ticks != ticks) {
		p->stats.sessions_replaced++;
		pipeline_release(p, d->hdr.tgid, "gone", d->hdr.ts_ns);
		ps = NULL;
	}
	if (!ps && !(ps = psession_get(p, d->hdr.tgid, d->hdr.ts_ns)))
		return;
	ps->pending = !ps->server_told;
	ps->resync_in = d->line_off > 0;
	session_on_discover(ps->s, ticks, d->comm);
	session_set_quiet(ps->s, ps->pending);
}

void pipeline_release(struct pipeline *p, uint32_t tgid, const char *reason, uint64_t ts_ns)
{
	struct session *s = session_find(p, tgid);
	struct sonde_event ev = { .type = EV_UNTRACKED, .ts_ns = ts_ns };

	if (!s)
		return;
	ev.untracked.reason = reason;
	session_emit(s, &ev);
	session_end(p, tgid);
}

const struct session_identity *pipeline_identity(struct pipeline *p, uint32_t tgid)
{
	struct session *s = session_find(p, tgid);

	return s ? session_identity(s) : NULL;
}

void pipeline_set_peers(struct pipeline *p, uint32_t tgid, const struct proc_ref *client, const struct proc_ref *relay,
			uint64_t ts_ns)
{
	struct session *s = session_find(p, tgid);

	if (s)
		session_on_peers(s, client, relay, ts_ns);
}

void pipeline_set_where(struct pipeline *p, uint32_t tgid, const struct attrib_record *where, uint64_t ts_ns)
{
	struct session *s = session_find(p, tgid);

	if (s)
		session_on_where(s, where, ts_ns);
}

int pipeline_feed(void *pipeline, const struct msd_rec_hdr *rec)
{
	struct pipeline *p = pipeline;
	struct session *s;

	p->stats.records++;
	/* Capture files are checked by their reader; this guards every other source too. */
	if (record_check(rec, NULL, 0) < 0) {
		p->stats.invalid_records++;
		return 0;
	}
	if (rec->ts_ns > p->newest_ts_ns)
		p->newest_ts_ns = rec->ts_ns;
	switch (rec->kind) {
	case MSD_REC_DATA:
		pipeline_on_data(p, (const struct msd_data_rec *)rec);
		break;
	case MSD_REC_PROC:
		if ((s = session_get(p, rec->tgid, rec->ts_ns)))
			session_on_proc(s, (const struct msd_proc_rec *)rec);
		break;
	case MSD_REC_FORK:
		if ((s = session_get(p, rec->tgid, rec->ts_ns)))
			session_on_fork(s, (const struct msd_fork_rec *)rec);
		break;
	case MSD_REC_EXEC:
		if ((s = session_get(p, rec->tgid, rec->ts_ns)))
			session_on_exec(s, (const struct msd_exec_rec *)rec);
		break;
	case MSD_REC_OOM:
		if ((s = session_get(p, rec->tgid, rec->ts_ns)))
			session_on_oom(s, rec->ts_ns);
		break;
	case MSD_REC_EXIT:
		if (!(s = session_get(p, rec->tgid, rec->ts_ns)))
			break;
		pipeline_flush_process(p, rec->tgid, rec->ts_ns);
		conns_flush_process(p->conns, rec->tgid, rec->ts_ns);
		session_on_exit(s, (const struct msd_exit_rec *)rec);
		session_end(p, rec->tgid);
		break;
	case MSD_REC_CONN:
		conns_on_record(p->conns, (const struct msd_conn_rec *)rec);
		break;
	case MSD_REC_LOSS:
		pipeline_on_loss(p, (const struct msd_loss_rec *)rec);
		break;
	case MSD_REC_DISCOVER:
		if (rec->size >= sizeof(struct msd_discover_rec))
			pipeline_on_discover(p, (const struct msd_discover_rec *)rec);
		break;
	default:
		break;
	}
	news_flush(p);
	return 0;
}

/* What a bound turned away is a loss like any other: one event per reason and tick with
 * the increase, so hostile input costs bounded output too. */
static void pipeline_report_limits(struct pipeline *p, uint64_t now_ns)
{
	static const struct {
		const char *reason;
		size_t off;
	} limits[] = {
		{ "pending_limit", offsetof(struct pipeline_stats, pending_dropped) },
		{ "logical_call_limit", offsetof(struct pipeline_stats, logical_dropped) },
		{ "session_limit", offsetof(struct pipeline_stats, sessions_dropped) },
		{ "stream_limit", offsetof(struct pipeline_stats, streams_dropped) },
		{ "conn_limit", offsetof(struct pipeline_stats, conns_dropped) },
		{ "http_unsettled", offsetof(struct pipeline_stats, http_unsettled) },
		{ "invalid_record", offsetof(struct pipeline_stats, invalid_records) },
	};

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		uint64_t *cur = (uint64_t *)((char *)&p->stats + limits[i].off);
		uint64_t *seen = (uint64_t *)((char *)&p->reported + limits[i].off);
		struct sonde_event ev = { .type = EV_LOSS, .ts_ns = now_ns };

		if (*cur == *seen)
			continue;
		ev.real_ns = now_ns + (uint64_t)p->opts.mono_to_real_ns;
		ev.loss.reason = limits[i].reason;
		ev.loss.records = *cur - *seen;
		ev.loss.fd = -1;
		*seen = *cur;
		sinks_emit(p->sinks, &ev);
	}
}

void pipeline_tick(struct pipeline *p, uint64_t now_ns)
{
	/* While records wait upstream the missing one may be among them: a held record is given
	 * up only once records that much newer than it have arrived. */
	uint64_t ref = p->behind ? p->newest_ts_ns : now_ns;
	struct psession *ps, *ptmp;
	struct pstream *st, *tmp;

	if (p->nheld) {
		HASH_ITER(hh, p->streams, st, tmp)
			if (st->held_since_ns && ref > st->held_since_ns && ref - st->held_since_ns > HOLD_TIMEOUT_NS)
				pstream_flush(p, st, now_ns);
	}
	conns_tick(p->conns, ref, now_ns);
	if (now_ns - p->last_session_tick_ns < TICK_SESSIONS_NS) {
		news_flush(p);
		return;
	}
	p->last_session_tick_ns = now_ns;
	pipeline_report_limits(p, now_ns);
	HASH_ITER(hh, p->streams, st, tmp) {
		if (st->backlog_since_ns && p->opts.blocked_write_ns &&
		    now_ns - st->backlog_since_ns > p->opts.blocked_write_ns)
			session_on_blocked_write(st->sess, role_fd(st->role), st->backlog_since_ns, st->backlog_bytes, now_ns);
		/* A line given up for another stream's sake: said now, not at this one's next record. */
		if (st->s.framer.stats.budget_dropped != st->budget_reported.budget_dropped)
			pipeline_report_gaps(p, st, now_ns);
	}
	HASH_ITER(hh, p->sessions, ps, ptmp)
		session_tick(ps->s, now_ns, p->live);
	sinks_tick(p->sinks, now_ns);
	news_flush(p);
}

void pipeline_set_behind(struct pipeline *p, bool behind)
{
	p->behind = behind;
}

void pipeline_blocked_write(struct pipeline *p, uint32_t tgid, int fd, uint64_t enter_ns, uint64_t bytes,
			    uint64_t now_ns)
{
	struct session *s = session_find(p, tgid);

	if (s && session_identity(s)->speaks_mcp)
		session_on_blocked_write(s, fd, enter_ns, bytes, now_ns);
}

void pipeline_finish(struct pipeline *p, uint64_t now_ns)
{
	struct psession *ps, *ptmp;
	struct pstream *st, *tmp;

	HASH_ITER(hh, p->streams, st, tmp)
		pstream_flush(p, st, now_ns);
	conns_finish(p->conns, now_ns);
	HASH_ITER(hh, p->sessions, ps, ptmp)
		session_finish(ps->s);
	pipeline_report_limits(p, now_ns);
	news_flush(p);
}

const struct pipeline_stats *pipeline_stats(const struct pipeline *p)
{
	return &p->stats;
}

unsigned pipeline_pending(const struct pipeline *p)
{
	const struct psession *ps, *tmp;
	unsigned n = 0;

	HASH_ITER(hh, p->sessions, ps, tmp)
		n += session_pending(ps->s);
	return n;
}

void pipeline_free(struct pipeline *p)
{
	struct psession *ps, *ptmp;
	struct pstream *st, *tmp;

	if (!p)
		return;
	HASH_ITER(hh, p->streams, st, tmp)
		pstream_free(p, st);
	conns_free(p->conns);
	HASH_ITER(hh, p->sessions, ps, ptmp) {
		HASH_DEL(p->sessions, ps);
		session_free(ps->s);
		free(ps);
	}
	free(p);
}

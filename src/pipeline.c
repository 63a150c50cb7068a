/* pipeline.c -- records in, events out: stream -> frame -> rpc -> session -> sinks.
 *
 * The MCP stdio channel of a process is its fd 0 (read: client -> server) and fd 1
 * (write: server -> client); its fd 2 writes are stderr lines. Other descriptors the
 * kernel captured are counted and ignored. Streams and sessions are created on first
 * sight and bounded in number; a session ends with its process's exit record. Loss is
 * never silent: kernel drop counters (MSD_REC_LOSS) and stream gaps become EV_LOSS. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/pipeline.h"
#include "mcpsonde/record.h"
#include "mcpsonde/rpc.h"
#include "mcpsonde/session.h"
#include "mcpsonde/stream.h"

#define HOLD_TIMEOUT_NS 2000000ull /* a record ahead of its stream waits this long for the hole */
#define TICK_SESSIONS_NS 250000000ull

enum stream_role { ROLE_MCP_IN, ROLE_MCP_OUT, ROLE_STDERR };

struct pstream {
	uint64_t key; /* tgid << 8 | fd << 1 | dir */
	struct pipeline *p;
	struct session *sess;
	enum stream_role role;
	int fd;
	enum msd_dir dir;
	struct stream s;
	uint64_t gaps_reported; /* gap bytes already turned into EV_LOSS */
	uint64_t gap_count_reported;
	uint64_t held_since_ns; /* 0 when nothing is held */
	uint64_t syscall_off;   /* stream offset of the current syscall's first record */
	uint64_t backlog_since_ns; /* MCP out: first short write since the last complete one */
	uint64_t backlog_bytes;    /* what the latest short write could not move */
	UT_hash_handle hh;
};

struct psession {
	uint32_t tgid;
	struct session *s;
	UT_hash_handle hh;
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
	unsigned nheld; /* streams holding out-of-order records */
	uint64_t last_session_tick_ns;
	struct pipeline_stats reported; /* limit counters already turned into EV_LOSS */
	bool live;
};

static const char *const drop_reason_names[MSD_DROP__MAX] = {
	[MSD_DROP_RINGBUF] = "ringbuf_full",
	[MSD_DROP_COPY] = "copy_failed",
	[MSD_DROP_TRUNCATED] = "truncated",
	[MSD_DROP_NO_ENTRY] = "no_entry",
	[MSD_DROP_EVENT] = "event_lost",
};

void pipeline_opts_default(struct pipeline_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->max_frame = PIPELINE_MAX_FRAME_DEFAULT;
	o->stall_ns = 30ull * 1000000000ull;
	o->stall_p99_factor = 10;
	o->stdin_linger_ns = 10ull * 1000000000ull;
	o->init_timeout_ns = 10ull * 1000000000ull;
	o->blocked_write_ns = 5ull * 1000000000ull;
}

struct pipeline *pipeline_new(const struct pipeline_opts *opts, struct sink_list *sinks)
{
	struct pipeline *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->opts = *opts;
	p->sinks = sinks;
	p->env.sinks = sinks;
	p->env.opts = &p->opts;
	p->env.stats = &p->stats;
	return p;
}

void pipeline_set_live(struct pipeline *p, bool live)
{
	p->live = live;
	p->env.live = live;
}

static struct session *session_find(struct pipeline *p, uint32_t tgid)
{
	struct psession *ps;

	HASH_FIND(hh, p->sessions, &tgid, sizeof(tgid), ps);
	return ps ? ps->s : NULL;
}

static struct session *session_get(struct pipeline *p, uint32_t tgid, uint64_t ts_ns)
{
	struct psession *ps;

	HASH_FIND(hh, p->sessions, &tgid, sizeof(tgid), ps);
	if (ps)
		return ps->s;
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
	return ps->s;
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
		if ((uint32_t)(st->key >> 8) == tgid)
			pstream_free(p, st);
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

static void pipeline_on_message(void *ctx, const struct rpc_msg *m)
{
	struct decode_ctx *d = ctx;

	session_on_message(d->st->sess, d->st->dir, m, d->f);
}

static void pipeline_on_frame(void *ctx, const struct frame *f)
{
	struct pstream *st = ctx;
	struct decode_ctx d = { .st = st, .f = f };

	st->p->stats.frames++;
	if (f->oversized)
		st->p->stats.oversized_frames++;
	if (st->role == ROLE_STDERR) {
		session_on_stderr(st->sess, f);
		return;
	}
	/* A line framed from a '{' after a gap that is not JSON was the tail of a lost message:
	 * part of the loss already reported, not garbage the process wrote. */
	if (rpc_decode(f, pipeline_on_message, &d) < 0 && !f->after_gap)
		session_on_invalid(st->sess, st->fd, f, false);
}

static void pipeline_report_gaps(struct pipeline *p, struct pstream *st, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_LOSS, .ts_ns = ts_ns };
	uint64_t gaps = st->s.stats.gap_bytes;

	if (gaps == st->gaps_reported)
		return;
	ev.loss.reason = "gap";
	ev.loss.bytes = gaps - st->gaps_reported;
	ev.loss.fd = st->fd;
	p->stats.gaps += st->s.stats.gaps - st->gap_count_reported;
	st->gap_count_reported = st->s.stats.gaps;
	p->stats.gap_bytes += ev.loss.bytes;
	st->gaps_reported = gaps;
	session_emit(st->sess, &ev);
	if (st->role != ROLE_STDERR)
		session_on_gap(st->sess, st->dir);
}

static void pipeline_track_hold(struct pipeline *p, struct pstream *st, uint64_t ts_ns)
{
	if (st->s.nheld && !st->held_since_ns) {
		st->held_since_ns = ts_ns;
		p->nheld++;
	} else if (!st->s.nheld && st->held_since_ns) {
		st->held_since_ns = 0;
		p->nheld--;
	}
}

static struct pstream *pstream_get(struct pipeline *p, const struct msd_data_rec *d, enum stream_role role)
{
	uint64_t key = (uint64_t)d->hdr.tgid << 8 | (uint64_t)d->fd << 1 | d->dir;
	struct pstream *st;
	struct session *sess;

	HASH_FIND(hh, p->streams, &key, sizeof(key), st);
	if (st)
		return st;
	if (p->nstreams >= PIPELINE_MAX_STREAMS) {
		p->stats.streams_dropped++;
		return NULL;
	}
	sess = session_get(p, d->hdr.tgid, d->hdr.ts_ns);
	if (!sess)
		return NULL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->key = key;
	st->p = p;
	st->sess = sess;
	st->role = role;
	st->fd = d->fd;
	st->dir = (enum msd_dir)d->dir;
	stream_init(&st->s, p->opts.max_frame);
	HASH_ADD(hh, p->streams, key, sizeof(st->key), st);
	p->nstreams++;
	return st;
}

static void pipeline_on_data(struct pipeline *p, const struct msd_data_rec *d)
{
	enum stream_role role;
	struct pstream *st;

	if (d->fd == 0 && d->dir == MSD_DIR_READ)
		role = ROLE_MCP_IN;
	else if (d->fd == 1 && d->dir == MSD_DIR_WRITE)
		role = ROLE_MCP_OUT;
	else if (d->fd == 2 && d->dir == MSD_DIR_WRITE)
		role = ROLE_STDERR;
	else
		return;
	st = pstream_get(p, d, role);
	if (!st)
		return;
	/* A helper the server spawned talks to it over pipes of its own: not MCP, not stderr
	 * of a server. */
	if (!session_identity(st->sess)->on_channel)
		return;
	if (role == ROLE_MCP_IN && d->syscall_len == 0) {
		session_on_stdin_eof(st->sess, d->hdr.ts_ns);
		return;
	}
	if (role == ROLE_MCP_OUT && (d->flags & MSD_DATA_LAST)) {
		if (!(d->flags & MSD_DATA_SHORT))
			st->backlog_since_ns = 0;
		else if (!st->backlog_since_ns)
			st->backlog_since_ns = d->hdr.ts_ns;
		if (d->flags & MSD_DATA_SHORT)
			st->backlog_bytes = d->requested > d->syscall_len ? d->requested - d->syscall_len : 0;
	}
	if (role == ROLE_MCP_IN && !session_identity(st->sess)->stdio)
		session_on_stdio_kind(st->sess, (enum msd_fd_kind)d->fd_kind);
	p->stats.data_bytes += d->cap_len;
	if (d->chunk == 0)
		st->syscall_off = d->stream_off;
	stream_feed(&st->s, d->stream_off, d->data, d->cap_len, d->hdr.ts_ns, pipeline_on_frame, st);
	/* The kernel stopped copying this syscall: the rest of it is known lost, no need to
	 * wait for it as if it were only reordered. */
	if (d->flags & MSD_DATA_TRUNCATED)
		stream_skip_to(&st->s, st->syscall_off + d->syscall_len, pipeline_on_frame, st);
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
		if ((uint32_t)(st->key >> 8) == tgid && st->held_since_ns)
			pstream_flush(p, st, ts_ns);
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
		session_on_exit(s, (const struct msd_exit_rec *)rec);
		session_end(p, rec->tgid);
		break;
	case MSD_REC_LOSS:
		pipeline_on_loss(p, (const struct msd_loss_rec *)rec);
		break;
	default:
		break;
	}
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
	struct psession *ps, *ptmp;
	struct pstream *st, *tmp;

	if (p->nheld) {
		HASH_ITER(hh, p->streams, st, tmp)
			if (st->held_since_ns && now_ns - st->held_since_ns > HOLD_TIMEOUT_NS)
				pstream_flush(p, st, now_ns);
	}
	if (now_ns - p->last_session_tick_ns < TICK_SESSIONS_NS)
		return;
	p->last_session_tick_ns = now_ns;
	pipeline_report_limits(p, now_ns);
	HASH_ITER(hh, p->streams, st, tmp)
		if (st->backlog_since_ns && p->opts.blocked_write_ns &&
		    now_ns - st->backlog_since_ns > p->opts.blocked_write_ns)
			session_on_blocked_write(st->sess, st->fd, st->backlog_since_ns, st->backlog_bytes, now_ns);
	HASH_ITER(hh, p->sessions, ps, ptmp)
		session_tick(ps->s, now_ns, p->live);
	sinks_tick(p->sinks, now_ns);
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
	HASH_ITER(hh, p->sessions, ps, ptmp)
		session_finish(ps->s);
	pipeline_report_limits(p, now_ns);
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
	HASH_ITER(hh, p->sessions, ps, ptmp) {
		HASH_DEL(p->sessions, ps);
		session_free(ps->s);
		free(ps);
	}
	free(p);
}

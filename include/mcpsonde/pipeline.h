/* pipeline.h -- records in, events out: stream -> frame (stdio) or http (connections, conns.h)
 * -> rpc -> session -> sinks.
 *
 * The pipeline is fed records in order (from source_live or a capture reader) and a clock
 * (pipeline_tick) so that time-based detection runs the same live and in replay, where the
 * clock is the records' own timestamps. It owns the streams (one per process, channel file, role)
 * and the sessions (one per observed process). Single-threaded: the HTTP thread of the
 * metrics sink reads snapshots, never this. */
#ifndef MCPSONDE_PIPELINE_H
#define MCPSONDE_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events.h"
#include "scrub.h"
#include "sink.h"

#define PIPELINE_MAX_FRAME_DEFAULT (16u << 20)
#define PIPELINE_MEMORY_BUDGET_DEFAULT (256u << 20)
#define PIPELINE_MAX_PENDING 65536 /* pending calls per session; a new one evicts the oldest (counted) */
#define PIPELINE_MAX_SESSIONS 4096
#define PIPELINE_MAX_STREAMS 65536
#define PIPELINE_NOT_MCP_AFTER 4 /* methods outside MCP a discovered process reads before it is let go */

struct pipeline_opts {
	size_t max_frame;          /* per-stream line buffer cap (bytes) */
	size_t memory_budget;      /* every stream's buffered bytes together (frame_budget, frame.h) */
	int64_t mono_to_real_ns;   /* CLOCK_REALTIME - CLOCK_MONOTONIC of the observed machine */
	bool capture_values;
	enum redact_mode redact;   /* free text: secret-looking values masked (default), dropped, or kept */
	uint64_t stall_ns;         /* pending-call threshold; 0 disables stall detection */
	unsigned stall_p99_factor; /* stall when pending > factor * the tool's p99, if larger */
	uint64_t stdin_linger_ns;  /* server alive this long after stdin closed: reported */
	uint64_t init_timeout_ns;  /* initialize unanswered this long: reported */
	uint64_t blocked_write_ns; /* output backed up (client not reading) this long: reported */
};

void pipeline_opts_default(struct pipeline_opts *o);

struct pipeline_stats {
	uint64_t records;
	uint64_t data_bytes;
	uint64_t frames;
	uint64_t messages;
	uint64_t invalid_frames;
	uint64_t oversized_frames;
	uint64_t gaps, gap_bytes;   /* holes nobody announced: records lost on the way */
	uint64_t gap_tails;         /* lines after a gap that were not whole messages: dropped */
	uint64_t cut_bytes;         /* the middle of syscalls too long to copy whole */
	uint64_t uncaptured_bytes;  /* moved on a channel by splice, sendfile...: not copied */
	uint64_t pending_dropped;   /* pending calls evicted because a session hit PIPELINE_MAX_PENDING */
	uint64_t logical_dropped;   /* multi-round-trip chains and tasks given up for room (calls.h) */
	uint64_t sessions_dropped;
	uint64_t streams_dropped;
	uint64_t invalid_records;   /* malformed records (record_check) turned away */
	uint64_t unmatched_responses;
	uint64_t unconfirmed_frames; /* of discovered processes before an MCP method: never told */
	uint64_t sessions_replaced;  /* a discovered process took the PID of a session whose exit was lost */
	uint64_t loss_records[MSD_DROP__MAX], loss_bytes[MSD_DROP__MAX];
	/* connections (conns.h) */
	uint64_t conns;             /* followed */
	uint64_t conns_mcp;         /* found to carry JSON-RPC */
	uint64_t conns_set_aside;   /* not HTTP, HTTP without JSON-RPC, upgraded, lost, broken */
	uint64_t conns_dropped;     /* given up for room (CONNS_MAX) */
	uint64_t conn_ignored_bytes;/* copied before the kernel heard they were set aside */
	uint64_t http_exchanges;
	uint64_t http_unsettled;    /* requests of an exchange past CONNS_EXCHANGE_IDS: not settled */
};

struct session;
struct stream_stats;
struct ev_net;

/* Tells the kernel a connection can be ignored (source_live_conn_ignore). */
typedef void (*pipeline_conn_ignore_fn)(void *ctx, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id);

struct pipeline;

/* What the pipeline tells the stage that decides what is watched (targets.h). Called after
 * the record or tick that caused it has been handled, never from inside it, so the callee
 * may call back into the pipeline (pipeline_release...). */
struct pipeline_hooks {
	/* The first message of a process that makes it an MCP server: any message of a process
	 * given by PID; for a discovered one, the first with an MCP method (its messages are
	 * told from that one on, what came before is counted in unconfirmed_frames). */
	void (*on_server)(void *ctx, uint32_t tgid);
	/* A discovered process read PIPELINE_NOT_MCP_AFTER messages, none with an MCP method. */
	void (*on_not_mcp)(void *ctx, uint32_t tgid);
	void *ctx;
};

struct pipeline *pipeline_new(const struct pipeline_opts *opts, struct sink_list *sinks);
void pipeline_set_hooks(struct pipeline *p, const struct pipeline_hooks *hooks);
/* Who talks to tgid: its client process and the relay between them (session_on_peers). */
void pipeline_set_peers(struct pipeline *p, uint32_t tgid, const struct proc_ref *client, const struct proc_ref *relay,
			uint64_t ts_ns);
/* Where tgid runs (session_on_where). */
void pipeline_set_where(struct pipeline *p, uint32_t tgid, const struct attrib_record *where, uint64_t ts_ns);
/* The identity of tgid's session, NULL when it has none. */
const struct session_identity *pipeline_identity(struct pipeline *p, uint32_t tgid);
/* tgid is no longer watched and no exit will come (a relay, JSON-RPC that is not MCP, gone
 * unseen): EV_UNTRACKED tells the sinks, then its session and streams go. */
void pipeline_release(struct pipeline *p, uint32_t tgid, const char *reason, uint64_t ts_ns);
/* Feeds one record. Matches source_record_fn: ctx is the pipeline. Always returns 0. */
int pipeline_feed(void *pipeline, const struct msd_rec_hdr *rec);
/* Live capture: stall events sample /proc (meaningless when replaying a capture). */
void pipeline_set_live(struct pipeline *p, bool live);
void pipeline_set_conn_ignore(struct pipeline *p, pipeline_conn_ignore_fn fn, void *ctx);
/* What a stream lost since *seen (gaps, cuts, uncaptured bytes), told as EV_LOSS events of
 * sess (fd, or net for a connection) and added to stats; *seen catches up. Returns whether
 * bytes were lost (a cut message is still seen whole). */
bool pipeline_stream_losses(struct pipeline_stats *stats, struct session *sess, const struct stream_stats *now,
			    struct stream_stats *seen, int fd, const struct ev_net *net, uint64_t ts_ns);
/* Records are waiting upstream (live: read from the ring buffer, not yet fed): a record held
 * for a missing one ahead of it is judged against the newest record fed, not the clock. */
void pipeline_set_behind(struct pipeline *p, bool behind);
/* A write by tgid on fd entered at enter_ns has not returned by now_ns (the client is not
 * reading). Reported once per blocked write. */
void pipeline_blocked_write(struct pipeline *p, uint32_t tgid, int fd, uint64_t enter_ns, uint64_t bytes,
			    uint64_t now_ns);
/* Advances the clock (CLOCK_MONOTONIC ns): stalls, silences, sinks' ticks. */
void pipeline_tick(struct pipeline *p, uint64_t now_ns);
/* End of input: flushes partial streams (a replay's end, or attach stopping). Pending calls
 * of live processes stay pending: they are not orphaned by mcpsonde stopping. */
void pipeline_finish(struct pipeline *p, uint64_t now_ns);
const struct pipeline_stats *pipeline_stats(const struct pipeline *p);
/* Number of calls currently pending over all sessions. */
unsigned pipeline_pending(const struct pipeline *p);
void pipeline_free(struct pipeline *p);

#endif

/* conns.h -- the HTTP transport stage: the connections of observed processes, decoded into
 * MCP messages for their sessions.
 *
 * Beside the stdio framer (DESIGN.md, "How the shape grows"): each connection the kernel
 * follows (events.h: MSD_ROLE_CONN, MSD_REC_CONN) is two byte streams (stream.c: by offset,
 * gaps and cuts placed) feeding one HTTP/1.1 + SSE decoder (http.c). Its JSON-RPC payloads
 * go through rpc.c to the process's session with where they travelled (session.h: the
 * scope, the side, the connection); its exchanges settle the requests they carried (an
 * error status, a connection closed before the answer) and become EV_HTTP events. A
 * connection the decoder sets aside (not HTTP, no JSON-RPC, an upgrade, a peer it cannot
 * follow) is reported to the kernel once, through ignore, and costs a counter from then on.
 *
 * Invariants:
 * - A connection is (tgid, conn_id): an fd or inode reused is another connection.
 * - Bounded: CONNS_MAX connections, the least recently active given up first (counted, an
 *   EV_LOSS "conn_limit"); per connection what stream.c and http.c bound, plus at most
 *   HTTP_MAX_PENDING + 1 exchanges' request ids (CONNS_EXCHANGE_IDS each).
 * - Loss is told per connection: gaps, cuts and uncaptured bytes of its streams are EV_LOSS
 *   events of its process with the connection in ev->net.
 * - A connection never outlives its process's session: conns_end_process comes first. */
#ifndef MCPSONDE_CONNS_H
#define MCPSONDE_CONNS_H

#include <stdint.h>

#include "events.h"
#include "pipeline.h"
#include "rpc.h"

#define CONNS_MAX 4096
#define CONNS_EXCHANGE_IDS 8 /* request ids of one exchange settled at its end; more: counted */

struct session;
struct conns;

struct conns_env {
	const struct pipeline_opts *opts;
	struct pipeline_stats *stats;
	/* The session of process tgid, created if needed; NULL when none can be. */
	struct session *(*session_of)(void *ctx, uint32_t tgid, uint64_t ts_ns);
	/* Whether a message of process tgid is told: a process discovered by its HTTP traffic
	 * is an MCP server only from its first MCP method on (NULL: every message is). */
	bool (*admit)(void *ctx, uint32_t tgid, const struct rpc_msg *m, enum msd_dir dir);
	/* The kernel may stop copying this connection (NULL: nobody to tell, as in replay). */
	pipeline_conn_ignore_fn ignore;
	void *ctx, *ignore_ctx;
};

struct conns *conns_new(const struct conns_env *env);
void conns_on_data(struct conns *t, const struct msd_data_rec *d);
void conns_on_record(struct conns *t, const struct msd_conn_rec *r);
/* Process tgid exits: what its connections hold is delivered (before its session settles). */
void conns_flush_process(struct conns *t, uint32_t tgid, uint64_t ts_ns);
/* ... and then its connections go, unreported (its session told the exit). */
void conns_end_process(struct conns *t, uint32_t tgid);
/* Held-back records whose hole did not fill within the hold timeout of ref_ns (the clock, or
 * while records wait upstream the newest record fed: pipeline_set_behind) become gaps. */
void conns_tick(struct conns *t, uint64_t ref_ns, uint64_t now_ns);
/* End of input: everything held is delivered; open exchanges stay open. */
void conns_finish(struct conns *t, uint64_t now_ns);
void conns_free(struct conns *t);

#endif

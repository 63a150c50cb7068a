/* session.h -- one observed process: MCP identity, pending calls, correlation, silences.
 *
 * Requests are pending, keyed by (direction, scope, id as JSON text), until their response, a
 * notifications/cancelled, or the process's exit (orphaned). There is no time-to-live:
 * a slow call is a stall, reported once, never dropped; a call whose answer may have been
 * lost in a capture gap is reported lost. The table is bounded (PIPELINE_MAX_PENDING): a new
 * request evicts the oldest pending one, counted in stats.pending_dropped.
 *
 * The scope is "" on stdio, where one client talks to the process. Over HTTP many clients
 * do, each counting ids from 0: the scope is the MCP session (Mcp-Session-Id, or the legacy
 * transport's sessionId), or without one the HTTP exchange, whose response carries the
 * answers. An observed process can be the MCP client of an HTTP connection (an agent): its
 * writes are then the requests, and what it learns of the server goes with the server's
 * address, not into its own identity. */
#ifndef MCPSONDE_SESSION_H
#define MCPSONDE_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "event.h"
#include "events.h"
#include "frame.h"
#include "pipeline.h"
#include "rpc.h"
#include "sink.h"

struct session;

struct session_env {
	struct sink_list *sinks;
	const struct pipeline_opts *opts;
	struct pipeline_stats *stats;
	bool live; /* the processes run on this machine: /proc and their files can be read */
};

/* Where a message travelled when it was not on the process's stdio: an HTTP connection. */
#define SESSION_SCOPE_MAX 160
struct session_via {
	const char *scope;           /* correlation scope (at most SESSION_SCOPE_MAX - 1 bytes) */
	bool client;                 /* the observed process is the MCP client here */
	const struct ev_net *net;    /* told in the events; copied by what outlives the call */
	unsigned http_status;        /* of the HTTP response the message rode in, 0: a request */
	const char *header_mismatch; /* a request whose Mcp-Method or Mcp-Name header disagrees
				      * with its body: the header's name */
	const char *id;              /* an error answer without id that HTTP pairs with the one
				      * request of its exchange: that request's id */
};

/* Why the HTTP exchange that carried a request ended without its answer. */
enum session_unanswered {
	SESSION_HTTP_FAILED,    /* status >= 400 and no JSON-RPC answer: CALL_HTTP_ERROR */
	SESSION_HTTP_CANCELLED, /* the connection closed before the response, or (2026-07-28) the
				 * client closed the response stream: CALL_CANCELLED */
	SESSION_HTTP_LOST,      /* capture loss: the answer may have gone with it (lost, unless
				 * it still comes) */
};

struct session *session_new(uint32_t pid, uint64_t ts_ns, const struct session_env *env);
void session_free(struct session *s);
const struct session_identity *session_identity(const struct session *s);
unsigned session_pending(const struct session *s);

void session_on_proc(struct session *s, const struct msd_proc_rec *rec);
void session_on_exec(struct session *s, const struct msd_exec_rec *rec);
void session_on_fork(struct session *s, const struct msd_fork_rec *rec);
void session_on_stdio_kind(struct session *s, enum msd_fd_kind kind);
/* The kernel found the process by its traffic (MSD_REC_DISCOVER). */
void session_on_discover(struct session *s, uint64_t start_ticks, const char *comm);
/* Who talks to it: its client process, and a relay in between (pid 0: none). A change is
 * announced at once once the session has been (EV_SESSION), else with its announcement. */
/* Where it runs (attrib.h): held until the next call or session_free. A change is
 * announced, like a change of peers. */
void session_on_where(struct session *s, const struct attrib_record *where, uint64_t ts_ns);
void session_on_peers(struct session *s, const struct proc_ref *client, const struct proc_ref *relay,
		      uint64_t ts_ns);
/* A message read (MSD_DIR_READ) or written by the process on its MCP stdio. */
void session_on_message(struct session *s, enum msd_dir dir, const struct rpc_msg *m, const struct frame *f);
/* The same, over HTTP: via says where (NULL: stdio). */
void session_on_message_via(struct session *s, const struct session_via *via, enum msd_dir dir,
			    const struct rpc_msg *m, const struct frame *f);
/* The request id of scope via->scope, if still pending, got no answer from the exchange that
 * carried it, for the reason given. Returns whether it was pending. */
bool session_on_unanswered(struct session *s, const struct session_via *via, const char *id,
			   enum session_unanswered why, uint64_t ts_ns);
/* A frame on an MCP stream that is not JSON-RPC. Bursts are coalesced: the first frame is
 * told at once, the next ones as one EV_INVALID per stream and second (frames, bytes, the
 * first one's preview), by session_tick, or session_finish, or the exit. */
void session_on_invalid(struct session *s, int fd, const struct frame *f, bool json);
/* A body or event of an HTTP connection that is not JSON-RPC (fd -1 in the event). */
void session_on_invalid_via(struct session *s, const struct session_via *via, const struct frame *f, bool json);
void session_on_stderr(struct session *s, const struct frame *f);
/* The pipeline lost bytes of what the process read or wrote (ring buffer overflow,
 * truncation): requests and answers may have gone with them. */
void session_on_gap(struct session *s, enum msd_dir dir);
void session_on_stdin_eof(struct session *s, uint64_t ts_ns);
void session_on_oom(struct session *s, uint64_t ts_ns);
void session_on_blocked_write(struct session *s, int fd, uint64_t enter_ns, uint64_t bytes, uint64_t now_ns);
/* Orphans pending calls, classifies and reports the exit. The session is done after. */
void session_on_exit(struct session *s, const struct msd_exit_rec *rec);
/* Stalls, unanswered initialize, a server outliving its closed stdin. */
void session_tick(struct session *s, uint64_t now_ns, bool live);
/* The capture ends: what is held back (coalesced invalid frames) is told now. */
void session_finish(struct session *s);
/* A quiet session emits nothing (a discovered process not yet known to speak MCP): sinks
 * hold no state of it. */
void session_set_quiet(struct session *s, bool quiet);
/* Emits ev after stamping pid, session and wall-clock time. */
void session_emit(struct session *s, struct sonde_event *ev);

#endif

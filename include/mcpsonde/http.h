/* http.h -- the HTTP/1.1 + Server-Sent Events transport: JSON-RPC out of one connection.
 *
 * MCP's Streamable HTTP (and the legacy HTTP+SSE transport of 2024-11-05) carries JSON-RPC
 * in request bodies, in application/json response bodies and in the data of text/event-stream
 * events. This module turns the two byte streams of one TCP or AF_UNIX stream connection --
 * what the observed process read and what it wrote, each already in order (stream.c), each
 * chunk stamped with its syscall's kernel time, with gaps where bytes were lost -- into:
 *  - payloads: every JSON body and every SSE event's data that looks like JSON-RPC, as a
 *    struct frame (one message or a batch, head and tail when over the cap) stamped with the
 *    syscalls that carried its first and last bytes (the latency of a call ends at the event
 *    that carries its response, not at the response headers), with the exchange it rode on;
 *  - exchanges: a request and the response paired with it in pipelining order: method,
 *    target, status, the headers an MCP observer needs, timestamps, and how it ended
 *    (complete, closed mid-response, cancelled before any response, lost to a gap);
 *  - a verdict: the connection carries JSON-RPC, or it is not HTTP at all, or it is HTTP
 *    without JSON-RPC (the server's database, an upstream REST API, a health check), or it
 *    was given up (an Upgrade, loss it could not recover from, a peer it cannot follow).
 *    Only a connection judged to carry JSON-RPC yields payloads; a set-aside one costs a
 *    counter per chunk, so the caller can stop copying it.
 *
 * Which side is which is learnt from the first bytes: a process that reads requests is the
 * server, one that writes them is the client.
 *
 * Invariants:
 * - The values of Authorization, Proxy-Authorization, Cookie and Set-Cookie and of every
 *   header whose name contains "token", "key" or "secret" (any case) are never copied
 *   anywhere: only their presence is recorded (http_headers.secrets). Only the headers named
 *   in struct http_headers are kept at all. In the request target, the values of query
 *   parameters whose names contain one of those words, "auth" or "password", and any
 *   user:password@, are replaced by "REDACTED".
 * - Memory per connection is bounded: per direction one payload (max_payload bytes, or
 *   2 * FRAME_EDGE_BYTES + the head once oversized), one inflater while a body is encoded,
 *   a few hundred bytes of parser state; at most HTTP_MAX_PENDING exchanges. Everything
 *   else -- bodies that are neither JSON nor SSE, bytes after a verdict that sets the
 *   connection aside, bytes skipped while resynchronising -- is counted, never buffered.
 * - Nothing is dropped silently: every cut value, skipped body, bomb, gap, parse error and
 *   unpaired response has a counter in struct http_stats.
 * - Payloads are what a JSON-RPC peer could have parsed: only JSON bodies and SSE events
 *   that contain "jsonrpc" in their head or tail are handed over, so a JSON API or an HTML
 *   page never turns into invalid frames.
 * - The result does not depend on how the bytes were chunked, except for timestamps.
 */
#ifndef MCPSONDE_HTTP_H
#define MCPSONDE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "events.h"
#include "frame.h"

#define HTTP_MAX_PENDING 32           /* requests awaiting their response (pipelining); more: given up */
#define HTTP_NAME_MAX 64              /* header names matched; longer ones can only be "other" */
#define HTTP_MAX_HEADERS 128          /* header lines per message looked at; more are counted */
#define HTTP_TARGET_MAX 256           /* request target kept (path and query); longer is cut */
#define HTTP_INFLATE_MAX_DEFAULT (64u << 20)
#define HTTP_INFLATE_RATIO_DEFAULT 200 /* decompressed / compressed, once past 1 MiB */
#define HTTP_RESYNC_MAX (4u << 20)    /* bytes searched for a message boundary before giving up */
#define HTTP_CLASSIFY_EXCHANGES 4     /* exchanges without a sign of MCP: HTTP_NOT_MCP */
#define HTTP_CLASSIFY_BYTES (4u << 20) /* body bytes without a sign of MCP: HTTP_NOT_MCP */

enum http_role {
	HTTP_ROLE_UNKNOWN,
	HTTP_ROLE_SERVER, /* the observed process reads requests and writes responses */
	HTTP_ROLE_CLIENT, /* it writes requests and reads responses */
};

enum http_verdict {
	HTTP_UNDECIDED,
	HTTP_MCP,      /* carries JSON-RPC (a payload, an Mcp-* header, an endpoint event) */
	HTTP_NOT_HTTP, /* its first bytes are not HTTP/1.x: set aside */
	HTTP_NOT_MCP,  /* HTTP, but HTTP_CLASSIFY_* showed no sign of MCP: set aside */
	HTTP_UPGRADED, /* 101 Switching Protocols or a CONNECT tunnel: set aside */
	HTTP_LOST,     /* capture loss it could not resynchronise after: set aside */
	HTTP_BROKEN,   /* a peer it cannot follow (parse errors, a bound): set aside */
};

/* A verdict other than HTTP_UNDECIDED and HTTP_MCP: the rest of the connection is ignored. */
static inline bool http_verdict_final(enum http_verdict v)
{
	return v != HTTP_UNDECIDED && v != HTTP_MCP;
}

enum http_secret {
	HTTP_SECRET_AUTHORIZATION = 1 << 0,
	HTTP_SECRET_PROXY_AUTHORIZATION = 1 << 1,
	HTTP_SECRET_COOKIE = 1 << 2,
	HTTP_SECRET_SET_COOKIE = 1 << 3,
	HTTP_SECRET_OTHER = 1 << 4, /* a name with token/key/secret, or too long to tell */
};

/* The headers of one message that an MCP observer needs, each cut to its size (counted).
 * An empty string is an absent header; the first of repeated headers is kept. */
struct http_headers {
	char content_type[96];
	char content_encoding[32];
	char session_id[128];       /* Mcp-Session-Id */
	char protocol_version[32];  /* MCP-Protocol-Version */
	char mcp_method[128];       /* Mcp-Method (2026-07-28) */
	char mcp_name[256];         /* Mcp-Name, decoded from =?base64?...?= when so sent */
	char last_event_id[128];    /* Last-Event-ID */
	char accept[128];
	char host[128];
	unsigned secrets;           /* enum http_secret bits: present, value never kept */
	unsigned count;             /* header lines */
	bool mcp_name_encoded;      /* Mcp-Name came as =?base64?...?= and was decoded */
	bool mcp_name_invalid;      /* ... and did not decode: kept as sent */
};

enum http_end {
	HTTP_END_NONE,      /* still open */
	HTTP_END_COMPLETE,  /* the response ended */
	HTTP_END_CLOSED,    /* the connection closed after the response head, before its end
			     * (an SSE stream closed by either side) */
	HTTP_END_CANCELLED, /* the connection closed before any response head */
	HTTP_END_LOST,      /* bytes lost or unparsable: it could not be followed to its end */
	HTTP_END_ABANDONED, /* the connection was set aside (upgrade, parse error, a bound) */
};

enum http_exchange_flags {
	HTTP_EX_UNPAIRED = 1 << 0,      /* a response with no request to pair with (seq 0) */
	HTTP_EX_REQUEST_INCOMPLETE = 1 << 1, /* the request's end was not seen (lost, closed):
					      * its payload was not delivered */
	HTTP_EX_RESPONSE_GAP = 1 << 2,  /* the response lost bytes and resumed at a later event */
	HTTP_EX_CONTINUE = 1 << 3,      /* a 1xx (100 Continue) came before the response */
	HTTP_EX_ENCODING_UNSUPPORTED = 1 << 4, /* a body in an encoding other than gzip/deflate */
	HTTP_EX_INFLATE_ERROR = 1 << 5, /* a gzip/deflate body that does not decode */
	HTTP_EX_BOMB = 1 << 6,          /* a body that inflates past the caps: not decoded */
	HTTP_EX_MIDSTREAM = 1 << 7,     /* found inside an SSE body whose head was not seen */
	HTTP_EX_TARGET_CUT = 1 << 8,    /* the target was longer than HTTP_TARGET_MAX */
	HTTP_EX_BODY_CUT = 1 << 9,      /* bytes were cut out of a body: its payload is head and
					 * tail (a compressed one is lost) */
};

struct http_exchange {
	uint64_t seq;                    /* 1, 2, ... in request order on the connection */
	char method[16];                 /* "POST"; "" for an unpaired response */
	char target[HTTP_TARGET_MAX];    /* path and query, secrets redacted */
	unsigned status;                 /* 0 until the final response head */
	struct http_headers req, resp;
	bool sse;                        /* the response is text/event-stream */
	uint32_t flags;                  /* enum http_exchange_flags */
	enum http_end end;
	/* kernel timestamps (0: not seen) */
	uint64_t ts_req_first;           /* first byte of the request head */
	uint64_t ts_req_head;            /* the byte that completed the request head */
	uint64_t ts_req_last;            /* last byte of the request (so far) */
	uint64_t ts_resp_first;          /* first byte of the final response head */
	uint64_t ts_resp_head;           /* the byte that completed it */
	uint64_t ts_resp_last;           /* last byte of the response (so far: an SSE stream's
					  * latest event or keepalive) */
	uint64_t req_body_bytes, resp_body_bytes; /* as framed, before decompression */
	/* SSE */
	char last_event_id[128];         /* the id of the latest event (the priming event's too) */
	int64_t retry_ms;                /* the latest retry: field, -1 if none */
	uint64_t sse_events;             /* events dispatched on this response */
	/* the legacy transport's first event: "event: endpoint", data "/message?sessionId=..." */
	char endpoint[HTTP_TARGET_MAX];
	char endpoint_session_id[128];
};

enum http_phase {
	HTTP_PHASE_REQUEST,  /* request head parsed */
	HTTP_PHASE_RESPONSE, /* final response head parsed (1xx are not reported) */
	HTTP_PHASE_ENDPOINT, /* a legacy endpoint event: endpoint and endpoint_session_id set */
	HTTP_PHASE_END,      /* the exchange is over: end says how; it is freed after */
};

enum http_source {
	HTTP_SRC_REQUEST_BODY,
	HTTP_SRC_RESPONSE_BODY,
	HTTP_SRC_SSE_EVENT,
};

struct http_payload {
	struct frame frame;             /* the JSON-RPC text and the timestamps of its bytes; when
					 * oversized, head and tail of min(max_payload,
					 * FRAME_EDGE_BYTES) bytes, or fewer (the head even none)
					 * when bytes were cut out */
	const struct http_exchange *ex; /* the exchange that carried it */
	enum msd_dir dir;               /* read or written by the observed process */
	enum http_source source;
	const char *sse_event;          /* SSE: the event type ("message" when none was named) */
	const char *sse_id;             /* SSE: the stream's last event id ("" if none) */
};

/* Callbacks run during http_conn_feed/gap/cut/eof/close; what they are given is valid only
 * during the call. A callback must not free the connection. */
struct http_callbacks {
	void (*on_payload)(void *ctx, const struct http_payload *p);
	void (*on_exchange)(void *ctx, const struct http_exchange *ex, enum http_phase phase);
	/* The verdict changed: at most twice (HTTP_MCP, then maybe a final one). HTTP_MCP comes
	 * before the payload, endpoint or exchange that showed it. */
	void (*on_verdict)(void *ctx, enum http_verdict v);
};

struct http_opts {
	size_t max_payload;         /* a body or SSE event larger is kept as head and tail */
	uint64_t max_inflate;       /* decompressed bytes per body; more: a bomb, not decoded */
	unsigned max_inflate_ratio; /* decompressed / compressed beyond which (past 1 MiB) a body
				     * is a bomb */
	bool from_start;            /* both streams are seen from the connection's first byte
				     * (accept/connect observed); otherwise each direction first
				     * looks for a message boundary */
};

struct http_stats {
	uint64_t bytes[2];          /* fed, by enum msd_dir */
	uint64_t ignored_bytes;     /* not parsed because the connection was set aside (with the
				     * rest of the chunk that decided it) */
	uint64_t requests, responses;
	uint64_t unpaired;          /* responses with no request to pair with */
	uint64_t cancelled;         /* exchanges that ended HTTP_END_CANCELLED */
	uint64_t closed;            /* ... HTTP_END_CLOSED */
	uint64_t lost;              /* ... HTTP_END_LOST */
	uint64_t gaps, gap_bytes;
	uint64_t cut_bytes;         /* bytes cut out of bodies, framed across */
	uint64_t cuts_as_gaps;      /* cuts that fell where framing cannot go on: taken as gaps */
	uint64_t resyncs;           /* message boundaries found again after a gap or an error */
	uint64_t resync_bytes;      /* bytes skipped looking for one */
	uint64_t parse_errors;
	uint64_t payloads;
	uint64_t payloads_oversized;
	uint64_t not_jsonrpc;       /* JSON bodies and message events without "jsonrpc" */
	uint64_t skipped_bodies, skipped_body_bytes; /* bodies neither JSON nor SSE */
	uint64_t sse_events;        /* dispatched events */
	uint64_t sse_empty;         /* events with empty data (priming events) */
	uint64_t sse_other;         /* events of another type than message/endpoint */
	uint64_t sse_comments;      /* comment lines (keepalives) */
	uint64_t sse_discarded;     /* partial events dropped at a gap or at the body's end */
	uint64_t sse_cut;           /* event types, ids or field names cut to their bound */
	uint64_t inflate_errors, inflate_bombs, unsupported_encodings;
	uint64_t header_values_cut; /* kept header values (and targets) cut to their size */
	uint64_t headers_over_limit;/* header lines past HTTP_MAX_HEADERS, not looked at */
	uint64_t secret_headers;    /* headers whose value was not kept because it is secret */
	uint64_t nomem;             /* payloads and bodies dropped for want of memory */
};

struct http_conn;

void http_opts_default(struct http_opts *o);
/* NULL when out of memory. cb is copied; ctx is handed to every callback. */
struct http_conn *http_conn_new(const struct http_opts *o, const struct http_callbacks *cb, void *ctx);
/* Bytes of one direction, in stream order, from a syscall at ts_ns. */
void http_conn_feed(struct http_conn *c, enum msd_dir dir, const void *data, size_t len, uint64_t ts_ns);
/* lost_bytes of dir were lost before the next bytes fed: that direction resumes at the
 * next message boundary it can find (a request or response head, or an SSE event in the
 * chunked event stream it was in), or the connection is given up (HTTP_LOST). */
void http_conn_gap(struct http_conn *c, enum msd_dir dir, uint64_t lost_bytes);
/* len bytes of dir were deliberately not copied (the middle of a syscall too long to copy
 * whole). Inside a body (within one chunk of a chunked one) or an SSE event's data, the
 * message goes on across them and its payload comes out oversized: the head from before the
 * cut, the tail from after it (either maybe short). Anywhere else, a gap. */
void http_conn_cut(struct http_conn *c, enum msd_dir dir, uint64_t len, uint64_t ts_ns);
/* dir ended (a read returned 0, a shutdown): a response delimited by the close ends here. */
void http_conn_eof(struct http_conn *c, enum msd_dir dir, uint64_t ts_ns);
/* The connection closed: both directions end, and every exchange still open ends
 * (HTTP_END_CLOSED or HTTP_END_CANCELLED). Bytes fed after are ignored. */
void http_conn_close(struct http_conn *c, uint64_t ts_ns);
/* Frees without reporting what is still open (call http_conn_close first for that). */
void http_conn_free(struct http_conn *c);

enum http_verdict http_conn_verdict(const struct http_conn *c);
enum http_role http_conn_role(const struct http_conn *c);
void http_conn_stats(const struct http_conn *c, struct http_stats *out);
/* Bytes held by the connection now (buffers, inflaters, exchanges). */
size_t http_conn_memory(const struct http_conn *c);

/* Whether a header's value is secret (never kept, never stored), by its lowercased name of n
 * bytes; cut: the name was longer than what was kept of it (HTTP_NAME_MAX), which may hide a
 * secret word. Returns the enum http_secret bit, 0 when not secret. */
enum http_secret http_header_secret(const char *name, size_t n, bool cut);
const char *http_verdict_name(enum http_verdict v);
const char *http_end_name(enum http_end e);

#endif

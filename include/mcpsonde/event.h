/* event.h -- what the pipeline tells its sinks: calls, notifications, sessions, exits...
 *
 * One struct for every type; only the member of the union named by type is meaningful.
 * Pointers inside an event are borrowed for the duration of the sink callback: a sink that
 * keeps anything copies it. event_render() is the one JSON rendering of an event, shared by
 * the JSONL sink, the flight recorder and reports. */
#ifndef MCPSONDE_EVENT_H
#define MCPSONDE_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "attrib.h"
#include "jsonw.h"

enum ev_type {
	EV_CALL,          /* a request completed, failed, was cancelled, or was orphaned */
	EV_NOTIFICATION,  /* a notification in either direction */
	EV_SESSION,       /* session identity learned or changed (initialize, _meta, attach) */
	EV_INVALID,       /* a non-JSON-RPC frame on an MCP stream (stray print on stdout) */
	EV_STDERR,        /* one line of the server's stderr */
	EV_EXIT,          /* a tracked process exited */
	EV_LOSS,          /* capture lost or truncated something */
	EV_TOOLS_CHANGED, /* tools/list differs from the previous one */
	EV_TOOLS_LIST,    /* a tools/list result was seen (the catalog is current) */
	EV_MESSAGE,       /* every JSON-RPC message, for recorders; not printed by default */
	EV_STALL,         /* a call pending longer than its threshold */
	EV_BLOCKED_WRITE, /* a write by the server blocked longer than a threshold */
	EV_STDIN_CLOSED,  /* the client closed the server's stdin (read returned 0) */
	EV_REPORT,        /* a post-mortem report was written */
	EV_PROTOCOL_ERROR,/* an error response without id: the peer could not parse a request */
	EV_HTTP,          /* an HTTP exchange on an MCP connection ended (sinks print the failed ones) */
	EV_UNTRACKED,     /* a process is no longer watched, without an exit (a relay, JSON-RPC that
			   * is not MCP, or gone unseen): sinks let go of it; not printed */
	EV__COUNT,
};

enum call_status {
	CALL_OK,
	CALL_ERROR,      /* JSON-RPC error response */
	CALL_TOOL_ERROR, /* result.isError == true */
	CALL_CANCELLED,  /* notifications/cancelled for it */
	CALL_ORPHANED,   /* its process exited with it pending */
	CALL_INPUT_REQUIRED, /* answered resultType "input_required": the client retries (MRTR) */
	CALL_TASK,       /* answered with a task: the outcome comes with a later call event */
	CALL_PROBE_FAILED, /* server/discover answered with an error, or never: a legacy server */
	CALL_LOST,       /* its request or its answer was lost in a capture gap */
	CALL_CLOSED,     /* a long-lived request (subscriptions/listen) open at a normal shutdown */
	CALL_HTTP_ERROR, /* its HTTP request failed (status >= 400) without a JSON-RPC answer */
};

enum call_direction {
	DIR_CLIENT_TO_SERVER, /* the server read it: a request the server handles */
	DIR_SERVER_TO_CLIENT, /* the server wrote it */
};

/* A process at the other end of a server's stdio: its client, or a relay between them.
 * pid 0: not known. Copy one with proc_ref_assign (it holds where), let go with
 * proc_ref_clear. */
struct proc_ref {
	uint32_t pid;
	uint64_t start_ticks; /* with pid, identifies it */
	char comm[16];
	char exe[256];
	const struct attrib_record *where; /* the container and pod it runs in, held; NULL when
					   * not known (replay, no attribution, not looked up) */
};

/* *dst = *src, holding src's where and letting go of dst's. */
void proc_ref_assign(struct proc_ref *dst, const struct proc_ref *src);
void proc_ref_clear(struct proc_ref *r);

/* What is known of an observed server process. Owned by the session; stable addresses. */
struct session_identity {
	uint32_t pid;
	uint64_t start_ticks;      /* with pid, identifies the process across PID reuse */
	char comm[16];
	char *cmdline;             /* arguments joined by spaces, scrubbed; NULL if unknown */
	char *exe;
	char *program;             /* what the process runs: an npm package or script, from cmdline */
	char *server_name;         /* serverInfo.name */
	char *server_version;
	char *client_name;         /* clientInfo.name */
	char *client_version;
	char *protocol_version;    /* from initialize, or _meta (2026-07-28) */
	const char *transport;     /* network.transport: "pipe" for stdio, whatever the fd kind;
				    * "tcp" or "unix" once it spoke MCP over HTTP */
	const char *stdio;         /* the kind of fd 0: "pipe", "socket" (Node clients: socketpair), "tty" */
	uint64_t first_seen_ns;
	uint64_t initialized_ns;   /* initialize answered; 0 if not seen */
	bool speaks_mcp;           /* a JSON-RPC message was seen on its stdio (wrappers never do) */
	bool discovered;           /* found by its traffic (watch --all), not given by PID */
	struct proc_ref client_process; /* who talks to it: the process at the other end of its
				     * stdin, or beyond the relay when there is one */
	struct proc_ref relay;     /* a relay between that client and it (socat, a proxy...) */
	const struct attrib_record *where; /* the container and pod it runs in (attrib.h), held by
					    * the session; NULL when not known (replay, no attribution) */
	unsigned pending_calls;     /* requests (either direction) pending as of this event; not those
				     * whose answer may have been lost in a capture gap */
	uint64_t oldest_pending_ns; /* when the oldest of them arrived; 0 when none */
};

/* The name to show and label with: serverInfo.name, else the program (the npm package or
 * script an interpreter runs: "node" alone says nothing), else the process name. */
const char *session_identity_name(const struct session_identity *id);
/* Its OpenTelemetry resource attributes (k8s.*, container.*), as the "resource" member of
 * the session event and the inventory; nothing when it runs on the host or is not known. */
void event_render_resource(struct jsonw *w, const struct attrib_record *where);

/* The HTTP connection an event's message travelled on: NULL for the process's stdio. */
struct ev_net {
	const char *transport;      /* network.transport: "tcp" or "unix" */
	const char *local, *peer;   /* "127.0.0.1:3001", "[::1]:4242", a unix path; "" unknown */
	const char *server_address; /* server.address: the MCP server's end of the connection */
	unsigned server_port;       /* server.port (0 for unix) */
	const char *session_id;     /* Mcp-Session-Id, or the legacy transport's sessionId; NULL */
	bool client;                /* the observed process is the MCP client on it */
	const char *server_name, *server_version; /* client: the remote serverInfo, when seen */
};

struct ev_call {
	const char *method;
	const char *id;        /* JSON text of the id, as on the wire */
	const char *tool;      /* tools/call (also prompts/get name, resources/read uri): NULL otherwise */
	enum call_status status;
	long long error_code;  /* CALL_ERROR */
	const char *error_message; /* scrubbed (scrub.h), like every free text in an event */
	const char *error_name; /* the code's name ("method_not_found"), NULL when it has none */
	uint64_t duration_ns;  /* request frame read -> response frame write; orphaned: age at death;
				* the call a task completes: tools/call read -> terminal answer write */
	uint64_t request_bytes, response_bytes;
	enum call_direction direction;
	const json_t *arguments; /* tools/call arguments object, or NULL */
	const json_t *result;    /* result or error object, NULL when unknown (oversized, orphaned) */
	json_t *schema_violations; /* array, or NULL */
	bool oversized;
	bool secret;           /* its arguments or result held a secret-looking value (scrub.h) */
	bool unknown_tool;     /* tools/call of a tool the server does not have */
	/* The call event that completes a logical call (multi-round-trip, or a task): */
	unsigned rounds;       /* exchanges of the logical call; 0 for a call of one exchange */
	uint64_t logical_ns;   /* its first request read -> its final answer written */
	uint64_t input_wait_ns;/* time between rounds, the client getting input */
	const char *task_id;   /* CALL_TASK, task polls, and the call a task completes */
	const char *task_status;
	/* HTTP */
	unsigned http_status;  /* of the response that carried the answer, or that failed it */
	const char *header_mismatch; /* "Mcp-Method" or "Mcp-Name" (2026-07-28): the request's
				      * header disagreed with its body */
};

struct ev_notification {
	const char *method;
	enum call_direction direction;
	const json_t *params;
	uint64_t bytes;
	const char *subscription_id; /* _meta["io.modelcontextprotocol/subscriptionId"], or NULL */
};

struct ev_invalid {
	int fd;
	uint64_t frames;       /* frames this event stands for: 1, or a burst's summary */
	uint64_t bytes;        /* of all of them */
	const char *preview;   /* first bytes of the first, made printable, scrubbed */
	bool json;             /* valid JSON but not JSON-RPC */
	bool coalesced;        /* a summary of frames held back since the burst's first */
};

struct ev_stderr {
	const char *line;      /* made printable, scrubbed */
	uint64_t bytes;        /* on the wire, may exceed strlen(line) when cut */
};

struct ev_exit {
	int exit_code;         /* -1 when killed by a signal */
	int signal;            /* 0 when it exited */
	bool core_dumped;
	bool oom_killed;
	bool stdin_closed;     /* the client had closed stdin before */
	bool normal;           /* a normal shutdown: code 0, or stdin closed then SIGTERM/SIGKILL */
	bool on_channel;       /* its stdin was still its channel (the kernel's word): a server or
				* its wrapper, not a helper it spawned with stdio of its own */
	const char *reason;    /* "exit", "signal", "oom", "shutdown", "probe" */
	unsigned pending_calls;/* orphaned: not the lost ones, nor a probe or a subscription */
	unsigned lost_calls;   /* pending, but their answer may have been lost in a capture gap */
	uint32_t raw;
};

struct ev_loss {
	const char *reason;    /* "ringbuf_full", "copy_failed", "truncated", "gap", ... */
	uint64_t bytes;
	uint64_t records;
	int fd;                /* -1 when not tied to a stream */
};

struct ev_tools {
	json_t *change;        /* EV_TOOLS_CHANGED: {added:[], removed:[], changed:[{name, fields:[]}]} */
	const json_t *tools;   /* EV_TOOLS_LIST: the tools array, as far as it could be read */
	unsigned count;        /* tools listed (read: a list cut by --max-frame has more) */
	unsigned kept;         /* tools in the catalog (drift, argument checks): at most TOOLS_MAX */
	bool truncated;        /* the catalog is partial: the list was cut, or longer than TOOLS_MAX */
};

struct ev_message {
	enum call_direction direction;
	const char *kind;      /* rpc_kind_name() */
	const char *method;
	const char *id;
	uint64_t bytes;
	const char *target;    /* params.name (tools/call, prompts/get) or params.uri (scrubbed), if any */
	const json_t *root;    /* the message, with --capture-values only (parsing costs) */
};

struct ev_stall {
	const char *method, *id, *tool;
	uint64_t pending_ns;
	uint64_t since_progress_ns; /* since its last progress notification (or task change); 0: none */
	const char *task_id, *task_status; /* a task whose polls stopped, or whose state stopped moving */
	uint64_t since_poll_ns;
	char state;            /* /proc/PID/stat state: R S D T Z ... ; 0 unknown */
	uint64_t cpu_ns;       /* CPU time the process used during the stall */
	unsigned threads;
	const char *wchan;
};

struct ev_blocked_write {
	int fd;
	uint64_t blocked_ns;
	uint64_t bytes;        /* requested */
};

struct ev_report {
	const char *path;
};

struct ev_protocol_error {
	long long error_code;
	const char *error_name;
	const char *error_message;
	enum call_direction direction; /* server_to_client: the server could not parse a request */
	uint64_t bytes;
};

/* EV_HTTP: one HTTP exchange on a connection that carries MCP. */
struct ev_http {
	const char *method;     /* the request method: POST, GET, DELETE... */
	const char *target;     /* path and query, secret parameters redacted */
	unsigned status;        /* the final status, 0 when none came */
	const char *end;        /* complete, closed, cancelled, lost, abandoned */
	const char *mcp_method; /* the JSON-RPC method its request carried (or its Mcp-Method) */
	unsigned requests;      /* JSON-RPC requests in its body */
	unsigned unanswered;    /* of which the exchange ended without their answer */
	uint64_t duration_ns;   /* request's first byte -> response's last (0: no response) */
	bool sse;               /* the response was an event stream */
	bool failed;            /* status >= 400, or a request left without its answer: the
				 * output sinks print only these */
};

struct ev_untracked {
	const char *reason;    /* "relay", "not_mcp", "excluded", "gone" */
};

struct ev_stdin_closed {
	bool lingering;        /* false: the client just closed stdin; true: the server outlived it */
	uint64_t since_ns;     /* lingering: time since stdin was closed */
};

struct sonde_event {
	enum ev_type type;
	uint64_t ts_ns;        /* CLOCK_MONOTONIC of the kernel record (or of the tick) */
	uint64_t real_ns;      /* the same instant, CLOCK_REALTIME of the observed machine */
	uint32_t pid;
	const struct session_identity *session; /* NULL for events not tied to a process */
	const struct ev_net *net; /* the connection its message travelled on; NULL: stdio */
	union {
		struct ev_call call;
		struct ev_notification notification;
		struct ev_invalid invalid;
		struct ev_stderr stderr_line;
		struct ev_exit exit;
		struct ev_loss loss;
		struct ev_tools tools;
		struct ev_message message;
		struct ev_stall stall;
		struct ev_blocked_write blocked_write;
		struct ev_report report;
		struct ev_stdin_closed stdin_closed;
		struct ev_protocol_error protocol_error;
		struct ev_http http;
		struct ev_untracked untracked;
	};
};

struct event_format_opts {
	bool capture_values; /* arguments and results in full; otherwise arg_keys only */
};

/* How JSON documents built with jansson (reports) are written, as jsonw writes events:
 * 15 significant digits print a millisecond value rounded to the microsecond exactly
 * (jansson's default 17 prints 0.493 as 0.49299999999999999). */
#define EVENT_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* The MCP server an event is about: the observed process, or, when the process is the
 * client of the event's connection, the server it talks to (its serverInfo.name, else its
 * address, formatted into buf). NULL for an event tied to no process. */
const char *event_server_name(const struct sonde_event *ev, char *buf, size_t len);
const char *ev_type_name(enum ev_type t);
const char *call_status_name(enum call_status s);
const char *call_direction_name(enum call_direction d);
/* Appends the JSON object of an event, as written to JSONL (compact, no newline). */
void event_render(struct outbuf *out, const struct sonde_event *ev, const struct event_format_opts *opts);
/* "SIGSEGV" (or "signal 77" for one without a name), written into buf. */
const char *event_signal_name(int sig, char *buf, size_t len);
/* A process at the other end as a jansson object {pid, start_ticks, comm, exe, resource or
 * same_container} (reports, the inventory): the members event_render writes for it. server:
 * where the server it talks to runs. NULL when r names nobody. */
json_t *proc_ref_json(const struct proc_ref *r, const struct attrib_record *server);
/* Where it runs as a jansson object of OpenTelemetry resource attributes, as the "resource"
 * member of the session event; NULL on the host or when not known. */
json_t *event_resource_json(const struct attrib_record *where);
/* RFC 3339, UTC, microseconds: "2026-11-23T19:18:25.123456Z". buf >= 32 bytes. */
void event_format_time(uint64_t real_ns, char *buf, size_t len);

#endif

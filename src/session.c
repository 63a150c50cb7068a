/* session.c -- one observed process: MCP identity, pending calls, correlation, silences.
 *
 * Correlation key: (direction, id as JSON text), so 1 and "1" never match and the two id
 * spaces (client->server and server->client requests) never collide. Latency is measured
 * on kernel timestamps: from the read that completed the request frame to the write that
 * started the response frame. Arguments are kept only as their keys unless the user opted
 * in to values, so a pending call costs a bounded, small amount of memory. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/procfs.h"
#include "mcpsonde/scrub.h"
#include "mcpsonde/session.h"
#include "mcpsonde/tools.h"
#include "mcpsonde/utf8.h"

#define LATENCY_BUCKETS 48 /* bucket i holds durations < 2^i microseconds */
#define LATENCY_TOOLS_MAX 256
#define PREVIEW_BYTES 120
#define INVALID_INTERVAL_NS 1000000000ull /* invalid frames of a stream: one summary per second */
#define STDERR_LINE_MAX 4096

struct pending_call {
	char key[RPC_ID_MAX + 2]; /* 'C' or 'S' (direction), then the id's JSON text */
	enum call_direction dir;
	char *method;
	char *tool;
	json_t *arguments; /* full, or keys with null values */
	json_t *violations;
	uint64_t ts_ns;
	uint64_t request_bytes;
	uint64_t cpu_base_ns; /* process CPU when first seen pending at a tick */
	bool cpu_sampled;
	bool stalled;
	bool secret;       /* its request held a secret-looking value */
	UT_hash_handle hh;
};

struct latency {
	char *name; /* tool name for tools/call, else the method */
	uint32_t count;
	uint32_t buckets[LATENCY_BUCKETS];
	UT_hash_handle hh;
};

/* Invalid frames of one stream (and kind: JSON or not) in a burst. The first frame of a
 * burst is reported at once; the next ones are held and told as one summary per interval;
 * an interval without any ends the burst. */
struct invalid_burst {
	uint64_t since_ns;  /* start of the current interval; 0: no burst */
	uint64_t frames, bytes, last_ns; /* held in this interval */
	char preview[PREVIEW_BYTES + 1]; /* of the first frame held, printable */
};

struct session {
	struct session_identity id;
	struct session_env env;
	struct pending_call *pending;
	unsigned npending;
	struct latency *latency;
	unsigned nlatency;
	struct tool_catalog *tools;
	uint64_t stdin_closed_ns;
	uint64_t last_blocked_enter_ns;
	bool linger_reported;
	bool oom_killed;
	bool announced;
	struct invalid_burst invalid[2][2]; /* [client->server, server->client][json] */
};

/* --- identity ---------------------------------------------------------------------- */

struct session *session_new(uint32_t pid, uint64_t ts_ns, const struct session_env *env)
{
	struct session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->id.pid = pid;
	s->id.first_seen_ns = ts_ns;
	s->id.transport = "pipe";
	s->id.on_channel = true; /* until /proc says otherwise: a capture without identity */
	s->env = *env;
	s->tools = tools_new();
	return s;
}

/* The identity every event carries says how many calls are pending and since when, so
 * sinks need no table of their own. The hash keeps insertion order: its head is the oldest. */
static void pending_publish(struct session *s)
{
	s->id.pending_calls = s->npending;
	s->id.oldest_pending_ns = s->pending ? s->pending->ts_ns : 0;
}

static void pending_unlink(struct session *s, struct pending_call *pc)
{
	HASH_DEL(s->pending, pc);
	s->npending--;
	pending_publish(s);
}

static void pending_call_free(struct pending_call *pc)
{
	free(pc->method);
	free(pc->tool);
	json_decref(pc->arguments);
	json_decref(pc->violations);
	free(pc);
}

static void pending_free(struct session *s, struct pending_call *pc)
{
	pending_unlink(s, pc);
	pending_call_free(pc);
}

void session_free(struct session *s)
{
	struct pending_call *pc, *ptmp;
	struct latency *l, *ltmp;

	if (!s)
		return;
	HASH_ITER(hh, s->pending, pc, ptmp)
		pending_free(s, pc);
	HASH_ITER(hh, s->latency, l, ltmp) {
		HASH_DEL(s->latency, l);
		free(l->name);
		free(l);
	}
	tools_free(s->tools);
	free(s->id.cmdline);
	free(s->id.exe);
	free(s->id.program);
	free(s->id.server_name);
	free(s->id.server_version);
	free(s->id.client_name);
	free(s->id.client_version);
	free(s->id.protocol_version);
	free(s);
}

const struct session_identity *session_identity(const struct session *s)
{
	return &s->id;
}

unsigned session_pending(const struct session *s)
{
	return s->npending;
}

void session_emit(struct session *s, struct sonde_event *ev)
{
	ev->pid = s->id.pid;
	ev->session = &s->id;
	ev->real_ns = ev->ts_ns + (uint64_t)s->env.opts->mono_to_real_ns;
	sinks_emit(s->env.sinks, ev);
}

static void replace_str(char **dst, const char *src)
{
	if (!src || (*dst && strcmp(*dst, src) == 0))
		return;
	free(*dst);
	*dst = strdup(src);
}

static void copy_comm(char *dst, const char *src)
{
	memcpy(dst, src, MSD_COMM_LEN);
	dst[MSD_COMM_LEN - 1] = '\0';
}

/* For an interpreter (node, python, npx, uv...), the program it runs: the npm package a
 * script lives in ("@scope/name" after the last node_modules/), else the script's file
 * name. args are NUL-separated, as in /proc/PID/cmdline. */
static char *program_of(const char *args, size_t len)
{
	static const char *const interpreters[] = { "node", "nodejs", "python", "python3", "deno", "bun",
						    "npx", "npm", "uv", "uvx", "pipx", "ruby", "java", NULL };
	const char *arg0 = args, *base = strrchr(arg0, '/'), *script = NULL, *nm, *end;
	const char *p = args + strlen(args) + 1;
	bool interp = false;

	base = base ? base + 1 : arg0;
	for (int i = 0; interpreters[i]; i++)
		if (strncmp(base, interpreters[i], strlen(interpreters[i])) == 0)
			interp = true;
	if (!interp || len == 0)
		return NULL;
	for (; p < args + len; p += strlen(p) + 1) {
		if (p[0] != '-' && strcmp(p, "exec") != 0 && strcmp(p, "run") != 0) {
			script = p;
			break;
		}
	}
	if (!script)
		return NULL;
	nm = script;
	for (const char *q; (q = strstr(nm, "node_modules/")); )
		nm = q + strlen("node_modules/");
	if (nm != script) {
		end = strchr(nm, '/');
		if (end && nm[0] == '@')
			end = strchr(end + 1, '/');
		return end ? strndup(nm, (size_t)(end - nm)) : strdup(nm);
	}
	base = strrchr(script, '/');
	return strdup(base ? base + 1 : script);
}

void session_on_proc(struct session *s, const struct msd_proc_rec *rec)
{
	size_t n = rec->cmdline_len;
	char *cmd = malloc(n + 1);

	copy_comm(s->id.comm, rec->comm);
	s->id.start_ticks = rec->start_ticks;
	s->id.on_channel = (rec->flags & MSD_PROC_ON_CHANNEL) != 0;
	replace_str(&s->id.exe, rec->exe);
	if (!cmd)
		return;
	memcpy(cmd, rec->cmdline, n);
	cmd[n] = '\0';
	free(s->id.program);
	s->id.program = n ? program_of(cmd, n) : NULL;
	while (n > 0 && cmd[n - 1] == '\0') /* trailing NUL */
		n--;
	for (size_t i = 0; i < n; i++)
		if (cmd[i] == '\0')
			cmd[i] = ' ';
	cmd[n] = '\0';
	free(s->id.cmdline);
	s->id.cmdline = scrub_strdup(s->env.opts->redact, cmd, n);
	free(cmd);
}

void session_on_exec(struct session *s, const struct msd_exec_rec *rec)
{
	copy_comm(s->id.comm, rec->comm);
	replace_str(&s->id.exe, rec->filename);
}

void session_on_fork(struct session *s, const struct msd_fork_rec *rec)
{
	copy_comm(s->id.comm, rec->comm);
}

void session_on_stdio_kind(struct session *s, enum msd_fd_kind kind)
{
	s->id.stdio = kind == MSD_FD_PIPE ? "pipe" : kind == MSD_FD_SOCKET ? "socket" : kind == MSD_FD_TTY ? "tty" : NULL;
}

static void session_announce(struct session *s, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_SESSION, .ts_ns = ts_ns };

	s->announced = true;
	session_emit(s, &ev);
}

/* --- latency per tool, for stall thresholds ------------------------------------------ */

static struct latency *latency_get(struct session *s, const char *name, bool create)
{
	struct latency *l;

	HASH_FIND_STR(s->latency, name, l);
	if (l || !create || s->nlatency >= LATENCY_TOOLS_MAX)
		return l;
	l = calloc(1, sizeof(*l));
	if (!l || !(l->name = strdup(name))) {
		free(l);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, s->latency, l->name, strlen(l->name), l);
	s->nlatency++;
	return l;
}

static void latency_add(struct session *s, const char *name, uint64_t ns)
{
	struct latency *l = latency_get(s, name, true);
	uint64_t us = ns / 1000;
	unsigned b = 0;

	if (!l)
		return;
	while (b < LATENCY_BUCKETS - 1 && us >= (1ull << b))
		b++;
	l->buckets[b]++;
	l->count++;
}

/* Upper bound of the bucket holding the 99th percentile; 0 with too few samples. */
static uint64_t latency_p99_ns(struct session *s, const char *name)
{
	struct latency *l = latency_get(s, name, false);
	uint64_t seen = 0, rank;

	if (!l || l->count < 20)
		return 0;
	rank = ((uint64_t)l->count * 99 + 99) / 100;
	for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
		seen += l->buckets[b];
		if (seen >= rank)
			return (1ull << b) * 1000ull;
	}
	return 0;
}

/* --- requests and responses ---------------------------------------------------------- */

static void pending_key(char *key, size_t len, enum call_direction dir, const char *id)
{
	snprintf(key, len, "%c%s", dir == DIR_CLIENT_TO_SERVER ? 'C' : 'S', id);
}

/* What a pending tools/call keeps of its arguments: the object itself when the user opted
 * in to values, else its keys (from the skim: no parse) with null values. */
static json_t *arguments_keep(const struct rpc_msg *m, bool values)
{
	json_t *keys;
	unsigned n = m->narg_keys < RPC_ARG_KEYS_MAX ? m->narg_keys : RPC_ARG_KEYS_MAX;

	if (!m->has_arguments)
		return NULL;
	if (values) {
		json_t *args = json_object_get(json_object_get(rpc_msg_root(m), "params"), "arguments");
		return args ? json_incref(args) : NULL;
	}
	keys = json_object();
	for (unsigned i = 0; i < n; i++)
		if (m->arg_keys[i])
			json_object_set_new(keys, m->arg_keys[i], json_null());
	return keys;
}

/* params of a message, parsing it: only for the few that need their values. */
static const json_t *message_params(const struct rpc_msg *m)
{
	return json_object_get(rpc_msg_root(m), "params");
}

static void session_learn_meta(struct session *s, const json_t *params, uint64_t ts_ns)
{
	const json_t *meta = json_object_get(params, "_meta");
	const char *v = json_string_value(json_object_get(meta, "io.modelcontextprotocol/protocolVersion"));
	const json_t *ci = json_object_get(meta, "io.modelcontextprotocol/clientInfo");

	if (!v || (s->id.protocol_version && strcmp(s->id.protocol_version, v) == 0))
		return;
	replace_str(&s->id.protocol_version, v);
	if (json_is_object(ci)) {
		replace_str(&s->id.client_name, json_string_value(json_object_get(ci, "name")));
		replace_str(&s->id.client_version, json_string_value(json_object_get(ci, "version")));
	}
	session_announce(s, ts_ns);
}

/* Whether a request or its response carries a secret-looking value: what flags the call.
 * initialize and the catalogs (tools/list, prompts/list...) describe the server: not a call's data. */
static bool frame_has_secret(const char *method, const struct frame *f)
{
	size_t n = strlen(method);

	if (strcmp(method, "initialize") == 0 || (n >= 5 && strcmp(method + n - 5, "/list") == 0))
		return false;
	return scrub_json_secret(f->data, f->len) || (f->oversized && scrub_json_secret(f->tail, f->tail_len));
}

static void session_on_request(struct session *s, enum call_direction dir, const struct rpc_msg *m,
			       const struct frame *f)
{
	struct pending_call *pc;
	char key[RPC_ID_MAX + 2];

	pending_key(key, sizeof(key), dir, m->id);
	HASH_FIND_STR(s->pending, key, pc);
	if (pc) /* the id was reused before its answer: the old call can no longer be matched */
		pending_free(s, pc), s->env.stats->unmatched_responses++;
	if (s->npending >= PIPELINE_MAX_PENDING) {
		s->env.stats->pending_dropped++;
		return;
	}
	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return;
	memcpy(pc->key, key, sizeof(key));
	pc->dir = dir;
	pc->method = strdup(m->method);
	pc->ts_ns = dir == DIR_CLIENT_TO_SERVER ? f->ts_last_ns : f->ts_first_ns;
	pc->request_bytes = f->wire_len;
	pc->secret = frame_has_secret(m->method, f);
	if (dir == DIR_CLIENT_TO_SERVER && m->has_meta)
		session_learn_meta(s, message_params(m), f->ts_last_ns);
	if (strcmp(m->method, "tools/call") == 0) {
		pc->tool = m->name ? strdup(m->name) : NULL;
		pc->arguments = arguments_keep(m, s->env.opts->capture_values);
		/* Checking values needs them parsed: only when there is a schema to check against.
		 * No arguments at all is checked as {}: its required properties are missing. */
		if (m->name && tools_has(s->tools, m->name)) {
			json_t *none = m->has_arguments ? NULL : json_object();
			pc->violations = tools_check_args(s->tools, m->name,
							  none ? none : json_object_get(message_params(m), "arguments"));
			json_decref(none);
		}
	} else if (strcmp(m->method, "prompts/get") == 0) {
		pc->tool = m->name ? strdup(m->name) : NULL;
	} else if (strcmp(m->method, "initialize") == 0 && dir == DIR_CLIENT_TO_SERVER) {
		const json_t *params = message_params(m);
		const json_t *ci = json_object_get(params, "clientInfo");
		replace_str(&s->id.client_name, json_string_value(json_object_get(ci, "name")));
		replace_str(&s->id.client_version, json_string_value(json_object_get(ci, "version")));
		replace_str(&s->id.protocol_version, json_string_value(json_object_get(params, "protocolVersion")));
	}
	HASH_ADD_STR(s->pending, key, pc);
	s->npending++;
	pending_publish(s);
}

static void session_learn_initialize(struct session *s, const json_t *result, uint64_t ts_ns)
{
	const json_t *si = json_object_get(result, "serverInfo");

	replace_str(&s->id.server_name, json_string_value(json_object_get(si, "name")));
	replace_str(&s->id.server_version, json_string_value(json_object_get(si, "version")));
	replace_str(&s->id.protocol_version, json_string_value(json_object_get(result, "protocolVersion")));
	s->id.initialized_ns = ts_ns;
	session_announce(s, ts_ns);
}

static void session_learn_tools(struct session *s, const json_t *result, uint64_t ts_ns)
{
	const json_t *tools = json_object_get(result, "tools");
	struct sonde_event ev = { .type = EV_TOOLS_LIST, .ts_ns = ts_ns };
	json_t *change;

	if (!json_is_array(tools))
		return;
	change = tools_update(s->tools, tools);
	ev.tools.tools = tools;
	ev.tools.count = (unsigned)json_array_size(tools);
	session_emit(s, &ev);
	if (change) {
		struct sonde_event ch = { .type = EV_TOOLS_CHANGED, .ts_ns = ts_ns };
		ch.tools.change = change;
		ch.tools.tools = tools;
		ch.tools.count = ev.tools.count;
		session_emit(s, &ch);
		json_decref(change);
	}
}

static void session_complete(struct session *s, struct pending_call *pc, enum call_status status,
			     const struct rpc_msg *m, uint64_t ts_ns, uint64_t response_bytes)
{
	struct sonde_event ev = { .type = EV_CALL, .ts_ns = ts_ns };
	char message[SCRUB_OUT_MAX(RPC_NAME_MAX)];
	const json_t *result = NULL;

	if (m && s->env.opts->capture_values)
		result = json_object_get(rpc_msg_root(m), m->kind == RPC_ERROR ? "error" : "result");
	ev.call.method = pc->method;
	ev.call.id = pc->key + 1;
	ev.call.tool = pc->tool;
	ev.call.status = status;
	ev.call.duration_ns = ts_ns > pc->ts_ns ? ts_ns - pc->ts_ns : 0;
	ev.call.request_bytes = pc->request_bytes;
	ev.call.response_bytes = response_bytes;
	ev.call.direction = pc->dir;
	ev.call.arguments = pc->arguments;
	ev.call.result = result;
	ev.call.schema_violations = pc->violations;
	ev.call.secret = pc->secret;
	if (m) {
		ev.call.error_code = m->error_code;
		if (m->error_message) {
			scrub_text(s->env.opts->redact, m->error_message, strlen(m->error_message), message,
				   sizeof(message), NULL);
			ev.call.error_message = message;
		}
		ev.call.oversized = m->oversized;
	}
	if (status == CALL_OK || status == CALL_TOOL_ERROR || status == CALL_ERROR)
		latency_add(s, pc->tool ? pc->tool : pc->method, ev.call.duration_ns);
	pending_unlink(s, pc); /* sinks see the count without this call */
	session_emit(s, &ev);
	pending_call_free(pc);
}

static void session_on_response(struct session *s, enum call_direction dir, const struct rpc_msg *m,
				const struct frame *f)
{
	/* The server writes answers to client requests; it reads answers to its own. */
	uint64_t ts = dir == DIR_SERVER_TO_CLIENT ? f->ts_first_ns : f->ts_last_ns;
	enum call_direction req_dir = dir == DIR_SERVER_TO_CLIENT ? DIR_CLIENT_TO_SERVER : DIR_SERVER_TO_CLIENT;
	struct pending_call *pc;
	char key[RPC_ID_MAX + 2];
	enum call_status status;

	if (!m->id[0]) { /* an error for an unparsable request: nothing to match */
		s->env.stats->unmatched_responses++;
		return;
	}
	pending_key(key, sizeof(key), req_dir, m->id);
	HASH_FIND_STR(s->pending, key, pc);
	if (!pc) {
		s->env.stats->unmatched_responses++;
		return;
	}
	status = m->kind == RPC_ERROR ? CALL_ERROR : m->is_error ? CALL_TOOL_ERROR : CALL_OK;
	pc->secret = pc->secret || frame_has_secret(pc->method, f);
	if (m->kind == RPC_RESULT && req_dir == DIR_CLIENT_TO_SERVER) {
		if (strcmp(pc->method, "initialize") == 0)
			session_learn_initialize(s, json_object_get(rpc_msg_root(m), "result"), ts);
		else if (strcmp(pc->method, "tools/list") == 0)
			session_learn_tools(s, json_object_get(rpc_msg_root(m), "result"), ts);
	}
	session_complete(s, pc, status, m, ts, f->wire_len);
}

static void session_on_notification(struct session *s, enum call_direction dir, const struct rpc_msg *m,
				    const struct frame *f)
{
	struct sonde_event ev = { .type = EV_NOTIFICATION, .ts_ns = f->ts_last_ns };

	ev.notification.method = m->method;
	ev.notification.direction = dir;
	ev.notification.params = s->env.opts->capture_values ? message_params(m) : NULL;
	ev.notification.bytes = f->wire_len;
	session_emit(s, &ev);
	if (strcmp(m->method, "notifications/cancelled") == 0) {
		/* Cancels a request of the other side: the client cancels what the server handles. */
		char key[RPC_ID_MAX + 2];
		struct pending_call *pc;

		if (!m->request_id[0])
			return;
		pending_key(key, sizeof(key), dir, m->request_id);
		HASH_FIND_STR(s->pending, key, pc);
		if (pc)
			session_complete(s, pc, CALL_CANCELLED, NULL, f->ts_last_ns, 0);
	} else if (dir == DIR_CLIENT_TO_SERVER && m->has_meta) {
		session_learn_meta(s, message_params(m), f->ts_last_ns);
	}
}

void session_on_message(struct session *s, enum msd_dir rdir, const struct rpc_msg *m, const struct frame *f)
{
	enum call_direction dir = rdir == MSD_DIR_READ ? DIR_CLIENT_TO_SERVER : DIR_SERVER_TO_CLIENT;
	struct sonde_event ev = { .type = EV_MESSAGE, .ts_ns = rdir == MSD_DIR_READ ? f->ts_last_ns : f->ts_first_ns };
	char uri[SCRUB_OUT_MAX(RPC_NAME_MAX)];

	if (m->kind == RPC_INVALID) {
		session_on_invalid(s, rdir == MSD_DIR_READ ? 0 : 1, f, true);
		return;
	}
	s->env.stats->messages++;
	if (!s->id.speaks_mcp) {
		s->id.speaks_mcp = true;
		if (!s->announced && !(m->kind == RPC_REQUEST && strcmp(m->method, "initialize") == 0))
			session_announce(s, ev.ts_ns);
	}
	ev.message.direction = dir;
	ev.message.kind = rpc_kind_name(m->kind);
	ev.message.method = m->method;
	ev.message.id = m->id;
	ev.message.bytes = f->wire_len;
	ev.message.root = s->env.opts->capture_values ? rpc_msg_root(m) : NULL;
	ev.message.target = m->name;
	if (!m->name && m->uri) { /* a URI can carry credentials: user:password@, ?token= */
		scrub_text(s->env.opts->redact, m->uri, strlen(m->uri), uri, sizeof(uri), NULL);
		ev.message.target = uri;
	}
	/* A request is pending once its message is told, responses complete calls after it:
	 * sinks always see the pending count as of the event. */
	if (m->kind == RPC_REQUEST)
		session_on_request(s, dir, m, f);
	session_emit(s, &ev);

	switch (m->kind) {
	case RPC_REQUEST:
		break;
	case RPC_NOTIFICATION:
		session_on_notification(s, dir, m, f);
		break;
	case RPC_RESULT:
	case RPC_ERROR:
		session_on_response(s, dir, m, f);
		break;
	case RPC_INVALID:
		break;
	}
}

/* --- stdout garbage, stderr ---------------------------------------------------------- */

static void printable_copy(char *dst, size_t dstlen, const char *src, size_t n)
{
	size_t j = 0;

	for (size_t i = 0; i < n && j + 1 < dstlen; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[j++] = (c >= 0x20 && c != 0x7f) || c >= 0x80 ? (char)c : (c == '\t' ? ' ' : '.');
	}
	dst[j] = '\0';
}

static void invalid_emit(struct session *s, int fd, bool json, uint64_t ts_ns, const char *printable, uint64_t frames,
			 uint64_t bytes, bool coalesced)
{
	struct sonde_event ev = { .type = EV_INVALID, .ts_ns = ts_ns };
	char preview[SCRUB_OUT_MAX(PREVIEW_BYTES)];

	scrub_text(s->env.opts->redact, printable, strlen(printable), preview, sizeof(preview), NULL);
	ev.invalid.fd = fd;
	ev.invalid.bytes = bytes;
	ev.invalid.preview = preview;
	ev.invalid.json = json;
	ev.invalid.frames = frames;
	ev.invalid.coalesced = coalesced;
	session_emit(s, &ev);
}

/* Closes the intervals of a burst that ended by now: their held frames are told. */
static void invalid_advance(struct session *s, int fd, bool json, uint64_t now_ns)
{
	struct invalid_burst *b = &s->invalid[fd != 0][json];

	while (b->since_ns && now_ns >= b->since_ns + INVALID_INTERVAL_NS) {
		if (!b->frames) {
			b->since_ns = 0; /* a quiet interval: the burst is over */
			break;
		}
		invalid_emit(s, fd, json, b->last_ns, b->preview, b->frames, b->bytes, true);
		b->frames = b->bytes = 0;
		b->since_ns += INVALID_INTERVAL_NS;
	}
}

/* Everything held is told now (the process exits, the capture ends). */
static void invalid_flush(struct session *s)
{
	for (int fd = 0; fd < 2; fd++)
		for (int json = 0; json < 2; json++) {
			struct invalid_burst *b = &s->invalid[fd][json];
			if (b->frames)
				invalid_emit(s, fd, json, b->last_ns, b->preview, b->frames, b->bytes, true);
			b->frames = b->bytes = 0;
			b->since_ns = 0;
		}
}

/* Every frame counts (stats, and the frames of the events); the output stays proportional
 * to what there is to tell: at most one immediate event per burst and one summary per
 * stream and interval, whatever the flood. */
void session_on_invalid(struct session *s, int fd, const struct frame *f, bool json)
{
	struct invalid_burst *b = &s->invalid[fd != 0][json];
	char printable[PREVIEW_BYTES + 1];
	size_t n = utf8_cut(f->data, f->len, PREVIEW_BYTES);

	s->env.stats->invalid_frames++;
	invalid_advance(s, fd, json, f->ts_last_ns);
	if (!b->since_ns) {
		b->since_ns = f->ts_last_ns;
		printable_copy(printable, sizeof(printable), f->data, n);
		invalid_emit(s, fd, json, f->ts_last_ns, printable, 1, f->wire_len, false);
		return;
	}
	if (!b->frames)
		printable_copy(b->preview, sizeof(b->preview), f->data, n);
	b->frames++;
	b->bytes += f->wire_len;
	b->last_ns = f->ts_last_ns;
}

void session_on_stderr(struct session *s, const struct frame *f)
{
	struct sonde_event ev = { .type = EV_STDERR, .ts_ns = f->ts_last_ns };
	char printable[STDERR_LINE_MAX + 1], line[SCRUB_OUT_MAX(STDERR_LINE_MAX)];
	size_t n = utf8_cut(f->data, f->len, STDERR_LINE_MAX);

	printable_copy(printable, n + 1, f->data, n);
	scrub_text(s->env.opts->redact, printable, strlen(printable), line, sizeof(line), NULL);
	ev.stderr_line.line = line;
	ev.stderr_line.bytes = f->wire_len;
	session_emit(s, &ev);
}

void session_finish(struct session *s)
{
	invalid_flush(s);
}

/* --- silences and exits -------------------------------------------------------------- */

void session_on_stdin_eof(struct session *s, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_STDIN_CLOSED, .ts_ns = ts_ns };

	if (s->stdin_closed_ns)
		return;
	s->stdin_closed_ns = ts_ns;
	session_emit(s, &ev);
}

void session_on_oom(struct session *s, uint64_t ts_ns)
{
	(void)ts_ns;
	s->oom_killed = true;
}

void session_on_blocked_write(struct session *s, int fd, uint64_t enter_ns, uint64_t bytes, uint64_t now_ns)
{
	struct sonde_event ev = { .type = EV_BLOCKED_WRITE, .ts_ns = now_ns };

	if (enter_ns == s->last_blocked_enter_ns) /* one event per blocked write */
		return;
	s->last_blocked_enter_ns = enter_ns;
	ev.blocked_write.fd = fd;
	ev.blocked_write.blocked_ns = now_ns - enter_ns;
	ev.blocked_write.bytes = bytes;
	session_emit(s, &ev);
}

static uint64_t stall_threshold(struct session *s, const struct pending_call *pc)
{
	const struct pipeline_opts *o = s->env.opts;
	uint64_t t = o->stall_ns, p99;

	if (strcmp(pc->method, "initialize") == 0 && o->init_timeout_ns)
		return o->init_timeout_ns;
	p99 = latency_p99_ns(s, pc->tool ? pc->tool : pc->method);
	if (o->stall_p99_factor && p99 * o->stall_p99_factor > t)
		t = p99 * o->stall_p99_factor;
	return t;
}

void session_tick(struct session *s, uint64_t now_ns, bool live)
{
	const struct pipeline_opts *o = s->env.opts;
	struct proc_sample ps = { 0 };
	bool sampled = false;
	struct pending_call *pc, *tmp;

	for (int fd = 0; fd < 2; fd++)
		for (int json = 0; json < 2; json++)
			invalid_advance(s, fd, json, now_ns);

	if (s->stdin_closed_ns && !s->linger_reported && o->stdin_linger_ns &&
	    now_ns - s->stdin_closed_ns > o->stdin_linger_ns) {
		struct sonde_event ev = { .type = EV_STDIN_CLOSED, .ts_ns = now_ns };
		ev.stdin_closed.lingering = true;
		ev.stdin_closed.since_ns = now_ns - s->stdin_closed_ns;
		s->linger_reported = true;
		session_emit(s, &ev);
	}
	if (!o->stall_ns)
		return;
	HASH_ITER(hh, s->pending, pc, tmp) {
		struct sonde_event ev = { .type = EV_STALL, .ts_ns = now_ns };
		uint64_t age = now_ns > pc->ts_ns ? now_ns - pc->ts_ns : 0;

		if (pc->stalled || pc->dir != DIR_CLIENT_TO_SERVER)
			continue;
		if (live && !sampled && (!pc->cpu_sampled || age > stall_threshold(s, pc)))
			sampled = proc_sample((pid_t)s->id.pid, &ps) == 0;
		if (!pc->cpu_sampled) { /* CPU at (about) the start of the call */
			pc->cpu_base_ns = ps.cpu_ns;
			pc->cpu_sampled = true;
		}
		if (age <= stall_threshold(s, pc))
			continue;
		pc->stalled = true;
		ev.stall.method = pc->method;
		ev.stall.id = pc->key + 1;
		ev.stall.tool = pc->tool;
		ev.stall.pending_ns = age;
		ev.stall.state = sampled ? ps.state : 0;
		ev.stall.cpu_ns = sampled && ps.cpu_ns > pc->cpu_base_ns ? ps.cpu_ns - pc->cpu_base_ns : 0;
		ev.stall.threads = sampled ? ps.threads : 0;
		ev.stall.wchan = sampled ? ps.wchan : NULL;
		session_emit(s, &ev);
	}
}

void session_on_exit(struct session *s, const struct msd_exit_rec *rec)
{
	struct sonde_event ev = { .type = EV_EXIT, .ts_ns = rec->hdr.ts_ns };
	struct ev_exit *x = &ev.exit;
	struct pending_call *pc, *tmp;
	unsigned pending = s->npending;

	copy_comm(s->id.comm, rec->comm);
	invalid_flush(s);
	HASH_ITER(hh, s->pending, pc, tmp)
		session_complete(s, pc, CALL_ORPHANED, NULL, rec->hdr.ts_ns, 0);

	x->raw = rec->exit_code;
	x->signal = (int)(rec->exit_code & 0x7f);
	x->core_dumped = (rec->exit_code & 0x80) != 0;
	x->exit_code = x->signal ? -1 : (int)((rec->exit_code >> 8) & 0xff);
	x->oom_killed = s->oom_killed;
	x->stdin_closed = s->stdin_closed_ns != 0;
	x->pending_calls = pending;
	/* The spec's stdio shutdown: close stdin, wait, SIGTERM, SIGKILL. */
	if (x->oom_killed)
		x->reason = "oom";
	else if (x->stdin_closed && (x->exit_code == 0 || x->signal == SIGTERM || x->signal == SIGKILL))
		x->reason = "shutdown";
	else if (x->signal)
		x->reason = "signal";
	else
		x->reason = "exit";
	x->normal = !x->oom_killed && pending == 0 &&
		    ((x->signal == 0 && x->exit_code == 0) || strcmp(x->reason, "shutdown") == 0);
	session_emit(s, &ev);
}

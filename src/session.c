/* session.c -- one observed process: MCP identity, pending calls, correlation, silences.
 *
 * Correlation key: (direction, scope, id as JSON text), so 1 and "1" never match, the two id
 * spaces (client->server and server->client requests) never collide, and neither do two HTTP
 * clients of one server (session.h: the scope). Latency is measured on kernel timestamps:
 * from the read that completed the request frame to the write that started the response
 * frame; for a process that is the client, from the write that started its request to the
 * read that completed the answer. Either way it lies within the client's round trip. Arguments are kept only as their keys unless the user opted
 * in to values, so a pending call costs a bounded, small amount of memory.
 *
 * A pending call sits in one of three tables:
 * - active: an ordinary request; it can stall, and it is what the identity's pending count
 *   and oldest age describe (metrics, alerts);
 * - quiet: a server/discover probe (a legacy server may never answer) or a long-lived
 *   subscriptions/listen: never a stall, never an orphan of a normal shutdown;
 * - suspect: its answer may have been lost in a capture gap. It still completes if the
 *   answer comes, else it is reported lost, never blamed on the server as a stall or an orphan.
 * Each table keeps insertion order (uthash), so its head is its oldest call. Together they
 * hold at most PIPELINE_MAX_PENDING calls: a new request evicts the oldest (counted).
 *
 * Exchanges that belong to one logical call (multi-round-trip requests, tasks) are linked
 * through calls.c; each exchange is still reported, and the call event that completes the
 * logical call carries its rounds and end-to-end time. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>

#include "mcpsonde/calls.h"
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
#define STALL_BURST 16                          /* stall events a session may emit at once... */
#define STALL_REFILL_NS 1000000000ull           /* ...then one a second */
#define ANNOUNCE_WAIT_NS 1000000000ull          /* a request's identity waits this long for serverInfo */
#define LOST_AFTER_NS (30ull * 1000000000ull)   /* suspects, when stall detection is off */

#define REMOTES_MAX 32 /* servers a client process talks to whose serverInfo is kept */
#define KEY_MAX (SESSION_SCOPE_MAX + RPC_ID_MAX + 2)

enum pending_table { PT_ACTIVE, PT_QUIET, PT_SUSPECT, PT__COUNT };

/* What a call keeps of the connection its request came on: its events may come after the
 * connection is gone (an answer after a reconnect, an orphan, a stall). */
struct net_copy {
	struct ev_net net;
	char local[64], peer[64], server_address[48], session_id[132];
};

struct pending_call {
	char key[KEY_MAX];          /* 'C' or 'S' (direction), the scope, 0x1f, the id's JSON text */
	const char *id;             /* the id's JSON text, in key */
	char token[KEY_MAX];        /* the same for its progress token; "" when none */
	enum call_direction dir;
	enum pending_table table;
	char *method;
	char *tool;                 /* tools/call and prompts/get: the name */
	char *target;               /* params.name or params.uri: a retry names the same */
	char *task_id;              /* a request about a task: tasks/get, tasks/result... */
	json_t *arguments;          /* full, or keys with null values */
	json_t *violations;
	struct logical_call *logical; /* the multi-round-trip chain this exchange continues */
	uint64_t ts_ns;
	uint64_t request_bytes;
	uint64_t progress_ns;       /* its latest progress notification; 0 when none */
	uint64_t cpu_base_ns;       /* process CPU when first seen pending at a tick */
	bool cpu_sampled;
	bool stalled;
	bool secret;                /* its request held a secret-looking value */
	struct net_copy *net;       /* HTTP: the connection its request came on; NULL: stdio */
	const char *header_mismatch;
	UT_hash_handle hh, hh_token;
};

/* A server a client process talks to over HTTP, by its address: what it said it is. */
struct remote {
	char address[48];
	unsigned port;
	char *name, *version;
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
	struct pending_call *table[PT__COUNT];
	unsigned ntable[PT__COUNT];
	struct pending_call *by_token; /* pending calls that carry a progress token */
	struct calls *calls;
	struct latency *latency;
	unsigned nlatency;
	struct tool_catalog *tools;
	uint64_t stdin_closed_ns;
	uint64_t last_blocked_enter_ns;
	uint64_t gaps[2];          /* capture gaps in what the process read (MSD_DIR_READ) and wrote */
	uint64_t requests, probes; /* client requests: all but server/discover, and server/discover */
	unsigned identity_gen, announced_gen;
	uint64_t announce_due_ns;  /* identity learned from a request: announced with its answer */
	bool probe_refused;        /* the answer was a refused server/discover: initialize comes next */
	unsigned stall_tokens;
	uint64_t stall_refill_ns;
	uint64_t stalls_suppressed; /* since the last report */
	bool linger_reported;
	bool oom_killed;
	bool announced;
	bool quiet;                /* session_set_quiet */
	struct invalid_burst invalid[2][2]; /* [client->server, server->client][json] */
	/* The message being handled: how the process moved it and where it travelled. */
	enum msd_dir rdir;
	const struct session_via *via;      /* NULL: stdio */
	struct remote remotes[REMOTES_MAX];
	unsigned remote_next;               /* the slot a new remote takes (the oldest) */
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
	s->env = *env;
	s->tools = tools_new();
	s->calls = calls_new(&env->stats->logical_dropped);
	s->stall_tokens = STALL_BURST;
	s->stall_refill_ns = ts_ns;
	if (!s->tools || !s->calls) {
		session_free(s);
		return NULL;
	}
	return s;
}

/* The identity every event carries says how many calls are pending and since when, so
 * sinks need no table of their own: the active ones, those that can stall. */
static void pending_publish(struct session *s)
{
	s->id.pending_calls = s->ntable[PT_ACTIVE];
	s->id.oldest_pending_ns = s->table[PT_ACTIVE] ? s->table[PT_ACTIVE]->ts_ns : 0;
}

static void pending_unlink(struct session *s, struct pending_call *pc)
{
	HASH_DEL(s->table[pc->table], pc);
	s->ntable[pc->table]--;
	if (pc->token[0])
		HASH_DELETE(hh_token, s->by_token, pc);
	pc->token[0] = '\0';
	pending_publish(s);
}

static void pending_add(struct session *s, struct pending_call *pc, enum pending_table t)
{
	pc->table = t;
	HASH_ADD_STR(s->table[t], key, pc);
	s->ntable[t]++;
}

static void pending_call_free(struct pending_call *pc)
{
	calls_end(pc->logical);
	free(pc->net);
	free(pc->method);
	free(pc->tool);
	free(pc->target);
	free(pc->task_id);
	json_decref(pc->arguments);
	json_decref(pc->violations);
	free(pc);
}

static void pending_free(struct session *s, struct pending_call *pc)
{
	pending_unlink(s, pc);
	pending_call_free(pc);
}

static struct pending_call *pending_find(struct session *s, const char *key)
{
	struct pending_call *pc = NULL;

	for (int t = 0; t < PT__COUNT && !pc; t++)
		HASH_FIND_STR(s->table[t], key, pc);
	return pc;
}

static unsigned pending_total(const struct session *s)
{
	return s->ntable[PT_ACTIVE] + s->ntable[PT_QUIET] + s->ntable[PT_SUSPECT];
}

void session_free(struct session *s)
{
	struct pending_call *pc, *ptmp;
	struct latency *l, *ltmp;

	if (!s)
		return;
	for (int t = 0; t < PT__COUNT; t++)
		HASH_ITER(hh, s->table[t], pc, ptmp)
			pending_free(s, pc);
	HASH_ITER(hh, s->latency, l, ltmp) {
		HASH_DEL(s->latency, l);
		free(l->name);
		free(l);
	}
	calls_free(s->calls);
	tools_free(s->tools);
	for (int i = 0; i < REMOTES_MAX; i++) {
		free(s->remotes[i].name);
		free(s->remotes[i].version);
	}
	free(s->id.cmdline);
	free(s->id.exe);
	free(s->id.program);
	free(s->id.server_name);
	free(s->id.server_version);
	free(s->id.client_name);
	free(s->id.client_version);
	free(s->id.protocol_version);
	if (s->id.where)
		attrib_record_release(s->id.where);
	proc_ref_clear(&s->id.client_process);
	proc_ref_clear(&s->id.relay);
	free(s);
}

const struct session_identity *session_identity(const struct session *s)
{
	return &s->id;
}

unsigned session_pending(const struct session *s)
{
	return pending_total(s);
}

static const struct remote *remote_find(const struct session *s, const char *address, unsigned port)
{
	for (int i = 0; address && i < REMOTES_MAX; i++) {
		const struct remote *r = &s->remotes[i];
		if (r->port == port && r->address[0] && strcmp(r->address, address) == 0)
			return r;
	}
	return NULL;
}

/* Events of the message being handled travel where it did; a client's events name the server
 * it talks to, as far as it said who it is. */
void session_set_quiet(struct session *s, bool quiet)
{
	s->quiet = quiet;
}

void session_emit(struct session *s, struct sonde_event *ev)
{
	struct ev_net net;
	const struct remote *r;

	if (s->quiet)
		return;
	if (!ev->net && s->via)
		ev->net = s->via->net;
	if (ev->net && ev->net->client && !ev->net->server_name &&
	    (r = remote_find(s, ev->net->server_address, ev->net->server_port))) {
		net = *ev->net;
		net.server_name = r->name;
		net.server_version = r->version;
		ev->net = &net;
	}
	ev->pid = s->id.pid;
	ev->session = &s->id;
	ev->real_ns = ev->ts_ns + (uint64_t)s->env.opts->mono_to_real_ns;
	sinks_emit(s->env.sinks, ev);
}

/* true when *dst changed */
static bool replace_str(char **dst, const char *src)
{
	if (!src || (*dst && strcmp(*dst, src) == 0))
		return false;
	free(*dst);
	*dst = strdup(src);
	return true;
}

/* Identity that other events are labelled with: a change is announced (session event). */
static void learn(struct session *s, char **dst, const char *src)
{
	if (replace_str(dst, src))
		s->identity_gen++;
}

static void copy_comm(char *dst, const char *src)
{
	memcpy(dst, src, MSD_COMM_LEN);
	dst[MSD_COMM_LEN - 1] = '\0';
}

/* "@scope/name" or "name" at the start of a path inside node_modules/. */
static char *package_at(const char *p)
{
	const char *end = strchr(p, '/');

	if (end && p[0] == '@')
		end = strchr(end + 1, '/');
	return end ? strndup(p, (size_t)(end - p)) : strdup(p);
}

/* npx runs a package's executable as node_modules/.bin/NAME, a symlink into the package
 * (../@scope/pkg/dist/index.js): the package is where the link points. The link is read on
 * this machine, so only live; otherwise (or when .bin holds a script, not a link) the
 * executable's name it is. */
static char *program_of_bin(const char *script, uint32_t pid, bool live)
{
	char path[PATH_MAX], link[PATH_MAX];
	const char *p = link, *nm;
	ssize_t n = -1;

	if (live) {
		snprintf(path, sizeof(path), script[0] == '/' ? "/proc/%u/root%s" : "/proc/%u/cwd/%s", pid, script);
		n = readlink(path, link, sizeof(link) - 1);
	}
	if (n <= 0)
		return strdup(strrchr(script, '/') + 1);
	link[n] = '\0';
	if (link[0] != '/') { /* relative to node_modules/.bin */
		if (strncmp(link, "../", 3) != 0 || strncmp(link + 3, "../", 3) == 0)
			return strdup(strrchr(script, '/') + 1);
		return package_at(link + 3);
	}
	for (; (nm = strstr(p, "node_modules/")); p = nm + strlen("node_modules/"))
		;
	return p == link ? strdup(strrchr(script, '/') + 1) : package_at(p);
}

/* For an interpreter (node, python, npx, uv...), the program it runs: the npm package a
 * script lives in ("@scope/name" after the last node_modules/), else the script's file
 * name. args are NUL-separated, as in /proc/PID/cmdline. */
static char *program_of(const char *args, size_t len, uint32_t pid, bool live)
{
	static const char *const interpreters[] = { "node", "nodejs", "python", "python3", "deno", "bun",
						    "npx", "npm", "uv", "uvx", "pipx", "ruby", "java", NULL };
	const char *arg0 = args, *base = strrchr(arg0, '/'), *script = NULL, *nm;
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
	if (nm != script)
		return strncmp(nm, ".bin/", 5) == 0 ? program_of_bin(script, pid, live) : package_at(nm);
	base = strrchr(script, '/');
	return strdup(base ? base + 1 : script);
}

void session_on_proc(struct session *s, const struct msd_proc_rec *rec)
{
	size_t n = rec->cmdline_len;
	char *cmd = malloc(n + 1);

	copy_comm(s->id.comm, rec->comm);
	s->id.start_ticks = rec->start_ticks;
	replace_str(&s->id.exe, rec->exe);
	if (!cmd)
		return;
	memcpy(cmd, rec->cmdline, n);
	cmd[n] = '\0';
	free(s->id.program);
	s->id.program = n ? program_of(cmd, n, s->id.pid, s->env.live) : NULL;
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

void session_on_discover(struct session *s, uint64_t start_ticks, const char *comm)
{
	s->id.start_ticks = start_ticks;
	s->id.discovered = true;
	copy_comm(s->id.comm, comm);
}

static void session_announce(struct session *s, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_SESSION, .ts_ns = ts_ns };

	s->announced = true;
	s->announced_gen = s->identity_gen;
	s->announce_due_ns = 0;
	session_emit(s, &ev);
}

void session_on_peers(struct session *s, const struct proc_ref *client, const struct proc_ref *relay,
		      uint64_t ts_ns)
{
	if (!memcmp(&s->id.client_process, client, sizeof(*client)) && !memcmp(&s->id.relay, relay, sizeof(*relay)))
		return;
	proc_ref_assign(&s->id.client_process, client);
	proc_ref_assign(&s->id.relay, relay);
	s->identity_gen++;
	if (s->announced)
		session_announce(s, ts_ns);
}

void session_on_where(struct session *s, const struct attrib_record *where, uint64_t ts_ns)
{
	if (s->id.where == where)
		return;
	if (s->id.where)
		attrib_record_release(s->id.where);
	s->id.where = where ? attrib_record_hold(where) : NULL;
	s->identity_gen++;
	if (s->announced)
		session_announce(s, ts_ns);
}

/* One session event per change of identity. A client request tells who the client is (and,
 * in 2026-07-28, the protocol) but its answer tells who the server is: the announcement
 * waits for the answer (ANNOUNCE_WAIT_NS at most, see session_tick). A legacy server's refusal
 * of server/discover names nobody: the initialize that follows will. */
static void session_maybe_announce(struct session *s, enum call_direction dir, const struct rpc_msg *m,
				   uint64_t ts_ns)
{
	bool request = dir == DIR_CLIENT_TO_SERVER && m->kind == RPC_REQUEST;
	bool wait = (request && !s->id.server_name) || s->probe_refused;

	if (request)
		s->probe_refused = false; /* the request after the refusal waits for its own answer */
	if (s->announced && s->identity_gen == s->announced_gen)
		return;
	if (wait) {
		if (!s->announce_due_ns)
			s->announce_due_ns = ts_ns;
		return;
	}
	session_announce(s, ts_ns);
}

/* Who the server is: the process itself, or, for a client process, the server at the other
 * end of the connection (the oldest such record makes room). */
static void session_learn_server(struct session *s, const char *name, const char *version)
{
	const struct ev_net *net = s->via ? s->via->net : NULL;
	struct remote *r;

	if (!net || !net->client) {
		learn(s, &s->id.server_name, name);
		learn(s, &s->id.server_version, version);
		return;
	}
	if (!name || !net->server_address)
		return;
	r = (struct remote *)remote_find(s, net->server_address, net->server_port);
	if (!r) {
		r = &s->remotes[s->remote_next];
		s->remote_next = (s->remote_next + 1) % REMOTES_MAX;
		snprintf(r->address, sizeof(r->address), "%s", net->server_address);
		r->port = net->server_port;
		free(r->name);
		free(r->version);
		r->name = r->version = NULL;
	}
	replace_str(&r->name, name);
	replace_str(&r->version, version);
}

/* The 2026-07-28 envelope: every request says which protocol and client; results say which
 * server. Skimmed, so learning it costs no parse. */
static void session_learn_envelope(struct session *s, enum call_direction dir, const struct rpc_msg *m)
{
	if (dir == DIR_CLIENT_TO_SERVER) {
		learn(s, &s->id.protocol_version, m->protocol_version);
		learn(s, &s->id.client_name, m->client_name);
		learn(s, &s->id.client_version, m->client_version);
	} else if (m->server_name) {
		session_learn_server(s, m->server_name, m->server_version);
	}
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

/* Direction, scope, id: the id comes last, where pending_id finds it. */
static void pending_key(struct session *s, char *key, size_t len, enum call_direction dir, const char *id)
{
	snprintf(key, len, "%c%s\x1f%s", dir == DIR_CLIENT_TO_SERVER ? 'C' : 'S', s->via ? s->via->scope : "", id);
}

static const char *pending_id(const char *key)
{
	return strchr(key, '\x1f') + 1;
}

/* The kernel time of the message being handled: a read's last byte, a write's first. */
static uint64_t message_ts(const struct session *s, const struct frame *f)
{
	return s->rdir == MSD_DIR_READ ? f->ts_last_ns : f->ts_first_ns;
}

static struct net_copy *net_copy_new(const struct ev_net *n)
{
	struct net_copy *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->net = *n;
	snprintf(c->local, sizeof(c->local), "%s", n->local ? n->local : "");
	snprintf(c->peer, sizeof(c->peer), "%s", n->peer ? n->peer : "");
	snprintf(c->server_address, sizeof(c->server_address), "%s", n->server_address ? n->server_address : "");
	snprintf(c->session_id, sizeof(c->session_id), "%s", n->session_id ? n->session_id : "");
	c->net.local = c->local;
	c->net.peer = c->peer;
	c->net.server_address = n->server_address ? c->server_address : NULL;
	c->net.session_id = n->session_id ? c->session_id : NULL;
	c->net.server_name = c->net.server_version = NULL; /* looked up when told */
	return c;
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

/* Room for one more: the oldest call goes, preferably one already in doubt. Its answer, if
 * it ever comes, matches nothing (counted as unmatched). */
static void pending_evict(struct session *s)
{
	struct pending_call *pc = s->table[PT_SUSPECT] ? s->table[PT_SUSPECT] :
				  s->table[PT_ACTIVE] ? s->table[PT_ACTIVE] : s->table[PT_QUIET];

	if (pc) {
		pending_free(s, pc);
		s->env.stats->pending_dropped++;
	}
}

/* Whether a request or its response carries a secret-looking value: what flags the call.
 * initialize and the catalogs (tools/list, prompts/list...) describe the server: not a call's data.
 * The skimmer has usually judged the message's strings already (rpc.h); otherwise they are
 * read here. */
static bool frame_has_secret(const char *method, const struct rpc_msg *m, const struct frame *f)
{
	size_t n = strlen(method);

	if (strcmp(method, "initialize") == 0 || (n >= 5 && strcmp(method + n - 5, "/list") == 0))
		return false;
	if (m->secret_known)
		return m->secret;
	return scrub_json_secret(f->data, f->len) || (f->oversized && scrub_json_secret(f->tail, f->tail_len));
}

static void session_on_request(struct session *s, enum call_direction dir, const struct rpc_msg *m,
			       const struct frame *f)
{
	struct pending_call *pc;
	char key[KEY_MAX];
	bool probe = dir == DIR_CLIENT_TO_SERVER && strcmp(m->method, "server/discover") == 0;

	pending_key(s, key, sizeof(key), dir, m->id);
	if ((pc = pending_find(s, key))) /* the id was reused before its answer: the old call can no longer be matched */
		pending_free(s, pc), s->env.stats->unmatched_responses++;
	if (pending_total(s) >= PIPELINE_MAX_PENDING)
		pending_evict(s);
	pc = calloc(1, sizeof(*pc));
	if (!pc || !(pc->method = strdup(m->method))) {
		free(pc);
		return;
	}
	memcpy(pc->key, key, sizeof(key));
	pc->id = pending_id(pc->key);
	pc->dir = dir;
	pc->ts_ns = message_ts(s, f);
	if (s->via) {
		pc->net = net_copy_new(s->via->net);
		pc->header_mismatch = s->via->header_mismatch;
	}
	pc->request_bytes = f->wire_len;
	pc->secret = frame_has_secret(m->method, m, f);
	if (m->name || m->uri)
		pc->target = strdup(m->name ? m->name : m->uri);
	if (m->task_id && strncmp(m->method, "tasks/", 6) == 0)
		pc->task_id = strdup(m->task_id);
	if (dir == DIR_CLIENT_TO_SERVER)
		probe ? s->probes++ : s->requests++;
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
		learn(s, &s->id.client_name, json_string_value(json_object_get(ci, "name")));
		learn(s, &s->id.client_version, json_string_value(json_object_get(ci, "version")));
		learn(s, &s->id.protocol_version, json_string_value(json_object_get(params, "protocolVersion")));
	}
	/* A retry of a multi-round-trip request echoes the requestState it was given. */
	if (dir == DIR_CLIENT_TO_SERVER && (m->request_state || m->has_input_responses))
		pc->logical = calls_retry(s->calls, pc->method, pc->target, m->request_state, pc->ts_ns);
	pending_add(s, pc, probe || strcmp(m->method, "subscriptions/listen") == 0 ? PT_QUIET : PT_ACTIVE);
	if (m->progress_token[0]) {
		struct pending_call *old;

		pending_key(s, pc->token, sizeof(pc->token), dir, m->progress_token);
		HASH_FIND(hh_token, s->by_token, pc->token, strlen(pc->token), old);
		if (old) { /* a token reused: the newer call has it */
			HASH_DELETE(hh_token, s->by_token, old);
			old->token[0] = '\0';
		}
		HASH_ADD(hh_token, s->by_token, token, strlen(pc->token), pc);
	}
	pending_publish(s);
}

static void session_learn_initialize(struct session *s, const json_t *result, uint64_t ts_ns)
{
	const json_t *si = json_object_get(result, "serverInfo");

	session_learn_server(s, json_string_value(json_object_get(si, "name")),
			     json_string_value(json_object_get(si, "version")));
	learn(s, &s->id.protocol_version, json_string_value(json_object_get(result, "protocolVersion")));
	s->id.initialized_ns = ts_ns;
	s->identity_gen++; /* initialized: the session event says so even if nothing else changed */
}

/* A tools/list result: the catalog learns what fits. A list cut by --max-frame is learned
 * from the tools wholly inside the head that was kept. */
static void session_learn_tools(struct session *s, const struct rpc_msg *m, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_TOOLS_LIST, .ts_ns = ts_ns };
	json_t *tools, *change;
	bool cut = false;

	if (m->oversized)
		tools = rpc_msg_head_array(m, "tools", &cut);
	else
		tools = json_incref(json_object_get(json_object_get(rpc_msg_root(m), "result"), "tools"));
	if (!json_is_array(tools)) {
		json_decref(tools);
		return;
	}
	change = tools_update(s->tools, tools, cut);
	ev.tools.tools = tools;
	ev.tools.count = (unsigned)json_array_size(tools);
	ev.tools.kept = (unsigned)tools_count(s->tools);
	ev.tools.truncated = tools_partial(s->tools);
	session_emit(s, &ev);
	if (change) {
		struct sonde_event ch = { .type = EV_TOOLS_CHANGED, .ts_ns = ts_ns };
		ch.tools = ev.tools;
		ch.tools.change = change;
		session_emit(s, &ch);
		json_decref(change);
	}
	json_decref(tools);
}

/* "Tool X not found": the v2 SDK answers an unknown tool with -32602, the v1 SDK with an
 * isError result saying "MCP error -32602: Tool X not found". */
static bool says_tool_not_found(const char *text)
{
	return text && ((strstr(text, "Tool ") && strstr(text, "not found")) || strstr(text, "Unknown tool") ||
			strstr(text, "unknown tool"));
}

static bool call_unknown_tool(struct session *s, const struct pending_call *pc, enum call_status status,
			      const struct rpc_msg *m)
{
	if (!pc->tool || strcmp(pc->method, "tools/call") != 0)
		return false;
	if (m && status == CALL_ERROR && m->error_code == -32602 && says_tool_not_found(m->error_message))
		return true;
	if (m && status == CALL_TOOL_ERROR && m->error_text && strstr(m->error_text, "-32602") &&
	    says_tool_not_found(m->error_text))
		return true;
	/* A partial catalog cannot say a tool is missing. */
	return (status == CALL_ERROR || status == CALL_TOOL_ERROR) && tools_known(s->tools) &&
	       !tools_partial(s->tools) && !tools_has(s->tools, pc->tool);
}

static const char *call_error_name(const char *method, long long code, const char *message)
{
	/* 2026-07-28 answers an unknown resource with -32602 where earlier revisions used -32002. */
	if (method && strcmp(method, "resources/read") == 0 && code == -32602 && message && strstr(message, "not found"))
		return "resource_not_found";
	return rpc_error_name(code);
}

static void session_complete(struct session *s, struct pending_call *pc, enum call_status status,
			     const struct rpc_msg *m, uint64_t ts_ns, uint64_t response_bytes)
{
	unsigned http_status = s->via ? s->via->http_status : 0;
	struct sonde_event ev = { .type = EV_CALL, .ts_ns = ts_ns };
	struct logical_call *lc = pc->logical;
	char message[SCRUB_OUT_MAX(RPC_NAME_MAX)];
	const json_t *result = NULL;
	bool final = status != CALL_INPUT_REQUIRED && status != CALL_TASK;

	if (m && s->env.opts->capture_values)
		result = json_object_get(rpc_msg_root(m), m->kind == RPC_ERROR ? "error" : "result");
	pc->logical = NULL;
	/* Where the answer came, else where the request did (an orphan, a loss). */
	ev.net = s->via ? s->via->net : pc->net ? &pc->net->net : NULL;
	ev.call.method = pc->method;
	ev.call.id = pc->id;
	ev.call.http_status = http_status;
	ev.call.header_mismatch = pc->header_mismatch;
	ev.call.tool = pc->tool;
	ev.call.status = status;
	ev.call.duration_ns = ts_ns > pc->ts_ns ? ts_ns - pc->ts_ns : 0;
	ev.call.request_bytes = pc->request_bytes;
	ev.call.response_bytes = response_bytes;
	ev.call.direction = pc->dir;
	ev.call.arguments = pc->arguments;
	ev.call.result = result;
	ev.call.schema_violations = pc->violations;
	ev.call.task_id = pc->task_id;
	ev.call.secret = pc->secret;
	if (m) {
		ev.call.error_code = m->error_code;
		ev.call.error_name = m->kind == RPC_ERROR ? call_error_name(pc->method, m->error_code, m->error_message) : NULL;
		if (m->error_message) {
			scrub_text(s->env.opts->redact, m->error_message, strlen(m->error_message), message,
				   sizeof(message), NULL);
			ev.call.error_message = message;
		}
		ev.call.oversized = m->oversized;
		if (m->task_id && m->task_status)
			ev.call.task_status = m->task_status;
	}
	ev.call.unknown_tool = call_unknown_tool(s, pc, status, m);
	if (!final && !lc)
		lc = calls_begin(pc->id, pc->method, pc->tool, pc->arguments, pc->dir, pc->ts_ns);
	if (lc) {
		lc->rounds++;
		lc->request_bytes += pc->request_bytes;
	}
	if (lc && final) { /* the last exchange of a multi-round-trip call */
		ev.call.rounds = lc->rounds;
		ev.call.logical_ns = ts_ns > lc->start_ns ? ts_ns - lc->start_ns : 0;
		ev.call.input_wait_ns = lc->input_wait_ns;
	}
	if (status == CALL_OK || status == CALL_TOOL_ERROR || status == CALL_ERROR)
		latency_add(s, pc->tool ? pc->tool : pc->method, lc ? ev.call.logical_ns : ev.call.duration_ns);
	if (status == CALL_TASK) {
		ev.call.task_id = m->task_id;
		if (lc)
			calls_task_created(s->calls, lc, m, ts_ns);
	} else if (status == CALL_INPUT_REQUIRED && lc) {
		calls_wait_input(s->calls, lc, pc->target, m->request_state, ts_ns);
	}
	pending_unlink(s, pc); /* sinks see the count without this call */
	session_emit(s, &ev);
	if (final)
		calls_end(lc);
	pending_call_free(pc);
}

/* The call a task stood for has an outcome: one call event for it, with the original id, from
 * the tools/call read to the answer that told the outcome. */
static void session_task_done(struct session *s, struct logical_call *lc, enum call_status status,
			      long long code, uint64_t ts_ns, uint64_t response_bytes)
{
	struct sonde_event ev = { .type = EV_CALL, .ts_ns = ts_ns };

	calls_remove(s->calls, lc);
	ev.call.method = lc->method;
	ev.call.id = lc->id;
	ev.call.tool = lc->tool;
	ev.call.arguments = lc->arguments;
	ev.call.direction = lc->dir;
	ev.call.status = status;
	ev.call.error_code = code;
	ev.call.error_name = status == CALL_ERROR ? rpc_error_name(code) : NULL;
	ev.call.duration_ns = ev.call.logical_ns = ts_ns > lc->start_ns ? ts_ns - lc->start_ns : 0;
	ev.call.input_wait_ns = lc->input_wait_ns;
	ev.call.rounds = lc->rounds;
	ev.call.request_bytes = lc->request_bytes;
	ev.call.response_bytes = response_bytes;
	ev.call.task_id = lc->task_id;
	ev.call.task_status = lc->task_status;
	if (status == CALL_OK || status == CALL_TOOL_ERROR || status == CALL_ERROR)
		latency_add(s, lc->tool ? lc->tool : lc->method, ev.call.duration_ns);
	session_emit(s, &ev);
	calls_end(lc);
}

enum task_news { NEWS_NOTIFICATION, NEWS_POLL, NEWS_RESULT };

/* A message that says where a task is: a tasks/get (or tasks/cancel...) answer (a poll), a
 * 2025-11-25 tasks/result answer, notifications/tasks/status. A terminal status completes the
 * call the task stood for; in 2025-11-25 a completed task's outcome is the tasks/result answer. */
static void session_task_news(struct session *s, const char *task_id, enum task_news news,
			      const struct rpc_msg *m, uint64_t ts_ns, uint64_t bytes)
{
	struct logical_call *lc = calls_task(s->calls, task_id);
	const char *st;

	if (!lc)
		return;
	calls_task_seen(lc, m, ts_ns, news != NEWS_NOTIFICATION);
	st = lc->task_status;
	if (news == NEWS_RESULT)
		session_task_done(s, lc, m->kind == RPC_ERROR ? CALL_ERROR : m->is_error ? CALL_TOOL_ERROR : CALL_OK,
				  m->error_code, ts_ns, bytes);
	else if (st && strcmp(st, "failed") == 0)
		session_task_done(s, lc, CALL_ERROR, m->task_error_code, ts_ns, bytes);
	else if (st && strcmp(st, "cancelled") == 0)
		session_task_done(s, lc, CALL_CANCELLED, 0, ts_ns, bytes);
	else if (st && strcmp(st, "completed") == 0 && !lc->task_nested && m->kind == RPC_RESULT)
		session_task_done(s, lc, m->task_is_error ? CALL_TOOL_ERROR : CALL_OK, 0, ts_ns, bytes);
}

/* An error without id (2025-11-25): the peer could not parse a request, so nothing can be
 * matched; it is the peer's protocol error, reported as such. */
static void session_on_protocol_error(struct session *s, enum call_direction dir, const struct rpc_msg *m,
				      const struct frame *f, uint64_t ts_ns)
{
	struct sonde_event ev = { .type = EV_PROTOCOL_ERROR, .ts_ns = ts_ns };

	ev.protocol_error.error_code = m->error_code;
	ev.protocol_error.error_name = rpc_error_name(m->error_code);
	ev.protocol_error.error_message = m->error_message;
	ev.protocol_error.direction = dir;
	ev.protocol_error.bytes = f->wire_len;
	session_emit(s, &ev);
}

/* An answer that matches no pending call. After a capture gap on the other side its request
 * may have been lost there: a lost call, not the server's fault. */
static void session_on_unmatched(struct session *s, enum call_direction req_dir, const struct rpc_msg *m,
				 uint64_t ts_ns, uint64_t bytes)
{
	struct sonde_event ev = { .type = EV_CALL, .ts_ns = ts_ns };

	s->env.stats->unmatched_responses++;
	if (!s->gaps[req_dir == DIR_CLIENT_TO_SERVER ? MSD_DIR_READ : MSD_DIR_WRITE])
		return;
	ev.call.id = m->id;
	ev.call.status = CALL_LOST;
	ev.call.direction = req_dir;
	ev.call.response_bytes = bytes;
	session_emit(s, &ev);
}

static void session_on_response(struct session *s, enum call_direction dir, const struct rpc_msg *m,
				const struct frame *f)
{
	uint64_t ts = message_ts(s, f);
	enum call_direction req_dir = dir == DIR_SERVER_TO_CLIENT ? DIR_CLIENT_TO_SERVER : DIR_SERVER_TO_CLIENT;
	/* HTTP pairs an answer without id with the one request of its exchange. */
	const char *id = !m->id[0] && s->via && s->via->id ? s->via->id : m->id;
	struct pending_call *pc;
	char key[KEY_MAX];
	enum call_status status;
	bool task;

	if (!id[0]) {
		if (m->kind == RPC_ERROR)
			session_on_protocol_error(s, dir, m, f, ts);
		else
			s->env.stats->unmatched_responses++;
		return;
	}
	pending_key(s, key, sizeof(key), req_dir, id);
	if (!(pc = pending_find(s, key))) {
		session_on_unmatched(s, req_dir, m, ts, f->wire_len);
		return;
	}
	status = m->kind == RPC_ERROR ? CALL_ERROR : m->is_error ? CALL_TOOL_ERROR : CALL_OK;
	pc->secret = pc->secret || frame_has_secret(pc->method, m, f);
	if (m->kind == RPC_RESULT && req_dir == DIR_CLIENT_TO_SERVER) {
		if (strcmp(pc->method, "initialize") == 0)
			session_learn_initialize(s, json_object_get(rpc_msg_root(m), "result"), ts);
		else if (strcmp(pc->method, "tools/list") == 0 && !(s->via && s->via->client)) /* its own tools */
			session_learn_tools(s, m, ts);
	}
	task = m->kind == RPC_RESULT && m->task_id && !pc->task_id &&
	       ((m->result_type && strcmp(m->result_type, "task") == 0) || m->task_nested);
	if (task)
		status = CALL_TASK;
	else if (m->kind == RPC_RESULT && m->result_type && strcmp(m->result_type, "input_required") == 0)
		status = CALL_INPUT_REQUIRED;
	else if (pc->table == PT_QUIET && m->kind == RPC_ERROR && strcmp(pc->method, "server/discover") == 0)
		status = CALL_PROBE_FAILED, s->probe_refused = true;
	session_maybe_announce(s, dir, m, ts); /* who the server is, before what it answered */
	if (pc->task_id) { /* the poll is reported first, then what it says of the task */
		enum task_news news = strcmp(pc->method, "tasks/result") == 0 ? NEWS_RESULT : NEWS_POLL;
		char task_id[RPC_NAME_MAX];

		snprintf(task_id, sizeof(task_id), "%s", pc->task_id);
		session_complete(s, pc, status, m, ts, f->wire_len);
		session_task_news(s, task_id, news, m, ts, f->wire_len);
		return;
	}
	session_complete(s, pc, status, m, ts, f->wire_len);
}

static void session_on_notification(struct session *s, enum call_direction dir, const struct rpc_msg *m,
				    const struct frame *f)
{
	struct sonde_event ev = { .type = EV_NOTIFICATION, .ts_ns = message_ts(s, f) };
	char key[KEY_MAX];
	struct pending_call *pc;
	/* Notifications about a request travel the other way: the client cancels what the
	 * server handles, the server reports progress on it. */
	enum call_direction req_dir = dir == DIR_CLIENT_TO_SERVER ? DIR_SERVER_TO_CLIENT : DIR_CLIENT_TO_SERVER;

	ev.notification.method = m->method;
	ev.notification.direction = dir;
	ev.notification.params = s->env.opts->capture_values ? message_params(m) : NULL;
	ev.notification.bytes = f->wire_len;
	ev.notification.subscription_id = m->subscription_id;
	session_emit(s, &ev);
	if (strcmp(m->method, "notifications/cancelled") == 0) {
		if (!m->request_id[0])
			return;
		pending_key(s, key, sizeof(key), dir, m->request_id);
		if ((pc = pending_find(s, key)))
			session_complete(s, pc, CALL_CANCELLED, NULL, ev.ts_ns, 0);
	} else if (strcmp(m->method, "notifications/progress") == 0 && m->progress_token[0]) {
		/* The call is alive: its stall clock restarts. */
		pending_key(s, key, sizeof(key), req_dir, m->progress_token);
		HASH_FIND(hh_token, s->by_token, key, strlen(key), pc);
		if (pc) {
			pc->progress_ns = ev.ts_ns;
			pc->stalled = false;
		}
	} else if (m->task_id && m->task_status) {
		session_task_news(s, m->task_id, NEWS_NOTIFICATION, m, ev.ts_ns, f->wire_len);
	}
}

void session_on_message(struct session *s, enum msd_dir rdir, const struct rpc_msg *m, const struct frame *f)
{
	session_on_message_via(s, NULL, rdir, m, f);
}

/* The MCP client writes the requests: the process, on stdio, reads them. */
static enum call_direction message_dir(const struct session_via *via, enum msd_dir rdir)
{
	return (rdir == MSD_DIR_READ) != (via && via->client) ? DIR_CLIENT_TO_SERVER : DIR_SERVER_TO_CLIENT;
}

static void session_on_message_here(struct session *s, enum msd_dir rdir, const struct rpc_msg *m,
				    const struct frame *f)
{
	enum call_direction dir = message_dir(s->via, rdir);
	struct sonde_event ev = { .type = EV_MESSAGE, .ts_ns = message_ts(s, f) };
	char uri[SCRUB_OUT_MAX(RPC_NAME_MAX)];

	if (m->kind == RPC_INVALID) {
		session_on_invalid(s, s->via ? -1 : rdir == MSD_DIR_READ ? 0 : 1, f, true);
		return;
	}
	s->env.stats->messages++;
	s->id.speaks_mcp = true;
	if (s->via) {
		s->id.transport = s->via->net->transport;
		if (!s->id.listen[0] && !s->via->net->client && s->via->net->local && s->via->net->local[0]) {
			snprintf(s->id.listen, sizeof(s->id.listen), "%s", s->via->net->local);
			s->identity_gen++;
		}
	}
	session_learn_envelope(s, dir, m);
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
	session_maybe_announce(s, dir, m, ev.ts_ns);
}

void session_on_message_via(struct session *s, const struct session_via *via, enum msd_dir rdir,
			    const struct rpc_msg *m, const struct frame *f)
{
	s->via = via;
	s->rdir = rdir;
	session_on_message_here(s, rdir, m, f);
	s->via = NULL;
}

bool session_on_unanswered(struct session *s, const struct session_via *via, const char *id,
			   enum session_unanswered why, uint64_t ts_ns)
{
	char key[KEY_MAX];
	struct pending_call *pc;
	bool found = false;

	s->via = via;
	pending_key(s, key, sizeof(key), DIR_CLIENT_TO_SERVER, id);
	if ((pc = pending_find(s, key)) && pc->table != PT_SUSPECT) {
		found = true;
		if (why == SESSION_HTTP_LOST) {
			HASH_DEL(s->table[pc->table], pc);
			s->ntable[pc->table]--;
			pending_add(s, pc, PT_SUSPECT);
			pending_publish(s);
		} else {
			session_complete(s, pc, why == SESSION_HTTP_FAILED ? CALL_HTTP_ERROR : CALL_CANCELLED, NULL, ts_ns, 0);
		}
	}
	s->via = NULL;
	return found;
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
void session_on_invalid_via(struct session *s, const struct session_via *via, const struct frame *f, bool json)
{
	s->via = via;
	session_on_invalid(s, -1, f, json);
	s->via = NULL;
}

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

/* --- capture gaps -------------------------------------------------------------------- */

void session_on_gap(struct session *s, enum msd_dir rdir)
{
	/* What the server wrote carries the answers to the client's requests; what it read, the
	 * answers to its own. Those pending now may have been answered inside the gap. */
	enum call_direction answered_in = rdir == MSD_DIR_WRITE ? DIR_CLIENT_TO_SERVER : DIR_SERVER_TO_CLIENT;
	struct pending_call *pc, *tmp;

	s->gaps[rdir]++;
	for (int t = PT_ACTIVE; t <= PT_QUIET; t++) {
		HASH_ITER(hh, s->table[t], pc, tmp) {
			if (pc->dir != answered_in)
				continue;
			HASH_DEL(s->table[t], pc);
			s->ntable[t]--;
			pending_add(s, pc, PT_SUSPECT);
		}
	}
	pending_publish(s);
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

static uint64_t stall_threshold(struct session *s, const char *method, const char *tool)
{
	const struct pipeline_opts *o = s->env.opts;
	uint64_t t = o->stall_ns, p99;

	if (strcmp(method, "initialize") == 0 && o->init_timeout_ns)
		return o->init_timeout_ns;
	p99 = latency_p99_ns(s, tool ? tool : method);
	if (o->stall_p99_factor && p99 * o->stall_p99_factor > t)
		t = p99 * o->stall_p99_factor;
	return t;
}

/* Stall events are rate-limited per session (a burst, then one a second): a hostile client
 * with a million unanswered requests costs a counted loss, not a million events. */
static bool stall_allowed(struct session *s, uint64_t now_ns)
{
	if (now_ns > s->stall_refill_ns + STALL_REFILL_NS) {
		uint64_t n = (now_ns - s->stall_refill_ns) / STALL_REFILL_NS;
		s->stall_tokens = n + s->stall_tokens > STALL_BURST ? STALL_BURST : s->stall_tokens + (unsigned)n;
		s->stall_refill_ns += n * STALL_REFILL_NS;
	}
	if (s->stall_tokens) {
		s->stall_tokens--;
		return true;
	}
	s->stalls_suppressed++;
	return false;
}

#define CPU_UNKNOWN UINT64_MAX /* no CPU figure at the start of what stalled */

struct stall_sample {
	struct proc_sample ps;
	bool live, sampled;
};

static void stall_emit(struct session *s, struct sonde_event *ev, struct stall_sample *smp, uint64_t cpu_base_ns)
{
	if (smp->live && !smp->sampled)
		smp->sampled = proc_sample((pid_t)s->id.pid, &smp->ps) == 0;
	ev->stall.state = smp->sampled ? smp->ps.state : 0;
	ev->stall.cpu_ns = smp->sampled && cpu_base_ns != CPU_UNKNOWN && smp->ps.cpu_ns > cpu_base_ns ?
				   smp->ps.cpu_ns - cpu_base_ns : 0;
	ev->stall.threads = smp->sampled ? smp->ps.threads : 0;
	ev->stall.wchan = smp->sampled ? smp->ps.wchan : NULL;
	session_emit(s, ev);
}

static void session_check_stalls(struct session *s, uint64_t now_ns, struct stall_sample *smp)
{
	struct pending_call *pc, *tmp;

	HASH_ITER(hh, s->table[PT_ACTIVE], pc, tmp) {
		struct sonde_event ev = { .type = EV_STALL, .ts_ns = now_ns };
		uint64_t since = pc->progress_ns > pc->ts_ns ? pc->progress_ns : pc->ts_ns;

		if (pc->stalled || pc->dir != DIR_CLIENT_TO_SERVER)
			continue;
		/* 2025-11-25 tasks/result waits for its task: the task's polls say whether it moves. */
		if (pc->task_id && calls_task(s->calls, pc->task_id))
			continue;
		if (smp->live && !pc->cpu_sampled && !smp->sampled)
			smp->sampled = proc_sample((pid_t)s->id.pid, &smp->ps) == 0;
		if (!pc->cpu_sampled) { /* CPU at (about) the start of the call */
			pc->cpu_base_ns = smp->ps.cpu_ns;
			pc->cpu_sampled = true;
		}
		if (now_ns <= since || now_ns - since <= stall_threshold(s, pc->method, pc->tool))
			continue;
		pc->stalled = true;
		if (!stall_allowed(s, now_ns))
			continue;
		ev.stall.method = pc->method;
		ev.net = pc->net ? &pc->net->net : NULL;
		ev.stall.id = pc->id;
		ev.stall.tool = pc->tool;
		ev.stall.pending_ns = now_ns - pc->ts_ns;
		ev.stall.since_progress_ns = pc->progress_ns ? now_ns - pc->progress_ns : 0;
		stall_emit(s, &ev, smp, pc->cpu_base_ns);
	}
}

/* A task is alive while it is polled and its state moves; a stall is its polls stopping, or
 * its state standing still, past the threshold. */
static void session_check_tasks(struct session *s, uint64_t now_ns, struct stall_sample *smp)
{
	for (struct logical_call *lc = calls_first(s->calls); lc; lc = calls_next(lc)) {
		struct sonde_event ev = { .type = EV_STALL, .ts_ns = now_ns };
		uint64_t thr;

		if (!lc->task_id || lc->stalled || calls_task_terminal(lc->task_status))
			continue;
		thr = stall_threshold(s, lc->method, lc->tool);
		if (now_ns - lc->polled_ns <= thr && now_ns - lc->changed_ns <= thr)
			continue;
		lc->stalled = true;
		if (!stall_allowed(s, now_ns))
			continue;
		ev.stall.method = lc->method;
		ev.stall.id = lc->id;
		ev.stall.tool = lc->tool;
		ev.stall.pending_ns = now_ns - lc->start_ns;
		ev.stall.since_progress_ns = now_ns - lc->changed_ns;
		ev.stall.task_id = lc->task_id;
		ev.stall.task_status = lc->task_status;
		ev.stall.since_poll_ns = now_ns - lc->polled_ns;
		stall_emit(s, &ev, smp, CPU_UNKNOWN);
	}
}

/* A call in doubt that got no answer within the stall threshold: lost, not stalled. */
static void session_expire_suspects(struct session *s, uint64_t now_ns)
{
	struct pending_call *pc, *tmp;

	HASH_ITER(hh, s->table[PT_SUSPECT], pc, tmp) {
		uint64_t after = s->env.opts->stall_ns ? stall_threshold(s, pc->method, pc->tool) : LOST_AFTER_NS;

		if (now_ns > pc->ts_ns && now_ns - pc->ts_ns > after)
			session_complete(s, pc, CALL_LOST, NULL, now_ns, 0);
	}
}

void session_tick(struct session *s, uint64_t now_ns, bool live)
{
	const struct pipeline_opts *o = s->env.opts;
	struct stall_sample smp = { .live = live };

	for (int fd = 0; fd < 2; fd++)
		for (int json = 0; json < 2; json++)
			invalid_advance(s, fd, json, now_ns);
	if (s->announce_due_ns && now_ns - s->announce_due_ns > ANNOUNCE_WAIT_NS)
		session_announce(s, now_ns);
	if (s->stdin_closed_ns && !s->linger_reported && o->stdin_linger_ns &&
	    now_ns - s->stdin_closed_ns > o->stdin_linger_ns) {
		struct sonde_event ev = { .type = EV_STDIN_CLOSED, .ts_ns = now_ns };
		ev.stdin_closed.lingering = true;
		ev.stdin_closed.since_ns = now_ns - s->stdin_closed_ns;
		s->linger_reported = true;
		session_emit(s, &ev);
	}
	session_expire_suspects(s, now_ns);
	calls_expire(s->calls, now_ns);
	if (!o->stall_ns)
		return;
	session_check_stalls(s, now_ns, &smp);
	session_check_tasks(s, now_ns, &smp);
	if (s->stalls_suppressed) {
		struct sonde_event ev = { .type = EV_LOSS, .ts_ns = now_ns };
		ev.loss.reason = "stall_limit";
		ev.loss.records = s->stalls_suppressed;
		ev.loss.fd = -1;
		s->stalls_suppressed = 0;
		session_emit(s, &ev);
	}
}

/* What the calls pending at an exit become. A probe never answered is a probe's outcome; an
 * answer in doubt is lost; a subscription or a task still open is closed by a normal
 * shutdown and orphaned by anything else. Returns the number orphaned. */
static unsigned session_settle(struct session *s, uint64_t ts_ns, bool normal, unsigned *lost)
{
	struct pending_call *pc, *tmp;
	unsigned orphans = 0;

	for (int t = 0; t < PT__COUNT; t++) {
		HASH_ITER(hh, s->table[t], pc, tmp) {
			enum call_status st = CALL_ORPHANED;

			if (t == PT_SUSPECT)
				st = CALL_LOST, (*lost)++;
			else if (t == PT_QUIET && strcmp(pc->method, "server/discover") == 0)
				st = CALL_PROBE_FAILED;
			else if (t == PT_QUIET && normal)
				st = CALL_CLOSED;
			else
				orphans++;
			session_complete(s, pc, st, NULL, ts_ns, 0);
		}
	}
	for (struct logical_call *lc = calls_first(s->calls), *next; lc; lc = next) {
		next = calls_next(lc);
		if (!lc->task_id)
			continue;
		if (lc->task_status && strcmp(lc->task_status, "completed") == 0) {
			session_task_done(s, lc, CALL_OK, 0, ts_ns, 0);
		} else {
			orphans += !normal;
			session_task_done(s, lc, normal ? CALL_CLOSED : CALL_ORPHANED, 0, ts_ns, 0);
		}
	}
	return orphans;
}

void session_on_exit(struct session *s, const struct msd_exit_rec *rec)
{
	struct sonde_event ev = { .type = EV_EXIT, .ts_ns = rec->hdr.ts_ns };
	struct ev_exit *x = &ev.exit;
	unsigned active = s->ntable[PT_ACTIVE];
	bool terminated, network;

	copy_comm(s->id.comm, rec->comm);
	invalid_flush(s);
	if (s->announce_due_ns)
		session_announce(s, rec->hdr.ts_ns);
	x->raw = rec->exit_code;
	x->signal = (int)(rec->exit_code & 0x7f);
	x->core_dumped = (rec->exit_code & 0x80) != 0;
	x->exit_code = x->signal ? -1 : (int)((rec->exit_code >> 8) & 0xff);
	x->oom_killed = s->oom_killed;
	x->stdin_closed = s->stdin_closed_ns != 0;
	x->on_channel = (rec->flags & MSD_EXIT_ON_CHANNEL) != 0;
	terminated = (x->signal == 0 && x->exit_code == 0) || x->signal == SIGTERM || x->signal == SIGKILL;
	/* A network server's shutdown is a signal (SIGTERM from its supervisor, SIGINT). */
	network = s->id.transport && strcmp(s->id.transport, "pipe") != 0;
	/* The spec's stdio shutdown: close stdin, wait, SIGTERM, SIGKILL. A client's probe copy of
	 * the server (the v2 SDK starts one for server/discover and terminates it without
	 * closing its stdin) handled nothing else. */
	if (x->oom_killed)
		x->reason = "oom";
	else if (s->probes && !s->requests && !active && terminated)
		x->reason = "probe";
	else if ((x->stdin_closed || network) && (terminated || x->signal == SIGINT))
		x->reason = "shutdown";
	else if (x->signal)
		x->reason = "signal";
	else
		x->reason = "exit";
	x->normal = !x->oom_killed && !active &&
		    ((x->signal == 0 && x->exit_code == 0) || strcmp(x->reason, "shutdown") == 0 ||
		     strcmp(x->reason, "probe") == 0);
	x->pending_calls = session_settle(s, rec->hdr.ts_ns, x->normal, &x->lost_calls);
	session_emit(s, &ev);
}

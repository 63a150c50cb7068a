/* targets.c -- what is watched, and who each watched process is (see targets.h).
 *
 * One table of processes keyed by tgid, each with its start time: the given ones and their
 * descendants (attach), the discovered ones and what they fork (watch). Records go through
 * here in ring buffer order, so a fork is known before its child's data, a discovery before
 * the data of the read that made it. The decisions that need the pipeline's view (is it MCP,
 * who its client names) come back through the pipeline's hooks, after the record at hand. */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/procfs.h"
#include "mcpsonde/session.h"
#include "mcpsonde/targets.h"

#define ANCESTORS_MAX 16    /* a client is looked for this far up at once */
#define FAMILY_DEPTH_MAX 64 /* how far up parent links are followed */
#define PRUNE_NS 1000000000ull
#define LATENCIES_MAX 1024

static const char *const selector_keys[SEL__COUNT] = {
	[SEL_COMM] = "comm",	       [SEL_EXE] = "exe", [SEL_CMDLINE] = "cmdline",
	[SEL_NAMESPACE] = "namespace", [SEL_POD] = "pod", [SEL_CONTAINER] = "container",
};

enum client_search {
	SEARCH_NOT_YET, /* not looked for: a process given by PID that has not spoken MCP */
	SEARCH_QUEUED,  /* not among its ancestors: waits for the /proc scan */
	SEARCH_SCANNING,
	SEARCH_DONE,    /* found, or looked for everywhere */
};

struct target {
	UT_hash_handle hh;
	uint32_t tgid;
	uint64_t start_ticks;
	uint32_t parent;       /* the tracked process that forked it; 0: a root (given, discovered) */
	bool given;            /* attach: never let go */
	bool discovered;       /* a root the kernel found */
	bool http;             /* found by an HTTP request: it serves MCP on its connections */
	uint64_t found_ns;     /* when it was found (targets_on_discover) */
	bool server;           /* it spoke MCP */
	const char *released;  /* why it was let go; NULL while watched */
	uint64_t released_ns;
	uint64_t gone_ns;      /* first found gone from /proc without its exit record */
	struct msd_file_id in, out;  /* its stdin and stdout */
	uint64_t in_peer, out_peer;  /* their AF_UNIX peers' inodes (0: none, or not known yet) */
	struct proc_ref me;          /* itself, as another's client or relay */
	struct proc_ref client, relay;
	enum client_search search;
	const struct attrib_record *where;
};

/* What the client of a server holds: an fd on this file, opened this way. */
struct want {
	uint32_t dev;
	uint64_t ino;
	enum proc_fd_access access;
};

/* A pass of the /proc scan: a snapshot of PIDs, walked a few per tick, and the servers it
 * looks for (by tgid and start: they may be gone by the time it finds something). */
struct scan {
	pid_t *pids;
	int npids, pos;
	struct {
		uint32_t tgid;
		uint64_t start_ticks;
		struct want want;
	} servers[TARGETS_SCAN_MAX];
	unsigned nservers;
};

struct targets {
	struct targets_opts opts;
	struct source_live *src;
	struct pipeline *pipe;
	targets_deliver_fn deliver;
	void *ctx;
	struct target *table;
	unsigned n, queued;
	struct scan scan;
	struct targets_stats stats;
	uint64_t last_prune_ns;
	double latencies[LATENCIES_MAX];
	unsigned nlatencies;
	uint64_t latencies_lost;
	char self_pod[ATTRIB_UID_LEN + 1]; /* mcpsonde's own pod: never watched */
};

/* --- selectors ---------------------------------------------------------------------------- */

int selectors_add(struct selectors *s, const char *spec, bool include, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');

	if (s->n == SELECTORS_MAX) {
		snprintf(err, errlen, "at most %d --include/--exclude", SELECTORS_MAX);
		return -1;
	}
	for (int k = 0; k < SEL__COUNT; k++) {
		size_t len = strlen(selector_keys[k]);

		if (!eq || (size_t)(eq - spec) != len || strncmp(spec, selector_keys[k], len) != 0)
			continue;
		if (!eq[1]) {
			snprintf(err, errlen, "%s: the pattern is empty", spec);
			return -1;
		}
		if (!(s->items[s->n].glob = strdup(eq + 1))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		s->items[s->n].key = (enum selector_key)k;
		s->items[s->n].include = include;
		s->n++;
		s->nincludes += include;
		return 0;
	}
	snprintf(err, errlen, "%s: expected comm=, exe=, cmdline=, namespace=, pod= or container=GLOB", spec);
	return -1;
}

bool selectors_pass(const struct selectors *s, const struct selector_subject *subj)
{
	bool included = !s || !s->nincludes;

	for (unsigned i = 0; s && i < s->n; i++) {
		const char *v = subj->field[s->items[i].key];

		if (fnmatch(s->items[i].glob, v ? v : "", 0) != 0)
			continue;
		if (!s->items[i].include)
			return false;
		included = true;
	}
	return included;
}

void selectors_free(struct selectors *s)
{
	for (unsigned i = 0; i < s->n; i++)
		free(s->items[i].glob);
	s->n = s->nincludes = 0;
}

/* What selectors see of an identity record: its command line with spaces between arguments,
 * and where it runs (where: NULL when not known). Never a pod's sandbox or a runtime's
 * monitor, nor anything in mcpsonde's own pod. */
static bool targets_admits(const struct targets *t, const struct msd_proc_rec *id, const struct attrib_record *where)
{
	struct selector_subject subj = { 0 };
	char cmdline[4096];
	size_t n;

	if (where && (where->role == ATTRIB_ROLE_SANDBOX || where->role == ATTRIB_ROLE_MONITOR ||
		      (t->self_pod[0] && strcmp(where->pod_uid, t->self_pod) == 0)))
		return false;
	if (!t->opts.selectors || !t->opts.selectors->n)
		return true;
	if (where) {
		subj.field[SEL_NAMESPACE] = where->k8s_namespace;
		subj.field[SEL_POD] = where->pod_name;
		subj.field[SEL_CONTAINER] = where->k8s_container_name[0] ? where->k8s_container_name : where->container_name;
	}
	if (!id)
		return !t->opts.selectors->nincludes;
	n = id->cmdline_len < sizeof(cmdline) - 1 ? id->cmdline_len : sizeof(cmdline) - 1;
	memcpy(cmdline, id->cmdline, n);
	while (n > 0 && cmdline[n - 1] == '\0')
		n--;
	for (size_t i = 0; i < n; i++)
		if (cmdline[i] == '\0')
			cmdline[i] = ' ';
	cmdline[n] = '\0';
	subj.field[SEL_COMM] = id->comm;
	subj.field[SEL_EXE] = id->exe;
	subj.field[SEL_CMDLINE] = cmdline;
	return selectors_pass(t->opts.selectors, &subj);
}

/* --- the table ---------------------------------------------------------------------------- */

static uint64_t ns_to_ticks(uint64_t ns)
{
	return ns / (1000000000ull / (uint64_t)proc_clock_ticks());
}

static struct target *target_find(const struct targets *t, uint32_t tgid)
{
	struct target *tg;

	HASH_FIND(hh, t->table, &tgid, sizeof(tgid), tg);
	return tg;
}

static struct target *target_add(struct targets *t, uint32_t tgid, uint64_t start_ticks)
{
	struct target *tg;

	if (t->n >= TARGETS_MAX || !(tg = calloc(1, sizeof(*tg)))) {
		t->stats.table_full++;
		return NULL;
	}
	tg->tgid = tgid;
	tg->start_ticks = start_ticks;
	tg->me.pid = tgid;
	tg->me.start_ticks = start_ticks;
	HASH_ADD(hh, t->table, tgid, sizeof(tg->tgid), tg);
	t->n++;
	return tg;
}

static void target_remove(struct targets *t, struct target *tg)
{
	if (tg->search == SEARCH_QUEUED)
		t->queued--;
	/* gone before its client was found: a lookup that ended without one */
	if (tg->search == SEARCH_QUEUED || tg->search == SEARCH_SCANNING)
		t->stats.clients_unknown++;
	if (tg->where)
		attrib_record_release(tg->where);
	proc_ref_clear(&tg->client);
	proc_ref_clear(&tg->relay);
	if (t->opts.attrib)
		attrib_forget(t->opts.attrib, (pid_t)tg->tgid, tg->start_ticks);
	HASH_DEL(t->table, tg);
	t->n--;
	free(tg);
}

/* Whether tg is anc or was forked by it, however far down. */
static bool target_descends(const struct targets *t, const struct target *tg, const struct target *anc)
{
	for (int depth = 0; tg && depth < FAMILY_DEPTH_MAX; depth++) {
		if (tg == anc)
			return true;
		tg = tg->parent ? target_find(t, tg->parent) : NULL;
	}
	return false;
}

static void targets_deliver(struct targets *t, const struct msd_rec_hdr *rec)
{
	t->deliver(t->ctx, rec);
}

/* Who tg is (MSD_REC_PROC), before its next record: from /proc while it is the process
 * started then, else from what the kernel said of it (fallback, may be NULL). */
static struct msd_proc_rec *targets_identity(struct target *tg, uint64_t ts_ns, const struct msd_discover_rec *d)
{
	struct msd_proc_rec *id = proc_identity((pid_t)tg->tgid, tg->start_ticks, ts_ns);

	/* Exiting already (a zombie): its /proc has neither command line nor exe any more, and
	 * selectors on the command line would judge an empty one. The kernel's is whole. */
	if (id && d && !id->cmdline_len && d->cmdline_len) {
		free(id);
		id = NULL;
	}
	if (!id && d && (id = calloc(1, sizeof(*id) + d->cmdline_len))) {
		id->hdr = (struct msd_rec_hdr){ .kind = MSD_REC_PROC, .abi = MSD_ABI_VERSION,
						.size = (uint32_t)(sizeof(*id) + d->cmdline_len), .ts_ns = ts_ns,
						.tgid = tg->tgid, .tid = tg->tgid };
		id->start_ticks = tg->start_ticks;
		id->ppid = d->ppid;
		id->cmdline_len = d->cmdline_len;
		memcpy(id->comm, d->comm, sizeof(id->comm));
		id->comm[sizeof(id->comm) - 1] = '\0';
		memcpy(id->cmdline, d->cmdline, d->cmdline_len);
	}
	if (id) {
		memcpy(tg->me.comm, id->comm, sizeof(tg->me.comm));
		snprintf(tg->me.exe, sizeof(tg->me.exe), "%s", id->exe);
	}
	return id;
}

static void targets_identify(struct targets *t, struct target *tg, uint64_t ts_ns)
{
	struct msd_proc_rec *id = targets_identity(tg, ts_ns, NULL);

	if (!id)
		return;
	targets_deliver(t, &id->hdr);
	free(id);
}

/* Attribution, once per process: cached and bounded in attrib.c, held with the entry. */
static void targets_locate(struct targets *t, struct target *tg, uint64_t now_ns)
{
	const struct attrib_record *r;

	if (!t->opts.attrib || tg->where)
		return;
	if ((r = attrib_lookup(t->opts.attrib, (pid_t)tg->tgid, tg->start_ticks, now_ns)))
		tg->where = attrib_record_hold(r);
}

/* --- letting go ------------------------------------------------------------------------- */

/* tg and what it forked are no longer watched: the kernel stops copying them, their
 * sessions end without an exit, and their records still in flight are dropped. */
static void targets_release_tree(struct targets *t, struct target *root, const char *reason, uint64_t now_ns)
{
	struct target *tg, *tmp;

	HASH_ITER(hh, t->table, tg, tmp) {
		if (tg->released || !target_descends(t, tg, root))
			continue;
		source_live_untrack(t->src, (pid_t)tg->tgid);
		if (t->pipe)
			pipeline_release(t->pipe, tg->tgid, reason, now_ns);
		tg->released = reason;
		tg->released_ns = now_ns;
	}
}

/* A verdict about a discovered process: written where the kernel's discovery reads it (so
 * its reads are no longer looked at), then the process is released. */
static void targets_let_go(struct targets *t, struct target *tg, enum msd_verdict_kind verdict, const char *reason,
			   uint64_t now_ns)
{
	if (tg->released || tg->given)
		return;
	if (t->src)
		source_live_verdict(t->src, (pid_t)tg->tgid, tg->start_ticks, verdict, NULL);
	targets_release_tree(t, tg, reason, now_ns);
	if (verdict == MSD_VERDICT_EXCLUDED)
		t->stats.excluded++;
	else if (verdict == MSD_VERDICT_NOT_MCP)
		t->stats.not_mcp++;
	else if (verdict == MSD_VERDICT_RELAY)
		t->stats.relays++;
}

/* --- who talks to it ---------------------------------------------------------------------- */

static void targets_push_peers(struct targets *t, const struct target *tg, uint64_t now_ns)
{
	if (t->pipe)
		pipeline_set_peers(t->pipe, tg->tgid, &tg->client, &tg->relay, now_ns);
}

static bool name_equal(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* relay reads what a client sends and feeds it to server: it forwards, so it is not a
 * server of its own. An MCP client that is also a server (an aggregator of servers) names
 * itself to its servers: their client names differ, and both stay servers. */
static void targets_maybe_relay(struct targets *t, struct target *relay, struct target *server, uint64_t now_ns)
{
	const struct session_identity *ri, *si;

	if (!relay->discovered || relay->given || !server->server || !relay->server || !t->pipe)
		return;
	ri = pipeline_identity(t->pipe, relay->tgid);
	si = pipeline_identity(t->pipe, server->tgid);
	if (relay->released ? strcmp(relay->released, "relay") != 0 :
	    !ri || !si || !name_equal(ri->client_name, si->client_name))
		return;
	proc_ref_assign(&server->relay, &relay->me);
	proc_ref_assign(&server->client, &relay->client);
	targets_push_peers(t, server, now_ns);
	targets_let_go(t, relay, MSD_VERDICT_RELAY, "relay", now_ns);
}

/* What a server's client holds: the write end of its stdin pipe, or the peer of its stdin
 * socket; when stdin is a tty or names nobody, the other end of its stdout. */
static bool client_want(struct target *tg, struct want *w)
{
	const struct msd_file_id *f[2] = { &tg->in, &tg->out };
	uint64_t *peer[2] = { &tg->in_peer, &tg->out_peer };

	for (int i = 0; i < 2; i++) {
		if (f[i]->kind == MSD_FD_PIPE) {
			*w = (struct want){ f[i]->dev, f[i]->ino, i == 0 ? PROC_FD_WRITE : PROC_FD_READ };
			return true;
		}
		if (f[i]->kind == MSD_FD_SOCKET) {
			if (!*peer[i])
				*peer[i] = proc_unix_peer(f[i]->ino); /* attach: the kernel did not say */
			if (*peer[i]) {
				*w = (struct want){ f[i]->dev, *peer[i], PROC_FD_ANY };
				return true;
			}
		}
	}
	return false;
}

/* The client of tg is pid (if it still is the process that holds the file). */
static bool targets_client_found(struct targets *t, struct target *tg, pid_t pid, uint64_t now_ns)
{
	struct proc_ref c = { .pid = (uint32_t)pid };
	struct proc_sample ps;
	struct target *ct, *s, *tmp;

	if (proc_sample_named(pid, &ps, c.comm) < 0)
		return false;
	c.start_ticks = ps.start_ticks;
	proc_exe(pid, c.exe, sizeof(c.exe));
	/* where it runs: an agent in another pod than its server's (cached, bounded reads) */
	if (t->opts.attrib)
		c.where = attrib_lookup(t->opts.attrib, pid, c.start_ticks, now_ns);
	proc_ref_assign(&tg->client, &c);
	tg->search = SEARCH_DONE;
	t->stats.clients_found++;
	targets_push_peers(t, tg, now_ns);
	/* Servers reached through tg as a relay have its client as theirs. */
	HASH_ITER(hh, t->table, s, tmp) {
		if (s->relay.pid == tg->tgid && s->relay.start_ticks == tg->start_ticks) {
			proc_ref_assign(&s->client, &tg->client);
			targets_push_peers(t, s, now_ns);
		}
	}
	ct = target_find(t, (uint32_t)pid);
	if (ct && ct->start_ticks == c.start_ticks)
		targets_maybe_relay(t, ct, tg, now_ns);
	return true;
}

/* Looks for tg's client among its ancestors (the agent that spawned it, a wrapper chain's
 * top, a relay); else queues it for the /proc scan (a shell pipeline's sibling, a FIFO's
 * writer). */
static void targets_find_client(struct targets *t, struct target *tg, pid_t ppid, uint64_t now_ns)
{
	struct proc_sample ps;
	struct want w;

	if (tg->search != SEARCH_NOT_YET)
		return;
	if (tg->http) {
		/* Its clients are its connections' peers, maybe on other machines: the events
		 * name them (net.peer), one process cannot. */
		tg->search = SEARCH_DONE;
		return;
	}
	if (!client_want(tg, &w)) {
		tg->search = SEARCH_DONE;
		t->stats.clients_unknown++;
		return;
	}
	if (!ppid && proc_sample((pid_t)tg->tgid, &ps) == 0)
		ppid = ps.ppid;
	for (int depth = 0; ppid > 1 && depth < ANCESTORS_MAX; depth++) {
		if (proc_holds(ppid, w.dev, w.ino, w.access) == 1 && targets_client_found(t, tg, ppid, now_ns))
			return;
		if (proc_sample(ppid, &ps) < 0)
			break;
		ppid = ps.ppid;
	}
	tg->search = SEARCH_QUEUED;
	t->queued++;
}

/* One tick of the /proc scan: a pass takes the queued servers and a snapshot of PIDs, and
 * reads TARGETS_SCAN_PIDS of them per tick; a server not found by the end of its pass has
 * no client that can be named (it closed its end, or runs where /proc does not show it). */
static void targets_scan_step(struct targets *t, uint64_t now_ns)
{
	struct scan *sc = &t->scan;
	struct target *tg, *tmp;

	if (!sc->pids) {
		if (!t->queued)
			return;
		HASH_ITER(hh, t->table, tg, tmp) {
			if (tg->search != SEARCH_QUEUED || sc->nservers == TARGETS_SCAN_MAX)
				continue;
			if (!client_want(tg, &sc->servers[sc->nservers].want))
				continue;
			sc->servers[sc->nservers].tgid = tg->tgid;
			sc->servers[sc->nservers].start_ticks = tg->start_ticks;
			sc->nservers++;
			tg->search = SEARCH_SCANNING;
			t->queued--;
		}
		sc->pos = 0;
		if (!sc->nservers || (sc->npids = proc_list(&sc->pids)) < 0) {
			sc->pids = NULL;
			sc->nservers = 0;
			return;
		}
	}
	for (int n = 0; n < TARGETS_SCAN_PIDS && sc->pos < sc->npids; n++) {
		pid_t pid = sc->pids[sc->pos++];

		for (unsigned i = 0; i < sc->nservers; i++) {
			const struct want *w = &sc->servers[i].want;

			tg = target_find(t, sc->servers[i].tgid);
			if (!tg || tg->start_ticks != sc->servers[i].start_ticks || tg->search != SEARCH_SCANNING ||
			    (uint32_t)pid == tg->tgid)
				continue;
			if (proc_holds(pid, w->dev, w->ino, w->access) == 1)
				targets_client_found(t, tg, pid, now_ns);
		}
	}
	if (sc->pos < sc->npids)
		return;
	for (unsigned i = 0; i < sc->nservers; i++) {
		tg = target_find(t, sc->servers[i].tgid);
		if (tg && tg->start_ticks == sc->servers[i].start_ticks && tg->search == SEARCH_SCANNING) {
			tg->search = SEARCH_DONE;
			t->stats.clients_unknown++;
		}
	}
	free(sc->pids);
	sc->pids = NULL;
	sc->nservers = 0;
}

/* --- the pipeline's word ------------------------------------------------------------------ */

static void targets_on_server(void *ctx, uint32_t tgid)
{
	struct targets *t = ctx;
	struct target *tg = target_find(t, tgid), *s, *tmp, *ct;
	uint64_t now = clock_mono_ns();

	if (!tg || tg->released)
		return;
	tg->server = true;
	targets_locate(t, tg, now);
	if (tg->where)
		pipeline_set_where(t->pipe, tg->tgid, tg->where, now);
	targets_find_client(t, tg, 0, now);
	/* A relay is known once both it and its server spoke: their clients' names compare. */
	if (tg->client.pid && (ct = target_find(t, tg->client.pid)) && ct->start_ticks == tg->client.start_ticks)
		targets_maybe_relay(t, ct, tg, now);
	HASH_ITER(hh, t->table, s, tmp)
		if (s != tg && s->client.pid == tg->tgid && s->client.start_ticks == tg->start_ticks)
			targets_maybe_relay(t, tg, s, now);
}

static void targets_on_not_mcp(void *ctx, uint32_t tgid)
{
	struct targets *t = ctx;
	struct target *tg = target_find(t, tgid);

	if (tg && tg->discovered)
		targets_let_go(t, tg, MSD_VERDICT_NOT_MCP, "not_mcp", clock_mono_ns());
}

/* --- records ------------------------------------------------------------------------------ */

static void targets_note_latency(struct targets *t, uint64_t found_ns, uint64_t now_ns)
{
	if (t->nlatencies == LATENCIES_MAX) {
		t->latencies_lost++;
		return;
	}
	t->latencies[t->nlatencies++] = now_ns > found_ns ? (double)(now_ns - found_ns) / 1e9 : 0;
}

static void targets_on_discover(struct targets *t, const struct msd_discover_rec *d)
{
	uint64_t now = clock_mono_ns(), ticks = ns_to_ticks(d->start_ns);
	struct target *tg = target_find(t, d->hdr.tgid);
	struct msd_proc_rec *id;

	if (tg && (tg->start_ticks != ticks || tg->released)) {
		/* Its exit was lost (the pipeline replaces the session too), or it was let go and
		 * exec'd since: what it runs now is looked at afresh. */
		target_remove(t, tg);
		tg = NULL;
	}
	if (!tg && !(tg = target_add(t, d->hdr.tgid, ticks))) {
		targets_deliver(t, &d->hdr);
		return;
	}
	t->stats.discovered++;
	targets_note_latency(t, d->hdr.ts_ns, now);
	tg->discovered = true;
	tg->http = d->flags & MSD_DISCOVER_HTTP;
	tg->found_ns = now;
	tg->in = d->chan[MSD_ROLE_IN];
	tg->out = d->chan[MSD_ROLE_OUT];
	tg->in_peer = d->in_peer_ino;
	tg->out_peer = d->out_peer_ino;
	id = targets_identity(tg, d->hdr.ts_ns, d);
	targets_locate(t, tg, now);
	if (!targets_admits(t, id, tg->where)) {
		free(id);
		targets_let_go(t, tg, MSD_VERDICT_EXCLUDED, "excluded", now);
		return;
	}
	targets_deliver(t, &d->hdr);
	if (id)
		targets_deliver(t, &id->hdr);
	free(id);
	targets_find_client(t, tg, (pid_t)d->ppid, now);
}

static void targets_on_fork(struct targets *t, const struct msd_fork_rec *f)
{
	struct target *parent = target_find(t, f->parent_tgid), *tg;

	if (parent && parent->released) {
		/* Forked before its parent was let go: the kernel followed it. */
		source_live_untrack(t->src, (pid_t)f->hdr.tgid);
		t->stats.records_dropped++;
		return;
	}
	targets_deliver(t, &f->hdr);
	if ((tg = target_find(t, f->hdr.tgid)))
		target_remove(t, tg); /* the exit of an earlier process of that PID was lost */
	if (!(tg = target_add(t, f->hdr.tgid, ns_to_ticks(f->start_ns))))
		return;
	tg->parent = parent ? f->parent_tgid : 0;
	tg->given = parent ? parent->given : !t->opts.all;
	if (parent) {
		/* The kernel gave it its parent's channel. A worker an HTTP server forks serves
		 * its connections: no client process to look for either. */
		tg->search = parent->http ? SEARCH_DONE : SEARCH_NOT_YET;
		tg->in = parent->in;
		tg->out = parent->out;
		tg->in_peer = parent->in_peer;
		tg->out_peer = parent->out_peer;
	}
	targets_identify(t, tg, f->hdr.ts_ns);
}

static void targets_on_exit(struct targets *t, const struct msd_exit_rec *x)
{
	struct target *tg = target_find(t, x->hdr.tgid);
	bool released = tg && tg->released;

	if (released)
		t->stats.records_dropped++;
	else
		targets_deliver(t, &x->hdr);
	if (tg)
		target_remove(t, tg);
}

/* A record of a process this stage has no entry for: the kernel tracks it, but its fork or
 * discovery record was lost (ring buffer full, counted). It gets an entry from /proc: a
 * child of a process in the table (or, attaching, of the given family), or else a process
 * the kernel discovered. False when /proc no longer has it: nobody can say who it was. */
static bool targets_on_unknown(struct targets *t, const struct msd_rec_hdr *rec)
{
	struct msd_discover_rec d = { .hdr = { .kind = MSD_REC_DISCOVER, .abi = MSD_ABI_VERSION, .size = sizeof(d),
					       .ts_ns = rec->ts_ns, .tgid = rec->tgid, .tid = rec->tid } };
	struct proc_sample ps;
	struct target *tg;

	if (proc_sample_named((pid_t)rec->tgid, &ps, d.comm) < 0)
		return false;
	d.ppid = (uint32_t)ps.ppid;
	d.start_ns = ps.start_ticks * (1000000000ull / (uint64_t)proc_clock_ticks());
	if (proc_channel((pid_t)rec->tgid, d.chan) < 0)
		return false;
	if (t->opts.all && !target_find(t, d.ppid)) {
		targets_on_discover(t, &d);
		return true;
	}
	struct msd_fork_rec f = { .hdr = d.hdr, .parent_tgid = d.ppid, .start_ns = d.start_ns };

	f.hdr.kind = MSD_REC_FORK;
	f.hdr.size = sizeof(f);
	memcpy(f.comm, d.comm, sizeof(f.comm));
	targets_on_fork(t, &f);
	if ((tg = target_find(t, rec->tgid)) && !tg->parent) {
		tg->in = d.chan[MSD_ROLE_IN];
		tg->out = d.chan[MSD_ROLE_OUT];
	}
	return true;
}

/* Watching all, a tracked process that /proc no longer names (it exited while its
 * discovery record was lost): who it was decides whether it is watched, so none of it is
 * delivered. An entry marked let go drops the rest of its records until its exit or the
 * grace; the process is counted once. */
static struct target *targets_unidentified(struct targets *t, uint32_t tgid)
{
	struct target *tg = target_add(t, tgid, 0);

	t->stats.unidentified++;
	source_live_untrack(t->src, (pid_t)tgid);
	if (tg) {
		tg->released = "unidentified";
		tg->released_ns = clock_mono_ns();
	}
	return tg;
}

int targets_on_record(void *ctx, const struct msd_rec_hdr *rec)
{
	struct targets *t = ctx;
	struct target *tg;

	switch (rec->kind) {
	case MSD_REC_DISCOVER:
		if (rec->size >= sizeof(struct msd_discover_rec))
			targets_on_discover(t, (const struct msd_discover_rec *)rec);
		return 0;
	case MSD_REC_FORK:
		if (rec->size >= sizeof(struct msd_fork_rec))
			targets_on_fork(t, (const struct msd_fork_rec *)rec);
		return 0;
	case MSD_REC_EXIT:
		if (rec->size >= sizeof(struct msd_exit_rec))
			targets_on_exit(t, (const struct msd_exit_rec *)rec);
		return 0;
	case MSD_REC_EXEC:
	case MSD_REC_DATA:
	case MSD_REC_OOM:
		tg = target_find(t, rec->tgid);
		if (tg && tg->released) {
			t->stats.records_dropped++;
			return 0;
		}
		if (!tg) {
			bool known = targets_on_unknown(t, rec);

			tg = target_find(t, rec->tgid);
			if (!tg && t->opts.all && !known)
				tg = targets_unidentified(t, rec->tgid);
			/* Let go at once (excluded: its discovery record was lost, not its verdict),
			 * or with no entry (watching all: a child of a process let go, or the table
			 * is full). */
			if (tg ? tg->released != NULL : t->opts.all) {
				t->stats.records_dropped++;
				return 0;
			}
		}
		targets_deliver(t, rec);
		if (rec->kind == MSD_REC_EXEC && (tg = target_find(t, rec->tgid)))
			targets_identify(t, tg, rec->ts_ns);
		return 0;
	default:
		targets_deliver(t, rec);
		return 0;
	}
}

/* --- life ------------------------------------------------------------------------------- */

struct targets *targets_new(const struct targets_opts *opts, struct source_live *src, targets_deliver_fn deliver,
			    void *ctx)
{
	struct targets *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->opts = *opts;
	t->src = src;
	t->deliver = deliver;
	t->ctx = ctx;
	return t;
}

void targets_set_pipeline(struct targets *t, struct pipeline *p)
{
	struct pipeline_hooks hooks = { .on_server = targets_on_server, .on_not_mcp = targets_on_not_mcp, .ctx = t };

	t->pipe = p;
	if (p)
		pipeline_set_hooks(p, &hooks);
}

/* A given process, or one of its descendants running now, with the channel of the given
 * one, as the kernel gives it to children forked from now on. */
static int targets_attach_one(struct targets *t, pid_t pid, uint32_t parent, const struct msd_file_id *chan)
{
	struct target *tg = target_find(t, (uint32_t)pid);
	uint64_t start_ns = proc_start_ns(pid);
	int ret;

	if (tg) /* a descendant of an earlier -p: it keeps that one's channel */
		return 0;
	if ((ret = source_live_track(t->src, pid, start_ns, chan)) < 0)
		return ret;
	if (!(tg = target_add(t, (uint32_t)pid, ns_to_ticks(start_ns))))
		return -E2BIG;
	tg->given = true;
	tg->parent = parent;
	tg->in = chan[MSD_ROLE_IN];
	tg->out = chan[MSD_ROLE_OUT];
	targets_identify(t, tg, clock_mono_ns());
	targets_locate(t, tg, clock_mono_ns());
	return 0;
}

struct attach_walk {
	struct targets *t;
	uint32_t root;
	const struct msd_file_id *chan;
};

static void targets_attach_child(void *ctx, pid_t child)
{
	struct attach_walk *w = ctx;

	targets_attach_one(w->t, child, w->root, w->chan);
}

/* watch with selectors: the processes running now that do not pass get their verdict at
 * once, so that their reads are never looked at. Kernel threads read nothing. */
static void targets_prescan(struct targets *t)
{
	pid_t *pids;
	int n;

	if (!t->opts.selectors || !t->opts.selectors->n || (n = proc_list(&pids)) < 0)
		return;
	for (int i = 0; i < n; i++) {
		struct msd_proc_rec *id;

		if (pids[i] == t->opts.self || !(id = proc_identity(pids[i], 0, 0)))
			continue;
		if ((id->exe[0] || id->cmdline_len) &&
		    !targets_admits(t, id,
				    t->opts.attrib ? attrib_lookup(t->opts.attrib, pids[i], id->start_ticks, clock_mono_ns()) :
						     NULL))
			source_live_verdict(t->src, pids[i], id->start_ticks, MSD_VERDICT_EXCLUDED, NULL);
		free(id);
	}
	free(pids);
}

int targets_start(struct targets *t, char *err, size_t errlen)
{
	const struct attrib_record *self;

	if (t->opts.attrib && (self = attrib_lookup(t->opts.attrib, t->opts.self, 0, clock_mono_ns())))
		snprintf(t->self_pod, sizeof(t->self_pod), "%s", self->pod_uid);
	if (t->opts.all) {
		targets_prescan(t);
		return 0;
	}
	/* Track first, then walk the existing children: a fork in between is followed by the
	 * kernel, so nothing falls through. */
	for (unsigned i = 0; i < t->opts.npids; i++) {
		pid_t pid = t->opts.pids[i];
		struct msd_file_id chan[MSD_ROLE__COUNT];
		struct attach_walk w = { .t = t, .root = (uint32_t)pid, .chan = chan };
		int ret;

		if (pid == t->opts.self) {
			snprintf(err, errlen, "pid %d is mcpsonde itself: it never observes itself", (int)pid);
			return -1;
		}
		/* Its channel: the files that are its stdin, stdout and stderr now. */
		if (proc_channel(pid, chan) < 0) {
			snprintf(err, errlen, "no such process: %d", (int)pid);
			return -1;
		}
		if ((ret = targets_attach_one(t, pid, 0, chan)) < 0) {
			snprintf(err, errlen, "cannot track %d: %s", (int)pid, strerror(-ret));
			return -1;
		}
		proc_descendants(pid, targets_attach_child, &w);
	}
	return 0;
}

/* A process found by an HTTP request that has not spoken MCP since: the request showed a
 * sign of it (an event stream's Accept, an Mcp-* header) but no MCP method followed, as
 * from a server of event streams that are not MCP. */
bool targets_http_idle(bool http, bool server, uint64_t found_ns, uint64_t now_ns)
{
	return http && !server && now_ns > found_ns && now_ns - found_ns > TARGETS_HTTP_PROBATION_NS;
}

/* Processes gone without an exit record (they died before their tracking took effect, or
 * the record was lost) go after a grace, in case the record is still on its way; let-go
 * entries go after theirs. */
static void targets_prune(struct targets *t, uint64_t now_ns)
{
	struct target *tg, *tmp;

	HASH_ITER(hh, t->table, tg, tmp) {
		struct proc_sample ps;
		char comm[MSD_COMM_LEN];

		if (tg->released) {
			if (now_ns - tg->released_ns > TARGETS_GRACE_NS)
				target_remove(t, tg);
			continue;
		}
		if (tg->discovered && targets_http_idle(tg->http, tg->server, tg->found_ns, now_ns)) {
			targets_let_go(t, tg, MSD_VERDICT_NOT_MCP, "not_mcp", now_ns);
			continue;
		}
		if (proc_sample_named((pid_t)tg->tgid, &ps, comm) == 0 && ps.start_ticks == tg->start_ticks)
			continue;
		if (!tg->gone_ns) {
			tg->gone_ns = now_ns;
			continue;
		}
		if (now_ns - tg->gone_ns <= TARGETS_GRACE_NS)
			continue;
		source_live_untrack(t->src, (pid_t)tg->tgid);
		if (t->pipe)
			pipeline_release(t->pipe, tg->tgid, "gone", now_ns);
		t->stats.gone++;
		target_remove(t, tg);
	}
}

void targets_tick(struct targets *t, uint64_t now_ns)
{
	targets_scan_step(t, now_ns);
	if (now_ns - t->last_prune_ns < PRUNE_NS)
		return;
	t->last_prune_ns = now_ns;
	targets_prune(t, now_ns);
}

unsigned targets_watched(const struct targets *t)
{
	const struct target *tg;
	unsigned n = 0;

	for (tg = t->table; tg; tg = tg->hh.next)
		n += !tg->released;
	return n;
}

unsigned targets_pids(const struct targets *t, pid_t *out, unsigned max)
{
	const struct target *tg;
	unsigned n = 0;

	for (tg = t->table; tg && n < max; tg = tg->hh.next)
		if (!tg->released)
			out[n++] = (pid_t)tg->tgid;
	return n;
}

const struct attrib_record *targets_where(const struct targets *t, pid_t pid)
{
	const struct target *tg = target_find(t, (uint32_t)pid);

	return tg && !tg->released ? tg->where : NULL;
}

void targets_get_stats(const struct targets *t, struct targets_stats *out)
{
	*out = t->stats;
	out->processes = t->n;
}

unsigned targets_take_latencies(struct targets *t, double *out, unsigned max, uint64_t *more)
{
	unsigned n = t->nlatencies < max ? t->nlatencies : max;

	memcpy(out, t->latencies, n * sizeof(*out));
	*more = t->latencies_lost + (t->nlatencies - n);
	t->nlatencies = 0;
	t->latencies_lost = 0;
	return n;
}

void targets_free(struct targets *t)
{
	struct target *tg, *tmp;

	if (!t)
		return;
	HASH_ITER(hh, t->table, tg, tmp)
		target_remove(t, tg);
	free(t->scan.pids);
	free(t);
}

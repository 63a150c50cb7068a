/* inventory.c -- every MCP server process seen on this machine, running or gone (see
 * inventory.h).
 *
 * A record is a jansson object in the form it is served and saved in, plus the few fields
 * that change with every event (last seen, calls, errors), kept natively and written into
 * the object when the inventory is rendered. Records are found by (pid, start ticks), which
 * every event's session identity carries. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uthash.h>

#include "mcpsonde/event.h"
#include "mcpsonde/inventory.h"
#include "mcpsonde/procfs.h"
#include "mcpsonde/report.h"
#include "mcpsonde/utf8.h"

#define BOOT_ID_LEN 36
#define CHECK_GONE_NS (10ull * 1000000000ull) /* records taken over from an earlier run */

struct inv_key {
	uint32_t pid;
	uint32_t pad;
	uint64_t start_ticks;
};

struct inv_rec {
	UT_hash_handle hh;
	struct inv_key key;
	json_t *obj;
	bool running;
	bool taken_over;   /* running per an earlier run's file: not seen by this one yet */
	uint64_t last_seen_ns; /* real time */
	uint64_t calls, errors;
};

struct inventory {
	struct inventory_opts opts;
	char *path;
	char boot_id[BOOT_ID_LEN + 1];
	struct inv_rec *recs;
	unsigned n;
	uint64_t evicted, refused;
	bool dirty;
	uint64_t last_save_ns, last_check_ns;
	int64_t boot_real_ns; /* CLOCK_REALTIME at boot: start ticks to a date */
};

struct sink_inventory {
	struct sink sink;
	struct inventory *inv;
};

/* --- records ------------------------------------------------------------------------------- */

static void boot_id_read(char *out)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = '\0';
	if (!f)
		return;
	if (!fgets(out, BOOT_ID_LEN + 1, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static json_t *time_json(uint64_t real_ns)
{
	char buf[40];

	event_format_time(real_ns, buf, sizeof(buf));
	return json_string(buf);
}

/* "2026-11-23T19:18:25.123456Z" back to nanoseconds; 0 when it is not that. */
static uint64_t time_parse(const char *s)
{
	struct tm tm = { 0 };
	unsigned us = 0;
	const char *p;
	time_t t;

	if (!s || !(p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) || sscanf(p, ".%6uZ", &us) != 1 ||
	    (t = timegm(&tm)) < 0)
		return 0;
	return (uint64_t)t * 1000000000ull + (uint64_t)us * 1000ull;
}

static void set_str(json_t *o, const char *key, const char *v)
{
	if (v && v[0])
		json_object_set_new(o, key, json_string(v));
}

static json_t *name_version(const char *name, const char *version)
{
	json_t *o = json_object();

	set_str(o, "name", name);
	set_str(o, "version", version);
	return o;
}

static struct inv_rec *rec_find(const struct inventory *inv, uint32_t pid, uint64_t start_ticks)
{
	struct inv_key k = { .pid = pid, .start_ticks = start_ticks };
	struct inv_rec *r;

	HASH_FIND(hh, inv->recs, &k, sizeof(k), r);
	return r;
}

static void rec_free(struct inventory *inv, struct inv_rec *r)
{
	HASH_DEL(inv->recs, r);
	inv->n--;
	json_decref(r->obj);
	free(r);
}

/* Room for one more: the exited record last seen the longest ago goes. */
static bool rec_make_room(struct inventory *inv)
{
	struct inv_rec *r, *tmp, *oldest = NULL;

	if (inv->n < inv->opts.max_records)
		return true;
	HASH_ITER(hh, inv->recs, r, tmp)
		if (!r->running && (!oldest || r->last_seen_ns < oldest->last_seen_ns))
			oldest = r;
	if (!oldest) {
		inv->refused++;
		return false;
	}
	rec_free(inv, oldest);
	inv->evicted++;
	return true;
}

static struct inv_rec *rec_add(struct inventory *inv, uint32_t pid, uint64_t start_ticks, json_t *obj)
{
	struct inv_rec *r;

	if (!rec_make_room(inv) || !(r = calloc(1, sizeof(*r)))) {
		json_decref(obj);
		return NULL;
	}
	r->key.pid = pid;
	r->key.start_ticks = start_ticks;
	r->obj = obj;
	HASH_ADD(hh, inv->recs, key, sizeof(r->key), r);
	inv->n++;
	return r;
}

/* The record of a server whose session is announced: created at its first EV_SESSION. */
static struct inv_rec *rec_of(struct inventory *inv, const struct sonde_event *ev)
{
	const struct session_identity *id = ev->session;
	struct inv_rec *r = rec_find(inv, id->pid, id->start_ticks);
	json_t *o;

	if (r || ev->type != EV_SESSION)
		return r;
	o = json_object();
	json_object_set_new(o, "pid", json_integer(id->pid));
	json_object_set_new(o, "start_ticks", json_integer((json_int_t)id->start_ticks));
	if (inv->opts.live) {
		set_str(o, "boot_id", inv->boot_id);
		if (id->start_ticks)
			json_object_set_new(o, "started",
					    time_json((uint64_t)(inv->boot_real_ns +
								 (int64_t)(id->start_ticks * (1000000000ull /
											     (uint64_t)proc_clock_ticks())))));
	}
	json_object_set_new(o, "first_seen", time_json(ev->real_ns));
	if (!(r = rec_add(inv, id->pid, id->start_ticks, o)))
		return NULL;
	r->running = true;
	return r;
}

/* What the session knows of it now: names, program, client, relay, where it runs. */
static void rec_learn(struct inv_rec *r, const struct session_identity *id)
{
	json_t *o = r->obj, *res;

	json_object_set_new(o, "found", json_string(id->discovered ? "discovered" : "attached"));
	set_str(o, "comm", id->comm);
	set_str(o, "exe", id->exe);
	set_str(o, "cmdline", id->cmdline);
	set_str(o, "program", id->program);
	if (id->server_name || id->server_version)
		json_object_set_new(o, "server_info", name_version(id->server_name, id->server_version));
	set_str(o, "protocol_version", id->protocol_version);
	if (id->client_name || id->client_version)
		json_object_set_new(o, "client", name_version(id->client_name, id->client_version));
	if (id->client_process.pid)
		json_object_set_new(o, "client_process", proc_ref_json(&id->client_process, id->where));
	if (id->relay.pid)
		json_object_set_new(o, "relay", proc_ref_json(&id->relay, id->where));
	set_str(o, "stdio", id->stdio);
	if ((res = event_resource_json(id->where)))
		json_object_set_new(o, "resource", res);
}

/* FNV-1a over the tools array written canonically (keys sorted): the same catalog gives the
 * same digest, whatever the order of its keys on the wire. */
static void rec_tools(struct inv_rec *r, const struct ev_tools *t)
{
	char *text = t->tools ? json_dumps(t->tools, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	uint64_t h = 0xcbf29ce484222325ull;
	json_t *o = json_object();
	char digest[24];

	for (const char *p = text; p && *p; p++)
		h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
	free(text);
	snprintf(digest, sizeof(digest), "%016llx", (unsigned long long)h);
	json_object_set_new(o, "count", json_integer(t->count));
	json_object_set_new(o, "digest", json_string(digest));
	if (t->truncated)
		json_object_set_new(o, "truncated", json_true());
	json_object_set_new(r->obj, "tools", o);
}

static void rec_exit(struct inv_rec *r, const struct sonde_event *ev)
{
	json_t *x = json_object();
	char sig[32];

	if (ev->type == EV_EXIT) {
		if (ev->exit.signal)
			json_object_set_new(x, "signal", json_string(event_signal_name(ev->exit.signal, sig, sizeof(sig))));
		else
			json_object_set_new(x, "exit_code", json_integer(ev->exit.exit_code));
		json_object_set_new(x, "reason", json_string(ev->exit.reason));
		json_object_set_new(x, "normal", json_boolean(ev->exit.normal));
		if (ev->exit.pending_calls)
			json_object_set_new(x, "pending_calls", json_integer(ev->exit.pending_calls));
	} else {
		json_object_set_new(x, "reason", json_string("unknown")); /* gone unseen */
	}
	json_object_set_new(x, "at", time_json(ev->real_ns));
	json_object_set_new(r->obj, "exit", x);
	r->running = false;
}

static void inventory_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct inventory *inv = ((struct sink_inventory *)s)->inv;
	const struct session_identity *id = ev->session;
	struct inv_rec *r;

	if (!id || !id->speaks_mcp || !(r = rec_of(inv, ev)))
		return;
	r->last_seen_ns = ev->real_ns;
	r->taken_over = false;
	inv->dirty = true;
	switch (ev->type) {
	case EV_SESSION:
		r->running = true;
		json_object_del(r->obj, "exit");
		rec_learn(r, id);
		break;
	case EV_TOOLS_LIST:
		rec_tools(r, &ev->tools);
		break;
	case EV_CALL:
		/* Calls the server handled, once each: an exchange of a longer call is not one. */
		if (ev->call.direction != DIR_CLIENT_TO_SERVER || ev->call.status == CALL_INPUT_REQUIRED ||
		    ev->call.status == CALL_TASK)
			break;
		r->calls++;
		r->errors += ev->call.status == CALL_ERROR || ev->call.status == CALL_TOOL_ERROR;
		break;
	case EV_EXIT:
		rec_learn(r, id);
		rec_exit(r, ev);
		break;
	case EV_UNTRACKED:
		rec_exit(r, ev);
		break;
	default:
		break;
	}
}

/* --- the document -------------------------------------------------------------------------- */

static int rec_cmp(const void *a, const void *b)
{
	const struct inv_rec *x = *(struct inv_rec *const *)a, *y = *(struct inv_rec *const *)b;

	return x->last_seen_ns < y->last_seen_ns ? 1 : x->last_seen_ns > y->last_seen_ns ? -1 : 0;
}

static json_t *inventory_document(const struct inventory *inv)
{
	json_t *doc = json_object(), *arr = json_array();
	struct inv_rec **sorted = calloc(inv->n ? inv->n : 1, sizeof(*sorted)), *r;
	unsigned n = 0;

	for (r = inv->recs; r && sorted; r = r->hh.next)
		sorted[n++] = r;
	if (sorted)
		qsort(sorted, n, sizeof(*sorted), rec_cmp); /* most recently seen first */
	for (unsigned i = 0; i < n; i++) {
		r = sorted[i];
		json_object_set_new(r->obj, "state", json_string(r->running ? "running" : "exited"));
		json_object_set_new(r->obj, "last_seen", time_json(r->last_seen_ns));
		json_object_set_new(r->obj, "calls", json_integer((json_int_t)r->calls));
		json_object_set_new(r->obj, "errors", json_integer((json_int_t)r->errors));
		json_array_append(arr, r->obj);
	}
	free(sorted);
	json_object_set_new(doc, "mcpsonde_inventory", json_integer(1));
	if (inv->boot_id[0])
		json_object_set_new(doc, "boot_id", json_string(inv->boot_id));
	json_object_set_new(doc, "evicted", json_integer((json_int_t)inv->evicted));
	json_object_set_new(doc, "refused", json_integer((json_int_t)inv->refused));
	json_object_set_new(doc, "servers", arr);
	return doc;
}

char *inventory_render(const struct inventory *inv, size_t *len)
{
	json_t *doc = inventory_document(inv);
	char *text = json_dumps(doc, EVENT_JSON_FLAGS);

	json_decref(doc);
	if (text && len)
		*len = strlen(text);
	return text;
}

/* servers.json through a temporary file and rename(): a reader (mcpsonde servers) sees the
 * old document or the new one, never a torn one, and a crash leaves one of them. */
static int inventory_save(struct inventory *inv)
{
	char tmp[4096];
	size_t len = 0, off = 0;
	char *text;
	int fd, ret = -1;

	if (!inv->path || !inv->dirty)
		return 0;
	if (!(text = inventory_render(inv, &len)))
		return -1;
	snprintf(tmp, sizeof(tmp), "%s/.servers.json.XXXXXX", inv->opts.state_dir);
	fd = mkstemp(tmp); /* 0600 from creation: command lines may hold what they should not */
	if (fd < 0) {
		fprintf(stderr, "mcpsonde: inventory %s: %s\n", tmp, strerror(errno));
		free(text);
		return -1;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	if (off == len && write(fd, "\n", 1) == 1 && fsync(fd) == 0 && close(fd) == 0) {
		fd = -1;
		if (rename(tmp, inv->path) == 0) {
			ret = 0;
			inv->dirty = false;
		}
	}
	if (ret < 0) {
		fprintf(stderr, "mcpsonde: inventory %s: %s\n", inv->path, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
	}
	free(text);
	return ret;
}

/* --- reading back ------------------------------------------------------------------------ */

/* The members a record may have, and their types: anything else in a file is dropped. */
static const struct {
	const char *key;
	json_type type;
} rec_members[] = {
	{ "pid", JSON_INTEGER },	  { "start_ticks", JSON_INTEGER }, { "boot_id", JSON_STRING },
	{ "started", JSON_STRING },	  { "state", JSON_STRING },	   { "found", JSON_STRING },
	{ "comm", JSON_STRING },	  { "exe", JSON_STRING },	   { "cmdline", JSON_STRING },
	{ "program", JSON_STRING },	  { "server_info", JSON_OBJECT },  { "protocol_version", JSON_STRING },
	{ "client", JSON_OBJECT },	  { "client_process", JSON_OBJECT }, { "relay", JSON_OBJECT },
	{ "stdio", JSON_STRING },	  { "first_seen", JSON_STRING },   { "last_seen", JSON_STRING },
	{ "tools", JSON_OBJECT },	  { "calls", JSON_INTEGER },	   { "errors", JSON_INTEGER },
	{ "exit", JSON_OBJECT },	  { "resource", JSON_OBJECT },
};

/* A record from a file, with only the known members of the right types; NULL when it lacks
 * its identity. */
static json_t *rec_clean(const json_t *in)
{
	json_t *o;

	if (!json_is_object(in) || !json_is_integer(json_object_get(in, "pid")) ||
	    json_integer_value(json_object_get(in, "pid")) <= 0 ||
	    !json_is_integer(json_object_get(in, "start_ticks")) ||
	    json_integer_value(json_object_get(in, "start_ticks")) < 0)
		return NULL;
	o = json_object();
	for (size_t i = 0; i < sizeof(rec_members) / sizeof(rec_members[0]); i++) {
		json_t *v = json_object_get(in, rec_members[i].key);

		if (v && json_typeof(v) == rec_members[i].type)
			json_object_set(o, rec_members[i].key, v);
	}
	return o;
}

static json_t *inventory_read(const char *path, char *err, size_t errlen)
{
	json_error_t jerr;
	struct stat st;
	json_t *doc;
	FILE *f;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return json_object(); /* none yet */
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > INVENTORY_FILE_MAX) {
		snprintf(err, errlen, "%s: not a regular file of at most %u MiB", path, INVENTORY_FILE_MAX >> 20);
		close(fd);
		return NULL;
	}
	f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!doc || !json_is_object(doc) || !json_is_integer(json_object_get(doc, "mcpsonde_inventory")) ||
	    !json_is_array(json_object_get(doc, "servers"))) {
		snprintf(err, errlen, "%s: not an mcpsonde inventory%s%s", path, doc ? "" : ": ", doc ? "" : jerr.text);
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static uint64_t json_count(const json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));

	return v > 0 ? (uint64_t)v : 0;
}

/* Takes over what an earlier run saved. A server it left running is still running only if
 * this boot's process of that pid was started then. */
static void inventory_load(struct inventory *inv, const json_t *doc)
{
	const json_t *servers = json_object_get(doc, "servers"), *in;
	size_t i;

	inv->evicted = json_count(doc, "evicted");
	inv->refused = json_count(doc, "refused");
	json_array_foreach (servers, i, in) {
		json_t *o = rec_clean(in);
		uint32_t pid;
		uint64_t start;
		const char *boot, *state;
		struct inv_rec *r;

		if (!o)
			continue;
		pid = (uint32_t)json_integer_value(json_object_get(o, "pid"));
		start = (uint64_t)json_integer_value(json_object_get(o, "start_ticks"));
		boot = json_string_value(json_object_get(o, "boot_id"));
		state = json_string_value(json_object_get(o, "state"));
		if (rec_find(inv, pid, start) || !(r = rec_add(inv, pid, start, o)))
			continue;
		r->last_seen_ns = time_parse(json_string_value(json_object_get(o, "last_seen")));
		r->calls = json_count(o, "calls");
		r->errors = json_count(o, "errors");
		r->running = state && strcmp(state, "running") == 0;
		if (r->running && inv->opts.live && (!boot || strcmp(boot, inv->boot_id) != 0)) {
			json_t *x = json_object();
			json_object_set_new(x, "reason", json_string("unknown"));
			json_object_set_new(r->obj, "exit", x);
			r->running = false;
		}
		r->taken_over = r->running;
	}
}

/* Records taken over as running whose process is gone: exited while nobody watched. */
static void inventory_check_gone(struct inventory *inv, uint64_t real_ns)
{
	struct inv_rec *r;

	for (r = inv->recs; r; r = r->hh.next) {
		struct proc_sample ps;

		if (!r->taken_over || (proc_sample((pid_t)r->key.pid, &ps) == 0 && ps.start_ticks == r->key.start_ticks))
			continue;
		struct sonde_event ev = { .type = EV_UNTRACKED, .real_ns = real_ns };
		rec_exit(r, &ev);
		r->taken_over = false;
		inv->dirty = true;
	}
}

/* --- life ------------------------------------------------------------------------------ */

struct inventory *inventory_open(const struct inventory_opts *opts, char *err, size_t errlen)
{
	struct inventory *inv = calloc(1, sizeof(*inv));
	struct timespec boot, real;
	json_t *doc;

	if (!inv) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	inv->opts = *opts;
	if (!inv->opts.max_records)
		inv->opts.max_records = INVENTORY_MAX_DEFAULT;
	if (opts->live) {
		boot_id_read(inv->boot_id);
		clock_gettime(CLOCK_BOOTTIME, &boot);
		clock_gettime(CLOCK_REALTIME, &real);
		inv->boot_real_ns = ((int64_t)real.tv_sec - boot.tv_sec) * 1000000000ll + (real.tv_nsec - boot.tv_nsec);
	}
	if (!opts->state_dir)
		return inv;
	if (report_dir_prepare(opts->state_dir, err, errlen) < 0 ||
	    asprintf(&inv->path, "%s/%s", opts->state_dir, INVENTORY_FILE) < 0) {
		inventory_close(inv);
		return NULL;
	}
	if (!(doc = inventory_read(inv->path, err, errlen))) {
		char bad[4200];

		/* Not an inventory: kept for a person to look at, and a new one begun. */
		snprintf(bad, sizeof(bad), "%s.bad", inv->path);
		if (access(inv->path, F_OK) < 0 || rename(inv->path, bad) < 0) {
			inventory_close(inv);
			return NULL;
		}
		fprintf(stderr, "mcpsonde: %s; set aside as %s, starting a new inventory\n", err, bad);
		doc = json_object();
	}
	inventory_load(inv, doc);
	json_decref(doc);
	if (opts->live) /* else /proc is not where the servers ran */
		inventory_check_gone(inv, (uint64_t)clock_mono_ns() + (uint64_t)clock_mono_to_real_ns());
	return inv;
}

void inventory_close(struct inventory *inv)
{
	struct inv_rec *r, *tmp;

	if (!inv)
		return;
	inventory_save(inv);
	HASH_ITER(hh, inv->recs, r, tmp)
		rec_free(inv, r);
	free(inv->path);
	free(inv);
}

void inventory_counts(const struct inventory *inv, struct inventory_counts *out)
{
	memset(out, 0, sizeof(*out));
	for (const struct inv_rec *r = inv->recs; r; r = r->hh.next)
		r->running ? out->running++ : out->exited++;
	out->evicted = inv->evicted;
	out->refused = inv->refused;
}

static const char *obj_str(const json_t *o, const char *key, const char *sub)
{
	const json_t *v = json_object_get(o, key);

	return json_string_value(sub ? json_object_get(v, sub) : v);
}

void inventory_each_running(const struct inventory *inv, void (*fn)(void *ctx, const struct inventory_view *v),
			    void *ctx)
{
	for (const struct inv_rec *r = inv->recs; r; r = r->hh.next) {
		struct inventory_view v = { .pid = r->key.pid, .start_ticks = r->key.start_ticks };
		const char *key;
		json_t *val;

		if (!r->running)
			continue;
		v.server = obj_str(r->obj, "server_info", "name");
		if (!v.server)
			v.server = obj_str(r->obj, "program", NULL);
		if (!v.server)
			v.server = obj_str(r->obj, "comm", NULL);
		v.server_version = obj_str(r->obj, "server_info", "version");
		v.protocol_version = obj_str(r->obj, "protocol_version", NULL);
		v.client_name = obj_str(r->obj, "client", "name");
		v.found = obj_str(r->obj, "found", NULL);
		json_object_foreach (json_object_get(r->obj, "resource"), key, val)
			if (json_is_string(val) && v.nresource < ATTRIB_ATTRS_MAX)
				v.resource[v.nresource++] = (struct attrib_attr){ key, json_string_value(val) };
		fn(ctx, &v);
	}
}

static void sink_inventory_tick(struct sink *s, uint64_t now_ns)
{
	struct inventory *inv = ((struct sink_inventory *)s)->inv;

	if (inv->opts.live && now_ns - inv->last_check_ns > CHECK_GONE_NS) {
		inv->last_check_ns = now_ns;
		inventory_check_gone(inv, now_ns + (uint64_t)clock_mono_to_real_ns());
	}
	if (now_ns - inv->last_save_ns < INVENTORY_SAVE_NS)
		return;
	inv->last_save_ns = now_ns;
	inventory_save(inv);
}

static void sink_inventory_close(struct sink *s)
{
	free(s);
}

struct sink *sink_inventory_new(struct inventory *inv)
{
	struct sink_inventory *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->sink.name = "inventory";
	s->sink.on_event = inventory_on_event;
	s->sink.on_tick = sink_inventory_tick;
	s->sink.close = sink_inventory_close;
	s->inv = inv;
	return &s->sink;
}

/* --- mcpsonde servers ---------------------------------------------------------------------- */

/* One column of the table: what the file says, made inert for the terminal. */
static void print_cell(FILE *out, const char *s, int width)
{
	char buf[256];

	utf8_escape_controls(s ? s : "-", s ? strlen(s) : 1, buf, sizeof(buf));
	fprintf(out, "%-*.*s ", width, width, buf);
}

static void print_exit(FILE *out, const json_t *x)
{
	const char *sig = json_string_value(json_object_get(x, "signal"));
	const char *reason = json_string_value(json_object_get(x, "reason"));
	char buf[64];

	if (!x) {
		fputc('-', out);
		return;
	}
	if (sig)
		snprintf(buf, sizeof(buf), "%s", sig);
	else if (json_is_integer(json_object_get(x, "exit_code")))
		snprintf(buf, sizeof(buf), "code %lld", (long long)json_integer_value(json_object_get(x, "exit_code")));
	else
		buf[0] = '\0';
	print_cell(out, buf[0] ? buf : NULL, 8);
	utf8_fputs_safe(reason ? reason : "", out);
}

int inventory_print(const char *state_dir, bool json, FILE *out, char *err, size_t errlen)
{
	char path[4096];
	const json_t *r;
	json_t *doc;
	size_t i;

	snprintf(path, sizeof(path), "%s/%s", state_dir, INVENTORY_FILE);
	if (access(path, F_OK) < 0) {
		snprintf(err, errlen, "no inventory in %s (mcpsonde watch --state-dir %s writes one)", state_dir, state_dir);
		return -1;
	}
	if (!(doc = inventory_read(path, err, errlen)))
		return -1;
	if (json) {
		json_t *clean = json_array();

		json_array_foreach (json_object_get(doc, "servers"), i, r) {
			json_t *o = rec_clean(r);
			if (o)
				json_array_append_new(clean, o);
		}
		json_object_set_new(doc, "servers", clean);
		json_dumpf(doc, out, EVENT_JSON_FLAGS);
		fputc('\n', out);
		json_decref(doc);
		return 0;
	}
	fprintf(out, "%-8s %-8s %-28s %-10s %-20s %-10s %-27s %7s %7s %6s  %-40s %s\n", "PID", "STATE", "SERVER",
		"VERSION", "CLIENT", "FOUND", "LAST SEEN", "CALLS", "ERRORS", "TOOLS", "POD", "EXIT");
	json_array_foreach (json_object_get(doc, "servers"), i, r) {
		json_t *o = rec_clean(r);
		const char *name, *ccomm, *pod;
		char client[64], where[3 * (ATTRIB_NAME_MAX + 1)];

		if (!o)
			continue;
		name = obj_str(o, "server_info", "name");
		if (!name)
			name = obj_str(o, "program", NULL);
		ccomm = obj_str(o, "client_process", "comm");
		if (ccomm)
			snprintf(client, sizeof(client), "%s[%lld]", ccomm,
				 (long long)json_integer_value(json_object_get(json_object_get(o, "client_process"), "pid")));
		fprintf(out, "%-8lld ", (long long)json_integer_value(json_object_get(o, "pid")));
		print_cell(out, obj_str(o, "state", NULL), 8);
		print_cell(out, name ? name : obj_str(o, "comm", NULL), 28);
		print_cell(out, obj_str(o, "server_info", "version"), 10);
		print_cell(out, ccomm ? client : NULL, 20);
		if ((pod = obj_str(o, "resource", "k8s.pod.name")))
			snprintf(where, sizeof(where), "%s/%s/%s", obj_str(o, "resource", "k8s.namespace.name") ?: "",
				 pod, obj_str(o, "resource", "k8s.container.name") ?: "");
		print_cell(out, obj_str(o, "found", NULL), 10);
		print_cell(out, obj_str(o, "last_seen", NULL), 27);
		fprintf(out, "%7llu %7llu %6lld  ", (unsigned long long)json_count(o, "calls"),
			(unsigned long long)json_count(o, "errors"),
			(long long)json_integer_value(json_object_get(json_object_get(o, "tools"), "count")));
		print_cell(out, pod ? where : NULL, 40);
		print_exit(out, json_object_get(o, "exit"));
		fputc('\n', out);
		json_decref(o);
	}
	if (json_count(doc, "evicted") || json_count(doc, "refused"))
		fprintf(out, "(%llu older records evicted, %llu not kept: the inventory was full)\n",
			(unsigned long long)json_count(doc, "evicted"), (unsigned long long)json_count(doc, "refused"));
	json_decref(doc);
	return 0;
}

/* test_inventory.c -- the inventory of server processes: what a record holds, its bound,
 * persistence (atomic, 0600, read back), and a state file that is not ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "mcpsonde/event.h"
#include "mcpsonde/inventory.h"

#define SEC 1000000000ull
#define T0 (1800000000ull * SEC) /* real time */

struct fixture {
	char dir[64];
	struct inventory *inv;
	struct sink *sink;
	uint64_t now;
};

static struct inventory *open_in(const char *dir, unsigned max, bool live)
{
	struct inventory_opts o = { .state_dir = dir, .max_records = max, .live = live };
	char err[256] = "";
	struct inventory *inv = inventory_open(&o, err, sizeof(err));

	if (!inv)
		fail_msg("inventory_open: %s", err);
	return inv;
}

static void fixture_init(struct fixture *f, unsigned max)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/mcpsonde-test-inv-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->inv = open_in(f->dir, max, false);
	f->sink = sink_inventory_new(f->inv);
	f->now = T0;
}

static void fixture_close(struct fixture *f)
{
	if (f->sink)
		f->sink->close(f->sink);
	inventory_close(f->inv);
	f->sink = NULL;
	f->inv = NULL;
}

static void fixture_free(struct fixture *f)
{
	char cmd[128];

	fixture_close(f);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
}

static void server_id(struct session_identity *id, uint32_t pid, const char *name)
{
	memset(id, 0, sizeof(*id));
	id->pid = pid;
	id->start_ticks = 1000 + pid;
	snprintf(id->comm, sizeof(id->comm), "node");
	id->cmdline = "node server.js stdio";
	id->exe = "/usr/bin/node";
	id->server_name = (char *)name;
	id->server_version = "1.0";
	id->client_name = "agent";
	id->protocol_version = "2025-11-25";
	id->stdio = "socket";
	id->speaks_mcp = true;
	id->discovered = true;
	id->client_process = (struct proc_ref){ .pid = 77, .start_ticks = 7, .comm = "agent", .exe = "/usr/bin/agent" };
}

static void emit(struct fixture *f, const struct session_identity *id, struct sonde_event *ev)
{
	f->now += SEC;
	ev->session = id;
	ev->pid = id->pid;
	ev->real_ns = f->now;
	f->sink->on_event(f->sink, ev);
}

static void session(struct fixture *f, const struct session_identity *id)
{
	struct sonde_event ev = { .type = EV_SESSION };

	emit(f, id, &ev);
}

static void call(struct fixture *f, const struct session_identity *id, enum call_status st)
{
	struct sonde_event ev = { .type = EV_CALL };

	ev.call.method = "tools/call";
	ev.call.status = st;
	ev.call.direction = DIR_CLIENT_TO_SERVER;
	emit(f, id, &ev);
}

static void tools_list(struct fixture *f, const struct session_identity *id, const char *tools_json)
{
	struct sonde_event ev = { .type = EV_TOOLS_LIST };
	json_t *tools = json_loads(tools_json, 0, NULL);

	ev.tools.tools = tools;
	ev.tools.count = (unsigned)json_array_size(tools);
	emit(f, id, &ev);
	json_decref(tools);
}

static void exit_normally(struct fixture *f, const struct session_identity *id)
{
	struct sonde_event ev = { .type = EV_EXIT };

	ev.exit.reason = "shutdown";
	ev.exit.normal = true;
	emit(f, id, &ev);
}

static json_t *document(const struct inventory *inv)
{
	size_t len;
	char *text = inventory_render(inv, &len);
	json_t *doc;

	assert_non_null(text);
	doc = json_loadb(text, len, 0, NULL);
	free(text);
	assert_non_null(doc);
	return doc;
}

static json_t *record(json_t *doc, uint32_t pid)
{
	size_t i;
	json_t *r;

	json_array_foreach (json_object_get(doc, "servers"), i, r)
		if (json_integer_value(json_object_get(r, "pid")) == pid)
			return r;
	return NULL;
}

static const char *sget(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static long long iget(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static char *print(const char *dir, bool json)
{
	char *text = NULL, err[256] = "";
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);

	assert_int_equal(inventory_print(dir, json, out, err, sizeof(err)), 0);
	fclose(out);
	return text;
}

static void test_record_and_restart(void **state)
{
	struct fixture f;
	struct session_identity a, b;
	struct attrib_record pod = { .role = ATTRIB_ROLE_WORKLOAD, .runtime = ATTRIB_RUNTIME_CONTAINERD,
				     .container_id = "8bd9eccefffa", .pod_uid = "0f5e0000-1111-2222-3333-444455556666",
				     .k8s_namespace = "team-a", .pod_name = "agent-7f9c", .k8s_container_name = "agent",
				     .node_name = "node-3" };
	struct attrib_record agent = pod;
	json_t *doc, *r;
	struct stat st;
	char path[128], *text;
	const char *digest;

	(void)state;
	fixture_init(&f, 0);
	server_id(&a, 4242, "everything");
	server_id(&b, 5353, "memory");
	b.where = &pod;
	/* its client runs in another pod */
	snprintf(pod.pod_name, sizeof(pod.pod_name), "weather-5d8b");
	snprintf(pod.k8s_container_name, sizeof(pod.k8s_container_name), "weather");
	snprintf(pod.container_id, sizeof(pod.container_id), "c0ffee0a1b2c");
	b.client_process.where = &agent;
	session(&f, &a);
	tools_list(&f, &a, "[{\"name\":\"echo\",\"inputSchema\":{\"type\":\"object\"}}]");
	call(&f, &a, CALL_OK);
	call(&f, &a, CALL_TOOL_ERROR);
	call(&f, &a, CALL_INPUT_REQUIRED); /* one exchange of a longer call: not a call */
	session(&f, &b);
	/* the same catalog, keys in another order: the same digest */
	tools_list(&f, &b, "[{\"inputSchema\":{\"type\":\"object\"},\"name\":\"echo\"}]");
	exit_normally(&f, &a);

	doc = document(f.inv);
	r = record(doc, 4242);
	assert_non_null(r);
	assert_int_equal(iget(r, "start_ticks"), 5242);
	assert_string_equal(sget(r, "state"), "exited");
	assert_string_equal(sget(r, "found"), "discovered");
	assert_string_equal(sget(json_object_get(r, "server_info"), "name"), "everything");
	assert_int_equal(iget(json_object_get(r, "client_process"), "pid"), 77);
	assert_int_equal(iget(r, "calls"), 2);
	assert_int_equal(iget(r, "errors"), 1);
	assert_int_equal(iget(json_object_get(r, "tools"), "count"), 1);
	assert_true(json_is_true(json_object_get(json_object_get(r, "exit"), "normal")));
	digest = sget(json_object_get(r, "tools"), "digest");
	assert_int_equal(strlen(digest), 16);
	assert_string_equal(digest, sget(json_object_get(record(doc, 5353), "tools"), "digest"));
	assert_string_equal(sget(record(doc, 5353), "state"), "running");
	assert_null(json_object_get(r, "resource")); /* a host process */
	r = json_object_get(record(doc, 5353), "resource");
	assert_string_equal(sget(r, "k8s.namespace.name"), "team-a");
	assert_string_equal(sget(r, "k8s.pod.name"), "weather-5d8b");
	assert_string_equal(sget(r, "k8s.pod.uid"), pod.pod_uid);
	assert_string_equal(sget(r, "k8s.container.name"), "weather");
	assert_string_equal(sget(r, "k8s.node.name"), "node-3");
	assert_string_equal(sget(r, "container.id"), "c0ffee0a1b2c");
	assert_string_equal(sget(r, "container.runtime"), "containerd");
	r = json_object_get(json_object_get(record(doc, 5353), "client_process"), "resource");
	assert_string_equal(sget(r, "k8s.pod.name"), "agent-7f9c");
	assert_string_equal(sget(r, "k8s.container.name"), "agent");
	assert_string_equal(sget(r, "container.id"), "8bd9eccefffa");
	assert_null(json_object_get(json_object_get(record(doc, 4242), "client_process"), "resource"));
	r = record(doc, 4242);
	/* most recently seen first */
	assert_int_equal(iget(json_array_get(json_object_get(doc, "servers"), 0), "pid"), 4242);
	json_decref(doc);

	/* Saved at close, 0600, and read back by the next run. */
	fixture_close(&f);
	snprintf(path, sizeof(path), "%s/" INVENTORY_FILE, f.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	f.inv = open_in(f.dir, 0, false);
	doc = document(f.inv);
	r = record(doc, 4242);
	assert_int_equal(iget(r, "calls"), 2);
	assert_int_equal(iget(r, "errors"), 1);
	assert_string_equal(sget(record(doc, 5353), "state"), "running");
	assert_string_equal(sget(json_object_get(record(doc, 5353), "resource"), "k8s.pod.name"), "weather-5d8b");
	assert_string_equal(sget(json_object_get(json_object_get(record(doc, 5353), "client_process"), "resource"),
				 "k8s.pod.name"),
			    "agent-7f9c");
	json_decref(doc);

	text = print(f.dir, false);
	assert_non_null(strstr(text, " team-a/weather-5d8b/weather "));
	assert_non_null(strstr(text, "4242     exited   everything"));
	assert_non_null(strstr(text, "agent[77]"));
	free(text);
	text = print(f.dir, true);
	doc = json_loads(text, 0, NULL);
	assert_int_equal(json_array_size(json_object_get(doc, "servers")), 2);
	json_decref(doc);
	free(text);
	fixture_free(&f);
}

/* At most max records: a new one evicts the exited record seen the longest ago; when all
 * are running servers the new one is refused. Both counted, and persisted. */
static void test_bounded(void **state)
{
	struct fixture f;
	struct session_identity ids[5];
	struct inventory_counts c;
	json_t *doc;

	(void)state;
	fixture_init(&f, 3);
	for (int i = 0; i < 3; i++) {
		server_id(&ids[i], 100 + i, "s");
		session(&f, &ids[i]);
	}
	exit_normally(&f, &ids[1]);
	exit_normally(&f, &ids[0]); /* exited last: seen more recently than 101 */
	server_id(&ids[3], 103, "s");
	session(&f, &ids[3]);
	inventory_counts(f.inv, &c);
	assert_int_equal(c.running + c.exited, 3);
	assert_int_equal(c.evicted, 1);
	doc = document(f.inv);
	assert_null(record(doc, 101));
	assert_non_null(record(doc, 100));
	json_decref(doc);

	/* 100 goes too; then three running servers, and no room */
	server_id(&ids[4], 104, "s");
	session(&f, &ids[4]);
	server_id(&ids[0], 105, "s");
	session(&f, &ids[0]);
	inventory_counts(f.inv, &c);
	assert_int_equal(c.running, 3);
	assert_int_equal(c.evicted, 2);
	assert_int_equal(c.refused, 1);
	doc = document(f.inv);
	assert_null(record(doc, 105));
	json_decref(doc);
	fixture_close(&f);
	f.inv = open_in(f.dir, 3, false);
	inventory_counts(f.inv, &c);
	assert_int_equal(c.evicted, 2);
	assert_int_equal(c.refused, 1);
	fixture_free(&f);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* The state file is untrusted: members of the wrong type or unknown are dropped, records
 * without an identity skipped; a file that is no inventory is set aside, not trusted. A
 * server another boot left running is not running now. */
static void test_untrusted_file(void **state)
{
	struct fixture f;
	json_t *doc, *r;
	struct inventory_counts c;
	char path[128], err[256] = "";

	(void)state;
	fixture_init(&f, 0);
	fixture_close(&f);
	write_file(f.dir, INVENTORY_FILE,
		   "{\"mcpsonde_inventory\":1,\"evicted\":-5,\"servers\":["
		   "{\"pid\":10,\"start_ticks\":1,\"comm\":7,\"calls\":3,\"evil\":\"x\",\"state\":\"exited\"},"
		   "{\"pid\":-1,\"start_ticks\":1},{\"start_ticks\":2},\"junk\","
		   "{\"pid\":11,\"start_ticks\":2,\"state\":\"running\",\"boot_id\":\"another-boot\"}]}");
	f.inv = open_in(f.dir, 0, true);
	doc = document(f.inv);
	assert_int_equal(json_array_size(json_object_get(doc, "servers")), 2);
	assert_int_equal(iget(doc, "evicted"), 0);
	r = record(doc, 10);
	assert_null(json_object_get(r, "comm"));
	assert_null(json_object_get(r, "evil"));
	assert_int_equal(iget(r, "calls"), 3);
	r = record(doc, 11);
	assert_string_equal(sget(r, "state"), "exited");
	assert_string_equal(sget(json_object_get(r, "exit"), "reason"), "unknown");
	json_decref(doc);
	inventory_close(f.inv);

	write_file(f.dir, INVENTORY_FILE, "{\"servers\": not json");
	assert_int_not_equal(inventory_print(f.dir, true, stdout, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not an mcpsonde inventory"));
	f.inv = open_in(f.dir, 0, false); /* watch starts anyway, with a new inventory */
	inventory_counts(f.inv, &c);
	assert_int_equal(c.running + c.exited, 0);
	snprintf(path, sizeof(path), "%s/" INVENTORY_FILE ".bad", f.dir);
	assert_int_equal(access(path, F_OK), 0);
	inventory_close(f.inv);
	f.inv = NULL;
	/* a symlink planted in its place is not followed */
	snprintf(path, sizeof(path), "%s/" INVENTORY_FILE, f.dir);
	unlink(path);
	assert_int_equal(symlink("/etc/passwd", path), 0);
	assert_int_not_equal(inventory_print(f.dir, false, stdout, err, sizeof(err)), 0);
	f.inv = open_in(f.dir, 0, false);
	fixture_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_and_restart),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_untrusted_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* sink_metrics.c -- session events to Prometheus metrics, served on /metrics.
 *
 * Names follow the OpenTelemetry MCP semantic conventions translated to Prometheus
 * (mcp_server_operation_duration_seconds...), plus mcpsonde's own mcpsonde_* families.
 * Invariants:
 * - Bounded labels. Server names are capped (max_servers), and per server: tool and
 *   prompt names (max_tools), method names outside the MCP spec (max_methods), error
 *   types (ERROR_TYPES_MAX); what does not fit is labelled "_other" and counted. No PID,
 *   request id or session id is ever a label.
 * - Counters and histograms are updated as events arrive; gauges that describe current
 *   state (pending calls, tool catalogs) are recomputed from per-process state when a
 *   snapshot is rendered.
 * - The HTTP thread only sees rendered snapshots (http_metrics.c), published from
 *   on_tick when something changed: the pipeline never waits for a scrape.
 * - The histogram of a call is the side of the observed process: requests it handles are
 *   server operations, requests it makes (a server's sampling, every request of a process
 *   that is an HTTP client) are client operations. The "server" label is the MCP server:
 *   the process, or the remote server a client process talks to (its serverInfo.name, else
 *   its address). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/inventory.h"
#include "mcpsonde/metrics.h"
#include "mcpsonde/rpc.h"
#include "mcpsonde/scrub.h"
#include "mcpsonde/tools.h"

#define ERROR_TYPES_MAX 32       /* distinct error.type values per server */
#define PROTOCOL_VERSIONS_MAX 16 /* distinct mcp.protocol.version values */
#define SMALL_LABELS_MAX 16      /* transports, loss reasons, exit reasons: ours, but bounded anyway */
#define HTTP_STATUSES_MAX 32     /* distinct HTTP status codes per server */
#define ADDRESSES_MAX 64         /* distinct server.address values */
#define SESSIONS_MAX 4096        /* processes with pending-call and catalog state */
#define INFO_LABELS_MAX 256      /* server versions and client names in mcpsonde_server_info */
#define IDENTITY_WAIT_NS (10ull * 1000000000ull) /* how long traffic waits for serverInfo.name */

/* OpenTelemetry's advice (0.01 .. 300 s) with finer buckets below 10 ms: local tools
 * often answer in well under a millisecond. */
static const double op_buckets[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1,
				     0.2,    0.5,     1,      2,     5,      10,    30,   60,   120,  300 };
/* Sessions: the same advice, extended to a working day. */
static const double session_buckets[] = { 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,  1,    2,    5,     10,    30,
					   60,   120,  300,  600, 1800, 3600, 7200, 14400, 28800, 86400 };
static const double bytes_buckets[] = { 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216 };

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

static const char *const violation_kinds[] = { "missing_required", "wrong_type", "not_in_enum", "unknown_property" };

/* Traffic of a process whose name is not known yet (before its initialize result), held
 * so that it is counted under serverInfo.name rather than under "node" or "python3". */
#define NKINDS 5
static const char *const message_kinds[NKINDS] = { "request", "notification", "result", "error", "invalid" };

struct deferred {
	bool any;
	double messages[NKINDS][2], message_bytes[2];
	double stderr_lines, stderr_bytes;
	double invalid[2], invalid_bytes;
	double probes_failed; /* a client's server/discover comes before initialize */
};

/* The resource attributes --metrics-labels may name, by their OpenTelemetry keys: a
 * label's name is its key with '_' for '.'. */
static const char *const scope_attrs[] = { "k8s.namespace.name", "k8s.pod.name",  "k8s.pod.uid",	 "k8s.container.name",
					   "k8s.node.name",	 "container.id",  "container.name", "container.runtime" };
static const char *const scope_names[] = { "k8s_namespace_name", "k8s_pod_name",  "k8s_pod_uid",	"k8s_container_name",
					   "k8s_node_name",	 "container_id",  "container_name", "container_runtime" };

int metrics_scope_parse(const char *list, struct metrics_scope *out, char *err, size_t errlen)
{
	const char *p = list, *end;

	memset(out, 0, sizeof(*out));
	if (strcmp(list, "none") == 0)
		return 0;
	for (;; p = end + 1) {
		size_t len, i;

		end = strchr(p, ',');
		len = end ? (size_t)(end - p) : strlen(p);
		for (i = 0; i < NELEMS(scope_names) && !(strlen(scope_names[i]) == len && !strncmp(p, scope_names[i], len)); i++)
			;
		if (i == NELEMS(scope_names)) {
			if (len == 4 && !strncmp(p, "none", 4))
				snprintf(err, errlen, "--metrics-labels: none stands alone, not in a list");
			else if (!len)
				snprintf(err, errlen, "--metrics-labels: an empty name in \"%s\"", list);
			else
				snprintf(err, errlen,
					 "--metrics-labels: unknown label \"%.*s\" (expected none, or some of k8s_namespace_name, "
					 "k8s_pod_name, k8s_pod_uid, k8s_container_name, k8s_node_name, container_id, "
					 "container_name, container_runtime)",
					 (int)(len > 64 ? 64 : len), p);
			return -1;
		}
		for (unsigned j = 0; j < out->n; j++)
			if (out->label[j] == scope_names[i]) {
				snprintf(err, errlen, "--metrics-labels: %s is given twice", scope_names[i]);
				return -1;
			}
		/* every name is distinct, so out never overflows */
		out->label[out->n] = scope_names[i];
		out->attr[out->n++] = scope_attrs[i];
		if (!end)
			return 0;
	}
}

/* Where a server runs, as its series are labelled: the value of each --metrics-labels
 * attribute, NUL-terminated, one after the other ("" where it has none: on the host,
 * outside Kubernetes). Values hold no NUL, so the bytes are a hash key as they are. */
#define SCOPE_BYTES (METRICS_SCOPE_MAX * (ATTRIB_NAME_MAX + 1))
struct mscope {
	size_t len;
	char bytes[SCOPE_BYTES];
};

static void scope_from_attrs(const struct metrics_scope *sc, const struct attrib_attr *attrs, size_t n,
			     struct mscope *out)
{
	out->len = 0;
	for (unsigned i = 0; i < sc->n; i++) {
		const char *v = "";
		size_t len;

		for (size_t j = 0; j < n; j++)
			if (strcmp(attrs[j].key, sc->attr[i]) == 0) {
				v = attrs[j].value;
				break;
			}
		len = strnlen(v, ATTRIB_NAME_MAX);
		memcpy(out->bytes + out->len, v, len);
		out->len += len;
		out->bytes[out->len++] = '\0';
	}
}

/* The attributes of the event's "resource" member: none on the host. */
static void scope_of(const struct metrics_scope *sc, const struct session_identity *id, struct mscope *out)
{
	const struct attrib_record *r = id ? id->where : NULL;
	struct attrib_attr attrs[ATTRIB_ATTRS_MAX];

	scope_from_attrs(sc, attrs, r && r->role != ATTRIB_ROLE_HOST ? attrib_attributes(r, attrs) : 0, out);
}

/* One observed process. Keyed by its identity's address, which the pipeline keeps stable
 * for the session's life; the entry goes at EV_EXIT. */
struct mprocess {
	UT_hash_handle hh;
	const struct session_identity *id; /* a key only: never dereferenced outside its events */
	char name[METRICS_LABEL_MAX + 1];  /* the identity's name at the last event */
	char *where;                       /* and where it ran then (struct mscope's bytes) */
	size_t where_len;
	uint64_t first_seen_ns;
	struct tool_catalog *tools;
	unsigned tools_listed;      /* in the last tools/list: the catalog may hold fewer */
	unsigned npending;          /* the session's count, as of its last event */
	uint64_t oldest_pending_ns;
	struct deferred deferred;
};

/* Label state of one (folded) server name in one place (pod and container): the series
 * of a server in a deleted pod go with it. */
struct mserver {
	UT_hash_handle hh;
	char *key;        /* the name, NUL, and where it runs (struct mscope's bytes) */
	size_t keylen;
	const char *name; /* owned by the servers folder, or METRICS_OTHER */
	const char *scope[METRICS_SCOPE_MAX]; /* the values in key, for metrics_registry_set_scope */
	struct label_folder *tools, *prompts, *methods, *errors, *statuses;
	unsigned published; /* generation of the last snapshot that described its catalog */
	unsigned running;   /* processes known by this name, as of the last snapshot */
	uint64_t last_change_ns; /* of its series: they go series_ttl_ns after, once none runs */
};

struct sink_metrics {
	struct sink sink;
	struct metrics_opts opts;
	struct metrics_scope scope; /* --metrics-labels */
	struct metrics_registry *reg;
	struct metrics_http *http;
	struct label_folder *servers, *protocols, *small, *addresses, *infos;
	struct mserver *by_server;
	struct mprocess *processes;
	unsigned nprocesses;
	bool dirty;
	unsigned generation;
	uint64_t now_ns;
	uint64_t series_dropped_seen, scrapes_seen, masked_seen, http_cut_seen;
	uint64_t last_publish_ns;
	struct metrics_self self_seen; /* totals already counted */
	struct inventory_counts inventory_seen;

	struct metric_family *op_duration, *client_op_duration, *session_duration, *abandoned, *pending,
		*pending_age, *notifications, *messages, *message_bytes, *invalid_frames, *invalid_bytes,
		*stderr_lines, *stderr_bytes, *exits, *exits_pending, *tools, *tool_def_bytes, *tool_def_tokens,
		*tool_result_bytes, *list_changes, *tool_changes, *list_changed_notifications, *unknown_tool_calls,
		*schema_violations, *stalls, *blocked_writes, *blocked_seconds, *lost_records, *lost_bytes,
		*tools_folded, *labels_folded, *dropped, *events, *scrapes, *http_cut, *build_info, *secret_calls, *masked,
		*input_rounds, *tasks, *probes, *lost_calls, *subscription_notifications, *protocol_errors,
		*tools_truncated, *http_exchanges, *http_auth_failures, *header_mismatches, *servers_gauge, *server_info,
		*inventory_dropped, *series_expired, *tracked, *sniffed_reads, *sniffed_bytes, *verdicts, *clients,
		*map_entries, *map_capacity, *discovery_latency, *ring_size, *ring_backlog, *ring_backlog_peak;
};

static const char *const verdict_names[METRICS_VERDICT__COUNT] = {
	[METRICS_VERDICT_JSON_RPC] = "json_rpc",  [METRICS_VERDICT_NOT_JSON_RPC] = "not_json_rpc",
	[METRICS_VERDICT_NOT_STDIO] = "not_stdio", [METRICS_VERDICT_NOT_MCP] = "not_mcp",
	[METRICS_VERDICT_RELAY] = "relay",         [METRICS_VERDICT_EXCLUDED] = "excluded",
	[METRICS_VERDICT_NOT_HTTP] = "not_http",   [METRICS_VERDICT_HTTP_NOT_MCP] = "http_not_mcp",
	[METRICS_VERDICT_UNIDENTIFIED] = "unidentified",
};

static const double latency_buckets[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };

#define L(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define V(...) ((const char *const[]){ __VA_ARGS__ })

static void register_families(struct sink_metrics *m)
{
	struct metrics_registry *r = m->reg;
	const char *const *op_labels = L("server", "mcp_method_name", "gen_ai_tool_name", "gen_ai_prompt_name",
					 "error_type", "mcp_protocol_version", "network_transport");

	m->build_info = metrics_gauge(r, "mcpsonde_build_info", "mcpsonde build, value 1.", L("version"));
	m->op_duration = metrics_histogram(
		r, "mcp_server_operation_duration_seconds",
		"MCP requests handled by the server: from the server reading the request to it writing the answer.",
		op_labels, op_buckets, NELEMS(op_buckets));
	m->client_op_duration = metrics_histogram(
		r, "mcp_client_operation_duration_seconds",
		"MCP requests the observed process made: a server's to its client (sampling, roots, elicitation, "
		"ping), a client's to a server over HTTP (server_address, server_port): write to answer read.",
		L("server", "mcp_method_name", "gen_ai_tool_name", "gen_ai_prompt_name", "error_type",
		  "mcp_protocol_version", "network_transport", "server_address", "server_port"),
		op_buckets, NELEMS(op_buckets));
	m->session_duration = metrics_histogram(r, "mcp_server_session_duration_seconds",
						"Life of an observed MCP server process, first seen to exit.",
						L("server", "mcp_protocol_version", "network_transport"),
						session_buckets, NELEMS(session_buckets));
	m->abandoned = metrics_counter(r, "mcpsonde_calls_abandoned",
				       "Requests that got no answer: cancelled by the client, or orphaned by the server's exit.",
				       L("server", "mcp_method_name", "gen_ai_tool_name", "reason"));
	m->input_rounds = metrics_counter(r, "mcpsonde_input_required",
					  "Exchanges answered input_required: the client gets input and retries (2026-07-28 "
					  "multi-round-trip requests). The call's latency, end to end, is in the operation "
					  "histogram once.",
					  L("server", "mcp_method_name", "gen_ai_tool_name"));
	m->tasks = metrics_counter(r, "mcpsonde_tasks_created",
				   "tools/call answered with a task; the call's outcome and end-to-end latency come "
				   "when the task ends.",
				   L("server", "gen_ai_tool_name"));
	m->probes = metrics_counter(r, "mcpsonde_discover_probes",
				    "server/discover probes by outcome: supported (2026-07-28), failed (a legacy server "
				    "answered with an error, or never). Never errors of the server.",
				    L("server", "outcome"));
	m->lost_calls = metrics_counter(r, "mcpsonde_calls_lost",
					"Calls whose request or answer the capture lost (ring buffer overflow, "
					"truncation): not the server's doing.",
					L("server"));
	m->subscription_notifications = metrics_counter(
		r, "mcpsonde_subscription_notifications",
		"Notifications of a subscriptions/listen stream (tagged with a subscriptionId), by method.",
		L("server", "mcp_method_name"));
	m->protocol_errors = metrics_counter(r, "mcpsonde_protocol_errors",
					     "Error responses without id: the peer could not parse a request "
					     "(direction server_to_client: the server could not).",
					     L("server", "error_type", "direction"));
	m->http_exchanges = metrics_counter(
		r, "mcpsonde_http_exchanges",
		"HTTP exchanges on MCP connections, by request method, the JSON-RPC method carried, status code "
		"(\"\" when none came) and how they ended: complete, closed (the response stream closed before its "
		"end), cancelled (the connection closed before any response), lost (capture loss), abandoned.",
		L("server", "http_request_method", "mcp_method_name", "http_response_status_code", "end"));
	m->http_auth_failures = metrics_counter(r, "mcpsonde_http_auth_failures",
						"HTTP exchanges on MCP connections answered 401 or 403.",
						L("server", "http_response_status_code"));
	m->header_mismatches = metrics_counter(r, "mcpsonde_http_header_mismatches",
					       "Requests whose Mcp-Method or Mcp-Name header disagrees with the body "
					       "(2026-07-28; the server should answer -32020).",
					       L("server", "header"));
	m->pending = metrics_gauge(r, "mcpsonde_pending_calls", "Requests seen and not yet answered.", L("server"));
	m->pending_age = metrics_gauge(r, "mcpsonde_pending_call_max_age_seconds",
				       "Age of the oldest unanswered request, 0 when none.", L("server"));
	m->notifications = metrics_counter(r, "mcpsonde_notifications", "JSON-RPC notifications by method.",
					   L("server", "mcp_method_name", "direction"));
	m->messages = metrics_counter(r, "mcpsonde_messages", "JSON-RPC messages on the server's stdio by kind.",
				      L("server", "kind", "direction"));
	m->message_bytes = metrics_counter(r, "mcpsonde_message_bytes", "Bytes of JSON-RPC messages.",
					   L("server", "direction"));
	m->invalid_frames = metrics_counter(r, "mcpsonde_invalid_frames",
					    "Lines on an MCP stream that are not JSON-RPC (stray output on stdout).",
					    L("server", "json"));
	m->invalid_bytes = metrics_counter(r, "mcpsonde_invalid_frame_bytes", "Bytes of invalid lines.", L("server"));
	m->stderr_lines = metrics_counter(r, "mcpsonde_stderr_lines", "Lines the server wrote to stderr.", L("server"));
	m->stderr_bytes = metrics_counter(r, "mcpsonde_stderr_bytes", "Bytes the server wrote to stderr.", L("server"));
	m->exits = metrics_counter(r, "mcpsonde_process_exits",
				   "MCP server processes that exited, by reason (exit, signal, oom, shutdown); normal=false "
				   "for a crash, a non-zero exit, or an exit with calls pending.",
				   L("server", "reason", "normal"));
	m->exits_pending = metrics_counter(r, "mcpsonde_exits_with_pending_calls",
					   "Server exits that left requests unanswered.", L("server"));
	m->tools = metrics_gauge(r, "mcpsonde_tools", "Tools in the server's last tools/list.", L("server"));
	m->tools_truncated = metrics_counter(r, "mcpsonde_tools_list_truncated",
					     "tools/list results only partly learned: longer than the catalog holds "
					     "(4096 tools), or cut by --max-frame. Drift and argument checks cover the "
					     "tools learned.",
					     L("server"));
	m->tool_def_bytes = metrics_gauge(
		r, "mcpsonde_tool_definition_bytes",
		"Size of a tool's definition as minified JSON, by part: description, schema (inputSchema + "
		"outputSchema), other (name, title, annotations, keys); the parts add up to the whole.",
		L("server", "gen_ai_tool_name", "part"));
	m->tool_def_tokens = metrics_gauge(r, "mcpsonde_tool_definition_tokens",
					   "Estimated tokens of a tool's definition: minified bytes / bytes per token.",
					   L("server", "gen_ai_tool_name"));
	m->tool_result_bytes = metrics_histogram(r, "mcpsonde_tool_result_bytes", "Size of tools/call responses.",
						 L("server", "gen_ai_tool_name"), bytes_buckets, NELEMS(bytes_buckets));
	m->list_changes = metrics_counter(r, "mcpsonde_tools_list_changes",
					  "tools/list results that differ from the previous one.", L("server"));
	m->tool_changes = metrics_counter(r, "mcpsonde_tool_definition_changes",
					  "Tools added, removed or changed between two tools/list results.",
					  L("server", "change"));
	m->list_changed_notifications = metrics_counter(r, "mcpsonde_tools_list_changed_notifications",
							"notifications/tools/list_changed sent by the server.",
							L("server"));
	m->unknown_tool_calls = metrics_counter(r, "mcpsonde_unknown_tool_calls",
						"tools/call of a name missing from the last tools/list.", L("server"));
	m->schema_violations = metrics_counter(r, "mcpsonde_schema_violations",
					       "tools/call arguments that break the tool's inputSchema, by kind.",
					       L("server", "gen_ai_tool_name", "kind"));
	m->secret_calls = metrics_counter(r, "mcpsonde_calls_with_secrets",
					  "Calls whose arguments or result held a secret-looking value (never shown).",
					  L("server", "mcp_method_name", "gen_ai_tool_name"));
	m->masked = metrics_counter(r, "mcpsonde_masked_values",
				    "Secret-looking values masked in free text: stderr, error messages, previews, command lines.",
				    NULL);
	m->stalls = metrics_counter(r, "mcpsonde_stalls", "Requests pending longer than the stall threshold.",
				    L("server", "mcp_method_name", "gen_ai_tool_name"));
	m->blocked_writes = metrics_counter(r, "mcpsonde_blocked_writes",
					    "Writes by the server that blocked longer than the threshold.", L("server"));
	m->blocked_seconds = metrics_counter(r, "mcpsonde_blocked_write_seconds", "Time those writes were blocked.",
					     L("server"));
	m->lost_records = metrics_counter(r, "mcpsonde_capture_lost_records",
					  "Capture loss events: ring buffer full, failed copies, truncations, stream gaps.",
					  L("server", "reason"));
	m->lost_bytes = metrics_counter(r, "mcpsonde_capture_lost_bytes", "Bytes not captured, by reason.",
					L("server", "reason"));
	m->tools_folded = metrics_counter(r, "mcpsonde_tool_names_folded",
					  "Tool names labelled _other because the server has more distinct names than the cap.",
					  L("server"));
	m->labels_folded = metrics_counter(r, "mcpsonde_label_values_folded",
					   "Other label values labelled _other because of a cardinality cap.", L("label"));
	m->dropped = metrics_counter(r, "mcpsonde_metrics_dropped",
				     "State the metrics sink did not keep: series past a family's cap, processes.",
				     L("what"));
	m->events = metrics_counter(r, "mcpsonde_events", "Events seen by the metrics sink, by type.", L("type"));
	m->scrapes = metrics_counter(r, "mcpsonde_metrics_scrapes", "Requests served on /metrics.", NULL);
	m->http_cut = metrics_counter(r, "mcpsonde_metrics_connections_cut",
				      "Connections to /metrics cut for not sending a request or taking a response in time.",
				      NULL);
	m->series_expired = metrics_counter(r, "mcpsonde_series_expired",
					    "Series removed because their server had exited --series-ttl ago.", NULL);
	if (m->opts.inventory) {
		m->servers_gauge = metrics_gauge(r, "mcpsonde_servers",
						 "MCP server processes in the inventory, running or exited.", L("state"));
		m->server_info = metrics_gauge(r, "mcpsonde_server_info",
					       "Running MCP servers by name, version, protocol, client (clientInfo.name) "
					       "and how they were found: the number of processes, 1 for one.",
					       L("server", "server_version", "mcp_protocol_version", "client", "found"));
		m->inventory_dropped = metrics_counter(r, "mcpsonde_inventory_dropped",
						       "Records the inventory did not keep: evicted (the oldest exited), "
						       "refused (full of running servers).",
						       L("why"));
	}
	if (m->opts.self) {
		m->tracked = metrics_gauge(r, "mcpsonde_tracked_processes",
					   "Processes whose stdio the kernel copies now.", NULL);
		m->sniffed_reads = metrics_counter(r, "mcpsonde_discovery_reads",
						   "Reads of an untracked process's stdin looked at for JSON-RPC.", NULL);
		m->sniffed_bytes = metrics_counter(r, "mcpsonde_discovery_read_bytes", "Bytes of them examined.", NULL);
		m->verdicts = metrics_counter(r, "mcpsonde_discovery_verdicts",
					      "What discovery concluded of a process: json_rpc (tracked), not_json_rpc "
					      "and not_stdio (its stdin no longer looked at), not_http and http_not_mcp "
					      "(its socket reads no longer looked at), not_mcp, relay, excluded (let go), "
					      "unidentified (gone before it could be judged: nothing of it reported).",
					      L("verdict"));
		m->clients = metrics_counter(r, "mcpsonde_client_lookups",
					     "Clients of servers looked for: found, or unknown (nobody holds the other end, or the "
					     "server was gone first).",
					     L("result"));
		m->map_entries = metrics_gauge(r, "mcpsonde_bpf_map_entries", "Entries in the kernel's maps.", L("map"));
		m->ring_size = metrics_gauge(r, "mcpsonde_ringbuf_size_bytes", "Size of the kernel ring buffer.", NULL);
		m->ring_backlog = metrics_gauge(r, "mcpsonde_ringbuf_backlog_bytes",
						"Bytes the kernel has written to the ring buffer and mcpsonde has not read yet.",
						NULL);
		m->ring_backlog_peak = metrics_gauge(r, "mcpsonde_ringbuf_backlog_peak_bytes",
						     "The largest backlog since mcpsonde started, as each drain found it: "
						     "at the ring's size, records are lost (ringbuf_full).",
						     NULL);
		m->map_capacity = metrics_gauge(r, "mcpsonde_bpf_map_capacity",
						"Capacity of the kernel's maps (absent: bounded by the processes of the "
						"machine).",
						L("map"));
		m->discovery_latency = metrics_histogram(r, "mcpsonde_discovery_latency_seconds",
							 "From the kernel finding a server to mcpsonde taking it up.",
							 NULL, latency_buckets, NELEMS(latency_buckets));
	}
}

void metrics_opts_default(struct metrics_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->listen = METRICS_LISTEN_DEFAULT;
	o->max_tools = METRICS_MAX_TOOLS_DEFAULT;
	o->max_servers = METRICS_MAX_SERVERS_DEFAULT;
	o->max_methods = METRICS_MAX_METHODS_DEFAULT;
	o->bytes_per_token = METRICS_BYTES_PER_TOKEN_DEFAULT;
	o->series_ttl_ns = METRICS_SERIES_TTL_DEFAULT;
}

/* ---- labels --------------------------------------------------------------------- */

static const char *fold(struct sink_metrics *m, struct label_folder *lf, const char *v, const char *label)
{
	bool folded;
	const char *out = label_folder_admit(lf, v, &folded);

	if (folded)
		metrics_counter_add(m->labels_folded, V(label), 1);
	return out;
}

static void server_free(struct mserver *srv)
{
	label_folder_free(srv->tools);
	label_folder_free(srv->prompts);
	label_folder_free(srv->methods);
	label_folder_free(srv->errors);
	label_folder_free(srv->statuses);
	free(srv->key);
	free(srv);
}

/* The key of a (folded) server name in a place: the name, NUL, and the place's bytes. */
static size_t server_key(const char *name, const char *where, size_t where_len, char *key)
{
	size_t len = strlen(name) + 1;

	memcpy(key, name, len);
	if (where_len)
		memcpy(key + len, where, where_len);
	return len + where_len;
}

/* The label state of a (folded) server name in a place; its scope becomes the registry's,
 * so that the samples that follow are labelled with where it runs. */
static struct mserver *server_find(struct sink_metrics *m, const char *name, const char *where, size_t where_len)
{
	char key[METRICS_LABEL_MAX + 1 + SCOPE_BYTES];
	size_t keylen = server_key(name, where, where_len, key);
	struct mserver *srv;

	HASH_FIND(hh, m->by_server, key, keylen, srv);
	if (srv)
		metrics_registry_set_scope(m->reg, srv->scope);
	return srv;
}

/* Finds or makes it (raw: sanitized and folded here). */
static struct mserver *server_get(struct sink_metrics *m, const char *raw, const char *where, size_t where_len)
{
	char clean[METRICS_LABEL_MAX + 1];
	const char *name, *v;
	struct mserver *srv;

	metrics_label_sanitize(raw && raw[0] ? raw : "unknown", clean);
	name = fold(m, m->servers, clean, "server");
	if ((srv = server_find(m, name, where, where_len))) {
		srv->last_change_ns = m->now_ns;
		return srv;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv || !(srv->key = malloc(strlen(name) + 1 + where_len))) {
		free(srv);
		return NULL;
	}
	srv->name = name;
	srv->keylen = server_key(name, where, where_len, srv->key);
	v = srv->key + strlen(name) + 1;
	for (unsigned i = 0; i < m->scope.n; i++, v += strlen(v) + 1)
		srv->scope[i] = v;
	srv->last_change_ns = m->now_ns;
	srv->tools = label_folder_new(m->opts.max_tools);
	srv->prompts = label_folder_new(m->opts.max_tools);
	srv->methods = label_folder_new(m->opts.max_methods);
	srv->errors = label_folder_new(ERROR_TYPES_MAX);
	srv->statuses = label_folder_new(HTTP_STATUSES_MAX);
	if (!srv->tools || !srv->prompts || !srv->methods || !srv->errors || !srv->statuses) {
		server_free(srv);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, m->by_server, srv->key, srv->keylen, srv);
	metrics_registry_set_scope(m->reg, srv->scope);
	return srv;
}

static const char *server_method(struct sink_metrics *m, struct mserver *srv, const char *method)
{
	if (!method || !method[0])
		return "";
	if (rpc_is_mcp_method(method))
		return method;
	return fold(m, srv->methods, method, "mcp_method_name");
}

static const char *server_tool(struct sink_metrics *m, struct mserver *srv, const char *tool, bool count)
{
	char clean[METRICS_LABEL_MAX + 1];
	bool folded;
	const char *out;

	if (!tool || !tool[0])
		return "";
	metrics_label_sanitize(tool, clean);
	out = label_folder_admit(srv->tools, clean, &folded);
	if (folded && count)
		metrics_counter_add(m->tools_folded, V(srv->name), 1);
	return out;
}

static const char *protocol_label(struct sink_metrics *m, const struct session_identity *id)
{
	if (!id || !id->protocol_version || !id->protocol_version[0])
		return "";
	return fold(m, m->protocols, id->protocol_version, "mcp_protocol_version");
}

static const char *small_label(struct sink_metrics *m, const char *v, const char *label)
{
	return v && v[0] ? fold(m, m->small, v, label) : "";
}

static const char *small_info(struct sink_metrics *m, const char *v, const char *label)
{
	char clean[METRICS_LABEL_MAX + 1];

	if (!v || !v[0])
		return "";
	metrics_label_sanitize(v, clean);
	return fold(m, m->infos, clean, label);
}

static const char *dir_label(enum call_direction d)
{
	return d == DIR_CLIENT_TO_SERVER ? "client_to_server" : "server_to_client";
}

/* ---- per-process state ---------------------------------------------------------- */

static struct mprocess *process_get(struct sink_metrics *m, const struct session_identity *id, bool create)
{
	struct mprocess *p;

	if (!id)
		return NULL;
	HASH_FIND_PTR(m->processes, &id, p);
	if (p || !create)
		return p;
	if (m->nprocesses >= SESSIONS_MAX || !(p = calloc(1, sizeof(*p)))) {
		metrics_counter_add(m->dropped, V("process"), 1);
		return NULL;
	}
	if (!(p->tools = tools_new())) {
		free(p);
		return NULL;
	}
	p->id = id;
	HASH_ADD_PTR(m->processes, id, p);
	m->nprocesses++;
	return p;
}

static void process_free(struct sink_metrics *m, struct mprocess *p)
{
	HASH_DEL(m->processes, p);
	m->nprocesses--;
	tools_free(p->tools);
	free(p->where);
	free(p);
}

/* ---- events ---------------------------------------------------------------------- */

static void on_call(struct sink_metrics *m, const struct sonde_event *ev, struct mserver *srv)
{
	const struct ev_call *c = &ev->call;
	const char *method = server_method(m, srv, c->method);
	bool is_tool = c->method && strcmp(c->method, "tools/call") == 0;
	bool is_prompt = c->method && strcmp(c->method, "prompts/get") == 0;
	const char *tool = is_tool ? server_tool(m, srv, c->tool, true) : "";
	const char *prompt = is_prompt && c->tool && c->tool[0] ? fold(m, srv->prompts, c->tool, "gen_ai_prompt_name") : "";
	const struct ev_net *net = ev->net;
	const char *error_type = "", *transport = net ? net->transport : ev->session ? ev->session->transport : NULL;
	/* The observed process made the request: a server's to its client, a client's to a server. */
	bool made = (c->direction == DIR_SERVER_TO_CLIENT) != (net && net->client);
	char code[32], port[16] = "";

	if (c->secret)
		metrics_counter_add(m->secret_calls, V(srv->name, method, tool), 1);
	if (c->header_mismatch)
		metrics_counter_add(m->header_mismatches, V(srv->name, c->header_mismatch), 1);
	switch (c->status) {
	case CALL_CANCELLED:
	case CALL_ORPHANED:
		metrics_counter_add(m->abandoned,
				    V(srv->name, method, tool, c->status == CALL_CANCELLED ? "cancelled" : "orphaned"), 1);
		return;
	/* Not outcomes of a call: no latency, never an error. */
	case CALL_INPUT_REQUIRED:
		metrics_counter_add(m->input_rounds, V(srv->name, method, tool), 1);
		return;
	case CALL_TASK:
		metrics_counter_add(m->tasks, V(srv->name, tool), 1);
		return;
	case CALL_PROBE_FAILED:
		metrics_counter_add(m->probes, V(srv->name, "failed"), 1);
		return;
	case CALL_LOST:
		metrics_counter_add(m->lost_calls, V(srv->name), 1);
		return;
	case CALL_CLOSED:
		return;
	case CALL_ERROR:
		snprintf(code, sizeof(code), "%lld", c->error_code);
		error_type = fold(m, srv->errors, code, "error_type");
		break;
	case CALL_TOOL_ERROR:
		error_type = "tool_error";
		break;
	case CALL_HTTP_ERROR: /* OpenTelemetry: an HTTP failure's error.type is its status code */
		snprintf(code, sizeof(code), "%u", c->http_status);
		error_type = fold(m, srv->errors, code, "error_type");
		break;
	case CALL_OK:
		break;
	}
	if (c->method && strcmp(c->method, "server/discover") == 0 && c->status == CALL_OK)
		metrics_counter_add(m->probes, V(srv->name, "supported"), 1);
	/* A call of several exchanges (multi-round-trip, task) counts once, end to end. */
	if (made) {
		if (net && net->client && net->server_port)
			snprintf(port, sizeof(port), "%u", net->server_port);
		metrics_histogram_observe(m->client_op_duration,
					  V(srv->name, method, tool, prompt, error_type, protocol_label(m, ev->session),
					    small_label(m, transport, "network_transport"),
					    net && net->client && net->server_address ?
						    fold(m, m->addresses, net->server_address, "server_address") : "",
					    port),
					  (double)(c->rounds ? c->logical_ns : c->duration_ns) / 1e9);
	} else {
		metrics_histogram_observe(m->op_duration,
					  V(srv->name, method, tool, prompt, error_type, protocol_label(m, ev->session),
					    small_label(m, transport, "network_transport")),
					  (double)(c->rounds ? c->logical_ns : c->duration_ns) / 1e9);
	}
	if (!is_tool || made)
		return;
	metrics_histogram_observe(m->tool_result_bytes, V(srv->name, tool), (double)c->response_bytes);
	if (c->unknown_tool)
		metrics_counter_add(m->unknown_tool_calls, V(srv->name), 1);
	if (json_is_array(c->schema_violations)) {
		size_t i;
		json_t *v;
		json_array_foreach(c->schema_violations, i, v) {
			const char *kind = json_string_value(json_object_get(v, "kind"));
			const char *label = "other";
			for (size_t k = 0; kind && k < NELEMS(violation_kinds); k++)
				if (strcmp(kind, violation_kinds[k]) == 0)
					label = violation_kinds[k];
			metrics_counter_add(m->schema_violations, V(srv->name, tool, label), 1);
		}
	}
}

static void on_http(struct sink_metrics *m, const struct sonde_event *ev, struct mserver *srv)
{
	const struct ev_http *h = &ev->http;
	const char *status = "";
	char code[16];

	if (h->status) {
		snprintf(code, sizeof(code), "%u", h->status);
		status = fold(m, srv->statuses, code, "http_response_status_code");
	}
	metrics_counter_add(m->http_exchanges,
			    V(srv->name, small_label(m, h->method, "http_request_method"),
			      server_method(m, srv, h->mcp_method), status, small_label(m, h->end, "end")),
			    1);
	if (h->status == 401 || h->status == 403)
		metrics_counter_add(m->http_auth_failures, V(srv->name, status), 1);
}

static void on_tools_changed(struct sink_metrics *m, const struct sonde_event *ev, struct mserver *srv)
{
	static const char *const kinds[] = { "added", "removed", "changed" };

	metrics_counter_add(m->list_changes, V(srv->name), 1);
	for (size_t i = 0; i < NELEMS(kinds); i++) {
		size_t n = json_array_size(json_object_get(ev->tools.change, kinds[i]));
		if (n)
			metrics_counter_add(m->tool_changes, V(srv->name, kinds[i]), (double)n);
	}
}

static void on_exit_event(struct sink_metrics *m, const struct sonde_event *ev, struct mserver *srv,
			  struct mprocess *p)
{
	const struct ev_exit *x = &ev->exit;

	if (ev->session && ev->session->speaks_mcp) { /* wrappers (npm, sh) exit too: not servers */
		metrics_counter_add(m->exits, V(srv->name, small_label(m, x->reason, "reason"), x->normal ? "true" : "false"),
				    1);
		if (x->pending_calls)
			metrics_counter_add(m->exits_pending, V(srv->name), 1);
		if (ev->ts_ns >= ev->session->first_seen_ns)
			metrics_histogram_observe(m->session_duration,
						  V(srv->name, protocol_label(m, ev->session),
						    small_label(m, ev->session->transport, "network_transport")),
						  (double)(ev->ts_ns - ev->session->first_seen_ns) / 1e9);
	}
	if (p)
		process_free(m, p);
}

static int kind_index(const char *kind)
{
	for (int i = 0; kind && i < NKINDS; i++)
		if (strcmp(kind, message_kinds[i]) == 0)
			return i;
	return -1;
}

/* Before its initialize result a process is known by its process name only: its traffic
 * waits (IDENTITY_WAIT_NS at most) for serverInfo.name. */
static bool identity_pending(const struct sonde_event *ev)
{
	const struct session_identity *id = ev->session;

	return !(id->server_name && id->server_name[0]) && !id->initialized_ns &&
	       ev->ts_ns < id->first_seen_ns + IDENTITY_WAIT_NS;
}

static bool defer(struct mprocess *p, const struct sonde_event *ev)
{
	struct deferred *d = &p->deferred;
	int k;

	switch (ev->type) {
	case EV_MESSAGE:
		if ((k = kind_index(ev->message.kind)) < 0)
			return false;
		d->messages[k][ev->message.direction == DIR_CLIENT_TO_SERVER ? 0 : 1]++;
		d->message_bytes[ev->message.direction == DIR_CLIENT_TO_SERVER ? 0 : 1] += (double)ev->message.bytes;
		break;
	case EV_STDERR:
		d->stderr_lines++;
		d->stderr_bytes += (double)ev->stderr_line.bytes;
		break;
	case EV_INVALID:
		d->invalid[ev->invalid.json ? 1 : 0] += (double)ev->invalid.frames;
		d->invalid_bytes += (double)ev->invalid.bytes;
		break;
	case EV_CALL:
		if (ev->call.status != CALL_PROBE_FAILED)
			return false;
		d->probes_failed++;
		break;
	default:
		return false;
	}
	d->any = true;
	return true;
}

static void count_message(struct sink_metrics *m, struct mserver *srv, const char *kind, enum call_direction dir,
			  double n, double bytes)
{
	if (n > 0)
		metrics_counter_add(m->messages, V(srv->name, small_label(m, kind, "kind"), dir_label(dir)), n);
	if (bytes > 0)
		metrics_counter_add(m->message_bytes, V(srv->name, dir_label(dir)), bytes);
}

static void count_stderr(struct sink_metrics *m, struct mserver *srv, double lines, double bytes)
{
	if (lines > 0)
		metrics_counter_add(m->stderr_lines, V(srv->name), lines);
	if (bytes > 0)
		metrics_counter_add(m->stderr_bytes, V(srv->name), bytes);
}

static void count_invalid(struct sink_metrics *m, struct mserver *srv, bool json, double n, double bytes)
{
	if (n > 0)
		metrics_counter_add(m->invalid_frames, V(srv->name, json ? "true" : "false"), n);
	if (bytes > 0)
		metrics_counter_add(m->invalid_bytes, V(srv->name), bytes);
}

/* Counts held traffic under the process's current name. */
static void flush_deferred(struct sink_metrics *m, struct mprocess *p)
{
	struct deferred *d = &p->deferred;
	struct mserver *srv;

	if (!d->any || !(srv = server_get(m, p->name, p->where, p->where_len)))
		return;
	for (int k = 0; k < NKINDS; k++)
		for (int dir = 0; dir < 2; dir++)
			count_message(m, srv, message_kinds[k], dir ? DIR_SERVER_TO_CLIENT : DIR_CLIENT_TO_SERVER,
				      d->messages[k][dir], 0);
	count_message(m, srv, NULL, DIR_CLIENT_TO_SERVER, 0, d->message_bytes[0]);
	count_message(m, srv, NULL, DIR_SERVER_TO_CLIENT, 0, d->message_bytes[1]);
	count_stderr(m, srv, d->stderr_lines, d->stderr_bytes);
	count_invalid(m, srv, false, d->invalid[0], d->invalid_bytes);
	count_invalid(m, srv, true, d->invalid[1], 0);
	if (d->probes_failed)
		metrics_counter_add(m->probes, V(srv->name, "failed"), d->probes_failed);
	memset(d, 0, sizeof(*d));
}

static void sink_metrics_on_event(struct sink *s, const struct sonde_event *ev)
{
	struct sink_metrics *m = (struct sink_metrics *)s;
	bool traffic = ev->type == EV_MESSAGE || ev->type == EV_STDERR || ev->type == EV_INVALID ||
		       (ev->type == EV_CALL && ev->call.status == CALL_PROBE_FAILED);
	char remote[METRICS_LABEL_MAX + 1];
	struct mserver *srv;
	struct mprocess *p;
	struct mscope where;

	metrics_registry_set_scope(m->reg, NULL);
	metrics_counter_add(m->events, V(ev_type_name(ev->type)), 1);
	if (ev->ts_ns > m->now_ns)
		m->now_ns = ev->ts_ns;
	m->dirty = true;
	if (ev->type == EV_UNTRACKED) {
		/* Let go without an exit. A relay's or a non-MCP process's traffic is no server's:
		 * what was held for its name is dropped; one gone unseen was a server. */
		if ((p = process_get(m, ev->session, false))) {
			if (strcmp(ev->untracked.reason, "gone") == 0)
				flush_deferred(m, p);
			process_free(m, p);
		}
		return;
	}
	if (!ev->session) { /* loss not tied to a stream */
		if (ev->type == EV_LOSS) {
			const char *reason = small_label(m, ev->loss.reason, "reason");
			metrics_counter_add(m->lost_records, V("", reason), (double)ev->loss.records);
			metrics_counter_add(m->lost_bytes, V("", reason), (double)ev->loss.bytes);
		}
		return;
	}
	scope_of(&m->scope, ev->session, &where);
	p = process_get(m, ev->session, traffic || ev->type == EV_TOOLS_LIST);
	if (p) {
		metrics_label_sanitize(session_identity_name(ev->session), p->name);
		if (p->where_len != where.len || (where.len && memcmp(p->where, where.bytes, where.len))) {
			char *copy = where.len ? malloc(where.len) : NULL;

			if (where.len && !copy)
				return;
			free(p->where);
			p->where = where.len ? memcpy(copy, where.bytes, where.len) : NULL;
			p->where_len = where.len;
		}
		p->first_seen_ns = ev->session->first_seen_ns;
		p->npending = ev->session->pending_calls;
		p->oldest_pending_ns = ev->session->oldest_pending_ns;
		/* A client's traffic is the remote server's: nothing to wait for. */
		if (traffic && !(ev->net && ev->net->client) && identity_pending(ev) && defer(p, ev))
			return;
		flush_deferred(m, p);
	}
	if (!(srv = server_get(m, event_server_name(ev, remote, sizeof(remote)), where.bytes, where.len)))
		return;

	switch (ev->type) {
	case EV_CALL:
		on_call(m, ev, srv);
		break;
	case EV_NOTIFICATION:
		metrics_counter_add(m->notifications,
				    V(srv->name, server_method(m, srv, ev->notification.method),
				      dir_label(ev->notification.direction)),
				    1);
		if (ev->notification.method && strcmp(ev->notification.method, "notifications/tools/list_changed") == 0)
			metrics_counter_add(m->list_changed_notifications, V(srv->name), 1);
		if (ev->notification.subscription_id)
			metrics_counter_add(m->subscription_notifications,
					    V(srv->name, server_method(m, srv, ev->notification.method)), 1);
		break;
	case EV_PROTOCOL_ERROR: {
		char code[32];
		snprintf(code, sizeof(code), "%lld", ev->protocol_error.error_code);
		metrics_counter_add(m->protocol_errors,
				    V(srv->name, fold(m, srv->errors, code, "error_type"),
				      dir_label(ev->protocol_error.direction)),
				    1);
		break;
	}
	case EV_MESSAGE:
		count_message(m, srv, ev->message.kind, ev->message.direction, 1, (double)ev->message.bytes);
		break;
	case EV_HTTP:
		on_http(m, ev, srv);
		break;
	case EV_INVALID:
		count_invalid(m, srv, ev->invalid.json, (double)ev->invalid.frames, (double)ev->invalid.bytes);
		break;
	case EV_STDERR:
		count_stderr(m, srv, 1, (double)ev->stderr_line.bytes);
		break;
	case EV_EXIT:
		on_exit_event(m, ev, srv, p);
		break;
	case EV_LOSS: {
		const char *reason = small_label(m, ev->loss.reason, "reason");
		metrics_counter_add(m->lost_records, V(srv->name, reason), (double)ev->loss.records);
		metrics_counter_add(m->lost_bytes, V(srv->name, reason), (double)ev->loss.bytes);
		break;
	}
	case EV_TOOLS_CHANGED:
		on_tools_changed(m, ev, srv);
		break;
	case EV_TOOLS_LIST:
		if (ev->tools.truncated)
			metrics_counter_add(m->tools_truncated, V(srv->name), 1);
		if (p) {
			p->tools_listed = ev->tools.count;
			json_decref(tools_update(p->tools, ev->tools.tools, ev->tools.truncated));
			/* admit the listed names now, so that folding is counted once per list */
			for (size_t i = 0; i < tools_count(p->tools); i++)
				server_tool(m, srv, tools_size_at(p->tools, i)->name, true);
		}
		break;
	case EV_STALL:
		metrics_counter_add(m->stalls,
				    V(srv->name, server_method(m, srv, ev->stall.method),
				      ev->stall.method && strcmp(ev->stall.method, "tools/call") == 0
					      ? server_tool(m, srv, ev->stall.tool, true)
					      : ""),
				    1);
		break;
	case EV_BLOCKED_WRITE:
		metrics_counter_add(m->blocked_writes, V(srv->name), 1);
		metrics_counter_add(m->blocked_seconds, V(srv->name), (double)ev->blocked_write.blocked_ns / 1e9);
		break;
	default:
		break;
	}
}

/* ---- snapshots -------------------------------------------------------------------- */

/* Whether a server of that (folded) name runs elsewhere: the name is shared. */
static bool server_named(const struct sink_metrics *m, const char *name)
{
	for (const struct mserver *srv = m->by_server; srv; srv = srv->hh.next)
		if (srv->name == name)
			return true;
	return false;
}

/* The series of server names that no running process has, unchanged for series_ttl_ns,
 * go: a fleet runs through servers for weeks, the series set must not grow with them. */
static void expire_servers(struct sink_metrics *m)
{
	struct mserver *srv, *tmp;
	size_t removed;

	if (!m->opts.series_ttl_ns)
		return;
	HASH_ITER(hh, m->by_server, srv, tmp) {
		if (srv->running || m->now_ns < srv->last_change_ns + m->opts.series_ttl_ns)
			continue;
		metrics_registry_set_scope(m->reg, srv->scope);
		removed = metrics_remove_series(m->reg, "server", srv->name);
		metrics_registry_set_scope(m->reg, NULL);
		metrics_counter_add(m->series_expired, NULL, (double)removed);
		HASH_DEL(m->by_server, srv);
		if (strcmp(srv->name, METRICS_OTHER) != 0 && !server_named(m, srv->name))
			label_folder_remove(m->servers, srv->name); /* frees the name */
		server_free(srv);
	}
}

/* Labels of what servers say of themselves and their clients: folded like every other. */
static void info_add(void *ctx, const struct inventory_view *v)
{
	struct sink_metrics *m = ctx;
	char server[METRICS_LABEL_MAX + 1];
	const char *scope[METRICS_SCOPE_MAX];
	struct mscope where;
	const char *val = where.bytes;

	scope_from_attrs(&m->scope, v->resource, v->nresource, &where);
	for (unsigned i = 0; i < m->scope.n; i++, val += strlen(val) + 1)
		scope[i] = val;
	metrics_registry_set_scope(m->reg, scope);
	metrics_label_sanitize(v->server ? v->server : "unknown", server);
	metrics_gauge_add(m->server_info,
			  V(fold(m, m->servers, server, "server"), small_info(m, v->server_version, "server_version"),
			    v->protocol_version ? fold(m, m->protocols, v->protocol_version, "mcp_protocol_version") : "",
			    small_info(m, v->client_name, "client"), v->found),
			  1);
}

/* The inventory's counts, and one info series per running server. */
static void refresh_inventory(struct sink_metrics *m)
{
	struct inventory_counts c;

	if (!m->opts.inventory)
		return;
	inventory_counts(m->opts.inventory, &c);
	metrics_gauge_set(m->servers_gauge, V("running"), c.running);
	metrics_gauge_set(m->servers_gauge, V("exited"), c.exited);
	metrics_counter_add(m->inventory_dropped, V("evicted"), (double)(c.evicted - m->inventory_seen.evicted));
	metrics_counter_add(m->inventory_dropped, V("refused"), (double)(c.refused - m->inventory_seen.refused));
	m->inventory_seen = c;
	metrics_family_reset(m->server_info);
	inventory_each_running(m->opts.inventory, info_add, m);
	metrics_registry_set_scope(m->reg, NULL);
}

/* mcpsonde's own figures: totals turned into counters, gauges as they are. */
static void refresh_self(struct sink_metrics *m)
{
	struct metrics_self now = { 0 };
	struct metrics_self *seen = &m->self_seen;

	if (!m->opts.self)
		return;
	m->opts.self(m->opts.self_ctx, &now);
	metrics_gauge_set(m->tracked, NULL, now.tracked);
	metrics_gauge_set(m->ring_size, NULL, now.ring_size);
	metrics_gauge_set(m->ring_backlog, NULL, now.ring_backlog);
	metrics_gauge_set(m->ring_backlog_peak, NULL, now.ring_backlog_peak);
	metrics_counter_add(m->sniffed_reads, NULL, now.sniffed_reads - seen->sniffed_reads);
	metrics_counter_add(m->sniffed_bytes, NULL, now.sniffed_bytes - seen->sniffed_bytes);
	for (int v = 0; v < METRICS_VERDICT__COUNT; v++)
		metrics_counter_add(m->verdicts, V(verdict_names[v]), now.verdicts[v] - seen->verdicts[v]);
	metrics_counter_add(m->clients, V("found"), now.clients_found - seen->clients_found);
	metrics_counter_add(m->clients, V("unknown"), now.clients_unknown - seen->clients_unknown);
	for (unsigned i = 0; i < now.nmaps; i++) {
		metrics_gauge_set(m->map_entries, V(now.maps[i].map), now.maps[i].entries);
		if (now.maps[i].capacity)
			metrics_gauge_set(m->map_capacity, V(now.maps[i].map), now.maps[i].capacity);
	}
	for (unsigned i = 0; i < now.nlatencies; i++)
		metrics_histogram_observe(m->discovery_latency, NULL, now.latencies[i]);
	*seen = now;
}

/* Recomputes the gauges that describe current state. Processes sharing a server name
 * add their pending calls; the first one with a catalog describes the server's tools. */
static void refresh_state_gauges(struct sink_metrics *m)
{
	struct mprocess *p, *tmp;
	uint64_t dropped;

	metrics_registry_set_scope(m->reg, NULL);
	metrics_family_reset(m->pending);
	metrics_family_reset(m->pending_age);
	metrics_family_reset(m->tools);
	metrics_family_reset(m->tool_def_bytes);
	metrics_family_reset(m->tool_def_tokens);
	m->generation++;

	HASH_ITER(hh, m->processes, p, tmp) {
		if (p->deferred.any && m->now_ns >= p->first_seen_ns + IDENTITY_WAIT_NS)
			flush_deferred(m, p);
	}
	for (struct mserver *srv = m->by_server; srv; srv = srv->hh.next)
		srv->running = 0;
	HASH_ITER(hh, m->processes, p, tmp) {
		struct mserver *srv;
		const char *name;
		uint64_t oldest = p->oldest_pending_ns;
		double age;

		name = label_folder_admit(m->servers, p->name[0] ? p->name : "unknown", NULL);
		if (!(srv = server_find(m, name, p->where, p->where_len)))
			continue; /* its name is not known yet (or it never produced a labelled event) */
		srv->running++;
		metrics_gauge_add(m->pending, V(srv->name), p->npending);
		age = oldest && m->now_ns > oldest ? (double)(m->now_ns - oldest) / 1e9 : 0;
		if (age >= metrics_value(m->pending_age, V(srv->name)))
			metrics_gauge_set(m->pending_age, V(srv->name), age);

		if (!tools_known(p->tools) || srv->published == m->generation)
			continue;
		srv->published = m->generation;
		metrics_gauge_set(m->tools, V(srv->name), (double)p->tools_listed);
		for (size_t i = 0; i < tools_count(p->tools); i++) {
			const struct tool_def_size *sz = tools_size_at(p->tools, i);
			const char *tool = server_tool(m, srv, sz->name, false);
			size_t other = sz->total_bytes - sz->description_bytes - sz->schema_bytes;

			if (sz->description_bytes + sz->schema_bytes > sz->total_bytes)
				other = 0;
			metrics_gauge_add(m->tool_def_bytes, V(srv->name, tool, "description"), (double)sz->description_bytes);
			metrics_gauge_add(m->tool_def_bytes, V(srv->name, tool, "schema"), (double)sz->schema_bytes);
			metrics_gauge_add(m->tool_def_bytes, V(srv->name, tool, "other"), (double)other);
			metrics_gauge_add(m->tool_def_tokens, V(srv->name, tool),
					  ceil((double)sz->total_bytes / m->opts.bytes_per_token));
		}
	}
	metrics_registry_set_scope(m->reg, NULL);
	expire_servers(m);
	refresh_inventory(m);
	refresh_self(m);
	dropped = metrics_series_dropped(m->reg);
	if (dropped > m->series_dropped_seen) {
		metrics_counter_add(m->dropped, V("series"), (double)(dropped - m->series_dropped_seen));
		m->series_dropped_seen = dropped;
	}
	if (scrub_masked_total() > m->masked_seen) {
		metrics_counter_add(m->masked, NULL, (double)(scrub_masked_total() - m->masked_seen));
		m->masked_seen = scrub_masked_total();
	}
	if (m->http) {
		uint64_t scrapes = metrics_http_scrapes(m->http);
		uint64_t cut = metrics_http_cut(m->http);
		metrics_counter_add(m->scrapes, NULL, (double)(scrapes - m->scrapes_seen));
		m->scrapes_seen = scrapes;
		metrics_counter_add(m->http_cut, NULL, (double)(cut - m->http_cut_seen));
		m->http_cut_seen = cut;
	}
}

char *sink_metrics_render(struct sink *s, enum metrics_format fmt, size_t *len)
{
	struct sink_metrics *m = (struct sink_metrics *)s;

	refresh_state_gauges(m);
	return metrics_render(m->reg, fmt, len);
}

static void publish(struct sink_metrics *m)
{
	char *text, *om = NULL;
	size_t text_len = 0, om_len = 0;

	if (!m->http)
		return;
	refresh_state_gauges(m);
	text = metrics_render(m->reg, METRICS_TEXT, &text_len);
	/* Both formats, always: whichever a scraper asks for is current. */
	om = metrics_render(m->reg, METRICS_OPENMETRICS, &om_len);
	metrics_http_publish(m->http, text, text_len, om, om_len);
	if (m->opts.inventory && (text = inventory_render(m->opts.inventory, &text_len)))
		metrics_http_publish_servers(m->http, text, text_len);
	m->dirty = false;
	m->last_publish_ns = m->now_ns;
}

static bool any_pending(const struct sink_metrics *m)
{
	for (const struct mprocess *p = m->processes; p; p = p->hh.next)
		if (p->npending)
			return true;
	return false;
}

static void sink_metrics_on_tick(struct sink *s, uint64_t now_ns)
{
	struct sink_metrics *m = (struct sink_metrics *)s;

	if (now_ns > m->now_ns)
		m->now_ns = now_ns;
	/* pending ages move with the clock; the scrape counter moves with scrapes */
	/* Self-metrics and the inventory move without events: once a second at least. */
	if (m->dirty || any_pending(m) || (m->http && metrics_http_scrapes(m->http) != m->scrapes_seen) ||
	    ((m->opts.self || m->opts.inventory) && now_ns - m->last_publish_ns >= 1000000000ull))
		publish(m);
}

static void sink_metrics_close(struct sink *s)
{
	struct sink_metrics *m = (struct sink_metrics *)s;
	struct mserver *srv, *stmp;
	struct mprocess *p, *ptmp;

	metrics_http_stop(m->http);
	HASH_ITER(hh, m->processes, p, ptmp)
		process_free(m, p);
	HASH_ITER(hh, m->by_server, srv, stmp) {
		HASH_DEL(m->by_server, srv);
		server_free(srv);
	}
	label_folder_free(m->servers);
	label_folder_free(m->addresses);
	label_folder_free(m->protocols);
	label_folder_free(m->small);
	label_folder_free(m->infos);
	metrics_registry_free(m->reg);
	free(m);
}

unsigned sink_metrics_port(const struct sink *s)
{
	const struct sink_metrics *m = (const struct sink_metrics *)s;

	return m->http ? metrics_http_port(m->http) : 0;
}

struct sink *sink_metrics_new(const struct metrics_opts *opts, char *err, size_t errlen)
{
	struct sink_metrics *m = calloc(1, sizeof(*m));

	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	m->opts = *opts;
	if (metrics_scope_parse(opts->labels ? opts->labels : METRICS_LABELS_DEFAULT, &m->scope, err, errlen) < 0) {
		free(m);
		return NULL;
	}
	if (!m->opts.max_tools)
		m->opts.max_tools = METRICS_MAX_TOOLS_DEFAULT;
	if (!m->opts.max_servers)
		m->opts.max_servers = METRICS_MAX_SERVERS_DEFAULT;
	if (!m->opts.max_methods)
		m->opts.max_methods = METRICS_MAX_METHODS_DEFAULT;
	if (!(m->opts.bytes_per_token > 0))
		m->opts.bytes_per_token = METRICS_BYTES_PER_TOKEN_DEFAULT;
	m->sink.name = "metrics";
	m->sink.on_event = sink_metrics_on_event;
	m->sink.on_tick = sink_metrics_on_tick;
	m->sink.close = sink_metrics_close;
	m->reg = metrics_registry_new();
	m->servers = label_folder_new(m->opts.max_servers);
	m->protocols = label_folder_new(PROTOCOL_VERSIONS_MAX);
	m->small = label_folder_new(SMALL_LABELS_MAX * 4);
	m->addresses = label_folder_new(ADDRESSES_MAX);
	m->infos = label_folder_new(INFO_LABELS_MAX);
	if (!m->reg || !m->servers || !m->protocols || !m->small || !m->addresses || !m->infos) {
		snprintf(err, errlen, "out of memory");
		sink_metrics_close(&m->sink);
		return NULL;
	}
	metrics_registry_set_scope_labels(m->reg, "server", m->scope.label);
	register_families(m);
	metrics_gauge_set(m->build_info, V(m->opts.version ? m->opts.version : "unknown"), 1);
	if (m->opts.listen) {
		if (!(m->http = metrics_http_start(m->opts.listen, err, errlen))) {
			sink_metrics_close(&m->sink);
			return NULL;
		}
		publish(m);
	}
	return &m->sink;
}

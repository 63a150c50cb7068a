/* metrics.h -- a bounded metrics registry, its Prometheus exposition, and the two sinks
 * built on it: /metrics (sink_metrics) and the --summary table (sink_summary).
 *
 * The registry belongs to the pipeline thread. The HTTP thread never reads it: the sink
 * renders the registry into an immutable, reference-counted snapshot and publishes it
 * under a mutex held only for a pointer swap; a scrape serves the latest snapshot.
 * Every family has a series cap; label values are made valid UTF-8, cut to
 * METRICS_LABEL_MAX bytes and escaped on output (\\ \" \n). */
#ifndef MCPSONDE_METRICS_H
#define MCPSONDE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sink.h"

#define METRICS_SCOPE_MAX 8           /* scope labels appended to a family (below): every resource attribute */
#define METRICS_LABELS_MAX 17         /* the widest family, mcp_client_operation_duration_seconds, has 9, and the scope's 8 */
#define METRICS_LABEL_MAX 256          /* bytes of a label value kept */
#define METRICS_SERIES_MAX 65536       /* series per family; the rest are counted and dropped */

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

enum metrics_format {
	METRICS_TEXT,        /* text/plain; version=0.0.4 */
	METRICS_OPENMETRICS, /* application/openmetrics-text; version=1.0.0 */
};

struct metrics_registry;
struct metric_family;

struct metrics_registry *metrics_registry_new(void);
void metrics_registry_free(struct metrics_registry *r);

/* The scope: labels appended to every family created after this call whose first label is
 * key (a server's families get where it runs: k8s_namespace_name, k8s_pod_name...). Their
 * values come from metrics_registry_set_scope, not from each call's values. */
void metrics_registry_set_scope_labels(struct metrics_registry *r, const char *key, const char *const *labels);
/* The values of the scope labels for the samples, lookups and removals that follow, until
 * the next call; NULL (or "" values) leaves them out. The strings must live until then. */
void metrics_registry_set_scope(struct metrics_registry *r, const char *const *values);

/* Families are rendered in the order they are created. name is the family name: a
 * counter's samples get "_total" appended (name it without). labels is NULL-terminated. */
struct metric_family *metrics_counter(struct metrics_registry *r, const char *name, const char *help,
				      const char *const *labels);
struct metric_family *metrics_gauge(struct metrics_registry *r, const char *name, const char *help,
				    const char *const *labels);
/* bounds: upper bounds, strictly increasing, +Inf implied. */
struct metric_family *metrics_histogram(struct metrics_registry *r, const char *name, const char *help,
					const char *const *labels, const double *bounds, unsigned nbounds);

/* values: one per label of the family, in order; NULL or "" leaves the label out of the
 * series (Prometheus treats an empty label as absent). */
void metrics_counter_add(struct metric_family *f, const char *const *values, double v);
void metrics_gauge_set(struct metric_family *f, const char *const *values, double v);
void metrics_gauge_add(struct metric_family *f, const char *const *values, double v);
void metrics_histogram_observe(struct metric_family *f, const char *const *values, double v);
/* Removes every series of the family (gauges recomputed from state at each snapshot). */
void metrics_family_reset(struct metric_family *f);
size_t metrics_family_series(const struct metric_family *f);
/* Current value of a counter or gauge series, or a histogram's count; 0 when absent. */
double metrics_value(const struct metric_family *f, const char *const *values);

/* Removes, in every family that has the label, the series whose value of it is value and,
 * in scoped families, whose scope is the current one (a server gone long enough). Returns
 * how many. */
size_t metrics_remove_series(struct metrics_registry *r, const char *label, const char *value);
/* Series refused because a family was full, over all families. */
uint64_t metrics_series_dropped(const struct metrics_registry *r);

/* Renders the whole registry. Returns a malloc'd NUL-terminated buffer (len set), or NULL. */
char *metrics_render(const struct metrics_registry *r, enum metrics_format fmt, size_t *len);
const char *metrics_content_type(enum metrics_format fmt);
/* Picks the format for an Accept header (NULL: text). */
enum metrics_format metrics_negotiate(const char *accept);

/* Label value as it is stored: valid UTF-8 (invalid bytes become U+FFFD), at most
 * METRICS_LABEL_MAX bytes cut on a character boundary. out must hold METRICS_LABEL_MAX + 1. */
void metrics_label_sanitize(const char *in, char *out);
/* Appends the escaped form of a label value (\\ \" \n) to out; returns bytes written or
 * that would have been written (snprintf-like). */
size_t metrics_label_escape(const char *in, char *out, size_t outlen);

/* A set of at most cap distinct label values; further values fold into "_other". */
struct label_folder;
struct label_folder *label_folder_new(unsigned cap);
void label_folder_free(struct label_folder *lf);
/* Returns v (when admitted) or "_other"; *folded set when it folded. */
const char *label_folder_admit(struct label_folder *lf, const char *v, bool *folded);
unsigned label_folder_size(const struct label_folder *lf);
/* Forgets v: its room goes to the next new value. */
void label_folder_remove(struct label_folder *lf, const char *v);

#define METRICS_OTHER "_other"

/* The HTTP exposition: a libmicrohttpd thread serving the last published snapshot. A client
 * must send its request within 10 s of connecting (or of its previous response) and take
 * its response within 30 s, or its connection is cut; up to 4096 connections (half of them
 * from one address), so idle or dribbling clients cannot starve scrapes. */
struct metrics_http;
/* listen: "ADDR:PORT", "[ADDR6]:PORT" or ":PORT" (127.0.0.1); port 0 picks a free one. */
struct metrics_http *metrics_http_start(const char *listen, char *err, size_t errlen);
/* Replaces the snapshot. Takes the two buffers (malloc'd; om may be NULL). */
void metrics_http_publish(struct metrics_http *h, char *text, size_t text_len, char *om, size_t om_len);
/* Replaces what GET /servers serves (application/json). Takes the buffer (malloc'd). */
void metrics_http_publish_servers(struct metrics_http *h, char *json, size_t len);
unsigned metrics_http_port(const struct metrics_http *h);
uint64_t metrics_http_scrapes(const struct metrics_http *h);
/* Connections cut for missing a deadline. */
uint64_t metrics_http_cut(const struct metrics_http *h);
void metrics_http_stop(struct metrics_http *h);

/* mcpsonde's own figures that no event carries (what the kernel examined, its maps, the
 * targets stage's verdicts), read from whoever knows them at each snapshot. Totals, not
 * increments: the sink turns them into counters. */
enum metrics_verdict {
	METRICS_VERDICT_JSON_RPC,     /* found reading JSON-RPC on its stdin */
	METRICS_VERDICT_NOT_JSON_RPC, /* a stdin found to carry something else */
	METRICS_VERDICT_NOT_STDIO,    /* a stdin that is a file or a device */
	METRICS_VERDICT_NOT_MCP,      /* JSON-RPC without an MCP method */
	METRICS_VERDICT_RELAY,
	METRICS_VERDICT_EXCLUDED,     /* --include / --exclude */
	METRICS_VERDICT_NOT_HTTP,     /* socket reads that carried no HTTP request: let go */
	METRICS_VERDICT_HTTP_NOT_MCP, /* serves HTTP without a sign of MCP: let go */
	METRICS_VERDICT_UNIDENTIFIED, /* gone from /proc before it could be judged: not delivered */
	METRICS_VERDICT__COUNT,
};
#define METRICS_MAPS_MAX 4
#define METRICS_LATENCIES_MAX 256

struct metrics_self {
	double tracked;            /* processes tracked now */
	double sniffed_reads, sniffed_bytes; /* reads of stdins looked at for JSON-RPC, their bytes */
	double verdicts[METRICS_VERDICT__COUNT];
	double clients_found, clients_unknown;
	/* The kernel ring buffer: its size, what the kernel has written that mcpsonde has not
	 * read yet, and the most of that seen since the start (at each drain). */
	double ring_size, ring_backlog, ring_backlog_peak;
	struct {
		const char *map;
		double entries, capacity; /* capacity 0: bounded by the machine's processes */
	} maps[METRICS_MAPS_MAX];
	unsigned nmaps;
	double latencies[METRICS_LATENCIES_MAX]; /* discovery latencies (s) since the last call */
	unsigned nlatencies;
};

typedef void (*metrics_self_fn)(void *ctx, struct metrics_self *out);

struct inventory;

/* --metrics-labels: the resource attributes (attrib.h) that label a server's series, by
 * their Prometheus names (the OpenTelemetry key with '_' for '.'), in the order given. A
 * server's series are keyed by these values only: two pods of one server fold into one
 * series when the pod is not among them. Pod uid and container id are never a default: a
 * restarted container would start new series. */
#define METRICS_LABELS_DEFAULT "k8s_namespace_name,k8s_pod_name,k8s_container_name"
struct metrics_scope {
	unsigned n;
	const char *label[METRICS_SCOPE_MAX + 1]; /* "k8s_pod_name"..., NULL-terminated */
	const char *attr[METRICS_SCOPE_MAX];  /* "k8s.pod.name" */
};
/* list: comma-separated names, or "none". 0, or -1 with a one-line reason in err (an unknown
 * name, one given twice, an empty item). */
int metrics_scope_parse(const char *list, struct metrics_scope *out, char *err, size_t errlen);

struct metrics_opts {
	const char *listen;       /* "127.0.0.1:9464"; NULL: no HTTP server (tests, replay) */
	unsigned max_tools;       /* distinct tool (and prompt) names per server; 0: 256 */
	unsigned max_servers;     /* distinct server names; 0: 64 */
	unsigned max_methods;     /* method names outside the MCP spec, per server; 0: 32 */
	double bytes_per_token;   /* for the token estimate of tool definitions; 0: 4 */
	const char *version;      /* mcpsonde_build_info{version} */
	uint64_t series_ttl_ns;   /* series of a server name no running process has, unchanged this
				   * long, are removed; 0: never */
	const char *labels;       /* --metrics-labels; NULL: METRICS_LABELS_DEFAULT */
	const struct inventory *inventory; /* mcpsonde_servers, mcpsonde_server_info, GET /servers */
	metrics_self_fn self;     /* NULL: no self-metrics beyond the sink's own */
	void *self_ctx;
};

#define METRICS_LISTEN_DEFAULT "127.0.0.1:9464"
#define METRICS_MAX_TOOLS_DEFAULT 256
#define METRICS_MAX_SERVERS_DEFAULT 64
#define METRICS_MAX_METHODS_DEFAULT 32
#define METRICS_BYTES_PER_TOKEN_DEFAULT 4.0
#define METRICS_SERIES_TTL_DEFAULT (15ull * 60 * 1000000000ull)

void metrics_opts_default(struct metrics_opts *o);

/* The metrics sink. Fails (NULL, err set) when the listen address cannot be bound or the
 * labels do not parse. */
struct sink *sink_metrics_new(const struct metrics_opts *opts, char *err, size_t errlen);
/* Brings state-derived gauges up to date and renders the registry now (tests, replay). */
char *sink_metrics_render(struct sink *s, enum metrics_format fmt, size_t *len);
/* The port the HTTP server is bound to, 0 without one. */
unsigned sink_metrics_port(const struct sink *s);

/* --summary: on close(), a table per server and tool: calls, errors by type, p50/p95/p99,
 * bytes. Quantiles come from a log-linear histogram (128 buckets per power of two): a
 * reported value is within 0.4% of the exact sample quantile (nearest rank). */
struct sink *sink_summary_new(FILE *out);

#endif

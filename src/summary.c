/* summary.c -- the --summary sink: on close, one table row per server and operation
 * (the tool for tools/call, the method otherwise) with calls, errors by type, latency
 * percentiles and bytes.
 *
 * A row counts calls as the client made them: a call of several exchanges (a multi-round-trip
 * request, a task) is one call, with its end-to-end latency, and the intermediate exchanges
 * (input_required, task) are not calls of their own. Outcomes that are not the server's errors
 * (a failed server/discover probe, a call lost by the capture, a subscription closed by the
 * shutdown) have a column of their own. Error responses without id (the server could not
 * parse a request) are counted in a row of their own.
 *
 * Latencies go into a log-linear histogram: per power of two of nanoseconds, 128 linear
 * sub-buckets, allocated when first used. A percentile is the middle of the bucket that
 * holds the nearest-rank sample, clamped to the exact min and max: it is within 0.4% of
 * the exact sample quantile, whatever the number of samples, in bounded memory. Rows are
 * capped (SUMMARY_ROWS_MAX); calls beyond it are counted in an "_other" row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "mcpsonde/metrics.h"

#define SUMMARY_ROWS_MAX 2048
#define SUMMARY_ERROR_TYPES 6 /* per row; more are summed as "other" */
#define ROW_PROTOCOL_ERRORS "(error without id)"
#define HIST_OCTAVES 64
#define HIST_SUB 128

struct loghist {
	uint32_t *octave[HIST_OCTAVES]; /* octave e holds [2^e, 2^(e+1)) ns */
	uint64_t zero;                  /* samples of 0 ns */
	uint64_t n;
	uint64_t min, max;
};

struct row_error {
	char type[48];
	uint64_t n;
};

struct row {
	UT_hash_handle hh;
	char *key;   /* server \x1f method \x1f tool */
	char *parts; /* the same with NULs: server, method, tool point into it */
	const char *server, *method, *tool;
	uint64_t calls;
	struct row_error errors[SUMMARY_ERROR_TYPES];
	unsigned nerrors;
	uint64_t errors_other;
	uint64_t probes_failed, lost, closed; /* not errors */
	uint64_t request_bytes, response_bytes;
	struct loghist h;
};

struct sink_summary {
	struct sink sink;
	FILE *out;
	struct row *rows;
	unsigned nrows;
};

static void loghist_add(struct loghist *h, uint64_t ns)
{
	unsigned e, sub;

	if (h->n == 0 || ns < h->min)
		h->min = ns;
	if (ns > h->max)
		h->max = ns;
	h->n++;
	if (ns == 0) {
		h->zero++;
		return;
	}
	e = 63 - (unsigned)__builtin_clzll(ns);
	/* the HIST_SUB equal slices of [2^e, 2^(e+1)) */
	sub = e >= 7 ? (unsigned)((ns - (1ull << e)) >> (e - 7)) : (unsigned)((ns - (1ull << e)) << (7 - e));
	if (!h->octave[e] && !(h->octave[e] = calloc(HIST_SUB, sizeof(uint32_t)))) {
		h->n--;
		return;
	}
	if (h->octave[e][sub] < UINT32_MAX)
		h->octave[e][sub]++;
}

/* Nearest-rank quantile, in ns. */
static double loghist_quantile(const struct loghist *h, double q)
{
	uint64_t rank, seen;
	double v;

	if (h->n == 0)
		return NAN;
	rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	seen = h->zero;
	if (seen >= rank)
		return 0;
	for (unsigned e = 0; e < HIST_OCTAVES; e++) {
		if (!h->octave[e])
			continue;
		for (unsigned sub = 0; sub < HIST_SUB; sub++) {
			seen += h->octave[e][sub];
			if (seen < rank)
				continue;
			v = ldexp(1.0 + (sub + 0.5) / HIST_SUB, (int)e);
			return v < (double)h->min ? (double)h->min : v > (double)h->max ? (double)h->max : v;
		}
	}
	return (double)h->max;
}

static void loghist_free(struct loghist *h)
{
	for (unsigned e = 0; e < HIST_OCTAVES; e++)
		free(h->octave[e]);
}

/* Names are printed on a terminal: control characters (and the key separator) become '?'. */
static void copy_printable(char *dst, const char *src, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = (unsigned char)src[i] < 0x20 || src[i] == 0x7f ? '?' : src[i];
}

static struct row *row_get(struct sink_summary *s, const char *server, const char *method, const char *tool)
{
	size_t ls = strnlen(server, 256), lm = strnlen(method, 256), lt = strnlen(tool, 256);
	char *key = malloc(ls + lm + lt + 3);
	struct row *r;

	if (!key)
		return NULL;
	copy_printable(key, server, ls);
	key[ls] = '\x1f';
	copy_printable(key + ls + 1, method, lm);
	key[ls + 1 + lm] = '\x1f';
	copy_printable(key + ls + lm + 2, tool, lt);
	key[ls + lm + lt + 2] = '\0';
	HASH_FIND_STR(s->rows, key, r);
	if (r) {
		free(key);
		return r;
	}
	if (s->nrows >= SUMMARY_ROWS_MAX) {
		free(key);
		return strcmp(server, METRICS_OTHER) ? row_get(s, METRICS_OTHER, METRICS_OTHER, "") : NULL;
	}
	if (!(r = calloc(1, sizeof(*r)))) {
		free(key);
		return NULL;
	}
	if (!(r->parts = malloc(ls + lm + lt + 3))) {
		free(key);
		free(r);
		return NULL;
	}
	memcpy(r->parts, key, ls + lm + lt + 3);
	r->parts[ls] = r->parts[ls + 1 + lm] = '\0';
	r->key = key;
	r->server = r->parts;
	r->method = r->parts + ls + 1;
	r->tool = r->parts + ls + lm + 2;
	HASH_ADD_KEYPTR(hh, s->rows, r->key, ls + lm + lt + 2, r);
	s->nrows++;
	return r;
}

static void row_error(struct row *r, const char *type)
{
	for (unsigned i = 0; i < r->nerrors; i++) {
		if (strcmp(r->errors[i].type, type) == 0) {
			r->errors[i].n++;
			return;
		}
	}
	if (r->nerrors == SUMMARY_ERROR_TYPES) {
		r->errors_other++;
		return;
	}
	snprintf(r->errors[r->nerrors].type, sizeof(r->errors[0].type), "%s", type);
	r->errors[r->nerrors++].n = 1;
}

/* "-32601/method_not_found", or the code alone when it has no name. */
static void error_type(char *buf, size_t len, long long code, const char *name)
{
	snprintf(buf, len, "%lld%s%s", code, name ? "/" : "", name ? name : "");
}

static void sink_summary_on_event(struct sink *sk, const struct sonde_event *ev)
{
	struct sink_summary *s = (struct sink_summary *)sk;
	const struct ev_call *c = &ev->call;
	char remote[128];
	const char *server = event_server_name(ev, remote, sizeof(remote));
	char code[48];
	struct row *r;
	bool named;

	if (!server || !server[0])
		server = "unknown";
	if (ev->type == EV_PROTOCOL_ERROR && (r = row_get(s, server, ROW_PROTOCOL_ERRORS, ""))) {
		r->calls++;
		r->response_bytes += ev->protocol_error.bytes;
		error_type(code, sizeof(code), ev->protocol_error.error_code, ev->protocol_error.error_name);
		row_error(r, code);
		return;
	}
	if (ev->type != EV_CALL)
		return;
	named = c->tool && c->method && (strcmp(c->method, "tools/call") == 0 || strcmp(c->method, "prompts/get") == 0);
	r = row_get(s, server, c->method ? c->method : "?", named ? c->tool : "");
	if (!r)
		return;
	/* Bytes are the exchanges'; the call a task ends was its tools/call and its polls. */
	if (!(c->rounds && c->task_id)) {
		r->request_bytes += c->request_bytes;
		r->response_bytes += c->response_bytes;
	}
	if (c->status == CALL_INPUT_REQUIRED || c->status == CALL_TASK)
		return; /* an exchange: the call it belongs to is counted when it ends */
	r->calls++;
	switch (c->status) {
	case CALL_CANCELLED:
		row_error(r, "cancelled");
		return; /* no latency: it never completed */
	case CALL_ORPHANED:
		row_error(r, "orphaned");
		return;
	case CALL_LOST:
		r->lost++;
		return;
	case CALL_CLOSED:
		r->closed++;
		return;
	case CALL_PROBE_FAILED:
		r->probes_failed++;
		if (!c->error_code)
			return; /* never answered */
		break;
	case CALL_ERROR:
		error_type(code, sizeof(code), c->error_code, c->error_name);
		row_error(r, code);
		break;
	case CALL_TOOL_ERROR:
		row_error(r, "tool_error");
		break;
	case CALL_HTTP_ERROR:
		snprintf(code, sizeof(code), "http_%u", c->http_status);
		row_error(r, code);
		break;
	case CALL_OK:
	case CALL_INPUT_REQUIRED:
	case CALL_TASK:
		break;
	}
	loghist_add(&r->h, c->rounds ? c->logical_ns : c->duration_ns);
}

static void format_duration(char *buf, size_t len, double ns)
{
	if (isnan(ns))
		snprintf(buf, len, "-");
	else if (ns < 1e3)
		snprintf(buf, len, "%.0fns", ns);
	else if (ns < 1e6)
		snprintf(buf, len, "%.1fus", ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, len, "%.2fms", ns / 1e6);
	else
		snprintf(buf, len, "%.2fs", ns / 1e9);
}

static void format_bytes(char *buf, size_t len, uint64_t b)
{
	if (b < 1024)
		snprintf(buf, len, "%llu", (unsigned long long)b);
	else if (b < 1024 * 1024)
		snprintf(buf, len, "%.1fK", b / 1024.0);
	else if (b < 1024ull * 1024 * 1024)
		snprintf(buf, len, "%.1fM", b / 1048576.0);
	else
		snprintf(buf, len, "%.1fG", b / 1073741824.0);
}

static void format_errors(char *buf, size_t len, const struct row *r)
{
	size_t o = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < r->nerrors && o < len; i++)
		o += snprintf(buf + o, len - o, "%s%s:%llu", o ? "," : "", r->errors[i].type,
			      (unsigned long long)r->errors[i].n);
	if (r->errors_other && o < len)
		o += snprintf(buf + o, len - o, "%sother:%llu", o ? "," : "", (unsigned long long)r->errors_other);
	if (!buf[0])
		snprintf(buf, len, "-");
}

static void format_other(char *buf, size_t len, const struct row *r)
{
	size_t o = 0;
	const struct {
		const char *name;
		uint64_t n;
	} other[] = { { "probe_failed", r->probes_failed }, { "lost", r->lost }, { "closed", r->closed } };

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(other) / sizeof(other[0]) && o < len; i++)
		if (other[i].n)
			o += snprintf(buf + o, len - o, "%s%s:%llu", o ? "," : "", other[i].name,
				      (unsigned long long)other[i].n);
	if (!buf[0])
		snprintf(buf, len, "-");
}

static int row_cmp(const void *a, const void *b)
{
	const struct row *x = *(const struct row *const *)a, *y = *(const struct row *const *)b;
	int cmp = strcmp(x->server, y->server);

	if (!cmp)
		cmp = strcmp(x->method, y->method);
	return cmp ? cmp : strcmp(x->tool, y->tool);
}

static void sink_summary_print(struct sink_summary *s)
{
	struct row **rows, *r, *tmp;
	unsigned n = 0;
	int ws = 6, wo = 9, we = 6;
	char errors[256], other[96], p50[32], p95[32], p99[32], in[32], out[32];

	if (!s->nrows) {
		fprintf(s->out, "mcpsonde: no calls observed\n");
		return;
	}
	if (!(rows = calloc(s->nrows, sizeof(*rows))))
		return;
	HASH_ITER(hh, s->rows, r, tmp) {
		int lo = (int)(strlen(r->method) + (r->tool[0] ? strlen(r->tool) + 1 : 0));
		rows[n++] = r;
		format_errors(errors, sizeof(errors), r);
		if ((int)strlen(r->server) > ws)
			ws = (int)strlen(r->server);
		if (lo > wo)
			wo = lo;
		if ((int)strlen(errors) > we)
			we = (int)strlen(errors);
	}
	ws = ws > 40 ? 40 : ws;
	wo = wo > 60 ? 60 : wo;
	we = we > 60 ? 60 : we;
	qsort(rows, n, sizeof(*rows), row_cmp);
	fprintf(s->out, "%-*s  %-*s %8s  %-*s %9s %9s %9s %8s %8s  %s\n", ws, "SERVER", wo, "OPERATION", "CALLS", we,
		"ERRORS", "P50", "P95", "P99", "REQ_B", "RESP_B", "NOT_ERRORS");
	for (unsigned i = 0; i < n; i++) {
		char op[512];

		r = rows[i];
		snprintf(op, sizeof(op), "%s%s%s", r->method, r->tool[0] ? " " : "", r->tool);
		format_errors(errors, sizeof(errors), r);
		format_duration(p50, sizeof(p50), loghist_quantile(&r->h, 0.50));
		format_duration(p95, sizeof(p95), loghist_quantile(&r->h, 0.95));
		format_duration(p99, sizeof(p99), loghist_quantile(&r->h, 0.99));
		format_bytes(in, sizeof(in), r->request_bytes);
		format_bytes(out, sizeof(out), r->response_bytes);
		format_other(other, sizeof(other), r);
		fprintf(s->out, "%-*.*s  %-*.*s %8llu  %-*.*s %9s %9s %9s %8s %8s  %s\n", ws, ws, r->server, wo, wo, op,
			(unsigned long long)r->calls, we, we, errors, p50, p95, p99, in, out, other);
	}
	fprintf(s->out, "(percentiles of answered calls, within 0.4%%, end to end for calls of several exchanges; "
			"cancelled, orphaned, lost and closed calls have none)\n");
	free(rows);
}

static void sink_summary_close(struct sink *sk)
{
	struct sink_summary *s = (struct sink_summary *)sk;
	struct row *r, *tmp;

	sink_summary_print(s);
	fflush(s->out);
	HASH_ITER(hh, s->rows, r, tmp) {
		HASH_DEL(s->rows, r);
		loghist_free(&r->h);
		free(r->key);
		free(r->parts);
		free(r);
	}
	free(s);
}

struct sink *sink_summary_new(FILE *out)
{
	struct sink_summary *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->out = out;
	s->sink.name = "summary";
	s->sink.on_event = sink_summary_on_event;
	s->sink.close = sink_summary_close;
	return &s->sink;
}

/* metrics.c -- counters, gauges and histograms with label sets, rendered in the
 * Prometheus text format 0.0.4 or OpenMetrics 1.0.0.
 *
 * Single-threaded: only the pipeline thread touches a registry (the HTTP thread serves
 * rendered snapshots, see http_metrics.c). Invariants: a family holds at most
 * METRICS_SERIES_MAX series (refusals are counted); label values are stored sanitized
 * (valid UTF-8, bounded length) so that two raw values that sanitize alike share a series
 * and the output never has duplicate series; series render in creation order. */
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "mcpsonde/metrics.h"
#include "mcpsonde/utf8.h"

struct metric_series {
	struct metric_series *hnext; /* hash chain */
	struct metric_series *next;  /* creation order */
	uint64_t hash;
	char *values[METRICS_LABELS_MAX]; /* sanitized, "" when absent */
	double value;                /* counter, gauge; histogram: sum */
	uint64_t count;              /* histogram */
	uint64_t *buckets;           /* histogram: nbounds + 1, not cumulative */
};

struct metric_family {
	struct metrics_registry *reg;
	struct metric_family *next;
	char *name, *help;
	enum metric_type type;
	unsigned nlabels;
	char *labels[METRICS_LABELS_MAX];
	double *bounds;
	unsigned nbounds;
	struct metric_series **table;
	size_t tcap, nseries;
	struct metric_series *head, *tail;
};

struct metrics_registry {
	struct metric_family *head, *tail;
	uint64_t series_dropped;
};

/* ---- label values ---------------------------------------------------------------- */

void metrics_label_sanitize(const char *in, char *out)
{
	utf8_sanitize(in ? in : "", in ? strlen(in) : 0, out, METRICS_LABEL_MAX + 1);
}

size_t metrics_label_escape(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *in; in++) {
		const char *rep = NULL;
		char c[2] = { *in, '\0' };

		if (*in == '\\')
			rep = "\\\\";
		else if (*in == '"')
			rep = "\\\"";
		else if (*in == '\n')
			rep = "\\n";
		for (const char *r = rep ? rep : c; *r; r++, o++)
			if (o + 1 < outlen)
				out[o] = *r;
	}
	if (outlen > 0)
		out[o < outlen ? o : outlen - 1] = '\0';
	return o;
}

/* ---- label folding ------------------------------------------------------------- */

struct label_folder {
	unsigned cap, n;
	size_t tcap;   /* power of two, > 2 * cap */
	char **slots;
};

static uint64_t hash_str(uint64_t h, const char *s)
{
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return (h ^ 0xff) * 0x100000001b3ull; /* separator: ("a","bc") != ("ab","c") */
}

struct label_folder *label_folder_new(unsigned cap)
{
	struct label_folder *lf = calloc(1, sizeof(*lf));

	if (!lf)
		return NULL;
	lf->cap = cap;
	for (lf->tcap = 16; lf->tcap < 2 * (size_t)cap + 2; lf->tcap <<= 1)
		;
	lf->slots = calloc(lf->tcap, sizeof(*lf->slots));
	if (!lf->slots) {
		free(lf);
		return NULL;
	}
	return lf;
}

void label_folder_free(struct label_folder *lf)
{
	if (!lf)
		return;
	for (size_t i = 0; i < lf->tcap; i++)
		free(lf->slots[i]);
	free(lf->slots);
	free(lf);
}

const char *label_folder_admit(struct label_folder *lf, const char *v, bool *folded)
{
	size_t i;

	if (folded)
		*folded = false;
	if (!v)
		v = "";
	for (i = hash_str(0xcbf29ce484222325ull, v) & (lf->tcap - 1); lf->slots[i]; i = (i + 1) & (lf->tcap - 1))
		if (strcmp(lf->slots[i], v) == 0)
			return lf->slots[i];
	if (lf->n >= lf->cap || !(lf->slots[i] = strdup(v))) {
		if (folded)
			*folded = true;
		return METRICS_OTHER;
	}
	lf->n++;
	return lf->slots[i];
}

unsigned label_folder_size(const struct label_folder *lf)
{
	return lf->n;
}

/* Open addressing without tombstones: the values after v in its run are placed again. */
void label_folder_remove(struct label_folder *lf, const char *v)
{
	size_t i, j;

	for (i = hash_str(0xcbf29ce484222325ull, v) & (lf->tcap - 1); lf->slots[i]; i = (i + 1) & (lf->tcap - 1))
		if (strcmp(lf->slots[i], v) == 0)
			break;
	if (!lf->slots[i])
		return;
	free(lf->slots[i]);
	lf->slots[i] = NULL;
	lf->n--;
	for (j = (i + 1) & (lf->tcap - 1); lf->slots[j]; j = (j + 1) & (lf->tcap - 1)) {
		char *moved = lf->slots[j];
		size_t k;

		lf->slots[j] = NULL;
		for (k = hash_str(0xcbf29ce484222325ull, moved) & (lf->tcap - 1); lf->slots[k]; k = (k + 1) & (lf->tcap - 1))
			;
		lf->slots[k] = moved;
	}
}

/* ---- registry ---------------------------------------------------------------------- */

struct metrics_registry *metrics_registry_new(void)
{
	return calloc(1, sizeof(struct metrics_registry));
}

static void series_free(struct metric_series *s)
{
	for (unsigned i = 0; i < METRICS_LABELS_MAX; i++)
		free(s->values[i]);
	free(s->buckets);
	free(s);
}

void metrics_family_reset(struct metric_family *f)
{
	struct metric_series *s, *next;

	for (s = f->head; s; s = next) {
		next = s->next;
		series_free(s);
	}
	f->head = f->tail = NULL;
	f->nseries = 0;
	if (f->table)
		memset(f->table, 0, f->tcap * sizeof(*f->table));
}

void metrics_registry_free(struct metrics_registry *r)
{
	struct metric_family *f, *next;

	if (!r)
		return;
	for (f = r->head; f; f = next) {
		next = f->next;
		metrics_family_reset(f);
		free(f->table);
		free(f->name);
		free(f->help);
		for (unsigned i = 0; i < f->nlabels; i++)
			free(f->labels[i]);
		free(f->bounds);
		free(f);
	}
	free(r);
}

static struct metric_family *family_new(struct metrics_registry *r, enum metric_type type, const char *name,
					const char *help, const char *const *labels)
{
	struct metric_family *f = calloc(1, sizeof(*f));

	if (!f)
		return NULL;
	f->reg = r;
	f->type = type;
	f->name = strdup(name);
	f->help = strdup(help);
	for (; labels && labels[f->nlabels] && f->nlabels < METRICS_LABELS_MAX; f->nlabels++)
		f->labels[f->nlabels] = strdup(labels[f->nlabels]);
	if (r->tail)
		r->tail->next = f;
	else
		r->head = f;
	r->tail = f;
	return f;
}

struct metric_family *metrics_counter(struct metrics_registry *r, const char *name, const char *help,
				      const char *const *labels)
{
	return family_new(r, METRIC_COUNTER, name, help, labels);
}

struct metric_family *metrics_gauge(struct metrics_registry *r, const char *name, const char *help,
				    const char *const *labels)
{
	return family_new(r, METRIC_GAUGE, name, help, labels);
}

struct metric_family *metrics_histogram(struct metrics_registry *r, const char *name, const char *help,
					const char *const *labels, const double *bounds, unsigned nbounds)
{
	struct metric_family *f = family_new(r, METRIC_HISTOGRAM, name, help, labels);

	if (!f)
		return NULL;
	f->bounds = malloc(nbounds * sizeof(*bounds));
	if (f->bounds) {
		memcpy(f->bounds, bounds, nbounds * sizeof(*bounds));
		f->nbounds = nbounds;
	}
	return f;
}

static bool family_grow(struct metric_family *f)
{
	size_t ncap = f->tcap ? f->tcap * 2 : 64;
	struct metric_series **nt = calloc(ncap, sizeof(*nt));

	if (!nt)
		return false;
	for (struct metric_series *s = f->head; s; s = s->next) {
		size_t i = s->hash & (ncap - 1);
		s->hnext = nt[i];
		nt[i] = s;
	}
	free(f->table);
	f->table = nt;
	f->tcap = ncap;
	return true;
}

/* Finds the series of these label values; creates it when create is set and the family
 * has room. NULL when absent or refused. */
static struct metric_series *series_get(struct metric_family *f, const char *const *values, bool create)
{
	char clean[METRICS_LABELS_MAX][METRICS_LABEL_MAX + 1];
	struct metric_series *s;
	uint64_t h = 0xcbf29ce484222325ull;
	unsigned i;

	for (i = 0; i < f->nlabels; i++) {
		metrics_label_sanitize(values ? values[i] : NULL, clean[i]);
		h = hash_str(h, clean[i]);
	}
	if (f->tcap) {
		for (s = f->table[h & (f->tcap - 1)]; s; s = s->hnext) {
			if (s->hash != h)
				continue;
			for (i = 0; i < f->nlabels && strcmp(s->values[i], clean[i]) == 0; i++)
				;
			if (i == f->nlabels)
				return s;
		}
	}
	if (!create)
		return NULL;
	if (f->nseries >= METRICS_SERIES_MAX || (f->nseries >= f->tcap / 2 && !family_grow(f))) {
		f->reg->series_dropped++;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	if (f->type == METRIC_HISTOGRAM && !(s->buckets = calloc(f->nbounds + 1, sizeof(*s->buckets))))
		goto fail;
	for (i = 0; i < f->nlabels; i++)
		if (!(s->values[i] = strdup(clean[i])))
			goto fail;
	s->hash = h;
	s->hnext = f->table[h & (f->tcap - 1)];
	f->table[h & (f->tcap - 1)] = s;
	if (f->tail)
		f->tail->next = s;
	else
		f->head = s;
	f->tail = s;
	f->nseries++;
	return s;
fail:
	if (s)
		series_free(s);
	f->reg->series_dropped++;
	return NULL;
}

void metrics_counter_add(struct metric_family *f, const char *const *values, double v)
{
	struct metric_series *s;

	if (!f || !(v >= 0)) /* counters only go up; NaN refused too */
		return;
	if ((s = series_get(f, values, true)))
		s->value += v;
}

void metrics_gauge_set(struct metric_family *f, const char *const *values, double v)
{
	struct metric_series *s;

	if (f && (s = series_get(f, values, true)))
		s->value = v;
}

void metrics_gauge_add(struct metric_family *f, const char *const *values, double v)
{
	struct metric_series *s;

	if (f && (s = series_get(f, values, true)))
		s->value += v;
}

void metrics_histogram_observe(struct metric_family *f, const char *const *values, double v)
{
	struct metric_series *s;
	unsigned i;

	if (!f || isnan(v) || !(s = series_get(f, values, true)))
		return;
	for (i = 0; i < f->nbounds && v > f->bounds[i]; i++)
		;
	s->buckets[i]++;
	s->count++;
	s->value += v;
}

size_t metrics_remove_series(struct metrics_registry *r, const char *label, const char *value)
{
	char clean[METRICS_LABEL_MAX + 1];
	size_t removed = 0;

	metrics_label_sanitize(value, clean);
	for (struct metric_family *f = r->head; f; f = f->next) {
		struct metric_series *s, *prev = NULL, *next;
		unsigned li;

		for (li = 0; li < f->nlabels && strcmp(f->labels[li], label) != 0; li++)
			;
		if (li == f->nlabels)
			continue;
		for (s = f->head; s; s = next) {
			struct metric_series **pp;

			next = s->next;
			if (strcmp(s->values[li], clean) != 0) {
				prev = s;
				continue;
			}
			for (pp = &f->table[s->hash & (f->tcap - 1)]; *pp != s; pp = &(*pp)->hnext)
				;
			*pp = s->hnext;
			if (prev)
				prev->next = next;
			else
				f->head = next;
			if (f->tail == s)
				f->tail = prev;
			f->nseries--;
			series_free(s);
			removed++;
		}
	}
	return removed;
}

size_t metrics_family_series(const struct metric_family *f)
{
	return f->nseries;
}

double metrics_value(const struct metric_family *f, const char *const *values)
{
	struct metric_series *s = series_get((struct metric_family *)f, values, false);

	if (!s)
		return 0;
	return f->type == METRIC_HISTOGRAM ? (double)s->count : s->value;
}

uint64_t metrics_series_dropped(const struct metrics_registry *r)
{
	return r->series_dropped;
}

/* ---- exposition ---------------------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
	bool failed;
};

static void buf_reserve(struct buf *b, size_t n)
{
	size_t ncap;
	char *np;

	if (b->failed || b->len + n + 1 <= b->cap)
		return;
	for (ncap = b->cap ? b->cap : 4096; ncap < b->len + n + 1; ncap *= 2)
		;
	if (!(np = realloc(b->p, ncap))) {
		b->failed = true;
		return;
	}
	b->p = np;
	b->cap = ncap;
}

static void buf_put(struct buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	if (b->failed)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, n);
	if (b->failed)
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

/* Shortest decimal that reads back as the same double; +Inf, -Inf, NaN as the formats
 * spell them. */
static void format_double(char *out, size_t len, double v)
{
	if (isnan(v)) {
		snprintf(out, len, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(out, len, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(out, len, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return;
	}
}

static void buf_escaped(struct buf *b, const char *v)
{
	size_t n = metrics_label_escape(v, NULL, 0);

	buf_reserve(b, n);
	if (b->failed)
		return;
	metrics_label_escape(v, b->p + b->len, n + 1);
	b->len += n;
}

/* {a="x",b="y",le="0.5"}: labels with empty values are left out; nothing when none. */
static void buf_labels(struct buf *b, const struct metric_family *f, const struct metric_series *s, const char *le)
{
	bool any = false;

	for (unsigned i = 0; i < f->nlabels; i++) {
		if (!s->values[i][0])
			continue;
		buf_puts(b, any ? "," : "{");
		buf_puts(b, f->labels[i]);
		buf_puts(b, "=\"");
		buf_escaped(b, s->values[i]);
		buf_puts(b, "\"");
		any = true;
	}
	if (le) {
		buf_puts(b, any ? ",le=\"" : "{le=\"");
		buf_puts(b, le);
		buf_puts(b, "\"");
		any = true;
	}
	if (any)
		buf_puts(b, "}");
}

/* HELP text: the text format escapes \\ and \n; OpenMetrics also \". */
static void buf_help(struct buf *b, const char *help, enum metrics_format fmt)
{
	for (; *help; help++) {
		if (*help == '\\')
			buf_puts(b, "\\\\");
		else if (*help == '\n')
			buf_puts(b, "\\n");
		else if (*help == '"' && fmt == METRICS_OPENMETRICS)
			buf_puts(b, "\\\"");
		else
			buf_put(b, help, 1);
	}
}

static void render_family(struct buf *b, const struct metric_family *f, enum metrics_format fmt)
{
	static const char *const type_names[] = { "counter", "gauge", "histogram" };
	/* Prometheus text: the family of a counter is named as its samples (_total);
	 * OpenMetrics: the family name has no suffix. */
	const char *suffix = f->type == METRIC_COUNTER && fmt == METRICS_TEXT ? "_total" : "";
	char num[64], le[64];

	if (!f->head && f->nlabels > 0)
		return; /* no series yet: nothing to say */
	buf_printf(b, "# HELP %s%s ", f->name, suffix);
	buf_help(b, f->help, fmt);
	buf_printf(b, "\n# TYPE %s%s %s\n", f->name, suffix, type_names[f->type]);
	if (!f->head) {
		/* an unlabelled family always has its one series, at zero */
		if (f->type == METRIC_HISTOGRAM) {
			buf_printf(b, "%s_bucket{le=\"+Inf\"} 0\n%s_sum 0\n%s_count 0\n", f->name, f->name, f->name);
			return;
		}
		buf_printf(b, "%s%s 0\n", f->name, f->type == METRIC_COUNTER ? "_total" : "");
		return;
	}
	for (const struct metric_series *s = f->head; s; s = s->next) {
		if (f->type != METRIC_HISTOGRAM) {
			buf_puts(b, f->name);
			if (f->type == METRIC_COUNTER)
				buf_puts(b, "_total");
			buf_labels(b, f, s, NULL);
			format_double(num, sizeof(num), s->value);
			buf_printf(b, " %s\n", num);
			continue;
		}
		uint64_t cum = 0;
		for (unsigned i = 0; i <= f->nbounds; i++) {
			cum += s->buckets[i];
			if (i < f->nbounds)
				format_double(le, sizeof(le), f->bounds[i]);
			else
				strcpy(le, "+Inf");
			buf_puts(b, f->name);
			buf_puts(b, "_bucket");
			buf_labels(b, f, s, le);
			buf_printf(b, " %llu\n", (unsigned long long)cum);
		}
		format_double(num, sizeof(num), s->value);
		buf_printf(b, "%s_sum", f->name);
		buf_labels(b, f, s, NULL);
		buf_printf(b, " %s\n%s_count", num, f->name);
		buf_labels(b, f, s, NULL);
		buf_printf(b, " %llu\n", (unsigned long long)s->count);
	}
}

char *metrics_render(const struct metrics_registry *r, enum metrics_format fmt, size_t *len)
{
	struct buf b = { 0 };

	buf_reserve(&b, 1);
	for (const struct metric_family *f = r->head; f; f = f->next)
		render_family(&b, f, fmt);
	if (fmt == METRICS_OPENMETRICS)
		buf_puts(&b, "# EOF\n");
	if (b.failed) {
		free(b.p);
		return NULL;
	}
	if (len)
		*len = b.len;
	return b.p;
}

const char *metrics_content_type(enum metrics_format fmt)
{
	return fmt == METRICS_OPENMETRICS ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
					  : "text/plain; version=0.0.4; charset=utf-8";
}

/* OpenMetrics only when the scraper lists it with a q above text/plain's (Prometheus
 * sends "application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5").
 * An OpenMetrics version other than 1.0.0 or 0.0.1 is not what we speak. */
enum metrics_format metrics_negotiate(const char *accept)
{
	double q_om = -1, q_text = -1;
	const char *p = accept;

	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char item[256], *q;
		double qv = 1;

		if (n >= sizeof(item))
			n = sizeof(item) - 1;
		memcpy(item, p, n);
		item[n] = '\0';
		if ((q = strstr(item, "q=")))
			qv = strtod(q + 2, NULL);
		if (strstr(item, "application/openmetrics-text")) {
			bool ok = !strstr(item, "version=") || strstr(item, "version=1.0.0") || strstr(item, "version=0.0.1");
			if (ok && qv > q_om)
				q_om = qv;
		} else if (strstr(item, "text/plain") || strstr(item, "*/*")) {
			if (qv > q_text)
				q_text = qv;
		}
		p = end ? end + 1 : NULL;
	}
	return q_om > 0 && q_om >= q_text ? METRICS_OPENMETRICS : METRICS_TEXT;
}

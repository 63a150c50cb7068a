/* report.c -- post-mortem report files: write (bounded), read back, render for a person.
 *
 * Invariants: a report file is complete or absent (written under a temporary name, then
 * linked to its final name, never overwriting another report); it is mode 0600 from its
 * creation; the directory holds at most max_files of our reports (only files named
 * mcpsonde-*.json.gz are ever removed); a report's uncompressed JSON is at most max_bytes,
 * the bulky parts (frames, then stderr, events, timeline...) being trimmed first and named
 * in "trimmed". The schema is in report.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "mcpsonde/event.h"
#include "mcpsonde/report.h"
#include "mcpsonde/utf8.h"

#define REPORT_FIELD_TRIM 1024   /* bytes kept of a long string of the process object */
#define REPORT_TRIMMED_RESERVE 128 /* room left for the "trimmed" list itself */

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static double jnum(const json_t *o, const char *key, double dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : dflt;
}

/* An integer member clamped to [min, max] (a report read from a file may hold anything:
 * converting an out-of-range double to an integer type is undefined). */
static long long jint(const json_t *o, const char *key, long long dflt, long long min, long long max)
{
	json_t *v = json_object_get(o, key);
	double d;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);
		return i < min ? min : i > max ? max : i;
	}
	if (!json_is_real(v))
		return dflt;
	d = json_real_value(v);
	return d < (double)min ? min : d > (double)max ? max : (long long)d;
}

void report_format_duration(double s, char *buf, size_t len)
{
	if (!(s >= 0))
		s = 0;
	if (s > 1e12)
		s = 1e12;
	if (s < 1.0)
		snprintf(buf, len, "%.0f ms", s * 1e3);
	else if (s < 60.0)
		snprintf(buf, len, "%.1f s", s);
	else if (s < 3600.0)
		snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, len, "%lldh%02dm", (long long)(s / 3600), (int)((long long)s % 3600 / 60));
}

void report_format_bytes(double b, char *buf, size_t len)
{
	if (b >= 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%.1f GiB", b / (1024.0 * 1024 * 1024));
	else if (b >= 1024.0 * 1024)
		snprintf(buf, len, "%.1f MiB", b / (1024.0 * 1024));
	else if (b >= 1024.0)
		snprintf(buf, len, "%.1f KiB", b / 1024.0);
	else
		snprintf(buf, len, "%.0f B", b);
}

void report_describe_exit(const json_t *exit, char *buf, size_t len)
{
	const char *reason = jstr(exit, "reason"), *sig = jstr(exit, "signal_name");
	int code = (int)jint(exit, "exit_code", -1, -1, 255), signo = (int)jint(exit, "signal", 0, 0, 127);
	bool core = json_is_true(json_object_get(exit, "core_dumped"));
	char signame[32];

	if (sig)
		snprintf(signame, sizeof(signame), "%s", sig);
	else
		snprintf(signame, sizeof(signame), "signal %d", signo);
	if (json_is_true(json_object_get(exit, "oom_killed")))
		snprintf(buf, len, "killed by the OOM killer");
	else if (json_is_true(json_object_get(exit, "normal")) && reason && !strcmp(reason, "shutdown"))
		snprintf(buf, len, "shut down by its client (stdin closed%s%s)", signo ? ", then " : "",
			 signo ? signame : "");
	else if (signo)
		snprintf(buf, len, "killed by %s%s", signame, core ? " (core dumped)" : "");
	else if (code >= 0)
		snprintf(buf, len, "exited with code %d", code);
	else
		snprintf(buf, len, "exited (%s)", reason ? reason : "unknown");
}

void report_headline(const json_t *report, char *buf, size_t len)
{
	const json_t *proc = json_object_get(report, "process"), *exit = json_object_get(report, "exit");
	const char *name = jstr(proc, "name");
	double uptime = jnum(proc, "uptime_s", -1);
	unsigned pending = (unsigned)jint(exit, "pending_calls", 0, 0, UINT_MAX);
	char how[128], age[32] = "", calls[48] = "";

	report_describe_exit(exit, how, sizeof(how));
	if (uptime >= 0) {
		char d[24];
		report_format_duration(uptime, d, sizeof(d));
		snprintf(age, sizeof(age), " after %s", d);
	}
	if (pending)
		snprintf(calls, sizeof(calls), ", %u call%s pending", pending, pending == 1 ? "" : "s");
	snprintf(buf, len, "%s (pid %lld) %s%s%s", name ? name : "?",
		 jint(proc, "pid", 0, 0, LLONG_MAX), how, age, calls);
}

/* ---- writing ---- */

static size_t report_json_size(const json_t *r)
{
	return json_dumpb(r, NULL, 0, EVENT_JSON_FLAGS);
}

/* Drops the older half of an array (at least one element); false when already empty. */
static bool report_halve_array(json_t *a)
{
	size_t n = json_array_size(a), drop = n - n / 2;

	if (!n)
		return false;
	while (drop--)
		json_array_remove(a, 0);
	return true;
}

static bool report_halve_stderr(json_t *r)
{
	json_t *err = json_object_get(r, "stderr");
	const char *tail = jstr(err, "tail"), *cut;
	size_t n;

	if (!tail || !*tail)
		return false;
	n = strlen(tail);
	cut = tail + n / 2;
	/* Keep whole lines: start after the next newline when there is one, else at a
	 * character's start (the tail must stay valid UTF-8). */
	if (strchr(cut, '\n') && strchr(cut, '\n')[1])
		cut = strchr(cut, '\n') + 1;
	while ((*cut & 0xc0) == 0x80)
		cut++;
	/* tail_bytes first: setting "tail" frees the string cut points into. */
	json_object_set_new(err, "tail_bytes", json_integer((json_int_t)strlen(cut)));
	json_object_set_new(err, "tail", json_string(cut));
	return true;
}

/* Cuts every string of the process object longer than REPORT_FIELD_TRIM (a cmdline, or a
 * server name a hostile peer made megabytes long), never inside a character, so that the cut
 * string is still valid JSON text. */
static bool report_trim_process(json_t *r)
{
	json_t *proc = json_object_get(r, "process"), *v;
	const char *key;
	bool cut = false;

	json_object_foreach (proc, key, v) {
		const char *str = json_string_value(v);
		if (!str || json_string_length(v) <= REPORT_FIELD_TRIM)
			continue;
		json_object_set_new(proc, key, json_stringn(str, utf8_cut(str, json_string_length(v), REPORT_FIELD_TRIM)));
		cut = true;
	}
	return cut;
}

/* Trims report until its JSON fits max_bytes; names what was trimmed. Each step halves one
 * part, so a report of any size converges in a logarithmic number of passes. */
static void report_fit(json_t *r, size_t max_bytes)
{
	json_t *frames = json_object_get(r, "frames");
	json_t *trimmed = json_array();
	const char *last = NULL;

	while (report_json_size(r) + REPORT_TRIMMED_RESERVE > max_bytes) {
		/* Both directions lose their older half in the same pass. */
		bool c2s = report_halve_array(json_object_get(frames, "client_to_server"));
		bool s2c = report_halve_array(json_object_get(frames, "server_to_client"));
		const char *what;
		if (c2s || s2c)
			what = "frames";
		else if (report_halve_stderr(r))
			what = "stderr";
		else if (report_halve_array(json_object_get(r, "events")))
			what = "events";
		else if (report_halve_array(json_object_get(r, "resources")))
			what = "resources";
		else if (report_halve_array(json_object_get(r, "timeline")))
			what = "timeline";
		else if (report_halve_array(json_object_get(r, "pending_calls")))
			what = "pending_calls";
		else if (report_trim_process(r))
			what = "process";
		else
			break; /* process (strings cut) and exit alone: a few KiB, under any max_bytes */
		if (!last || strcmp(last, what)) {
			json_array_append_new(trimmed, json_string(what));
			last = what;
		}
	}
	if (json_array_size(trimmed))
		json_object_set_new(r, "trimmed", trimmed);
	else
		json_decref(trimmed);
}

int report_dir_prepare(const char *dir, char *err, size_t errlen)
{
	char tmp[4096], *p;

	if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "report dir: path too long");
		return -1;
	}
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
			goto fail;
		*p = '/';
	}
	if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
		goto fail;
	if (access(tmp, W_OK | X_OK) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "report dir %s: %s", tmp, strerror(errno));
	return -1;
}

static bool report_is_ours(const char *name)
{
	size_t n = strlen(name), pl = strlen(REPORT_PREFIX), sl = strlen(REPORT_SUFFIX);

	return n > pl + sl && !strncmp(name, REPORT_PREFIX, pl) && !strcmp(name + n - sl, REPORT_SUFFIX);
}

struct report_entry {
	char name[256];
	struct timespec mtime;
};

static int report_entry_cmp(const void *a, const void *b)
{
	const struct report_entry *x = a, *y = b;

	if (x->mtime.tv_sec != y->mtime.tv_sec)
		return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
	if (x->mtime.tv_nsec != y->mtime.tv_nsec)
		return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
	return strcmp(x->name, y->name); /* names embed the UTC time: older first */
}

/* Removes the oldest of our reports beyond max_files. */
static void report_prune(const char *dir, unsigned max_files)
{
	struct report_entry *v = NULL;
	size_t n = 0, cap = 0, i;
	struct dirent *de;
	DIR *d = opendir(dir);
	int dfd;

	if (!d)
		return;
	dfd = dirfd(d);
	while ((de = readdir(d))) {
		struct stat st;
		if (!report_is_ours(de->d_name) || strlen(de->d_name) >= sizeof(v->name))
			continue;
		if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 128;
			struct report_entry *nv = realloc(v, ncap * sizeof(*nv));
			if (!nv)
				break;
			v = nv;
			cap = ncap;
		}
		snprintf(v[n].name, sizeof(v[n].name), "%s", de->d_name);
		v[n].mtime = st.st_mtim;
		n++;
	}
	if (n > max_files) {
		qsort(v, n, sizeof(*v), report_entry_cmp);
		for (i = 0; i < n - max_files; i++)
			unlinkat(dfd, v[i].name, 0);
	}
	closedir(d);
	free(v);
}

/* Keeps a name usable in a file name: [A-Za-z0-9._-], others become '_'. */
static void report_safe_name(const char *in, char *out, size_t len)
{
	size_t i;

	for (i = 0; in && in[i] && i + 1 < len; i++) {
		char c = in[i];
		out[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
				 c == '.' || c == '-' || c == '_' ? c : '_';
	}
	if (i == 0 && len > 1)
		out[i++] = '_';
	out[i] = '\0';
}

int report_write(const struct report_opts *o, json_t *report, const char *comm, uint32_t pid,
		 uint64_t real_ns, char *path, size_t pathlen, char *err, size_t errlen)
{
	size_t max_bytes = o->max_bytes ? o->max_bytes : REPORT_MAX_BYTES_DEFAULT;
	char tmp[4096], safe[32], stamp[40];
	time_t secs = (time_t)(real_ns / 1000000000ull);
	struct tm tm;
	char *text = NULL;
	gzFile gz = NULL;
	int fd = -1, attempt;
	size_t len;

	if (!o->dir || !*o->dir) {
		snprintf(err, errlen, "no report directory");
		return -1;
	}
	if (report_dir_prepare(o->dir, err, errlen) < 0)
		return -1;
	report_fit(report, max_bytes);
	text = json_dumps(report, EVENT_JSON_FLAGS);
	if (!text) {
		snprintf(err, errlen, "report: cannot encode JSON");
		return -1;
	}
	len = strlen(text);

	snprintf(tmp, sizeof(tmp), "%s/.mcpsonde-tmp-XXXXXX", o->dir);
	fd = mkstemp(tmp); /* 0600 from creation: reports can hold stderr and arguments */
	if (fd < 0) {
		snprintf(err, errlen, "report %s: %s", tmp, strerror(errno));
		goto fail;
	}
	fchmod(fd, 0600);
	gz = gzdopen(fd, "wb6");
	if (!gz) {
		snprintf(err, errlen, "report: gzdopen failed");
		close(fd);
		goto fail_unlink;
	}
	if (gzwrite(gz, text, (unsigned)len) != (int)len) {
		int zerr;
		snprintf(err, errlen, "report write: %s", gzerror(gz, &zerr));
		gzclose(gz);
		goto fail_unlink;
	}
	if (gzclose(gz) != Z_OK) {
		snprintf(err, errlen, "report close: %s", strerror(errno));
		goto fail_unlink;
	}

	gmtime_r(&secs, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	report_safe_name(comm, safe, sizeof(safe));
	/* link() never replaces: two reports in the same microsecond get distinct names. */
	for (attempt = 0; attempt < 100; attempt++) {
		char suffix[16] = "";
		if (attempt)
			snprintf(suffix, sizeof(suffix), "-%d", attempt);
		snprintf(path, pathlen, "%s/" REPORT_PREFIX "%s-%u-%s.%06uZ%s" REPORT_SUFFIX, o->dir, safe,
			 pid, stamp, (unsigned)(real_ns % 1000000000ull / 1000), suffix);
		if (link(tmp, path) == 0)
			break;
		if (errno != EEXIST) {
			snprintf(err, errlen, "report %s: %s", path, strerror(errno));
			goto fail_unlink;
		}
	}
	if (attempt == 100) {
		snprintf(err, errlen, "report %s: name taken", path);
		goto fail_unlink;
	}
	unlink(tmp);
	free(text);
	report_prune(o->dir, o->max_files ? o->max_files : REPORT_MAX_FILES_DEFAULT);
	return 0;

fail_unlink:
	unlink(tmp);
fail:
	free(text);
	return -1;
}

/* ---- reading ---- */

/* jansson allocates through these, process-wide, from the first report_read on. Outside a
 * parse they are malloc and free. During report_read's parse a per-thread budget caps the
 * tree: a report made of tiny values ("[{},{},...]" costs ~80 bytes of tree per byte of
 * text) fails as "out of memory" instead of taking the machine. Blocks are counted by
 * malloc_usable_size, so one allocated outside a parse and freed inside it (or the other
 * way round) needs no header. */
static __thread struct {
	bool armed, exceeded;
	size_t used, limit;
} parse_budget;

static void *report_json_malloc(size_t n)
{
	void *p;

	if (parse_budget.armed && (parse_budget.used >= parse_budget.limit || n > parse_budget.limit - parse_budget.used)) {
		parse_budget.exceeded = true;
		return NULL;
	}
	p = malloc(n);
	if (p && parse_budget.armed)
		parse_budget.used += malloc_usable_size(p);
	return p;
}

static void report_json_free(void *p)
{
	if (p && parse_budget.armed) {
		size_t n = malloc_usable_size(p);
		parse_budget.used -= n < parse_budget.used ? n : parse_budget.used;
	}
	free(p);
}

static void report_json_hook(void)
{
	json_set_alloc_funcs(report_json_malloc, report_json_free);
}

/* Inflates path into a buffer of at most max_bytes: a report is no larger by construction
 * (report_fit), so more is refused rather than read. That also bounds the inflation ratio
 * at max_bytes / file size; deflate itself cannot exceed ~1032:1. */
static char *report_inflate(const char *path, size_t max_bytes, size_t *lenp, char *err, size_t errlen)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	gzFile gz;
	int n;

	if (!buf) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	gz = gzopen(path, "rb"); /* reads plain JSON too */
	if (!gz) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
		free(buf);
		return NULL;
	}
	for (;;) {
		if (len == cap) { /* only while cap <= max_bytes: len > max_bytes ends the loop first */
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		/* At most one byte past max_bytes is ever read: enough to know it is too large. */
		n = gzread(gz, buf + len, (unsigned)((cap < max_bytes + 1 ? cap : max_bytes + 1) - len));
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len > max_bytes) {
			snprintf(err, errlen, "%s: inflates past %zu bytes, the largest report (--max-report-size): refusing it",
				 path, max_bytes);
			goto fail;
		}
	}
	if (n < 0) {
		int zerr;
		snprintf(err, errlen, "%s: %s", path, gzerror(gz, &zerr));
		goto fail;
	}
	gzclose(gz);
	*lenp = len;
	return buf;
fail:
	gzclose(gz);
	free(buf);
	return NULL;
}

json_t *report_read(const char *path, size_t max_bytes, char *err, size_t errlen)
{
	static pthread_once_t hook_once = PTHREAD_ONCE_INIT;
	json_error_t jerr;
	size_t len;
	char *buf;
	json_t *r;

	if (!max_bytes)
		max_bytes = REPORT_MAX_BYTES_DEFAULT;
	buf = report_inflate(path, max_bytes, &len, err, errlen);
	if (!buf)
		return NULL;
	pthread_once(&hook_once, report_json_hook);
	parse_budget.used = 0;
	parse_budget.limit = REPORT_PARSE_FACTOR * len + (1u << 20);
	parse_budget.exceeded = false;
	parse_budget.armed = true;
	/* jansson bounds the nesting itself (JSON_PARSER_MAX_DEPTH, 2048 in Debian's 2.14). */
	r = json_loadb(buf, len, 0, &jerr);
	parse_budget.armed = false;
	free(buf);
	if (!r && parse_budget.exceeded) {
		snprintf(err, errlen, "%s: not a report: its JSON would take more than %zu MiB to hold (%zu bytes of text)",
			 path, parse_budget.limit >> 20, len);
		return NULL;
	}
	if (!r) {
		snprintf(err, errlen, "%s: not a report: %s (line %d)", path, jerr.text, jerr.line);
		return NULL;
	}
	if (!json_is_object(r) || !json_is_integer(json_object_get(r, "mcpsonde_report"))) {
		snprintf(err, errlen, "%s: not an mcpsonde report", path);
		json_decref(r);
		return NULL;
	}
	return r;
}

/* ---- rendering ----
 *
 * The report may come from anywhere: every member is looked up with its type checked
 * (jstr, jint, jnum give NULL or a default otherwise), every string goes through
 * render_text (bounded, control characters escaped, so a report cannot drive the terminal),
 * and every list prints at most RENDER_ROWS rows. Output is thus bounded whatever the file
 * holds; --json prints it all. */

#define RENDER_TEXT_MAX 512     /* bytes of one value */
#define RENDER_STDERR_LINE_MAX 1024
#define RENDER_ROWS 256         /* rows of one list */
#define RENDER_STDERR_LINES 1000

/* Prints at most max bytes of s[0..len) (cut on a character boundary), escaped as the text
 * output escapes a server's strings (utf8_escape_controls), then "..." when cut; then spaces
 * up to width. */
static void render_textn(FILE *out, const char *s, size_t len, size_t max, size_t width)
{
	char buf[4 * RENDER_STDERR_LINE_MAX + 1]; /* escapes: at most 4 bytes per byte (\xHH) */
	size_t cut = utf8_cut(s, len, max < RENDER_STDERR_LINE_MAX ? max : RENDER_STDERR_LINE_MAX);
	size_t printed = utf8_escape_controls(s, cut, buf, sizeof(buf));

	fputs(buf, out);
	if (cut < len) {
		fputs("...", out);
		printed += 3;
	}
	for (; printed < width; printed++)
		fputc(' ', out);
}

static void render_text(FILE *out, const char *s, size_t max, size_t width)
{
	render_textn(out, s ? s : "", s ? strlen(s) : 0, max, width);
}

/* A string member, or dflt. */
static const char *jstr_or(const json_t *o, const char *key, const char *dflt)
{
	const char *v = jstr(o, key);

	return v ? v : dflt;
}

static void render_field(FILE *out, const char *label, const char *value)
{
	if (!value || !*value)
		return;
	fprintf(out, "  %-10s ", label);
	render_text(out, value, RENDER_TEXT_MAX, 0);
	fputc('\n', out);
}

static void render_more(FILE *out, size_t shown, size_t total)
{
	if (total > shown)
		fprintf(out, "  ... %zu more (postmortem --json shows them)\n", total - shown);
}

/* "node[4242] /usr/bin/node": the process at the other end of the server's stdio. */
/* Where a process runs, from its "resource": "pod NS/POD container C", "container NAME", or
 * "" when it has none (the host, or not known). */
static const char *render_where(const json_t *res, char *buf, size_t len)
{
	const char *pod = jstr(res, "k8s.pod.name"), *name = jstr(res, "container.name");

	if (pod)
		snprintf(buf, len, "pod %s/%s container %s", jstr_or(res, "k8s.namespace.name", "?"), pod,
			 jstr_or(res, "k8s.container.name", "?"));
	else if (name)
		snprintf(buf, len, "container %s", name);
	else
		buf[0] = '\0';
	return buf;
}

static void render_peer(FILE *out, const char *label, const json_t *p)
{
	const char *comm = jstr(p, "comm"), *exe = jstr(p, "exe");
	char line[1024], where[3 * 256 + 32];

	if (!json_is_integer(json_object_get(p, "pid")))
		return;
	if (json_is_true(json_object_get(p, "same_container")))
		snprintf(where, sizeof(where), "the server's container");
	else
		render_where(json_object_get(p, "resource"), where, sizeof(where));
	snprintf(line, sizeof(line), "%s[%lld]%s%s%s%s", comm ? comm : "?", (long long)json_integer_value(json_object_get(p, "pid")),
		 exe ? " " : "", exe ? exe : "", where[0] ? ", in " : "", where);
	render_field(out, label, line);
}

static void render_identity(const json_t *r, FILE *out)
{
	const json_t *proc = json_object_get(r, "process"), *exit = json_object_get(r, "exit");
	const char *sname = jstr(proc, "server_name"), *cname = jstr(proc, "client_name");
	char line[512], where[3 * 256 + 32];

	render_field(out, "command", jstr(proc, "cmdline"));
	render_field(out, "exe", jstr(proc, "exe"));
	render_field(out, "cgroup", jstr(proc, "cgroup"));
	render_field(out, "where", render_where(json_object_get(proc, "resource"), where, sizeof(where)));
	if (sname) {
		const char *v = jstr(proc, "server_version");
		snprintf(line, sizeof(line), "%s%s%s (comm %s)", sname, v ? " " : "", v ? v : "",
			 jstr_or(proc, "comm", "?"));
		render_field(out, "server", line);
	}
	if (cname) {
		const char *v = jstr(proc, "client_version"), *pv = jstr(proc, "protocol_version");
		snprintf(line, sizeof(line), "%s%s%s%s%s", cname, v ? " " : "", v ? v : "",
			 pv ? ", protocol " : "", pv ? pv : "");
		render_field(out, "client", line);
	}
	render_peer(out, "client pid", json_object_get(proc, "client_process"));
	render_peer(out, "via", json_object_get(proc, "relay"));
	render_field(out, "started", jstr_or(proc, "started_at", jstr(proc, "first_seen_at")));
	render_field(out, "died", jstr(exit, "at"));
	if (json_is_true(json_object_get(exit, "stdin_closed")))
		render_field(out, "stdin", "closed by the client before the exit");
}

static void render_pending(const json_t *r, FILE *out)
{
	const json_t *calls = json_object_get(r, "pending_calls"), *c;
	size_t total = (size_t)jint(json_object_get(r, "exit"), "pending_calls", 0, 0, UINT_MAX), i;

	if (!json_array_size(calls) && !total)
		return;
	fprintf(out, "\nPending at death (%zu):\n", json_array_size(calls) > total ? json_array_size(calls) : total);
	json_array_foreach (calls, i, c) {
		char age[32];
		if (i == RENDER_ROWS)
			break;
		report_format_duration(jnum(c, "age_s", 0), age, sizeof(age));
		fputs("  ", out);
		render_text(out, jstr_or(c, "method", "?"), 64, 24);
		fputs(" ", out);
		render_text(out, jstr_or(c, "tool", "-"), 64, 32);
		fputs(" id=", out);
		render_text(out, jstr_or(c, "id", "?"), 64, 8);
		fprintf(out, " age %s%s\n", age,
			json_is_true(json_object_get(c, "orphaned")) ? "" : " (seen by the recorder only)");
	}
	render_more(out, i, json_array_size(calls));
}

static void render_timeline(const json_t *r, FILE *out)
{
	const json_t *tl = json_object_get(r, "timeline"), *e;
	size_t i, n = json_array_size(tl), skip = n > RENDER_ROWS ? n - RENDER_ROWS : 0;

	if (!n)
		return;
	fprintf(out, "\nTimeline (seconds before death):\n");
	if (skip)
		fprintf(out, "  ... %zu earlier entries (postmortem --json shows them)\n", skip);
	for (i = skip; i < n; i++) {
		double t;
		e = json_array_get(tl, i);
		t = jnum(e, "t", 0);
		fprintf(out, "  %9.3f  ", t < -1e9 ? -1e9 : t > 1e9 ? 1e9 : t);
		render_text(out, jstr_or(e, "kind", ""), 32, 13);
		fputs(" ", out);
		render_text(out, jstr_or(e, "summary", ""), RENDER_TEXT_MAX, 0);
		fputc('\n', out);
	}
}

static void render_resources(const json_t *r, FILE *out)
{
	const json_t *res = json_object_get(r, "resources"), *first, *last, *e;
	double rss_min = 0, rss_max = 0, span, cpu;
	char a[24], b[24], c[24], d[32];
	size_t i, n = json_array_size(res);

	if (!n)
		return;
	json_array_foreach (res, i, e) {
		double rss = jnum(e, "rss_bytes", 0);
		if (i == 0 || rss < rss_min)
			rss_min = rss;
		if (rss > rss_max)
			rss_max = rss;
	}
	first = json_array_get(res, 0);
	last = json_array_get(res, n - 1);
	span = jnum(last, "t", 0) - jnum(first, "t", 0);
	cpu = (jnum(last, "cpu_ns", 0) - jnum(first, "cpu_ns", 0)) / 1e9;
	report_format_bytes(jnum(last, "rss_bytes", 0), a, sizeof(a));
	report_format_bytes(rss_min, b, sizeof(b));
	report_format_bytes(rss_max, c, sizeof(c));
	report_format_duration(span, d, sizeof(d));
	fprintf(out, "\nResources (%zu samples over %s):\n", n, d);
	fprintf(out, "  rss        %s last, %s min, %s max\n", a, b, c);
	if (span > 0 && cpu >= 0 && cpu < 1e12)
		fprintf(out, "  cpu        %.2f s used (%.0f%% of one core)\n", cpu, 100.0 * cpu / span);
	fprintf(out, "  threads    %lld, state ", jint(last, "threads", 0, 0, LLONG_MAX));
	render_text(out, jstr_or(last, "state", "?"), 8, 0);
	fputc('\n', out);
}

static void render_health(const json_t *r, FILE *out)
{
	const json_t *h = json_object_get(r, "capture_health"), *by = json_object_get(h, "loss_by_reason");
	const json_t *rec = json_object_get(h, "recorder"), *trimmed = json_object_get(r, "trimmed"), *v;
	const char *key;
	size_t i, rows = 0;

	fprintf(out, "\nCapture: %s\n", json_is_true(json_object_get(h, "lost")) ? "INCOMPLETE, something was lost" :
										   "complete, nothing lost");
	json_object_foreach ((json_t *)by, key, v) {
		char b[24];
		if (rows++ == RENDER_ROWS)
			break;
		report_format_bytes(jnum(v, "bytes", 0), b, sizeof(b));
		fputs("  ", out);
		render_text(out, key, 32, 22);
		fprintf(out, " %lld records, %s\n", jint(v, "records", 0, 0, LLONG_MAX), b);
	}
	json_object_foreach ((json_t *)rec, key, v) {
		if (!json_is_integer(v) || json_integer_value(v) <= 0)
			continue;
		if (rows++ == 2 * RENDER_ROWS)
			break;
		fputs("  recorder ", out);
		render_text(out, key, 32, 13);
		fprintf(out, " %lld\n", (long long)json_integer_value(v));
	}
	if (json_array_size(trimmed)) {
		fprintf(out, "  report trimmed to its size cap:");
		json_array_foreach (trimmed, i, v) {
			if (i == RENDER_ROWS)
				break;
			fputc(' ', out);
			render_text(out, json_string_value(v) ? json_string_value(v) : "?", 32, 0);
		}
		fputc('\n', out);
	}
}

/* The last RENDER_STDERR_LINES lines of the tail, each cut to RENDER_STDERR_LINE_MAX. */
static void render_stderr(const json_t *r, FILE *out)
{
	const json_t *err = json_object_get(r, "stderr"), *tailv = json_object_get(err, "tail");
	const char *tail = json_string_value(tailv), *p, *end;
	size_t len = json_string_length(tailv), lines = 0;
	char b[24];

	if (!tail || !len) {
		fprintf(out, "\nstderr: nothing captured\n");
		return;
	}
	end = tail + len;
	/* Back from the end (its own newline aside) to the start of the last lines. */
	p = end[-1] == '\n' ? end - 1 : end;
	while (p > tail && !(p[-1] == '\n' && ++lines == RENDER_STDERR_LINES))
		p--;
	report_format_bytes((double)len, b, sizeof(b));
	fprintf(out, "\nstderr (last %s of %lld lines):\n", b, jint(err, "lines_seen", 0, 0, LLONG_MAX));
	if (p > tail)
		fprintf(out, "  | ... (earlier lines: postmortem --json shows them)\n");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		fputs("  | ", out);
		render_textn(out, p, n, RENDER_STDERR_LINE_MAX, 0);
		fputc('\n', out);
		p += n + (nl ? 1 : 0);
	}
}

void report_render(const json_t *r, FILE *out)
{
	char headline[512];

	report_headline(r, headline, sizeof(headline));
	render_text(out, headline, sizeof(headline), 0);
	fputc('\n', out);
	render_identity(r, out);
	render_pending(r, out);
	render_timeline(r, out);
	render_resources(r, out);
	render_health(r, out);
	render_stderr(r, out);
}

int report_print_file(const char *path, bool json, size_t max_bytes, FILE *out, char *err, size_t errlen)
{
	json_t *r = report_read(path, max_bytes, err, errlen);

	if (!r)
		return -1;
	if (json) {
		json_dumpf(r, out, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
		fputc('\n', out);
	} else {
		report_render(r, out);
	}
	json_decref(r);
	if (fflush(out) != 0 || ferror(out)) {
		snprintf(err, errlen, "write: %s", strerror(errno));
		return -1;
	}
	return 0;
}

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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "mcpsonde/event.h"
#include "mcpsonde/report.h"
#include "mcpsonde/utf8.h"

#define REPORT_READ_MAX (256u << 20) /* a file inflating past this is not one of ours */
#define REPORT_CMDLINE_TRIM 1024

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static double jnum(const json_t *o, const char *key, double dflt)
{
	json_t *v = json_object_get(o, key);

	return json_is_number(v) ? json_number_value(v) : dflt;
}

void report_format_duration(double s, char *buf, size_t len)
{
	if (s < 0)
		s = 0;
	if (s < 1.0)
		snprintf(buf, len, "%.0f ms", s * 1e3);
	else if (s < 60.0)
		snprintf(buf, len, "%.1f s", s);
	else if (s < 3600.0)
		snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
	else
		snprintf(buf, len, "%dh%02dm", (int)(s / 3600), (int)s % 3600 / 60);
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
	int code = (int)jnum(exit, "exit_code", -1), signo = (int)jnum(exit, "signal", 0);
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
	unsigned pending = (unsigned)jnum(exit, "pending_calls", 0);
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
		 (long long)jnum(proc, "pid", 0), how, age, calls);
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

static bool report_trim_cmdline(json_t *r)
{
	json_t *proc = json_object_get(r, "process");
	const char *cmd = jstr(proc, "cmdline");
	char *cut;

	if (!cmd || strlen(cmd) <= REPORT_CMDLINE_TRIM)
		return false;
	cut = strndup(cmd, utf8_cut(cmd, strlen(cmd), REPORT_CMDLINE_TRIM));
	if (!cut)
		return false;
	json_object_set_new(proc, "cmdline", json_string(cut));
	free(cut);
	return true;
}

/* Trims report until its JSON fits max_bytes; names what was trimmed. Each step halves one
 * part, so a report of any size converges in a logarithmic number of passes. */
static void report_fit(json_t *r, size_t max_bytes)
{
	json_t *frames = json_object_get(r, "frames");
	json_t *trimmed = json_array();
	const char *last = NULL;

	while (report_json_size(r) + 64 > max_bytes) {
		const char *what;
		if (report_halve_array(json_object_get(frames, "client_to_server")) |
		    report_halve_array(json_object_get(frames, "server_to_client")))
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
		else if (report_trim_cmdline(r))
			what = "cmdline";
		else
			break; /* process and exit alone: written as they are */
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

json_t *report_read(const char *path, char *err, size_t errlen)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	json_error_t jerr;
	json_t *r;
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
	while ((n = gzread(gz, buf + len, (unsigned)(cap - len))) > 0) {
		len += (size_t)n;
		if (len == cap) {
			char *nb;
			if (cap >= REPORT_READ_MAX) {
				snprintf(err, errlen, "%s: larger than %u MiB", path, REPORT_READ_MAX >> 20);
				goto fail;
			}
			nb = realloc(buf, cap * 2);
			if (!nb) {
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (n < 0) {
		int zerr;
		snprintf(err, errlen, "%s: %s", path, gzerror(gz, &zerr));
		goto fail;
	}
	gzclose(gz);
	r = json_loadb(buf, len, 0, &jerr);
	free(buf);
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
fail:
	gzclose(gz);
	free(buf);
	return NULL;
}

/* ---- rendering ---- */

/* Every string of a report came from an observed process or from a file that may have been
 * tampered with: shown with its terminal controls escaped. Short ones through safe(), long
 * ones (command lines, stderr) with utf8_fputs_safe. */
static const char *safe(const char *s, char *buf, size_t len)
{
	utf8_escape_controls(s ? s : "", s ? strlen(s) : 0, buf, len);
	return buf;
}

static void render_field(FILE *out, const char *label, const char *value)
{
	if (value && *value) {
		fprintf(out, "  %-10s ", label);
		utf8_fputs_safe(value, out);
		fputc('\n', out);
	}
}

/* "node[4242] /usr/bin/node": the process at the other end of the server's stdio. */
static void render_peer(FILE *out, const char *label, const json_t *p)
{
	const char *comm = jstr(p, "comm"), *exe = jstr(p, "exe");
	char line[512];

	if (!json_is_integer(json_object_get(p, "pid")))
		return;
	snprintf(line, sizeof(line), "%s[%lld]%s%s", comm ? comm : "?", (long long)json_integer_value(json_object_get(p, "pid")),
		 exe ? " " : "", exe ? exe : "");
	render_field(out, label, line);
}

static void render_identity(const json_t *r, FILE *out)
{
	const json_t *proc = json_object_get(r, "process"), *exit = json_object_get(r, "exit");
	const char *sname = jstr(proc, "server_name"), *cname = jstr(proc, "client_name");
	char line[512];

	render_field(out, "command", jstr(proc, "cmdline"));
	render_field(out, "exe", jstr(proc, "exe"));
	render_field(out, "cgroup", jstr(proc, "cgroup"));
	if (sname) {
		const char *v = jstr(proc, "server_version");
		snprintf(line, sizeof(line), "%s%s%s (comm %s)", sname, v ? " " : "", v ? v : "",
			 jstr(proc, "comm") ? jstr(proc, "comm") : "?");
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
	render_field(out, "started", jstr(proc, "started_at") ? jstr(proc, "started_at") : jstr(proc, "first_seen_at"));
	render_field(out, "died", jstr(exit, "at"));
	if (json_is_true(json_object_get(exit, "stdin_closed")))
		render_field(out, "stdin", "closed by the client before the exit");
}

static void render_pending(const json_t *r, FILE *out)
{
	const json_t *calls = json_object_get(r, "pending_calls"), *c;
	unsigned total = (unsigned)jnum(json_object_get(r, "exit"), "pending_calls", 0);
	size_t i;

	if (!json_array_size(calls) && !total)
		return;
	fprintf(out, "\nPending at death (%zu):\n", json_array_size(calls) > total ? json_array_size(calls) : total);
	json_array_foreach (calls, i, c) {
		const char *tool = jstr(c, "tool");
		char age[24], m[256], t[256], id[256];
		report_format_duration(jnum(c, "age_s", 0), age, sizeof(age));
		fprintf(out, "  %-24s %-32s id=%-8s age %s%s\n", safe(jstr(c, "method") ? jstr(c, "method") : "?", m, sizeof(m)),
			safe(tool ? tool : "-", t, sizeof(t)), safe(jstr(c, "id") ? jstr(c, "id") : "?", id, sizeof(id)), age,
			json_is_true(json_object_get(c, "orphaned")) ? "" : " (seen by the recorder only)");
	}
}

static void render_timeline(const json_t *r, FILE *out)
{
	const json_t *tl = json_object_get(r, "timeline"), *e;
	size_t i;

	if (!json_array_size(tl))
		return;
	fprintf(out, "\nTimeline (seconds before death):\n");
	json_array_foreach (tl, i, e) {
		char kind[64];
		fprintf(out, "  %9.3f  %-13s ", jnum(e, "t", 0), safe(jstr(e, "kind"), kind, sizeof(kind)));
		utf8_fputs_safe(jstr(e, "summary"), out);
		fputc('\n', out);
	}
}

static void render_resources(const json_t *r, FILE *out)
{
	const json_t *res = json_object_get(r, "resources"), *first, *last, *e;
	double rss_min = 0, rss_max = 0, span, cpu;
	char a[24], b[24], c[24], d[24], state[32];
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
	if (span > 0)
		fprintf(out, "  cpu        %.2f s used (%.0f%% of one core)\n", cpu, 100.0 * cpu / span);
	fprintf(out, "  threads    %lld, state %s\n", (long long)jnum(last, "threads", 0),
		safe(jstr(last, "state") ? jstr(last, "state") : "?", state, sizeof(state)));
}

static void render_health(const json_t *r, FILE *out)
{
	const json_t *h = json_object_get(r, "capture_health"), *by = json_object_get(h, "loss_by_reason");
	const json_t *rec = json_object_get(h, "recorder"), *trimmed = json_object_get(r, "trimmed"), *v;
	const char *key;
	size_t i;

	fprintf(out, "\nCapture: %s\n", json_is_true(json_object_get(h, "lost")) ? "INCOMPLETE, something was lost" :
										   "complete, nothing lost");
	json_object_foreach ((json_t *)by, key, v) {
		char b[24], k[128];
		report_format_bytes(jnum(v, "bytes", 0), b, sizeof(b));
		fprintf(out, "  %-22s %lld records, %s\n", safe(key, k, sizeof(k)), (long long)jnum(v, "records", 0), b);
	}
	json_object_foreach ((json_t *)rec, key, v) {
		char k[128];
		if (json_is_integer(v) && json_integer_value(v) > 0)
			fprintf(out, "  recorder %-13s %lld\n", safe(key, k, sizeof(k)), (long long)json_integer_value(v));
	}
	if (json_array_size(trimmed)) {
		fprintf(out, "  report trimmed to its size cap:");
		json_array_foreach (trimmed, i, v) {
			char t[128];
			fprintf(out, " %s", safe(json_string_value(v), t, sizeof(t)));
		}
		fputc('\n', out);
	}
}

static void render_stderr(const json_t *r, FILE *out)
{
	const json_t *err = json_object_get(r, "stderr");
	const char *tail = jstr(err, "tail"), *p;
	char b[24];

	if (!tail || !*tail) {
		fprintf(out, "\nstderr: nothing captured\n");
		return;
	}
	report_format_bytes((double)strlen(tail), b, sizeof(b));
	fprintf(out, "\nstderr (last %s of %lld lines):\n", b, (long long)jnum(err, "lines_seen", 0));
	for (p = tail; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char *line = strndup(p, n);
		fputs("  | ", out);
		utf8_fputs_safe(line, out);
		fputc('\n', out);
		free(line);
		p += n + (nl ? 1 : 0);
	}
}

void report_render(const json_t *r, FILE *out)
{
	char headline[512];

	report_headline(r, headline, sizeof(headline));
	utf8_fputs_safe(headline, out);
	fputc('\n', out);
	render_identity(r, out);
	render_pending(r, out);
	render_timeline(r, out);
	render_resources(r, out);
	render_health(r, out);
	render_stderr(r, out);
}

int report_print_file(const char *path, bool json, FILE *out, char *err, size_t errlen)
{
	json_t *r = report_read(path, err, errlen);

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

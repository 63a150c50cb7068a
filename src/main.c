/* main.c -- the command line: parse, wire a source to the pipeline and its sinks, run.
 *
 *   mcpsonde attach -p PID [-p PID...] [--json]   live, one line or one JSON object per event
 *   mcpsonde watch --all [--json]                  every MCP server on the machine, found by
 *                                                  its traffic
 *   mcpsonde record -p PID -o FILE                 raw records to a capture file
 *   mcpsonde replay FILE [--json]                  the same analysis, offline, no root
 *   mcpsonde postmortem REPORT [--json]            a crash report, for a person
 *   mcpsonde servers [--json]                      the inventory: every server seen here
 *
 * Live, records go source -> targets (what is watched, who it is) -> pipeline -> sinks.
 * The live loop is single-threaded: epoll over the ring buffer, a timerfd (loss counters,
 * blocked writes, stalls) and a signalfd (SIGINT/SIGTERM stop cleanly). It drains the ring a
 * bounded slice at a time, so that however fast records come, signals, timers and metrics are
 * served between slices. Nothing is pinned or left behind: the kernel drops the BPF programs
 * when this process goes, however it goes. */
#include <argp.h>
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "mcpsonde/attrib.h"
#include "mcpsonde/capture.h"
#include "mcpsonde/hdrscrub.h"
#include "mcpsonde/inventory.h"
#include "mcpsonde/metrics.h"
#include "mcpsonde/pipeline.h"
#include "mcpsonde/procfs.h"
#include "mcpsonde/recorder.h"
#include "mcpsonde/report.h"
#include "mcpsonde/sink.h"
#include "mcpsonde/source.h"
#include "mcpsonde/targets.h"
#include "version.h"

#define MAX_PIDS 64
#define TICK_NS 100000000ull
#define DRAIN_SLICE_NS 20000000ull /* records analysed per turn of the loop, at most this long */
/* From a stop (SIGINT, or the last process gone) to the end: what the ring buffer holds is
 * analysed for at most this long; the rest is counted as lost. */
#define STOP_DRAIN_NS 500000000ull
#define STATE_DIR_DEFAULT "/var/lib/mcpsonde"

enum command { CMD_NONE, CMD_ATTACH, CMD_WATCH, CMD_RECORD, CMD_REPLAY, CMD_POSTMORTEM, CMD_SERVERS };

struct cli {
	enum command cmd;
	pid_t pids[MAX_PIDS];
	int npids;
	const char *output;  /* record: capture file */
	const char *input;   /* replay: capture file; postmortem: report */
	const char *metrics_listen; /* NULL: no metrics */
	const char *host_root;      /* where the host's / is seen (containerized mcpsonde) */
	const char *state_dir;      /* the inventory's directory; NULL: in memory only */
	unsigned max_inventory;
	bool all;            /* watch --all */
	struct selectors selectors;
	bool summary;
	bool json;
	bool verbose;
	bool redact_given;   /* --redact was given: --capture-values does not change it */
	size_t ringbuf_bytes;
	bool compat;
	struct pipeline_opts popts;
	struct metrics_opts mopts;
	struct recorder_opts ropts;
};

struct live_ctx {
	struct cli *cli;
	struct source_live *src;
	struct targets *targets;
	struct pipeline *pipe;         /* NULL for record */
	struct capture_writer *writer; /* NULL for attach */
	struct hdrscrub *scrub;        /* secret header values blanked before anything sees them */
	struct msd_drop drops[MSD_DROP__MAX];
	bool write_failed;
};

const char *argp_program_version = "mcpsonde " MCPSONDE_VERSION;
const char *argp_program_bug_address = NULL;

enum opt_key {
	OPT_CAPTURE_VALUES = 1000,
	OPT_MAX_FRAME,
	OPT_RINGBUF_MB,
	OPT_STALL,
	OPT_BLOCKED_WRITE,
	OPT_STDIN_LINGER,
	OPT_INIT_TIMEOUT,
	OPT_METRICS,
	OPT_SUMMARY,
	OPT_BYTES_PER_TOKEN,
	OPT_MAX_TOOLS,
	OPT_REPORT_DIR,
	OPT_REPORT_FRAMES,
	OPT_MAX_REPORTS,
	OPT_MAX_REPORT_SIZE,
	OPT_REDACT,
	OPT_HOST_ROOT,
	OPT_COMPAT,
	OPT_MEMORY_BUDGET,
	OPT_ALL,
	OPT_INCLUDE,
	OPT_EXCLUDE,
	OPT_STATE_DIR,
	OPT_MAX_INVENTORY,
	OPT_SERIES_TTL,
	OPT_METRICS_LABELS,
};

static const char doc[] =
	"Observe MCP servers through eBPF, without changing them.\n\n"
	"Commands:\n"
	"  attach -p PID [-p PID...]   watch running servers (root); one line per call\n"
	"  watch --all                 every MCP server on this machine, found by its traffic (root)\n"
	"  record -p PID -o FILE       write raw capture records to FILE (root)\n"
	"  replay FILE                 analyse a capture offline (no root)\n"
	"  postmortem REPORT           print a crash report (--json: as JSON)\n"
	"  servers                     every MCP server seen here, running or gone (--state-dir)\n"
	"\nOptions:";

static const char args_doc[] = "attach|watch|record|replay|postmortem|servers [FILE]";

static const struct argp_option options[] = {
	{ "pid", 'p', "PID", 0, "Process to watch (repeatable); a wrapper's children are followed", 0 },
	{ "all", OPT_ALL, NULL, 0, "watch: every MCP server on this machine, running now or started later", 0 },
	{ "include", OPT_INCLUDE, "KEY=GLOB", 0, "watch: only processes whose comm, exe, cmdline, namespace, pod or container matches (repeatable)", 0 },
	{ "exclude", OPT_EXCLUDE, "KEY=GLOB", 0, "watch: never processes whose comm, exe, cmdline, namespace, pod or container matches (repeatable)", 0 },
	{ "output", 'o', "FILE", 0, "record: capture file to write", 0 },
	{ "json", 'j', NULL, 0, "JSONL output, one event per line", 0 },
	{ "capture-values", OPT_CAPTURE_VALUES, NULL, 0, "Include argument and result values (default: keys only); implies --redact off", 0 },
	{ "redact", OPT_REDACT, "MODE", 0, "Free text (stderr, error messages, previews, command lines): mask (secret-looking values, default), strict (dropped), off", 0 },
	{ "max-frame", OPT_MAX_FRAME, "BYTES", 0, "Per-stream line buffer cap (default 16 MiB)", 0 },
	{ "ringbuf-mb", OPT_RINGBUF_MB, "MIB", 0, "Kernel ring buffer size, power of two (default 32)", 0 },
	{ "memory-budget", OPT_MEMORY_BUDGET, "MIB", 0, "Bytes of unfinished messages all streams may hold together (default 256)", 0 },
	{ "stall-timeout", OPT_STALL, "SEC", 0, "Report calls pending this long (default 30; 0 disables)", 0 },
	{ "blocked-write-timeout", OPT_BLOCKED_WRITE, "SEC", 0, "Report writes blocked this long (default 5)", 0 },
	{ "stdin-linger", OPT_STDIN_LINGER, "SEC", 0, "Report a server alive this long after stdin closed (default 10)", 0 },
	{ "init-timeout", OPT_INIT_TIMEOUT, "SEC", 0, "Report an initialize unanswered this long (default 10)", 0 },
	{ "verbose", 'v', NULL, 0, "libbpf debug output and the verifier log", 0 },
	{ "state-dir", OPT_STATE_DIR, "DIR", 0, "Keep the inventory of servers in DIR/servers.json (servers: read it; default " STATE_DIR_DEFAULT ")", 0 },
	{ "max-inventory", OPT_MAX_INVENTORY, "N", 0, "Server records kept, the oldest exited evicted first (default 1000)", 0 },
	{ "host-root", OPT_HOST_ROOT, "DIR", 0, "The host's / is mounted at DIR (in a container): its /proc and runtime state are read there", 0 },
	{ "compat", OPT_COMPAT, NULL, 0, "Kernel paths for older kernels even where newer ones exist (troubleshooting)", 0 },
	{ NULL, 0, NULL, 0, "Metrics:", 1 },
	{ "metrics", OPT_METRICS, "ADDR:PORT", 0, "Serve Prometheus metrics on GET /metrics (e.g. 127.0.0.1:9464)", 1 },
	{ "summary", OPT_SUMMARY, NULL, 0, "On exit, a table per server and tool: calls, errors, p50/p95/p99", 1 },
	{ "bytes-per-token", OPT_BYTES_PER_TOKEN, "N", 0, "Tool-definition token estimate: bytes per token (default 4)", 1 },
	{ "series-ttl", OPT_SERIES_TTL, "SEC", 0, "Drop the series of a server this long after it exited (default 900; 0: keep)", 1 },
	{ "metrics-max-tools", OPT_MAX_TOOLS, "N", 0, "Distinct tool names per server in metrics (default 256)", 1 },
	{ "metrics-labels", OPT_METRICS_LABELS, "LIST", 0, "Where a server runs, as labels of its series: none, or some of k8s_namespace_name, k8s_pod_name, k8s_pod_uid, k8s_container_name, k8s_node_name, container_id, container_name, container_runtime (default " METRICS_LABELS_DEFAULT ")", 1 },
	{ NULL, 0, NULL, 0, "Post-mortem reports:", 2 },
	{ "report-dir", OPT_REPORT_DIR, "DIR", 0, "Write a report for every abnormal exit into DIR", 2 },
	{ "report-frames", OPT_REPORT_FRAMES, "N", 0, "Messages kept per direction for reports (default 32)", 2 },
	{ "max-reports", OPT_MAX_REPORTS, "N", 0, "Reports kept in DIR, oldest removed (default 100)", 2 },
	{ "max-report-size", OPT_MAX_REPORT_SIZE, "BYTES", 0, "Largest report, uncompressed (default 4 MiB)", 2 },
	{ 0 },
};

static int parse_seconds(const char *arg, uint64_t *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno || *end || v < 0 || v > 1e6)
		return -1;
	*out = (uint64_t)(v * 1e9);
	return 0;
}

static int parse_u64(const char *arg, unsigned long long min, unsigned long long max, unsigned long long *out)
{
	char *end;

	errno = 0;
	*out = strtoull(arg, &end, 10);
	return (errno || *end || arg[0] == '-' || *out < min || *out > max) ? -1 : 0;
}

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	struct cli *cli = state->input;
	unsigned long long v;

	switch (key) {
	case 'p':
		if (parse_u64(arg, 1, INT_MAX, &v) < 0)
			argp_error(state, "invalid PID: %s", arg);
		if (cli->npids == MAX_PIDS)
			argp_error(state, "at most %d -p options", MAX_PIDS);
		cli->pids[cli->npids++] = (pid_t)v;
		break;
	case 'o':
		cli->output = arg;
		break;
	case 'j':
		cli->json = true;
		break;
	case 'v':
		cli->verbose = true;
		break;
	case OPT_CAPTURE_VALUES:
		cli->popts.capture_values = true;
		if (!cli->redact_given)
			cli->popts.redact = REDACT_OFF;
		break;
	case OPT_REDACT: {
		int mode = scrub_parse_mode(arg);
		if (mode < 0)
			argp_error(state, "--redact: expected mask, strict or off: %s", arg);
		cli->popts.redact = (enum redact_mode)mode;
		cli->redact_given = true;
		break;
	}
	case OPT_MAX_FRAME:
		if (parse_u64(arg, 4096, 1ull << 30, &v) < 0)
			argp_error(state, "--max-frame: expected bytes between 4096 and 1 GiB: %s", arg);
		cli->popts.max_frame = (size_t)v;
		break;
	case OPT_RINGBUF_MB:
		if (parse_u64(arg, 1, 1024, &v) < 0 || (v & (v - 1)))
			argp_error(state, "--ringbuf-mb: expected a power of two between 1 and 1024: %s", arg);
		cli->ringbuf_bytes = (size_t)v << 20;
		break;
	case OPT_MEMORY_BUDGET:
		if (parse_u64(arg, 4, 1u << 20, &v) < 0)
			argp_error(state, "--memory-budget: expected MiB between 4 and 1048576: %s", arg);
		cli->popts.memory_budget = (size_t)v << 20;
		break;
	case OPT_STALL:
	case OPT_BLOCKED_WRITE:
	case OPT_STDIN_LINGER:
	case OPT_INIT_TIMEOUT: {
		uint64_t *dst = key == OPT_STALL ? &cli->popts.stall_ns :
				key == OPT_BLOCKED_WRITE ? &cli->popts.blocked_write_ns :
				key == OPT_STDIN_LINGER ? &cli->popts.stdin_linger_ns : &cli->popts.init_timeout_ns;
		if (parse_seconds(arg, dst) < 0)
			argp_error(state, "expected seconds: %s", arg);
		break;
	}
	case OPT_COMPAT:
		cli->compat = true;
		break;
	case OPT_ALL:
		cli->all = true;
		break;
	case OPT_INCLUDE:
	case OPT_EXCLUDE: {
		char err[256];
		if (selectors_add(&cli->selectors, arg, key == OPT_INCLUDE, err, sizeof(err)) < 0)
			argp_error(state, "--%s %s", key == OPT_INCLUDE ? "include" : "exclude", err);
		break;
	}
	case OPT_METRICS:
		cli->metrics_listen = arg;
		break;
	case OPT_METRICS_LABELS: {
		struct metrics_scope scope;
		char err[256];
		if (metrics_scope_parse(arg, &scope, err, sizeof(err)) < 0)
			argp_error(state, "%s", err);
		cli->mopts.labels = arg;
		break;
	}
	case OPT_HOST_ROOT:
		cli->host_root = arg;
		break;
	case OPT_STATE_DIR:
		cli->state_dir = arg;
		break;
	case OPT_MAX_INVENTORY:
		if (parse_u64(arg, 1, 1000000, &v) < 0)
			argp_error(state, "--max-inventory: expected a count between 1 and 1000000: %s", arg);
		cli->max_inventory = (unsigned)v;
		break;
	case OPT_SERIES_TTL:
		if (parse_seconds(arg, &cli->mopts.series_ttl_ns) < 0)
			argp_error(state, "--series-ttl: expected seconds: %s", arg);
		break;
	case OPT_SUMMARY:
		cli->summary = true;
		break;
	case OPT_BYTES_PER_TOKEN: {
		char *end;
		cli->mopts.bytes_per_token = strtod(arg, &end);
		if (*end || !(cli->mopts.bytes_per_token >= 0.5 && cli->mopts.bytes_per_token <= 100))
			argp_error(state, "--bytes-per-token: expected a number between 0.5 and 100: %s", arg);
		break;
	}
	case OPT_MAX_TOOLS:
		if (parse_u64(arg, 1, 100000, &v) < 0)
			argp_error(state, "--metrics-max-tools: expected a count between 1 and 100000: %s", arg);
		cli->mopts.max_tools = (unsigned)v;
		break;
	case OPT_REPORT_DIR:
		cli->ropts.report_dir = arg;
		break;
	case OPT_REPORT_FRAMES:
	case OPT_MAX_REPORTS:
		if (parse_u64(arg, 1, 100000, &v) < 0)
			argp_error(state, "expected a count between 1 and 100000: %s", arg);
		*(key == OPT_REPORT_FRAMES ? &cli->ropts.frames : &cli->ropts.max_reports) = (unsigned)v;
		break;
	case OPT_MAX_REPORT_SIZE:
		if (parse_u64(arg, 65536, 1ull << 30, &v) < 0)
			argp_error(state, "--max-report-size: expected bytes between 64 KiB and 1 GiB: %s", arg);
		cli->ropts.max_report_bytes = (size_t)v;
		break;
	case ARGP_KEY_ARG:
		if (cli->cmd == CMD_NONE) {
			if (strcmp(arg, "attach") == 0)
				cli->cmd = CMD_ATTACH;
			else if (strcmp(arg, "watch") == 0)
				cli->cmd = CMD_WATCH;
			else if (strcmp(arg, "servers") == 0)
				cli->cmd = CMD_SERVERS;
			else if (strcmp(arg, "record") == 0)
				cli->cmd = CMD_RECORD;
			else if (strcmp(arg, "replay") == 0)
				cli->cmd = CMD_REPLAY;
			else if (strcmp(arg, "postmortem") == 0)
				cli->cmd = CMD_POSTMORTEM;
			else
				argp_error(state, "unknown command: %s", arg);
		} else if ((cli->cmd == CMD_REPLAY || cli->cmd == CMD_POSTMORTEM) && !cli->input) {
			cli->input = arg;
		} else {
			argp_error(state, "unexpected argument: %s", arg);
		}
		break;
	case ARGP_KEY_END:
		if (cli->cmd == CMD_NONE)
			argp_error(state, "a command is required: attach, watch, record, replay, postmortem or servers");
		if (cli->cmd == CMD_WATCH && !cli->all)
			argp_error(state, "watch needs --all (every MCP server on this machine)");
		if (cli->cmd == CMD_WATCH && cli->npids)
			argp_error(state, "watch finds servers by itself: -p is for attach");
		if (cli->cmd != CMD_WATCH && (cli->all || cli->selectors.n))
			argp_error(state, "--all, --include and --exclude are for watch");
		if ((cli->cmd == CMD_ATTACH || cli->cmd == CMD_RECORD) && cli->npids == 0)
			argp_error(state, "%s needs at least one -p PID", cli->cmd == CMD_ATTACH ? "attach" : "record");
		if (cli->mopts.labels && !cli->metrics_listen)
			argp_error(state, "--metrics-labels labels the series of --metrics: give --metrics too");
		if (cli->cmd == CMD_RECORD && !cli->output)
			argp_error(state, "record needs -o FILE");
		if (cli->cmd == CMD_REPLAY && !cli->input)
			argp_error(state, "replay needs a capture FILE");
		if (cli->cmd == CMD_POSTMORTEM && !cli->input)
			argp_error(state, "postmortem needs a report FILE");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static const struct argp argp = { options, parse_arg, args_doc, doc, NULL, NULL, NULL };

/* --- sinks ---------------------------------------------------------------------------- */

/* Output first, then the inventory (metrics read it), metrics and summary; the recorder
 * last, because it emits EV_REPORT from inside an exit's dispatch and every sink must see the
 * exit before the report. inv: the inventory (live only), NULL otherwise. */
static int sinks_setup(struct cli *cli, struct sink_list *sinks, struct inventory *inv)
{
	struct event_format_opts fo = { .capture_values = cli->popts.capture_values };
	struct sink *s = cli->json ? sink_json_new(stdout, &fo) : sink_text_new(stdout, &fo);
	char err[256] = "";

	if (!s)
		return -1;
	sinks_add(sinks, s);
	if (inv) {
		if (!(s = sink_inventory_new(inv)))
			return -1;
		sinks_add(sinks, s);
		cli->mopts.inventory = inv;
	}
	if (cli->metrics_listen) {
		cli->mopts.listen = cli->metrics_listen;
		cli->mopts.version = MCPSONDE_VERSION;
		if (!(s = sink_metrics_new(&cli->mopts, err, sizeof(err)))) {
			fprintf(stderr, "mcpsonde: %s\n", err);
			return -1;
		}
		sinks_add(sinks, s);
	}
	if (cli->summary) {
		if (!(s = sink_summary_new(cli->json ? stderr : stdout))) /* stdout stays pure JSONL */
			return -1;
		sinks_add(sinks, s);
	}
	if (cli->ropts.report_dir) {
		cli->ropts.capture_values = cli->popts.capture_values;
		if (!(s = sink_recorder_new(&cli->ropts, sinks, err, sizeof(err)))) {
			fprintf(stderr, "mcpsonde: %s\n", err);
			return -1;
		}
		sinks_add(sinks, s);
	}
	return 0;
}

/* --- live capture --------------------------------------------------------------------- */

/* Every record the targets stage passes on goes to the capture file and/or the pipeline, in
 * the same order. */
static void live_deliver(void *ctx, const struct msd_rec_hdr *rec)
{
	struct live_ctx *c = ctx;

	if (!(rec = hdrscrub_record(c->scrub, rec)))
		return;
	if (c->writer && capture_writer_put(c->writer, rec) < 0)
		c->write_failed = true;
	if (c->pipe)
		pipeline_feed(c->pipe, rec);
}

static void live_check_drops(struct live_ctx *c, uint64_t now_ns)
{
	struct msd_drop cur[MSD_DROP__MAX];

	if (source_live_drops(c->src, cur) < 0)
		return;
	for (int r = 0; r < MSD_DROP__MAX; r++) {
		struct msd_loss_rec l = { .hdr = { .kind = MSD_REC_LOSS, .abi = MSD_ABI_VERSION,
						   .size = sizeof(l), .ts_ns = now_ns } };
		if (cur[r].records == c->drops[r].records && cur[r].bytes == c->drops[r].bytes)
			continue;
		l.reason = (uint32_t)r;
		l.records = cur[r].records - c->drops[r].records;
		l.bytes = cur[r].bytes - c->drops[r].bytes;
		c->drops[r] = cur[r];
		live_deliver(c, &l.hdr);
	}
}


static void live_conn_ignore(void *ctx, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id)
{
	struct live_ctx *c = ctx;

	source_live_conn_ignore(c->src, tgid, dev, ino, conn_id);
}

static void live_on_inflight(void *ctx, const struct msd_inflight *w)
{
	struct live_ctx *c = ctx;
	uint64_t now = clock_mono_ns();

	/* The scan yields writes to the out-file only: stdout, whichever fd the write used, as
	 * the pipeline names the stream in its own events. */
	if (now > w->enter_ns && now - w->enter_ns > c->cli->popts.blocked_write_ns)
		pipeline_blocked_write(c->pipe, w->tgid, 1, w->enter_ns, w->count, now);
}

/* One line on stderr when attach or record ends: what was seen and what was lost. */
static void live_report(struct live_ctx *c)
{
	uint64_t lost_records = 0, lost_bytes = 0, cnt[MSD_CNT__MAX] = { 0 }, ring_size, ring_backlog, ring_peak;

	for (int r = 0; r < MSD_DROP__MAX; r++) {
		lost_records += c->drops[r].records;
		lost_bytes += c->drops[r].bytes;
	}
	fprintf(stderr, "mcpsonde: detached");
	if (c->pipe) {
		const struct pipeline_stats *st = pipeline_stats(c->pipe);
		fprintf(stderr, ": %llu records, %llu messages, %llu invalid frames, %llu gaps (%llu bytes, %llu line tails "
				"dropped), %llu bytes truncated, %llu uncaptured",
			(unsigned long long)st->records, (unsigned long long)st->messages,
			(unsigned long long)st->invalid_frames, (unsigned long long)st->gaps,
			(unsigned long long)st->gap_bytes, (unsigned long long)st->gap_tails,
			(unsigned long long)st->cut_bytes, (unsigned long long)st->uncaptured_bytes);
	}
	if (c->pipe) {
		const struct pipeline_stats *st = pipeline_stats(c->pipe);
		fprintf(stderr, "; connections: %llu (%llu MCP, %llu set aside), %llu HTTP exchanges",
			(unsigned long long)st->conns, (unsigned long long)st->conns_mcp,
			(unsigned long long)st->conns_set_aside, (unsigned long long)st->http_exchanges);
	}
	fprintf(stderr, "; kernel drops: %llu records, %llu bytes", (unsigned long long)lost_records,
		(unsigned long long)lost_bytes);
	/* What the kernel did not copy on purpose, and what the copy cost in ring space. */
	source_live_counters(c->src, cnt);
	fprintf(stderr, "; kernel connections: %llu followed, %llu ignored at once, %llu syscalls (%llu bytes) ignored",
		(unsigned long long)cnt[MSD_CNT_CONN_SEEN], (unsigned long long)cnt[MSD_CNT_CONN_SNIFFED],
		(unsigned long long)cnt[MSD_CNT_CONN_IGNORED_CALLS], (unsigned long long)cnt[MSD_CNT_CONN_IGNORED_BYTES]);
	fprintf(stderr, "; not channel: %llu syscalls, %llu bytes; ring: %llu records, %llu of %llu bytes reserved unused",
		(unsigned long long)cnt[MSD_CNT_NONE_CALLS], (unsigned long long)cnt[MSD_CNT_NONE_BYTES],
		(unsigned long long)cnt[MSD_CNT_DATA_RECORDS],
		(unsigned long long)(cnt[MSD_CNT_RING_RESERVED] - cnt[MSD_CNT_RING_USED]),
		(unsigned long long)cnt[MSD_CNT_RING_RESERVED]);
	/* How close it came to losing records: at the ring's size, the kernel drops them. */
	source_live_ring(c->src, &ring_size, &ring_backlog, &ring_peak);
	fprintf(stderr, ", fullest %llu of %llu bytes", (unsigned long long)ring_peak, (unsigned long long)ring_size);
	if (c->cli->cmd == CMD_WATCH) {
		struct targets_stats ts;

		targets_get_stats(c->targets, &ts);
		fprintf(stderr, "; discovery: %llu reads looked at, %llu processes found (%llu by HTTP), "
				"%llu stdins given up, %llu socket readers given up, %llu excluded, %llu not MCP, %llu relays, "
				"%llu gone before identified, %llu past the table",
			(unsigned long long)cnt[MSD_CNT_SNIFF_READS], (unsigned long long)ts.discovered,
			(unsigned long long)cnt[MSD_CNT_HTTP_DISCOVERED],
			(unsigned long long)(cnt[MSD_CNT_NOT_JSONRPC] + cnt[MSD_CNT_NOT_STDIO]),
			(unsigned long long)(cnt[MSD_CNT_NOT_HTTP] + cnt[MSD_CNT_HTTP_NOT_MCP]),
			(unsigned long long)ts.excluded, (unsigned long long)ts.not_mcp, (unsigned long long)ts.relays,
			(unsigned long long)ts.unidentified, (unsigned long long)ts.table_full);
	}
	fputc('\n', stderr);
}

/* mcpsonde's own figures for /metrics: what the kernel examined and concluded, its maps,
 * what the targets stage decided. Read at each snapshot; the sink only runs while the
 * source does. */
static void live_self(void *ctx, struct metrics_self *out)
{
	struct live_ctx *c = ctx;
	uint64_t cnt[MSD_CNT__MAX] = { 0 }, more, ring_size, ring_backlog, ring_peak;
	struct targets_stats ts = { 0 };
	unsigned entries = 0, capacity = 0;

	if (!c->src || !c->targets)
		return;
	source_live_counters(c->src, cnt);
	source_live_procs(c->src, &entries, &capacity);
	targets_get_stats(c->targets, &ts);
	out->tracked = entries;
	source_live_ring(c->src, &ring_size, &ring_backlog, &ring_peak);
	out->ring_size = (double)ring_size;
	out->ring_backlog = (double)ring_backlog;
	out->ring_backlog_peak = (double)ring_peak;
	out->sniffed_reads = (double)cnt[MSD_CNT_SNIFF_READS];
	out->sniffed_bytes = (double)cnt[MSD_CNT_SNIFF_BYTES];
	out->verdicts[METRICS_VERDICT_JSON_RPC] = (double)cnt[MSD_CNT_DISCOVERED];
	out->verdicts[METRICS_VERDICT_NOT_JSON_RPC] = (double)cnt[MSD_CNT_NOT_JSONRPC];
	out->verdicts[METRICS_VERDICT_NOT_STDIO] = (double)cnt[MSD_CNT_NOT_STDIO];
	out->verdicts[METRICS_VERDICT_NOT_MCP] = (double)ts.not_mcp;
	out->verdicts[METRICS_VERDICT_RELAY] = (double)ts.relays;
	out->verdicts[METRICS_VERDICT_EXCLUDED] = (double)ts.excluded;
	out->verdicts[METRICS_VERDICT_NOT_HTTP] = (double)cnt[MSD_CNT_NOT_HTTP];
	out->verdicts[METRICS_VERDICT_HTTP_NOT_MCP] = (double)cnt[MSD_CNT_HTTP_NOT_MCP];
	out->verdicts[METRICS_VERDICT_UNIDENTIFIED] = (double)ts.unidentified;
	out->clients_found = (double)ts.clients_found;
	out->clients_unknown = (double)ts.clients_unknown;
	out->maps[0].map = "procs";
	out->maps[0].entries = entries;
	out->maps[0].capacity = capacity;
	out->maps[1].map = "verdicts";
	/* Made counts the kernel's entries and user space's (source_live_counters); a count read
	 * while an exit frees one the other CPU's counter has not shown made yet is clamped. */
	out->maps[1].entries = cnt[MSD_CNT_VERDICTS_MADE] > cnt[MSD_CNT_VERDICTS_FREED]
				       ? (double)(cnt[MSD_CNT_VERDICTS_MADE] - cnt[MSD_CNT_VERDICTS_FREED])
				       : 0;
	out->nmaps = 2;
	out->nlatencies = targets_take_latencies(c->targets, out->latencies, METRICS_LATENCIES_MAX, &more);
}

/* The line that says the probes are live: the given processes, or the whole machine. */
static void live_announce(struct live_ctx *c)
{
	pid_t pids[MAX_PIDS];
	unsigned n;

	if (c->cli->cmd == CMD_WATCH) {
		fprintf(stderr, "mcpsonde: watching every MCP server on this machine (pid %d not included: mcpsonde)%s\n",
			(int)getpid(), c->cli->selectors.n ? ", with selectors" : "");
		return;
	}
	n = targets_pids(c->targets, pids, MAX_PIDS);
	fprintf(stderr, "mcpsonde: attached to %u process%s (pid", targets_watched(c->targets),
		targets_watched(c->targets) == 1 ? "" : "es");
	for (unsigned i = 0; i < n; i++)
		fprintf(stderr, " %d", (int)pids[i]);
	fprintf(stderr, "%s)%s\n", n < targets_watched(c->targets) ? " ..." : "",
		c->cli->cmd == CMD_RECORD ? ", recording" : "");
	/* One line per given process that runs in a container: where it runs. */
	for (int i = 0; i < c->cli->npids; i++) {
		const struct attrib_record *r = targets_where(c->targets, c->cli->pids[i]);

		if (!r || r->role == ATTRIB_ROLE_HOST || !r->container_id[0])
			continue;
		fprintf(stderr, "mcpsonde: pid %d runs in", (int)c->cli->pids[i]);
		if (r->pod_name[0])
			fprintf(stderr, " pod %s/%s container %s,", r->k8s_namespace, r->pod_name, r->k8s_container_name);
		else if (r->container_name[0])
			fprintf(stderr, " container %s,", r->container_name);
		fprintf(stderr, " %s container %.12s\n", attrib_runtime_name(r->runtime), r->container_id);
	}
}

static int run_live(struct cli *cli)
{
	struct source_live_opts so = { .ringbuf_bytes = cli->ringbuf_bytes, .verbose = cli->verbose, .compat = cli->compat,
				       .discover = cli->cmd == CMD_WATCH, .self = getpid() };
	struct targets_opts to = { .all = cli->cmd == CMD_WATCH, .pids = cli->pids, .npids = (unsigned)cli->npids,
				   .selectors = &cli->selectors, .self = getpid() };
	struct live_ctx c = { .cli = cli };
	struct inventory *inventory = NULL;
	struct attrib *attrib = NULL;
	struct sink_list sinks = { 0 };
	struct epoll_event ev, events[4];
	int epfd = -1, tfd = -1, sfd = -1, err = 1, ticks = 0;
	struct itimerspec its = { .it_interval = { 0, TICK_NS }, .it_value = { 0, TICK_NS } };
	char msg[512] = "";
	bool stop = false;
	sigset_t mask;

	for (int i = 0; i < cli->npids; i++)
		if (!proc_exists(cli->pids[i])) {
			fprintf(stderr, "mcpsonde: no such process: %d\n", (int)cli->pids[i]);
			return 1;
		}
	{
		struct attrib_opts ao = { .host_root = cli->host_root };
		if (!(attrib = attrib_new(&ao, msg, sizeof(msg)))) {
			fprintf(stderr, "mcpsonde: %s\n", msg);
			return 1;
		}
		to.attrib = attrib;
	}
	cli->popts.mono_to_real_ns = clock_mono_to_real_ns();
	if (!(c.scrub = hdrscrub_new())) {
		fprintf(stderr, "mcpsonde: out of memory\n");
		goto cleanup;
	}
	/* Capture must be able to start (root, BTF, BPF) before the output file is created. */
	c.src = source_live_open(&so, msg, sizeof(msg));
	if (!c.src) {
		fprintf(stderr, "mcpsonde: %s\n", msg);
		goto cleanup;
	}
	if (cli->cmd == CMD_RECORD) {
		c.writer = capture_writer_open(cli->output, cli->popts.mono_to_real_ns, msg, sizeof(msg));
		if (!c.writer) {
			fprintf(stderr, "mcpsonde: %s\n", msg);
			goto cleanup;
		}
	} else {
		struct inventory_opts io = { .state_dir = cli->state_dir, .max_records = cli->max_inventory, .live = true };

		if (!(inventory = inventory_open(&io, msg, sizeof(msg)))) {
			fprintf(stderr, "mcpsonde: %s\n", msg);
			goto cleanup;
		}
		cli->mopts.self = live_self;
		cli->mopts.self_ctx = &c;
		if (sinks_setup(cli, &sinks, inventory) < 0)
			goto cleanup;
		c.pipe = pipeline_new(&cli->popts, &sinks);
		if (!c.pipe)
			goto cleanup;
		pipeline_set_live(c.pipe, true);
	}
	if (c.pipe)
		pipeline_set_conn_ignore(c.pipe, live_conn_ignore, &c);
	if (!(c.targets = targets_new(&to, c.src, live_deliver, &c)))
		goto cleanup;
	targets_set_pipeline(c.targets, c.pipe);

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || tfd < 0 || epfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0) {
		fprintf(stderr, "mcpsonde: event loop setup failed: %s\n", strerror(errno));
		goto cleanup;
	}
	ev.events = EPOLLIN;
	ev.data.fd = source_live_fd(c.src);
	epoll_ctl(epfd, EPOLL_CTL_ADD, ev.data.fd, &ev);
	ev.data.fd = tfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	ev.data.fd = sfd;
	epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &ev);

	if (targets_start(c.targets, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "mcpsonde: %s\n", msg);
		goto cleanup;
	}
	if (cli->verbose)
		fprintf(stderr, "mcpsonde: kernel paths: %s\n", source_live_paths(c.src));
	live_announce(&c);

	while (!stop) {
		/* Records still waiting: look at the other fds without waiting, then go on. */
		int n = epoll_wait(epfd, events, 4, source_live_behind(c.src) ? 0 : -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "mcpsonde: epoll_wait: %s\n", strerror(errno));
			goto cleanup;
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;

			if (fd == sfd) {
				stop = true;
			} else if (fd == tfd) {
				uint64_t expirations, now = clock_mono_ns();

				if (read(tfd, &expirations, sizeof(expirations)) < 0)
					continue;
				live_check_drops(&c, now);
				if (c.pipe) {
					pipeline_set_behind(c.pipe, source_live_behind(c.src));
					pipeline_tick(c.pipe, now);
				}
				targets_tick(c.targets, now);
				if (++ticks % 10 == 0) {
					/* The scan walks every task of the machine in the kernel. */
					if (c.pipe && cli->popts.blocked_write_ns)
						source_live_inflight(c.src, live_on_inflight, &c);
					if (c.writer && capture_writer_flush(c.writer) < 0)
						c.write_failed = true;
				}
			}
			/* The ring buffer's fd: the slice below takes what waits. */
		}
		source_live_poll(c.src, targets_on_record, c.targets, clock_mono_ns() + DRAIN_SLICE_NS);
		if (c.pipe) {
			pipeline_set_behind(c.pipe, source_live_behind(c.src));
			pipeline_tick(c.pipe, clock_mono_ns());
		}
		/* Out before waiting again: one write per drain, and nothing held back while idle. */
		sinks_flush(&sinks);
		/* attach: every watched process is gone. With --metrics, serve on until stopped: the
		 * last exits and pending counts must still be there for the next scrape. */
		if (cli->cmd != CMD_WATCH && targets_watched(c.targets) == 0 && !cli->metrics_listen)
			stop = true;
	}
	source_live_stop(c.src);
	source_live_poll(c.src, targets_on_record, c.targets, clock_mono_ns() + STOP_DRAIN_NS);
	source_live_abandon(c.src);
	live_check_drops(&c, clock_mono_ns());
	if (c.pipe)
		pipeline_finish(c.pipe, clock_mono_ns());
	live_report(&c);
	err = c.write_failed ? 1 : 0;
	if (c.write_failed)
		fprintf(stderr, "mcpsonde: writing %s failed: the capture is incomplete\n", cli->output);
cleanup:
	if (epfd >= 0)
		close(epfd);
	if (tfd >= 0)
		close(tfd);
	if (sfd >= 0)
		close(sfd);
	targets_free(c.targets);
	source_live_close(c.src);
	if (c.writer && capture_writer_close(c.writer) < 0 && !err) {
		fprintf(stderr, "mcpsonde: writing %s failed\n", cli->output);
		err = 1;
	}
	sinks_close(&sinks);
	inventory_close(inventory);
	pipeline_free(c.pipe);
	hdrscrub_free(c.scrub);
	attrib_free(attrib);
	return err;
}

/* --- replay ----------------------------------------------------------------------------- */

static int run_replay(struct cli *cli)
{
	struct sink_list sinks = { 0 };
	const struct msd_rec_hdr *rec;
	struct capture_reader *r;
	struct pipeline *p = NULL;
	uint64_t last_ts = 0;
	char msg[512] = "";
	int rc, err = 1;

	r = capture_reader_open(cli->input, msg, sizeof(msg));
	if (!r) {
		fprintf(stderr, "mcpsonde: %s\n", msg);
		return 1;
	}
	cli->popts.mono_to_real_ns = capture_reader_mono_to_real(r);
	if (sinks_setup(cli, &sinks, NULL) < 0 || !(p = pipeline_new(&cli->popts, &sinks)))
		goto cleanup;
	while ((rc = capture_reader_next(r, &rec, msg, sizeof(msg))) == 1) {
		/* The records' own clock drives time-based detection, as the kernel's did live. */
		if (rec->ts_ns > last_ts)
			last_ts = rec->ts_ns;
		pipeline_tick(p, last_ts);
		pipeline_feed(p, rec);
	}
	pipeline_finish(p, last_ts);
	if (rc < 0)
		fprintf(stderr, "mcpsonde: %s: %s\n", cli->input, msg);
	err = rc < 0 ? 1 : 0;
cleanup:
	sinks_close(&sinks);
	pipeline_free(p);
	capture_reader_close(r);
	return err;
}

int main(int argc, char **argv)
{
	struct cli cli = { 0 };
	int err;

	/* Large transient buffers (a rendered scrape, the inventory document, a big message) from
	 * mmap and back to the system when freed: glibc's adaptive threshold would move them into
	 * the heap after the first free, where, between long-lived small objects, they leave holes
	 * a daemon's RSS never gives back (the soak test saw 26 MiB of heap for 6 in use). */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	pipeline_opts_default(&cli.popts);
	metrics_opts_default(&cli.mopts);
	recorder_opts_default(&cli.ropts);
	err = argp_parse(&argp, argc, argv, 0, NULL, &cli);
	if (err)
		return 1;
	switch (cli.cmd) {
	case CMD_ATTACH:
	case CMD_WATCH:
	case CMD_RECORD:
		err = run_live(&cli);
		selectors_free(&cli.selectors);
		return err;
	case CMD_REPLAY:
		return run_replay(&cli);
	case CMD_POSTMORTEM: {
		char msg[512] = "";
		if (report_print_file(cli.input, cli.json, cli.ropts.max_report_bytes, stdout, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "mcpsonde: %s\n", msg);
			return 1;
		}
		return 0;
	}
	case CMD_SERVERS: {
		char msg[512] = "";
		if (inventory_print(cli.state_dir ? cli.state_dir : STATE_DIR_DEFAULT, cli.json, stdout, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "mcpsonde: %s\n", msg);
			return 1;
		}
		return 0;
	}
	case CMD_NONE:
		break;
	}
	return 1;
}

/* recorder.h -- the flight recorder: a sink that remembers the recent past of every server
 * and writes a post-mortem report (report.h) when one dies abnormally.
 *
 * Per server, keyed by (pid, start_ticks): the last N messages in each direction, the last
 * 64 KiB of stderr, recent stall / blocked_write / stdin_closed / loss events, resource
 * samples of the last minute, and the calls in flight. Memory is bounded per server and in
 * total; what the bounds evict is counted. On an abnormal EV_EXIT (not normal, a signal, the
 * OOM killer, or calls pending) the report is written, an EV_REPORT naming it is emitted
 * through the sink list given at construction, and the server's state is freed.
 *
 * Add the recorder LAST to the sink list: its EV_REPORT is emitted from inside the EV_EXIT
 * dispatch, so sinks after it would see the report before the exit. The recorder ignores
 * EV_REPORT, so being in the list it emits to is safe. */
#ifndef MCPSONDE_RECORDER_H
#define MCPSONDE_RECORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sink.h"

#define RECORDER_FRAMES_DEFAULT 32
#define RECORDER_STDERR_BYTES_DEFAULT (64u << 10)
#define RECORDER_SERVER_BYTES_DEFAULT (2u << 20)
#define RECORDER_TOTAL_BYTES_DEFAULT (64u << 20)
#define RECORDER_MAX_SERVERS_DEFAULT 1024

struct recorder_opts {
	const char *report_dir;     /* NULL: remember, but write no report */
	unsigned frames;            /* messages kept per direction */
	bool capture_values;        /* frames with arguments/results; otherwise keys only */
	unsigned max_reports;       /* reports kept in report_dir (oldest removed) */
	size_t max_report_bytes;    /* uncompressed JSON per report */
	size_t stderr_bytes;        /* stderr tail kept per server */
	size_t max_server_bytes;    /* memory per server */
	size_t max_total_bytes;     /* memory over all servers */
	unsigned max_servers;
};

struct recorder_stats {
	uint64_t servers;           /* currently remembered */
	uint64_t bytes;             /* currently accounted */
	uint64_t items_evicted;     /* frames, stderr lines, events dropped by a memory cap */
	uint64_t servers_evicted;   /* whole servers forgotten (count or total cap) */
	uint64_t reports_written;
	uint64_t reports_failed;
};

void recorder_opts_default(struct recorder_opts *o);
/* emit: where EV_REPORT goes (usually the pipeline's sink list); may be NULL. opts is
 * copied, report_dir included. NULL and err when report_dir cannot be created. */
struct sink *sink_recorder_new(const struct recorder_opts *opts, struct sink_list *emit, char *err,
			       size_t errlen);
/* s must come from sink_recorder_new. */
const struct recorder_stats *recorder_stats(const struct sink *s);

#endif

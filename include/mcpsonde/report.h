/* report.h -- post-mortem reports: one gzip-compressed JSON file per abnormal exit.
 *
 * The flight recorder (recorder.h) builds the report object; this module owns its schema
 * (below), writes it under a bounded directory, reads it back and renders it for a person
 * (`mcpsonde postmortem FILE [--json]`).
 *
 * Schema, version REPORT_VERSION. Times "t" are seconds relative to the death (negative);
 * "at" are RFC 3339 UTC. Entries named "event" are event_render() renderings.
 *   mcpsonde_report  REPORT_VERSION
 *   written_at, generator
 *   process          {pid, comm, name, server_name, server_version, client_name, client_version,
 *                     protocol_version, transport, cmdline, exe, cgroup, start_ticks,
 *                     started_at, first_seen_at, uptime_s}
 *   exit             {at, reason, exit_code, signal, signal_name, core_dumped, oom_killed,
 *                     stdin_closed, normal, pending_calls, raw, headline}
 *   pending_calls    [{method, id, tool, age_s, orphaned}]
 *   frames           {per_direction, client_to_server: [{t, at, event}], server_to_client: [...],
 *                     seen: {client_to_server, server_to_client}}
 *   stderr           {tail, tail_bytes, lines_seen, bytes_seen, lines_dropped}
 *   events           [{t, at, type, summary, event}]      stall, blocked_write, stdin_closed, loss
 *   timeline         [{t, kind, summary}]                 the last seconds, oldest first
 *   resources        [{t, rss_bytes, cpu_ns, threads, state}]
 *   capture_health   {lost, loss_by_reason: {reason: {records, bytes}}, recorder: {...}}
 *   trimmed          [what report_write removed to respect the size cap]
 */
#ifndef MCPSONDE_REPORT_H
#define MCPSONDE_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define REPORT_VERSION 1
#define REPORT_MAX_FILES_DEFAULT 100
#define REPORT_MAX_BYTES_DEFAULT (4u << 20) /* uncompressed JSON; the file is smaller */
#define REPORT_PARSE_FACTOR 32 /* tree bytes per JSON byte a read may take (real reports: ~10) */
#define REPORT_PREFIX "mcpsonde-"
#define REPORT_SUFFIX ".json.gz"

struct report_opts {
	const char *dir;
	unsigned max_files;  /* reports kept in dir; the oldest are removed; 0: default */
	size_t max_bytes;    /* uncompressed JSON size cap; frames, then stderr... are trimmed */
};

/* Creates dir (mode 0700, parents too) when missing and checks it is writable. */
int report_dir_prepare(const char *dir, char *err, size_t errlen);
/* Writes report as DIR/mcpsonde-<comm>-<pid>-<UTC time>.json.gz, mode 0600, created
 * atomically (temporary name, then rename), then removes the oldest reports beyond
 * max_files. May trim report in place to fit max_bytes. Returns 0 and the path, or -1. */
int report_write(const struct report_opts *o, json_t *report, const char *comm, uint32_t pid,
		 uint64_t real_ns, char *path, size_t pathlen, char *err, size_t errlen);
/* Reads a report (gzip or plain JSON), which may come from anywhere: one that inflates past
 * max_bytes (0: REPORT_MAX_BYTES_DEFAULT; a report is never larger, see report_write) is
 * refused, and the parse is bounded in depth and in memory (REPORT_PARSE_FACTOR times the
 * text). NULL and a one-line err on failure. */
json_t *report_read(const char *path, size_t max_bytes, char *err, size_t errlen);
/* For a person: headline, identity, pending calls, timeline, resources, capture health,
 * stderr tail. Takes any JSON: members of the wrong type count as absent, strings are cut
 * and their control characters escaped, lists are cut to their last rows. */
void report_render(const json_t *report, FILE *out);
/* `mcpsonde postmortem FILE [--json] [--max-report-size N]`: returns 0, or -1 and err. */
int report_print_file(const char *path, bool json, size_t max_bytes, FILE *out, char *err, size_t errlen);
/* "killed by SIGSEGV (core dumped)", "exited with code 1", "killed by the OOM killer"... */
void report_describe_exit(const json_t *exit, char *buf, size_t len);
/* "server-everything (pid 1234) killed by SIGSEGV after 12.3 s, 1 call pending": from the
 * report's process and exit objects. */
void report_headline(const json_t *report, char *buf, size_t len);
/* "12.3 s", "850 ms", "4m05s": durations for people. */
void report_format_duration(double seconds, char *buf, size_t len);
/* "312 B", "1.2 KiB", "45.0 MiB". */
void report_format_bytes(double bytes, char *buf, size_t len);

#endif

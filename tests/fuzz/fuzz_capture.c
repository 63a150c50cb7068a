/* fuzz_capture.c -- capture files, as `mcpsonde replay` reads them: reader -> pipeline.
 *
 * The first input byte chooses what the rest is. Even: the record stream itself, which the
 * harness puts behind a valid header and compresses, so the fuzzer works on records (lengths,
 * strings, kinds) rather than on deflate; bit 1 then cuts the compressed body short by the
 * byte's upper bits, as a killed writer would. Odd: the file's bytes as they are (header,
 * gzip). Every record the reader hands out goes through the pipeline with the records' own
 * clock, as `replay --report-dir` does: events are rendered to JSON and dropped, and the
 * flight recorder writes a report for every abnormal exit (into a temporary directory that
 * keeps two).
 *
 * Seeds (tests/fuzz/corpus/capture): a server's identity, a call and its answer, fork/exec/
 * oom/loss records and an exit, as record streams and as one whole file; an HTTP connection
 * of a server (accepted, a POST of a call answered over SSE, closed).
 *
 *   make fuzz FUZZ_SECONDS=60            (all targets)
 *   build/fuzz/fuzz_capture -max_len=65536 build/fuzz/corpus/fuzz_capture tests/fuzz/corpus/capture
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "mcpsonde/capture.h"
#include "mcpsonde/pipeline.h"
#include "mcpsonde/recorder.h"

#include "fuzz_render.h"

/* The capture file for this input, in a memfd (the reader takes a path). */
static int capture_file(const uint8_t *data, size_t size)
{
	int fd = memfd_create("fuzz_capture", MFD_CLOEXEC);
	uint8_t mode = data[0];

	if (fd < 0)
		abort();
	data++, size--;
	if (mode & 1) {
		if (write(fd, data, size) != (ssize_t)size)
			abort();
	} else {
		struct capture_header h = { .version = CAPTURE_VERSION, .abi = MSD_ABI_VERSION };
		uLongf zlen = compressBound(size) + 64;
		uint8_t *z = malloc(zlen);
		z_stream zs = { 0 };

		memcpy(h.magic, CAPTURE_MAGIC, 8);
		/* A gzip wrapper (windowBits 16 + 15), as gzdopen writes. */
		if (!z || deflateInit2(&zs, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			abort();
		zs.next_in = (Bytef *)data;
		zs.avail_in = (uInt)size;
		zs.next_out = z;
		zs.avail_out = (uInt)zlen;
		if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
			abort();
		zlen = zs.total_out;
		deflateEnd(&zs);
		if (mode & 2)
			zlen -= (mode >> 2) < zlen ? (mode >> 2) : zlen;
		if (write(fd, &h, sizeof(h)) != sizeof(h) || write(fd, z, zlen) != (ssize_t)zlen)
			abort();
		free(z);
	}
	return fd;
}

static char report_dir[] = "/tmp/fuzz_capture.XXXXXX";

static void report_dir_remove(void)
{
	struct dirent *de;
	DIR *d = opendir(report_dir);

	while (d && (de = readdir(d)))
		unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	rmdir(report_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	if (!mkdtemp(report_dir))
		abort();
	atexit(report_dir_remove);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sink render = { .on_event = fuzz_render_on_event }, *recorder;
	struct recorder_opts ro;
	struct sink_list sinks = { 0 };
	const struct msd_rec_hdr *rec;
	struct capture_reader *r;
	struct pipeline_opts o;
	struct pipeline *p;
	uint64_t last_ts = 0;
	char path[64], err[256];
	int fd;

	if (size < 1)
		return 0;
	fd = capture_file(data, size);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = capture_reader_open(path, err, sizeof(err));
	close(fd);
	if (!r)
		return 0;
	pipeline_opts_default(&o);
	o.max_frame = 4096;
	o.stall_ns = 1000000;
	o.capture_values = true;
	o.mono_to_real_ns = capture_reader_mono_to_real(r);
	sinks_add(&sinks, &render);
	recorder_opts_default(&ro);
	ro.report_dir = report_dir;
	ro.max_reports = 2;
	ro.capture_values = true;
	recorder = sink_recorder_new(&ro, &sinks, err, sizeof(err));
	if (!recorder)
		abort();
	sinks_add(&sinks, recorder);
	p = pipeline_new(&o, &sinks);
	while (capture_reader_next(r, &rec, err, sizeof(err)) == 1) {
		if (rec->ts_ns > last_ts)
			last_ts = rec->ts_ns;
		pipeline_tick(p, last_ts);
		pipeline_feed(p, rec);
	}
	pipeline_finish(p, last_ts);
	pipeline_free(p);
	/* A report that could not be written (into a fresh temporary directory) is a finding:
	 * whatever a server sent, its post-mortem must still come out. */
	if (recorder_stats(recorder)->reports_failed)
		abort();
	sinks_close(&sinks);
	capture_reader_close(r);
	return 0;
}

/* fuzz_report.c -- report files, as `mcpsonde postmortem` reads them: report_read -> render.
 *
 * The input is the file: plain JSON or gzip (report_read takes both). It is read with a
 * 1 MiB size cap, so the fuzzer also meets the inflation limit and the parse budget, then
 * rendered for a person (to /dev/null) and given a headline. Any JSON shape must render
 * without a crash and with bounded output.
 *
 * Seeds (tests/fuzz/corpus/report): a report as the recorder writes one, and its gzip form;
 * report.dict holds the schema's member names.
 *
 *   make fuzz FUZZ_SECONDS=60            (all targets)
 *   build/fuzz/fuzz_report -max_len=65536 -dict=tests/fuzz/report.dict build/fuzz/corpus/fuzz_report tests/fuzz/corpus/report
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mcpsonde/report.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	char path[64], err[256], headline[512];
	json_t *r;
	int fd = memfd_create("fuzz_report", MFD_CLOEXEC);

	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (fd < 0 || !devnull || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = report_read(path, 1u << 20, err, sizeof(err));
	close(fd);
	if (!r)
		return 0;
	report_render(r, devnull);
	report_headline(r, headline, sizeof(headline));
	json_decref(r);
	return 0;
}

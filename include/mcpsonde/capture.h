/* capture.h -- capture files: the raw record stream, zlib-compressed, with a versioned header.
 *
 * Layout: a fixed little-endian header (struct capture_header) in clear, then a gzip stream of
 * records, each exactly as delivered to the pipeline (struct msd_rec_hdr first, hdr.size bytes).
 * The header keeps the offset from CLOCK_MONOTONIC to CLOCK_REALTIME of the recording machine
 * so that replayed events carry the same wall-clock times as the live run. */
#ifndef MCPSONDE_CAPTURE_H
#define MCPSONDE_CAPTURE_H

#include <stdint.h>
#include <stddef.h>

#include "events.h"

#define CAPTURE_MAGIC "MSDCAP\r\n"
#define CAPTURE_VERSION 1
#define CAPTURE_REC_MAX (sizeof(struct msd_data_rec) + MSD_CHUNK_MAX + 65536)

struct capture_header {
	char magic[8];
	uint32_t version;     /* CAPTURE_VERSION */
	uint32_t abi;         /* MSD_ABI_VERSION of the records */
	int64_t mono_to_real_ns;
	uint64_t created_real_ns;
};

struct capture_writer;
struct capture_reader;

/* Creates path mode 0600, never through a symlink and never over anything but a regular file
 * of this user with one link (see capture.c); err says why not. */
struct capture_writer *capture_writer_open(const char *path, int64_t mono_to_real_ns, char *err, size_t errlen);
/* Appends a record; -1 when it could not be written (the writer has failed, for good) or was
 * refused: a record record_check() rejects is not written, so that the file stays readable,
 * and the writer carries on. */
int capture_writer_put(struct capture_writer *w, const struct msd_rec_hdr *rec);
/* Pushes buffered records to the file, so that a writer killed later loses only what came
 * after (the reader replays a file cut at a flush point up to there). */
int capture_writer_flush(struct capture_writer *w);
/* Flushes and closes; returns 0, or -1 when something could not be written. */
int capture_writer_close(struct capture_writer *w);

struct capture_reader *capture_reader_open(const char *path, char *err, size_t errlen);
int64_t capture_reader_mono_to_real(const struct capture_reader *r);
/* 1 and *rec set (valid until the next call), 0 at the end, -1 on a corrupt file (err set). */
int capture_reader_next(struct capture_reader *r, const struct msd_rec_hdr **rec, char *err, size_t errlen);
void capture_reader_close(struct capture_reader *r);

#endif

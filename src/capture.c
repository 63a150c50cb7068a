/* capture.c -- capture files: a clear header, then a gzip stream of raw records.
 *
 * The header is written and read with plain write/read, then zlib takes over the same fd
 * (gzdopen starts at the fd's current offset). The header is encoded little-endian field by
 * field; records are stored as the pipeline saw them (host byte order, hdr.size bytes each).
 * The reader never trusts a size before checking it against sizeof(hdr) and CAPTURE_REC_MAX,
 * so a corrupt or hostile file costs one CAPTURE_REC_MAX buffer, and hands out only records
 * that pass record_check(): the first malformed one ends the replay with an error naming its
 * offset and what is wrong (a file that lies about one length is not trusted for the rest).
 * A file cut short (the writer was killed) replays every complete record, then reports where
 * it was cut. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "mcpsonde/capture.h"
#include "mcpsonde/record.h"

#define CAPTURE_GZ_BUFFER (256 * 1024)
#define CAPTURE_HEADER_SIZE 32 /* encoded size of struct capture_header */

_Static_assert(sizeof(struct capture_header) == CAPTURE_HEADER_SIZE, "capture header layout");

struct capture_writer {
	gzFile gz;
	bool failed;
};

struct capture_reader {
	gzFile gz;
	int64_t mono_to_real_ns;
	uint64_t offset; /* of the next record in the uncompressed record stream */
	char *rec;       /* CAPTURE_REC_MAX bytes: the record returned by the last next() */
	bool started;    /* a record was read: the body is known to be gzip */
	bool unfinished; /* nothing after the header: the writer died before its first flush */
	bool failed;     /* a corrupt or truncated file: every later next() fails too */
	char error[256];
};

static void capture_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int write_full(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Returns bytes read: fewer than n only at end of file; -1 on error. */
static ssize_t read_full(int fd, void *p, size_t n)
{
	char *c = p;
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, c + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

static void capture_header_encode(unsigned char *b, int64_t mono_to_real_ns, uint64_t created_real_ns)
{
	uint32_t version = htole32(CAPTURE_VERSION), abi = htole32(MSD_ABI_VERSION);
	uint64_t m2r = htole64((uint64_t)mono_to_real_ns), created = htole64(created_real_ns);

	memcpy(b, CAPTURE_MAGIC, 8);
	memcpy(b + 8, &version, 4);
	memcpy(b + 12, &abi, 4);
	memcpy(b + 16, &m2r, 8);
	memcpy(b + 24, &created, 8);
}

static void capture_header_decode(const unsigned char *b, struct capture_header *h)
{
	uint32_t u32;
	uint64_t u64;

	memcpy(h->magic, b, 8);
	memcpy(&u32, b + 8, 4);
	h->version = le32toh(u32);
	memcpy(&u32, b + 12, 4);
	h->abi = le32toh(u32);
	memcpy(&u64, b + 16, 8);
	h->mono_to_real_ns = (int64_t)le64toh(u64);
	memcpy(&u64, b + 24, 8);
	h->created_real_ns = le64toh(u64);
}

/* Opens path for a new capture without trusting what is already there. A symlink is refused
 * (O_NOFOLLOW): one planted in /tmp by another user would redirect root's write anywhere. So
 * is anything but a regular file of ours with a single link: a FIFO or device, a hard link to
 * a file elsewhere, a file another user made (and may hold open). A new file is created 0600;
 * an existing one of ours is emptied and made 0600, since captures hold the traffic.
 * O_NONBLOCK only keeps the open of a FIFO from hanging before it is refused. */
static int capture_create(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	struct stat st;

	if (fd < 0) {
		int saved = errno;
		if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode))
			capture_error(err, errlen, "%s: is a symbolic link: refusing to write through it", path);
		else if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode))
			capture_error(err, errlen, "%s: not a regular file: refusing to write a capture there", path);
		else
			capture_error(err, errlen, "%s: %s", path, strerror(saved));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		capture_error(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		capture_error(err, errlen, "%s: not a regular file: refusing to write a capture there", path);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		capture_error(err, errlen, "%s: owned by uid %u, not by this user: refusing to overwrite it", path,
			      (unsigned)st.st_uid);
		goto fail;
	}
	if (st.st_nlink != 1) {
		capture_error(err, errlen, "%s: has %lu hard links: refusing to overwrite it", path,
			      (unsigned long)st.st_nlink);
		goto fail;
	}
	if (fchmod(fd, 0600) < 0 || ftruncate(fd, 0) < 0 || fcntl(fd, F_SETFL, 0) < 0) {
		capture_error(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return -1;
}

struct capture_writer *capture_writer_open(const char *path, int64_t mono_to_real_ns, char *err, size_t errlen)
{
	unsigned char hdr[CAPTURE_HEADER_SIZE];
	struct capture_writer *w = NULL;
	struct timespec now;
	int fd;

	fd = capture_create(path, err, errlen);
	if (fd < 0)
		return NULL;
	clock_gettime(CLOCK_REALTIME, &now);
	capture_header_encode(hdr, mono_to_real_ns, (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec);
	if (write_full(fd, hdr, sizeof(hdr)) < 0) {
		capture_error(err, errlen, "%s: cannot write the header: %s", path, strerror(errno));
		goto cleanup;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		capture_error(err, errlen, "%s: out of memory", path);
		goto cleanup;
	}
	/* Level 1: the writer runs beside live tracing, where CPU matters more than bytes. */
	w->gz = gzdopen(fd, "wb1");
	if (!w->gz) {
		capture_error(err, errlen, "%s: cannot start compression", path);
		goto cleanup;
	}
	if (gzbuffer(w->gz, CAPTURE_GZ_BUFFER) != 0) {
		capture_error(err, errlen, "%s: cannot size the compression buffer", path);
		gzclose(w->gz);
		free(w);
		return NULL;
	}
	return w;
cleanup:
	free(w);
	close(fd);
	return NULL;
}

int capture_writer_put(struct capture_writer *w, const struct msd_rec_hdr *rec)
{
	if (w->failed)
		return -1;
	/* What the reader would refuse is not written: the file stays readable past it. */
	if (rec->size >= sizeof(*rec) && rec->size <= CAPTURE_REC_MAX && record_check(rec, NULL, 0) < 0)
		return -1;
	if (rec->size < sizeof(*rec) || rec->size > CAPTURE_REC_MAX ||
	    gzwrite(w->gz, rec, rec->size) != (int)rec->size) {
		w->failed = true;
		return -1;
	}
	return 0;
}

int capture_writer_flush(struct capture_writer *w)
{
	if (w->failed || gzflush(w->gz, Z_SYNC_FLUSH) != Z_OK) {
		w->failed = true;
		return -1;
	}
	return 0;
}

int capture_writer_close(struct capture_writer *w)
{
	int ret;

	if (!w)
		return -1;
	ret = gzclose(w->gz) == Z_OK && !w->failed ? 0 : -1;
	free(w);
	return ret;
}

struct capture_reader *capture_reader_open(const char *path, char *err, size_t errlen)
{
	unsigned char raw[CAPTURE_HEADER_SIZE];
	struct capture_header h;
	struct capture_reader *r = NULL;
	struct stat st;
	ssize_t got;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		capture_error(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	got = read_full(fd, raw, sizeof(raw));
	if (got < 0) {
		capture_error(err, errlen, "%s: %s", path, strerror(errno));
		goto cleanup;
	}
	if ((size_t)got < 8 || memcmp(raw, CAPTURE_MAGIC, 8) != 0) {
		capture_error(err, errlen, "%s: not an mcpsonde capture", path);
		goto cleanup;
	}
	if ((size_t)got < sizeof(raw)) {
		capture_error(err, errlen, "%s: truncated capture header", path);
		goto cleanup;
	}
	capture_header_decode(raw, &h);
	if (h.version != CAPTURE_VERSION) {
		capture_error(err, errlen, "%s: capture version %u not supported (this mcpsonde reads %d)", path,
			      h.version, CAPTURE_VERSION);
		goto cleanup;
	}
	if (h.abi != MSD_ABI_VERSION) {
		capture_error(err, errlen, "%s: capture record ABI %u not supported (this mcpsonde reads %d)", path,
			      h.abi, MSD_ABI_VERSION);
		goto cleanup;
	}
	r = calloc(1, sizeof(*r));
	if (r)
		r->rec = malloc(CAPTURE_REC_MAX);
	if (!r || !r->rec) {
		capture_error(err, errlen, "%s: out of memory", path);
		goto cleanup;
	}
	r->mono_to_real_ns = h.mono_to_real_ns;
	/* A finished writer always leaves a gzip header and trailer after ours. */
	r->unfinished = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == CAPTURE_HEADER_SIZE;
	r->gz = gzdopen(fd, "rb");
	if (!r->gz) {
		capture_error(err, errlen, "%s: cannot start decompression", path);
		goto cleanup;
	}
	gzbuffer(r->gz, CAPTURE_GZ_BUFFER);
	return r;
cleanup:
	if (r)
		free(r->rec);
	free(r);
	close(fd);
	return NULL;
}

int64_t capture_reader_mono_to_real(const struct capture_reader *r)
{
	return r->mono_to_real_ns;
}

/* Reads exactly n bytes. Returns n, fewer at the end of the data (clean or cut short: *cut
 * tells), or -1 when zlib reports corruption. */
static int capture_read(struct capture_reader *r, void *p, unsigned n, bool *cut)
{
	int got = gzread(r->gz, p, n);
	int zerr;

	*cut = false;
	if (got < 0)
		return -1;
	if ((unsigned)got < n) {
		/* zlib reports a gzip stream without its trailer as Z_BUF_ERROR, not as an error
		 * return: that is a file whose writer did not finish. */
		gzerror(r->gz, &zerr);
		if (zerr == Z_BUF_ERROR)
			*cut = true;
		else if (zerr != Z_OK)
			return -1;
	}
	return got;
}

static int capture_reader_fail(struct capture_reader *r, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	r->failed = true;
	va_start(ap, fmt);
	vsnprintf(r->error, sizeof(r->error), fmt, ap);
	va_end(ap);
	capture_error(err, errlen, "%s", r->error);
	return -1;
}

int capture_reader_next(struct capture_reader *r, const struct msd_rec_hdr **rec, char *err, size_t errlen)
{
	struct msd_rec_hdr *h = (struct msd_rec_hdr *)r->rec;
	char why[160];
	int zerr;
	bool cut;
	int got;

	if (r->failed) {
		capture_error(err, errlen, "%s", r->error);
		return -1;
	}
	got = capture_read(r, h, sizeof(*h), &cut);
	if (got < 0)
		goto corrupt;
	if (got > 0 && !r->started) {
		/* zlib would pass a body that is not gzip through as is. */
		if (gzdirect(r->gz))
			return capture_reader_fail(r, err, errlen, "corrupt capture: the records are not gzip-compressed");
		r->started = true;
	}
	if (got == 0 && (cut || r->unfinished))
		return capture_reader_fail(r, err, errlen, "capture truncated at offset %llu (its writer did not finish)",
					   (unsigned long long)r->offset);
	if (got == 0)
		return 0;
	if ((size_t)got < sizeof(*h))
		return capture_reader_fail(r, err, errlen, "truncated record at offset %llu",
					   (unsigned long long)r->offset);
	if (h->size < sizeof(*h) || h->size > CAPTURE_REC_MAX)
		return capture_reader_fail(r, err, errlen, "record at offset %llu has an invalid size (%u bytes)",
					   (unsigned long long)r->offset, h->size);
	got = capture_read(r, r->rec + sizeof(*h), h->size - (unsigned)sizeof(*h), &cut);
	if (got < 0)
		goto corrupt;
	if ((size_t)got < h->size - sizeof(*h))
		return capture_reader_fail(r, err, errlen, "truncated record at offset %llu",
					   (unsigned long long)r->offset);
	if (record_check(h, why, sizeof(why)) < 0)
		return capture_reader_fail(r, err, errlen, "corrupt record at offset %llu: %s",
					   (unsigned long long)r->offset, why);
	r->offset += h->size;
	*rec = h;
	return 1;
corrupt:
	return capture_reader_fail(r, err, errlen, "corrupt capture at offset %llu: %s", (unsigned long long)r->offset,
				   gzerror(r->gz, &zerr));
}

void capture_reader_close(struct capture_reader *r)
{
	if (!r)
		return;
	gzclose(r->gz);
	free(r->rec);
	free(r);
}

/* test_capture.c -- capture files: round trip, header validation, truncation, corrupt records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "mcpsonde/capture.h"

#define NRECS 300

struct fixture {
	char dir[64];
	char path[128];
	struct msd_rec_hdr *recs[NRECS];
	int nrecs;
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	strcpy(fx->dir, "/tmp/test_capture.XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/cap.msd", fx->dir);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	for (int i = 0; i < fx->nrecs; i++)
		free(fx->recs[i]);
	unlink(fx->path);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static void *rec_alloc(struct fixture *fx, size_t size, uint16_t kind, uint64_t ts)
{
	struct msd_rec_hdr *h = calloc(1, size);

	assert_non_null(h);
	assert_true(fx->nrecs < NRECS);
	h->kind = kind;
	h->abi = MSD_ABI_VERSION;
	h->size = (uint32_t)size;
	h->ts_ns = ts;
	h->tgid = 4242;
	h->tid = 4243;
	fx->recs[fx->nrecs++] = h;
	return h;
}

/* Payload bytes from a simple generator: barely compressible, so files have some length. */
static void fill_noise(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* Data records with payloads, an exit and a proc record with its cmdline, in a mix. */
static void make_records(struct fixture *fx, int ndata)
{
	static const char cmdline[] = "node\0/srv/dist/index.js\0stdio";
	struct msd_proc_rec *proc = rec_alloc(fx, sizeof(*proc) + sizeof(cmdline), MSD_REC_PROC, 1);
	struct msd_exit_rec *ex;

	proc->start_ticks = 123456;
	proc->ppid = 1;
	proc->cmdline_len = sizeof(cmdline);
	strcpy(proc->comm, "node");
	strcpy(proc->exe, "/usr/bin/node");
	memcpy(proc->cmdline, cmdline, sizeof(cmdline));
	for (int i = 0; i < ndata; i++) {
		size_t len = (size_t)(i * 997) % MSD_CHUNK_MAX + (i == 1 ? 0 : 1);
		struct msd_data_rec *d = rec_alloc(fx, sizeof(*d) + len, MSD_REC_DATA, 10 + (uint64_t)i);

		d->fd = i % 2;
		d->dir = (uint8_t)(i % 2);
		d->fd_kind = MSD_FD_SOCKET;
		d->syscall_len = len;
		d->stream_off = (uint64_t)i * 1000;
		d->cap_len = (uint32_t)len;
		fill_noise(d->data, len, (uint32_t)i);
	}
	ex = rec_alloc(fx, sizeof(*ex), MSD_REC_EXIT, 99999);
	ex->exit_code = 9; /* killed by SIGKILL */
	ex->start_ns = 777;
	strcpy(ex->comm, "node");
}

static void write_records(struct fixture *fx, int64_t mono_to_real)
{
	char err[256] = "";
	struct capture_writer *w = capture_writer_open(fx->path, mono_to_real, err, sizeof(err));

	assert_non_null(w);
	for (int i = 0; i < fx->nrecs; i++)
		assert_int_equal(capture_writer_put(w, fx->recs[i]), 0);
	assert_int_equal(capture_writer_close(w), 0);
}

static void test_round_trip(void **state)
{
	struct fixture *fx = *state;
	const struct msd_rec_hdr *rec;
	struct capture_reader *r;
	char err[256] = "";
	struct stat st;
	int i = 0, ret;

	make_records(fx, 40);
	write_records(fx, -1234567890123LL);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_mono_to_real(r), -1234567890123LL);
	while ((ret = capture_reader_next(r, &rec, err, sizeof(err))) == 1) {
		assert_true(i < fx->nrecs);
		assert_int_equal(rec->size, fx->recs[i]->size);
		assert_memory_equal(rec, fx->recs[i], rec->size);
		i++;
	}
	assert_int_equal(ret, 0);
	assert_int_equal(i, fx->nrecs);
	/* Spot checks through the typed views. */
	capture_reader_close(r);
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec->kind, MSD_REC_PROC);
	assert_memory_equal(((const struct msd_proc_rec *)rec)->cmdline, "node\0/srv/dist/index.js\0stdio", 30);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(rec->kind, MSD_REC_DATA);
	assert_int_equal(((const struct msd_data_rec *)rec)->cap_len, 1);
	capture_reader_close(r);
}

static void write_raw(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void test_bad_magic(void **state)
{
	struct fixture *fx = *state;
	char err[256] = "";

	write_raw(fx->path, "{\"jsonrpc\":\"2.0\",\"id\":1}\n{\"more\":1}\n", 36);
	assert_null(capture_reader_open(fx->path, err, sizeof(err)));
	assert_non_null(strstr(err, "not an mcpsonde capture"));
	write_raw(fx->path, "MSD", 3);
	assert_null(capture_reader_open(fx->path, err, sizeof(err)));
	assert_non_null(strstr(err, "not an mcpsonde capture"));
	unlink(fx->path);
	assert_null(capture_reader_open(fx->path, err, sizeof(err)));
	assert_non_null(strstr(err, "No such file"));
}

static void test_wrong_version(void **state)
{
	struct fixture *fx = *state;
	struct capture_header h = { .version = 2, .abi = MSD_ABI_VERSION };
	char err[256] = "";

	memcpy(h.magic, CAPTURE_MAGIC, 8);
	write_raw(fx->path, &h, sizeof(h));
	assert_null(capture_reader_open(fx->path, err, sizeof(err)));
	assert_non_null(strstr(err, "capture version 2 not supported (this mcpsonde reads 1)"));
	h.version = CAPTURE_VERSION;
	h.abi = MSD_ABI_VERSION + 1;
	write_raw(fx->path, &h, sizeof(h));
	assert_null(capture_reader_open(fx->path, err, sizeof(err)));
	assert_non_null(strstr(err, "ABI"));
}

static void truncate_to(const char *path, off_t len)
{
	assert_int_equal(truncate(path, len), 0);
}

/* A file cut anywhere replays every record before the cut, intact, then fails with a message. */
static void test_truncated_file(void **state)
{
	struct fixture *fx = *state;
	struct stat st;
	off_t full;

	make_records(fx, 200);
	write_records(fx, 0);
	assert_int_equal(stat(fx->path, &st), 0);
	full = st.st_size;
	assert_true(full > 1 << 20);
	for (int cut = 1; cut <= 9; cut++) {
		const struct msd_rec_hdr *rec;
		struct capture_reader *r;
		char err[256] = "";
		int i = 0, ret;

		write_records(fx, 0);
		truncate_to(fx->path, full * cut / 10);
		r = capture_reader_open(fx->path, err, sizeof(err));
		assert_non_null(r);
		while ((ret = capture_reader_next(r, &rec, err, sizeof(err))) == 1) {
			assert_memory_equal(rec, fx->recs[i], fx->recs[i]->size);
			i++;
		}
		assert_int_equal(ret, -1);
		assert_true(i > 0 || cut == 1);
		assert_true(i < fx->nrecs);
		assert_non_null(strstr(err, "truncated"));
		/* The failure is sticky. */
		err[0] = '\0';
		assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "truncated"));
		capture_reader_close(r);
	}
	/* A writer that died before its first flush leaves only the header. */
	truncate_to(fx->path, sizeof(struct capture_header));
	{
		const struct msd_rec_hdr *rec;
		char err[256] = "";
		struct capture_reader *r = capture_reader_open(fx->path, err, sizeof(err));

		assert_non_null(r);
		assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
		assert_non_null(strstr(err, "truncated"));
		capture_reader_close(r);
	}
}

/* Appends a gzip body holding raw bytes after a valid header. */
static void write_with_body(const char *path, const void *body, size_t n)
{
	struct capture_header h = { .version = CAPTURE_VERSION, .abi = MSD_ABI_VERSION };
	gzFile gz;

	memcpy(h.magic, CAPTURE_MAGIC, 8);
	write_raw(path, &h, sizeof(h));
	gz = gzopen(path, "ab");
	assert_non_null(gz);
	assert_int_equal(gzwrite(gz, body, (unsigned)n), (int)n);
	assert_int_equal(gzclose(gz), Z_OK);
}

static void test_invalid_record_size(void **state)
{
	struct fixture *fx = *state;
	struct msd_rec_hdr recs[2] = {
		{ .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION, .size = sizeof(struct msd_rec_hdr) },
		{ .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = 4 },
	};
	const struct msd_rec_hdr *rec;
	struct capture_reader *r;
	char err[256] = "";

	write_with_body(fx->path, recs, sizeof(recs));
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "record at offset 24 has an invalid size (4 bytes)"));
	capture_reader_close(r);

	recs[1].size = 0x7fffffff;
	write_with_body(fx->path, recs, sizeof(recs));
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid size"));
	capture_reader_close(r);
}

static void test_body_not_gzip(void **state)
{
	struct fixture *fx = *state;
	struct capture_header h = { .version = CAPTURE_VERSION, .abi = MSD_ABI_VERSION };
	char file[sizeof(h) + sizeof(struct msd_rec_hdr)] = { 0 };
	struct msd_rec_hdr rec0 = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION, .size = sizeof(rec0) };
	const struct msd_rec_hdr *rec;
	struct capture_reader *r;
	char err[256] = "";

	memcpy(h.magic, CAPTURE_MAGIC, 8);
	memcpy(file, &h, sizeof(h));
	memcpy(file + sizeof(h), &rec0, sizeof(rec0));
	write_raw(fx->path, file, sizeof(file));
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "not gzip"));
	capture_reader_close(r);
}

static void test_writer_rejects_bad_records(void **state)
{
	struct fixture *fx = *state;
	struct msd_rec_hdr bad = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION, .size = 3 };
	char err[256] = "";
	struct capture_writer *w;

	w = capture_writer_open(fx->path, 0, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(capture_writer_put(w, &bad), -1);
	assert_int_equal(capture_writer_close(w), -1);

	assert_null(capture_writer_open("/nonexistent-dir/cap.msd", 0, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir/cap.msd"));
}

static void test_writer_reports_disk_full(void **state)
{
	(void)state;
	struct msd_data_rec *d = calloc(1, sizeof(*d) + MSD_CHUNK_MAX);
	char err[256] = "";
	struct capture_writer *w;
	int failed = 0;

	if (access("/dev/full", W_OK) != 0)
		skip();
	assert_non_null(d);
	d->hdr.kind = MSD_REC_DATA;
	d->hdr.abi = MSD_ABI_VERSION;
	d->hdr.size = sizeof(*d) + MSD_CHUNK_MAX;
	/* /dev/full takes open and fails every write: the header write fails first. */
	w = capture_writer_open("/dev/full", 0, err, sizeof(err));
	if (w) {
		for (int i = 0; i < 64; i++)
			failed |= capture_writer_put(w, &d->hdr) != 0;
		failed |= capture_writer_close(w) != 0;
		assert_true(failed);
	} else {
		assert_non_null(strstr(err, "cannot write the header"));
	}
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_magic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_record_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_not_gzip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_rejects_bad_records, setup, teardown),
		cmocka_unit_test(test_writer_reports_disk_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

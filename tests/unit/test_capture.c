/* test_capture.c -- capture files: round trip, header validation, truncation, corrupt records. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
	struct {
		struct msd_exit_rec exit;
		struct msd_rec_hdr bad;
	} body = {
		.exit = { .hdr = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION, .size = sizeof(struct msd_exit_rec) } },
		.bad = { .kind = MSD_REC_DATA, .abi = MSD_ABI_VERSION, .size = 4 },
	};
	const struct msd_rec_hdr *rec;
	struct capture_reader *r;
	char err[256] = "", want[64];

	_Static_assert(sizeof(body) == sizeof(struct msd_exit_rec) + sizeof(struct msd_rec_hdr), "no padding");
	write_with_body(fx->path, &body, sizeof(body));
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "record at offset %zu has an invalid size (4 bytes)", sizeof(struct msd_exit_rec));
	assert_non_null(strstr(err, want));
	capture_reader_close(r);

	body.bad.size = 0x7fffffff;
	write_with_body(fx->path, &body, sizeof(body));
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
	assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "invalid size"));
	capture_reader_close(r);
}

/* One malformed record after a good one: the reader hands out the good one, then stops with
 * an error naming the offset and what is wrong, and every later call fails the same way. */
static void expect_corrupt(struct fixture *fx, const void *rec, size_t size, const char *what)
{
	struct msd_oom_rec good = { .hdr = { .kind = MSD_REC_OOM, .abi = MSD_ABI_VERSION, .size = sizeof(good) } };
	char *body = calloc(1, sizeof(good) + size), err[256] = "", want[64];
	const struct msd_rec_hdr *got;
	struct capture_reader *r;

	assert_non_null(body);
	memcpy(body, &good, sizeof(good));
	memcpy(body + sizeof(good), rec, size);
	write_with_body(fx->path, body, sizeof(good) + size);
	free(body);
	r = capture_reader_open(fx->path, err, sizeof(err));
	assert_non_null(r);
	assert_int_equal(capture_reader_next(r, &got, err, sizeof(err)), 1);
	assert_int_equal(capture_reader_next(r, &got, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "corrupt record at offset %zu: ", sizeof(good));
	if (!strstr(err, want) || !strstr(err, what))
		fail_msg("expected \"%s\" and \"%s\" in: %s", want, what, err);
	assert_null(strchr(err, '\n'));
	assert_int_equal(capture_reader_next(r, &got, err, sizeof(err)), -1);
	capture_reader_close(r);
}

#define HDR(k, sz) { .kind = (k), .abi = MSD_ABI_VERSION, .size = (uint32_t)(sz), .tgid = 7, .tid = 7 }

/* Every length field bounded by the record, every string terminated within its array: a
 * crafted process identity once made replay copy heap bytes into the command line, or crash. */
static void test_corrupt_records(void **state)
{
	struct fixture *fx = *state;
	struct {
		struct msd_proc_rec p;
		char cmdline[16];
	} proc = { .p = { .hdr = HDR(MSD_REC_PROC, sizeof(proc)), .cmdline_len = 16 } };
	struct {
		struct msd_data_rec d;
		char data[8];
	} data = { .d = { .hdr = HDR(MSD_REC_DATA, sizeof(data)), .fd = 1, .dir = MSD_DIR_WRITE, .cap_len = 8,
			   .syscall_len = 8 } };
	struct msd_exec_rec exec = { .hdr = HDR(MSD_REC_EXEC, sizeof(exec)) };
	struct msd_fork_rec fork = { .hdr = HDR(MSD_REC_FORK, sizeof(fork)) };
	struct msd_exit_rec exit = { .hdr = HDR(MSD_REC_EXIT, sizeof(exit)) };
	struct msd_loss_rec loss = { .hdr = HDR(MSD_REC_LOSS, sizeof(loss)), .reason = MSD_DROP__MAX };
	struct msd_conn_rec conn = { .hdr = HDR(MSD_REC_CONN, sizeof(conn)), .event = MSD_CONN_SEEN + 1 };
	struct msd_rec_hdr unknown[4] = { HDR(77, sizeof(unknown)) };

	memcpy(proc.cmdline, "node\0index.js\0xx", 16);
	proc.p.cmdline_len = 1u << 20;
	expect_corrupt(fx, &proc, sizeof(proc), "cmdline_len 1048576 exceeds the 16 cmdline bytes");
	proc.p.cmdline_len = 17;
	expect_corrupt(fx, &proc, sizeof(proc), "cmdline_len 17 exceeds");
	proc.p.cmdline_len = 16;
	memset(proc.p.exe, 'A', sizeof(proc.p.exe));
	expect_corrupt(fx, &proc, sizeof(proc), "exe is not NUL-terminated");
	proc.p.exe[0] = '\0';
	memset(proc.p.comm, 'c', sizeof(proc.p.comm));
	expect_corrupt(fx, &proc, sizeof(proc), "comm is not NUL-terminated");
	proc.p.hdr.size = sizeof(struct msd_proc_rec) - 1;
	expect_corrupt(fx, &proc, sizeof(struct msd_proc_rec) - 1, "shorter than the");

	data.d.cap_len = 9;
	expect_corrupt(fx, &data, sizeof(data), "cap_len 9 exceeds the 8 payload bytes");
	data.d.cap_len = 8;
	data.d.dir = 2;
	expect_corrupt(fx, &data, sizeof(data), "direction 2");
	data.d.dir = MSD_DIR_WRITE;
	data.d.role = MSD_ROLE_CONN + 1;
	expect_corrupt(fx, &data, sizeof(data), "unknown role 5");
	data.d.role = MSD_ROLE_OUT;
	data.d.stream_off = UINT64_MAX - 3;
	expect_corrupt(fx, &data, sizeof(data), "out of range");
	data.d.stream_off = 0;
	data.d.hole_len = UINT64_MAX;
	expect_corrupt(fx, &data, sizeof(data), "out of range");

	memset(exec.filename, '/', sizeof(exec.filename));
	expect_corrupt(fx, &exec, sizeof(exec), "filename is not NUL-terminated");
	memset(fork.comm, 'x', sizeof(fork.comm));
	expect_corrupt(fx, &fork, sizeof(fork), "fork record (kind 2): comm is not NUL-terminated");
	memset(exit.comm, 'x', sizeof(exit.comm));
	expect_corrupt(fx, &exit, sizeof(exit), "comm is not NUL-terminated");
	exit.comm[0] = '\0';
	exit.hdr.abi = MSD_ABI_VERSION + 1;
	expect_corrupt(fx, &exit, sizeof(exit), "record ABI");
	expect_corrupt(fx, &loss, sizeof(loss), "unknown loss reason");
	expect_corrupt(fx, &conn, sizeof(conn), "unknown connection event 6");
	conn.event = MSD_CONN_CLOSE;
	conn.hdr.size = sizeof(conn) - 1;
	expect_corrupt(fx, &conn, sizeof(conn) - 1, "shorter than the");
	expect_corrupt(fx, unknown, sizeof(unknown), "unknown record (kind 77)");
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

	/* Framed right but malformed (an exit record without its fields): refused, not written,
	 * and the writer goes on. */
	{
		struct msd_rec_hdr shortexit = { .kind = MSD_REC_EXIT, .abi = MSD_ABI_VERSION, .size = sizeof(shortexit) };
		struct msd_oom_rec oom = { .hdr = { .kind = MSD_REC_OOM, .abi = MSD_ABI_VERSION, .size = sizeof(oom) } };
		const struct msd_rec_hdr *rec;
		struct capture_reader *r;

		w = capture_writer_open(fx->path, 0, err, sizeof(err));
		assert_non_null(w);
		assert_int_equal(capture_writer_put(w, &shortexit), -1);
		assert_int_equal(capture_writer_put(w, &oom.hdr), 0);
		assert_int_equal(capture_writer_close(w), 0);
		r = capture_reader_open(fx->path, err, sizeof(err));
		assert_non_null(r);
		assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 1);
		assert_int_equal(rec->kind, MSD_REC_OOM);
		assert_int_equal(capture_reader_next(r, &rec, err, sizeof(err)), 0);
		capture_reader_close(r);
	}

	assert_null(capture_writer_open("/nonexistent-dir/cap.msd", 0, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir/cap.msd"));
}

/* A file that cannot grow (RLIMIT_FSIZE, in a child): writes fail and the writer says so. */
static void test_writer_reports_disk_full(void **state)
{
	struct fixture *fx = *state;
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct msd_data_rec *d = calloc(1, sizeof(*d) + MSD_CHUNK_MAX);
		struct rlimit lim = { 64 << 10, 64 << 10 };
		char err[256] = "";
		struct capture_writer *w;
		int failed = 0;

		signal(SIGXFSZ, SIG_IGN);
		if (!d || setrlimit(RLIMIT_FSIZE, &lim) < 0)
			_exit(2);
		d->hdr.kind = MSD_REC_DATA;
		d->hdr.abi = MSD_ABI_VERSION;
		d->hdr.size = sizeof(*d) + MSD_CHUNK_MAX;
		d->cap_len = MSD_CHUNK_MAX;
		fill_noise(d->data, MSD_CHUNK_MAX, 1);
		w = capture_writer_open(fx->path, 0, err, sizeof(err));
		if (!w)
			_exit(3);
		for (int i = 0; i < 64; i++)
			failed |= capture_writer_put(w, &d->hdr) != 0;
		failed |= capture_writer_close(w) != 0;
		_exit(failed ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Output files are created, never followed: a symlink is refused and its target untouched; an
 * existing file of ours becomes 0600; a FIFO or a hard-linked file is refused at once. */
static void test_writer_creates_safely(void **state)
{
	struct fixture *fx = *state;
	char target[160], other[160], err[256] = "", buf[16] = "";
	struct capture_writer *w;
	struct stat st;
	FILE *f;

	snprintf(target, sizeof(target), "%s/precious", fx->dir);
	write_raw(target, "precious", 8);
	assert_int_equal(symlink(target, fx->path), 0);
	assert_null(capture_writer_open(fx->path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "symbolic link"));
	f = fopen(target, "r");
	assert_non_null(f);
	assert_int_equal(fread(buf, 1, sizeof(buf), f), 8);
	fclose(f);
	assert_string_equal(buf, "precious");
	assert_int_equal(unlink(fx->path), 0);

	/* Hard link to a file of ours elsewhere: refused, not truncated. */
	assert_int_equal(link(target, fx->path), 0);
	assert_null(capture_writer_open(fx->path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "hard links"));
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 8);
	assert_int_equal(unlink(fx->path), 0);
	assert_int_equal(unlink(target), 0);

	/* A FIFO: refused without waiting for a reader. */
	assert_int_equal(mkfifo(fx->path, 0644), 0);
	assert_null(capture_writer_open(fx->path, 0, err, sizeof(err)));
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(unlink(fx->path), 0);

	/* An existing 0644 file of ours: emptied, and 0600. */
	write_raw(fx->path, "old contents, world-readable", 28);
	assert_int_equal(chmod(fx->path, 0644), 0);
	w = capture_writer_open(fx->path, 0, err, sizeof(err));
	assert_non_null(w);
	assert_int_equal(capture_writer_close(w), 0);
	assert_int_equal(stat(fx->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	/* Someone else's file: refused (only root can make one here). */
	if (geteuid() == 0) {
		snprintf(other, sizeof(other), "%s", fx->path);
		assert_int_equal(chown(other, 65534, 65534), 0);
		assert_null(capture_writer_open(other, 0, err, sizeof(err)));
		assert_non_null(strstr(err, "owned by uid 65534"));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_magic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_record_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_not_gzip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_rejects_bad_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_reports_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_creates_safely, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

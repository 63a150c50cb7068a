/* source_live.c -- the live source: loads bpf/mcpsonde.bpf.c and delivers its ring buffer.
 *
 * The only module that knows libbpf. source_live_open checks up front what users actually
 * get wrong (privileges, BTF, tracefs, kernel age) so that each failure is one readable line;
 * libbpf itself stays quiet unless verbose.
 *
 * The caller drains the ring buffer in slices (source_live_poll with a deadline), so that it
 * serves its signals, timers and metrics however fast records arrive.
 *
 * Invariants: nothing is pinned and every kernel object (maps, programs, links) lives only as
 * long as this process's file descriptors (and those of its detaching child, see
 * source_live_close), so mcpsonde exiting, crashing or being SIGKILLed detaches everything and
 * the observed processes never notice. Records reach the callback exactly as the kernel wrote
 * them (events.h), in ring buffer order, each once. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/capability.h>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "mcpsonde/procfs.h"
#include "mcpsonde/ring.h"
#include "mcpsonde/source.h"
#include "mcpsonde.skel.h"

/* 15 ms of the fastest stream a tracked pipe carries here (about 2 GB/s of 64 KiB messages),
 * where 16 MiB let a busy core's stalls lose records; mapped once (ring.h), its pages count
 * once in RSS. */
#define RINGBUF_DEFAULT_BYTES (32u << 20)
#define CLOCK_EVERY 32 /* records between two looks at the clock during a slice */

#define TRACEFS "/sys/kernel/tracing"
#define DEBUGFS_TRACING "/sys/kernel/debug/tracing"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

struct source_live {
	struct mcpsonde_bpf *skel;
	struct ring *rb;
	int ncpus;
	bool dynptr;       /* bpf_probe_read_user_dynptr (6.16+) */
	bool direct_reads; /* bpf_rdonly_cast (6.2+) */
	bool behind;       /* the last slice ended before the ring buffer was empty */
	/* Records consumed and never analysed: mcpsonde stopped first (MSD_DROP_BACKLOG). */
	uint64_t unread_records, unread_bytes;
	/* Verdict entries user space created (source_live_verdict): the kernel counts the ones it
	 * makes and every one freed, so the entries alive are both makers' sum minus the freed. */
	uint64_t verdicts_made;
	/* Set for the duration of source_live_poll: the ring buffer callback has one context. */
	source_record_fn fn; /* NULL: count the records as unread */
	void *fn_ctx;
	size_t delivered;
	uint64_t deadline_ns;
	bool stopped;
};

/* libbpf's print callback is process-wide, hence these two. */
static bool libbpf_verbose;
static bool verifier_rejected;

static int source_live_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	(void)level;
	/* libbpf prints the verifier log itself when a program fails to load: note it to give
	 * the right message, and show it only when asked. */
	if (strstr(fmt, "BEGIN PROG LOAD LOG") || strstr(fmt, "failed to load"))
		verifier_rejected = true;
	if (!libbpf_verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static bool caps_have(const struct __user_cap_data_struct data[2], int cap)
{
	return data[cap / 32].effective & (1u << (cap % 32));
}

/* CAP_BPF + CAP_PERFMON (5.8+) or CAP_SYS_ADMIN; root in a container may have neither. */
static bool caps_sufficient(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[2] = {};

	if (syscall(SYS_capget, &hdr, data))
		return geteuid() == 0;
	return caps_have(data, CAP_SYS_ADMIN) || (caps_have(data, CAP_BPF) && caps_have(data, CAP_PERFMON));
}

/* libbpf finds tracepoint ids under debugfs's tracing directory when it exists, else tracefs. */
static bool tracefs_available(void)
{
	return access(DEBUGFS_TRACING "/events", F_OK) == 0 || access(TRACEFS "/events", F_OK) == 0;
}

static int tracefs_ensure(char *err, size_t errlen)
{
	if (tracefs_available())
		return 0;
	if (mount("nodev", TRACEFS, "tracefs", 0, NULL) && errno != EBUSY) {
		snprintf(err, errlen, "tracefs is not mounted and mounting it failed (%s): run 'mount -t tracefs nodev %s'",
			 strerror(errno), TRACEFS);
		return -1;
	}
	if (access(TRACEFS "/events/syscalls", F_OK)) {
		snprintf(err, errlen, "kernel has no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)");
		return -1;
	}
	return 0;
}

/* mark_victim passes the victim's task_struct since 6.8 and only its pid before: loading the
 * program elsewhere would fail the whole object, so it is left out there. */
static bool oom_tracepoint_has_task(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	const struct btf_type *t;
	const struct btf_param *params;
	bool ok = false;
	__s32 id;

	if (!vmlinux)
		return false;
	id = btf__find_by_name_kind(vmlinux, "btf_trace_mark_victim", BTF_KIND_TYPEDEF);
	if (id < 0)
		goto cleanup;
	t = btf__type_by_id(vmlinux, btf__resolve_type(vmlinux, id));
	if (!t || !btf_is_ptr(t))
		goto cleanup;
	t = btf__type_by_id(vmlinux, t->type);
	if (!t || !btf_is_func_proto(t) || btf_vlen(t) < 2)
		goto cleanup;
	params = btf_params(t); /* params[0] is the tracepoint's void *__data */
	t = btf__type_by_id(vmlinux, btf__resolve_type(vmlinux, params[1].type));
	ok = t && btf_is_ptr(t);
cleanup:
	btf__free(vmlinux);
	return ok;
}

static bool kernel_has_kfunc(const char *name)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	bool ok;

	if (!vmlinux)
		return false;
	ok = btf__find_by_name_kind(vmlinux, name, BTF_KIND_FUNC) > 0;
	btf__free(vmlinux);
	return ok;
}

static uint64_t source_live_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* What a lost record would have carried: its payload, as the kernel counts drops. */
static uint64_t rec_payload(const struct msd_rec_hdr *rec)
{
	return rec->kind == MSD_REC_DATA ? ((const struct msd_data_rec *)rec)->cap_len : 0;
}

static int source_live_on_record(void *ctx, void *data, size_t size)
{
	struct source_live *src = ctx;
	const struct msd_rec_hdr *rec = data;

	/* hdr.size is what the record holds; its slot may be larger (a size class). Anything
	 * else is not a record of ours. */
	if (size < sizeof(*rec) || rec->size < sizeof(*rec) || rec->size > size)
		return 0;
	if (!src->fn) {
		src->unread_records++;
		src->unread_bytes += rec_payload(rec);
		return 0;
	}
	src->delivered++;
	if (src->fn(src->fn_ctx, rec) ||
	    (src->deadline_ns && src->delivered % CLOCK_EVERY == 0 && source_live_now_ns() >= src->deadline_ns)) {
		src->stopped = true;
		return -ECANCELED; /* libbpf stops consuming only on a negative return */
	}
	return 0;
}

struct source_live *source_live_open(const struct source_live_opts *opts, char *err, size_t errlen)
{
	struct source_live *src = NULL;
	size_t rb_bytes = opts->ringbuf_bytes ? opts->ringbuf_bytes : RINGBUF_DEFAULT_BYTES;
	long page = sysconf(_SC_PAGESIZE);
	int ret;

	libbpf_verbose = opts->verbose;
	verifier_rejected = false;
	libbpf_set_print(source_live_libbpf_print);

	if (!caps_sufficient()) {
		snprintf(err, errlen, "needs root (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)");
		return NULL;
	}
	if (access("/sys/kernel/btf/vmlinux", R_OK)) {
		snprintf(err, errlen, "kernel has no BTF (CONFIG_DEBUG_INFO_BTF)");
		return NULL;
	}
	if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) <= 0) {
		snprintf(err, errlen, "kernel too old: needs BPF ring buffer (5.8+)");
		return NULL;
	}
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_loop, NULL) <= 0) {
		snprintf(err, errlen, "kernel too old: needs bpf_loop (5.17+)");
		return NULL;
	}
	if (libbpf_probe_bpf_helper(BPF_PROG_TYPE_TRACEPOINT, BPF_FUNC_task_storage_get, NULL) <= 0) {
		snprintf(err, errlen, "kernel too old: needs task storage in tracing programs (5.13+)");
		return NULL;
	}
	if (rb_bytes < (size_t)page || (rb_bytes & (rb_bytes - 1))) {
		snprintf(err, errlen, "ring buffer size %zu is not a power of two of at least %ld bytes", rb_bytes, page);
		return NULL;
	}
	if (tracefs_ensure(err, errlen))
		return NULL;

	src = calloc(1, sizeof(*src));
	if (!src) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* kfuncs are declared weak: the programs load without them, and never call one that
	 * is missing (its branch is dead code for the verifier). */
	src->dynptr = !opts->compat && kernel_has_kfunc("bpf_probe_read_user_dynptr");
	src->direct_reads = !opts->compat && kernel_has_kfunc("bpf_rdonly_cast");
	src->ncpus = libbpf_num_possible_cpus();
	if (src->ncpus <= 0) {
		snprintf(err, errlen, "cannot count the possible CPUs: %s", strerror(-src->ncpus));
		goto cleanup;
	}

	/* libbpf >= 1.0 raises RLIMIT_MEMLOCK itself on kernels that still charge BPF memory to
	 * it (before 5.11), so there is nothing to do here for old kernels. */
	src->skel = mcpsonde_bpf__open();
	if (!src->skel) {
		snprintf(err, errlen, "cannot open the BPF object: %s", strerror(errno));
		goto cleanup;
	}
	src->skel->rodata->page_shift = __builtin_ctzl(page);
	src->skel->rodata->wakeup_bytes = rb_bytes / 16;
	src->skel->rodata->copy_dynptr = src->dynptr;
	src->skel->rodata->direct_reads = src->direct_reads;
	src->skel->rodata->discover = opts->discover;
	src->skel->rodata->self_tgid = (__u32)opts->self;
	bpf_map__set_max_entries(src->skel->maps.events, rb_bytes);
	if (!oom_tracepoint_has_task())
		bpf_program__set_autoload(src->skel->progs.mark_victim, false);

	ret = mcpsonde_bpf__load(src->skel);
	if (ret) {
		if (verifier_rejected)
			snprintf(err, errlen, "BPF program rejected by the verifier (run with -v for the log)");
		else
			snprintf(err, errlen, "cannot load the BPF programs: %s", strerror(-ret));
		goto cleanup;
	}
	ret = mcpsonde_bpf__attach(src->skel);
	if (ret) {
		snprintf(err, errlen, "cannot attach the BPF programs: %s", strerror(-ret));
		goto cleanup;
	}
	src->rb = ring_open(bpf_map__fd(src->skel->maps.events), rb_bytes);
	if (!src->rb) {
		snprintf(err, errlen, "cannot open the ring buffer: %s", strerror(errno));
		goto cleanup;
	}
	return src;

cleanup:
	source_live_close(src);
	return NULL;
}

/* The word of the kernel's tracked bitmap (mmapped .bss) that holds tgid's bit, or NULL. */
static __u64 *tracked_word(struct source_live *src, pid_t pid, __u64 *bit)
{
	size_t words = sizeof(src->skel->bss->tracked_bits) / sizeof(src->skel->bss->tracked_bits[0]);
	__u32 tgid = pid;

	if (pid <= 0 || tgid / 64 >= words)
		return NULL;
	*bit = 1ULL << (tgid % 64);
	return &src->skel->bss->tracked_bits[tgid / 64];
}

const char *source_live_paths(const struct source_live *src)
{
	static const char *const names[2][2] = {
		{ "copy in size classes, reads by helper", "copy in size classes, direct reads" },
		{ "copy by dynptr, reads by helper", "copy by dynptr, direct reads" },
	};

	return names[src->dynptr][src->direct_reads];
}

int source_live_track(struct source_live *src, pid_t pid, uint64_t start_ns,
		      const struct msd_file_id chan[MSD_ROLE__COUNT])
{
	struct msd_proc_state state = { .start_ns = start_ns };
	__u64 bit, *word = tracked_word(src, pid, &bit);
	__u32 tgid = (__u32)pid;

	if (!word)
		return -EINVAL;
	memcpy(state.chan, chan, sizeof(state.chan));
	/* The state first: a set bit always has one. NOEXIST: a process tracked already (a
	 * descendant of another -p) keeps its channel and its streams' offsets. */
	if (bpf_map_update_elem(bpf_map__fd(src->skel->maps.procs), &tgid, &state, BPF_NOEXIST) && errno != EEXIST)
		return -errno;
	/* Atomic: the kernel sets and clears other bits of the word on fork and exit. */
	__atomic_fetch_or(word, bit, __ATOMIC_SEQ_CST);
	return 0;
}

void source_live_untrack(struct source_live *src, pid_t pid)
{
	__u64 bit, *word = src ? tracked_word(src, pid, &bit) : NULL; /* NULL: the targets stage tested alone */
	__u32 tgid = (__u32)pid;

	if (!word)
		return;
	__atomic_fetch_and(word, ~bit, __ATOMIC_SEQ_CST);
	bpf_map_delete_elem(bpf_map__fd(src->skel->maps.procs), &tgid);
}

int source_live_verdict(struct source_live *src, pid_t pid, uint64_t start_ticks, enum msd_verdict_kind verdict,
			const struct msd_file_id *in)
{
	struct msd_verdict v = { .verdict = (__u8)verdict };
	struct proc_sample ps;
	int pidfd, ret = 0;

	if (in) {
		v.ino = in->ino;
		v.dev = in->dev;
	}
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	/* The pidfd holds the process: if it is the one started then, /proc says so now. */
	if (proc_sample(pid, &ps) < 0 || ps.start_ticks != start_ticks)
		ret = -ESRCH;
	else if (!bpf_map_update_elem(bpf_map__fd(src->skel->maps.verdicts), &pidfd, &v, BPF_NOEXIST))
		src->verdicts_made++;
	else if (errno != EEXIST || bpf_map_update_elem(bpf_map__fd(src->skel->maps.verdicts), &pidfd, &v, BPF_EXIST))
		ret = -errno;
	close(pidfd);
	return ret;
}

int source_live_procs(struct source_live *src, unsigned *entries, unsigned *capacity)
{
	int fd = bpf_map__fd(src->skel->maps.procs);
	__u32 key, next, *prev = NULL;
	unsigned n = 0;

	*capacity = bpf_map__max_entries(src->skel->maps.procs);
	while (bpf_map_get_next_key(fd, prev, &next) == 0 && n < *capacity) {
		key = next;
		prev = &key;
		n++;
	}
	*entries = n;
	return 0;
}

int source_live_inflight(struct source_live *src, void (*fn)(void *ctx, const struct msd_inflight *w), void *ctx)
{
	struct msd_inflight buf[64];
	size_t have = 0;
	ssize_t got;
	int fd, n = 0;

	fd = bpf_iter_create(bpf_link__fd(src->skel->links.inflight_writes));
	if (fd < 0)
		return -errno;
	/* A read may end in the middle of an entry: keep the partial one for the next. */
	while ((got = read(fd, (char *)buf + have, sizeof(buf) - have)) > 0 || (got < 0 && errno == EINTR)) {
		size_t whole;

		if (got < 0)
			continue;
		have += (size_t)got;
		whole = have / sizeof(buf[0]);
		for (size_t i = 0; i < whole; i++, n++)
			fn(ctx, &buf[i]);
		have -= whole * sizeof(buf[0]);
		memmove(buf, (char *)buf + whole * sizeof(buf[0]), have);
	}
	close(fd);
	return n;
}

int source_live_conn_ignore(struct source_live *src, uint32_t tgid, uint32_t dev, uint64_t ino, uint64_t conn_id)
{
	struct msd_conn_key key = { .ino = ino, .dev = dev, .tgid = tgid };
	int fd = bpf_map__fd(src->skel->maps.conns);
	struct msd_conn_state st;

	/* The entry may be gone (closed, evicted) or be another connection on the same socket
	 * identity by now: only this one is ignored. */
	if (bpf_map_lookup_elem(fd, &key, &st))
		return -errno;
	if (st.conn_id != conn_id)
		return -ESTALE;
	st.verdict = MSD_CONN_IGNORED;
	return bpf_map_update_elem(fd, &key, &st, BPF_EXIST) ? -errno : 0;
}

int source_live_fd(const struct source_live *src)
{
	return bpf_map__fd(src->skel->maps.events);
}

void source_live_ring(struct source_live *src, uint64_t *size, uint64_t *backlog, uint64_t *peak)
{
	*size = ring_size(src->rb);
	*backlog = ring_backlog(src->rb);
	*peak = ring_backlog_peak(src->rb);
}

size_t source_live_poll(struct source_live *src, source_record_fn fn, void *ctx, uint64_t deadline_ns)
{
	src->fn = fn;
	src->fn_ctx = ctx;
	src->delivered = 0;
	src->deadline_ns = deadline_ns;
	src->stopped = false;
	ring_consume(src->rb, source_live_on_record, src);
	src->behind = src->stopped;
	return src->delivered;
}

bool source_live_behind(const struct source_live *src)
{
	return src->behind;
}

/* Clears every tracked bit: from now on the programs take their untracked path. */
static void source_live_untrack_all(struct source_live *src)
{
	size_t words = sizeof(src->skel->bss->tracked_bits) / sizeof(src->skel->bss->tracked_bits[0]);

	for (size_t i = 0; i < words; i++)
		if (src->skel->bss->tracked_bits[i])
			__atomic_store_n(&src->skel->bss->tracked_bits[i], 0, __ATOMIC_SEQ_CST);
}

void source_live_stop(struct source_live *src)
{
	source_live_untrack_all(src);
}

void source_live_abandon(struct source_live *src)
{
	/* Nothing is tracked any more: what the ring holds is bounded by its size. */
	src->fn = NULL;
	ring_consume(src->rb, source_live_on_record, src);
	src->behind = false;
}

int source_live_drops(struct source_live *src, struct msd_drop *out)
{
	int map_fd = bpf_map__fd(src->skel->maps.drops);
	struct msd_drop percpu[src->ncpus];

	for (__u32 reason = 0; reason < MSD_DROP__MAX; reason++) {
		out[reason] = (struct msd_drop){ 0 };
		if (reason == MSD_DROP_BACKLOG) {
			uint64_t records, bytes;

			/* Consumed and never analysed: with these, the records of the ring the
			 * consumer could not make whole (ring.h). */
			ring_lost(src->rb, &records, &bytes);
			out[reason].records = src->unread_records + records;
			out[reason].bytes = src->unread_bytes + bytes;
			continue;
		}
		if (bpf_map_lookup_elem(map_fd, &reason, percpu))
			return -errno;
		for (int cpu = 0; cpu < src->ncpus; cpu++) {
			out[reason].records += percpu[cpu].records;
			out[reason].bytes += percpu[cpu].bytes;
		}
	}
	return 0;
}

int source_live_counters(struct source_live *src, uint64_t *out)
{
	int map_fd = bpf_map__fd(src->skel->maps.counters);
	__u64 percpu[src->ncpus][MSD_CNT__MAX];
	__u32 zero = 0;

	/* One per-CPU value holding every counter. */
	if (bpf_map_lookup_elem(map_fd, &zero, percpu))
		return -errno;
	for (int c = 0; c < MSD_CNT__MAX; c++) {
		out[c] = 0;
		for (int cpu = 0; cpu < src->ncpus; cpu++)
			out[c] += percpu[cpu][c];
	}
	out[MSD_CNT_VERDICTS_MADE] += src->verdicts_made;
	return 0;
}

/* Whether fd holds a BPF object or a perf event: what the detaching child keeps. */
static bool fd_is_bpf(int fd)
{
	char path[64], target[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return false;
	target[n] = '\0';
	return !strncmp(target, "anon_inode:bpf", 14) || !strcmp(target, "anon_inode:[perf_event]");
}

static int fd_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Each syscall tracepoint's removal waits for RCU grace periods under the kernel's
 * event_mutex: 30-60 ms each, one after the other, 1-2 s for ours. A child holding every BPF
 * and perf event fd does that after mcpsonde has exited, with nothing tracked any more (the
 * programs take their untracked path meanwhile); they go when it exits, however it exits. It
 * holds them all until mcpsonde is gone (the write end of a pipe, which mcpsonde keeps open
 * until it exits, reads EOF), so that no close of mcpsonde's is ever the last one. It closes
 * everything else at once, stdout and stderr above all, so that whoever reads mcpsonde's
 * output sees it end when mcpsonde ends, and a listening socket is free for the next one. */
static void source_live_detach_in_child(void)
{
	DIR *d = opendir("/proc/self/fd");
	size_t nkeep = 0, cap = 0;
	int *keep = NULL, max = -1, gone[2];
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		if (fd > max)
			max = fd;
		if (!fd_is_bpf(fd))
			continue;
		if (nkeep == cap) {
			int *k = realloc(keep, (cap ? 2 * cap : 64) * sizeof(*keep));

			if (!k)
				break;
			keep = k;
			cap = cap ? 2 * cap : 64;
		}
		keep[nkeep++] = fd;
	}
	closedir(d);
	qsort(keep, nkeep, sizeof(*keep), fd_cmp);
	/* The child waits for mcpsonde to be gone (EOF on this pipe) before it lets go. */
	if (pipe2(gone, O_CLOEXEC) < 0) {
		free(keep);
		return;
	}
	if (fork() == 0) {
		/* The parent has threads: async-signal-safe calls only. */
		size_t next = 0;
		char c;

		/* The pipe's write end too: pipe2 may have put both ends above max, and a child
		 * that kept its own write end would wait forever, the programs attached. */
		close(gone[1]);
		for (int fd = 0; fd <= max; fd++) {
			if (next < nkeep && keep[next] == fd)
				next++;
			else if (fd != gone[0])
				close(fd);
		}
		prctl(PR_SET_NAME, "mcpsonde-detach");
		while (read(gone[0], &c, 1) < 0 && errno == EINTR)
			;
		for (size_t i = 0; i < nkeep; i++)
			close(keep[i]);
		_exit(0);
	}
	close(gone[0]);
	free(keep);
}

void source_live_close(struct source_live *src)
{
	if (!src)
		return;
	if (src->skel && src->skel->bss) {
		source_live_untrack_all(src);
		source_live_detach_in_child();
	}
	ring_close(src->rb);
	mcpsonde_bpf__destroy(src->skel);
	free(src);
}

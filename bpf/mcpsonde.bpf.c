// SPDX-License-Identifier: GPL-2.0
/* mcpsonde.bpf.c -- the kernel side: what tracked processes read and write on pipes, sockets
 * and ttys, and when they fork, exec, exit or are chosen by the OOM killer.
 *
 * Invariants:
 * - Every read/write/readv/writev on the machine runs these programs, so the first thing each
 *   one does is the "tracked" test; an untracked process pays one load from a bitmap.
 * - Data is copied at syscall exit, sized by the return value, never by the requested count.
 * - Each (tgid, fd, direction) is one byte stream. A syscall reserves its whole range of
 *   stream offsets before emitting anything, so bytes keep unique offsets even when records
 *   are lost or truncated, and user space sees every loss as a gap.
 * - Nothing is lost silently: every record or byte not delivered increments "drops" by reason.
 * - The only layouts shared with user space are those of mcpsonde/events.h. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "mcpsonde/events.h"

#define EAGAIN   11
#define S_IFMT   00170000
#define S_IFSOCK 0140000
#define S_IFCHR  0020000
#define S_IFIFO  0010000

#define MINORBITS 20             /* the kernel's internal dev_t: major in the top 12 bits */
#define TTY_MAJOR 4              /* /dev/ttyN, /dev/ttySN */
#define TTYAUX_MAJOR 5           /* /dev/tty, /dev/console, /dev/ptmx */
#define UNIX98_PTY_SLAVE_MAJOR 136 /* /dev/pts/N: majors 136..143 */

#define PID_LIMIT    (4 * 1024 * 1024) /* PID_MAX_LIMIT on 64-bit: pid_max can never exceed it */
#define TRACKED_WORDS (PID_LIMIT / 64) /* a power of two, as tracked_word() needs */
#define INFLIGHT_MAX 16384 /* threads inside a read/write on a captured fd at the same time */
#define FD_KINDS_MAX 65536
#define STREAMS_MAX  65536

/* Set by user space before load. Only the OOM record needs it (pages -> KiB). */
const volatile __u32 page_shift = 12;
/* Data records wake the consumer only once this much is waiting in the ring buffer; below
 * it, user space drains the ring on its timer. A wakeup per record cost a context switch per
 * message, more than the rest of the consumer's work. 0: wake for every record. */
const volatile __u64 wakeup_bytes = 0;

/* Processes whose I/O is captured: one bit per tgid (512 KiB). Set by user space, which sees
 * .bss through the skeleton's mmap, and here on fork; cleared here on exit.
 * Both sides change bits with atomic and/or only, since 64 tgids share a word. A global
 * rather than a map: testing a bit is one load, with no helper call and no hashing. */
__u64 tracked_bits[TRACKED_WORDS];

/* The syscall entry of each thread, so that its exit knows the fd and the user buffer. An LRU
 * so that entries whose exit is never seen cannot fill it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, INFLIGHT_MAX);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct msd_inflight);
} inflight SEC(".maps");

/* enum msd_fd_kind per (tgid << 32 | fd): reading the fd table costs four dependent kernel
 * reads, the cache one lookup. Invalidated by close/dup2/dup3 here, by user space after exec. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FD_KINDS_MAX);
	__type(key, __u64);
	__type(value, __u8);
} fd_kinds SEC(".maps");

/* Next stream offset per (tgid, fd, dir); deleted when the fd is closed or replaced. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, STREAMS_MAX);
	__type(key, struct msd_stream_key);
	__type(value, __u64);
} stream_offsets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MSD_DROP__MAX);
	__type(key, __u32);
	__type(value, struct msd_drop);
} drops SEC(".maps");

/* Size set by user space before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
} events SEC(".maps");

struct user_iovec {
	__u64 base;
	__u64 len;
};

/* One syscall's capture in progress: the bpf_loop iterations share it. */
struct capture {
	struct user_iovec iov[MSD_IOV_MAX];
	__u64 ret;      /* bytes the syscall transferred */
	__u64 captured; /* bytes to emit: ret, less what is past the iovec or chunk limits */
	__u64 done;     /* bytes of the syscall copied (or lost) so far */
	__u64 base_off; /* stream offset of the syscall's first byte */
	__u64 iov_off;  /* position in iov[iov_idx] */
	__u32 iov_idx;
	__u32 filled;   /* bytes in the record being assembled */
	__u32 chunk;    /* index of the record being assembled */
	__u32 nr_chunks;
	bool copy_failed;
	bool short_write; /* a write that moved less than asked: the reader is falling behind */
};

/* Where a data record is assembled before bpf_ringbuf_output, which takes a runtime size
 * (bpf_ringbuf_reserve needs a constant one), together with the capture state. A per-CPU
 * array value is limited to 32 KiB, too small for a header and a full chunk, so this is a
 * plain array with one slot per possible CPU (user space sets max_entries), indexed by the
 * current CPU: syscall tracepoints run with preemption disabled, so no other program uses
 * the slot meanwhile. The state lives here rather than on the stack because the verifier
 * tracks stack values exactly and would never see two loop iterations as equivalent.
 * The payload area is twice MSD_CHUNK_MAX so that the verifier can accept a copy at offset
 * <= MSD_CHUNK_MAX of length <= MSD_CHUNK_MAX without proving their sum. */
struct scratch_slot {
	struct capture cap;
	__u8 rec[sizeof(struct msd_data_rec) + 2 * MSD_CHUNK_MAX]; /* struct msd_data_rec */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch_slot);
} scratch SEC(".maps");

static __always_inline __u64 data_output_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									     : BPF_RB_NO_WAKEUP;
}

static __always_inline void drop_count(__u32 reason, __u64 records, __u64 bytes)
{
	struct msd_drop *d = bpf_map_lookup_elem(&drops, &reason);

	if (d) {
		d->records += records;
		d->bytes += bytes;
	}
}

/* The word of tgid's bit. Masked rather than checked, so that the verifier sees the bound:
 * PIDs are below PID_LIMIT, the mask changes none. */
static __always_inline __u64 *tracked_word(__u32 tgid)
{
	return &tracked_bits[tgid / 64 & (TRACKED_WORDS - 1)];
}

static __always_inline bool is_tracked(__u32 tgid)
{
	return *tracked_word(tgid) >> (tgid % 64) & 1;
}

static __always_inline void tracked_set(__u32 tgid)
{
	__sync_fetch_and_or(tracked_word(tgid), 1ULL << (tgid % 64));
}

static __always_inline void tracked_clear(__u32 tgid)
{
	__sync_fetch_and_and(tracked_word(tgid), ~(1ULL << (tgid % 64)));
}

static __always_inline __u64 fd_kind_key(__u32 tgid, int fd)
{
	return (__u64)tgid << 32 | (__u32)fd;
}

static __always_inline __u8 fd_kind_classify(umode_t mode, dev_t rdev)
{
	__u32 major = rdev >> MINORBITS;

	switch (mode & S_IFMT) {
	case S_IFIFO:
		return MSD_FD_PIPE;
	case S_IFSOCK:
		return MSD_FD_SOCKET;
	case S_IFCHR:
		if (major == TTY_MAJOR || major == TTYAUX_MAJOR ||
		    (major >= UNIX98_PTY_SLAVE_MAJOR && major < UNIX98_PTY_SLAVE_MAJOR + 8))
			return MSD_FD_TTY;
		return MSD_FD_OTHER;
	default:
		return MSD_FD_OTHER;
	}
}

/* The kind of the current process's fd, from its fd table. MSD_FD_UNKNOWN (not cached) when
 * the fd is not open: a later open may give it any kind. */
static __always_inline __u8 fd_kind_of(__u32 tgid, int fd)
{
	__u64 key = fd_kind_key(tgid, fd);
	struct task_struct *task;
	struct fdtable *fdt;
	struct file **fds;
	struct file *file;
	__u8 *cached, kind;

	cached = bpf_map_lookup_elem(&fd_kinds, &key);
	if (cached)
		return *cached;

	task = (struct task_struct *)bpf_get_current_task();
	fdt = BPF_CORE_READ(task, files, fdt);
	/* A negative fd becomes a huge unsigned one and fails this check too. */
	if ((__u32)fd >= BPF_CORE_READ(fdt, max_fds))
		return MSD_FD_UNKNOWN;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[(__u32)fd]) || !file)
		return MSD_FD_UNKNOWN;

	kind = fd_kind_classify(BPF_CORE_READ(file, f_inode, i_mode), BPF_CORE_READ(file, f_inode, i_rdev));
	bpf_map_update_elem(&fd_kinds, &key, &kind, BPF_ANY);
	return kind;
}

static __always_inline bool fd_kind_captured(__u8 kind)
{
	return kind == MSD_FD_PIPE || kind == MSD_FD_SOCKET || kind == MSD_FD_TTY;
}

/* Copies the first min(cnt, MSD_IOV_MAX) iovecs of the user's array; returns how many, or
 * -1 when the array could not be read. */
static __always_inline int iov_fetch(struct user_iovec *iov, __u64 uptr, __u64 cnt)
{
	__u64 n = cnt > MSD_IOV_MAX ? MSD_IOV_MAX : cnt;

	barrier_var(n);
	if (n > MSD_IOV_MAX)
		return -1;
	if (n && bpf_probe_read_user(iov, n * sizeof(*iov), (const void *)uptr))
		return -1;
	return n;
}

static __always_inline __u64 iov_total(const struct user_iovec *iov, int n)
{
	__u64 total = 0;

	for (int i = 0; i < MSD_IOV_MAX && i < n; i++)
		total += iov[i].len;
	return total;
}

static __always_inline int syscall_enter(int fd, __u64 buf, __u64 count, __u8 dir, bool is_vec)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32;
	struct msd_inflight e = {};
	__u8 kind;

	if (!is_tracked(tgid))
		return 0;
	kind = fd_kind_of(tgid, fd);
	if (!fd_kind_captured(kind))
		return 0;

	e.buf = buf;
	e.enter_ns = bpf_ktime_get_ns();
	e.fd = fd;
	e.dir = dir;
	e.is_vec = is_vec;
	e.fd_kind = kind;
	if (is_vec) {
		struct user_iovec iov[MSD_IOV_MAX];
		int n = iov_fetch(iov, buf, count);

		e.iovcnt = count;
		e.count = n > 0 ? iov_total(iov, n) : 0;
	} else {
		e.count = count;
	}
	bpf_map_update_elem(&inflight, &pid_tgid, &e, BPF_ANY);
	return 0;
}

/* Rebuilds the entry of a syscall whose entry was not stashed (it began before the process
 * was tracked or before attach, which is how an idle server blocked in read(0) is found, or
 * its stash entry was evicted) from the registers saved at syscall entry, which still hold
 * the arguments at exit. Returns false when the fd is not one to capture. */
static __always_inline bool entry_rebuild(struct msd_inflight *e, __u32 tgid, __u8 dir, bool is_vec, long ret)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	int fd = PT_REGS_PARM1_CORE_SYSCALL(regs);
	__u8 kind = fd_kind_of(tgid, fd);

	if (!fd_kind_captured(kind)) {
		/* Not open any more (closed by another thread meanwhile): its kind is unknowable. */
		if (kind == MSD_FD_UNKNOWN && ret > 0)
			drop_count(MSD_DROP_NO_ENTRY, 1, ret);
		return false;
	}
	e->buf = PT_REGS_PARM2_CORE_SYSCALL(regs);
	e->fd = fd;
	e->dir = dir;
	e->is_vec = is_vec;
	e->fd_kind = kind;
	if (is_vec)
		e->iovcnt = PT_REGS_PARM3_CORE_SYSCALL(regs);
	else
		e->count = PT_REGS_PARM3_CORE_SYSCALL(regs);
	return true;
}

/* Reserves len bytes of the stream and returns the offset of the first. */
static __always_inline __u64 stream_reserve(__u32 tgid, int fd, __u8 dir, __u64 len)
{
	struct msd_stream_key key = { .tgid = tgid, .fd = fd, .dir = dir };
	__u64 zero = 0, *off;

	off = bpf_map_lookup_elem(&stream_offsets, &key);
	if (!off) {
		/* NOEXIST: another thread may have created it since the lookup. */
		bpf_map_update_elem(&stream_offsets, &key, &zero, BPF_NOEXIST);
		off = bpf_map_lookup_elem(&stream_offsets, &key);
		if (!off) /* an LRU insert evicts rather than fails: only out of memory gets here */
			return 0;
	}
	return __sync_fetch_and_add(off, len);
}

static __always_inline void stream_forget(__u32 tgid, int fd)
{
	struct msd_stream_key key = { .tgid = tgid, .fd = fd };
	__u64 kind_key = fd_kind_key(tgid, fd);

	bpf_map_delete_elem(&fd_kinds, &kind_key);
	key.dir = MSD_DIR_READ;
	bpf_map_delete_elem(&stream_offsets, &key);
	key.dir = MSD_DIR_WRITE;
	bpf_map_delete_elem(&stream_offsets, &key);
}

/* Outputs the record assembled in the slot and starts the next one. Returns false when the
 * ring buffer is full: the rest of the syscall is counted lost, later outputs would fail too. */
static __always_inline bool capture_emit(struct scratch_slot *slot)
{
	struct capture *c = &slot->cap;
	struct msd_data_rec *rec = (void *)slot->rec;
	__u32 filled = c->filled;
	__u64 first = c->done - filled;
	bool ok = true;

	barrier_var(filled);
	if (filled > MSD_CHUNK_MAX)
		return false;
	if (c->copy_failed) {
		/* The stream shows the gap; a half-copied record would show garbage instead. */
		drop_count(MSD_DROP_COPY, 1, filled);
	} else {
		rec->hdr.size = sizeof(*rec) + filled;
		rec->stream_off = c->base_off + first;
		rec->cap_len = filled;
		rec->chunk = c->chunk;
		rec->flags = 0;
		if (c->done >= c->captured) {
			rec->flags |= MSD_DATA_LAST;
			if (c->captured < c->ret)
				rec->flags |= MSD_DATA_TRUNCATED;
			if (c->short_write)
				rec->flags |= MSD_DATA_SHORT;
		}
		if (bpf_ringbuf_output(&events, rec, sizeof(*rec) + filled, data_output_flags())) {
			drop_count(MSD_DROP_RINGBUF, c->nr_chunks - c->chunk, c->captured - first);
			ok = false;
		}
	}
	c->chunk++;
	c->filled = 0;
	c->copy_failed = false;
	return ok;
}

/* One bpf_loop iteration: copies the next piece of the syscall's bytes, up to the end of the
 * current iovec or of the current record, whichever comes first, and outputs the record when
 * it is full or the bytes are done. Each piece ends a record or an iovec, so a syscall takes at
 * most MSD_CHUNKS_MAX + MSD_IOV_MAX iterations. Returns 1 to stop the loop. */
static long capture_piece(__u32 i, void *ctx)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct scratch_slot *slot;
	struct msd_data_rec *rec;
	struct capture *c;
	__u64 n, left, off, len; /* 64-bit: a 32-bit bound check may not reach the helper's register */
	__u32 k;

	slot = bpf_map_lookup_elem(&scratch, &cpu);
	if (!slot)
		return 1;
	c = &slot->cap;
	rec = (void *)slot->rec;
	if (c->done >= c->captured)
		return 1;
	k = c->iov_idx;
	if (k >= MSD_IOV_MAX)
		return 1;

	left = c->iov[k].len - c->iov_off;
	n = MSD_CHUNK_MAX - c->filled;
	if (n > c->captured - c->done)
		n = c->captured - c->done;
	if (n > left)
		n = left;
	off = c->filled;
	len = n;
	barrier_var(off);
	barrier_var(len);
	if (off > MSD_CHUNK_MAX || len > MSD_CHUNK_MAX)
		return 1;
	if (len && bpf_probe_read_user(rec->data + off, len, (const void *)(c->iov[k].base + c->iov_off)))
		c->copy_failed = true;
	c->filled += len;
	c->done += len;
	c->iov_off += len;
	if (c->iov_off >= c->iov[k].len) {
		c->iov_idx = k + 1;
		c->iov_off = 0;
	}
	if (c->filled >= MSD_CHUNK_MAX || c->done >= c->captured)
		return capture_emit(slot) ? 0 : 1;
	return 0;
}

/* A record without data: EOF on a read (flags LAST), or a write that could not proceed
 * (-EAGAIN: flags LAST | SHORT). It sits at the stream's current offset. */
static __always_inline void capture_marker(const struct msd_inflight *e, __u64 pid_tgid, __u16 flags)
{
	struct msd_stream_key key = { .tgid = pid_tgid >> 32, .fd = e->fd, .dir = e->dir };
	struct msd_data_rec *rec;
	__u64 *off;

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		drop_count(MSD_DROP_RINGBUF, 1, 0);
		return;
	}
	off = bpf_map_lookup_elem(&stream_offsets, &key);
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->hdr.kind = MSD_REC_DATA;
	rec->hdr.abi = MSD_ABI_VERSION;
	rec->hdr.size = sizeof(*rec);
	rec->hdr.ts_ns = bpf_ktime_get_ns();
	rec->hdr.tgid = pid_tgid >> 32;
	rec->hdr.tid = (__u32)pid_tgid;
	rec->fd = e->fd;
	rec->dir = e->dir;
	rec->fd_kind = e->fd_kind;
	rec->stream_off = off ? *off : 0;
	rec->requested = e->count;
	rec->flags = flags;
	bpf_ringbuf_submit(rec, data_output_flags());
}

static __always_inline int syscall_exit(long ret, __u8 dir, bool is_vec)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 tgid = pid_tgid >> 32, cpu;
	struct msd_inflight e = {}, *stashed;
	struct scratch_slot *slot;
	struct msd_data_rec *rec;
	struct capture *c;
	__u64 room;

	if (!is_tracked(tgid))
		return 0;
	stashed = bpf_map_lookup_elem(&inflight, &pid_tgid);
	if (stashed) {
		e = *stashed;
		bpf_map_delete_elem(&inflight, &pid_tgid);
	} else if (!entry_rebuild(&e, tgid, dir, is_vec, ret)) {
		return 0;
	}

	/* Non-blocking writers (Node, Go) never sit in a blocked write: a full pipe shows as
	 * short writes and -EAGAIN instead. */
	if (ret == -EAGAIN && dir == MSD_DIR_WRITE)
		capture_marker(&e, pid_tgid, MSD_DATA_LAST | MSD_DATA_SHORT);
	if (ret < 0)
		return 0;
	if (ret == 0) {
		if (dir == MSD_DIR_READ)
			capture_marker(&e, pid_tgid, MSD_DATA_LAST);
		return 0;
	}

	cpu = bpf_get_smp_processor_id();
	slot = bpf_map_lookup_elem(&scratch, &cpu);
	if (!slot)
		return 0;
	c = &slot->cap;
	rec = (void *)slot->rec;
	__builtin_memset(c, 0, sizeof(*c));
	if (is_vec) {
		int n = iov_fetch(c->iov, e.buf, e.iovcnt);

		if (n < 0) {
			drop_count(MSD_DROP_COPY, 1, ret);
			return 0;
		}
		room = iov_total(c->iov, n);
	} else {
		c->iov[0].base = e.buf;
		c->iov[0].len = ret;
		room = ret;
	}

	c->ret = ret;
	c->captured = ret;
	c->short_write = dir == MSD_DIR_WRITE && e.count && (__u64)ret < e.count;
	if (c->captured > room)
		c->captured = room;
	if (c->captured > (__u64)MSD_CHUNKS_MAX * MSD_CHUNK_MAX)
		c->captured = (__u64)MSD_CHUNKS_MAX * MSD_CHUNK_MAX;
	if (c->captured < c->ret)
		drop_count(MSD_DROP_TRUNCATED, 1, c->ret - c->captured);
	c->nr_chunks = (c->captured + MSD_CHUNK_MAX - 1) / MSD_CHUNK_MAX;
	c->base_off = stream_reserve(tgid, e.fd, dir, ret);

	/* The fields every record of the syscall shares; capture_emit sets the others. */
	__builtin_memset(rec, 0, sizeof(*rec));
	rec->hdr.kind = MSD_REC_DATA;
	rec->hdr.abi = MSD_ABI_VERSION;
	rec->hdr.ts_ns = bpf_ktime_get_ns();
	rec->hdr.tgid = tgid;
	rec->hdr.tid = (__u32)pid_tgid;
	rec->fd = e.fd;
	rec->dir = dir;
	rec->fd_kind = e.fd_kind;
	rec->syscall_len = ret;
	rec->requested = e.count;

	if (c->captured) {
		bpf_loop(MSD_CHUNKS_MAX + MSD_IOV_MAX, capture_piece, NULL, 0);
	} else {
		/* Nothing capturable (empty iovecs first): one record still says it happened. */
		c->nr_chunks = 1;
		capture_emit(slot);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int sys_enter_read(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], ctx->args[2], MSD_DIR_READ, false);
}

SEC("tracepoint/syscalls/sys_exit_read")
int sys_exit_read(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, MSD_DIR_READ, false);
}

SEC("tracepoint/syscalls/sys_enter_write")
int sys_enter_write(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], ctx->args[2], MSD_DIR_WRITE, false);
}

SEC("tracepoint/syscalls/sys_exit_write")
int sys_exit_write(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, MSD_DIR_WRITE, false);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int sys_enter_readv(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], ctx->args[2], MSD_DIR_READ, true);
}

SEC("tracepoint/syscalls/sys_exit_readv")
int sys_exit_readv(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, MSD_DIR_READ, true);
}

SEC("tracepoint/syscalls/sys_enter_writev")
int sys_enter_writev(struct trace_event_raw_sys_enter *ctx)
{
	return syscall_enter(ctx->args[0], ctx->args[1], ctx->args[2], MSD_DIR_WRITE, true);
}

SEC("tracepoint/syscalls/sys_exit_writev")
int sys_exit_writev(struct trace_event_raw_sys_exit *ctx)
{
	return syscall_exit(ctx->ret, MSD_DIR_WRITE, true);
}

/* A closed or replaced fd number may next be a different file: its next stream starts at 0. */
static __always_inline int fd_release(int fd)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (is_tracked(tgid))
		stream_forget(tgid, fd);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	return fd_release(ctx->args[0]);
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int sys_enter_dup2(struct trace_event_raw_sys_enter *ctx)
{
	return fd_release(ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int sys_enter_dup3(struct trace_event_raw_sys_enter *ctx)
{
	return fd_release(ctx->args[1]);
}

static __always_inline void rec_hdr_fill(struct msd_rec_hdr *hdr, __u16 kind, __u32 size, __u32 tgid, __u32 tid)
{
	hdr->kind = kind;
	hdr->abi = MSD_ABI_VERSION;
	hdr->size = size;
	hdr->ts_ns = bpf_ktime_get_ns();
	hdr->tgid = tgid;
	hdr->tid = tid;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid), ctgid = BPF_CORE_READ(child, tgid);
	struct msd_fork_rec *rec;

	/* A new thread shares its parent's tgid and is already covered. */
	if (ctgid == ptgid || !is_tracked(ptgid))
		return 0;
	tracked_set(ctgid);

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		drop_count(MSD_DROP_EVENT, 1, 0);
		return 0;
	}
	rec_hdr_fill(&rec->hdr, MSD_REC_FORK, sizeof(*rec), ctgid, BPF_CORE_READ(child, pid));
	rec->parent_tgid = ptgid;
	rec->pad = 0;
	BPF_CORE_READ_STR_INTO(&rec->comm, child, comm);
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct msd_exec_rec *rec;

	if (!is_tracked(tgid))
		return 0;
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		drop_count(MSD_DROP_EVENT, 1, 0);
		return 0;
	}
	rec_hdr_fill(&rec->hdr, MSD_REC_EXEC, sizeof(*rec), tgid, BPF_CORE_READ(task, pid));
	rec->ppid = BPF_CORE_READ(task, real_parent, tgid);
	rec->pad = 0;
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	if (bpf_probe_read_kernel_str(rec->filename, sizeof(rec->filename), BPF_CORE_READ(bprm, filename)) < 0)
		rec->filename[0] = '\0';
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

/* Uses only the task argument: the group_dead argument exists on recent kernels only, and
 * signal->live, which do_exit decrements before this tracepoint, says the same everywhere. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct msd_exit_rec *rec;

	if (!is_tracked(tgid) || BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (rec) {
		rec_hdr_fill(&rec->hdr, MSD_REC_EXIT, sizeof(*rec), tgid, BPF_CORE_READ(task, pid));
		rec->exit_code = BPF_CORE_READ(task, exit_code);
		rec->ppid = BPF_CORE_READ(task, real_parent, tgid);
		rec->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
		BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
		bpf_ringbuf_submit(rec, 0);
	} else {
		drop_count(MSD_DROP_EVENT, 1, 0);
	}
	tracked_clear(tgid);
	return 0;
}

/* Kernels before 6.8 pass only a pid here: user space does not load this program there. */
SEC("tp_btf/mark_victim")
int BPF_PROG(mark_victim, struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct msd_oom_rec *rec;
	struct mm_struct *mm;

	if (!is_tracked(tgid))
		return 0;
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		drop_count(MSD_DROP_EVENT, 1, 0);
		return 0;
	}
	rec_hdr_fill(&rec->hdr, MSD_REC_OOM, sizeof(*rec), tgid, BPF_CORE_READ(task, pid));
	mm = BPF_CORE_READ(task, mm);
	rec->total_vm_kb = 0;
	rec->anon_rss_kb = 0;
	if (mm) {
		/* The counter's shared part, without per-CPU deltas: what /proc/PID/status shows. */
		__s64 anon = BPF_CORE_READ(mm, rss_stat[MM_ANONPAGES].count);

		rec->total_vm_kb = BPF_CORE_READ(mm, total_vm) << (page_shift - 10);
		rec->anon_rss_kb = anon > 0 ? (__u64)anon << (page_shift - 10) : 0;
	}
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

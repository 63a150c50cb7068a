// SPDX-License-Identifier: GPL-2.0
/* mcpsonde.bpf.c -- the kernel side: what tracked processes move on their channel (the files
 * that were their stdin, stdout and stderr when tracking began), and when they fork, exec,
 * exit or are chosen by the OOM killer.
 *
 * Invariants:
 * - Every hooked syscall on the machine runs these programs, so the first thing each one does
 *   is the "tracked" test; an untracked process pays one load from a bitmap.
 * - A syscall's role (events.h: IN, OUT, ERR or NONE) is decided from the file it touched,
 *   compared by identity with the process's channel, at syscall exit: nothing about an fd
 *   number is cached, so no close, dup, exec or SCM_RIGHTS can leave stale state behind.
 *   NONE is counted by bytes and never copied.
 * - Data is copied at syscall exit, sized by the return value, straight from user memory into
 *   its ring buffer record (copy once). A read is stamped with its exit time, a write with its
 *   entry time: the server's read -> write interval never exceeds the client's round trip.
 * - Each (tgid, channel file, role) is one byte stream. A syscall reserves its whole range of
 *   stream offsets before emitting anything, so bytes keep unique offsets even when records
 *   are lost or cut, and user space sees every loss as a gap at a known place. A syscall
 *   longer than MSD_CAPTURE_MAX keeps its head and its tail and says where the cut is.
 * - Nothing is lost silently: every record or byte not delivered increments "drops" by reason.
 * - A socket of a tracked process that is not its channel and is a TCP or AF_UNIX stream
 *   connection is a connection (events.h): its state (stream offsets, conn_id, whether it is
 *   still copied) lives in the "conns" map, found by the socket's identity, so fd reuse never
 *   mixes two connections. A connection is copied until ignored; its bytes are then counted.
 * - The only layouts shared with user space are those of mcpsonde/events.h. */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "mcpsonde/events.h"

#define EAGAIN 11
#define EINPROGRESS 115
#define MSG_PEEK 2
#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define S_IFMT 00170000
#define S_IFSOCK 0140000

#define PID_LIMIT     (4 * 1024 * 1024) /* PID_MAX_LIMIT on 64-bit: pid_max can never exceed it */
#define TRACKED_WORDS (PID_LIMIT / 64)  /* a power of two, as tgid_word() needs */
#define PROCS_MAX     65536             /* tracked processes alive at once */
#define CONNS_MAX     65536             /* connections followed at once (LRU: the least recently
					 * used goes; if it comes back, it is a new conn_id) */
#define HDR_SIZE      sizeof(struct msd_data_rec)
/* Iterations of the copy loop for one syscall: each fetches an iovec, emits a record or
 * skips the cut part of an iovec. Records end at an iovec or at MSD_CHUNK_MAX bytes. */
#define COPY_STEPS_MAX (3 * MSD_IOV_MAX + MSD_CHUNKS_MAX + 4)

/* Set by user space before load. Only the OOM record needs it (pages -> KiB). */
const volatile __u32 page_shift = 12;
/* Data records wake the consumer only when what waits in the ring buffer crosses a multiple
 * of this; below it, user space drains the ring on its timer. A wakeup per record cost a
 * context switch per message, more than the rest of the consumer's work. 0: wake for every
 * record. */
const volatile __u64 wakeup_bytes = 0;
/* Copy with bpf_ringbuf_reserve_dynptr + bpf_probe_read_user_dynptr (6.16+): records of the
 * exact size. Otherwise records are reserved in fixed size classes (what the verifier accepts
 * for a direct copy), and the slack is counted in MSD_CNT_RING_RESERVED - MSD_CNT_RING_USED. */
const volatile bool copy_dynptr = false;
/* Read kernel objects by direct loads through BTF-typed pointers (bpf_rdonly_cast, 6.2+)
 * rather than one bpf_probe_read_kernel call each. */
const volatile bool direct_reads = false;
/* watch --all: untracked processes' reads are looked at for MCP (see "discovery" below). */
const volatile bool discover = false;
const volatile __u32 self_tgid = 0; /* mcpsonde never observes itself */
/* Built with MSD_HOOKS_ONLY, every program returns at once: the cost of the hooks themselves
 * (the bench's floor, tests/tools/floor.c). A compile-time constant, so that mcpsonde's own
 * programs carry no trace of it. */
#ifdef MSD_HOOKS_ONLY
#define hooks_only 1
#else
#define hooks_only 0
#endif

extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym __weak;
extern int bpf_probe_read_user_dynptr(struct bpf_dynptr *dptr, __u32 off, __u32 size,
				      const void *unsafe_ptr) __ksym __weak;

/* Processes whose channel is captured: one bit per tgid (512 KiB). Set by user space, which
 * sees .bss through the skeleton's mmap, and here on fork; cleared here on exit.
 * Both sides change bits with atomic and/or only, since 64 tgids share a word. A global
 * rather than a map: testing a bit is one load, with no helper call and no hashing. A set bit
 * always has a "procs" entry (written first), except for a moment at exit. */
__u64 tracked_bits[TRACKED_WORDS];

/* The last conn_id given: ids are unique for as long as the programs are loaded. */
__u64 conn_seq;

/* Every connection of a tracked process: its stream offsets, id and verdict. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CONNS_MAX);
	__type(key, struct msd_conn_key);
	__type(value, struct msd_conn_state);
} conns SEC(".maps");

/* Channel, stream offsets and start time of every tracked process. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, PROCS_MAX);
	__type(key, __u32); /* tgid */
	__type(value, struct msd_proc_state);
} procs SEC(".maps");

/* A write of a tracked thread in flight: its entry time stamps its records, and the
 * blocked-write scan (inflight_writes) finds writes that stay in the kernel. Task storage:
 * one slot per thread, freed with it, no hashing. */
struct write_stash {
	__u64 enter_ns;
	__u64 count; /* bytes requested, over every iovec */
	__s32 fd;
	__u32 busy;  /* entered and not returned */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct write_stash);
} stash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MSD_DROP__MAX);
	__type(key, __u32);
	__type(value, struct msd_drop);
} drops SEC(".maps");

/* enum msd_counter, all in one value: the copy path updates several with one lookup. */
struct counters {
	__u64 n[MSD_CNT__MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

/* Size set by user space before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
} events SEC(".maps");

struct user_iovec {
	__u64 base;
	__u64 len;
};

/* One syscall's copy in progress. Per CPU (syscall tracepoints run with preemption disabled,
 * so no other program uses the slot meanwhile), and in a map rather than on the stack: the
 * verifier tracks stack values exactly and would never see two loop iterations as equal. */
struct capture {
	__u64 base_off;   /* stream offset of the syscall's first byte */
	__u64 vec;        /* user iovec array; 0: one buffer, already in cur_* */
	__u64 nvec;       /* iovecs in it (at most MSD_IOV_MAX) */
	__u64 vec_idx;    /* next iovec to fetch */
	__u64 cur_base, cur_len, cur_off; /* the current buffer or iovec */
	__u64 pos;        /* bytes of the syscall walked so far */
	__u64 end;        /* bytes the syscall transferred */
	__u64 head_end;   /* bytes [0, head_end) and [tail_start, end) are copied */
	__u64 tail_start;
	__u64 total;      /* iov_sum: bytes over every iovec */
	bool short_write;
	bool stopped;     /* the ring buffer is full: the rest is counted lost */
	struct msd_data_rec rec; /* the fields every record of the syscall shares (no data) */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct capture);
} scratch SEC(".maps");

/* How a syscall passes its bytes (argument 2 and 3 at entry). */
enum shape {
	SHAPE_BUF, /* (buf, count) */
	SHAPE_IOV, /* (iov, iovcnt) */
	SHAPE_MSG, /* (msghdr, flags): the msghdr's iovecs */
};

/* The wakeup flag of a data record of size bytes (its header included), once it is reserved.
 * While user space is behind by less than WAKE_EVERY_RECORD wakeup_bytes, only the record that
 * takes the backlog across a multiple of wakeup_bytes wakes it: once per wakeup_bytes written.
 * A wakeup queues an irq_work, a self-IPI that costs the traced syscall about a microsecond on
 * a VM; at every record, as it was, it made the traced process pay that for every syscall
 * while mcpsonde was even slightly behind (8x the BPF time per run with the reader stopped).
 * Further behind, half a ring from losing records, every record wakes it again. A crossing
 * missed between CPUs is followed by the next one, and by the timer. */
#define WAKE_EVERY_RECORD 8 /* wakeup_bytes is a sixteenth of the ring */
static __always_inline __u64 data_output_flags(__u64 size)
{
	__u64 avail;

	if (!wakeup_bytes)
		return 0;
	avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	size += 8; /* the ring's own record header */
	if (avail < wakeup_bytes)
		return BPF_RB_NO_WAKEUP;
	return avail >= WAKE_EVERY_RECORD * wakeup_bytes || avail < size ||
			       (avail - size) / wakeup_bytes != avail / wakeup_bytes
		       ? BPF_RB_FORCE_WAKEUP
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

static __always_inline struct counters *counters_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

/* Per-tgid bitmaps (tracked_bits here; stdin_done_bits, http_done_bits for discovery): one
 * bit per tgid, the word masked rather than checked, so that the verifier sees the bound (PIDs
 * are below PID_LIMIT, the mask changes none). Bits change by atomic and/or only: 64 tgids
 * share a word, and user space changes tracked_bits' too. */
static __always_inline __u64 *tgid_word(__u64 *bits, __u32 tgid)
{
	return &bits[tgid / 64 & (TRACKED_WORDS - 1)];
}

static __always_inline bool tgid_bit(__u64 *bits, __u32 tgid)
{
	return *tgid_word(bits, tgid) >> (tgid % 64) & 1;
}

static __always_inline void tgid_bit_set(__u64 *bits, __u32 tgid)
{
	__sync_fetch_and_or(tgid_word(bits, tgid), 1ULL << (tgid % 64));
}

/* Tested first: most clears find the bit clear already, and a load costs less than a locked
 * instruction on a word other CPUs write. */
static __always_inline void tgid_bit_clear(__u64 *bits, __u32 tgid)
{
	if (tgid_bit(bits, tgid))
		__sync_fetch_and_and(tgid_word(bits, tgid), ~(1ULL << (tgid % 64)));
}

static __always_inline bool is_tracked(__u32 tgid)
{
	return tgid_bit(tracked_bits, tgid);
}

/* Processes whose stdin has been judged for good: the verdict holds for the file fd 0 is
 * now (or, user space's, for any), so that their stdin reads cost one load, not the verdict
 * lookup and the file's identity. Set with such a verdict, cleared with it (exec, exit) and
 * whenever fd 0 may become another file (close, dup2, dup3 or close_range onto it): the next
 * stdin read then compares the file with the verdict's, as it did before. */
__u64 stdin_done_bits[TRACKED_WORDS];

/* fd 0 of the calling process may become another file. */
static __always_inline void stdin_may_change(void)
{
	tgid_bit_clear(stdin_done_bits, bpf_get_current_pid_tgid() >> 32);
}

/* --- channel files and roles ---------------------------------------------------------- */

/* The file behind fd in task's table, or NULL when the fd is not open. */
static __always_inline struct file *fd_file(struct task_struct *task, int fd)
{
	struct fdtable *fdt;
	struct file **fds, *file;
	unsigned int max_fds;

	if (direct_reads) {
		fdt = task->files->fdt;
		max_fds = fdt->max_fds;
		fds = fdt->fd;
	} else {
		fdt = BPF_CORE_READ(task, files, fdt);
		max_fds = BPF_CORE_READ(fdt, max_fds);
		fds = BPF_CORE_READ(fdt, fd);
	}
	/* A negative fd becomes a huge unsigned one and fails this check too. The fd array is
	 * an array of pointers, which BTF cannot type: it is read by a helper either way. */
	if ((__u32)fd >= max_fds || bpf_probe_read_kernel(&file, sizeof(file), &fds[(__u32)fd]))
		return NULL;
	return file;
}

static __always_inline bool kind_talks(__u8 kind)
{
	return kind == MSD_FD_PIPE || kind == MSD_FD_SOCKET || kind == MSD_FD_TTY;
}

/* The role of a transfer on file by the process whose state is p. The device is read only
 * when the inode number matches one of the channel's, so that a process's other files cost
 * the fewest reads. IN and OUT need a pipe, socket or tty (what a client talks through); ERR
 * is the process's log, whatever kind of file it is. */
static __always_inline __u8 role_of(const struct msd_proc_state *p, struct file *file, __u8 dir, int fd)
{
	const struct msd_file_id *in = &p->chan[MSD_ROLE_IN], *out = &p->chan[MSD_ROLE_OUT],
				 *err = &p->chan[MSD_ROLE_ERR];
	bool is_out, is_err;
	struct inode *inode;
	__u64 ino;
	__u32 dev;

	if (direct_reads) {
		file = bpf_rdonly_cast(file, bpf_core_type_id_kernel(struct file));
		inode = file->f_inode;
		ino = inode->i_ino;
	} else {
		inode = BPF_CORE_READ(file, f_inode);
		ino = BPF_CORE_READ(inode, i_ino);
	}
	if (!ino)
		return MSD_ROLE_NONE;
	if (dir == MSD_DIR_READ ? ino != in->ino : ino != out->ino && ino != err->ino)
		return MSD_ROLE_NONE;
	dev = direct_reads ? inode->i_sb->s_dev : BPF_CORE_READ(inode, i_sb, s_dev);
	if (dir == MSD_DIR_READ)
		return dev == in->dev && kind_talks(in->kind) ? MSD_ROLE_IN : MSD_ROLE_NONE;
	is_out = ino == out->ino && dev == out->dev && kind_talks(out->kind);
	is_err = ino == err->ino && dev == err->dev;
	if (is_out && is_err)
		return fd == 2 ? MSD_ROLE_ERR : MSD_ROLE_OUT;
	return is_out ? MSD_ROLE_OUT : is_err ? MSD_ROLE_ERR : MSD_ROLE_NONE;
}

/* --- copying into the ring buffer ---------------------------------------------------- */

static __always_inline void rec_hdr_fill(struct msd_rec_hdr *hdr, __u16 kind, __u32 size, __u32 tgid, __u32 tid)
{
	hdr->kind = kind;
	hdr->abi = MSD_ABI_VERSION;
	hdr->size = size;
	hdr->ts_ns = bpf_ktime_get_ns();
	hdr->tgid = tgid;
	hdr->tid = tid;
}

/* Completes the header of one record from the syscall's shared fields. */
static __always_inline void data_hdr_fill(struct msd_data_rec *rec, const struct capture *c, __u64 stream_off,
					  __u32 len, __u16 flags)
{
	__builtin_memcpy(rec, &c->rec, sizeof(*rec));
	rec->hdr.size = HDR_SIZE + len;
	rec->stream_off = stream_off;
	rec->cap_len = len;
	rec->flags = c->rec.flags | flags;
}

/* Reserves a record of the smallest class that holds len bytes, copies into it and submits
 * it. One expansion per class: each reservation has the constant size the verifier needs,
 * and each copy a length the class bounds. */
#define COPY_CLASS(SIZE)                                                                      \
	if (len <= (SIZE) - HDR_SIZE) {                                                       \
		struct msd_data_rec *rec = bpf_ringbuf_reserve(&events, (SIZE), 0);           \
		if (!rec)                                                                      \
			return -1;                                                             \
		if (len && bpf_probe_read_user(rec->data, len, (const void *)src)) {           \
			bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);                            \
			return 1;                                                              \
		}                                                                              \
		data_hdr_fill(rec, c, stream_off, len, flags);                                 \
		bpf_ringbuf_submit(rec, data_output_flags(SIZE));                              \
		*reserved = (SIZE);                                                            \
		return 0;                                                                      \
	}

/* Returns 0 when submitted, 1 when user memory could not be read, -1 when the ring is full. */
static __always_inline int copy_classes(const struct capture *c, __u64 src, __u64 len, __u64 stream_off, __u16 flags,
					__u64 *reserved)
{
	barrier_var(len);
	COPY_CLASS(256)
	COPY_CLASS(512)
	COPY_CLASS(1024)
	COPY_CLASS(2048)
	COPY_CLASS(4096)
	COPY_CLASS(8192)
	COPY_CLASS(16384)
	COPY_CLASS(32768)
	COPY_CLASS(HDR_SIZE + MSD_CHUNK_MAX)
	return 1;
}

static __always_inline int copy_dynptr_record(const struct capture *c, __u64 src, __u64 len, __u64 stream_off,
					      __u16 flags, __u64 *reserved)
{
	struct msd_data_rec *rec;
	struct bpf_dynptr dp;

	if (len > MSD_CHUNK_MAX)
		return 1;
	if (bpf_ringbuf_reserve_dynptr(&events, HDR_SIZE + len, 0, &dp)) {
		bpf_ringbuf_discard_dynptr(&dp, BPF_RB_NO_WAKEUP);
		return -1;
	}
	rec = bpf_dynptr_data(&dp, 0, HDR_SIZE);
	if (!rec || (len && bpf_probe_read_user_dynptr(&dp, HDR_SIZE, len, (const void *)src))) {
		bpf_ringbuf_discard_dynptr(&dp, BPF_RB_NO_WAKEUP);
		return 1;
	}
	data_hdr_fill(rec, c, stream_off, len, flags);
	bpf_ringbuf_submit_dynptr(&dp, data_output_flags(HDR_SIZE + len));
	*reserved = HDR_SIZE + len;
	return 0;
}

/* Copies len bytes at src (len <= MSD_CHUNK_MAX) as the record at position pos of the syscall.
 * Returns false when the ring buffer is full: the rest of the syscall is then counted lost. */
static __always_inline bool piece_emit(struct capture *c, __u64 src, __u64 len)
{
	__u64 stream_off = c->base_off + c->pos, reserved = 0;
	bool last = c->pos + len >= c->end;
	struct counters *cnt;
	__u16 flags = 0;
	int ret;

	if (last)
		flags = MSD_DATA_LAST | (c->short_write ? MSD_DATA_SHORT : 0);
	ret = copy_dynptr ? copy_dynptr_record(c, src, len, stream_off, flags, &reserved)
			  : copy_classes(c, src, len, stream_off, flags, &reserved);
	if (ret < 0) {
		/* Everything still to copy: the rest of the head and the tail. */
		__u64 left = c->end - c->pos;

		if (c->pos < c->head_end && c->tail_start > c->head_end)
			left -= c->tail_start - c->head_end;
		else if (c->pos >= c->head_end && c->pos < c->tail_start)
			left = c->end - c->tail_start;
		drop_count(MSD_DROP_RINGBUF, left / MSD_CHUNK_MAX + 1, left);
		c->stopped = true;
		return false;
	}
	if (ret > 0) {
		/* The stream shows the gap; a half-copied record would show garbage instead. */
		drop_count(MSD_DROP_COPY, 1, len);
	} else if ((cnt = counters_get())) {
		cnt->n[MSD_CNT_RING_RESERVED] += reserved;
		cnt->n[MSD_CNT_RING_USED] += HDR_SIZE + len;
		cnt->n[MSD_CNT_DATA_RECORDS]++;
	}
	c->rec.chunk++;
	return true;
}

/* One bpf_loop iteration: fetches the next iovec, or skips the cut part of the current one,
 * or copies its next piece up to the end of the iovec, of the head or of a chunk, whichever
 * comes first. Returns 1 to stop the loop. */
static long copy_step(__u32 i, void *ctx)
{
	__u32 zero = 0;
	struct capture *c = bpf_map_lookup_elem(&scratch, &zero);
	__u64 avail, limit, n;

	if (!c || c->stopped || c->pos >= c->end)
		return 1;
	if (c->cur_off >= c->cur_len) {
		struct user_iovec v;

		if (c->vec_idx >= c->nvec ||
		    bpf_probe_read_user(&v, sizeof(v), (const void *)(c->vec + c->vec_idx * sizeof(v)))) {
			/* The rest cannot be located: the stream shows it as a gap. */
			drop_count(MSD_DROP_COPY, 1, c->end - c->pos);
			return 1;
		}
		c->vec_idx++;
		c->cur_base = v.base;
		c->cur_len = v.len;
		c->cur_off = 0;
		return 0;
	}
	avail = c->cur_len - c->cur_off;
	if (c->pos >= c->head_end && c->pos < c->tail_start) {
		n = c->tail_start - c->pos;
		n = n < avail ? n : avail;
		c->pos += n;
		c->cur_off += n;
		return 0;
	}
	limit = (c->pos < c->head_end ? c->head_end : c->end) - c->pos;
	n = avail < limit ? avail : limit;
	n = n < MSD_CHUNK_MAX ? n : MSD_CHUNK_MAX;
	if (!piece_emit(c, c->cur_base + c->cur_off, n))
		return 1;
	c->pos += n;
	c->cur_off += n;
	return 0;
}

/* The user iovec array of a recvmsg/sendmsg msghdr, and its length. */
static __always_inline int msg_iov(__u64 msghdr, __u64 *vec, __u64 *nvec)
{
	struct user_msghdr m;

	if (bpf_probe_read_user(&m, sizeof(m), (const void *)msghdr))
		return -1;
	*vec = (__u64)m.msg_iov;
	*nvec = m.msg_iovlen;
	return 0;
}

static long iov_sum_step(__u32 i, void *ctx)
{
	__u32 zero = 0;
	struct capture *c = bpf_map_lookup_elem(&scratch, &zero);
	__u64 len;

	if (!c || i >= c->nvec)
		return 1;
	if (bpf_probe_read_user(&len, sizeof(len), (const void *)(c->vec + i * sizeof(struct user_iovec) + 8)))
		return 1;
	c->total += len;
	return 0;
}

/* Bytes a vectored write asks to move, over every iovec. */
static __always_inline __u64 iov_sum(__u64 vec, __u64 nvec)
{
	__u32 zero = 0;
	struct capture *c = bpf_map_lookup_elem(&scratch, &zero);

	if (!c)
		return 0;
	c->vec = vec;
	c->nvec = nvec < MSD_IOV_MAX ? nvec : MSD_IOV_MAX;
	c->total = 0;
	bpf_loop(MSD_IOV_MAX, iov_sum_step, NULL, 0);
	return c->total;
}

/* The header fields every record of this syscall shares. f: the channel file or connection
 * socket; conn_id: the connection's, 0 for a channel. */
static __always_inline void capture_begin(struct capture *c, __u32 tgid, __u32 tid, __u64 ts, int fd, __u8 dir,
					  __u8 role, __u8 sys, const struct msd_file_id *f, __u64 conn_id,
					  __u64 ret, __u64 requested)
{
	__builtin_memset(&c->rec, 0, sizeof(c->rec));
	c->rec.hdr.kind = MSD_REC_DATA;
	c->rec.hdr.abi = MSD_ABI_VERSION;
	c->rec.hdr.size = HDR_SIZE;
	c->rec.hdr.ts_ns = ts;
	c->rec.hdr.tgid = tgid;
	c->rec.hdr.tid = tid;
	c->rec.fd = fd;
	c->rec.dir = dir;
	c->rec.fd_kind = f->kind;
	c->rec.role = role;
	c->rec.syscall = sys;
	c->rec.file_dev = f->dev;
	c->rec.file_ino = f->ino;
	c->rec.syscall_len = ret;
	c->rec.requested = requested;
	c->rec.conn_id = conn_id;
	c->stopped = false;
}

/* A record without data, at offset off of its stream: EOF on a read (LAST), a write that
 * could not proceed (-EAGAIN: LAST | SHORT), or bytes moved by a syscall that is not copied
 * (LAST | TRUNCATED | UNCAPTURED, the hole covering them). */
static __always_inline void marker_emit(struct capture *c, __u64 off, __u16 flags)
{
	struct msd_data_rec *rec = bpf_ringbuf_reserve(&events, HDR_SIZE, 0);

	if (!rec) {
		drop_count(MSD_DROP_RINGBUF, 1, 0);
		return;
	}
	data_hdr_fill(rec, c, off, 0, flags);
	bpf_ringbuf_submit(rec, data_output_flags(HDR_SIZE));
}

/* Syscall exit tracepoints carry only the return value: the arguments come from the
 * registers saved at entry. */
static __always_inline long syscall_arg(struct pt_regs *regs, int n)
{
	if (direct_reads)
		return n == 0 ? PT_REGS_PARM1_SYSCALL(regs) : n == 1 ? PT_REGS_PARM2_SYSCALL(regs) :
		       n == 2 ? PT_REGS_PARM3_SYSCALL(regs) : PT_REGS_PARM4_SYSCALL(regs);
	return n == 0 ? PT_REGS_PARM1_CORE_SYSCALL(regs) : n == 1 ? PT_REGS_PARM2_CORE_SYSCALL(regs) :
	       n == 2 ? PT_REGS_PARM3_CORE_SYSCALL(regs) : PT_REGS_PARM4_CORE_SYSCALL(regs);
}

/* --- connections ---------------------------------------------------------------------- */

/* recvfrom(fd, buf, len, flags) and recvmsg(fd, msg, flags) with MSG_PEEK leave the bytes in
 * the socket: the receive that takes them reports them. */
static __always_inline bool is_peek(struct pt_regs *regs, __u8 sys)
{
	if (sys == MSD_SYS_RECVFROM)
		return syscall_arg(regs, 3) & MSG_PEEK;
	if (sys == MSD_SYS_RECVMSG)
		return syscall_arg(regs, 2) & MSG_PEEK;
	return false;
}

static __always_inline void conn_key_fill(struct msd_conn_key *key, struct inode *inode, __u32 tgid)
{
	key->ino = BPF_CORE_READ(inode, i_ino);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->tgid = tgid;
}

static __always_inline bool inode_is_socket(struct inode *inode)
{
	return (BPF_CORE_READ(inode, i_mode) & S_IFMT) == S_IFSOCK;
}

/* The sock behind a socket file when it is a connection: TCP over IPv4 or IPv6, or an AF_UNIX
 * stream. NULL otherwise (UDP, netlink, a listening socket still answers here: it never moves
 * bytes). */
static __always_inline struct sock *conn_sock(struct file *file, __u16 *family)
{
	struct socket *sock = BPF_CORE_READ(file, private_data);
	struct sock *sk = sock ? BPF_CORE_READ(sock, sk) : NULL;
	__u16 fam;

	if (!sk || BPF_CORE_READ(sk, sk_type) != SOCK_STREAM)
		return NULL;
	fam = BPF_CORE_READ(sk, __sk_common.skc_family);
	if ((fam == AF_INET || fam == AF_INET6) && BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return NULL;
	if (fam != AF_INET && fam != AF_INET6 && fam != AF_UNIX)
		return NULL;
	*family = fam;
	return sk;
}

/* A new entry under key (replacing one of a socket whose inode came back), with a new id. */
static __always_inline struct msd_conn_state *conn_start(const struct msd_conn_key *key, __u8 flags, __u16 family)
{
	struct msd_conn_state st = {};
	struct counters *cnt;

	st.conn_id = __sync_fetch_and_add(&conn_seq, 1) + 1;
	st.flags = flags;
	st.family = family;
	if (bpf_map_update_elem(&conns, key, &st, BPF_ANY))
		return NULL;
	if ((cnt = counters_get()))
		cnt->n[MSD_CNT_CONN_SEEN]++;
	return bpf_map_lookup_elem(&conns, key);
}

/* Addresses and ports of both ends; for AF_UNIX the path this end or its peer is bound to. */
static __always_inline void conn_addrs(struct msd_conn_rec *r, struct sock *sk, __u16 family)
{
	r->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
	r->peer_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)r->local_addr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)r->peer_addr, sk, __sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		BPF_CORE_READ_INTO(&r->local_addr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&r->peer_addr, sk, __sk_common.skc_v6_daddr);
	} else {
		struct unix_sock *u = (struct unix_sock *)sk;
		struct unix_address *addr = BPF_CORE_READ(u, addr);
		struct sock *peer;
		__u32 len;

		if (!addr && (peer = BPF_CORE_READ(u, peer)))
			addr = BPF_CORE_READ((struct unix_sock *)peer, addr);
		if (!addr)
			return;
		/* The address's length counts sun_family (2 bytes) and the path. */
		len = BPF_CORE_READ(addr, len);
		len = len > 2 ? len - 2 : 0;
		if (len > sizeof(r->path))
			len = sizeof(r->path);
		bpf_probe_read_kernel(r->path, len,
				      (const char *)addr + bpf_core_field_offset(struct unix_address, name) + 2);
	}
}

static __always_inline void conn_rec_emit(__u64 pid_tgid, const struct msd_conn_key *key, __u64 conn_id, int fd,
					  __u8 event, long ret, __u8 how, struct sock *sk, __u16 family)
{
	struct msd_conn_rec *r = bpf_ringbuf_reserve(&events, sizeof(*r), 0);

	if (!r) {
		drop_count(MSD_DROP_CONN, 1, 0);
		return;
	}
	__builtin_memset(r, 0, sizeof(*r));
	rec_hdr_fill(&r->hdr, MSD_REC_CONN, sizeof(*r), pid_tgid >> 32, (__u32)pid_tgid);
	r->conn_id = conn_id;
	r->file_ino = key->ino;
	r->file_dev = key->dev;
	r->fd = fd;
	r->event = event;
	r->how = how;
	r->ret = ret;
	if (sk) {
		r->family = family;
		conn_addrs(r, sk, family);
	}
	bpf_ringbuf_submit(r, 0);
}

/* The connection a transfer on a file that is not the channel belongs to, started now when
 * it is a connection seen for the first time (mid-stream: it was open before). NULL when the
 * file is not a connection. */
static __always_inline struct msd_conn_state *conn_of_transfer(__u32 tgid, struct file *file, int fd,
							       struct msd_file_id *fid)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);
	struct msd_conn_state *conn;
	struct msd_conn_key key;
	struct sock *sk;
	__u16 family;

	if (!inode_is_socket(inode))
		return NULL;
	conn_key_fill(&key, inode, tgid);
	__builtin_memset(fid, 0, sizeof(*fid));
	fid->ino = key.ino;
	fid->dev = key.dev;
	fid->kind = MSD_FD_SOCKET;
	conn = bpf_map_lookup_elem(&conns, &key);
	if (conn || !(sk = conn_sock(file, &family)))
		return conn;
	conn = conn_start(&key, 0, family);
	if (conn)
		conn_rec_emit(bpf_get_current_pid_tgid(), &key, conn->conn_id, fd, MSD_CONN_SEEN, 0, 0, sk, family);
	return conn;
}

#define FOUR(s) ((__u32)(s)[0] | (__u32)(s)[1] << 8 | (__u32)(s)[2] << 16 | (__u32)(s)[3] << 24)

/* The first four bytes of an HTTP/1.x request (its method) or response. */
static __always_inline bool looks_http(__u32 w)
{
	return w == FOUR("GET ") || w == FOUR("POST") || w == FOUR("PUT ") || w == FOUR("HEAD") ||
	       w == FOUR("DELE") || w == FOUR("OPTI") || w == FOUR("PATC") || w == FOUR("CONN") ||
	       w == FOUR("TRAC") || w == FOUR("HTTP");
}

/* The first buffer of a transfer and how many of its bytes were moved (0: none to look at). */
static __always_inline __u64 first_buffer(enum shape shape, __u64 ptr, __u64 count, long ret, __u64 *len)
{
	struct user_iovec v;
	__u64 vec = ptr, nvec = count;

	*len = ret;
	if (shape == SHAPE_BUF)
		return ptr;
	if (shape == SHAPE_MSG && msg_iov(ptr, &vec, &nvec))
		return 0;
	if (!nvec || bpf_probe_read_user(&v, sizeof(v), (const void *)vec))
		return 0;
	if (v.len < *len)
		*len = v.len;
	return v.base;
}

/* Whether this transfer's bytes are copied. An ignored connection's are counted. A
 * connection seen from its start is judged on its first bytes (whichever direction moves
 * first): anything but an HTTP/1.x request or response is ignored at once, so a database or
 * TLS connection costs one look, never a copy. */
static __always_inline bool conn_copies(struct msd_conn_state *conn, __u8 dir, long ret, enum shape shape, __u64 ptr,
					__u64 count)
{
	struct counters *cnt;
	__u64 first, len;
	__u32 head;

	if (conn->verdict == MSD_CONN_COPY && ret > 0 &&
	    (conn->flags & (MSD_CONN_FROM_START | MSD_CONN_SNIFFED)) == MSD_CONN_FROM_START &&
	    conn->stream_off[dir & 1] == 0) {
		first = first_buffer(shape, ptr, count, ret, &len);
		if (first && len >= sizeof(head) && !bpf_probe_read_user(&head, sizeof(head), (const void *)first)) {
			conn->flags |= MSD_CONN_SNIFFED;
			if (!looks_http(head)) {
				conn->verdict = MSD_CONN_IGNORED;
				if ((cnt = counters_get()))
					cnt->n[MSD_CNT_CONN_SNIFFED]++;
			}
		}
	}
	if (conn->verdict == MSD_CONN_COPY)
		return true;
	if ((cnt = counters_get())) {
		cnt->n[MSD_CNT_CONN_IGNORED_CALLS]++;
		cnt->n[MSD_CNT_CONN_IGNORED_BYTES] += ret > 0 ? ret : 0;
	}
	return false;
}

/* accept returned fd, or connect on fd returned ret: a connection seen from its first byte. */
static __always_inline int conn_opened(int fd, __u8 event, long ret)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct msd_conn_state *conn;
	struct msd_conn_key key;
	struct file *file;
	struct sock *sk;
	__u16 family;

	if (hooks_only || !is_tracked(pid_tgid >> 32))
		return 0;
	file = fd_file(bpf_get_current_task_btf(), fd);
	if (!file || !(sk = conn_sock(file, &family)))
		return 0;
	conn_key_fill(&key, BPF_CORE_READ(file, f_inode), pid_tgid >> 32);
	conn = conn_start(&key, MSD_CONN_FROM_START, family);
	if (conn)
		conn_rec_emit(pid_tgid, &key, conn->conn_id, fd, event, ret, 0, sk, family);
	return 0;
}

/* shutdown or close of fd, when it is a connection being followed. A close ends the
 * process's view of the connection (another fd of it, a dup, is a new connection then). */
static __always_inline int conn_closing(int fd, __u8 event, __u8 how)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct msd_conn_state *conn;
	struct msd_conn_key key;
	struct inode *inode;
	struct file *file;

	if (hooks_only || !is_tracked(pid_tgid >> 32))
		return 0;
	file = fd_file(bpf_get_current_task_btf(), fd);
	if (!file)
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	if (!inode_is_socket(inode))
		return 0;
	conn_key_fill(&key, inode, pid_tgid >> 32);
	conn = bpf_map_lookup_elem(&conns, &key);
	if (!conn)
		return 0;
	conn_rec_emit(pid_tgid, &key, conn->conn_id, fd, event, 0, how, NULL, 0);
	if (event == MSD_CONN_CLOSE)
		bpf_map_delete_elem(&conns, &key);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept(struct trace_event_raw_sys_exit *ctx)
{
	return ctx->ret >= 0 ? conn_opened(ctx->ret, MSD_CONN_ACCEPT, 0) : 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4(struct trace_event_raw_sys_exit *ctx)
{
	return ctx->ret >= 0 ? conn_opened(ctx->ret, MSD_CONN_ACCEPT, 0) : 0;
}

/* A non-blocking connect returns EINPROGRESS: the socket is connected by the time it moves
 * bytes, and its local port is already chosen. */
SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect(struct trace_event_raw_sys_exit *ctx)
{
	long ret = ctx->ret;
	struct pt_regs *regs;

	if (hooks_only || (ret != 0 && ret != -EINPROGRESS) || !is_tracked(bpf_get_current_pid_tgid() >> 32))
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return conn_opened(syscall_arg(regs, 0), MSD_CONN_CONNECT, ret);
}

SEC("tracepoint/syscalls/sys_enter_shutdown")
int sys_enter_shutdown(struct trace_event_raw_sys_enter *ctx)
{
	return conn_closing(ctx->args[0], MSD_CONN_SHUTDOWN, ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_close")
int sys_enter_close(struct trace_event_raw_sys_enter *ctx)
{
	if (!hooks_only && discover && ctx->args[0] == 0)
		stdin_may_change();
	return conn_closing(ctx->args[0], MSD_CONN_CLOSE, 0);
}

/* dup2, dup3 and close_range onto fd 0 change stdin too (stdin_done_bits); nothing else of
 * theirs matters here. */
SEC("tracepoint/syscalls/sys_enter_dup2")
int sys_enter_dup2(struct trace_event_raw_sys_enter *ctx)
{
	if (!hooks_only && discover && ctx->args[1] == 0)
		stdin_may_change();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int sys_enter_dup3(struct trace_event_raw_sys_enter *ctx)
{
	if (!hooks_only && discover && ctx->args[1] == 0)
		stdin_may_change();
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_close_range")
int sys_enter_close_range(struct trace_event_raw_sys_enter *ctx)
{
	if (!hooks_only && discover && ctx->args[0] == 0)
		stdin_may_change();
	return 0;
}

/* --- data syscalls -------------------------------------------------------------------- */

/* Entry of a write-type syscall: its entry time and size, for its records and for the
 * blocked-write scan. Reads need nothing at entry: their exit has the registers. */
static __always_inline int write_enter(struct trace_event_raw_sys_enter *ctx, enum shape shape)
{
	struct task_struct *task;
	struct write_stash *st;
	__u64 ptr, count, vec, nvec;
	int fd;

	if (hooks_only || !is_tracked(bpf_get_current_pid_tgid() >> 32))
		return 0;
	fd = ctx->args[0];
	ptr = ctx->args[1];
	count = ctx->args[2];
	task = bpf_get_current_task_btf();
	st = bpf_task_storage_get(&stash, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	st->enter_ns = bpf_ktime_get_ns();
	st->fd = fd;
	st->busy = 1;
	if (shape == SHAPE_BUF) {
		st->count = count;
	} else {
		vec = ptr;
		nvec = count;
		if (shape == SHAPE_MSG && msg_iov(ptr, &vec, &nvec))
			nvec = 0;
		st->count = iov_sum(vec, nvec);
	}
	return 0;
}

/* Bytes; EOF on a read; a write refused with EAGAIN (the reader is not keeping up). */
static __always_inline bool worth_reporting(long ret, __u8 dir)
{
	if (ret > 0)
		return true;
	return ret == 0 ? dir == MSD_DIR_READ : ret == -EAGAIN && dir == MSD_DIR_WRITE;
}

static __always_inline int data_exit_tracked(long ret, __u32 tgid, __u32 tid, __u8 sys, __u8 dir, enum shape shape)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 enter_ns = 0, requested = 0, ptr, count, ts, conn_id = 0, *offp;
	__u16 family = 0;
	const struct msd_file_id *f;
	struct msd_conn_state *conn;
	struct msd_proc_state *p;
	struct msd_file_id fid;
	struct write_stash *st;
	struct pt_regs *regs;
	struct capture *c;
	struct file *file;
	__u32 zero = 0;
	__u8 role;
	int fd;

	if (dir == MSD_DIR_WRITE) {
		st = bpf_task_storage_get(&stash, task, 0, 0);
		if (st && st->busy) {
			enter_ns = st->enter_ns;
			requested = st->count;
			st->busy = 0;
		}
	}
	/* What is left to report: bytes, EOF on a read, a write refused with EAGAIN. */
	if (!worth_reporting(ret, dir))
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	fd = syscall_arg(regs, 0);
	ptr = syscall_arg(regs, 1);
	count = syscall_arg(regs, 2);
	if (ret > 0 && is_peek(regs, sys)) {
		struct counters *cnt = counters_get();

		if (cnt)
			cnt->n[MSD_CNT_PEEKS]++;
		return 0;
	}
	file = fd_file(task, fd);
	if (!file) {
		/* Closed by another thread meanwhile: what it was is unknowable. */
		if (ret > 0)
			drop_count(MSD_DROP_NO_ENTRY, 1, ret);
		return 0;
	}
	role = role_of(p, file, dir, fd);
	if (role == MSD_ROLE_NONE) {
		struct counters *cnt;

		conn = conn_of_transfer(tgid, file, fd, &fid);
		if (conn) {
			if (!conn_copies(conn, dir, ret, shape, ptr, count))
				return 0;
			role = MSD_ROLE_CONN;
			offp = &conn->stream_off[dir & 1];
			conn_id = conn->conn_id;
			family = conn->family;
			f = &fid;
		} else if ((cnt = counters_get())) {
			cnt->n[MSD_CNT_NONE_CALLS]++;
			cnt->n[MSD_CNT_NONE_BYTES] += ret > 0 ? ret : 0;
		}
		if (!conn)
			return 0;
	} else {
		offp = &p->stream_off[role & (MSD_ROLE__COUNT - 1)];
		f = &p->chan[role & (MSD_ROLE__COUNT - 1)];
	}
	c = bpf_map_lookup_elem(&scratch, &zero);
	if (!c)
		return 0;
	if (shape == SHAPE_BUF && !requested)
		requested = count;
	ts = enter_ns ? enter_ns : bpf_ktime_get_ns();
	capture_begin(c, tgid, tid, ts, fd, dir, role, sys, f, conn_id, ret > 0 ? ret : 0, requested);
	c->rec.family = family;
	if (ret <= 0) {
		marker_emit(c, *offp, ret == 0 ? MSD_DATA_LAST : MSD_DATA_LAST | MSD_DATA_SHORT);
		return 0;
	}

	c->base_off = __sync_fetch_and_add(offp, ret);
	c->end = ret;
	c->pos = 0;
	c->head_end = ret;
	c->tail_start = ret;
	c->short_write = dir == MSD_DIR_WRITE && requested && (__u64)ret < requested;
	if ((__u64)ret > MSD_CAPTURE_MAX) {
		c->head_end = MSD_CAPTURE_MAX - MSD_TAIL_MAX;
		c->tail_start = ret - MSD_TAIL_MAX;
		c->rec.flags = MSD_DATA_TRUNCATED | MSD_DATA_CUT;
		c->rec.hole_off = c->base_off + c->head_end;
		c->rec.hole_len = c->tail_start - c->head_end;
		drop_count(MSD_DROP_TRUNCATED, 1, c->rec.hole_len);
	}
	if (shape == SHAPE_BUF) {
		c->vec = 0;
		c->nvec = 0;
		c->cur_base = ptr;
		c->cur_len = ret;
		c->cur_off = 0;
		/* The common case, one buffer in one record: no loop. */
		if (ret <= MSD_CHUNK_MAX) {
			piece_emit(c, ptr, ret);
			return 0;
		}
	} else {
		c->vec = ptr;
		c->nvec = count;
		if (shape == SHAPE_MSG && msg_iov(ptr, &c->vec, &c->nvec))
			c->nvec = 0;
		if (c->nvec > MSD_IOV_MAX)
			c->nvec = MSD_IOV_MAX;
		c->vec_idx = 0;
		c->cur_len = 0;
		c->cur_off = 0;
	}
	bpf_loop(COPY_STEPS_MAX, copy_step, NULL, 0);
	return 0;
}

/* --- discovery (watch --all) ------------------------------------------------------------
 *
 * With discovery on, a read of its stdin by an untracked process is looked at: its first
 * SNIFF_BYTES, line by line, for a line whose first non-blank byte is '{' and that holds the
 * key "jsonrpc" (the TypeScript SDK writes it after the params, so an initialize carries it a
 * few hundred bytes in). Found: the process is tracked from this read on, which is captured.
 * What was concluded is kept per process in "verdicts": a stdin found to carry something else
 * (SNIFF_MISSES whole lines that are not JSON-RPC, or SNIFF_READS reads without one), a file
 * for stdin, or user space's word (excluded, not MCP, a relay) costs one lookup per read from
 * then on.
 *
 * HTTP servers are found the same way by what they read from a TCP or AF_UNIX stream socket:
 * a read that starts an HTTP request (POST, or GET for an event stream) and shows MCP in its
 * first SNIFF_BYTES (the key "jsonrpc" in a JSON-RPC body, an Mcp-* header, or an Accept of
 * text/event-stream, which Streamable HTTP's POST and the legacy transport's GET carry). The
 * read is captured whole, from the request's first byte, on a connection user space joins
 * there. The verdict about a process's sockets lives beside its stdin's (msd_http_verdict):
 * a process whose socket reads start no request (a database client, TLS) is let go after
 * MSD_HTTP_SOCK_READS of them, one that serves HTTP without MCP once its requests spent
 * MSD_HTTP_MISSES. Before that, a socket read costs the file's mode, the verdict lookup and a
 * 4-byte look; other reads cost the file's mode. After it, any read costs one load from
 * http_done_bits. Loaded without discovery, the verifier removes all of this: attach pays
 * nothing but http_done_bits' 512 KiB. */

#define S_IFMT   00170000
#define S_IFSOCK 0140000
#define S_IFCHR  0020000
#define S_IFIFO  0010000
#define AF_UNIX  1

#define SNIFF_BYTES  4096 /* looked at in each read */
#define SNIFF_BLOCK  64   /* bytes per bpf_loop step */
#define SNIFF_MISSES 4    /* whole lines that are not JSON-RPC before a stdin is given up */
#define SNIFF_READS  64   /* reads looked at without JSON-RPC before it is given up */
#define JSONRPC_KEY_LEN 9 /* "jsonrpc" with its quotes */

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct msd_verdict);
} verdicts SEC(".maps");

/* Processes whose sockets are no longer looked at (their verdict says why): one bit per tgid,
 * as tracked_bits, so that their reads cost one load rather than the file's mode and a
 * verdict lookup. Set with the verdict, cleared with it (exec, exit). */
__u64 http_done_bits[TRACKED_WORDS];

/* The scan of one HTTP request read. Each sign's first byte occurs in it only there (or,
 * for the key's closing quote, restarts it), so a mismatch restarts the match at 0 or 1. In
 * the scratch map, not on the stack: the verifier would follow every value of the three
 * matches through the loop. */
struct http_sniff {
	__u32 len;   /* bytes in the scratch buffer */
	__u8 found;
	__u8 rpc, mcp, sse; /* bytes of each sign matched so far */
};

struct sniff_buf {
	char b[SNIFF_BYTES];
	struct msd_proc_state state; /* of a process being discovered: too big for the stack */
	struct http_sniff hs;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sniff_buf);
} sniff_scratch SEC(".maps");

enum sniff_phase {
	SNIFF_LINE_START, /* blanks so far on this line */
	SNIFF_OBJECT,     /* the line starts with '{': looking for the key */
	SNIFF_SKIP,       /* not JSON-RPC: up to the newline */
};

/* The scan of one read (on the stack: bpf_loop's context). */
struct sniff {
	__u32 len;     /* bytes in the scratch buffer */
	__u32 line;    /* offset of the current line's start */
	__u32 found;   /* 1 + offset of the JSON-RPC line; 0: none */
	__u32 misses;  /* whole lines that were not JSON-RPC */
	__u8 phase;    /* enum sniff_phase */
	__u8 matched;  /* bytes of the key matched so far */
	__u8 whole;    /* the current line is seen from its start (not the end of an earlier one) */
	__u8 pad;
};

static __always_inline char jsonrpc_key_at(__u8 i)
{
	switch (i) {
	case 1: return 'j';
	case 2: return 's';
	case 3: return 'o';
	case 4: return 'n';
	case 5: return 'r';
	case 6: return 'p';
	case 7: return 'c';
	default: return '"';
	}
}

static __always_inline void sniff_byte(struct sniff *s, char c, __u32 off)
{
	if (c == '\n') {
		if (s->phase == SNIFF_OBJECT && s->whole)
			s->misses++;
		s->phase = SNIFF_LINE_START;
		s->whole = 1;
		s->line = off + 1;
		return;
	}
	if (s->phase == SNIFF_LINE_START) {
		if (c == ' ' || c == '\t' || c == '\r')
			return;
		if (c == '{') {
			s->phase = SNIFF_OBJECT;
			s->matched = 0;
			return;
		}
		if (s->whole)
			s->misses++;
		s->phase = SNIFF_SKIP;
	} else if (s->phase == SNIFF_OBJECT) {
		/* The key starts with its only quote, so a mismatch restarts at 0 or 1. */
		if (c == jsonrpc_key_at(s->matched)) {
			if (++s->matched == JSONRPC_KEY_LEN)
				s->found = s->line + 1;
		} else {
			s->matched = c == '"' ? 1 : 0;
		}
	}
}

static long sniff_step(__u32 i, void *ctx)
{
	struct sniff *s = ctx;
	struct sniff_buf *buf;
	__u32 zero = 0;

	buf = bpf_map_lookup_elem(&sniff_scratch, &zero);
	if (!buf)
		return 1;
	for (int j = 0; j < SNIFF_BLOCK; j++) {
		__u32 off = i * SNIFF_BLOCK + j;

		if (off >= s->len)
			return 1;
		sniff_byte(s, buf->b[off & (SNIFF_BYTES - 1)], off);
		if (s->found || s->misses >= SNIFF_MISSES)
			return 1;
	}
	return 0;
}

static __always_inline __u8 inode_kind(struct inode *inode)
{
	__u16 mode = BPF_CORE_READ(inode, i_mode);
	__u32 major;

	switch (mode & S_IFMT) {
	case S_IFIFO:
		return MSD_FD_PIPE;
	case S_IFSOCK:
		return MSD_FD_SOCKET;
	case S_IFCHR:
		/* As user space decides it (procfs.c): ttyN/ttySN, tty/console/ptmx, pts. */
		major = BPF_CORE_READ(inode, i_rdev) >> 20;
		return major == 4 || major == 5 || (major >= 136 && major < 144) ? MSD_FD_TTY : MSD_FD_OTHER;
	}
	return MSD_FD_OTHER;
}

/* The inode of the other end of an AF_UNIX socket (a socketpair's, or a connection's), 0 when
 * file is another kind of socket or has no peer. Read here because user space cannot: after
 * the server exits nothing names the peer, and sock_diag needs a module. */
static __always_inline __u64 unix_peer_ino(struct file *file)
{
	struct socket *sock = BPF_CORE_READ(file, private_data), *psock;
	struct sock *sk = BPF_CORE_READ(sock, sk), *peer;
	struct inode *pinode;

	if (!sk || BPF_CORE_READ(sk, __sk_common.skc_family) != AF_UNIX)
		return 0;
	peer = BPF_CORE_READ((struct unix_sock *)sk, peer);
	psock = peer ? BPF_CORE_READ(peer, sk_socket) : NULL;
	if (!psock)
		return 0;
	/* SOCK_INODE(): the socket and its inode are allocated together. */
	pinode = (void *)psock - bpf_core_field_offset(struct socket_alloc, socket) +
		 bpf_core_field_offset(struct socket_alloc, vfs_inode);
	return BPF_CORE_READ(pinode, i_ino);
}

/* The identity of the file behind fd, as user space's proc_channel() gives it, and the peer
 * of an AF_UNIX socket. Zero when the fd is not open. */
static __always_inline void fd_identify(struct task_struct *task, int fd, struct msd_file_id *id, __u64 *peer)
{
	struct file *file = fd_file(task, fd);
	struct inode *inode;

	if (!file)
		return;
	inode = BPF_CORE_READ(file, f_inode);
	id->ino = BPF_CORE_READ(inode, i_ino);
	id->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	id->kind = inode_kind(inode);
	if (peer && id->kind == MSD_FD_SOCKET)
		*peer = unix_peer_ino(file);
}

/* Tracks the current process from now on, with the channel it has now, and says so. */
static __noinline bool discover_track(struct task_struct *task, __u32 tgid, __u32 line_off, bool http,
					   struct msd_proc_state *state)
{
	__u64 in_peer = 0, out_peer = 0, arg_start, arg_end, n;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct msd_discover_rec *rec;
	struct mm_struct *mm;

	__builtin_memset(state, 0, sizeof(*state));
	/* An HTTP server talks on its connections: its stdin and stdout are no channel (a
	 * terminal, a log), its stderr is its log as for any server. */
	if (!http) {
		fd_identify(task, 0, &state->chan[MSD_ROLE_IN], &in_peer);
		fd_identify(task, 1, &state->chan[MSD_ROLE_OUT], &out_peer);
	}
	fd_identify(task, 2, &state->chan[MSD_ROLE_ERR], NULL);
	state->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	if (bpf_map_update_elem(&procs, &tgid, state, BPF_ANY)) {
		drop_count(MSD_DROP_PROC_LIMIT, 1, 0);
		return false;
	}
	tgid_bit_set(tracked_bits, tgid);

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		/* Tracked all the same: user space learns of it from its data records. */
		drop_count(MSD_DROP_EVENT, 1, 0);
		return true;
	}
	rec_hdr_fill(&rec->hdr, MSD_REC_DISCOVER, sizeof(*rec), tgid, tid);
	rec->ppid = BPF_CORE_READ(task, real_parent, tgid);
	rec->line_off = line_off;
	rec->start_ns = state->start_ns;
	__builtin_memcpy(rec->chan, state->chan, sizeof(rec->chan));
	rec->in_peer_ino = in_peer;
	rec->out_peer_ino = out_peer;
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	rec->flags = http ? MSD_DISCOVER_HTTP : 0;
	/* Its arguments, from its own memory: it may be gone before user space reads /proc. */
	mm = BPF_CORE_READ(task, mm);
	arg_start = mm ? BPF_CORE_READ(mm, arg_start) : 0;
	arg_end = mm ? BPF_CORE_READ(mm, arg_end) : 0;
	n = arg_end > arg_start ? arg_end - arg_start : 0;
	if (n > MSD_DISCOVER_CMDLINE)
		n = MSD_DISCOVER_CMDLINE;
	if (n && bpf_probe_read_user(rec->cmdline, n, (const void *)arg_start))
		n = 0;
	rec->cmdline_len = n;
	/* Rare and wanted at once: user space looks at the process while it lives. */
	bpf_ringbuf_submit(rec, BPF_RB_FORCE_WAKEUP);
	return true;
}

/* The verdict of the process task belongs to (one per process: its threads read the same
 * stdin and serve the same sockets), created empty when it has none. */
static __always_inline struct msd_verdict *verdict_of(struct task_struct *task, struct counters *cnt)
{
	struct task_struct *leader = task->group_leader;
	struct msd_verdict *v = bpf_task_storage_get(&verdicts, leader, 0, 0);

	if (v)
		return v;
	v = bpf_task_storage_get(&verdicts, leader, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (cnt)
		cnt->n[v ? MSD_CNT_VERDICTS_MADE : MSD_CNT_VERDICT_FAILED]++;
	return v;
}

/* A user space verdict (excluded, not MCP, a relay) holds for stdin and sockets alike. */
static __always_inline bool verdict_of_user(const struct msd_verdict *v)
{
	return !v->ino && v->verdict != MSD_VERDICT_EXAMINING;
}

/* --- HTTP requests */

/* A sign's bytes as two immediates: no data section, no index into memory. */
#define SIGN8(s, o)                                                                                  \
	((__u64)(__u8)(s)[(o) + 0] | (__u64)(__u8)(s)[(o) + 1] << 8 | (__u64)(__u8)(s)[(o) + 2] << 16 | \
	 (__u64)(__u8)(s)[(o) + 3] << 24 | (__u64)(__u8)(s)[(o) + 4] << 32 |                            \
	 (__u64)(__u8)(s)[(o) + 5] << 40 | (__u64)(__u8)(s)[(o) + 6] << 48 | (__u64)(__u8)(s)[(o) + 7] << 56)
#define SIGN_LO(s) SIGN8(s "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 0)
#define SIGN_HI(s) SIGN8(s "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 8)
#define HTTP_SIGN_RPC "\"jsonrpc\""  /* the key, with its quotes */
#define HTTP_SIGN_MCP "\nmcp-"        /* a header line: Mcp-Session-Id, MCP-Protocol-Version... */
#define HTTP_SIGN_SSE "/event-stream" /* Accept: text/event-stream */
#define SIGN_LEN(s) (sizeof(s) - 1)   /* at most 15 */

static __always_inline __u8 sign_step(__u64 lo, __u64 hi, __u8 matched, char c, bool fold)
{
	__u8 want = (matched < 8 ? lo >> (8 * (matched & 7)) : hi >> (8 * (matched & 7))) & 0xff;

	if (fold && c >= 'A' && c <= 'Z')
		c |= 0x20;
	if ((__u8)c == want)
		return matched + 1;
	return (__u8)c == (lo & 0xff) ? 1 : 0;
}

#define SIGN_STEP(sign, matched, c, fold) sign_step(SIGN_LO(sign), SIGN_HI(sign), matched, c, fold)

static long http_step(__u32 i, void *ctx)
{
	struct sniff_buf *buf;
	struct http_sniff *s;
	__u32 zero = 0;

	buf = bpf_map_lookup_elem(&sniff_scratch, &zero);
	if (!buf)
		return 1;
	s = &buf->hs;
	for (int j = 0; j < SNIFF_BLOCK; j++) {
		__u32 off = i * SNIFF_BLOCK + j;
		char c;

		if (off >= s->len)
			return 1;
		c = buf->b[off & (SNIFF_BYTES - 1)];
		s->rpc = SIGN_STEP(HTTP_SIGN_RPC, s->rpc, c, false);
		s->mcp = SIGN_STEP(HTTP_SIGN_MCP, s->mcp, c, true);
		s->sse = SIGN_STEP(HTTP_SIGN_SSE, s->sse, c, false);
		if (s->rpc == SIGN_LEN(HTTP_SIGN_RPC) || s->mcp == SIGN_LEN(HTTP_SIGN_MCP) ||
		    s->sse == SIGN_LEN(HTTP_SIGN_SSE)) {
			s->found = 1;
			return 1;
		}
	}
	return 0;
}

/* A read of ret bytes from fd (not stdin) by an untracked process: whether it started an
 * HTTP request showing MCP on a stream socket. Then the process is tracked from now on and
 * the caller captures this very read. */
static __noinline bool discover_http(long ret, int fd, __u32 tgid, __u8 sys, enum shape shape)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct sniff_buf *buf;
	struct msd_verdict *v;
	struct counters *cnt;
	struct pt_regs *regs;
	struct file *file;
	__u32 head, zero = 0;
	__u64 first, len;
	__u16 family;
	bool post;

	file = fd_file(task, fd);
	if (!file || !inode_is_socket(BPF_CORE_READ(file, f_inode)) || !conn_sock(file, &family))
		return false;
	cnt = counters_get();
	v = verdict_of(task, cnt);
	if (!v)
		return false;
	if (verdict_of_user(v) || v->http != MSD_HTTP_EXAMINING) {
		if (v->http != MSD_HTTP_TRACKED) /* tracked: let go since, by user space */
			tgid_bit_set(http_done_bits, tgid);
		return false;
	}
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (is_peek(regs, sys))
		return false;
	first = first_buffer(shape, syscall_arg(regs, 1), syscall_arg(regs, 2), ret, &len);
	if (!first || len < sizeof(head) || bpf_probe_read_user(&head, sizeof(head), (const void *)first))
		return false;
	post = head == FOUR("POST");
	if (!post && head != FOUR("GET ")) {
		/* A body read on, a response, a database's or TLS's bytes: only a process that
		 * never read a request runs out of these. */
		if (!v->http_seen && ++v->sock_reads >= MSD_HTTP_SOCK_READS) {
			v->http = MSD_HTTP_NOT_HTTP;
			tgid_bit_set(http_done_bits, tgid);
			if (cnt)
				cnt->n[MSD_CNT_NOT_HTTP]++;
		}
		return false;
	}
	v->http_seen = 1;
	if (len > SNIFF_BYTES)
		len = SNIFF_BYTES;
	buf = bpf_map_lookup_elem(&sniff_scratch, &zero);
	if (!buf || bpf_probe_read_user(buf->b, len, (const void *)first))
		return false;
	buf->hs = (struct http_sniff){ .len = len };
	bpf_loop((len + SNIFF_BLOCK - 1) / SNIFF_BLOCK, http_step, NULL, 0);
	if (cnt) {
		cnt->n[MSD_CNT_SNIFF_READS]++;
		cnt->n[MSD_CNT_SNIFF_BYTES] += len;
		cnt->n[MSD_CNT_HTTP_SNIFFS]++;
	}
	if (buf->hs.found) {
		v->http = MSD_HTTP_TRACKED;
		if (!discover_track(task, tgid, 0, true, &buf->state))
			return false;
		if (cnt) {
			cnt->n[MSD_CNT_DISCOVERED]++;
			cnt->n[MSD_CNT_HTTP_DISCOVERED]++;
		}
		return true;
	}
	/* Health checks and other GETs spend little: a server already running is found at its
	 * next MCP request however often it is probed meanwhile, within the budget. */
	v->http_misses = v->http_misses + (post ? 4 : 1) >= MSD_HTTP_MISSES ? MSD_HTTP_MISSES
									 : v->http_misses + (post ? 4 : 1);
	if (v->http_misses >= MSD_HTTP_MISSES) {
		v->http = MSD_HTTP_NOT_MCP;
		tgid_bit_set(http_done_bits, tgid);
		if (cnt)
			cnt->n[MSD_CNT_HTTP_NOT_MCP]++;
	}
	return false;
}

/* --- stdin */

/* A read of ret bytes by tgid, untracked: whether it was on its stdin and carried JSON-RPC,
 * or on a socket and started an HTTP request showing MCP (discover_http). Then tgid is
 * tracked from now on and the caller captures this very read. */
static __noinline bool discover_read(long ret, __u32 tgid, __u32 tid, __u8 sys, enum shape shape)
{
	struct task_struct *task;
	struct sniff s = {};
	struct sniff_buf *buf;
	struct msd_verdict *v;
	struct counters *cnt;
	struct pt_regs *regs;
	struct inode *inode;
	struct file *file;
	__u64 ptr, len, ino;
	bool http_done, stdin_done;
	__u32 dev, zero = 0;
	char last = 0;
	int fd;

	if (ret <= 0 || tgid == self_tgid)
		return false;
	http_done = tgid_bit(http_done_bits, tgid);
	stdin_done = tgid_bit(stdin_done_bits, tgid);
	if (http_done && stdin_done)
		return false;
	task = bpf_get_current_task_btf();
	regs = (struct pt_regs *)bpf_task_pt_regs(task);
	fd = syscall_arg(regs, 0);
	if (fd != 0)
		return fd > 0 && !http_done && discover_http(ret, fd, tgid, sys, shape);
	if (stdin_done || (sys != MSD_SYS_READ && sys != MSD_SYS_READV))
		return false;
	cnt = counters_get();
	v = verdict_of(task, cnt);
	if (!v)
		return false;
	file = fd_file(task, 0);
	if (!file)
		return false;
	inode = BPF_CORE_READ(file, f_inode);
	ino = BPF_CORE_READ(inode, i_ino);
	dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (v->ino != ino || v->dev != dev) {
		if (verdict_of_user(v)) {
			/* It holds for its sockets as well. */
			tgid_bit_set(stdin_done_bits, tgid);
			tgid_bit_set(http_done_bits, tgid);
			return false;
		}
		/* New, or its stdin is another file now: looked at afresh. */
		v->ino = ino;
		v->dev = dev;
		v->verdict = MSD_VERDICT_EXAMINING;
		v->misses = 0;
		v->reads = 0;
		v->flags = 0;
		if (!kind_talks(inode_kind(inode))) {
			v->verdict = MSD_VERDICT_NOT_STDIO;
			tgid_bit_set(stdin_done_bits, tgid);
			if (cnt)
				cnt->n[MSD_CNT_NOT_STDIO]++;
			return false;
		}
	}
	if (v->verdict != MSD_VERDICT_EXAMINING) {
		tgid_bit_set(stdin_done_bits, tgid);
		return false;
	}

	ptr = syscall_arg(regs, 1);
	len = ret;
	if (shape == SHAPE_IOV) {
		struct user_iovec iov;

		if (bpf_probe_read_user(&iov, sizeof(iov), (const void *)ptr))
			return false;
		ptr = iov.base;
		len = iov.len < len ? iov.len : len;
	}
	if (len > SNIFF_BYTES)
		len = SNIFF_BYTES;
	buf = bpf_map_lookup_elem(&sniff_scratch, &zero);
	if (!buf || !len || bpf_probe_read_user(buf->b, len, (const void *)ptr))
		return false;
	s.len = len;
	s.whole = v->flags & MSD_VERDICT_AT_LINE_START ? 1 : 0;
	bpf_loop((len + SNIFF_BLOCK - 1) / SNIFF_BLOCK, sniff_step, &s, 0);
	if (cnt) {
		cnt->n[MSD_CNT_SNIFF_READS]++;
		cnt->n[MSD_CNT_SNIFF_BYTES] += len;
	}
	if (s.found) {
		v->verdict = MSD_VERDICT_TRACKED;
		if (!discover_track(task, tgid, s.found - 1, false, &buf->state))
			return false;
		if (cnt)
			cnt->n[MSD_CNT_DISCOVERED]++;
		return true;
	}
	/* Whether the next read starts a line: known only from its last byte. */
	if (shape == SHAPE_BUF)
		bpf_probe_read_user(&last, 1, (const void *)(syscall_arg(regs, 1) + ret - 1));
	v->flags = last == '\n' ? MSD_VERDICT_AT_LINE_START : 0;
	v->misses = v->misses + s.misses > SNIFF_MISSES ? SNIFF_MISSES : v->misses + s.misses;
	v->reads++;
	if (v->misses >= SNIFF_MISSES || v->reads >= SNIFF_READS) {
		v->verdict = MSD_VERDICT_NOT_JSONRPC;
		tgid_bit_set(stdin_done_bits, tgid);
		if (cnt)
			cnt->n[MSD_CNT_NOT_JSONRPC]++;
	}
	return false;
}

/* A process's verdict goes with what it runs: at exec, and at its end (for the count). */
static __always_inline void verdict_free(struct task_struct *task)
{
	__u32 tgid = BPF_CORE_READ(task, tgid);
	struct counters *cnt;

	tgid_bit_clear(http_done_bits, tgid);
	tgid_bit_clear(stdin_done_bits, tgid);
	if (!bpf_task_storage_delete(&verdicts, task) && (cnt = counters_get()))
		cnt->n[MSD_CNT_VERDICTS_FREED]++;
}

/* The return value is read only once the process is known to be tracked: an untracked one
 * pays the bitmap load and nothing else (with discovery, a read also the test of its fd). */
static __always_inline int data_exit(struct trace_event_raw_sys_exit *ctx, __u8 sys, __u8 dir, enum shape shape)
{
	__u64 pid_tgid;

	if (hooks_only)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	if (!is_tracked(pid_tgid >> 32) &&
	    !(discover && dir == MSD_DIR_READ && sys != MSD_SYS_PREAD64 && sys != MSD_SYS_PREADV &&
	      sys != MSD_SYS_PREADV2 && discover_read(ctx->ret, pid_tgid >> 32, (__u32)pid_tgid, sys, shape)))
		return 0;
	return data_exit_tracked(ctx->ret, pid_tgid >> 32, (__u32)pid_tgid, sys, dir, shape);
}

#define DATA_READ(name, sys, shape)                                  \
	SEC("tracepoint/syscalls/sys_exit_" #name)                   \
	int sys_exit_##name(struct trace_event_raw_sys_exit *ctx)    \
	{                                                            \
		return data_exit(ctx, sys, MSD_DIR_READ, shape);      \
	}

#define DATA_WRITE(name, sys, shape)                                                 \
	SEC("tracepoint/syscalls/sys_enter_" #name)                                  \
	int sys_enter_##name(struct trace_event_raw_sys_enter *ctx)                  \
	{                                                                            \
		return write_enter(ctx, shape);                                      \
	}                                                                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                                   \
	int sys_exit_##name(struct trace_event_raw_sys_exit *ctx)                    \
	{                                                                            \
		return data_exit(ctx, sys, MSD_DIR_WRITE, shape);                    \
	}

DATA_READ(read, MSD_SYS_READ, SHAPE_BUF)
DATA_READ(readv, MSD_SYS_READV, SHAPE_IOV)
DATA_READ(pread64, MSD_SYS_PREAD64, SHAPE_BUF)
DATA_READ(preadv, MSD_SYS_PREADV, SHAPE_IOV)
DATA_READ(preadv2, MSD_SYS_PREADV2, SHAPE_IOV)
DATA_READ(recvfrom, MSD_SYS_RECVFROM, SHAPE_BUF)
DATA_READ(recvmsg, MSD_SYS_RECVMSG, SHAPE_MSG)
DATA_WRITE(write, MSD_SYS_WRITE, SHAPE_BUF)
DATA_WRITE(writev, MSD_SYS_WRITEV, SHAPE_IOV)
DATA_WRITE(pwrite64, MSD_SYS_PWRITE64, SHAPE_BUF)
DATA_WRITE(pwritev, MSD_SYS_PWRITEV, SHAPE_IOV)
DATA_WRITE(pwritev2, MSD_SYS_PWRITEV2, SHAPE_IOV)
DATA_WRITE(sendto, MSD_SYS_SENDTO, SHAPE_BUF)
DATA_WRITE(sendmsg, MSD_SYS_SENDMSG, SHAPE_MSG)

/* --- transfers that are not copied --------------------------------------------------- */

/* Bytes moved on a channel file by a syscall whose bytes are not copied (they never pass
 * through the process's memory, or not in a way a tracepoint sees): their range of the stream
 * is reserved and reported as a hole, so the stream resynchronises instead of silently
 * splicing two messages. */
static __always_inline void uncaptured_side(__u32 tgid, __u32 tid, struct msd_proc_state *p, int fd, __u8 dir,
					    __u8 sys, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct file *file = fd_file(task, fd);
	const struct msd_file_id *f;
	struct msd_conn_state *conn;
	struct msd_file_id fid;
	struct capture *c;
	__u64 off, conn_id = 0;
	__u16 family = 0;
	__u32 zero = 0;
	__u8 role;

	if (!file)
		return;
	role = role_of(p, file, dir, fd);
	if (role != MSD_ROLE_NONE) {
		off = __sync_fetch_and_add(&p->stream_off[role & (MSD_ROLE__COUNT - 1)], ret);
		f = &p->chan[role & (MSD_ROLE__COUNT - 1)];
	} else if ((conn = conn_of_transfer(tgid, file, fd, &fid)) && conn_copies(conn, dir, 0, SHAPE_BUF, 0, 0)) {
		/* A connection's bytes sent from a file (sendfile): its stream has a hole. */
		role = MSD_ROLE_CONN;
		off = __sync_fetch_and_add(&conn->stream_off[dir & 1], ret);
		conn_id = conn->conn_id;
		f = &fid;
		family = conn->family;
	} else {
		return;
	}
	if (!(c = bpf_map_lookup_elem(&scratch, &zero)))
		return;
	capture_begin(c, tgid, tid, bpf_ktime_get_ns(), fd, dir, role, sys, f, conn_id, ret, 0);
	c->rec.family = family;
	c->rec.hole_off = off;
	c->rec.hole_len = ret;
	drop_count(MSD_DROP_UNCAPTURED, 1, ret);
	marker_emit(c, off, MSD_DATA_LAST | MSD_DATA_TRUNCATED | MSD_DATA_UNCAPTURED);
}

/* Argument in_arg is an fd read from, out_arg one written to (-1: none). */
static __always_inline int uncaptured_exit(long ret, int in_arg, int out_arg, __u8 sys)
{
	struct msd_proc_state *p;
	struct pt_regs *regs;
	__u64 pid_tgid;
	__u32 tgid;

	if (hooks_only)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	tgid = pid_tgid >> 32;
	if (!is_tracked(tgid) || ret <= 0)
		return 0;
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p)
		return 0;
	regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	if (in_arg >= 0)
		uncaptured_side(tgid, (__u32)pid_tgid, p, syscall_arg(regs, in_arg), MSD_DIR_READ, sys, ret);
	if (out_arg >= 0)
		uncaptured_side(tgid, (__u32)pid_tgid, p, syscall_arg(regs, out_arg), MSD_DIR_WRITE, sys, ret);
	return 0;
}

#define UNCAPTURED(name, sys, in_arg, out_arg)                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                        \
	int sys_exit_##name(struct trace_event_raw_sys_exit *ctx)         \
	{                                                                 \
		return uncaptured_exit(ctx->ret, in_arg, out_arg, sys);   \
	}

UNCAPTURED(splice, MSD_SYS_SPLICE, 0, 2)          /* splice(fd_in, off_in, fd_out, ...) */
UNCAPTURED(tee, MSD_SYS_TEE, -1, 1)               /* tee(fd_in, fd_out, ...): fd_in is not consumed */
UNCAPTURED(vmsplice, MSD_SYS_VMSPLICE, 0, 0)      /* vmsplice(fd, ...): a pipe's either end */
UNCAPTURED(sendfile64, MSD_SYS_SENDFILE, 1, 0)    /* sendfile(out_fd, in_fd, ...) */
UNCAPTURED(copy_file_range, MSD_SYS_COPY_FILE_RANGE, 0, 2) /* copy_file_range(fd_in, off_in, fd_out, ...) */

/* io_uring moves bytes without syscalls per transfer: which files it touches is unknown here.
 * Reported once per process (a record without a role), counted every time. */
static __always_inline int uring_used(void)
{
	struct msd_proc_state *p;
	struct capture *c;
	__u64 pid_tgid;
	__u32 tgid, zero = 0;

	if (hooks_only)
		return 0;
	pid_tgid = bpf_get_current_pid_tgid();
	tgid = pid_tgid >> 32;
	if (!is_tracked(tgid))
		return 0;
	drop_count(MSD_DROP_UNCAPTURED, 1, 0);
	p = bpf_map_lookup_elem(&procs, &tgid);
	if (!p || (p->flags & MSD_PROC_URING_SEEN) || !(c = bpf_map_lookup_elem(&scratch, &zero)))
		return 0;
	p->flags |= MSD_PROC_URING_SEEN; /* two threads racing here report it twice: harmless */
	capture_begin(c, tgid, (__u32)pid_tgid, bpf_ktime_get_ns(), -1, MSD_DIR_WRITE, MSD_ROLE_NONE,
		      MSD_SYS_IO_URING, &p->chan[MSD_ROLE_NONE], 0, 0, 0);
	marker_emit(c, 0, MSD_DATA_LAST | MSD_DATA_TRUNCATED | MSD_DATA_UNCAPTURED);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_io_uring_setup")
int sys_enter_io_uring_setup(struct trace_event_raw_sys_enter *ctx)
{
	return uring_used();
}

SEC("tracepoint/syscalls/sys_enter_io_uring_enter")
int sys_enter_io_uring_enter(struct trace_event_raw_sys_enter *ctx)
{
	return uring_used();
}

/* --- processes ------------------------------------------------------------------------ */

SEC("tp_btf/sched_process_fork")
int BPF_PROG(sched_process_fork, struct task_struct *parent, struct task_struct *child)
{
	struct msd_proc_state *pstate, state;
	struct msd_fork_rec *rec;
	__u32 ptgid, ctgid;

	if (hooks_only)
		return 0;
	ptgid = BPF_CORE_READ(parent, tgid);
	ctgid = BPF_CORE_READ(child, tgid);
	/* A new thread shares its parent's tgid and is already covered. */
	if (ctgid == ptgid || !is_tracked(ptgid))
		return 0;
	pstate = bpf_map_lookup_elem(&procs, &ptgid);
	if (!pstate)
		return 0;
	/* The child's channel is its parent's; its streams are its own. */
	__builtin_memcpy(&state.chan, &pstate->chan, sizeof(state.chan));
	__builtin_memset(&state.stream_off, 0, sizeof(state.stream_off));
	state.start_ns = BPF_CORE_READ(child, start_boottime);
	state.flags = 0;
	state.pad = 0;
	if (bpf_map_update_elem(&procs, &ctgid, &state, BPF_ANY)) {
		drop_count(MSD_DROP_PROC_LIMIT, 1, 0);
		return 0;
	}
	tgid_bit_set(tracked_bits, ctgid);

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (!rec) {
		drop_count(MSD_DROP_EVENT, 1, 0);
		return 0;
	}
	rec_hdr_fill(&rec->hdr, MSD_REC_FORK, sizeof(*rec), ctgid, BPF_CORE_READ(child, pid));
	rec->parent_tgid = ptgid;
	rec->pad = 0;
	rec->start_ns = state.start_ns;
	BPF_CORE_READ_STR_INTO(&rec->comm, child, comm);
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(sched_process_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	struct msd_exec_rec *rec;
	__u32 tgid;

	if (hooks_only)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	if (discover)
		verdict_free(task); /* the exec'ing thread leads its process now */
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
	rec->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
	if (bpf_probe_read_kernel_str(rec->filename, sizeof(rec->filename), BPF_CORE_READ(bprm, filename)) < 0)
		rec->filename[0] = '\0';
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

/* Uses only the task argument: the group_dead argument exists on recent kernels only, and
 * signal->live, which do_exit decrements before this tracepoint, says the same everywhere.
 * The fd table is still there (exit_files comes later). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit, struct task_struct *task)
{
	struct msd_proc_state *p;
	struct msd_exit_rec *rec;
	struct file *stdin;
	__u32 tgid;

	if (hooks_only)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	if ((!discover && !is_tracked(tgid)) || BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (discover)
		verdict_free(task->group_leader);
	if (!is_tracked(tgid))
		return 0;

	p = bpf_map_lookup_elem(&procs, &tgid);
	rec = bpf_ringbuf_reserve(&events, sizeof(*rec), 0);
	if (rec) {
		rec_hdr_fill(&rec->hdr, MSD_REC_EXIT, sizeof(*rec), tgid, BPF_CORE_READ(task, pid));
		rec->exit_code = BPF_CORE_READ(task, exit_code);
		rec->ppid = BPF_CORE_READ(task, real_parent, tgid);
		rec->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
		BPF_CORE_READ_STR_INTO(&rec->comm, task, comm);
		rec->flags = 0;
		rec->pad = 0;
		stdin = p ? fd_file(task, 0) : NULL;
		if (stdin && role_of(p, stdin, MSD_DIR_READ, 0) == MSD_ROLE_IN)
			rec->flags |= MSD_EXIT_ON_CHANNEL;
		bpf_ringbuf_submit(rec, 0);
	} else {
		drop_count(MSD_DROP_EVENT, 1, 0);
	}
	tgid_bit_clear(tracked_bits, tgid);
	bpf_map_delete_elem(&procs, &tgid);
	return 0;
}

/* Kernels before 6.8 pass only a pid here: user space does not load this program there. */
SEC("tp_btf/mark_victim")
int BPF_PROG(mark_victim, struct task_struct *task)
{
	struct msd_oom_rec *rec;
	struct mm_struct *mm;
	__u32 tgid;

	if (hooks_only)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
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

/* The blocked-write scan, run by user space on its timer (bpf_iter): every write to a
 * tracked process's out-file that has entered the kernel and not returned. */
SEC("iter/task")
int inflight_writes(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct msd_inflight out = {};
	struct msd_proc_state *p;
	struct write_stash *st;
	struct file *file;
	__u32 tgid;

	if (!task)
		return 0;
	tgid = task->tgid;
	if (!is_tracked(tgid))
		return 0;
	st = bpf_task_storage_get(&stash, task, 0, 0);
	if (!st || !st->busy || !(p = bpf_map_lookup_elem(&procs, &tgid)))
		return 0;
	file = fd_file(task, st->fd);
	if (!file || role_of(p, file, MSD_DIR_WRITE, st->fd) != MSD_ROLE_OUT)
		return 0;
	out.tgid = tgid;
	out.tid = task->pid;
	out.fd = st->fd;
	out.enter_ns = st->enter_ns;
	out.count = st->count;
	bpf_seq_write(ctx->meta->seq, &out, sizeof(out));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";

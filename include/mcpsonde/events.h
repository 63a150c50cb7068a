/* events.h -- the record ABI between bpf/ and src/, and the capture file's record format.
 *
 * This header is the only thing the kernel side and user space share. It holds plain
 * fixed-width types only, every record starts with struct msd_rec_hdr, and a payload, when
 * there is one, comes last. Records with kind >= MSD_REC_USER are synthesised by user space
 * (process identity, loss counters) so that a capture file replays exactly what the live
 * pipeline saw. Any change to a layout here bumps MSD_ABI_VERSION. */
#ifndef MCPSONDE_EVENTS_H
#define MCPSONDE_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define MSD_ABI_VERSION 3

#define MSD_CHUNK_MAX  (32 * 1024) /* payload bytes in one data record; a power of two */
#define MSD_CHUNKS_MAX 64          /* data records per syscall: 2 MiB captured whole */
#define MSD_IOV_MAX    16          /* iovecs walked per readv/writev; the rest is truncated */
#define MSD_COMM_LEN   16
#define MSD_PATH_LEN   256

enum msd_rec_kind {
	MSD_REC_DATA = 1, /* struct msd_data_rec: bytes read or written by a tracked process */
	MSD_REC_FORK = 2, /* struct msd_fork_rec: a tracked process forked a new process */
	MSD_REC_EXEC = 3, /* struct msd_exec_rec: a tracked process called execve */
	MSD_REC_EXIT = 4, /* struct msd_exit_rec: the last thread of a tracked process exited */
	MSD_REC_OOM = 5,  /* struct msd_oom_rec: the OOM killer chose a tracked process */
	MSD_REC_USER = 64,
	MSD_REC_PROC = 64, /* struct msd_proc_rec: identity read from /proc by user space */
	MSD_REC_LOSS = 65, /* struct msd_loss_rec: a kernel drop counter advanced */
};

enum msd_dir {
	MSD_DIR_READ = 0,  /* the process read: bytes flowing into it */
	MSD_DIR_WRITE = 1, /* the process wrote: bytes flowing out of it */
};

enum msd_fd_kind {
	MSD_FD_UNKNOWN = 0,
	MSD_FD_PIPE = 1,
	MSD_FD_SOCKET = 2,
	MSD_FD_TTY = 3,
	MSD_FD_OTHER = 4, /* regular file, device, eventfd...: never captured */
};

enum msd_data_flags {
	MSD_DATA_TRUNCATED = 1 << 0, /* bytes of this syscall past this record were not captured */
	MSD_DATA_LAST = 1 << 1,      /* last record emitted for this syscall */
	MSD_DATA_SHORT = 1 << 2,     /* a write moved less than asked, or failed with EAGAIN
				      * (syscall_len 0): the reader is not keeping up */
};

/* Why the kernel side could not deliver something. Counted per CPU in the "drops" map
 * (struct msd_drop per reason) and turned into MSD_REC_LOSS records by user space. */
enum msd_drop_reason {
	MSD_DROP_RINGBUF = 0,   /* bpf_ringbuf_output failed: ring buffer full */
	MSD_DROP_COPY = 1,      /* bpf_probe_read_user failed (page not resident...) */
	MSD_DROP_TRUNCATED = 2, /* bytes past MSD_CHUNKS_MAX or MSD_IOV_MAX */
	MSD_DROP_NO_ENTRY = 3,  /* a syscall exit without its stashed entry that could not be rebuilt */
	MSD_DROP_EVENT = 4,     /* a fork/exec/exit/oom record lost to a full ring buffer */
	MSD_DROP__MAX = 5,
};

struct msd_drop {
	__u64 records;
	__u64 bytes;
};

struct msd_rec_hdr {
	__u16 kind;  /* enum msd_rec_kind */
	__u16 abi;   /* MSD_ABI_VERSION */
	__u32 size;  /* whole record, header and payload included */
	__u64 ts_ns; /* CLOCK_MONOTONIC: bpf_ktime_get_ns() */
	__u32 tgid;
	__u32 tid;
};

struct msd_data_rec {
	struct msd_rec_hdr hdr;
	__s32 fd;
	__u8 dir;     /* enum msd_dir */
	__u8 fd_kind; /* enum msd_fd_kind */
	__u16 flags;  /* enum msd_data_flags */
	__u64 syscall_len; /* the syscall's return value: bytes actually transferred */
	__u64 stream_off;  /* offset of data[0] in the (tgid, fd, dir) stream; resets after close */
	__u32 cap_len;     /* bytes in data[] */
	__u32 chunk;       /* index of this record within its syscall */
	__u64 requested;   /* bytes the syscall asked for (0 when unknown): a write with
			    * syscall_len < requested is short, the reader is behind */
	__u8 data[];
};

struct msd_fork_rec {
	struct msd_rec_hdr hdr; /* tgid: the child */
	__u32 parent_tgid;
	__u32 pad;
	char comm[MSD_COMM_LEN];
};

struct msd_exec_rec {
	struct msd_rec_hdr hdr;
	__u32 ppid;
	__u32 pad;
	char comm[MSD_COMM_LEN];
	char filename[MSD_PATH_LEN];
};

struct msd_exit_rec {
	struct msd_rec_hdr hdr;
	__u32 exit_code; /* raw: status = code >> 8 & 0xff, signal = code & 0x7f, core = code & 0x80 */
	__u32 ppid;
	__u64 start_ns; /* task start time, boot-based: with tgid, identifies the process */
	char comm[MSD_COMM_LEN];
};

struct msd_oom_rec {
	struct msd_rec_hdr hdr; /* tgid: the victim */
	__u64 total_vm_kb;
	__u64 anon_rss_kb;
};

enum msd_proc_flags {
	/* Its stdin is the channel of the process the user attached to (inherited across the
	 * npx -> sh -> node chain): an MCP server. A helper the server spawns with pipes of its
	 * own is not, and its stdio is not MCP. */
	MSD_PROC_ON_CHANNEL = 1 << 0,
};

struct msd_proc_rec {
	struct msd_rec_hdr hdr;
	__u64 start_ticks; /* field 22 of /proc/PID/stat */
	__u32 ppid;
	__u32 cmdline_len; /* bytes in cmdline[], arguments separated by NUL */
	__u32 flags;       /* enum msd_proc_flags */
	__u32 pad;
	char comm[MSD_COMM_LEN];
	char exe[MSD_PATH_LEN];
	char cmdline[];
};

struct msd_loss_rec {
	struct msd_rec_hdr hdr;
	__u32 reason; /* enum msd_drop_reason */
	__u32 pad;
	__u64 records; /* increase since the previous loss record for this reason */
	__u64 bytes;
};

/* Map layouts user space reads besides the records (never written to capture files). */

/* Key of the "stream_offsets" map: the next stream offset of one (tgid, fd, direction). */
struct msd_stream_key {
	__u32 tgid;
	__s32 fd;
	__u32 dir; /* enum msd_dir */
};

/* Value of the "inflight" map, keyed by pid_tgid (tgid << 32 | tid): a read or write on a
 * captured fd that has entered and not yet returned. */
struct msd_inflight {
	__u64 buf;      /* user buffer, or the iovec array for readv/writev */
	__u64 count;    /* bytes requested (readv/writev: over the first MSD_IOV_MAX iovecs) */
	__u64 enter_ns; /* bpf_ktime_get_ns() at syscall entry */
	__s32 fd;
	__u32 iovcnt;   /* readv/writev only */
	__u8 dir;       /* enum msd_dir */
	__u8 is_vec;
	__u8 fd_kind;   /* enum msd_fd_kind */
	__u8 pad[5];
};

#endif

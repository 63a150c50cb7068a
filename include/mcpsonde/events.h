/* events.h -- the record ABI between bpf/ and src/, and the capture file's record format.
 *
 * This header is the only thing the kernel side and user space share. It holds plain
 * fixed-width types only, every record starts with struct msd_rec_hdr, and a payload, when
 * there is one, comes last. Records with kind >= MSD_REC_USER are synthesised by user space
 * (process identity, loss counters) so that a capture file replays exactly what the live
 * pipeline saw. Any change to a layout here bumps MSD_ABI_VERSION.
 *
 * Channels. Each tracked process has a channel: the files (by identity: device and inode)
 * that were its fd 0, 1 and 2 when tracking began. User space sets it for the processes it
 * is given; the kernel copies it to every child at fork, so npm exec -> sh -> node share the
 * channel of the process the user named. The kernel decides each syscall's role from the
 * file it touched, never from the fd number: a read of the in-file is MSD_ROLE_IN, a write to
 * the out-file MSD_ROLE_OUT, a write to the err-file MSD_ROLE_ERR; anything else is
 * MSD_ROLE_NONE, counted by bytes and never copied. A dup of fd 1 is the same channel, and a
 * helper that the server spawns with pipes of its own moves no channel bytes at all.
 *
 * Connections. A socket of a tracked process that is not its channel and is a TCP (IPv4,
 * IPv6) or AF_UNIX stream connection has the role MSD_ROLE_CONN: one byte stream per
 * direction, numbered like a channel's, identified by (tgid, socket inode, conn_id). conn_id
 * is given by the kernel when it first sees the connection (accept, connect, or its first
 * transfer), so a closed connection's inode or fd reused later is another connection. The
 * kernel copies a connection until it is ignored: at once when its first bytes cannot be
 * HTTP/1.x, or when user space says so (the "conns" map) after decoding it. Accept, connect,
 * shutdown and close of a connection are MSD_REC_CONN records.
 *
 * Discovery (watch --all). Loaded with discovery on, the kernel also looks at what untracked
 * processes read on their stdin, and tracks by itself one whose stdin carries JSON-RPC: it
 * sets its channel (its fd 0, 1 and 2 then), emits MSD_REC_DISCOVER, and captures the very
 * read that carried the message. What it concluded about a process's stdin is kept in the
 * "verdicts" task storage (struct msd_verdict), where user space writes its own verdicts too
 * (through a pidfd): a process with a verdict pays one lookup per read of its stdin. */
#ifndef MCPSONDE_EVENTS_H
#define MCPSONDE_EVENTS_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define MSD_ABI_VERSION 5

#define MSD_CHUNK_MAX  (32 * 1024) /* payload bytes in one data record; a power of two */
#define MSD_CHUNKS_MAX 64          /* 2 MiB of one syscall captured whole */
#define MSD_CAPTURE_MAX ((__u64)MSD_CHUNKS_MAX * MSD_CHUNK_MAX)
#define MSD_TAIL_MAX   (64 * 1024) /* a longer syscall keeps its first MSD_CAPTURE_MAX - MSD_TAIL_MAX
				    * bytes and its last MSD_TAIL_MAX: the hole between is cut */
#define MSD_IOV_MAX    1024        /* iovecs walked per vectored syscall: UIO_MAXIOV, all of them */
#define MSD_COMM_LEN   16
#define MSD_PATH_LEN   256
#define MSD_UNIX_PATH_LEN 108      /* sun_path */

enum msd_rec_kind {
	MSD_REC_DATA = 1, /* struct msd_data_rec: bytes a tracked process moved on its channel */
	MSD_REC_FORK = 2, /* struct msd_fork_rec: a tracked process forked a new process */
	MSD_REC_EXEC = 3, /* struct msd_exec_rec: a tracked process called execve */
	MSD_REC_EXIT = 4, /* struct msd_exit_rec: the last thread of a tracked process exited */
	MSD_REC_OOM = 5,  /* struct msd_oom_rec: the OOM killer chose a tracked process */
	MSD_REC_CONN = 6, /* struct msd_conn_rec: a connection accepted, connected, shut down, closed */
	MSD_REC_DISCOVER = 7, /* struct msd_discover_rec: the kernel found a process reading JSON-RPC
			       * on its stdin and tracks it from this record on */
	MSD_REC_USER = 64,
	MSD_REC_PROC = 64,  /* struct msd_proc_rec: identity read from /proc by user space */
	MSD_REC_LOSS = 65,  /* struct msd_loss_rec: a kernel drop counter advanced */
};

enum msd_dir {
	MSD_DIR_READ = 0,  /* the process read: bytes flowing into it */
	MSD_DIR_WRITE = 1, /* the process wrote: bytes flowing out of it */
};

/* What a syscall's bytes are to the tracked process, decided in the kernel from the file. */
enum msd_role {
	MSD_ROLE_NONE = 0, /* not its channel (a database socket, a file, a helper's pipe) */
	MSD_ROLE_IN = 1,   /* read from its in-file: the client's messages */
	MSD_ROLE_OUT = 2,  /* written to its out-file: its messages to the client */
	MSD_ROLE_ERR = 3,  /* written to its err-file: its log, whatever kind of file that is. When
			    * the out- and err-file are one file (a tty, 2>&1), fd 2 writes are ERR */
	MSD_ROLE__COUNT = 4, /* the roles of a channel: arrays indexed by role have this many */
	MSD_ROLE_CONN = 4,   /* a connection socket that is not the channel (see above); its
			      * stream is (tgid, file, conn_id, dir) */
};

/* Which syscall moved the bytes. */
enum msd_syscall {
	MSD_SYS_READ = 0,
	MSD_SYS_WRITE,
	MSD_SYS_READV,
	MSD_SYS_WRITEV,
	MSD_SYS_PREAD64,
	MSD_SYS_PWRITE64,
	MSD_SYS_PREADV,
	MSD_SYS_PWRITEV,
	MSD_SYS_PREADV2,
	MSD_SYS_PWRITEV2,
	MSD_SYS_RECVFROM,
	MSD_SYS_SENDTO,
	MSD_SYS_RECVMSG,
	MSD_SYS_SENDMSG,
	/* Transfers that are detected on a channel file but whose bytes are not copied
	 * (MSD_DATA_UNCAPTURED): the stream shows them as a gap. */
	MSD_SYS_SPLICE,
	MSD_SYS_TEE,
	MSD_SYS_VMSPLICE,
	MSD_SYS_SENDFILE,
	MSD_SYS_COPY_FILE_RANGE,
	MSD_SYS_IO_URING, /* io_uring_setup/io_uring_enter by a tracked process: unknown files */
	MSD_SYS__COUNT,
};

enum msd_fd_kind {
	MSD_FD_UNKNOWN = 0,
	MSD_FD_PIPE = 1,
	MSD_FD_SOCKET = 2,
	MSD_FD_TTY = 3,
	MSD_FD_OTHER = 4, /* regular file, device, eventfd...: captured only as the err-file */
};

enum msd_data_flags {
	MSD_DATA_TRUNCATED = 1 << 0, /* the syscall has a hole: [hole_off, hole_off + hole_len) was
				      * not copied. Every record of the syscall says so */
	MSD_DATA_LAST = 1 << 1,      /* last record emitted for this syscall */
	MSD_DATA_SHORT = 1 << 2,     /* a write moved less than asked, or failed with EAGAIN
				      * (syscall_len 0): the reader is not keeping up */
	MSD_DATA_CUT = 1 << 3,       /* with TRUNCATED: the hole is deliberate, between a copied
				      * head and a copied tail; framing may go on across it. Without
				      * it the hole is a real loss (resynchronise after it) */
	MSD_DATA_UNCAPTURED = 1 << 4, /* the bytes moved by a syscall that is not copied (splice,
				       * sendfile, io_uring...): the whole syscall is the hole */
};

/* Why the kernel side could not deliver something. Counted per CPU in the "drops" map
 * (struct msd_drop per reason) and turned into MSD_REC_LOSS records by user space. */
enum msd_drop_reason {
	MSD_DROP_RINGBUF = 0,   /* ring buffer reserve failed: ring buffer full */
	MSD_DROP_COPY = 1,      /* a read of user memory failed (page not resident...) */
	MSD_DROP_TRUNCATED = 2, /* bytes cut out of a syscall longer than MSD_CAPTURE_MAX */
	MSD_DROP_NO_ENTRY = 3,  /* a syscall whose fd was closed before its exit could look at it */
	MSD_DROP_EVENT = 4,     /* a fork/exec/exit/oom record lost to a full ring buffer */
	MSD_DROP_PROC_LIMIT = 5, /* a fork of a tracked process not followed: process table full */
	MSD_DROP_UNCAPTURED = 6, /* bytes moved on a channel file by splice, sendfile, io_uring... */
	MSD_DROP_BACKLOG = 7,    /* user space: records left in the ring buffer and never analysed,
				  * because mcpsonde stopped before it got to them */
	MSD_DROP_CONN = 8,       /* a connection record lost to a full ring buffer */
	MSD_DROP__MAX = 9,
};

struct msd_drop {
	__u64 records;
	__u64 bytes;
};

/* The kernel's counters that are not losses, per CPU in the "counters" map; user space
 * prints them when it stops. */
enum msd_counter {
	MSD_CNT_NONE_CALLS = 0, /* syscalls of tracked processes on files that are not their channel */
	MSD_CNT_NONE_BYTES,     /* and the bytes they moved: counted, never copied */
	MSD_CNT_RING_RESERVED,  /* ring buffer bytes reserved for data records */
	MSD_CNT_RING_USED,      /* of which record headers and payload: the rest is size-class waste */
	MSD_CNT_DATA_RECORDS,   /* data records submitted */
	MSD_CNT_CONN_SEEN,      /* connections the kernel started following */
	MSD_CNT_CONN_SNIFFED,   /* of which ignored at once: their first bytes are not HTTP/1.x */
	MSD_CNT_CONN_IGNORED_CALLS, /* transfers on ignored connections: counted, never copied */
	MSD_CNT_CONN_IGNORED_BYTES,
	MSD_CNT_PEEKS,          /* MSG_PEEK receives: the bytes come again, by the read that takes them */
	/* Discovery (zero unless loaded with it): */
	MSD_CNT_SNIFF_READS,    /* reads of an untracked process's stdin looked at */
	MSD_CNT_SNIFF_BYTES,    /* and the bytes examined in them */
	MSD_CNT_DISCOVERED,     /* processes found reading JSON-RPC, and tracked */
	MSD_CNT_NOT_JSONRPC,    /* stdins found to carry something else: no longer looked at */
	MSD_CNT_NOT_STDIO,      /* stdins that are no pipe, socket or tty (a file): never looked at */
	MSD_CNT_VERDICTS_MADE,  /* verdict entries the kernel created (source_live_counters adds user space's) */
	MSD_CNT_VERDICTS_FREED, /* and deleted at exec or exit: made - freed are alive */
	MSD_CNT_VERDICT_FAILED, /* a verdict entry could not be created: the read was not looked at */
	MSD_CNT_HTTP_SNIFFS,    /* HTTP requests (POST, GET) an untracked process read, looked at */
	MSD_CNT_HTTP_DISCOVERED, /* of MSD_CNT_DISCOVERED: found by an HTTP request showing MCP */
	MSD_CNT_NOT_HTTP,       /* processes whose socket reads carried no HTTP request: let go */
	MSD_CNT_HTTP_NOT_MCP,   /* processes serving HTTP without a sign of MCP: let go */
	MSD_CNT__MAX,
};

struct msd_rec_hdr {
	__u16 kind;  /* enum msd_rec_kind */
	__u16 abi;   /* MSD_ABI_VERSION */
	__u32 size;  /* whole record, header and payload included (the ring buffer slot may be
		      * larger: size classes) */
	__u64 ts_ns; /* CLOCK_MONOTONIC: bpf_ktime_get_ns(). Data: a write's syscall entry, a
		      * read's exit, so that read -> write never exceeds the peer's round trip */
	__u32 tgid;
	__u32 tid;
};

/* One record per piece of a syscall on a channel file: up to MSD_CHUNK_MAX bytes, never
 * spanning two iovecs. A stream is (tgid, file, role): its offsets are reserved per syscall
 * before anything is emitted, so every lost record is a gap at a known place. */
struct msd_data_rec {
	struct msd_rec_hdr hdr;
	__s32 fd;          /* the fd the syscall used (informational: the role decides) */
	__u8 dir;          /* enum msd_dir */
	__u8 fd_kind;      /* enum msd_fd_kind of the channel file */
	__u16 flags;       /* enum msd_data_flags */
	__u64 syscall_len; /* the syscall's return value: bytes actually transferred */
	__u64 stream_off;  /* offset of data[0] in the (tgid, file, role) stream */
	__u32 cap_len;     /* bytes in data[] */
	__u32 chunk;       /* index of this record within its syscall */
	__u64 requested;   /* bytes the syscall asked for (0 when unknown): a write with
			    * syscall_len < requested is short, the reader is behind */
	__u8 role;         /* enum msd_role */
	__u8 syscall;      /* enum msd_syscall */
	__u16 family;      /* MSD_ROLE_CONN: AF_INET, AF_INET6 or AF_UNIX (0 otherwise) */
	__u32 file_dev;    /* the channel file or connection socket: the kernel's dev_t of its
			    * filesystem (MAJOR << 20 | MINOR) */
	__u64 file_ino;    /* and its inode number */
	__u64 hole_off;    /* TRUNCATED: stream offset of the first byte not copied */
	__u64 hole_len;    /* TRUNCATED: how many */
	__u64 conn_id;     /* MSD_ROLE_CONN: the connection (0 otherwise) */
	__u8 data[];
};

struct msd_fork_rec {
	struct msd_rec_hdr hdr; /* tgid: the child */
	__u32 parent_tgid;
	__u32 pad;
	__u64 start_ns; /* the child's start time, boot-based: with tgid, its identity */
	char comm[MSD_COMM_LEN];
};

struct msd_exec_rec {
	struct msd_rec_hdr hdr;
	__u32 ppid;
	__u32 pad;
	__u64 start_ns; /* process start time (exec keeps it): with tgid, its identity */
	char comm[MSD_COMM_LEN];
	char filename[MSD_PATH_LEN];
};

enum msd_exit_flags {
	/* Its fd 0 was still its channel's in-file when it exited: a server or a wrapper of one,
	 * not a helper the server spawned with stdio of its own. */
	MSD_EXIT_ON_CHANNEL = 1 << 0,
};

struct msd_exit_rec {
	struct msd_rec_hdr hdr;
	__u32 exit_code; /* raw: status = code >> 8 & 0xff, signal = code & 0x7f, core = code & 0x80 */
	__u32 ppid;
	__u64 start_ns; /* task start time, boot-based: with tgid, identifies the process */
	char comm[MSD_COMM_LEN];
	__u32 flags;    /* enum msd_exit_flags */
	__u32 pad;
};

struct msd_oom_rec {
	struct msd_rec_hdr hdr; /* tgid: the victim */
	__u64 total_vm_kb;
	__u64 anon_rss_kb;
};

enum msd_conn_event {
	MSD_CONN_ACCEPT = 1,   /* accept/accept4 returned it: seen from its first byte */
	MSD_CONN_CONNECT = 2,  /* connect returned 0 or EINPROGRESS: seen from its first byte */
	MSD_CONN_SHUTDOWN = 3, /* shutdown(how) */
	MSD_CONN_CLOSE = 4,    /* the process closed an fd of it: its view of it ends */
	MSD_CONN_SEEN = 5,     /* its first transfer since tracking began: it was open before,
				* seen mid-stream */
};

/* A connection's lifecycle. Addresses are in network order, an IPv4 one in the first 4 bytes
 * of its array; ports in host order. AF_UNIX has the path either end is bound to ("" when
 * none, or abstract: a leading NUL). close and shutdown carry only the identity. Every
 * connection starts with an ACCEPT, CONNECT or SEEN record, before its first data record. */
struct msd_conn_rec {
	struct msd_rec_hdr hdr;
	__u64 conn_id;
	__u64 file_ino;
	__u32 file_dev;
	__s32 fd;
	__u8 event;      /* enum msd_conn_event */
	__u8 family;     /* AF_INET, AF_INET6, AF_UNIX */
	__u8 how;        /* shutdown: SHUT_RD, SHUT_WR, SHUT_RDWR */
	__u8 pad;
	__s32 ret;       /* connect: 0 or -EINPROGRESS */
	__u16 local_port;
	__u16 peer_port;
	__u32 pad2;
	__u8 local_addr[16];
	__u8 peer_addr[16];
	char path[MSD_UNIX_PATH_LEN];
};

struct msd_proc_rec {
	struct msd_rec_hdr hdr;
	__u64 start_ticks; /* field 22 of /proc/PID/stat */
	__u32 ppid;
	__u32 cmdline_len; /* bytes in cmdline[], arguments separated by NUL */
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

/* Map layouts user space reads or writes besides the records (never in capture files). */

/* One file of a channel, by identity. dev == 0 && ino == 0: no file (the fd was not open). */
struct msd_file_id {
	__u64 ino;
	__u32 dev;  /* the kernel's dev_t: MAJOR << 20 | MINOR (stat's st_dev re-encoded) */
	__u8 kind;  /* enum msd_fd_kind: IN and OUT are copied only from a pipe, socket or tty */
	__u8 pad[3];
};

/* A process the kernel tracks from now on because it read JSON-RPC on its stdin. Emitted
 * before the data records of the read that carried the message. */
#define MSD_DISCOVER_CMDLINE 256
struct msd_discover_rec {
	struct msd_rec_hdr hdr;  /* tgid, tid: the thread that read */
	__u32 ppid;
	__u32 line_off;          /* the JSON-RPC line starts this far into the read's bytes: what
				  * comes before ends a line that began before the capture */
	__u64 start_ns;          /* start time, boot-based: with tgid, its identity */
	struct msd_file_id chan[MSD_ROLE__COUNT]; /* its channel: fd 0, 1, 2 then, by role */
	__u64 in_peer_ino;       /* stdin an AF_UNIX socket: its peer's inode (a socketpair's other
				  * end), 0 otherwise or when it has none */
	__u64 out_peer_ino;      /* the same for stdout */
	char comm[MSD_COMM_LEN];
	__u32 cmdline_len;       /* bytes in cmdline[], arguments separated by NUL; cut at
				  * MSD_DISCOVER_CMDLINE */
	__u32 flags;             /* enum msd_discover_flags */
	char cmdline[MSD_DISCOVER_CMDLINE];
};

enum msd_discover_flags {
	/* Found by an HTTP request read from a stream socket, not by its stdin: its channel
	 * holds only its stderr (chan[IN] and chan[OUT] are empty), and the read that found it
	 * is on a connection, seen from the request's first byte. */
	MSD_DISCOVER_HTTP = 1 << 0,
};

/* Value of the "procs" map, keyed by tgid: one per tracked process. Written by user space
 * when it tracks a process, by the kernel at fork (the child gets its parent's channel and
 * streams of its own); deleted by the kernel at exit. */
struct msd_proc_state {
	struct msd_file_id chan[MSD_ROLE__COUNT]; /* indexed by role: IN, OUT, ERR ([NONE] unused) */
	__u64 stream_off[MSD_ROLE__COUNT];        /* next offset of each role's stream */
	__u64 start_ns; /* start time, boot-based: exact when set by the kernel at fork, to the
			 * clock tick when user space tracked the process (from /proc) */
	__u32 flags;    /* enum msd_proc_state_flags */
	__u32 pad;
};

enum msd_proc_state_flags {
	MSD_PROC_URING_SEEN = 1 << 0, /* io_uring use already reported once */
};

/* What the kernel does with a connection's bytes: user space moves it to IGNORED when it has
 * decoded enough of it (not HTTP, HTTP without JSON-RPC, an upgrade, a peer it cannot follow). */
enum msd_conn_verdict {
	MSD_CONN_COPY = 0,    /* copy (not decided yet, or MCP) */
	MSD_CONN_IGNORED = 1, /* count its bytes, copy nothing */
};

enum msd_conn_flags {
	MSD_CONN_FROM_START = 1 << 0, /* accept/connect seen: offsets count from its first byte */
	MSD_CONN_SNIFFED = 1 << 1,    /* its first bytes were looked at (and looked like HTTP) */
};

/* Key of the "conns" map: a connection of a process, by its socket's identity. */
struct msd_conn_key {
	__u64 ino;
	__u32 dev;
	__u32 tgid;
};

/* Value of the "conns" map (LRU): kernel-owned but the verdict, which user space may set
 * to IGNORED (a read-modify-write: a race only loses offsets of a connection it stops). */
struct msd_conn_state {
	__u64 stream_off[2]; /* next offset, by enum msd_dir */
	__u64 conn_id;
	__u8 verdict;        /* enum msd_conn_verdict */
	__u8 flags;          /* enum msd_conn_flags */
	__u16 family;
	__u8 pad[4];
};

/* What is known of an untracked process's stdin (discovery): the value of the "verdicts"
 * task storage, one per process (its thread group leader), freed with it and reset at exec.
 * The kernel sniffs the first bytes of each read while the verdict is EXAMINING. User space
 * writes EXCLUDED, NOT_MCP and RELAY through a pidfd, which names the process exactly. */
enum msd_verdict_kind {
	MSD_VERDICT_EXAMINING = 0, /* its stdin's reads are looked at */
	MSD_VERDICT_TRACKED,       /* found reading JSON-RPC: tracked */
	MSD_VERDICT_NOT_JSONRPC,   /* its stdin carries something else */
	MSD_VERDICT_NOT_STDIO,     /* its stdin is a file or a device, not a pipe, socket or tty */
	MSD_VERDICT_NOT_MCP,       /* user space: JSON-RPC, but no MCP method in its first messages */
	MSD_VERDICT_RELAY,         /* user space: it forwards to a server whose stdin it feeds */
	MSD_VERDICT_EXCLUDED,      /* user space: --include / --exclude said no */
	MSD_VERDICT__COUNT,
};

enum msd_verdict_flags {
	MSD_VERDICT_AT_LINE_START = 1 << 0, /* the last read looked at ended with a newline */
};

/* Its sockets, judged apart from its stdin (a daemon's stdin is often /dev/null): while
 * EXAMINING, a read from a TCP or AF_UNIX stream socket that starts an HTTP request (POST,
 * GET) is looked at for a sign of MCP. Kernel-owned; a user space verdict (ino == 0,
 * verdict != EXAMINING) ends both looks. */
enum msd_http_verdict {
	MSD_HTTP_EXAMINING = 0,
	MSD_HTTP_TRACKED,  /* found by a request showing MCP */
	MSD_HTTP_NOT_HTTP, /* MSD_HTTP_SOCK_READS socket reads and never an HTTP request */
	MSD_HTTP_NOT_MCP,  /* HTTP requests without a sign of MCP: MSD_HTTP_MISSES spent */
};

#define MSD_HTTP_SOCK_READS 256 /* socket reads without any request before a process is let go */
#define MSD_HTTP_MISSES 64      /* a POST without MCP spends 4, any other request 1 */

struct msd_verdict {
	__u64 ino;     /* the stdin the verdict is about; another file resets it. 0 with a user
			* space verdict: whatever its stdin */
	__u32 dev;
	__u8 verdict;  /* enum msd_verdict_kind */
	__u8 misses;   /* lines seen whole at their start that were not JSON-RPC */
	__u8 reads;    /* reads looked at without finding JSON-RPC */
	__u8 flags;    /* enum msd_verdict_flags */
	__u16 sock_reads;  /* socket reads that started no HTTP request, before the first one */
	__u8 http;         /* enum msd_http_verdict */
	__u8 http_misses;  /* spent of MSD_HTTP_MISSES */
	__u8 http_seen;    /* an HTTP request was read: sock_reads no longer counts */
	__u8 pad[3];
};

/* What the blocked-write scan (an iterator over tasks) yields: a write to a tracked
 * process's out-file that has entered the kernel and not returned. */
struct msd_inflight {
	__u32 tgid;
	__u32 tid;
	__s32 fd;
	__u32 pad;
	__u64 enter_ns; /* bpf_ktime_get_ns() at syscall entry */
	__u64 count;    /* bytes requested (0: unknown, a vectored write) */
};

#endif

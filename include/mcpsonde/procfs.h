/* procfs.h -- what /proc says about an observed process: identity, descendants, state.
 *
 * Used at attach (the channel of a given process, a wrapper's existing children, names of
 * servers attached mid-session), by the targets stage (who holds the other end of a server's
 * stdin, selectors), by stall detection (run state, CPU, threads, wchan) and by the flight
 * recorder (RSS and CPU samples). Every function tolerates the process vanishing. */
#ifndef MCPSONDE_PROCFS_H
#define MCPSONDE_PROCFS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "events.h"

struct proc_sample {
	char state;           /* R S D T t Z X I; 0 when the process is gone */
	uint64_t cpu_ns;      /* utime + stime of the whole process */
	uint64_t rss_bytes;
	unsigned threads;
	char wchan[64];       /* "" when unreadable or running */
	uint64_t start_ticks;
	pid_t ppid;
};

bool proc_exists(pid_t pid);
/* Reads /proc/PID/stat; returns 0, or -1 when the process is gone. */
int proc_sample(pid_t pid, struct proc_sample *out);
/* /proc/PID/stat and the process's name (comm, MSD_COMM_LEN bytes); -1 when gone. */
int proc_sample_named(pid_t pid, struct proc_sample *out, char *comm);
/* Builds an MSD_REC_PROC record for pid (malloc'd, free() it); NULL when gone, or when
 * start_ticks is not 0 and pid is another process now. ts_ns is stamped into the header
 * (CLOCK_MONOTONIC). */
struct msd_proc_rec *proc_identity(pid_t pid, uint64_t start_ticks, uint64_t ts_ns);
/* The path of pid's executable into buf ("" when unreadable). */
void proc_exe(pid_t pid, char *buf, size_t len);
/* Which end of a pipe an fd was opened for. */
enum proc_fd_access { PROC_FD_ANY, PROC_FD_READ, PROC_FD_WRITE };
/* Whether pid has an fd on the file (dev, ino) opened for access (a pipe's write end is
 * PROC_FD_WRITE). Anonymous pipes and sockets are matched by inode alone: the kernel numbers
 * them from one counter. 1 yes, 0 no, -1 when pid is gone. */
int proc_holds(pid_t pid, uint32_t dev, uint64_t ino, enum proc_fd_access access);
/* The inode of the other end of the AF_UNIX socket with inode ino (a socketpair's), from the
 * kernel's socket diagnostics (NETLINK_SOCK_DIAG); 0 when it has none or cannot be asked. */
uint64_t proc_unix_peer(uint64_t ino);
/* Every PID in /proc now (malloc'd into *pids); returns how many, or -1. */
int proc_list(pid_t **pids);
/* When pid started, boot-based ns as the kernel's start_boottime, to the clock tick (/proc
 * says no more); 0 when gone. */
uint64_t proc_start_ns(pid_t pid);
/* The channel of pid as the kernel compares it: the identity (device, inode, kind) of the
 * files that are its fd 0, 1 and 2 now, indexed by role. A closed fd leaves its slot zero.
 * Returns -1 when the process is gone. */
int proc_channel(pid_t pid, struct msd_file_id chan[MSD_ROLE__COUNT]);
/* /proc/PID/cgroup, one line per hierarchy joined by ';' (malloc'd), when the process
 * running as pid is still the one started at start_ticks; NULL otherwise. */
char *proc_cgroup(pid_t pid, uint64_t start_ticks);
/* Calls fn for every live descendant of pid (children, grandchildren...), not pid itself. */
int proc_descendants(pid_t pid, void (*fn)(void *ctx, pid_t child), void *ctx);
/* Clock ticks per second of /proc's times (USER_HZ): start_ticks = start_boottime / (1e9 / it). */
long proc_clock_ticks(void);
/* CLOCK_MONOTONIC and CLOCK_REALTIME now, and their difference. */
uint64_t clock_mono_ns(void);
int64_t clock_mono_to_real_ns(void);

#endif

/* procfs.c -- identity, descendants and run state of processes, from /proc.
 *
 * Everything here tolerates the process disappearing between two reads: a vanished
 * process is an ordinary outcome (-1 or NULL), never an error message. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "mcpsonde/procfs.h"

#define PROC_CMDLINE_MAX 4096

static ssize_t proc_read_file(pid_t pid, const char *name, char *buf, size_t len)
{
	char path[64];
	ssize_t n, total = 0;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while ((size_t)total < len - 1) {
		n = read(fd, buf + total, len - 1 - total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = '\0';
	return total;
}

bool proc_exists(pid_t pid)
{
	char path[32];

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return access(path, F_OK) == 0;
}

/* /proc/PID/stat: "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
 * fields are counted from the last ')'. */
static int proc_parse_stat(const char *buf, char *comm, size_t commlen, struct proc_sample *out)
{
	const char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
	unsigned long long utime, stime, start;
	long threads;
	int ppid;
	char state;

	/* close_paren + 2 is read below: the fields must follow it. */
	if (!open_paren || !close_paren || close_paren < open_paren || !close_paren[1])
		return -1;
	if (comm) {
		size_t n = (size_t)(close_paren - open_paren - 1);
		if (n >= commlen)
			n = commlen - 1;
		memcpy(comm, open_paren + 1, n);
		comm[n] = '\0';
	}
	/* fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
	 * utime stime cutime cstime priority nice num_threads itrealvalue starttime */
	if (sscanf(close_paren + 2,
		   "%c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %ld %*d %llu",
		   &state, &ppid, &utime, &stime, &threads, &start) != 6)
		return -1;
	if (out) {
		long hz = sysconf(_SC_CLK_TCK);
		out->state = state;
		out->ppid = ppid;
		out->threads = (unsigned)threads;
		out->start_ticks = start;
		out->cpu_ns = (utime + stime) * (1000000000ull / (unsigned long long)(hz > 0 ? hz : 100));
	}
	return 0;
}

int proc_sample(pid_t pid, struct proc_sample *out)
{
	char buf[1024];
	long rss_pages;

	memset(out, 0, sizeof(*out));
	if (proc_read_file(pid, "stat", buf, sizeof(buf)) <= 0 || proc_parse_stat(buf, NULL, 0, out) < 0) {
		out->state = 0;
		return -1;
	}
	if (proc_read_file(pid, "statm", buf, sizeof(buf)) > 0 && sscanf(buf, "%*s %ld", &rss_pages) == 1)
		out->rss_bytes = (uint64_t)rss_pages * (uint64_t)sysconf(_SC_PAGESIZE);
	if (proc_read_file(pid, "wchan", out->wchan, sizeof(out->wchan)) <= 0 || strcmp(out->wchan, "0") == 0)
		out->wchan[0] = '\0';
	return 0;
}

uint64_t proc_start_ns(pid_t pid)
{
	struct proc_sample s;
	long hz = sysconf(_SC_CLK_TCK);

	if (proc_sample(pid, &s) < 0)
		return 0;
	return s.start_ticks * (1000000000ull / (unsigned long long)(hz > 0 ? hz : 100));
}

char *proc_cgroup(pid_t pid, uint64_t start_ticks)
{
	struct proc_sample ps;
	char buf[4096], *out, *p;
	ssize_t n;

	if (!start_ticks || proc_sample(pid, &ps) < 0 || ps.start_ticks != start_ticks)
		return NULL;
	n = proc_read_file(pid, "cgroup", buf, sizeof(buf));
	while (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (n <= 0 || !(out = strdup(buf)))
		return NULL;
	for (p = out; (p = strchr(p, '\n'));)
		*p = ';';
	return out;
}

int proc_sample_named(pid_t pid, struct proc_sample *out, char *comm)
{
	char buf[1024];

	memset(out, 0, sizeof(*out));
	if (proc_read_file(pid, "stat", buf, sizeof(buf)) <= 0 || proc_parse_stat(buf, comm, MSD_COMM_LEN, out) < 0)
		return -1;
	return 0;
}

void proc_exe(pid_t pid, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
	n = readlink(path, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
}

struct msd_proc_rec *proc_identity(pid_t pid, uint64_t start_ticks, uint64_t ts_ns)
{
	char stat[1024], cmdline[PROC_CMDLINE_MAX];
	struct proc_sample s;
	struct msd_proc_rec *rec;
	ssize_t cmdlen;

	if (proc_read_file(pid, "stat", stat, sizeof(stat)) <= 0)
		return NULL;
	cmdlen = proc_read_file(pid, "cmdline", cmdline, sizeof(cmdline));
	if (cmdlen < 0)
		cmdlen = 0;
	rec = calloc(1, sizeof(*rec) + (size_t)cmdlen);
	if (!rec)
		return NULL;
	if (proc_parse_stat(stat, rec->comm, sizeof(rec->comm), &s) < 0 || (start_ticks && s.start_ticks != start_ticks)) {
		free(rec);
		return NULL;
	}
	proc_exe(pid, rec->exe, sizeof(rec->exe));
	rec->hdr.kind = MSD_REC_PROC;
	rec->hdr.abi = MSD_ABI_VERSION;
	rec->hdr.size = (uint32_t)(sizeof(*rec) + (size_t)cmdlen);
	rec->hdr.ts_ns = ts_ns;
	rec->hdr.tgid = (uint32_t)pid;
	rec->hdr.tid = (uint32_t)pid;
	rec->start_ticks = s.start_ticks;
	rec->ppid = (uint32_t)s.ppid;
	rec->cmdline_len = (uint32_t)cmdlen;
	memcpy(rec->cmdline, cmdline, (size_t)cmdlen);
	return rec;
}

/* What a client can talk to a server through: the kernel copies stdin and stdout only from
 * these. Ttys by major: /dev/ttyN and ttySN (4), /dev/tty, console, ptmx (5), /dev/pts/N
 * (136-143). */
static uint8_t proc_file_kind(const struct stat *st)
{
	unsigned maj = major(st->st_rdev);

	if (S_ISFIFO(st->st_mode))
		return MSD_FD_PIPE;
	if (S_ISSOCK(st->st_mode))
		return MSD_FD_SOCKET;
	if (S_ISCHR(st->st_mode) && (maj == 4 || maj == 5 || (maj >= 136 && maj < 144)))
		return MSD_FD_TTY;
	return MSD_FD_OTHER;
}

int proc_channel(pid_t pid, struct msd_file_id chan[MSD_ROLE__COUNT])
{
	static const int role_fd[MSD_ROLE__COUNT] = { [MSD_ROLE_IN] = 0, [MSD_ROLE_OUT] = 1, [MSD_ROLE_ERR] = 2 };
	int found = 0;

	memset(chan, 0, MSD_ROLE__COUNT * sizeof(*chan));
	for (int role = MSD_ROLE_IN; role <= MSD_ROLE_ERR; role++) {
		char path[64];
		struct stat st;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, role_fd[role]);
		/* stat follows the link to the file itself, pipes and sockets included. */
		if (stat(path, &st) < 0)
			continue;
		chan[role].ino = st.st_ino;
		/* The kernel's internal dev_t, which is what its inodes' superblocks carry. */
		chan[role].dev = (uint32_t)(major(st.st_dev) << 20 | minor(st.st_dev));
		chan[role].kind = proc_file_kind(&st);
		found++;
	}
	if (!found && !proc_exists(pid))
		return -1;
	return 0;
}

/* The inode number of "pipe:[N]" or "socket:[N]" (what /proc/PID/fd links to for files of
 * no filesystem), 0 for a path. */
static uint64_t anon_inode_of(const char *link)
{
	const char *open = strchr(link, '[');

	if (link[0] == '/' || !open || !(strncmp(link, "pipe:", 5) == 0 || strncmp(link, "socket:", 7) == 0))
		return 0;
	return strtoull(open + 1, NULL, 10);
}

/* O_ACCMODE of an open fd, from the "flags:" line of /proc/PID/fdinfo/FD (octal). */
static int proc_fd_accmode(pid_t pid, const char *fd)
{
	char name[300], buf[512], *flags;

	snprintf(name, sizeof(name), "fdinfo/%s", fd);
	if (proc_read_file(pid, name, buf, sizeof(buf)) <= 0 || !(flags = strstr(buf, "flags:")))
		return -1;
	return (int)(strtoul(flags + 6, NULL, 8) & O_ACCMODE);
}

static bool access_matches(int mode, enum proc_fd_access access)
{
	if (access == PROC_FD_ANY)
		return true;
	if (mode == O_RDWR)
		return true;
	return access == PROC_FD_WRITE ? mode == O_WRONLY : mode == O_RDONLY;
}

int proc_holds(pid_t pid, uint32_t dev, uint64_t ino, enum proc_fd_access access)
{
	char dir[64], path[384], link[PATH_MAX];
	struct dirent *de;
	int found = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if (!(d = opendir(dir)))
		return proc_exists(pid) ? 0 : -1;
	while (!found && (de = readdir(d))) {
		struct stat st;
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (link[0] == '/') {
			/* A named FIFO (or a file): compared by identity. */
			if (stat(path, &st) < 0 || st.st_ino != ino || (uint32_t)(major(st.st_dev) << 20 | minor(st.st_dev)) != dev)
				continue;
		} else if (anon_inode_of(link) != ino) {
			continue;
		}
		found = access_matches(proc_fd_accmode(pid, de->d_name), access);
	}
	closedir(d);
	return found;
}

uint64_t proc_unix_peer(uint64_t ino)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} q = {
		.nlh = { .nlmsg_len = sizeof(q), .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST },
		.req = { .sdiag_family = AF_UNIX, .udiag_states = ~0u, .udiag_ino = (__u32)ino,
			 .udiag_show = UDIAG_SHOW_PEER, .udiag_cookie = { ~0u, ~0u } },
	};
	char buf[1024] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
	uint64_t peer = 0;
	ssize_t n;
	int fd;

	if (!ino || ino > UINT32_MAX)
		return 0;
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return 0;
	/* One socket asked by inode: one answer, or an error message. */
	if (sendto(fd, &q, sizeof(q), 0, (struct sockaddr *)&nl, sizeof(nl)) == (ssize_t)sizeof(q) &&
	    (n = recv(fd, buf, sizeof(buf), 0)) > 0) {
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (NLMSG_OK(h, (size_t)n) && h->nlmsg_type == SOCK_DIAG_BY_FAMILY) {
			struct unix_diag_msg *m = NLMSG_DATA(h);
			struct rtattr *a = (struct rtattr *)(m + 1);
			int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));

			for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
				if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= sizeof(__u32))
					peer = *(__u32 *)RTA_DATA(a);
		}
	}
	close(fd);
	return peer;
}

int proc_list(pid_t **pids)
{
	size_t n = 0, cap = 256;
	struct dirent *de;
	pid_t *out = malloc(cap * sizeof(*out));
	DIR *dir = opendir("/proc");

	if (!out || !dir) {
		free(out);
		if (dir)
			closedir(dir);
		return -1;
	}
	while ((de = readdir(dir))) {
		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		if (n == cap) {
			pid_t *np = realloc(out, cap * 2 * sizeof(*np));
			if (!np)
				break;
			out = np;
			cap *= 2;
		}
		out[n++] = (pid_t)atoi(de->d_name);
	}
	closedir(dir);
	*pids = out;
	return (int)n;
}

/* Walks the whole process table once per generation rather than /proc/PID/task/TID/children,
 * which needs CONFIG_PROC_CHILDREN and misses children of non-leader threads. */
int proc_descendants(pid_t root, void (*fn)(void *ctx, pid_t child), void *ctx)
{
	pid_t *pids = NULL, *ppids = NULL, *found = NULL;
	size_t n = 0, cap = 0, nfound = 0, i, scan;
	struct dirent *de;
	DIR *dir;

	dir = opendir("/proc");
	if (!dir)
		return -1;
	while ((de = readdir(dir))) {
		struct proc_sample s;
		char buf[1024];
		pid_t pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = (pid_t)atoi(de->d_name);
		if (proc_read_file(pid, "stat", buf, sizeof(buf)) <= 0 || proc_parse_stat(buf, NULL, 0, &s) < 0)
			continue;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 256;
			pid_t *np = realloc(pids, ncap * sizeof(*np)), *npp;
			if (!np)
				break;
			pids = np;
			npp = realloc(ppids, ncap * sizeof(*npp));
			if (!npp)
				break;
			ppids = npp;
			cap = ncap;
		}
		pids[n] = pid;
		ppids[n] = s.ppid;
		n++;
	}
	closedir(dir);

	/* Breadth-first over the snapshot: found[] holds the frontier and everything before it. */
	found = malloc((n + 1) * sizeof(*found));
	if (!found) {
		free(pids);
		free(ppids);
		return -1;
	}
	found[nfound++] = root;
	for (scan = 0; scan < nfound; scan++) {
		for (i = 0; i < n; i++) {
			if (ppids[i] == found[scan] && pids[i] != root) {
				found[nfound++] = pids[i];
				fn(ctx, pids[i]);
			}
		}
	}
	free(found);
	free(pids);
	free(ppids);
	return 0;
}

long proc_clock_ticks(void)
{
	static long hz;

	if (!hz)
		hz = sysconf(_SC_CLK_TCK) > 0 ? sysconf(_SC_CLK_TCK) : 100;
	return hz;
}

uint64_t clock_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t clock_mono_to_real_ns(void)
{
	struct timespec mono, real;

	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	return ((int64_t)real.tv_sec - (int64_t)mono.tv_sec) * 1000000000ll +
	       ((int64_t)real.tv_nsec - (int64_t)mono.tv_nsec);
}

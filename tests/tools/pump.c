/* pump.c -- a raw JSON-RPC request/response pump: the workload of the benchmarks.
 *
 * Two halves of one program. `pump server` reads newline-delimited requests on stdin the
 * way the TypeScript SDK does (read(0, 64 KiB), several messages or part of one per read)
 * and answers each with one write() of a result exactly as long as the request. The client
 * (default mode) execs the server over a pipe pair or two AF_UNIX socketpairs (what shells
 * and Node clients give a server), optionally through a relay (socat, as a wrapping proxy
 * sits), sends requests of a fixed size with a bounded number in flight, optionally paced
 * at a fixed rate, and prints one JSON line: messages/s, round-trip percentiles, counts.
 *
 * Every message is a valid MCP exchange, so an observer does its full work on it:
 *   {"jsonrpc":"2.0","id":N,"method":"tools/call","params":{"name":"echo","arguments":{"message":"xx.."}}}
 *   {"jsonrpc":"2.0","id":N,"result":{"content":[{"type":"text","text":"xx.."}]}}
 *
 * For an observer to attach before any traffic, the server writes its pid to --pid-file
 * (atomically, by rename) once it runs, and the client with --wait-go sends nothing until
 * it receives SIGUSR2; after printing its results it keeps the server alive, idle, until a
 * second SIGUSR2, so that the observer can be read and stopped first. Responses come back in order (one single-threaded server), so the
 * k-th response line answers the k-th request; the client checks every line's length. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 65536 /* what the TS SDK and libuv read at once */
#define HEAD_MAX 64     /* the id is looked for in a line's first bytes */
#define RTT_SAMPLES_MAX (1u << 20)
#define GO_SIGNAL SIGUSR2

static const char req_head_fmt[] = "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64
				   ",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"";
static const char req_tail[] = "\"}}}\n";
static const char resp_head_fmt[] = "{\"jsonrpc\":\"2.0\",\"id\":%" PRIu64 ",\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"";
static const char resp_tail[] = "\"}]}}\n";

static void die(const char *what)
{
	fprintf(stderr, "pump: %s: %s\n", what, strerror(errno));
	exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void write_all(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("write");
		}
		buf += n;
		len -= (size_t)n;
	}
}

/* A message buffer of `len` bytes: head (with the id) + 'x' padding + tail. Only the head and
 * tail change from one message to the next, so composing one costs O(head), not O(len). */
struct msgbuf {
	char *buf;
	size_t cap, len, head_len;
	const char *head_fmt, *tail;
};

static void msgbuf_init(struct msgbuf *m, const char *head_fmt, const char *tail)
{
	memset(m, 0, sizeof(*m));
	m->head_fmt = head_fmt;
	m->tail = tail;
}

static size_t msgbuf_min_len(const struct msgbuf *m, uint64_t id)
{
	return (size_t)snprintf(NULL, 0, m->head_fmt, id) + strlen(m->tail);
}

/* Composes the message with this id, `len` bytes long. Returns false if len is too short. */
static bool msgbuf_compose(struct msgbuf *m, uint64_t id, size_t len)
{
	size_t tail_len = strlen(m->tail);
	char head[HEAD_MAX * 2];
	int h;

	h = snprintf(head, sizeof(head), m->head_fmt, id);
	if (h < 0 || (size_t)h + tail_len > len)
		return false;
	if (len > m->cap) {
		free(m->buf);
		m->buf = malloc(len);
		if (!m->buf)
			die("malloc");
		memset(m->buf, 'x', len);
		m->cap = len;
	} else {
		memset(m->buf, 'x', m->head_len);
		if (m->len >= tail_len)
			memset(m->buf + m->len - tail_len, 'x', tail_len);
	}
	memcpy(m->buf, head, (size_t)h);
	memcpy(m->buf + len - tail_len, m->tail, tail_len);
	m->head_len = (size_t)h;
	m->len = len;
	return true;
}

/* Finds "id":<digits> in a line's head. */
static bool parse_id(const char *head, size_t len, uint64_t *id)
{
	const char *p = memmem(head, len, "\"id\":", 5);
	const char *end = head + len;
	uint64_t v = 0;

	if (!p)
		return false;
	p += 5;
	if (p >= end || *p < '0' || *p > '9')
		return false;
	while (p < end && *p >= '0' && *p <= '9')
		v = v * 10 + (uint64_t)(*p++ - '0');
	if (p == end)
		return false; /* the digits may go on past the head */
	*id = v;
	return true;
}

static void write_pid_file(const char *path)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		die(tmp);
	fprintf(f, "%d\n", (int)getpid());
	if (fclose(f) || rename(tmp, path))
		die(path);
}

/* ---------------------------------------------------------------- server */

/* --swap-stdin HOW:FILE (discovery tests): reads the stdin it was given to its end, then makes
 * FILE (a FIFO: open waits for its writer) its stdin without an exec, the way HOW says: dup2,
 * dup3, close (close(0), then open takes the lowest fd) or close_range (the same, by
 * close_range(0, 0)). An observer that judged the first stdin must look at the second. */
static void stdin_swap(const char *spec)
{
	const char *colon = strchr(spec, ':');
	char how[16], buf[4096];
	int fd;

	if (!colon || (size_t)(colon - spec) >= sizeof(how)) {
		fprintf(stderr, "pump server: --swap-stdin wants HOW:FILE, got %s\n", spec);
		exit(2);
	}
	memcpy(how, spec, (size_t)(colon - spec));
	how[colon - spec] = '\0';
	if (strcmp(how, "dup2") && strcmp(how, "dup3") && strcmp(how, "close") && strcmp(how, "close_range")) {
		fprintf(stderr, "pump server: --swap-stdin: HOW is dup2, dup3, close or close_range, not %s\n", how);
		exit(2);
	}
	while (read(0, buf, sizeof(buf)) > 0)
		;
	if (!strcmp(how, "close") || !strcmp(how, "close_range")) {
		if (!strcmp(how, "close") ? close(0) : close_range(0, 0, 0))
			die(how);
		if ((fd = open(colon + 1, O_RDONLY)) != 0)
			die(fd < 0 ? colon + 1 : "the new stdin is not fd 0");
		return;
	}
	if ((fd = open(colon + 1, O_RDONLY)) < 0)
		die(colon + 1);
	if (!strcmp(how, "dup2") ? dup2(fd, 0) < 0 : dup3(fd, 0, 0) < 0)
		die(how);
	close(fd);
}

static int server_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pid-file", required_argument, NULL, 'p' },
		{ "swap-stdin", required_argument, NULL, 's' },
		{ 0 },
	};
	static char rbuf[READ_SIZE];
	const char *pid_file = NULL, *swap = NULL;
	char head[HEAD_MAX];
	size_t head_len = 0, line_len = 0;
	struct msgbuf resp;
	uint64_t lines = 0;
	int c;

	while ((c = getopt_long(argc, argv, "p:s:", opts, NULL)) != -1) {
		if (c == 'p') {
			pid_file = optarg;
		} else if (c == 's') {
			swap = optarg;
		} else {
			fprintf(stderr, "usage: pump server [--pid-file FILE] [--swap-stdin HOW:FILE]\n");
			return 2;
		}
	}
	if (pid_file)
		write_pid_file(pid_file);
	if (swap)
		stdin_swap(swap);
	msgbuf_init(&resp, resp_head_fmt, resp_tail);

	for (;;) {
		ssize_t n = read(0, rbuf, sizeof(rbuf));
		const char *p, *end;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("server read");
		}
		if (n == 0)
			break;
		for (p = rbuf, end = rbuf + n; p < end;) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t seg = (size_t)((nl ? nl + 1 : end) - p);
			uint64_t id;

			if (head_len < HEAD_MAX) {
				size_t take = seg < HEAD_MAX - head_len ? seg : HEAD_MAX - head_len;

				memcpy(head + head_len, p, take);
				head_len += take;
			}
			line_len += seg;
			p += seg;
			if (!nl)
				break;
			if (!parse_id(head, head_len, &id)) {
				fprintf(stderr, "pump server: line %" PRIu64 " has no numeric id in its first %d bytes\n",
					lines + 1, HEAD_MAX);
				return 1;
			}
			if (!msgbuf_compose(&resp, id, line_len)) {
				fprintf(stderr, "pump server: line %" PRIu64 " is too short (%zu bytes)\n", lines + 1,
					line_len);
				return 1;
			}
			write_all(1, resp.buf, resp.len);
			lines++;
			head_len = 0;
			line_len = 0;
		}
	}
	return line_len ? 1 : 0;
}

/* ---------------------------------------------------------------- client */

struct client_opts {
	const char *transport; /* "pipe" or "unix" */
	const char *relay;     /* NULL or "socat" */
	const char *pid_file;
	size_t size;
	unsigned window;
	uint64_t count;
	double max_time_s;
	double rate;
	bool wait_go;
};

struct client_stats {
	uint64_t sent, done, bad_lines;
	uint64_t t_start, t_end;
	uint32_t *rtt_ns; /* the first RTT_SAMPLES_MAX round trips */
	uint64_t rtt_n;
};

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		die("fcntl");
}

/* Starts the server (or the relay, which starts the server) with stdin/stdout connected to
 * the client's ends: *wfd carries requests, *rfd responses. */
static pid_t client_spawn(const struct client_opts *o, int *wfd, int *rfd)
{
	int in[2], out[2]; /* [0]: the client's end, [1]: the server's */
	char self[PATH_MAX], exec_addr[2 * PATH_MAX + 64];
	ssize_t n;
	pid_t pid;

	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		die("readlink /proc/self/exe");
	self[n] = 0;

	if (!strcmp(o->transport, "pipe")) {
		int a[2], b[2];

		if (pipe2(a, O_CLOEXEC) || pipe2(b, O_CLOEXEC))
			die("pipe2");
		in[0] = a[1], in[1] = a[0];
		out[0] = b[0], out[1] = b[1];
	} else {
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) ||
		    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, out))
			die("socketpair");
	}

	pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		if (dup2(in[1], 0) < 0 || dup2(out[1], 1) < 0)
			die("dup2");
		if (o->relay) {
			bool pipes = !strcmp(o->transport, "pipe");

			/* socat's EXEC gives the child a socketpair unless told `pipes`: match the
			 * transport on both sides of the relay. socat writes blocking, once select()
			 * says writable: on a pipe that means one free page, so a write larger than
			 * PIPE_BUF can block while the server blocks writing to socat -- a deadlock
			 * under pipelined traffic. Hence 4 KiB blocks on pipes, 64 KiB (what the SDK
			 * reads at once) on sockets, where writable means 3/4 of the buffer free. */
			snprintf(exec_addr, sizeof(exec_addr), "EXEC:%s server%s%s%s", self,
				 o->pid_file ? " --pid-file " : "", o->pid_file ? o->pid_file : "", pipes ? ",pipes" : "");
			execlp("socat", "socat", "-b", pipes ? "4096" : "65536", "STDIO", exec_addr, (char *)NULL);
			die("exec socat");
		}
		if (o->pid_file)
			execl(self, "pump", "server", "--pid-file", o->pid_file, (char *)NULL);
		else
			execl(self, "pump", "server", (char *)NULL);
		die("exec pump server");
	}
	close(in[1]);
	close(out[1]);
	*wfd = in[0];
	*rfd = out[0];
	set_nonblock(*wfd);
	set_nonblock(*rfd);
	return pid;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static double percentile_us(uint32_t *v, uint64_t n, double q)
{
	if (!n)
		return 0;
	return v[(uint64_t)(q * (double)(n - 1) + 0.5)] / 1000.0;
}

/* Sets *ts to the time from now to t, if that is sooner than the timeout it holds. */
static void timeout_until(struct timespec **tsp, struct timespec *ts, uint64_t now, uint64_t t)
{
	uint64_t d = t > now ? t - now : 0;

	if (*tsp && (uint64_t)ts->tv_sec * 1000000000u + (uint64_t)ts->tv_nsec <= d)
		return;
	ts->tv_sec = (time_t)(d / 1000000000u);
	ts->tv_nsec = (long)(d % 1000000000u);
	*tsp = ts;
}

/* The pump loop: keeps up to `window` requests in flight (and, with a rate, sends no request
 * before its due time), reads responses as they come, and stops sending at count or max_time.
 * A request is always written whole: stopping never leaves a partial line to the server. */
static void client_run(const struct client_opts *o, int wfd, int rfd, struct client_stats *st)
{
	static char rbuf[READ_SIZE];
	uint64_t *sent_at = calloc(o->window, sizeof(*sent_at));
	uint64_t max_ns = (uint64_t)(o->max_time_s * 1e9), deadline = 0;
	size_t off = 0, line_len = 0;
	bool composing = false, stop = false;
	struct msgbuf req;

	if (!sent_at)
		die("calloc");
	msgbuf_init(&req, req_head_fmt, req_tail);
	st->t_start = now_ns();
	if (max_ns)
		deadline = st->t_start + max_ns;

	while (!(stop && !composing && st->done == st->sent)) {
		struct timespec ts, *tsp = NULL;
		struct pollfd pfd[2];
		uint64_t now = now_ns();
		nfds_t nfds = 0;

		if ((o->count && st->sent >= o->count) || (deadline && now >= deadline))
			stop = true;

		/* Write as much as the transport takes without blocking. */
		for (;;) {
			ssize_t n;

			if (!composing) {
				if (stop || st->sent - st->done >= o->window || (o->count && st->sent >= o->count))
					break;
				if (o->rate > 0) {
					uint64_t due = st->t_start + (uint64_t)((double)st->sent * 1e9 / o->rate);

					if (due > now && due > (now = now_ns())) {
						timeout_until(&tsp, &ts, now, due);
						break;
					}
				}
				if (!msgbuf_compose(&req, st->sent + 1, o->size)) {
					fprintf(stderr, "pump: --size %zu is too short for a request (min %zu)\n", o->size,
						msgbuf_min_len(&req, st->sent + 1));
					exit(2);
				}
				composing = true;
				off = 0;
				sent_at[st->sent % o->window] = now_ns();
			}
			n = write(wfd, req.buf + off, req.len - off);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				die("client write");
			}
			off += (size_t)n;
			if (off < req.len)
				continue;
			composing = false;
			st->sent++;
		}
		if (deadline && !stop)
			timeout_until(&tsp, &ts, now, deadline);

		if (composing) {
			pfd[nfds].fd = wfd;
			pfd[nfds].events = POLLOUT;
			nfds++;
		}
		pfd[nfds].fd = rfd;
		pfd[nfds].events = POLLIN;
		nfds++;
		if (st->done == st->sent && !composing && !tsp)
			continue; /* nothing to wait for: sending stopped or is about to */
		if (ppoll(pfd, nfds, tsp, NULL) < 0) {
			if (errno == EINTR)
				continue;
			die("ppoll");
		}

		while (pfd[nfds - 1].revents) {
			ssize_t n = read(rfd, rbuf, sizeof(rbuf));
			const char *p, *end;

			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					break;
				die("client read");
			}
			if (n == 0) {
				fprintf(stderr, "pump: the server closed its stdout after %" PRIu64 " responses\n",
					st->done);
				exit(1);
			}
			for (p = rbuf, end = rbuf + n; p < end;) {
				const char *nl = memchr(p, '\n', (size_t)(end - p));

				if (!nl) {
					line_len += (size_t)(end - p);
					break;
				}
				line_len += (size_t)(nl + 1 - p);
				p = nl + 1;
				if (line_len != o->size)
					st->bad_lines++;
				line_len = 0;
				if (st->done >= st->sent) {
					fprintf(stderr, "pump: a response without a request\n");
					exit(1);
				}
				if (st->rtt_n < RTT_SAMPLES_MAX) {
					uint64_t rtt = now_ns() - sent_at[st->done % o->window];

					st->rtt_ns[st->rtt_n++] = rtt > UINT32_MAX ? UINT32_MAX : (uint32_t)rtt;
				}
				st->done++;
			}
			if ((size_t)n < sizeof(rbuf))
				break;
		}
	}
	st->t_end = now_ns();
	free(sent_at);
	free(req.buf);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: pump [options]            client: exec a server, pump requests, print one JSON line\n"
		"       pump server [--pid-file F] [--swap-stdin HOW:FILE]\n"
		"                                 server: answer requests on stdin with same-size results on stdout\n"
		"  -t, --transport pipe|unix  pipes (a shell's child) or AF_UNIX socketpairs (a Node client's); default pipe\n"
		"  -s, --size BYTES           bytes per message, newline included (default 256)\n"
		"  -w, --window N             requests in flight: 1 = lockstep (default 1)\n"
		"  -n, --count N              requests to send (default 100000; 0 = until --max-time)\n"
		"  -T, --max-time SEC         stop sending after SEC seconds (default: no limit)\n"
		"  -r, --rate MSGS            send at this rate, msgs/s (default: as fast as the window allows)\n"
		"      --relay socat          put `socat` between client and server, as a wrapping proxy sits\n"
		"      --pid-file FILE        the server writes its pid here once it runs\n"
		"      --wait-go              send nothing until SIGUSR2 (attach an observer first); after\n"
		"                             the results, keep the server alive until another SIGUSR2\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "transport", required_argument, NULL, 't' },
		{ "size", required_argument, NULL, 's' },
		{ "window", required_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'n' },
		{ "max-time", required_argument, NULL, 'T' },
		{ "rate", required_argument, NULL, 'r' },
		{ "relay", required_argument, NULL, 'R' },
		{ "pid-file", required_argument, NULL, 'p' },
		{ "wait-go", no_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct client_opts o = {
		.transport = "pipe",
		.size = 256,
		.window = 1,
		.count = 100000,
	};
	struct client_stats st = { 0 };
	sigset_t go;
	int c, wfd, rfd, status;
	pid_t server;
	double secs;

	if (argc > 1 && !strcmp(argv[1], "server"))
		return server_main(argc - 1, argv + 1);

	while ((c = getopt_long(argc, argv, "t:s:w:n:T:r:h", opts, NULL)) != -1) {
		switch (c) {
		case 't': o.transport = optarg; break;
		case 's': o.size = strtoull(optarg, NULL, 0); break;
		case 'w': o.window = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'n': o.count = strtoull(optarg, NULL, 0); break;
		case 'T': o.max_time_s = strtod(optarg, NULL); break;
		case 'r': o.rate = strtod(optarg, NULL); break;
		case 'R': o.relay = optarg; break;
		case 'p': o.pid_file = optarg; break;
		case 'g': o.wait_go = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if ((strcmp(o.transport, "pipe") && strcmp(o.transport, "unix")) || !o.window ||
	    (o.relay && strcmp(o.relay, "socat")) || (!o.count && o.max_time_s <= 0) || optind != argc) {
		usage(stderr);
		return 2;
	}

	/* Blocked from the start, so that a go sent as soon as the pid file appears is kept. */
	sigemptyset(&go);
	sigaddset(&go, GO_SIGNAL);
	sigprocmask(SIG_BLOCK, &go, NULL);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_TIMERSLACK, 1UL); /* --rate sleeps microseconds */
	st.rtt_ns = malloc(RTT_SAMPLES_MAX * sizeof(*st.rtt_ns));
	if (!st.rtt_ns)
		die("malloc");

	server = client_spawn(&o, &wfd, &rfd);
	if (o.wait_go) {
		while (sigwaitinfo(&go, NULL) < 0)
			if (errno != EINTR)
				die("sigwaitinfo");
	}
	client_run(&o, wfd, rfd, &st);

	secs = (double)(st.t_end - st.t_start) / 1e9;
	qsort(st.rtt_ns, st.rtt_n, sizeof(*st.rtt_ns), cmp_u32);
	printf("{\"transport\":\"%s\",\"relay\":\"%s\",\"size\":%zu,\"window\":%u,\"rate\":%.0f,"
	       "\"sent\":%" PRIu64 ",\"done\":%" PRIu64 ",\"bad_lines\":%" PRIu64 ",\"elapsed_s\":%.6f,"
	       "\"msgs_per_s\":%.1f,\"mib_per_s\":%.2f,\"rtt_p50_us\":%.1f,\"rtt_p99_us\":%.1f}\n",
	       o.transport, o.relay ? o.relay : "none", o.size, o.window, o.rate, st.sent, st.done, st.bad_lines,
	       secs, secs > 0 ? (double)st.done / secs : 0, secs > 0 ? (double)st.done * (double)o.size / secs / 1048576 : 0,
	       percentile_us(st.rtt_ns, st.rtt_n, 0.50), percentile_us(st.rtt_ns, st.rtt_n, 0.99));
	fflush(stdout);
	free(st.rtt_ns);
	if (o.wait_go) {
		while (sigwaitinfo(&go, NULL) < 0)
			if (errno != EINTR)
				die("sigwaitinfo");
	}
	close(wfd);
	close(rfd);
	if (waitpid(server, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "pump: the server failed (wait status %#x)\n", status);
		return 1;
	}
	if (st.bad_lines)
		fprintf(stderr, "pump: %" PRIu64 " responses had the wrong length\n", st.bad_lines);
	return st.bad_lines ? 1 : 0;
}

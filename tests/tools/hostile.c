/* hostile.c -- an MCP server over stdio that misbehaves on command: the peer of the
 * tests/e2e/hostile-*.test.mjs tests.
 *
 * It speaks MCP like any stdio server (newline-delimited JSON-RPC: initialize, ping,
 * tools/list, tools/call; responses written as the TypeScript SDK writes them, "id" last),
 * and each tool is one way of misbehaving that real servers have: a response of 100 MB in
 * one write(), replies through pwritev2, a dup of stdout or sendmsg, children that write a
 * line and exit at once, fds closed by close_range then a regular file read, stderr lines,
 * bytes moved by sendfile, io_uring, a flood of lines faster than any observer can analyse,
 * children that each hold an unfinished line of many megabytes.
 * Every tool answers its call normally afterwards, unless it says otherwise, so a test can
 * check that what follows the hostile part is reported.
 *
 * Adding a mode: write `static void tool_NAME(json_t *id, json_t *args)` that ends with a
 * reply (reply_text() or one of its own), and add a row to tools[] below; tools/list lists
 * it with its description. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/io_uring.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 65536

static void die(const char *what)
{
	fprintf(stderr, "hostile: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			die("write");
		p += w;
		n -= (size_t)w;
	}
}

/* The response line for id, result being JSON text: {"result":...,"jsonrpc":"2.0","id":...}. */
static char *response_line(json_t *id, const char *result, size_t *len)
{
	char *idtext = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT), *line = NULL;

	if (!idtext || asprintf(&line, "{\"result\":%s,\"jsonrpc\":\"2.0\",\"id\":%s}\n", result, idtext) < 0)
		die("response");
	free(idtext);
	*len = strlen(line);
	return line;
}

static void reply(json_t *id, const char *result)
{
	size_t len;
	char *line = response_line(id, result, &len);

	write_all(1, line, len);
	free(line);
}

/* A tools/call result holding one text. */
static char *text_result(const char *text)
{
	json_t *r = json_pack("{s:[{s:s,s:s}]}", "content", "type", "text", "text", text);
	char *s = json_dumps(r, JSON_COMPACT);

	json_decref(r);
	return s;
}

static void reply_text(json_t *id, const char *text)
{
	char *result = text_result(text);

	reply(id, result);
	free(result);
}

static long long arg_int(json_t *args, const char *key, long long dflt)
{
	json_t *v = json_object_get(args, key);

	return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static const char *arg_str(json_t *args, const char *key, const char *dflt)
{
	json_t *v = json_object_get(args, key);

	return json_is_string(v) ? json_string_value(v) : dflt;
}

/* The response line answering id with the text of argument "text", else dflt; *len bytes. */
static char *text_line(json_t *id, json_t *args, const char *dflt, size_t *len)
{
	char *result = text_result(arg_str(args, "text", dflt)), *line = response_line(id, result, len);

	free(result);
	return line;
}

/* --- tools ----------------------------------------------------------------------------- */

static void tool_echo(json_t *id, json_t *args)
{
	reply_text(id, arg_str(args, "text", ""));
}

/* One write() of a response line of `bytes` bytes in all, "id" at its very end. */
static void tool_giant(json_t *id, json_t *args)
{
	static const char head[] = "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"";
	char *idtext = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT), tail[160];
	long long bytes = arg_int(args, "bytes", 5000000);
	size_t tlen, hlen = sizeof(head) - 1, fill;
	char *line;

	tlen = (size_t)snprintf(tail, sizeof(tail), "\"}]},\"jsonrpc\":\"2.0\",\"id\":%s}\n", idtext);
	free(idtext);
	if (bytes < (long long)(hlen + tlen))
		bytes = (long long)(hlen + tlen);
	fill = (size_t)bytes - hlen - tlen;
	line = malloc((size_t)bytes);
	if (!line)
		die("malloc");
	memcpy(line, head, hlen);
	memset(line + hlen, 'g', fill);
	memcpy(line + hlen + fill, tail, tlen);
	write_all(1, line, (size_t)bytes);
	free(line);
}

/* The reply in two iovecs, with pwritev2 at the current position (-1). */
static void tool_pwritev2(json_t *id, json_t *args)
{
	size_t len;
	char *line = text_line(id, args, "by pwritev2", &len);
	struct iovec iov[2] = { { line, len / 2 }, { line + len / 2, len - len / 2 } };

	if (pwritev2(1, iov, 2, -1, 0) != (ssize_t)len)
		die("pwritev2");
	free(line);
}

/* The reply through a duplicate of stdout (fd 10 or above), closed after. */
static void tool_dup(json_t *id, json_t *args)
{
	size_t len;
	char *line = text_line(id, args, "by a dup of stdout", &len);
	int fd = fcntl(1, F_DUPFD, 10);

	if (fd < 0)
		die("dup");
	write_all(fd, line, len);
	close(fd);
	free(line);
}

/* The reply with sendmsg on stdout (a socket), in three iovecs. */
static void tool_sendmsg(json_t *id, json_t *args)
{
	size_t len;
	char *line = text_line(id, args, "by sendmsg", &len);
	struct iovec iov[3] = { { line, 5 }, { line + 5, len - 10 }, { line + len - 5, 5 } };
	struct msghdr m = { .msg_iov = iov, .msg_iovlen = 3 };

	if (sendmsg(1, &m, 0) != (ssize_t)len)
		die("sendmsg");
	free(line);
}

static void child_line(long long i)
{
	char line[256];
	int n = snprintf(line, sizeof(line),
			 "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\","
			 "\"logger\":\"child\",\"data\":\"child %lld\"}}\n", i);

	write_all(1, line, (size_t)n);
	_exit(0);
}

/* `count` children, each writing one notification line to the shared stdout and exiting at
 * once: one after the other, or all released together. */
static void tool_children(json_t *id, json_t *args)
{
	long long count = arg_int(args, "count", 100);
	bool together = json_is_true(json_object_get(args, "together"));
	int gate[2] = { -1, -1 };
	char text[64];

	if (together && pipe(gate) < 0)
		die("pipe");
	for (long long i = 0; i < count; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		if (pid == 0) {
			if (together) {
				char c;

				close(gate[1]);
				while (read(gate[0], &c, 1) < 0 && errno == EINTR)
					;
			}
			child_line(i);
		}
		if (!together && waitpid(pid, NULL, 0) < 0)
			die("waitpid");
	}
	if (together) {
		close(gate[0]);
		close(gate[1]); /* every child's read returns 0: they go */
		while (wait(NULL) > 0 || errno == EINTR)
			;
	}
	snprintf(text, sizeof(text), "%lld children", count);
	reply_text(id, text);
}

/* A pipe used, every fd from 3 up closed by close_range, then a regular file opened (it gets
 * the pipe's fd number) and read: its contents must never pass for MCP traffic. */
static void tool_close_range(json_t *id, json_t *args)
{
	const char *path = arg_str(args, "path", "/etc/hostname");
	char buf[4096], text[64];
	ssize_t n, total = 0;
	int p[2], fd;

	if (pipe(p) < 0 || write(p[1], "x", 1) != 1 || read(p[0], buf, 1) != 1)
		die("pipe");
	if (syscall(SYS_close_range, 3u, ~0u, 0u) < 0)
		die("close_range");
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die("open");
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		total += n;
	close(fd);
	snprintf(text, sizeof(text), "fd %d, %zd bytes read", fd, total);
	reply_text(id, text);
}

/* `lines` lines written to fd 2, each with its own write(). */
static void tool_stderr(json_t *id, json_t *args)
{
	long long lines = arg_int(args, "lines", 3);
	const char *tag = arg_str(args, "tag", "hostile");

	for (long long i = 0; i < lines; i++)
		dprintf(2, "%s stderr line %lld\n", tag, i);
	reply_text(id, "stderr written");
}

/* A notification line moved from a file to stdout by sendfile (the kernel does not copy
 * it), then the reply by write(). */
static void tool_sendfile(json_t *id, json_t *args)
{
	const char *path = arg_str(args, "path", "");
	struct stat st;
	int fd = open(path, O_RDONLY);

	if (fd < 0 || fstat(fd, &st) < 0)
		die("open");
	if (sendfile(1, fd, NULL, (size_t)st.st_size) != st.st_size)
		die("sendfile");
	close(fd);
	reply_text(id, "sent a file");
}

/* An io_uring instance set up (and closed): what it would move is invisible to the kernel
 * side, which must say so. */
static void tool_uring(json_t *id, json_t *args)
{
	struct io_uring_params p = { 0 };
	long fd = syscall(SYS_io_uring_setup, 4, &p);

	(void)args;
	if (fd >= 0)
		close((int)fd);
	reply_text(id, fd >= 0 ? "io_uring set up" : "io_uring unavailable");
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Lines of {bytes} bytes, each with one write() to fd {fd} (default 2), as fast as the kernel
 * takes them, for {seconds}, from {procs} processes (this one and children): more than any
 * observer can analyse. With stderr on /dev/null nothing else limits the rate. */
static void tool_flood(json_t *id, json_t *args)
{
	long long bytes = arg_int(args, "bytes", 4096), procs = arg_int(args, "procs", 1), lines = 0;
	double until = now_s() + (double)arg_int(args, "seconds", 10);
	int fd = (int)arg_int(args, "fd", 2);
	char text[64], *line;
	bool child = false;

	if (bytes < 16)
		bytes = 16;
	if (!(line = malloc((size_t)bytes)))
		die("malloc");
	memset(line, 'f', (size_t)bytes - 1);
	memcpy(line, "flood ", 6);
	line[bytes - 1] = '\n';
	for (long long i = 1; i < procs && !child; i++) {
		pid_t pid = fork();

		if (pid < 0)
			die("fork");
		/* A child floods only as long as this process lives (a test kills it by pid). */
		if ((child = pid == 0) && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
			die("prctl");
	}
	do {
		for (int i = 0; i < 256; i++, lines++)
			write_all(fd, line, (size_t)bytes);
	} while (now_s() < until);
	if (child)
		_exit(0);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	free(line);
	snprintf(text, sizeof(text), "%lld lines (this process)", lines);
	reply_text(id, text);
}

/* Children held by tool_partial until tool_release: the write end of their gate. */
static int partial_gate = -1;

/* {children} children, one after the other, each write {bytes} bytes of one line without its
 * newline to fd {fd} (default 2), 64 KiB per write() with {pace_us} between writes, and wait:
 * unfinished lines an observer has to hold. The reply comes once every child has written.
 * tool_release lets them go. */
static void tool_partial(json_t *id, json_t *args)
{
	long long children = arg_int(args, "children", 16), bytes = arg_int(args, "bytes", 15 << 20);
	long long pace_us = arg_int(args, "pace_us", 0);
	int fd = (int)arg_int(args, "fd", 2), gate[2];
	char text[96];

	if (partial_gate >= 0 || pipe(gate) < 0)
		die("partial: pipe (or children still held)");
	for (long long i = 0; i < children; i++) {
		int done[2];
		pid_t pid;
		char c;

		if (pipe(done) < 0 || (pid = fork()) < 0)
			die("partial: fork");
		if (pid == 0) {
			static char chunk[65536];

			close(gate[1]);
			close(done[0]);
			memset(chunk, 'p', sizeof(chunk));
			for (long long left = bytes; left > 0; left -= (long long)sizeof(chunk)) {
				write_all(fd, chunk, left < (long long)sizeof(chunk) ? (size_t)left : sizeof(chunk));
				if (pace_us)
					usleep((useconds_t)pace_us);
			}
			close(done[1]);
			while (read(gate[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
		close(done[1]);
		while (read(done[0], &c, 1) < 0 && errno == EINTR) /* EOF: this child has written */
			;
		close(done[0]);
	}
	close(gate[0]);
	partial_gate = gate[1];
	snprintf(text, sizeof(text), "%lld children hold %lld bytes each", children, bytes);
	reply_text(id, text);
}

static void tool_release(json_t *id, json_t *args)
{
	(void)args;
	if (partial_gate >= 0) {
		close(partial_gate);
		partial_gate = -1;
		while (wait(NULL) > 0 || errno == EINTR)
			;
	}
	reply_text(id, "released");
}

static const struct tool {
	const char *name;
	void (*run)(json_t *id, json_t *args);
	const char *description;
} tools[] = {
	{ "echo", tool_echo, "Answers {text} normally" },
	{ "giant", tool_giant, "Answers with one write() of a response line of {bytes} bytes" },
	{ "pwritev2", tool_pwritev2, "Answers with pwritev2, in two iovecs" },
	{ "dup", tool_dup, "Answers through a duplicate of stdout" },
	{ "sendmsg", tool_sendmsg, "Answers with sendmsg on stdout, in three iovecs" },
	{ "children", tool_children, "Forks {count} children that each write a line and exit, {together} or not" },
	{ "close_range", tool_close_range, "Uses a pipe, close_range(3, ~0), then reads the regular file {path}" },
	{ "stderr", tool_stderr, "Writes {lines} lines tagged {tag} to stderr" },
	{ "sendfile", tool_sendfile, "Sends the file {path} to stdout with sendfile, then answers" },
	{ "uring", tool_uring, "Sets up an io_uring instance" },
	{ "partial", tool_partial, "{children} children one after the other write {bytes} bytes of an unfinished line to fd {fd} (default 2), {pace_us} between 64 KiB writes, and wait" },
	{ "release", tool_release, "Lets the children of partial go" },
	{ "flood", tool_flood, "Writes lines of {bytes} bytes to fd {fd} (default 2) as fast as it can for {seconds}, from {procs} processes" },
};

/* --- protocol ---------------------------------------------------------------------------- */

static void on_initialize(json_t *id, json_t *params)
{
	json_t *version = json_object_get(params, "protocolVersion");
	json_t *r = json_pack("{s:s,s:{s:{}},s:{s:s,s:s}}", "protocolVersion",
			      json_is_string(version) ? json_string_value(version) : "2025-06-18", "capabilities",
			      "tools", "serverInfo", "name", "hostile", "version", "1.0.0");
	char *s = json_dumps(r, JSON_COMPACT);

	reply(id, s);
	free(s);
	json_decref(r);
}

static void on_tools_list(json_t *id)
{
	json_t *list = json_array(), *r;
	char *s;

	for (size_t i = 0; i < sizeof(tools) / sizeof(tools[0]); i++)
		json_array_append_new(list, json_pack("{s:s,s:s,s:{s:s}}", "name", tools[i].name, "description",
						      tools[i].description, "inputSchema", "type", "object"));
	r = json_pack("{s:o}", "tools", list);
	s = json_dumps(r, JSON_COMPACT);
	reply(id, s);
	free(s);
	json_decref(r);
}

static void on_tools_call(json_t *id, json_t *params)
{
	const char *name = json_string_value(json_object_get(params, "name"));
	json_t *args = json_object_get(params, "arguments");

	for (size_t i = 0; name && i < sizeof(tools) / sizeof(tools[0]); i++) {
		if (strcmp(name, tools[i].name) == 0) {
			tools[i].run(id, args);
			return;
		}
	}
	reply(id, "{\"content\":[{\"type\":\"text\",\"text\":\"no such tool\"}],\"isError\":true}");
}

static void on_line(const char *line, size_t len)
{
	json_t *msg = json_loadb(line, len, 0, NULL), *id, *params;
	const char *method;

	if (!msg)
		return;
	id = json_object_get(msg, "id");
	method = json_string_value(json_object_get(msg, "method"));
	params = json_object_get(msg, "params");
	if (!method || !id) {
		/* notifications and responses need no answer */
	} else if (strcmp(method, "initialize") == 0) {
		on_initialize(id, params);
	} else if (strcmp(method, "tools/list") == 0) {
		on_tools_list(id);
	} else if (strcmp(method, "tools/call") == 0) {
		on_tools_call(id, params);
	} else if (strcmp(method, "ping") == 0) {
		reply(id, "{}");
	} else {
		char *idtext = json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT), *line;
		int n = asprintf(&line, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n",
				 idtext);

		if (n < 0)
			die("error");
		write_all(1, line, (size_t)n);
		free(line);
		free(idtext);
	}
	json_decref(msg);
}

int main(void)
{
	size_t len = 0, cap = READ_SIZE;
	char *buf = malloc(cap);

	signal(SIGPIPE, SIG_IGN);
	if (!buf)
		die("malloc");
	for (;;) {
		char *nl;
		ssize_t n;

		if (cap - len < READ_SIZE && !(buf = realloc(buf, cap *= 2)))
			die("realloc");
		n = read(0, buf + len, READ_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read");
		if (n == 0)
			break; /* the client closed stdin: the stdio shutdown */
		len += (size_t)n;
		while ((nl = memchr(buf, '\n', len))) {
			size_t k = (size_t)(nl - buf);

			on_line(buf, k);
			memmove(buf, nl + 1, len - k - 1);
			len -= k + 1;
		}
	}
	free(buf);
	return 0;
}

/* soak.c -- the workload of the fleet soak test (tests/e2e/soak.test.mjs): many short-lived
 * MCP servers and many short non-MCP pipelines, started one after the other, as an agent
 * host and a busy node start them.
 *
 *   soak --servers N --pipelines M --name NAME
 *
 * A server is a child process with an AF_UNIX socketpair as stdin and stdout (what Node
 * clients give a server), speaking newline-delimited JSON-RPC: this process sends it
 * initialize, notifications/initialized, tools/list and three tools/call, then closes its
 * stdin, and the server exits 0 (the stdio shutdown). It names itself NAME (serverInfo.name)
 * so that a test can tell its servers from everything else on the machine. A pipeline is a
 * child reading its stdin, a pipe, to the end: a few lines of text, or JSON lines without
 * "jsonrpc", alternately. Children are forked, not exec'd: what is measured is mcpsonde, not
 * the loader.
 *
 * Prints one JSON line: {"servers":N,"calls":C,"errors":E,"pipelines":M}, where calls are the
 * requests answered (initialize and tools/list included) and errors the exchanges that went
 * wrong (a child that did not answer or exited non-zero). Exit 0 when errors is 0. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LINE_MAX_BYTES 65536

static const char *server_name = "soak";

/* Reads one line from fd into buf (without the newline); false at EOF or error. Reads one
 * byte at a time beyond what is buffered: the peers here write one line per write. */
struct reader {
	int fd;
	char buf[LINE_MAX_BYTES];
	size_t len;
};

static bool read_line(struct reader *r, char *out, size_t cap)
{
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		ssize_t n;

		if (nl) {
			size_t k = (size_t)(nl - r->buf);

			if (k >= cap)
				return false;
			memcpy(out, r->buf, k);
			out[k] = '\0';
			memmove(r->buf, nl + 1, r->len - k - 1);
			r->len -= k + 1;
			return true;
		}
		if (r->len == sizeof(r->buf))
			return false;
		n = read(r->fd, r->buf + r->len, sizeof(r->buf) - r->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		r->len += (size_t)n;
	}
}

static bool write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/* --- the server ---------------------------------------------------------------------------- */

static void serve(void)
{
	static struct reader r = { .fd = 0 };
	static char line[LINE_MAX_BYTES];

	while (read_line(&r, line, sizeof(line))) {
		json_t *msg = json_loads(line, 0, NULL), *id = json_object_get(msg, "id");
		const char *method = json_string_value(json_object_get(msg, "method"));
		json_t *result = NULL, *resp;
		char *out;

		if (!method || !id) { /* a notification */
			json_decref(msg);
			continue;
		}
		if (strcmp(method, "initialize") == 0)
			result = json_pack("{s:s, s:{s:{}}, s:{s:s, s:s}}", "protocolVersion", "2025-11-25", "capabilities",
					   "tools", "serverInfo", "name", server_name, "version", "1.0.0");
		else if (strcmp(method, "tools/list") == 0)
			result = json_pack("{s:[{s:s, s:{s:s}}]}", "tools", "name", "echo", "inputSchema", "type", "object");
		else
			result = json_pack("{s:[{s:s, s:s}]}", "content", "type", "text", "text", "ok");
		resp = json_pack("{s:o, s:s, s:O}", "result", result, "jsonrpc", "2.0", "id", id);
		out = json_dumps(resp, JSON_COMPACT);
		if (!out || !write_all(1, out, strlen(out)) || !write_all(1, "\n", 1))
			_exit(2);
		free(out);
		json_decref(resp);
		json_decref(msg);
	}
	_exit(0);
}

/* --- the client ---------------------------------------------------------------------------- */

/* One request and its answer; false when the answer is not a result for this id. */
static bool exchange(int fd, struct reader *r, int id, const char *method, const char *params)
{
	char req[512], line[LINE_MAX_BYTES];
	json_t *resp;
	bool ok;

	snprintf(req, sizeof(req), "{\"jsonrpc\":\"2.0\",\"id\":%d,\"method\":\"%s\",\"params\":%s}\n", id, method,
		 params);
	if (!write_all(fd, req, strlen(req)) || !read_line(r, line, sizeof(line)))
		return false;
	resp = json_loads(line, 0, NULL);
	ok = json_integer_value(json_object_get(resp, "id")) == id && json_object_get(resp, "result");
	json_decref(resp);
	return ok;
}

/* Starts a server, runs its session, closes its stdin and reaps it: the calls answered, or
 * -1 when something went wrong. */
static int one_server(void)
{
	static struct reader r;
	static const char *const calls[][2] = {
		{ "initialize", "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},"
				"\"clientInfo\":{\"name\":\"soak\",\"version\":\"1\"}}" },
		{ "tools/list", "{}" },
		{ "tools/call", "{\"name\":\"echo\",\"arguments\":{\"message\":\"one\"}}" },
		{ "tools/call", "{\"name\":\"echo\",\"arguments\":{\"message\":\"two\"}}" },
		{ "tools/call", "{\"name\":\"echo\",\"arguments\":{\"message\":\"three\"}}" },
	};
	static const char initialized[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
	int sv[2], status, answered = 0;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		/* forked, not exec'd: close-on-exec closes nothing, and holding the client's end
		 * would keep the EOF from ever coming */
		if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0)
			_exit(2);
		close(sv[0]);
		close(sv[1]);
		serve();
	}
	close(sv[1]);
	r.fd = sv[0];
	r.len = 0;
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		if (!exchange(sv[0], &r, (int)i, calls[i][0], calls[i][1]))
			break;
		answered++;
		if (i == 0 && !write_all(sv[0], initialized, sizeof(initialized) - 1))
			break;
	}
	close(sv[0]);
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return -1;
	return answered == (int)(sizeof(calls) / sizeof(calls[0])) ? answered : -1;
}

/* A child that reads a pipe to its end: false when it did not exit 0. */
static bool one_pipeline(unsigned i)
{
	/* enough whole lines for the kernel to give the stdin up before the end */
	static const char text[] = "lorem ipsum dolor sit amet\nconsectetur adipiscing elit\nsed do eiusmod\n"
				   "tempor incididunt\nut labore et dolore\n";
	static const char lines[] = "{\"id\":1,\"method\":\"x\",\"params\":{}}\n{\"id\":2,\"method\":\"y\"}\n"
				    "{\"id\":3,\"method\":\"z\"}\n{\"id\":4,\"method\":\"x\"}\n{\"id\":5}\n";
	int p[2], status;
	pid_t pid;

	if (pipe(p) < 0 || (pid = fork()) < 0)
		return false;
	if (pid == 0) {
		char buf[4096];
		ssize_t n;

		close(p[1]);
		if (dup2(p[0], 0) < 0)
			_exit(2);
		close(p[0]);
		while ((n = read(0, buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
			;
		_exit(n == 0 ? 0 : 2);
	}
	close(p[0]);
	if (i % 2)
		write_all(p[1], lines, sizeof(lines) - 1);
	else
		write_all(p[1], text, sizeof(text) - 1);
	close(p[1]);
	return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "servers", required_argument, NULL, 's' },
		{ "pipelines", required_argument, NULL, 'p' },
		{ "name", required_argument, NULL, 'n' },
		{ 0 },
	};
	unsigned long servers = 0, pipelines = 0, calls = 0, errors = 0;
	unsigned long s = 0, p = 0;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			servers = strtoul(optarg, NULL, 10);
			break;
		case 'p':
			pipelines = strtoul(optarg, NULL, 10);
			break;
		case 'n':
			server_name = optarg;
			break;
		default:
			fprintf(stderr, "usage: soak --servers N --pipelines M --name NAME\n");
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	/* Interleaved: ten pipelines per server, as they come on a node. */
	while (s < servers || p < pipelines) {
		if (s < servers) {
			int n = one_server();

			n < 0 ? errors++ : (calls += (unsigned long)n);
			s++;
		}
		for (int k = 0; k < 10 && p < pipelines; k++, p++)
			errors += !one_pipeline((unsigned)p);
	}
	printf("{\"servers\":%lu,\"calls\":%lu,\"errors\":%lu,\"pipelines\":%lu}\n", servers, calls, errors, pipelines);
	return errors ? 1 : 0;
}

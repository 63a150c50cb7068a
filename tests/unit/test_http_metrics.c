/* test_http_metrics.c -- /metrics over real sockets while hostile clients hang on.
 *
 * 1,000 connections that never send a byte and 48 that dribble a request one header line at
 * a time (each line resets libmicrohttpd's own idle timeout) once took every connection slot:
 * no scrape got through. Scrapes must all succeed while these hang on, and the server must
 * cut every one of them at its deadline. Waits are generous and only for things to happen;
 * nothing here asserts how fast. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "mcpsonde/metrics.h"

#define IDLE 1000
#define DRIBBLERS 48
#define SCRAPES 60
#define CUT_WAIT_S 90 /* the server's deadlines are 10 s; this only bounds a broken run */
#define FDS_NEEDED (2 * (IDLE + DRIBBLERS) + 4096 + 512) /* both ends, and the server's own room */

static const char body[] = "# HELP up Whether the target is up.\n# TYPE up gauge\nup 1\n";

static int connect_to(unsigned port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct timeval tv = { .tv_sec = 30 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	/* A scrape that is not answered fails the test instead of hanging it. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0)
		fail_msg("connect: %s", strerror(errno));
	return fd;
}

/* One scrape on a new connection; true when it got a 200 with the published body. */
static bool scrape(unsigned port)
{
	static const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	char resp[8192];
	size_t len = 0;
	ssize_t n;
	int fd = connect_to(port);

	if (write(fd, req, sizeof(req) - 1) != (ssize_t)sizeof(req) - 1) {
		close(fd);
		return false;
	}
	while (len < sizeof(resp) - 1 && (n = read(fd, resp + len, sizeof(resp) - 1 - len)) > 0)
		len += (size_t)n;
	resp[len] = '\0';
	close(fd);
	return strncmp(resp, "HTTP/1.1 200", 12) == 0 && strstr(resp, body);
}

struct dribble {
	unsigned port;
	int fds[DRIBBLERS];
	bool cut[DRIBBLERS];
	atomic_bool stop;
};

/* Every 200 ms, one more header line on each dribbler still open: each line is activity, so
 * only a deadline on the whole request can end them. A failed send is the server's cut. */
static void *dribble_run(void *arg)
{
	struct dribble *d = arg;
	unsigned line = 0;

	for (int i = 0; i < DRIBBLERS; i++) {
		static const char start[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
		d->fds[i] = connect_to(d->port);
		if (send(d->fds[i], start, sizeof(start) - 1, MSG_NOSIGNAL) < 0)
			d->cut[i] = true;
	}
	while (!atomic_load(&d->stop)) {
		char hdr[64];
		int n = snprintf(hdr, sizeof(hdr), "X-Slow-%u: %u\r\n", line, line);
		line++;
		for (int i = 0; i < DRIBBLERS; i++)
			if (!d->cut[i] && send(d->fds[i], hdr, (size_t)n, MSG_NOSIGNAL) < 0)
				d->cut[i] = true;
		usleep(200 * 1000);
	}
	return NULL;
}

/* True once the server has closed fd: readable with EOF, or reset. */
static bool closed_by_peer(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, 0) <= 0)
		return false;
	return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static void test_scrapes_under_slowloris(void **state)
{
	struct rlimit rl;
	struct dribble d = { 0 };
	struct metrics_http *h;
	pthread_t thread;
	char err[256];
	int idle[IDLE], ok = 0, open_left;
	time_t until;
	(void)state;

	/* Both ends of every connection live in this process: raise the limit (root may raise
	 * the hard one too); skip only where neither is possible. */
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FDS_NEEDED) {
		rl.rlim_max = FDS_NEEDED;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			print_message("skipped: RLIMIT_NOFILE cannot reach %d here (not root)\n", FDS_NEEDED);
			skip();
		}
	}
	rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? FDS_NEEDED : rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);

	h = metrics_http_start("127.0.0.1:0", err, sizeof(err));
	assert_non_null(h);
	metrics_http_publish(h, strdup(body), strlen(body), NULL, 0);
	assert_true(scrape(metrics_http_port(h)));

	for (int i = 0; i < IDLE; i++)
		idle[i] = connect_to(metrics_http_port(h));
	d.port = metrics_http_port(h);
	assert_int_equal(pthread_create(&thread, NULL, dribble_run, &d), 0);
	usleep(500 * 1000); /* let the dribblers connect and start */

	for (int i = 0; i < SCRAPES; i++)
		ok += scrape(metrics_http_port(h));
	assert_int_equal(ok, SCRAPES);

	/* Every idle and dribbling connection is cut by the server, dribbling notwithstanding. */
	until = time(NULL) + CUT_WAIT_S;
	do {
		open_left = 0;
		for (int i = 0; i < IDLE; i++)
			if (idle[i] >= 0 && closed_by_peer(idle[i])) {
				close(idle[i]);
				idle[i] = -1;
			}
		for (int i = 0; i < IDLE; i++)
			open_left += idle[i] >= 0;
		for (int i = 0; i < DRIBBLERS; i++)
			open_left += !d.cut[i];
		if (open_left)
			usleep(100 * 1000);
	} while (open_left && time(NULL) < until);
	atomic_store(&d.stop, true);
	pthread_join(thread, NULL);
	assert_int_equal(open_left, 0);
	assert_true(metrics_http_cut(h) >= IDLE + DRIBBLERS);

	/* And scrapes still work after the storm. */
	assert_true(scrape(metrics_http_port(h)));
	for (int i = 0; i < DRIBBLERS; i++)
		close(d.fds[i]);
	metrics_http_stop(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scrapes_under_slowloris),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

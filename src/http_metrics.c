/* http_metrics.c -- GET /metrics and GET /servers over libmicrohttpd, from published snapshots.
 *
 * The server runs in a thread of ours that drives libmicrohttpd (epoll, MHD_run_wait). It
 * never reads the registry: the pipeline thread renders a snapshot and calls
 * metrics_http_publish(), which swaps a pointer under a mutex. A scrape takes a reference to
 * the current snapshot under the same mutex and releases it when libmicrohttpd is done
 * sending, so neither thread ever waits on the other for longer than a pointer swap and a
 * reference count.
 *
 * Slow and idle clients cannot starve scrapes (slowloris): libmicrohttpd's own idle timeout
 * is reset by every byte, so a client dribbling header lines would hold its connection
 * forever. Every connection therefore has deadlines of ours: a complete request within
 * HTTP_REQUEST_DEADLINE_MS of its opening (or of its previous response, for keep-alive),
 * and its response sent within HTTP_RESPONSE_DEADLINE_MS. Between two rounds of
 * libmicrohttpd, in the same thread, a connection past its deadline is shut down (never
 * closed: the fd stays libmicrohttpd's until it reports the connection closed, so no fd is
 * ever reused under it). Connections are tracked in two lists, each in deadline order (a
 * deadline is "now + a constant of the list"), so a sweep looks at expired ones only.
 * With epoll there is no FD_SETSIZE ceiling: HTTP_CONN_MAX connections (RLIMIT_NOFILE is
 * raised for them), at most half from one address, 16 KiB of memory each. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "mcpsonde/metrics.h"

#define HTTP_CONN_MAX 4096
#define HTTP_CONN_MEMORY (16u << 10)
#define HTTP_REQUEST_DEADLINE_MS 10000u
#define HTTP_RESPONSE_DEADLINE_MS 30000u
#define HTTP_ROUND_MS 100 /* longest wait in one libmicrohttpd round: sweep and stop latency */
#define HTTP_FDS_SPARE 256 /* descriptors left for everything else mcpsonde opens */

/* An immutable rendered exposition; data is what libmicrohttpd sends. */
struct blob {
	atomic_int refs;
	size_t len;
	char data[];
};

/* One TCP connection, from libmicrohttpd's STARTED notification to its CLOSED one. */
struct http_conn {
	struct http_conn *prev, *next;
	struct http_conn_list *list; /* NULL once shut down */
	int fd;
	uint64_t deadline_ms;
};

struct http_conn_list {
	struct http_conn *head, *tail; /* deadline order */
	unsigned deadline_ms;
};

struct metrics_http {
	struct MHD_Daemon *daemon;
	pthread_t thread;
	atomic_bool stop;
	pthread_mutex_t lock;
	struct blob *text, *om; /* current snapshot; om NULL until rendered */
	struct blob *servers;   /* GET /servers: the inventory (NULL: 503 until published) */
	atomic_uint_fast64_t scrapes, cut;
	unsigned port;
	/* Server thread only: */
	struct http_conn_list awaiting_request, responding;
};

static struct blob *blob_from(char *p, size_t len)
{
	struct blob *b;

	if (!p)
		return NULL;
	b = malloc(sizeof(*b) + len + 1);
	if (b) {
		atomic_init(&b->refs, 1);
		b->len = len;
		memcpy(b->data, p, len);
		b->data[len] = '\0';
	}
	free(p);
	return b;
}

static void blob_unref(struct blob *b)
{
	if (b && atomic_fetch_sub(&b->refs, 1) == 1)
		free(b);
}

static void blob_release_data(void *data)
{
	blob_unref((struct blob *)((char *)data - offsetof(struct blob, data)));
}

static uint64_t http_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void http_conn_unlink(struct http_conn *c)
{
	struct http_conn_list *l = c->list;

	if (!l)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->list = NULL;
}

/* (Re)starts the connection's clock: it must leave list l within l's deadline. */
static void http_conn_arm(struct http_conn *c, struct http_conn_list *l)
{
	http_conn_unlink(c);
	c->deadline_ms = http_now_ms() + l->deadline_ms;
	c->list = l;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

static void http_sweep_list(struct metrics_http *h, struct http_conn_list *l, uint64_t now)
{
	while (l->head && l->head->deadline_ms <= now) {
		struct http_conn *c = l->head;
		http_conn_unlink(c);
		shutdown(c->fd, SHUT_RDWR); /* libmicrohttpd sees the end and closes it */
		atomic_fetch_add(&h->cut, 1);
	}
}

static void http_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
			       enum MHD_ConnectionNotificationCode code)
{
	struct metrics_http *h = cls;
	struct http_conn *c = *socket_context;
	const union MHD_ConnectionInfo *ci;

	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (c) {
			http_conn_unlink(c);
			free(c);
		}
		return;
	}
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	c = calloc(1, sizeof(*c));
	if (!c || !ci) {
		free(c);
		return; /* untracked: libmicrohttpd's own idle timeout still applies */
	}
	c->fd = ci->connect_fd;
	http_conn_arm(c, &h->awaiting_request);
	*socket_context = c;
}

static struct http_conn *http_conn_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

/* A response is done (or the request failed): the next request has its own deadline. */
static void http_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			      enum MHD_RequestTerminationCode toe)
{
	struct metrics_http *h = cls;
	struct http_conn *c = http_conn_of(conn);

	(void)con_cls, (void)toe;
	if (c && c->list)
		http_conn_arm(c, &h->awaiting_request);
}

static enum MHD_Result http_reply_static(struct MHD_Connection *conn, unsigned status, const char *body)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result http_reply_blob(struct MHD_Connection *conn, struct blob *b, const char *type)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(b->len, b->data, blob_release_data);
	enum MHD_Result ret;

	if (!resp) {
		blob_unref(b);
		return MHD_NO;
	}
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	ret = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				   const char *version, const char *upload_data, size_t *upload_data_size,
				   void **con_cls)
{
	struct metrics_http *h = cls;
	enum metrics_format fmt;
	struct blob *b;

	(void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
	/* The request is complete (headers in): now the response has its deadline. */
	struct http_conn *c = http_conn_of(conn);
	if (c && c->list)
		http_conn_arm(c, &h->responding);
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return http_reply_static(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/") == 0)
		return http_reply_static(conn, MHD_HTTP_OK, "mcpsonde: metrics at /metrics, the inventory at /servers\n");
	if (strcmp(url, "/metrics") != 0 && strcmp(url, "/servers") != 0)
		return http_reply_static(conn, MHD_HTTP_NOT_FOUND, "not found\n");

	fmt = metrics_negotiate(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT));
	pthread_mutex_lock(&h->lock);
	if (fmt == METRICS_OPENMETRICS && !h->om)
		fmt = METRICS_TEXT; /* before the first publish: text is always acceptable */
	b = url[1] == 's' ? h->servers : fmt == METRICS_OPENMETRICS ? h->om : h->text;
	if (b)
		atomic_fetch_add(&b->refs, 1);
	pthread_mutex_unlock(&h->lock);
	if (!b)
		return http_reply_static(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "no snapshot yet\n");
	if (url[1] == 's')
		return http_reply_blob(conn, b, "application/json");

	atomic_fetch_add(&h->scrapes, 1);
	return http_reply_blob(conn, b, metrics_content_type(fmt));
}

/* "127.0.0.1:9464", "[::1]:9464", ":9464" (loopback), "localhost:9464". */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, socklen_t *sslen, char *err, size_t errlen)
{
	char host[128];
	const char *colon, *port_s;
	char *end;
	long port;

	memset(ss, 0, sizeof(*ss));
	if (listen[0] == '[') {
		const char *close = strchr(listen, ']');
		if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof(host))
			goto bad;
		memcpy(host, listen + 1, close - listen - 1);
		host[close - listen - 1] = '\0';
		port_s = close + 2;
	} else {
		colon = strrchr(listen, ':');
		if (!colon || (size_t)(colon - listen) >= sizeof(host))
			goto bad;
		memcpy(host, listen, colon - listen);
		host[colon - listen] = '\0';
		port_s = colon + 1;
	}
	port = strtol(port_s, &end, 10);
	if (!*port_s || *end || port < 0 || port > 65535)
		goto bad;
	if (!host[0] || strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");

	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		*sslen = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		*sslen = sizeof(*sin6);
		return 0;
	}
bad:
	snprintf(err, errlen, "--metrics %s: expected ADDR:PORT with a numeric address (127.0.0.1:9464, [::1]:9464)",
		 listen);
	return -1;
}

/* The listening socket is ours, so that a failure says why (in use, not a local address). */
static int listen_socket(const char *listen_addr, unsigned *port, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	int fd, one = 1;

	if (parse_listen(listen_addr, &ss, &sslen, err, errlen) < 0)
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, SOMAXCONN) < 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0) {
		snprintf(err, errlen, "--metrics %s: cannot listen: %s", listen_addr, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* Room for HTTP_CONN_MAX connections: raises the soft RLIMIT_NOFILE as far as the hard
 * one allows (epoll has no FD_SETSIZE limit), and returns how many connections fit. */
static unsigned http_conn_limit(void)
{
	struct rlimit rl;
	rlim_t want = HTTP_CONN_MAX + HTTP_FDS_SPARE;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return 64;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
		return HTTP_CONN_MAX;
	return rl.rlim_cur > HTTP_FDS_SPARE + 64 ? (unsigned)(rl.rlim_cur - HTTP_FDS_SPARE) : 64;
}

/* The server thread: a round of libmicrohttpd (accept, read, answer, its own timeouts),
 * then our deadlines, until metrics_http_stop. */
static void *http_serve(void *arg)
{
	struct metrics_http *h = arg;

	while (!atomic_load(&h->stop)) {
		uint64_t now;
		if (MHD_run_wait(h->daemon, HTTP_ROUND_MS) != MHD_YES)
			usleep(HTTP_ROUND_MS * 1000); /* not expected: never spin */
		now = http_now_ms();
		http_sweep_list(h, &h->awaiting_request, now);
		http_sweep_list(h, &h->responding, now);
	}
	return NULL;
}

struct metrics_http *metrics_http_start(const char *listen_addr, char *err, size_t errlen)
{
	struct metrics_http *h;
	sigset_t all, saved;
	unsigned limit;
	int fd, ret;

	if (!(h = calloc(1, sizeof(*h)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((fd = listen_socket(listen_addr, &h->port, err, errlen)) < 0) {
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	h->awaiting_request.deadline_ms = HTTP_REQUEST_DEADLINE_MS;
	h->responding.deadline_ms = HTTP_RESPONSE_DEADLINE_MS;
	limit = http_conn_limit();
	h->daemon = MHD_start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, http_handle, h, MHD_OPTION_LISTEN_SOCKET, fd,
				     MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
				     limit / 2, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_CONN_MEMORY,
				     MHD_OPTION_CONNECTION_TIMEOUT, HTTP_RESPONSE_DEADLINE_MS / 1000,
				     MHD_OPTION_NOTIFY_CONNECTION, http_on_connection, h, MHD_OPTION_NOTIFY_COMPLETED,
				     http_on_completed, h, MHD_OPTION_END);
	if (!h->daemon) {
		snprintf(err, errlen, "--metrics %s: cannot start the HTTP server", listen_addr);
		close(fd);
		goto fail;
	}
	/* The server thread blocks every signal: SIGINT and SIGTERM keep going to the event
	 * loop's signalfd, whenever this runs. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	ret = pthread_create(&h->thread, NULL, http_serve, h);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (ret != 0) {
		snprintf(err, errlen, "--metrics %s: cannot start the HTTP thread: %s", listen_addr, strerror(ret));
		MHD_stop_daemon(h->daemon); /* closes the listening socket too */
		goto fail;
	}
	return h;
fail:
	pthread_mutex_destroy(&h->lock);
	free(h);
	return NULL;
}

void metrics_http_publish(struct metrics_http *h, char *text, size_t text_len, char *om, size_t om_len)
{
	struct blob *bt = blob_from(text, text_len), *bo = blob_from(om, om_len), *old_t, *old_o;

	pthread_mutex_lock(&h->lock);
	old_t = h->text;
	old_o = h->om;
	/* a failed render keeps the previous snapshot in service rather than nothing */
	if (bt)
		h->text = bt;
	else
		old_t = NULL;
	if (bo)
		h->om = bo;
	else
		old_o = NULL;
	pthread_mutex_unlock(&h->lock);
	blob_unref(old_t);
	blob_unref(old_o);
}

void metrics_http_publish_servers(struct metrics_http *h, char *json, size_t len)
{
	struct blob *b = blob_from(json, len), *old;

	if (!b)
		return;
	pthread_mutex_lock(&h->lock);
	old = h->servers;
	h->servers = b;
	pthread_mutex_unlock(&h->lock);
	blob_unref(old);
}

unsigned metrics_http_port(const struct metrics_http *h)
{
	return h->port;
}

uint64_t metrics_http_scrapes(const struct metrics_http *h)
{
	return atomic_load(&h->scrapes);
}

uint64_t metrics_http_cut(const struct metrics_http *h)
{
	return atomic_load(&h->cut);
}

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	atomic_store(&h->stop, true);
	pthread_join(h->thread, NULL);
	MHD_stop_daemon(h->daemon); /* closes every connection; responses in flight are released */
	blob_unref(h->text);
	blob_unref(h->om);
	blob_unref(h->servers);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

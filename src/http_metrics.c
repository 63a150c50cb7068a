/* http_metrics.c -- GET /metrics and GET /servers over libmicrohttpd, from published snapshots.
 *
 * The server runs in libmicrohttpd's own thread. It never reads the registry: the
 * pipeline thread renders a snapshot and calls metrics_http_publish(), which swaps a
 * pointer under a mutex. A scrape takes a reference to the current snapshot under the
 * same mutex and releases it when libmicrohttpd is done sending, so neither thread ever
 * waits on the other for longer than a pointer swap and a reference count. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "mcpsonde/metrics.h"

/* An immutable rendered exposition; data is what libmicrohttpd sends. */
struct blob {
	atomic_int refs;
	size_t len;
	char data[];
};

struct metrics_http {
	struct MHD_Daemon *daemon;
	pthread_mutex_t lock;
	struct blob *text, *om; /* current snapshot; om NULL until rendered */
	struct blob *servers;   /* GET /servers: the inventory (NULL: 404) */
	atomic_uint_fast64_t scrapes;
	unsigned port;
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
	    bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, 64) < 0 ||
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

struct metrics_http *metrics_http_start(const char *listen_addr, char *err, size_t errlen)
{
	struct metrics_http *h;
	sigset_t all, saved;
	int fd;

	if (!(h = calloc(1, sizeof(*h)))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((fd = listen_socket(listen_addr, &h->port, err, errlen)) < 0) {
		free(h);
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	/* The server thread inherits the signal mask: with every signal blocked there,
	 * SIGINT and SIGTERM keep going to the event loop's signalfd, whenever this runs. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &saved);
	h->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, http_handle, h,
				     MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 16u,
				     MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (!h->daemon) {
		snprintf(err, errlen, "--metrics %s: cannot start the HTTP server", listen_addr);
		close(fd);
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	return h;
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

void metrics_http_stop(struct metrics_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon); /* joins the thread; responses in flight are released */
	blob_unref(h->text);
	blob_unref(h->om);
	blob_unref(h->servers);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

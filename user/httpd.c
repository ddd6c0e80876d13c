/* The agent's HTTP endpoint: a table of published documents, each an
 * immutable libmicrohttpd response.  MHD counts the references to a
 * response, so publishing swaps the table's pointer and drops the table's
 * reference: a client still reading the old body keeps it alive until it
 * is done, and nobody copies a document per request. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "httpd.h"
#include "prom.h"

/* Enough for Prometheus, a browser and a few scripts at once; more are
 * refused rather than allowed to pile up. */
#define HTTPD_MAX_CONNS 32
/* A client that sends or reads nothing for this long is dropped. */
#define HTTPD_TIMEOUT_S 10

struct page {
	char *key;			/* "/path" or "/path?k=v&..." */
	struct MHD_Response *resp;	/* the table's reference */
};

struct httpd {
	struct MHD_Daemon *d;
	int fd;                         /* the listening socket, until MHD owns it */
	char listen_on[80];
	unsigned port;
	pthread_mutex_t lock;		/* pages, npages, cap */
	struct page *pages;
	size_t npages, cap;
};

#define LISTEN_EXAMPLE "e.g. 127.0.0.1:9977 or [::1]:9977"

/* "ADDR:PORT" to a socket address.  Numeric only: a name could resolve to
 * several addresses, or to a public one when loopback was meant. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *sslen,
			char *err, size_t errlen)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *colon, *hs, *he, *p;
	unsigned long port = 0;
	bool v6 = s[0] == '[';

	if (v6) {
		hs = s + 1;
		he = strchr(hs, ']');
		colon = he && he[1] == ':' ? he + 1 : NULL;
	} else {
		hs = s;
		colon = he = strrchr(s, ':');
	}
	if (!colon || he == hs || !colon[1]) {
		snprintf(err, errlen, "--listen \"%s\": expected ADDR:PORT, " LISTEN_EXAMPLE, s);
		return -1;
	}
	for (p = colon + 1; *p; p++) {
		if (*p < '0' || *p > '9' || port > 65535)
			break;
		port = port * 10 + (*p - '0');
	}
	if (*p || port > 65535) {
		snprintf(err, errlen, "--listen \"%s\": the port must be a number from 0 to 65535 "
			 "(0 picks a free one)", s);
		return -1;
	}
	if ((size_t)(he - hs) >= sizeof(host))
		goto bad_addr;
	memcpy(host, hs, he - hs);
	host[he - hs] = '\0';

	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		*sslen = sizeof(*a);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) == 1)
			return 0;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		*sslen = sizeof(*a);
		if (inet_pton(AF_INET, host, &a->sin_addr) == 1)
			return 0;
	}
bad_addr:
	snprintf(err, errlen, "--listen \"%s\": the address must be a numeric IPv4 address "
		 "or an IPv6 one in brackets, " LISTEN_EXAMPLE, s);
	return -1;
}

/* Bound and listening before MHD sees it, so a failure here can be told
 * to the user with its errno instead of MHD's silence. */
static int open_listener(const char *listen_on, const struct sockaddr_storage *ss, socklen_t sslen,
			 unsigned *port, char *err, size_t errlen)
{
	int fd, one = 1, e;
	const char *hint = "";

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	/* A restarted agent must not wait out the old one's TIME_WAITs; a
	 * port someone still listens on stays refused. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* "[::]" means IPv6 only, as written, not every IPv4 address too. */
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, sslen) < 0 || listen(fd, HTTPD_MAX_CONNS) < 0)
		goto fail;

	struct sockaddr_storage got;
	socklen_t gotlen = sizeof(got);

	if (getsockname(fd, (struct sockaddr *)&got, &gotlen) < 0)
		goto fail;
	*port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
						: ((struct sockaddr_in *)&got)->sin_port);
	return fd;
fail:
	e = errno;
	if (fd >= 0)
		close(fd);
	if (e == EADDRNOTAVAIL)
		hint = " (no interface on this host has that address)";
	else if (e == EACCES)
		hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)";
	else if (e == EAFNOSUPPORT)
		hint = " (IPv6 is disabled on this host)";
	snprintf(err, errlen, "cannot listen on %s: %s%s; choose another --listen",
		 listen_on, strerror(e), hint);
	return -1;
}

struct req_key {
	struct strbuf b;
	size_t pathlen;	/* a decoded path may hold a '?' of its own */
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct req_key *k = cls;

	sb_printf(&k->b, "%c%s", k->b.len > k->pathlen ? '&' : '?', key);
	if (value)
		sb_printf(&k->b, "=%s", value);
	return MHD_YES;
}

/* A short text reply, made per request: only errors take this path. */
static enum MHD_Result reply_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static struct page *find_page(struct httpd *h, const char *key)
{
	for (size_t i = 0; i < h->npages; i++)
		if (!strcmp(h->pages[i].key, key))
			return &h->pages[i];
	return NULL;
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *conn, const char *url,
			     const char *method, const char *version, const char *upload_data,
			     size_t *upload_data_size, void **con_cls)
{
	struct httpd *h = cls;
	struct req_key k = { 0 };
	struct strbuf msg = { 0 };
	struct page *p;
	enum MHD_Result ret;

	/* Refused at once, before reading any body it sent: MHD then closes
	 * the connection, which suits a client that should not be here. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
		return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
				  "method not allowed: this agent only answers GET and HEAD\n");
	/* A reply queued on the first call also closes the connection; a
	 * scraper that keeps its connection open is spared a handshake per
	 * scrape if the reply waits for the second call. */
	if (!*con_cls) {
		*con_cls = h;
		return MHD_YES;
	}
	if (*upload_data_size) {
		*upload_data_size = 0;	/* a GET with a body: ignored */
		return MHD_YES;
	}

	/* MHD hands over the path without its query: put the arguments
	 * back, in the order sent, to match keys like "/graph.json?since=start". */
	sb_printf(&k.b, "%s", url);
	k.pathlen = k.b.len;
	MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_arg, &k);
	if (k.b.oom) {
		sb_free(&k.b);
		return MHD_NO;
	}

	pthread_mutex_lock(&h->lock);
	p = find_page(h, k.b.s);
	if (p) {
		/* Queued under the lock: MHD takes its own reference before a
		 * publish can drop the table's. */
		ret = MHD_queue_response(conn, MHD_HTTP_OK, p->resp);
		pthread_mutex_unlock(&h->lock);
		sb_free(&k.b);
		return ret;
	}
	/* The key as understood, so a client sees how its query was read;
	 * control bytes (a decoded %0A) would break the line, and a long
	 * URL is cut. */
	for (char *c = k.b.s; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	sb_printf(&msg, "not found: %.200s; ", k.b.s);
	if (!h->npages)
		sb_printf(&msg, "nothing is published yet\n");
	else {
		sb_printf(&msg, "this agent serves");
		for (size_t i = 0; i < h->npages; i++)
			sb_printf(&msg, " %s", h->pages[i].key);
		sb_putc(&msg, '\n');
	}
	pthread_mutex_unlock(&h->lock);
	ret = msg.oom ? MHD_NO : reply_text(conn, MHD_HTTP_NOT_FOUND, msg.s);
	sb_free(&k.b);
	sb_free(&msg);
	return ret;
}

int httpd_check_listen(const char *listen_on, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;

	return parse_listen(listen_on, &ss, &sslen, err, errlen);
}

struct httpd *httpd_open(const char *listen_on, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct httpd *h;

	if (parse_listen(listen_on, &ss, &sslen, err, errlen))
		return NULL;
	h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory starting the HTTP server");
		return NULL;
	}
	pthread_mutex_init(&h->lock, NULL);
	snprintf(h->listen_on, sizeof(h->listen_on), "%s", listen_on);
	h->fd = open_listener(listen_on, &ss, sslen, &h->port, err, errlen);
	if (h->fd < 0) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return NULL;
	}
	return h;
}

int httpd_serve(struct httpd *h, char *err, size_t errlen)
{
	sigset_t all, old;

	/* MHD's thread inherits this mask: with every signal blocked there,
	 * SIGINT and SIGTERM reach the collector, which owns shutdown. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL, serve, h,
				MHD_OPTION_LISTEN_SOCKET, h->fd,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)HTTPD_MAX_CONNS,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HTTPD_TIMEOUT_S,
				MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!h->d) {
		/* fd is not closed here: MHD closes a given socket on some of
		 * its failure paths, and a double close could hit another
		 * thread's file.  This failure is rare (no memory, no thread). */
		snprintf(err, errlen, "cannot start the HTTP server on %s (libmicrohttpd failed; out of "
			 "memory or threads?)", h->listen_on);
		h->fd = -1;
		return -1;
	}
	return 0;
}

struct httpd *httpd_start(const char *listen_on, char *err, size_t errlen)
{
	struct httpd *h = httpd_open(listen_on, err, errlen);

	if (h && httpd_serve(h, err, errlen)) {
		httpd_stop(h);
		return NULL;
	}
	return h;
}

unsigned httpd_port(const struct httpd *h)
{
	return h->port;
}

int httpd_publish(struct httpd *h, const char *key, const char *content_type,
		  const char *body, size_t len)
{
	struct MHD_Response *r, *old = NULL;
	struct page *p;
	char *k = NULL;

	r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (!r)
		goto oom;
	if (MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
	    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES)
		goto oom;

	pthread_mutex_lock(&h->lock);
	p = find_page(h, key);
	if (!p) {
		if (h->npages == h->cap) {
			size_t cap = h->cap ? 2 * h->cap : 8;
			struct page *v = realloc(h->pages, cap * sizeof(*v));

			if (!v)
				goto oom_locked;
			h->pages = v;
			h->cap = cap;
		}
		k = strdup(key);
		if (!k)
			goto oom_locked;
		p = &h->pages[h->npages++];
		*p = (struct page){ .key = k };
	}
	old = p->resp;
	p->resp = r;
	pthread_mutex_unlock(&h->lock);
	/* Only the table's reference: a response in flight holds its own. */
	if (old)
		MHD_destroy_response(old);
	return 0;
oom_locked:
	pthread_mutex_unlock(&h->lock);
oom:
	MHD_destroy_response(r);
	errno = ENOMEM;
	return -1;
}

void httpd_stop(struct httpd *h)
{
	if (!h)
		return;
	/* MHD closes the listening socket handed over to it; one never
	 * handed over is closed here. */
	if (h->d)
		MHD_stop_daemon(h->d);
	else if (h->fd >= 0)
		close(h->fd);
	for (size_t i = 0; i < h->npages; i++) {
		MHD_destroy_response(h->pages[i].resp);
		free(h->pages[i].key);
	}
	free(h->pages);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

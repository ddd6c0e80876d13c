/* httpd.c over real sockets: what a client gets for published, unknown and
 * republished paths and for other methods, and the one-line errors for
 * --listen values a user might give. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "httpd.h"

struct reply {
	int status;
	char *head;	/* status line and headers, NUL-terminated */
	char *body;
	size_t len;
};

static void reply_free(struct reply *r)
{
	free(r->head);
	*r = (struct reply){ 0 };
}

/* Connected, with a receive timeout so a server bug fails the test
 * instead of hanging it.  rcvbuf > 0 shrinks the receive buffer. */
static int dial(int family, unsigned port, int rcvbuf)
{
	struct sockaddr_storage ss = { 0 };
	struct timeval tv = { .tv_sec = 5 };
	socklen_t len;
	int fd = socket(family, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (rcvbuf)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*a);
	}
	assert_int_equal(connect(fd, (struct sockaddr *)&ss, len), 0);
	return fd;
}

static void send_all(int fd, const char *s)
{
	size_t n = strlen(s);

	assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Everything until the server closes, split into head and body. */
static void read_reply(int fd, struct reply *r)
{
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap + 1), *sep;
	ssize_t n;

	assert_non_null(buf);
	while ((n = recv(fd, buf + len, cap - len, 0)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
	}
	assert_int_equal(n, 0); /* closed, not timed out */
	buf[len] = '\0';
	close(fd);
	sep = strstr(buf, "\r\n\r\n");
	assert_non_null(sep);
	*sep = '\0';
	r->head = buf;
	r->body = sep + 4;
	r->len = len - (r->body - buf);
	assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &r->status), 1);
}

static void request(int family, unsigned port, const char *method, const char *target,
		    const char *extra, struct reply *r)
{
	char req[1024];
	int fd = dial(family, port, 0);

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: test\r\nConnection: close\r\n%s\r\n",
		 method, target, extra ? extra : "");
	send_all(fd, req);
	read_reply(fd, r);
}

static void get(unsigned port, const char *target, struct reply *r)
{
	request(AF_INET, port, "GET", target, NULL, r);
}

/* A header's value, or NULL; its line ends at the next \r. */
static const char *header(const struct reply *r, const char *name, char *buf, size_t len)
{
	size_t n = strlen(name);

	for (const char *l = strstr(r->head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
		const char *v = l + 2, *end;

		if (strncasecmp(v, name, n) || v[n] != ':')
			continue;
		v += n + 1;
		v += strspn(v, " ");
		end = strstr(v, "\r\n");
		snprintf(buf, len, "%.*s", end ? (int)(end - v) : (int)strlen(v), v);
		return buf;
	}
	return NULL;
}

static struct httpd *start_local(void)
{
	char err[256];
	struct httpd *h = httpd_start("127.0.0.1:0", err, sizeof(err));

	if (!h)
		fail_msg("%s", err);
	assert_int_not_equal(httpd_port(h), 0);
	return h;
}

static void test_serve(void **state)
{
	struct httpd *h = start_local();
	struct reply r = { 0 };
	char v[128], all[1024];
	size_t got = 0;
	ssize_t n;
	int fd;

	assert_int_equal(httpd_publish(h, "/metrics", "text/plain; version=0.0.4", "up 1\n", 5), 0);
	get(httpd_port(h), "/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 5);
	assert_memory_equal(r.body, "up 1\n", 5);
	assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "text/plain; version=0.0.4");
	assert_string_equal(header(&r, "Cache-Control", v, sizeof(v)), "no-store");
	reply_free(&r);

	/* HEAD: the same headers, the length of the body, no body. */
	request(AF_INET, httpd_port(h), "HEAD", "/metrics", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	assert_string_equal(header(&r, "Content-Length", v, sizeof(v)), "5");
	assert_string_equal(header(&r, "Content-Type", v, sizeof(v)), "text/plain; version=0.0.4");
	reply_free(&r);

	/* Keep-alive: a scraper's second request reuses its connection. */
	fd = dial(AF_INET, httpd_port(h), 0);
	send_all(fd, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n"
		     "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
	while ((n = recv(fd, all + got, sizeof(all) - 1 - got, 0)) > 0)
		got += n;
	close(fd);
	all[got] = '\0';
	assert_non_null(strstr(all, "HTTP/1.1 200"));
	assert_non_null(strstr(strstr(all, "HTTP/1.1 200") + 1, "HTTP/1.1 200"));

	/* An empty document is still a document. */
	assert_int_equal(httpd_publish(h, "/empty", "application/json", "", 0), 0);
	get(httpd_port(h), "/empty", &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	reply_free(&r);
	httpd_stop(h);
}

static void test_not_found_and_queries(void **state)
{
	struct httpd *h = start_local();
	struct reply r = { 0 };
	unsigned port = httpd_port(h);

	get(port, "/metrics", &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "not found: /metrics; nothing is published yet\n");
	reply_free(&r);

	httpd_publish(h, "/graph.json", "application/json", "{\"all\":1}", 9);
	httpd_publish(h, "/graph.json?since=start", "application/json", "{\"since\":1}", 11);
	httpd_publish(h, "/metrics", "text/plain", "up 1\n", 5);

	get(port, "/graph.json?since=start", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"since\":1}");
	reply_free(&r);
	get(port, "/graph.json", &r);
	assert_string_equal(r.body, "{\"all\":1}");
	reply_free(&r);
	/* An empty query is no query. */
	get(port, "/graph.json?", &r);
	assert_string_equal(r.body, "{\"all\":1}");
	reply_free(&r);

	/* One line naming every endpoint, query variants included. */
	get(port, "/nope", &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "not found: /nope; this agent serves /graph.json "
				    "/graph.json?since=start /metrics\n");
	reply_free(&r);
	/* A decoded newline must not break the one line. */
	get(port, "/a%0Ab", &r);
	assert_int_equal(r.status, 404);
	assert_string_equal(r.body, "not found: /a?b; this agent serves /graph.json "
				    "/graph.json?since=start /metrics\n");
	reply_free(&r);
	get(port, "/graph.json?since=yesterday", &r);
	assert_int_equal(r.status, 404);
	reply_free(&r);
	get(port, "/graph.json?since=start&x=1", &r);
	assert_int_equal(r.status, 404);
	reply_free(&r);
	httpd_stop(h);
}

static void test_methods(void **state)
{
	static const char *const methods[] = { "POST", "PUT", "DELETE", "OPTIONS", "PATCH" };
	struct httpd *h = start_local();
	struct reply r = { 0 };
	char v[64];

	httpd_publish(h, "/metrics", "text/plain", "up 1\n", 5);
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		request(AF_INET, httpd_port(h), methods[i], "/metrics",
			"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", &r);
		if (r.status != 405)
			fail_msg("%s: status %d", methods[i], r.status);
		assert_string_equal(header(&r, "Allow", v, sizeof(v)), "GET, HEAD");
		reply_free(&r);
	}
	/* Unknown paths too: the method is wrong whatever the path. */
	request(AF_INET, httpd_port(h), "POST", "/nope", "Content-Length: 0\r\n", &r);
	assert_int_equal(r.status, 405);
	reply_free(&r);
	httpd_stop(h);
}

#define BIG (8u << 20)

static void test_republish(void **state)
{
	struct httpd *h = start_local();
	struct reply r = { 0 };
	char *big = malloc(BIG), head[4096];
	size_t got = 0;
	ssize_t n;
	int fd;

	httpd_publish(h, "/g", "text/plain", "one", 3);
	get(httpd_port(h), "/g", &r);
	assert_string_equal(r.body, "one");
	reply_free(&r);
	httpd_publish(h, "/g", "application/json", "[2]", 3);
	get(httpd_port(h), "/g", &r);
	assert_string_equal(r.body, "[2]");
	assert_non_null(strstr(r.head, "application/json"));
	reply_free(&r);

	/* A client part way through a large body when a new one is
	 * published gets the whole old body; the next client the new one.
	 * Its small receive buffer keeps the server from having sent it all. */
	assert_non_null(big);
	memset(big, 'x', BIG);
	httpd_publish(h, "/g", "text/plain", big, BIG);
	fd = dial(AF_INET, httpd_port(h), 4096);
	send_all(fd, "GET /g HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
	n = recv(fd, head, sizeof(head), MSG_WAITALL);
	assert_int_equal(n, sizeof(head));
	memset(big, 'y', BIG);
	httpd_publish(h, "/g", "text/plain", big, BIG);
	memset(big, 0, BIG);
	got = n - (strstr(head, "\r\n\r\n") + 4 - head);
	memset(big, 'x', got);
	while ((n = recv(fd, big + got, BIG - got, 0)) > 0)
		got += n;
	close(fd);
	assert_int_equal(got, BIG);
	assert_int_equal(big[0], 'x');
	assert_null(memchr(big, 'y', BIG));
	assert_int_equal(big[BIG - 1], 'x');

	get(httpd_port(h), "/g", &r);
	assert_int_equal(r.len, BIG);
	assert_int_equal(r.body[0], 'y');
	assert_int_equal(r.body[BIG - 1], 'y');
	reply_free(&r);
	free(big);
	httpd_stop(h);
}

/* One thread serves everyone, so it must never wait on a client: one
 * that sent half a request and one that stopped reading a large body
 * leave the next client's answer as quick as ever. */
static void test_stuck_clients(void **state)
{
	struct httpd *h = start_local();
	struct reply r = { 0 };
	char *big = calloc(1, BIG);
	int half, slow;

	assert_non_null(big);
	httpd_publish(h, "/big", "text/plain", big, BIG);
	httpd_publish(h, "/metrics", "text/plain", "up 1\n", 5);
	half = dial(AF_INET, httpd_port(h), 0);
	send_all(half, "GET /metrics HTTP/1.1\r\nHost: te");
	slow = dial(AF_INET, httpd_port(h), 4096);
	send_all(slow, "GET /big HTTP/1.1\r\nHost: test\r\n\r\n");
	get(httpd_port(h), "/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "up 1\n");
	reply_free(&r);
	close(half);
	close(slow);
	free(big);
	httpd_stop(h);
}

static void test_ipv6(void **state)
{
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct reply r = { 0 };
	struct httpd *h;
	char err[256];

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		if (fd >= 0)
			close(fd);
		skip();
	}
	close(fd);
	h = httpd_start("[::1]:0", err, sizeof(err));
	if (!h)
		fail_msg("%s", err);
	httpd_publish(h, "/metrics", "text/plain", "up 1\n", 5);
	request(AF_INET6, httpd_port(h), "GET", "/metrics", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "up 1\n");
	reply_free(&r);
	httpd_stop(h);
}

static void expect_error(const char *listen, const char *needle)
{
	char err[256] = "";
	struct httpd *h = httpd_start(listen, err, sizeof(err));

	if (h) {
		httpd_stop(h);
		fail_msg("\"%s\" was accepted", listen);
	}
	if (!strstr(err, needle))
		fail_msg("\"%s\": unexpected error \"%s\"", listen, err);
	assert_null(strchr(err, '\n'));
}

static void test_bad_listen(void **state)
{
	expect_error("nonsense", "--listen \"nonsense\": expected ADDR:PORT, e.g. 127.0.0.1:9977 or [::1]:9977");
	expect_error("1.2.3.4:99999", "--listen \"1.2.3.4:99999\": the port must be a number from 0 to 65535");
	expect_error("127.0.0.1:123456789012345678901234567890", "number from 0 to 65535");
	expect_error("127.0.0.1:-1", "number from 0 to 65535");
	expect_error("127.0.0.1:80x", "number from 0 to 65535");
	expect_error("127.0.0.1", "expected ADDR:PORT");
	expect_error("127.0.0.1:", "expected ADDR:PORT");
	expect_error(":9977", "expected ADDR:PORT");
	expect_error("", "expected ADDR:PORT");
	expect_error("[::1]9977", "expected ADDR:PORT");
	expect_error("[::1:9977", "expected ADDR:PORT");
	expect_error("[]:9977", "expected ADDR:PORT");
	expect_error("localhost:9977", "must be a numeric IPv4 address or an IPv6 one in brackets");
	expect_error("::1:9977", "in brackets");
	expect_error("1.2.3:9977", "numeric IPv4");
	expect_error("[127.0.0.1]:9977", "numeric IPv4");
	/* TEST-NET-1: on no host's interfaces. */
	expect_error("192.0.2.1:9977", "cannot listen on 192.0.2.1:9977: Cannot assign requested address "
				       "(no interface on this host has that address); choose another --listen");
}

static void test_port_in_use(void **state)
{
	struct httpd *a = start_local(), *b;
	char listen[64], want[160], err[256];

	snprintf(listen, sizeof(listen), "127.0.0.1:%u", httpd_port(a));
	snprintf(want, sizeof(want), "cannot listen on %s: Address already in use; choose another --listen", listen);
	expect_error(listen, want);

	/* Stopping closes the listening socket: the port is free again. */
	httpd_stop(a);
	b = httpd_start(listen, err, sizeof(err));
	if (!b)
		fail_msg("%s", err);
	httpd_stop(b);
	httpd_stop(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serve),
		cmocka_unit_test(test_not_found_and_queries),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_republish),
		cmocka_unit_test(test_stuck_clients),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_bad_listen),
		cmocka_unit_test(test_port_in_use),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

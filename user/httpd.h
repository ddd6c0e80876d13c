/* The agent's HTTP endpoint (libmicrohttpd, one internal thread).  The
 * collector renders whole documents and publishes them; serving only hands
 * out the latest published bytes, so a request never waits on the
 * collector and a slow or stuck client never holds up either side. */
#ifndef SEAMS_HTTPD_H
#define SEAMS_HTTPD_H

#include <stddef.h>

struct httpd;

/* Listen on "ADDR:PORT": numeric IPv4 ("127.0.0.1:9977") or bracketed
 * IPv6 ("[::1]:9977"); port 0 picks a free one.  Only that address is
 * bound.  NULL with one line in err when the string is malformed or the
 * address cannot be bound ("cannot listen on ...: Address already in use;
 * choose another --listen"). */
struct httpd *httpd_start(const char *listen, char *err, size_t errlen);

/* Only whether listen is well formed: 0, or -1 with one line in err. */
int httpd_check_listen(const char *listen, char *err, size_t errlen);

/* httpd_start() in two steps: bind now (so a bad address or a port in
 * use fails before anything else is set up), serve later (so the server's
 * thread starts after the caller has dropped its privileges).  A failed
 * httpd_serve() still needs httpd_stop(). */
struct httpd *httpd_open(const char *listen, char *err, size_t errlen);
int httpd_serve(struct httpd *h, char *err, size_t errlen);

/* The port actually bound: the chosen one when asked for port 0. */
unsigned httpd_port(const struct httpd *h);

/* Serve a copy of body at key: a path ("/metrics"), or a path and its
 * query ("/graph.json?since=start"), matched exactly against the
 * request's path and arguments in the order sent.  Thread-safe; replaces
 * the previous body at once, while responses already under way finish
 * with the one they started.  0, or -1 with errno ENOMEM. */
int httpd_publish(struct httpd *h, const char *key, const char *content_type,
		  const char *body, size_t len);

/* Close the listening socket and every connection, and free h.  NULL is
 * fine.  No httpd_publish() may run concurrently. */
void httpd_stop(struct httpd *h);

#endif

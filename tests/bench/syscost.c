/* syscost: what seams adds to one syscall, by kind, for
 * tests/bench/syscall_cost.sh.  One thread, no blocking, so the time is CPU
 * only and steadier than a throughput benchmark on a noisy 2-core machine.
 *
 *   syscost PORT ITERATIONS [KIND]
 *
 * Listens on 127.0.0.1:PORT (give seams --pg-port PORT) and on a second free
 * port, and prints the nanoseconds per iteration of the fastest of 20
 * batches of:
 *   other  getppid(): a syscall seams does not hook beyond its number
 *   file   read() of 1 byte from /dev/zero: a data syscall on a non-socket
 *   tcp    write/read/write/read of 64 bytes over loopback TCP, not PostgreSQL
 *   pg     the same round trip speaking PostgreSQL: a Query "SELECT 1" from
 *          the client, CommandComplete and ReadyForQuery back
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* A connected pair over loopback: *cli connects to the listener on port
 * (0: any free port), *srv is the accepted end. */
static void tcp_pair(int port, int *cli, int *srv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	socklen_t alen = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &alen))
		die("listen");
	*cli = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*cli, (struct sockaddr *)&a, sizeof(a)))
		die("connect");
	*srv = accept(l, NULL, NULL);
	if (*srv < 0)
		die("accept");
	setsockopt(*cli, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*srv, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	close(l);
}

static void xfer(int from, int to, const void *msg, size_t n)
{
	char buf[256];
	size_t got = 0;

	if (write(from, msg, n) != (ssize_t)n)
		die("write");
	while (got < n) {
		ssize_t r = read(to, buf, sizeof(buf));

		if (r <= 0)
			die("read");
		got += r;
	}
}

/* Iterations run in 20 batches; the fastest batch is reported, since on a
 * shared machine interference only ever adds time. */
#define BATCHES 20
#define TIMED(kind, body)                                                          \
	do {                                                                       \
		double best = 0;                                                   \
		if (!want(only, kind))                                             \
			break;                                                     \
		for (int b = 0; b < BATCHES; b++) {                                \
			double t0 = now_ns(), per;                                 \
			for (long i = 0; i < iters / BATCHES; i++) {               \
				body;                                              \
			}                                                          \
			per = (now_ns() - t0) / (iters / BATCHES);                 \
			if (!b || per < best)                                      \
				best = per;                                        \
		}                                                                  \
		printf("%s %.1f\n", kind, best);                                   \
	} while (0)

static int want(const char *only, const char *kind)
{
	return !only || !strcmp(only, kind);
}

static void put32(unsigned char *p, uint32_t v)
{
	v = htonl(v);
	memcpy(p, &v, 4);
}

int main(int argc, char **argv)
{
	unsigned char startup[64], query[64], reply[64];
	char pad[64] = "not postgres";
	long iters;
	int pgport, zero, c, s, tc, ts;
	size_t sl = 0, ql, rl;
	const char *only;

	if (argc != 3 && argc != 4)
		return fprintf(stderr, "usage: syscost PORT ITERATIONS [other|file|tcp|pg]\n"), 2;
	pgport = atoi(argv[1]);
	iters = atol(argv[2]);
	only = argc == 4 ? argv[3] : NULL;

	/* StartupMessage: protocol 3.0, user and database "bench". */
	sl = 8;
	memcpy(startup + sl, "user\0bench\0database\0bench\0\0", 27);
	sl += 27;
	put32(startup, sl);
	put32(startup + 4, 3 << 16);
	query[0] = 'Q';
	memcpy(query + 5, "SELECT 1", 9);
	ql = 5 + 9;
	put32(query + 1, ql - 1);
	reply[0] = 'C';
	memcpy(reply + 5, "SELECT 1", 9);
	put32(reply + 1, 4 + 9);
	rl = 14;
	reply[rl] = 'Z';
	put32(reply + rl + 1, 5);
	reply[rl + 5] = 'I';
	rl += 6;

	TIMED("other", getppid());

	zero = open("/dev/zero", O_RDONLY);
	if (zero < 0)
		die("/dev/zero");
	TIMED("file", if (read(zero, pad, 1) != 1) die("read /dev/zero"));

	tcp_pair(0, &tc, &ts);
	TIMED("tcp", xfer(tc, ts, pad, sizeof(pad)); xfer(ts, tc, pad, sizeof(pad)));

	tcp_pair(pgport, &c, &s);
	xfer(c, s, startup, sl);
	xfer(s, c, reply + 14, 6);
	TIMED("pg", xfer(c, s, query, ql); xfer(s, c, reply, rl));
	return 0;
}

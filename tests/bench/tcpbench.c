/* tcpbench: a loopback request/response load for tests/bench/tcp_overhead.sh.
 *
 *   tcpbench server PORT
 *       thread per connection; reads 64-byte requests, answers 64 bytes;
 *       closes after the answer when the request starts with 'S'.
 *   tcpbench client PORT SECONDS SHORT_THREADS CHATTY
 *       SHORT_THREADS threads doing connect / request / response / close
 *       (the server closes first, so the client keeps no TIME_WAIT), and
 *       CHATTY long-lived connections doing request/response as fast as they
 *       can.  Prints "connections N round_trips M errors E seconds S".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static int port;
static atomic_int stop;
static atomic_long conns, rtts, errors;

static int full(int fd, char *buf, int n, int writing)
{
	int done = 0;

	while (done < n) {
		ssize_t r = writing ? write(fd, buf + done, n - done) : read(fd, buf + done, n - done);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -1 : done;
		done += r;
	}
	return done;
}

static void *serve_conn(void *arg)
{
	int fd = (int)(long)arg;
	char buf[MSG];

	while (full(fd, buf, MSG, 0) == MSG) {
		if (full(fd, buf, MSG, 1) != MSG || buf[0] == 'S')
			break;
	}
	close(fd);
	return NULL;
}

static int server(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, ls = socket(AF_INET, SOCK_STREAM, 0);
	pthread_attr_t attr;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (void *)&a, sizeof(a)) || listen(ls, 4096)) {
		perror("tcpbench: bind/listen");
		return 1;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	for (;;) {
		int fd = accept(ls, NULL, NULL);
		pthread_t t;

		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (pthread_create(&t, &attr, serve_conn, (void *)(long)fd))
			close(fd);
	}
}

static int dial(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
	int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (void *)&a, sizeof(a))) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static void *short_loop(void *arg)
{
	char buf[MSG];

	while (!stop) {
		int fd = dial();

		memset(buf, 'S', MSG);
		if (fd < 0 || full(fd, buf, MSG, 1) != MSG || full(fd, buf, MSG, 0) != MSG ||
		    read(fd, buf, 1) != 0) {
			errors++;
			if (fd >= 0)
				close(fd);
			continue;
		}
		close(fd);
		conns++;
	}
	return NULL;
}

static void *chatty_loop(void *arg)
{
	char buf[MSG];
	int fd = dial();

	if (fd < 0) {
		errors++;
		return NULL;
	}
	memset(buf, 'C', MSG);
	while (!stop) {
		if (full(fd, buf, MSG, 1) != MSG || full(fd, buf, MSG, 0) != MSG) {
			errors++;
			break;
		}
		buf[0] = 'C';
		rtts++;
	}
	close(fd);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "server")) {
		port = atoi(argv[2]);
		return server();
	}
	if (argc >= 6 && !strcmp(argv[1], "client")) {
		double secs = atof(argv[3]);
		int n = atoi(argv[4]), m = atoi(argv[5]), k = 0;
		pthread_t t[128];
		struct timespec a, b;

		port = atoi(argv[2]);
		if (n < 0 || n > 64)
			n = 1;
		if (m < 0 || m > 63)
			m = 1;
		clock_gettime(CLOCK_MONOTONIC, &a);
		for (int i = 0; i < m; i++)
			pthread_create(&t[k++], NULL, chatty_loop, NULL);
		for (int i = 0; i < n; i++)
			pthread_create(&t[k++], NULL, short_loop, NULL);
		usleep((useconds_t)(secs * 1e6));
		stop = 1;
		for (int i = 0; i < k; i++)
			pthread_join(t[i], NULL);
		clock_gettime(CLOCK_MONOTONIC, &b);
		printf("connections %ld round_trips %ld errors %ld seconds %.3f\n", (long)conns,
		       (long)rtts, (long)errors, (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
		return errors > 0;
	}
	fprintf(stderr, "usage: tcpbench server PORT | client PORT SECONDS SHORT_THREADS CHATTY\n");
	return 2;
}

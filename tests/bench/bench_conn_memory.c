/* Collector memory per open connection: N PostgreSQL client connections
 * over TCP, both ends seen on this host, each having run a statement
 * (so its decoder holds its buffers), measured with mallinfo2 before and
 * after.  Prints bytes per connection; exits non-zero above the 5 KiB goal.
 * Usage: bench_conn_memory [N] */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conntrack.h"
#include "pgtrack.h"

static size_t in_use(void)
{
	struct mallinfo2 m = mallinfo2();

	return m.uordblks + m.hblkhd;
}

/* One chunk record: a header, the bytes as one segment. */
static void feed(struct pgtrack *pt, uint64_t sock, uint8_t dir, const void *msg, size_t len, uint64_t ts)
{
	uint8_t rec[sizeof(struct pg_data_event) + 256 + sizeof(struct pg_seg)];
	struct pg_data_event e = { .ts_ns = ts, .sock = sock, .type = EV_PG_DATA, .dir = dir,
				   .len = (uint32_t)len, .nsegs = 1 };
	struct pg_seg s = { .len = (uint32_t)len };

	memcpy(rec, &e, sizeof(e));
	memcpy(rec + sizeof(e), msg, len);
	memcpy(rec + sizeof(e) + len, &s, sizeof(s));
	pgtrack_record(pt, rec, sizeof(e) + len + sizeof(s));
}

/* A message: type, length, body; a CommandComplete is followed by
 * ReadyForQuery, as a server sends it. */
static size_t msg(uint8_t *out, char type, const char *body, size_t n)
{
	uint32_t len = (uint32_t)(4 + n);
	size_t k = 0;

	out[k++] = (uint8_t)type;
	out[k++] = len >> 24;
	out[k++] = len >> 16;
	out[k++] = len >> 8;
	out[k++] = len;
	memcpy(out + k, body, n);
	k += n;
	if (type == 'C') {
		memcpy(out + k, "Z\0\0\0\x05I", 6);
		k += 6;
	}
	return k;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000, before, after;
	uint8_t query[64], reply[64];
	size_t qlen = msg(query, 'Q', "SELECT v FROM t WHERE id = 1", 29);
	size_t rlen = msg(reply, 'C', "SELECT 1", 9);
	struct conntrack ct;
	struct pgtrack pt;
	struct service *web, *db;
	double per;

	conntrack_init(&ct);
	if (pgtrack_init(&pt, &ct))
		return 1;
	web = conntrack_service(&ct, "web", "/web", "python3");
	db = conntrack_service(&ct, "db", "/db", "postgres");
	before = in_use();
	for (size_t i = 0; i < n; i++) {
		struct conn_event c = { .type = EV_CONNECT, .sock = 2 * i + 1, .ts_ns = i + 1,
					.lport = (uint16_t)(1024 + i % 60000), .rport = 5432 };
		struct conn_event a = c;
		struct pg_open_event o = { .type = EV_PG_OPEN, .sock = c.sock, .ts_ns = i + 1,
					   .family = AF_INET6, .rport = 5432, .synced = 0 };

		c.laddr[15] = (uint8_t)(i / 60000 + 2);
		c.raddr[15] = 1;
		a.type = EV_ACCEPT;
		a.sock = 2 * i + 2;
		memcpy(a.laddr, c.raddr, 16);
		memcpy(a.raddr, c.laddr, 16);
		a.lport = c.rport;
		a.rport = c.lport;
		conntrack_event(&ct, &c, web);
		conntrack_event(&ct, &a, db);
		memcpy(o.laddr, c.laddr, 16);
		memcpy(o.raddr, c.raddr, 16);
		o.lport = c.lport;
		pgtrack_open(&pt, &o, web);
		feed(&pt, c.sock, PG_DIR_FRONTEND, query, qlen, i + 2);
		feed(&pt, c.sock, PG_DIR_BACKEND, reply, rlen, i + 3);
	}
	after = in_use();
	per = (double)(after - before) / (double)n;
	printf("%zu connections (both ends, with a PostgreSQL decoder each): %.0f bytes each, "
	       "%llu statements\n", n, per, (unsigned long long)pt.statements);
	pgtrack_free(&pt);
	conntrack_free(&ct);
	return per <= 5120 ? 0 : 1;
}

/* PostgreSQL tracking fed synthetic kernel records: graphs are readings
 * (building one twice gives the same graph, statements included), windows
 * reset, idle aggregates go, and limits fold into ~other. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conntrack.h"
#include "pgtrack.h"

/* A message: type, length, body. */
static size_t msg(uint8_t *out, char type, const char *body, size_t n)
{
	uint32_t len = (uint32_t)(4 + n);

	out[0] = (uint8_t)type;
	out[1] = len >> 24;
	out[2] = len >> 16;
	out[3] = len >> 8;
	out[4] = len;
	memcpy(out + 5, body, n);
	return 5 + n;
}

static void feed(struct pgtrack *pt, uint64_t sock, uint8_t dir, const void *m, size_t len, uint64_t ts)
{
	uint8_t rec[sizeof(struct pg_data_event) + 512 + sizeof(struct pg_seg)];
	struct pg_data_event e = { .ts_ns = ts, .sock = sock, .type = EV_PG_DATA, .dir = dir,
				   .len = (uint32_t)len, .nsegs = 1 };
	struct pg_seg s = { .len = (uint32_t)len };

	memcpy(rec, &e, sizeof(e));
	memcpy(rec + sizeof(e), m, len);
	memcpy(rec + sizeof(e) + len, &s, sizeof(s));
	pgtrack_record(pt, rec, sizeof(e) + len + sizeof(s));
}

/* A Query and its reply on connection sock. */
static void query(struct pgtrack *pt, uint64_t sock, const char *sql, const char *tag, uint64_t ts)
{
	uint8_t m[512];
	size_t n = msg(m, 'Q', sql, strlen(sql) + 1);

	feed(pt, sock, PG_DIR_FRONTEND, m, n, ts);
	n = msg(m, 'C', tag, strlen(tag) + 1);
	n += msg(m + n, 'Z', "I", 1);
	feed(pt, sock, PG_DIR_BACKEND, m, n, ts + 1000);
}

static void open_conn(struct pgtrack *pt, uint64_t sock, struct service *client, uint8_t last, uint64_t ts)
{
	struct pg_open_event o = { .type = EV_PG_OPEN, .sock = sock, .ts_ns = ts, .family = AF_INET6,
				   .lport = 40000, .rport = 5432 };

	o.laddr[15] = 1;
	o.raddr[15] = last;
	pgtrack_open(pt, &o, client);
}

static char *dump(const struct pgtrack *pt, int which)
{
	struct graph *g = graph_new();
	char *s;

	pgtrack_to_graph(pt, g, which, 0);
	s = graph_dumps(g);
	graph_free(g);
	return s;
}

static void test_graph_twice(void **state)
{
	struct conntrack ct;
	struct pgtrack pt;
	struct service *web;
	char *a, *b;

	conntrack_init(&ct);
	assert_int_equal(pgtrack_init(&pt, &ct), 0);
	web = conntrack_service(&ct, "web", "/t/web", "python3");
	open_conn(&pt, 1, web, 1, 1000);
	for (int i = 0; i < 4; i++)
		query(&pt, 1, "SELECT v FROM t WHERE id = 1", "SELECT 1", 2000 + i * 10000);
	query(&pt, 1, "UPDATE t SET v = 'x' WHERE id = 2", "UPDATE 1", 100000);
	a = dump(&pt, STAT_TOTAL);
	b = dump(&pt, STAT_TOTAL);
	assert_string_equal(a, b);
	assert_non_null(strstr(a, "\"SELECT v FROM t WHERE id = $1\""));
	assert_non_null(strstr(a, "\"SELECT\": 4"));
	/* A new window holds only what came after it began. */
	pgtrack_window_reset(&pt);
	query(&pt, 1, "SELECT v FROM t WHERE id = 3", "SELECT 1", 200000);
	free(b);
	b = dump(&pt, STAT_WINDOW);
	assert_non_null(strstr(b, "\"SELECT\": 1"));
	assert_null(strstr(b, "UPDATE"));
	free(a);
	a = dump(&pt, STAT_TOTAL);
	assert_non_null(strstr(a, "\"SELECT\": 5"));
	free(a);
	free(b);
	pgtrack_free(&pt);
	conntrack_free(&ct);
}

/* A TLS connection: its socket's stream asks for TLS and gets 'S' (counted
 * as encrypted), then its plaintext stream (the socket's key | 1) starts
 * with the startup message.  Decoded after all: one connection, not
 * encrypted, its edge says tls; the socket's close ends both streams. */
static void test_tls_stream(void **state)
{
	static const uint8_t sslreq[8] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	static const char params[] = "\0\3\0\0user\0app\0database\0shop\0";
	struct pg_open_event o = { .type = EV_PG_OPEN, .sock = 0x1000, .ts_ns = 1000, .family = AF_INET6,
				   .lport = 40000, .rport = 5432, .synced = 1 };
	uint8_t startup[64];
	struct conntrack ct;
	struct pgtrack pt;
	struct service *web;
	char *a;

	conntrack_init(&ct);
	assert_int_equal(pgtrack_init(&pt, &ct), 0);
	web = conntrack_service(&ct, "web", "/t/web", "psql");
	o.raddr[15] = 1;
	pgtrack_open(&pt, &o, web);
	feed(&pt, 0x1000, PG_DIR_FRONTEND, sslreq, sizeof(sslreq), 1100);
	feed(&pt, 0x1000, PG_DIR_BACKEND, "S", 1, 1200);
	assert_int_equal(pt.encrypted_connections, 1);
	a = dump(&pt, STAT_TOTAL);
	assert_non_null(strstr(a, "\"encrypted_connections\": 1"));
	free(a);

	o.sock = 0x1000 | PG_TLS_STREAM;
	o.ts_ns = 1300;
	pgtrack_open(&pt, &o, web);
	startup[0] = startup[1] = startup[2] = 0;
	startup[3] = (uint8_t)(4 + sizeof(params));
	memcpy(startup + 4, params, sizeof(params));
	feed(&pt, o.sock, PG_DIR_FRONTEND, startup, 4 + sizeof(params), 1400);
	query(&pt, o.sock, "SELECT v FROM t WHERE id = 1", "SELECT 1", 2000);
	assert_int_equal(pt.encrypted_connections, 0);
	assert_int_equal(pt.tls_connections, 1);
	assert_int_equal(pt.connections, 1);
	a = dump(&pt, STAT_TOTAL);
	assert_null(strstr(a, "encrypted_connections"));
	assert_non_null(strstr(a, "\"tls\": true"));
	assert_non_null(strstr(a, "shop"));
	assert_non_null(strstr(a, "\"SELECT\": 1"));
	free(a);
	pgtrack_close(&pt, 0x1000);
	assert_int_equal(pt.conns.len, 0);
	pgtrack_free(&pt);
	conntrack_free(&ct);
}

/* Idle aggregates go, and the services only they held go with them. */
static void test_evict(void **state)
{
	struct conntrack ct;
	struct pgtrack pt;
	struct service *web;
	char *a;

	conntrack_init(&ct);
	assert_int_equal(pgtrack_init(&pt, &ct), 0);
	web = conntrack_service(&ct, "web", "/t/web", "python3");
	open_conn(&pt, 1, web, 1, 1000);
	query(&pt, 1, "SELECT v FROM t", "SELECT 1", 2000);
	pgtrack_close(&pt, 1);
	assert_int_equal(pt.naggs, 1);
	conntrack_evict(&ct, 1000000);
	pgtrack_evict(&pt, 1000000);
	conntrack_sweep_services(&ct, 1000000);
	assert_int_equal(pt.naggs, 0);
	assert_int_equal(ct.services.len, 0);
	a = dump(&pt, STAT_TOTAL);
	assert_null(strstr(a, "SELECT"));
	free(a);
	pgtrack_free(&pt);
	conntrack_free(&ct);
}

/* Past the limit of statement texts on one aggregate, the rest is counted
 * but its text is not kept. */
static void test_statement_cap(void **state)
{
	struct conntrack ct;
	struct pgtrack pt;
	struct service *web;
	char sql[128], *a;

	conntrack_init(&ct);
	assert_int_equal(pgtrack_init(&pt, &ct), 0);
	web = conntrack_service(&ct, "web", "/t/web", "python3");
	open_conn(&pt, 1, web, 1, 1000);
	for (int i = 0; i < PG_MAX_STMTS + 4; i++) {
		snprintf(sql, sizeof(sql), "SELECT c%d FROM t", i);
		query(&pt, 1, sql, "SELECT 1", 2000 + i * 10000);
	}
	assert_int_equal(ct.dropped[DROP_STATEMENTS], 4);
	a = dump(&pt, STAT_TOTAL);
	assert_non_null(strstr(a, "\"statements_other\": 4"));
	assert_non_null(strstr(a, "\"SELECT\": 20"));
	free(a);
	pgtrack_free(&pt);
	conntrack_free(&ct);
}

/* Past PG_MAX_TABLES tables in one database the rest go to "~other"; a
 * sweep keeps the same tables admitted and counts no new drop. */
static void test_table_cap(void **state)
{
	struct conntrack ct;
	struct pgtrack pt;
	struct service *web;
	char sql[64];
	uint64_t ts = 1000;

	conntrack_init(&ct);
	assert_int_equal(pgtrack_init(&pt, &ct), 0);
	web = conntrack_service(&ct, "web", "/t/web", "python3");
	open_conn(&pt, 1, web, 1, ts);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i <= PG_MAX_TABLES; i++) {
			snprintf(sql, sizeof(sql), "SELECT 1 FROM t%d", i);
			query(&pt, 1, sql, "SELECT 1", ts += 10000);
		}
		assert_int_equal(ct.dropped[DROP_TABLES], pass + 1);
		assert_int_equal(pt.naggs, PG_MAX_TABLES + 1);
		conntrack_evict(&ct, 1);
		pgtrack_evict(&pt, 1);
		conntrack_sweep_services(&ct, 1);
		assert_int_equal(ct.dropped[DROP_TABLES], pass + 1);
	}
	pgtrack_free(&pt);
	conntrack_free(&ct);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_graph_twice),
		cmocka_unit_test(test_evict),
		cmocka_unit_test(test_tls_stream),
		cmocka_unit_test(test_statement_cap),
		cmocka_unit_test(test_table_cap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

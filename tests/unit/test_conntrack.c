/* Service naming from cgroup paths, and joining connection ends into edges,
 * fed synthetic kernel events. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cgname.h"
#include "conntrack.h"

static void test_service_names(void **state)
{
	static const struct {
		const char *path, *comm, *want;
	} cases[] = {
		{ "/system.slice/orders.service", "java", "orders" },
		{ "/system.slice/getty@tty1.service", "agetty", "getty@tty1" },
		{ "/user.slice/user-1000.slice/session-3.scope", "bash", "session-3" },
		{ "/system.slice/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope",
		  "nginx", "0123456789ab" },
		{ "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234.slice/"
		  "cri-containerd-fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210.scope",
		  "app", "fedcba987654" },
		{ "/kubepods/besteffort/pod42/aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff",
		  "app", "aaaaaaaaaaaa" },
		{ "/seams-test-1/web", "python3", "web" },
		{ "/seams-test-1/web/", "python3", "web" },
		{ "/", "postgres", "postgres" },
		{ NULL, "curl", "curl" },
		{ "/", "", "root" },
	};
	char out[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cg_service_name(cases[i].path, cases[i].comm, out, sizeof(out));
		assert_string_equal(out, cases[i].want);
	}
}

static void addr(uint8_t a[16], const char *text)
{
	memset(a, 0, 16);
	if (inet_pton(AF_INET6, text, a) != 1) {
		a[10] = a[11] = 0xff;
		assert_int_equal(inet_pton(AF_INET, text, a + 12), 1);
	}
}

static struct conn_event ev(uint32_t type, uint64_t sock, uint64_t ts, const char *l, uint16_t lp,
			    const char *r, uint16_t rp)
{
	struct conn_event e = { .type = type, .sock = sock, .ts_ns = ts, .lport = lp, .rport = rp };

	addr(e.laddr, l);
	addr(e.raddr, r);
	return e;
}

static json_t *edge(struct graph *g, const char *src, const char *dst)
{
	json_t *e = graph_find_edge(g, src, dst, "tcp");

	if (!e)
		print_error("no tcp edge %s -> %s\n", src, dst);
	assert_non_null(e);
	return e;
}

static void test_join(void **state)
{
	struct conntrack ct;
	struct graph *g = graph_new();
	struct service *web, *api, *pool;
	struct conn_event e;
	json_t *x;

	conntrack_init(&ct);
	web = conntrack_service(&ct, "web", "/t/web", "curl");
	api = conntrack_service(&ct, "api", "/t/api", "python3");
	pool = conntrack_service(&ct, "pool", "/t/pool", "python3");
	assert_ptr_equal(conntrack_service(&ct, "web", "/t/web", "wget"), web);
	assert_int_equal(web->nprocs, 2);

	/* connect + accept over IPv4, then both ends close */
	e = ev(EV_CONNECT, 1, 1000000, "127.0.0.1", 40000, "127.0.0.1", 8080);
	conntrack_event(&ct, &e, web);
	e = ev(EV_ACCEPT, 2, 1100000, "127.0.0.1", 8080, "127.0.0.1", 40000);
	conntrack_event(&ct, &e, api);
	e = ev(EV_CLOSE, 1, 5000000, "127.0.0.1", 40000, "127.0.0.1", 8080);
	e.bytes_sent = 100;
	e.bytes_received = 2000;
	conntrack_event(&ct, &e, NULL);
	/* a dual-stack server sees the IPv4 client as ::ffff:127.0.0.1: same key */
	e = ev(EV_CONNECT, 3, 2000000, "127.0.0.1", 40001, "127.0.0.1", 8080);
	conntrack_event(&ct, &e, web);
	e = ev(EV_ACCEPT, 4, 2000001, "::ffff:127.0.0.1", 8080, "::ffff:127.0.0.1", 40001);
	conntrack_event(&ct, &e, api);
	/* both ends of a pooled connection seen only mid-stream, over IPv6; the
	 * listening socket (from /proc/net/tcp6 in a capture) tells the server */
	addr(e.laddr, "::1");
	conntrack_add_listener(&ct, e.laddr, 8080);
	e = ev(EV_SEEN, 5, 3000000, "::1", 50000, "::1", 8080);
	conntrack_event(&ct, &e, pool);
	e = ev(EV_SEEN, 6, 3000001, "::1", 8080, "::1", 50000);
	conntrack_event(&ct, &e, api);
	/* a server nobody here accepted for, and a remote client */
	e = ev(EV_CONNECT, 7, 4000000, "10.0.0.2", 40100, "10.0.0.9", 5432);
	conntrack_event(&ct, &e, web);
	e = ev(EV_ACCEPT, 8, 4000000, "10.0.0.2", 8080, "10.0.0.77", 51000);
	conntrack_event(&ct, &e, api);
	e = ev(EV_CONNECT_FAIL, 9, 4500000, "127.0.0.1", 40200, "127.0.0.1", 8080);
	conntrack_event(&ct, &e, web);

	conntrack_to_graph(&ct, g, STAT_TOTAL, 0);
	x = edge(g, "svc:web", "svc:api");
	assert_int_equal(json_integer_value(json_object_get(x, "connections")), 2);
	assert_int_equal(json_integer_value(json_object_get(x, "failed_connections")), 1);
	assert_int_equal(json_integer_value(json_object_get(x, "port")), 8080);
	assert_int_equal(json_integer_value(json_object_get(x, "bytes_sent")), 100);
	assert_int_equal(json_integer_value(json_object_get(x, "bytes_received")), 2000);
	assert_non_null(json_object_get(x, "duration_ms"));
	x = edge(g, "svc:pool", "svc:api");
	assert_int_equal(json_integer_value(json_object_get(x, "connections")), 1);
	assert_null(graph_find_edge(g, "svc:api", "svc:pool", "tcp"));
	x = edge(g, "svc:web", "ext:10.0.0.9:5432");
	assert_string_equal(json_str(graph_node(g, "ext:10.0.0.9:5432"), "kind"), "external");
	edge(g, "ext:10.0.0.77", "svc:api");
	x = json_object_get(graph_node(g, "svc:api"), "listens");
	assert_true(json_array_size(x) >= 2);
	assert_string_equal(json_string_value(json_array_get(x, 0)), "10.0.0.2:8080");

	graph_free(g);
	conntrack_free(&ct);
}

static char *dump(const struct conntrack *ct, int which)
{
	struct graph *g = graph_new();
	char *s;

	conntrack_to_graph(ct, g, which, 0);
	s = graph_dumps(g);
	graph_free(g);
	return s;
}

/* A graph is a reading: building it twice gives the same graph, and
 * folding closed connections into their edges does not change it either. */
static void test_snapshot_is_read_only(void **state)
{
	struct conntrack ct;
	struct service *web, *api;
	struct conn_event e;
	char *a, *b, *c;

	conntrack_init(&ct);
	web = conntrack_service(&ct, "web", "/t/web", "curl");
	api = conntrack_service(&ct, "api", "/t/api", "python3");
	for (uint64_t i = 0; i < 5; i++) {
		e = ev(EV_CONNECT, 10 + 2 * i, 1000000 * (i + 1), "127.0.0.1", 40000 + i, "127.0.0.1", 8080);
		conntrack_event(&ct, &e, web);
		e = ev(EV_ACCEPT, 11 + 2 * i, 1000000 * (i + 1) + 10, "127.0.0.1", 8080, "127.0.0.1", 40000 + i);
		conntrack_event(&ct, &e, api);
		if (i < 3) {
			e = ev(EV_CLOSE, 10 + 2 * i, 1000000 * (i + 1) + 500000, "127.0.0.1", 40000 + i,
			       "127.0.0.1", 8080);
			e.bytes_sent = 10;
			conntrack_event(&ct, &e, NULL);
			e.sock = 11 + 2 * i;
			conntrack_event(&ct, &e, NULL);
		}
	}
	/* a server end whose client had gone before we looked */
	e = ev(EV_SEEN, 99, 2000000, "127.0.0.1", 8080, "127.0.0.1", 39999);
	e.peer_closed = 1;
	conntrack_event(&ct, &e, api);
	e = ev(EV_CLOSE, 99, 2000001, "127.0.0.1", 8080, "127.0.0.1", 39999);
	conntrack_event(&ct, &e, NULL);

	a = dump(&ct, STAT_TOTAL);
	b = dump(&ct, STAT_TOTAL);
	assert_string_equal(a, b);
	assert_int_equal(conntrack_client_gone(&ct), 1);
	assert_int_equal(conntrack_client_gone(&ct), 1);
	/* Fold: the closed ends go, the edge keeps their counts. */
	conntrack_tick(&ct, 10 * CT_LINGER_NS);
	assert_null(ct.closed_head);
	assert_int_equal(ct.open.len, 4);
	c = dump(&ct, STAT_TOTAL);
	assert_string_equal(a, c);
	assert_int_equal(conntrack_client_gone(&ct), 1);
	assert_non_null(strstr(c, "\"connections\": 5"));
	/* A new window starts empty but for the connections still open. */
	conntrack_window_reset(&ct);
	free(c);
	c = dump(&ct, STAT_WINDOW);
	assert_non_null(strstr(c, "\"connections\": 2"));
	free(a);
	free(b);
	free(c);
	conntrack_free(&ct);
}

/* Nothing grows with time: edges and services idle past the cutoff go,
 * those still in use stay. */
static void test_evict(void **state)
{
	struct conntrack ct;
	struct service *web, *api, *old;
	struct conn_event e;

	conntrack_init(&ct);
	ct.now_ns = 1000;
	old = conntrack_service(&ct, "old", "/t/old", "x");
	e = ev(EV_CONNECT, 1, 1000, "127.0.0.1", 40000, "10.0.0.1", 80);
	conntrack_event(&ct, &e, old);
	e = ev(EV_CLOSE, 1, 2000, "127.0.0.1", 40000, "10.0.0.1", 80);
	conntrack_event(&ct, &e, NULL);
	conntrack_tick(&ct, 3 * CT_LINGER_NS);
	ct.now_ns = 100 * CT_LINGER_NS;
	web = conntrack_service(&ct, "web", "/t/web", "curl");
	api = conntrack_service(&ct, "api", "/t/api", "python3");
	e = ev(EV_CONNECT, 2, 100 * CT_LINGER_NS, "127.0.0.1", 40001, "127.0.0.1", 8080);
	conntrack_event(&ct, &e, web);
	e = ev(EV_ACCEPT, 3, 100 * CT_LINGER_NS, "127.0.0.1", 8080, "127.0.0.1", 40001);
	conntrack_event(&ct, &e, api);
	assert_int_equal(ct.naggs, 1);
	assert_int_equal(ct.services.len, 3);
	conntrack_evict(&ct, 50 * CT_LINGER_NS);
	conntrack_sweep_services(&ct, 50 * CT_LINGER_NS);
	assert_int_equal(ct.naggs, 0);
	assert_int_equal(ct.services.len, 2);
	assert_ptr_equal(conntrack_service(&ct, "web", "/t/web", NULL), web);
	assert_non_null(conntrack_server(&ct, e.laddr, 8080));
	conntrack_free(&ct);
}

/* Past the limit of servers per client, further servers fold into one
 * "~other" edge, counted. */
static void test_server_cap(void **state)
{
	struct conntrack ct;
	struct service *web;
	struct conn_event e;
	struct graph *g = graph_new();

	conntrack_init(&ct);
	web = conntrack_service(&ct, "web", "/t/web", "curl");
	for (uint32_t i = 0; i < CT_MAX_SERVERS + 10; i++) {
		char a[32];

		snprintf(a, sizeof(a), "10.1.%u.%u", i / 256, i % 256);
		e = ev(EV_CONNECT_FAIL, 1, 1000 + i, "127.0.0.1", 40000, a, 80);
		conntrack_event(&ct, &e, web);
	}
	assert_int_equal(ct.naggs, CT_MAX_SERVERS + 1);
	assert_int_equal(ct.dropped[DROP_SERVERS], 10);
	conntrack_to_graph(&ct, g, STAT_TOTAL, 0);
	assert_int_equal(json_integer_value(json_object_get(edge(g, "svc:web", "ext:~other"),
							    "failed_connections")), 10);
	/* Sweeps count each client's servers afresh, "~other" included. */
	for (int i = 0; i < 3; i++)
		conntrack_evict(&ct, 1);
	assert_int_equal(web->nservers, CT_MAX_SERVERS + 1);
	assert_int_equal(ct.other.nservers, 0);
	graph_free(g);
	conntrack_free(&ct);
}

static long edge_count(struct conntrack *ct, const char *src, const char *dst, const char *field)
{
	struct graph *g = graph_new();
	json_t *e;
	long n;

	conntrack_to_graph(ct, g, STAT_TOTAL, 0);
	e = graph_find_edge(g, src, dst, "tcp");
	n = e ? (long)json_integer_value(json_object_get(e, field)) : -1;
	graph_free(g);
	return n;
}

/* Both ends of a connection seen mid-stream, no listener known: one
 * connection, one way, open or folded. */
static void test_both_ends_unknown(void **state)
{
	struct conntrack ct;
	struct service *a, *b;
	struct conn_event e;

	conntrack_init(&ct);
	a = conntrack_service(&ct, "a", "/t/a", "x");
	b = conntrack_service(&ct, "b", "/t/b", "y");
	e = ev(EV_SEEN, 1, 1000, "10.0.0.1", 40000, "10.0.0.2", 8080);
	conntrack_event(&ct, &e, a);
	e = ev(EV_SEEN, 2, 2000, "10.0.0.2", 8080, "10.0.0.1", 40000);
	conntrack_event(&ct, &e, b);
	assert_int_equal(edge_count(&ct, "svc:a", "svc:b", "connections"), 1);
	assert_int_equal(edge_count(&ct, "svc:b", "svc:a", "connections"), -1);
	e = ev(EV_CLOSE, 1, 3000, "10.0.0.1", 40000, "10.0.0.2", 8080);
	conntrack_event(&ct, &e, NULL);
	e.sock = 2;
	conntrack_event(&ct, &e, NULL);
	conntrack_tick(&ct, 10 * CT_LINGER_NS);
	assert_int_equal(edge_count(&ct, "svc:a", "svc:b", "connections"), 1);
	assert_int_equal(ct.naggs, 1);
	conntrack_free(&ct);
}

/* A tuple reused while the old server end still waits to fold: the new
 * client joins the new server end, not the closed one. */
static void test_tuple_reuse(void **state)
{
	struct conntrack ct;
	struct service *a, *b;
	struct conn_event e;

	conntrack_init(&ct);
	a = conntrack_service(&ct, "a", "/t/a", "x");
	b = conntrack_service(&ct, "b", "/t/b", "y");
	for (int round = 0; round < 2; round++) {
		uint64_t t = (uint64_t)round * 2100000000ULL, s = 10 * (uint64_t)round;

		e = ev(EV_CONNECT, s + 1, t + 1000, "127.0.0.1", 40000, "127.0.0.1", 8080);
		conntrack_event(&ct, &e, a);
		e = ev(EV_ACCEPT, s + 2, t + 2000, "127.0.0.1", 8080, "127.0.0.1", 40000);
		conntrack_event(&ct, &e, b);
		e = ev(EV_CLOSE, s + 1, t + 2000000000ULL, "127.0.0.1", 40000, "127.0.0.1", 8080);
		conntrack_event(&ct, &e, NULL);
		e = ev(EV_CLOSE, s + 2, t + 2050000000ULL, "127.0.0.1", 8080, "127.0.0.1", 40000);
		conntrack_event(&ct, &e, NULL);
		/* the client end folds; the server end still waits */
		conntrack_tick(&ct, t + 2000000000ULL + CT_LINGER_NS + 1);
	}
	conntrack_tick(&ct, 100 * CT_LINGER_NS);
	assert_int_equal(edge_count(&ct, "svc:a", "svc:b", "connections"), 2);
	assert_int_equal(ct.naggs, 1);
	conntrack_free(&ct);
}

static struct nest_event nest(uint64_t sock, uint64_t start, uint64_t end, uint32_t flags)
{
	return (struct nest_event){ .type = EV_NEST, .sock = sock, .start_ns = start, .ts_ns = end,
				    .flags = flags };
}

static void nest_call(struct nest_event *e, uint64_t sock, uint64_t start, uint64_t busy, uint32_t calls,
		      uint32_t pending)
{
	e->calls[e->ncalls++] = (struct nest_call){ .sock = sock, .start_ns = start, .busy_ns = busy,
						    .calls = calls, .pending = pending };
}

/* Recorded nesting sequences: a -> b, and b calling c inside some of a's
 * requests.  What cannot be trusted is counted, never attributed. */
static void test_nesting(void **state)
{
	const uint64_t ms = 1000000;
	struct conntrack ct;
	struct graph *g = graph_new();
	struct service *a, *b, *c, *d;
	struct nest_event n;
	struct conn_event e;
	json_t *x, *call;

	conntrack_init(&ct);
	a = conntrack_service(&ct, "a", "/t/a", "curl");
	b = conntrack_service(&ct, "b", "/t/b", "python3");
	c = conntrack_service(&ct, "c", "/t/c", "python3");
	d = conntrack_service(&ct, "d", "/t/d", "python3");
	e = ev(EV_CONNECT, 1, 1 * ms, "127.0.0.1", 40000, "127.0.0.1", 8080);
	conntrack_event(&ct, &e, a);
	e = ev(EV_ACCEPT, 2, 1 * ms, "127.0.0.1", 8080, "127.0.0.1", 40000);
	conntrack_event(&ct, &e, b);
	/* b's call to c, on a connection closed before b replies to a... */
	e = ev(EV_CONNECT, 3, 11 * ms, "127.0.0.1", 40001, "127.0.0.1", 9090);
	conntrack_event(&ct, &e, b);
	e = ev(EV_ACCEPT, 4, 11 * ms, "127.0.0.1", 9090, "127.0.0.1", 40001);
	conntrack_event(&ct, &e, c);
	e = ev(EV_CLOSE, 3, 18 * ms, "127.0.0.1", 40001, "127.0.0.1", 9090);
	conntrack_event(&ct, &e, NULL);
	/* ...whose socket address a connection to d takes at once. */
	e = ev(EV_CONNECT, 3, 19 * ms, "127.0.0.1", 40002, "127.0.0.1", 7070);
	conntrack_event(&ct, &e, b);
	e = ev(EV_ACCEPT, 5, 19 * ms, "127.0.0.1", 7070, "127.0.0.1", 40002);
	conntrack_event(&ct, &e, d);

	n = nest(2, 10 * ms, 20 * ms, 0);
	nest_call(&n, 3, 12 * ms, 5 * ms, 1, 0);
	conntrack_nest(&ct, &n);
	/* A request that called nobody. */
	n = nest(2, 21 * ms, 25 * ms, 0);
	conntrack_nest(&ct, &n);
	/* A call that never got its reply, on sock 3 now the connection to d:
	 * a request, no latency. */
	n = nest(2, 26 * ms, 40 * ms, 0);
	nest_call(&n, 3, 30 * ms, 0, 1, 1);
	conntrack_nest(&ct, &n);
	/* Out of order: ends before it starts; a call before the request;
	 * more time in a call than in the request. */
	n = nest(2, 50 * ms, 45 * ms, 0);
	conntrack_nest(&ct, &n);
	n = nest(2, 50 * ms, 60 * ms, 0);
	nest_call(&n, 3, 49 * ms, 1 * ms, 1, 0);
	conntrack_nest(&ct, &n);
	n = nest(2, 50 * ms, 60 * ms, 0);
	nest_call(&n, 3, 51 * ms, 11 * ms, 1, 0);
	conntrack_nest(&ct, &n);
	/* Interleaved with another request on its thread (an event loop, or
	 * the request before was abandoned when its client closed): counted,
	 * its call not attributed. */
	n = nest(2, 61 * ms, 70 * ms, NEST_OVERLAP);
	nest_call(&n, 3, 62 * ms, 2 * ms, 1, 0);
	conntrack_nest(&ct, &n);
	/* Unknown ends: an inbound one, and a call over a Unix socket. */
	n = nest(99, 71 * ms, 80 * ms, 0);
	conntrack_nest(&ct, &n);
	n = nest(2, 81 * ms, 90 * ms, 0);
	nest_call(&n, 98, 82 * ms, 2 * ms, 1, 0);
	n.overflow = 3;
	conntrack_nest(&ct, &n);

	assert_int_equal(ct.nestbad.invalid, 3);
	assert_int_equal(ct.nestbad.unresolved, 1);
	assert_int_equal(ct.nestbad.calls_unresolved, 1);
	assert_int_equal(ct.nestbad.calls_overflow, 3);
	conntrack_to_graph(&ct, g, STAT_TOTAL, 0);
	x = json_object_get(edge(g, "svc:a", "svc:b"), "nesting");
	assert_non_null(x);
	assert_int_equal(json_integer_value(json_object_get(x, "requests")), 5);
	assert_int_equal(json_integer_value(json_object_get(x, "ambiguous")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(x, "latency_ms"), "count")), 4);
	/* The reused socket address did not move the first call to d. */
	call = json_object_get(json_object_get(x, "calls"), "svc:c");
	assert_int_equal(json_integer_value(json_object_get(call, "requests")), 1);
	assert_int_equal(json_integer_value(json_object_get(call, "calls")), 1);
	assert_null(json_object_get(call, "unreplied"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(call, "latency_ms"), "count")), 1);
	assert_true(json_real_value(json_object_get(json_object_get(call, "latency_ms"), "p50")) > 4.5);
	call = json_object_get(json_object_get(x, "calls"), "svc:d");
	assert_int_equal(json_integer_value(json_object_get(call, "requests")), 1);
	assert_int_equal(json_integer_value(json_object_get(call, "unreplied")), 1);
	assert_null(json_object_get(call, "latency_ms"));
	/* Nothing nests in b -> c. */
	assert_null(json_object_get(edge(g, "svc:b", "svc:c"), "nesting"));
	graph_free(g);

	/* Nesting goes with the rest when idle, and keeps its services till then. */
	conntrack_evict(&ct, 0);
	conntrack_sweep_services(&ct, UINT64_MAX);
	assert_int_equal(ct.nnest, 3);
	conntrack_evict(&ct, UINT64_MAX);
	assert_int_equal(ct.nnest, 0);
	conntrack_free(&ct);
}

static void test_addr_format(void **state)
{
	uint8_t a[16];
	char buf[64];

	addr(a, "::ffff:192.168.1.5");
	addr_format(a, 80, buf, sizeof(buf));
	assert_string_equal(buf, "192.168.1.5:80");
	addr(a, "fe80::1");
	addr_format(a, 443, buf, sizeof(buf));
	assert_string_equal(buf, "[fe80::1]:443");
	addr_format(a, -1, buf, sizeof(buf));
	assert_string_equal(buf, "fe80::1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_names),
		cmocka_unit_test(test_join),
		cmocka_unit_test(test_snapshot_is_read_only),
		cmocka_unit_test(test_evict),
		cmocka_unit_test(test_server_cap),
		cmocka_unit_test(test_both_ends_unknown),
		cmocka_unit_test(test_tuple_reuse),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_addr_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

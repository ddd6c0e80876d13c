/* merge.c: two hosts into one graph, external endpoints resolved, counts
 * added, captures kept one per host. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "graph.h"
#include "merge.h"
#include "report.h"

#define DATA "tests/data/"

static struct graph *load(const char *file)
{
	char err[512];
	struct graph *g = graph_load(file, err, sizeof(err));

	if (!g)
		fail_msg("%s", err);
	return g;
}

static json_int_t int_at(const json_t *obj, const char *key, const char *sub)
{
	json_t *v = json_object_get(obj, key);

	return json_integer_value(sub ? json_object_get(v, sub) : v);
}

static struct graph *merge_two(const char *a, const char *b, json_t *warnings)
{
	struct graph *in[2] = { load(a), load(b) }, *out;
	char err[256];

	out = merge_graphs(in, 2, warnings, err, sizeof(err));
	if (!out)
		fail_msg("%s", err);
	graph_free(in[0]);
	graph_free(in[1]);
	return out;
}

static void test_merge_hosts(void **state)
{
	struct graph *m = merge_two(DATA "host_a.json", DATA "host_b.json", NULL);
	json_t *worker = graph_node(m, "svc:worker"), *e, *stmts;
	const char *table = "table:svc:postgresql/shop/public.orders";

	/* host-a reached postgres by address; host-b says who listens there. */
	assert_null(graph_node(m, "ext:10.0.0.2:5432"));
	assert_null(graph_node(m, "db:ext:10.0.0.2:5432/shop"));
	assert_non_null(graph_node(m, table));
	e = graph_find_edge(m, "svc:app", "svc:postgresql", "tcp");
	assert_non_null(e);
	assert_int_equal(int_at(e, "connections", NULL), 10);
	assert_int_equal(int_at(e, "port", NULL), 5432);
	assert_non_null(graph_find_edge(m, "svc:app", table, "sql"));
	/* Unclaimed endpoints stay. */
	assert_non_null(graph_node(m, "ext:203.0.113.7:443"));

	/* One worker, seen on both hosts; the first cgroup stays. */
	assert_int_equal(json_array_size(json_object_get(worker, "hosts")), 2);
	assert_int_equal(json_array_size(json_object_get(worker, "processes")), 2);
	assert_string_equal(json_str(worker, "cgroup"), "/system.slice/worker.service");

	/* Counts from both hosts add up. */
	e = graph_find_edge(m, "svc:worker", "svc:postgresql", "tcp");
	assert_int_equal(int_at(e, "connections", NULL), 3);
	e = graph_find_edge(m, "svc:worker", table, "sql");
	assert_int_equal(int_at(e, "access", "write"), 10);
	assert_int_equal(int_at(e, "access", "read"), 2);
	assert_int_equal(int_at(e, "operations", "UPDATE"), 10);
	assert_int_equal(int_at(e, "operations", "SELECT"), 2);
	/* Percentiles: the worst of each, counts summed. */
	assert_true(json_number_value(json_object_get(json_object_get(e, "latency_ms"), "p50")) == 3.0);
	assert_int_equal(int_at(e, "latency_ms", "count"), 12);
	assert_string_equal(json_str(e, "first_seen"), "2026-11-27T17:59:30.000Z");
	assert_string_equal(json_str(e, "last_seen"), "2026-11-27T18:01:00.000Z");
	stmts = json_object_get(e, "statements");
	assert_string_equal(json_str(json_array_get(stmts, 0), "query"), "UPDATE orders SET state = $1 WHERE id = $2");
	assert_int_equal(int_at(json_array_get(stmts, 0), "count", NULL), 7);

	/* One capture section per host. */
	assert_int_equal(json_array_size(json_object_get(graph_doc(m), "captures")), 2);
	assert_null(json_object_get(graph_doc(m), "capture"));
	graph_free(m);
}

/* Across hosts the table is now one node written by two services. */
/* Nesting adds up like the other counts, and its callees follow the
 * external endpoints that resolve to services. */
static void test_merge_nesting(void **state)
{
	struct graph *in[2] = { load(DATA "host_a.json"), load(DATA "host_b.json") }, *m;
	json_t *e, *calls;
	char err[256];

	graph_external(in[0], "10.0.0.50", 0);
	e = graph_edge(in[0], "ext:10.0.0.50", "svc:app", "tcp");
	json_object_set_new(e, "connections", json_integer(4));
	json_object_set_new(e, "nesting", json_pack("{s:i, s:{s:{s:i, s:i}, s:{s:i, s:i}}}", "requests", 4,
						    "calls", "ext:10.0.0.2:5432", "requests", 3, "calls", 5,
						    "ext:203.0.113.7:443", "requests", 1, "calls", 1));
	graph_external(in[1], "10.0.0.50", 0);
	graph_service(in[1], "app", "/system.slice/app.service");
	e = graph_edge(in[1], "ext:10.0.0.50", "svc:app", "tcp");
	json_object_set_new(e, "connections", json_integer(2));
	json_object_set_new(e, "nesting", json_pack("{s:i, s:{s:{s:i, s:i}}}", "requests", 2, "calls",
						    "svc:postgresql", "requests", 2, "calls", 2));
	m = merge_graphs(in, 2, NULL, err, sizeof(err));
	if (!m)
		fail_msg("%s", err);
	e = graph_find_edge(m, "ext:10.0.0.50", "svc:app", "tcp");
	assert_non_null(e);
	assert_int_equal(int_at(json_object_get(e, "nesting"), "requests", NULL), 6);
	calls = json_object_get(json_object_get(e, "nesting"), "calls");
	assert_int_equal(json_object_size(calls), 2);
	assert_int_equal(int_at(calls, "svc:postgresql", "requests"), 5);
	assert_int_equal(int_at(calls, "svc:postgresql", "calls"), 7);
	assert_int_equal(int_at(calls, "ext:203.0.113.7:443", "requests"), 1);
	graph_free(m);
	graph_free(in[0]);
	graph_free(in[1]);
}

static void test_merge_finds_shared_table(void **state)
{
	struct graph *m = merge_two(DATA "host_a.json", DATA "host_b.json", NULL);
	json_t *r = report_build(m), *f = json_array_get(json_object_get(r, "findings"), 0);

	assert_string_equal(json_str(f, "kind"), "shared_table");
	assert_string_equal(json_str(f, "severity"), "critical");
	json_decref(r);
	graph_free(m);
}

/* A merged graph merges again: captures flatten, and the file it writes
 * loads back. */
static void test_merge_again(void **state)
{
	struct graph *m = merge_two(DATA "host_a.json", DATA "host_b.json", NULL), *in[2], *mm, *back;
	char dir[] = "/tmp/seams-test-XXXXXX", path[64], err[512];

	in[0] = m;
	in[1] = load(DATA "chain.json");
	mm = merge_graphs(in, 2, NULL, err, sizeof(err));
	assert_non_null(mm);
	assert_int_equal(json_array_size(json_object_get(graph_doc(mm), "captures")), 3);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.json", dir);
	assert_int_equal(graph_write(mm, path, err, sizeof(err)), 0);
	back = graph_load(path, err, sizeof(err));
	if (!back)
		fail_msg("%s", err);
	assert_int_equal(graph_node_count(back), graph_node_count(mm));
	graph_free(back);
	graph_free(mm);
	graph_free(in[1]);
	graph_free(m);
	unlink(path);
	rmdir(dir);
}

/* Loopback is a different socket on every host; an address two services
 * claim is ambiguous.  Neither resolves. */
static void test_no_guessing(void **state)
{
	struct graph *a = graph_new(), *b = graph_new(), *c = graph_new(), *in[3] = { a, b, c }, *m;
	json_t *warnings = json_array();
	char err[256];

	graph_service(a, "app", NULL);
	graph_external(a, "127.0.0.1", 5432);
	graph_external(a, "10.0.0.7", 80);
	graph_edge(a, "svc:app", "ext:127.0.0.1:5432", "tcp");
	graph_edge(a, "svc:app", "ext:10.0.0.7:80", "tcp");
	graph_node_add_string(graph_service(b, "postgresql", NULL), "listens", "127.0.0.1:5432");
	graph_node_add_string(graph_service(b, "web-b", NULL), "listens", "10.0.0.7:80");
	graph_node_add_string(graph_service(c, "web-c", NULL), "listens", "10.0.0.7:80");

	m = merge_graphs(in, 3, warnings, err, sizeof(err));
	assert_non_null(m);
	assert_non_null(graph_find_edge(m, "svc:app", "ext:127.0.0.1:5432", "tcp"));
	assert_non_null(graph_find_edge(m, "svc:app", "ext:10.0.0.7:80", "tcp"));
	assert_int_equal(json_array_size(warnings), 1);
	assert_non_null(strstr(json_string_value(json_array_get(warnings, 0)), "10.0.0.7:80"));
	json_decref(warnings);
	graph_free(m);
	graph_free(a);
	graph_free(b);
	graph_free(c);
}

static void test_nothing_to_merge(void **state)
{
	char err[256];

	assert_null(merge_graphs(NULL, 0, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "nothing to merge"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge_hosts),
		cmocka_unit_test(test_merge_nesting),
		cmocka_unit_test(test_merge_finds_shared_table),
		cmocka_unit_test(test_merge_again),
		cmocka_unit_test(test_no_guessing),
		cmocka_unit_test(test_nothing_to_merge),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

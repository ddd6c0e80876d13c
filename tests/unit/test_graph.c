/* graph.c: find-or-create, value helpers, atomic writes and the one-line
 * errors graph_load gives for files a user might hand it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "graph.h"

/* Tests run from the repository root, like the e2e scripts. */
#define DATA "tests/data/"

static void test_find_or_create(void **state)
{
	struct graph *g = graph_new();
	json_t *a = graph_service(g, "orders", "/system.slice/orders.service");

	assert_non_null(a);
	assert_ptr_equal(graph_service(g, "orders", "/other"), a);
	assert_string_equal(json_str(a, "id"), "svc:orders");
	assert_string_equal(json_str(a, "cgroup"), "/system.slice/orders.service");
	assert_ptr_equal(graph_node(g, "svc:orders"), a);
	assert_null(graph_node(g, "svc:nope"));

	assert_string_equal(json_str(graph_external(g, "10.0.0.2", 5432), "id"), "ext:10.0.0.2:5432");
	assert_string_equal(json_str(graph_external(g, "fd00::1", 443), "id"), "ext:[fd00::1]:443");

	json_t *db = graph_database(g, "svc:orders", "shop");
	json_t *t = graph_table(g, json_str(db, "id"), "public.orders");
	json_t *u = graph_table(g, json_str(db, "id"), "users");

	assert_string_equal(json_str(db, "id"), "db:svc:orders/shop");
	assert_string_equal(json_str(t, "id"), "table:svc:orders/shop/public.orders");
	assert_string_equal(json_str(t, "schema"), "public");
	assert_string_equal(json_str(u, "name"), "public.users");
	assert_string_equal(json_str(graph_table(g, json_str(db, "id"), "s.\"a.b\""), "table"), "\"a.b\"");
	assert_int_equal(graph_node_count(g), 7);

	json_t *e = graph_edge(g, "svc:orders", "ext:10.0.0.2:5432", "tcp");

	assert_ptr_equal(graph_edge(g, "svc:orders", "ext:10.0.0.2:5432", "tcp"), e);
	assert_ptr_equal(graph_find_edge(g, "svc:orders", "ext:10.0.0.2:5432", "tcp"), e);
	assert_null(graph_find_edge(g, "svc:orders", "ext:10.0.0.2:5432", "sql"));
	assert_int_equal(graph_edge_count(g), 1);
	graph_free(g);
}

static void test_values(void **state)
{
	json_t *node = json_object(), *obj = json_object(), *p;
	double samples[] = { 5, 1, 4, 2, 3, 10, 9, 8, 7, 6 };
	char t[32];

	graph_node_add_string(node, "hosts", "web-2");
	graph_node_add_string(node, "hosts", "web-1");
	graph_node_add_string(node, "hosts", "web-2");
	assert_int_equal(json_array_size(json_object_get(node, "hosts")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(node, "hosts"), 0)), "web-1");

	json_count_add(obj, "n", 2);
	json_count_add(obj, "n", 3);
	assert_int_equal(json_integer_value(json_object_get(obj, "n")), 5);

	graph_format_time(1795802400123456789ull, t, sizeof(t));
	assert_string_equal(t, "2026-11-27T18:00:00.123Z");
	graph_seen(obj, 1795802400123000000ull);
	graph_seen(obj, 1795802340000000000ull);
	graph_seen(obj, 1795802460000000000ull);
	assert_string_equal(json_str(obj, "first_seen"), "2026-11-27T17:59:00.000Z");
	assert_string_equal(json_str(obj, "last_seen"), "2026-11-27T18:01:00.000Z");

	p = graph_percentiles(samples, 10);
	assert_true(json_real_value(json_object_get(p, "p50")) == 5.0);
	assert_true(json_real_value(json_object_get(p, "p99")) == 10.0);
	assert_int_equal(json_integer_value(json_object_get(p, "count")), 10);
	assert_null(graph_percentiles(samples, 0));
	json_decref(p);
	json_decref(node);
	json_decref(obj);
}

/* A graph built here, written and read back, is the same graph. */
static void test_write_load_roundtrip(void **state)
{
	char dir[] = "/tmp/seams-test-XXXXXX", path[64], err[256];
	struct graph *g = graph_new(), *back;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/g.json", dir);
	json_object_set_new(graph_capture(g), "host", json_string("web-1"));
	graph_service(g, "b", NULL);
	graph_service(g, "a", "/a");
	json_count_add(graph_edge(g, "svc:b", "svc:a", "tcp"), "connections", 3);
	assert_int_equal(graph_write(g, path, err, sizeof(err)), 0);

	back = graph_load(path, err, sizeof(err));
	assert_non_null(back);
	assert_int_equal(graph_node_count(back), 2);
	/* Written in id order, whatever order capture created them in. */
	assert_string_equal(json_str(graph_node_at(back, 0), "id"), "svc:a");
	assert_int_equal(json_integer_value(json_object_get(graph_find_edge(back, "svc:b", "svc:a", "tcp"),
							    "connections")), 3);

	/* Fixed key order: "schema" first, then the capture. */
	char *text = graph_dumps(back);

	assert_true(strstr(text, "\"schema\"") < strstr(text, "\"capture\""));
	assert_true(strstr(text, "\"capture\"") < strstr(text, "\"nodes\""));
	free(text);
	graph_free(back);
	graph_free(g);
	unlink(path);
	assert_int_equal(rmdir(dir), 0); /* no temporary file left behind */
}

static void test_write_error(void **state)
{
	struct graph *g = graph_new();
	char err[256];

	assert_int_equal(graph_write(g, "/nonexistent-dir/graph.json", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "cannot write /nonexistent-dir/graph.json"));
	assert_non_null(strstr(err, "--output"));
	assert_null(strchr(err, '\n'));
	graph_free(g);
}

static void expect_load_error(const char *file, const char *needle1, const char *needle2)
{
	char err[512];
	struct graph *g = graph_load(file, err, sizeof(err));

	assert_null(g);
	if (!strstr(err, needle1) || (needle2 && !strstr(err, needle2)))
		fail_msg("%s: unexpected error \"%s\"", file, err);
	assert_non_null(strstr(err, file));
	assert_null(strchr(err, '\n'));
}

static void test_load_errors(void **state)
{
	expect_load_error(DATA "bad_schema.json", "seams.graph/v0", "seams.graph/v1");
	expect_load_error(DATA "truncated.json", "invalid JSON at line", "column");
	expect_load_error(DATA "missing_field.json", "node 1", "\"name\"");
	expect_load_error(DATA "dangling_edge.json", "edge 0", "svc:ghost");
	expect_load_error(DATA "duplicate_node.json", "svc:a", "same id");
	expect_load_error(DATA "no-such-file.json", "cannot open", NULL);
}

static void test_load_fixtures(void **state)
{
	static const char *const ok[] = { "chain", "cycle", "clean", "demo", "host_a", "host_b" };
	char path[128], err[512];

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct graph *g;

		snprintf(path, sizeof(path), DATA "%s.json", ok[i]);
		g = graph_load(path, err, sizeof(err));
		if (!g)
			fail_msg("%s", err);
		assert_true(graph_node_count(g) > 0);
		graph_free(g);
	}
}

/* A merged file has "captures" (an array) instead of "capture". */
static void test_load_captures_array(void **state)
{
	char dir[] = "/tmp/seams-test-XXXXXX", path[64], err[256];
	struct graph *g = graph_new(), *back;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/m.json", dir);
	json_object_set_new(graph_doc(g), "captures", json_pack("[{s:s}, {s:s}]", "host", "a", "host", "b"));
	assert_int_equal(graph_write(g, path, err, sizeof(err)), 0);
	back = graph_load(path, err, sizeof(err));
	assert_non_null(back);
	assert_int_equal(json_array_size(json_object_get(graph_doc(back), "captures")), 2);
	graph_free(back);
	graph_free(g);
	unlink(path);
	rmdir(dir);
}

/* Writing to a device replaces nothing: /dev/null stays a device. */
static void test_write_device(void **state)
{
	struct stat st;
	char err[256];

	assert_int_equal(atomic_write("/dev/null", "{}\n", 3, err, sizeof(err)), 0);
	assert_int_equal(stat("/dev/null", &st), 0);
	assert_true(S_ISCHR(st.st_mode));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find_or_create),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_write_load_roundtrip),
		cmocka_unit_test(test_write_error),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_load_fixtures),
		cmocka_unit_test(test_load_captures_array),
		cmocka_unit_test(test_write_device),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

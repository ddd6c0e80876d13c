/* report.c on small graphs with one problem each, and the exit statuses
 * of `seams report` that CI relies on. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "graph.h"
#include "report.h"

#define DATA "tests/data/"

static json_t *report_of(const char *file)
{
	char err[512];
	struct graph *g = graph_load(file, err, sizeof(err));
	json_t *r;

	if (!g)
		fail_msg("%s", err);
	r = report_build(g);
	graph_free(g);
	assert_non_null(r);
	return r;
}

static size_t count_kind(const json_t *r, const char *kind)
{
	json_t *f;
	size_t i, n = 0;

	json_array_foreach(json_object_get(r, "findings"), i, f)
		n += !strcmp(json_str(f, "kind"), kind);
	return n;
}

static json_t *first_of(const json_t *r, const char *kind)
{
	json_t *f;
	size_t i;

	json_array_foreach(json_object_get(r, "findings"), i, f)
		if (!strcmp(json_str(f, "kind"), kind))
			return f;
	fail_msg("no %s finding", kind);
	return NULL;
}

static int has_string(const json_t *arr, const char *s)
{
	json_t *v;
	size_t i;

	json_array_foreach(arr, i, v)
		if (!strcmp(json_string_value(v), s))
			return 1;
	return 0;
}

static void test_chain(void **state)
{
	json_t *r = report_of(DATA "chain.json"), *f = first_of(r, "sync_chain");
	json_t *services = json_object_get(f, "services");

	/* b -> c -> d is inside a -> b -> c -> d: one finding, not two. */
	assert_int_equal(count_kind(r, "sync_chain"), 1);
	assert_int_equal(json_array_size(json_object_get(r, "findings")), 1);
	assert_string_equal(json_str(f, "severity"), "warning");
	assert_int_equal(json_integer_value(json_object_get(f, "hops")), 3);
	assert_int_equal(json_array_size(services), 4);
	assert_string_equal(json_string_value(json_array_get(services, 0)), "a");
	assert_string_equal(json_string_value(json_array_get(services, 3)), "d");
	assert_true(fabs(json_real_value(json_object_get(f, "availability")) - 0.9703) < 1e-9);
	assert_true(json_real_value(json_object_get(f, "latency_ms")) == 20.0);
	assert_int_equal(json_integer_value(json_object_get(f, "measured_hops")), 2);
	assert_true(has_string(json_object_get(f, "unmeasured"), "c -> d"));
	json_decref(r);
}

/* a -> b -> c -> d -> e and x -> c -> d -> e: both long enough, and the
 * second is not a sub-path of the first. */
static void test_chain_branches(void **state)
{
	static const char *const edges[][2] = {
		{ "a", "b" }, { "b", "c" }, { "c", "d" }, { "d", "e" }, { "x", "c" },
	};
	struct graph *g = graph_new();
	json_t *r, *f;
	size_t i;

	for (i = 0; i < 5; i++) {
		char s[16], t[16];

		graph_service(g, edges[i][0], NULL);
		graph_service(g, edges[i][1], NULL);
		snprintf(s, sizeof(s), "svc:%s", edges[i][0]);
		snprintf(t, sizeof(t), "svc:%s", edges[i][1]);
		json_count_add(graph_edge(g, s, t, "tcp"), "connections", 1);
	}
	r = report_build(g);
	assert_int_equal(count_kind(r, "sync_chain"), 2);
	json_array_foreach(json_object_get(r, "findings"), i, f)
		assert_int_equal(json_integer_value(json_object_get(f, "hops")), i == 0 ? 4 : 3);
	json_decref(r);
	graph_free(g);
}

static void test_cycle(void **state)
{
	json_t *r = report_of(DATA "cycle.json"), *f;
	size_t i, big = 0, self = 0;

	assert_int_equal(count_kind(r, "cycle"), 2);
	json_array_foreach(json_object_get(r, "findings"), i, f) {
		json_t *svcs = json_object_get(f, "services");

		if (strcmp(json_str(f, "kind"), "cycle"))
			continue;
		if (json_array_size(svcs) == 3) {
			big++;
			assert_string_equal(json_str(f, "severity"), "critical");
			assert_true(has_string(svcs, "a") && has_string(svcs, "b") && has_string(svcs, "c"));
		} else {
			self++;
			assert_true(has_string(svcs, "d"));
		}
	}
	assert_int_equal(big, 1);
	assert_int_equal(self, 1);
	/* The cycle is not mistaken for an endless chain. */
	assert_int_equal(count_kind(r, "sync_chain"), 0);
	json_decref(r);
}

static void test_shared_critical(void **state)
{
	json_t *r = report_of(DATA "shared_critical.json"), *f = first_of(r, "shared_table");
	json_t *marks = report_shared_tables(r);

	assert_string_equal(json_str(f, "severity"), "critical");
	assert_int_equal(json_integer_value(json_object_get(f, "writers")), 2);
	assert_true(has_string(json_object_get(f, "services"), "orders"));
	assert_true(has_string(json_object_get(f, "services"), "billing"));
	assert_true(has_string(json_object_get(f, "services"), "reporting"));
	assert_true(has_string(json_object_get(f, "tables"), "public.orders"));
	assert_int_equal(json_array_size(json_object_get(f, "access")), 3);
	assert_string_equal(json_str(marks, "table:svc:postgresql/shop/public.orders"), "critical");
	/* Most severe first. */
	assert_ptr_equal(json_array_get(json_object_get(r, "findings"), 0), f);
	json_decref(marks);
	json_decref(r);
}

static void test_shared_warning(void **state)
{
	json_t *r = report_of(DATA "shared_warning.json"), *f = first_of(r, "shared_table");

	assert_string_equal(json_str(f, "severity"), "warning");
	assert_int_equal(json_integer_value(json_object_get(f, "writers")), 1);
	/* One table in common that is already a shared_table is not co_access. */
	assert_int_equal(json_array_size(json_object_get(r, "findings")), 1);
	json_decref(r);
}

static void test_clean(void **state)
{
	json_t *r = report_of(DATA "clean.json"), *s = json_object_get(r, "summary");

	assert_int_equal(json_array_size(json_object_get(r, "findings")), 0);
	assert_int_equal(json_integer_value(json_object_get(s, "services")), 4);
	assert_int_equal(json_integer_value(json_object_get(s, "tables")), 3);
	assert_int_equal(json_integer_value(json_object_get(s, "findings")), 0);
	json_decref(r);
}

static void test_co_access(void **state)
{
	json_t *r = report_of(DATA "co_access.json"), *f = first_of(r, "co_access");

	assert_int_equal(json_array_size(json_object_get(r, "findings")), 1);
	assert_true(has_string(json_object_get(f, "services"), "catalog"));
	assert_true(has_string(json_object_get(f, "services"), "search"));
	assert_int_equal(json_array_size(json_object_get(f, "tables")), 3);
	assert_true(json_real_value(json_object_get(f, "jaccard")) == 1.0);
	json_decref(r);
}

static void test_fan_out(void **state)
{
	json_t *r = report_of(DATA "fan_out.json"), *f = first_of(r, "fan_out");

	assert_int_equal(count_kind(r, "fan_out"), 1);
	assert_string_equal(json_string_value(json_array_get(json_object_get(f, "services"), 0)), "gateway");
	/* Four services and one endpoint outside the capture. */
	assert_int_equal(json_integer_value(json_object_get(f, "callees")), 5);
	assert_true(has_string(json_object_get(f, "services"), "203.0.113.7:443"));
	json_decref(r);
}

static void test_kinds(void **state)
{
	for (int k = 0; k < REPORT_NKINDS; k++)
		assert_int_equal(report_kind_parse(report_kind_name(k)), k);
	assert_int_equal(report_kind_parse("shared"), -1);
	assert_null(report_kind_name(REPORT_NKINDS));
}

/* cmd_report with stdout and stderr silenced; returns its exit status. */
static int run_report(int argc, char **argv)
{
	int out = dup(1), err = dup(2), null = open("/dev/null", O_WRONLY), ret;

	fflush(stdout);
	dup2(null, 1);
	dup2(null, 2);
	ret = cmd_report(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(out, 1);
	dup2(err, 2);
	close(out);
	close(err);
	close(null);
	return ret;
}

static void test_exit_status(void **state)
{
	char *fail_shared[] = { "report", DATA "shared_critical.json", "--fail-on", "cycle,shared_table", NULL };
	char *fail_clean[] = { "report", DATA "clean.json", "--fail-on", "shared_table,cycle", NULL };
	char *fail_other[] = { "report", DATA "shared_critical.json", "--fail-on", "cycle", NULL };
	char *bad_kind[] = { "report", DATA "clean.json", "--fail-on", "shared", NULL };
	char *bad_file[] = { "report", DATA "truncated.json", NULL };
	char *json[] = { "report", "--format", "json", DATA "demo.json", NULL };
	char *md[] = { "report", "--format=markdown", DATA "demo.json", NULL };
	char *bad_fmt[] = { "report", "--format", "xml", DATA "demo.json", NULL };

	assert_int_equal(run_report(4, fail_shared), 3);
	assert_int_equal(run_report(4, fail_clean), 0);
	assert_int_equal(run_report(4, fail_other), 0);
	assert_int_equal(run_report(4, bad_kind), 2);
	assert_int_equal(run_report(2, bad_file), 1);
	assert_int_equal(run_report(4, json), 0);
	assert_int_equal(run_report(3, md), 0);
	assert_int_equal(run_report(4, bad_fmt), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_chain_branches),
		cmocka_unit_test(test_cycle),
		cmocka_unit_test(test_shared_critical),
		cmocka_unit_test(test_shared_warning),
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_co_access),
		cmocka_unit_test(test_fan_out),
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_exit_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

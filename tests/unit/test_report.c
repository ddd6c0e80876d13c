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
#include <stdlib.h>
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
	/* The entry request's wall time holds the rest. */
	assert_true(json_real_value(json_object_get(f, "latency_ms")) == 20.0);
	/* Half of a -> b's requests call c, and all of b -> c's call d. */
	assert_true(fabs(json_real_value(json_object_get(f, "fraction")) - 0.5) < 1e-9);
	assert_int_equal(json_integer_value(json_object_get(f, "requests")), 5);
	/* One of c's eleven connects to d failed. */
	assert_true(fabs(json_real_value(json_object_get(f, "observed_availability")) - 0.9091) < 1e-9);
	assert_int_equal(json_array_size(json_object_get(f, "hop_detail")), 3);
	assert_true(json_real_value(json_object_get(json_array_get(json_object_get(f, "hop_detail"), 1),
						    "p95_ms")) == 20.0);
	json_decref(r);
}

/* The edge from -> to served n requests; if next, k of them called next. */
static json_t *nest_edge(struct graph *g, const char *from, const char *to, int n, const char *next, int k)
{
	char s[16], t[16], c[16];
	json_t *e;

	graph_service(g, from, NULL);
	graph_service(g, to, NULL);
	snprintf(s, sizeof(s), "svc:%s", from);
	snprintf(t, sizeof(t), "svc:%s", to);
	e = graph_edge(g, s, t, "tcp");
	json_count_add(e, "connections", n);
	if (n && !json_object_get(e, "nesting"))
		json_object_set_new(e, "nesting", json_pack("{s:i, s:{}}", "requests", n, "calls"));
	if (next) {
		snprintf(c, sizeof(c), "svc:%s", next);
		json_object_set_new(json_object_get(json_object_get(e, "nesting"), "calls"), c,
				    json_pack("{s:i, s:i}", "requests", k, "calls", k));
	}
	return e;
}

/* a -> b -> c -> d -> e and x -> c -> d -> e: both long enough, and the
 * second is not a sub-path of the first. */
static void test_chain_branches(void **state)
{
	struct graph *g = graph_new();
	json_t *r, *f;
	size_t i;

	nest_edge(g, "a", "b", 10, "c", 10);
	nest_edge(g, "b", "c", 10, "d", 10);
	nest_edge(g, "c", "d", 20, "e", 20);
	nest_edge(g, "d", "e", 20, NULL, 0);
	nest_edge(g, "x", "c", 10, "d", 10);
	r = report_build(g);
	/* Two entry services, a and x: one finding each. */
	assert_int_equal(count_kind(r, "sync_chain"), 2);
	assert_int_equal(json_integer_value(json_object_get(first_of(r, "sync_chain"), "hops")), 4);
	json_array_foreach(json_object_get(r, "findings"), i, f)
		if (!strcmp(json_str(f, "kind"), "sync_chain"))
			assert_int_equal(json_integer_value(json_object_get(f, "other_chain_count")), 0);
	json_decref(r);
	graph_free(g);
}

/* The same topology, but c calls d only for b: x -> c -> d -> e is no
 * chain, and neither is the path through u, which calls nobody nested
 * (a timer job, or calls made outside any request). */
static void test_chain_not_causal(void **state)
{
	struct graph *g = graph_new();
	json_t *r, *f, *ex;

	nest_edge(g, "a", "b", 100, "c", 30);
	nest_edge(g, "b", "c", 40, "d", 10);
	nest_edge(g, "c", "d", 10, "e", 10);
	nest_edge(g, "d", "e", 10, NULL, 0);
	nest_edge(g, "x", "c", 50, NULL, 0);
	nest_edge(g, "u", "b", 0, NULL, 0);
	/* Interleaved requests are no evidence either way. */
	ex = nest_edge(g, "y", "c", 10, "d", 10);
	json_object_set_new(json_object_get(ex, "nesting"), "ambiguous", json_integer(10));
	r = report_build(g);
	assert_int_equal(count_kind(r, "sync_chain"), 1);
	f = first_of(r, "sync_chain");
	assert_int_equal(json_integer_value(json_object_get(f, "hops")), 4);
	assert_string_equal(json_string_value(json_array_get(json_object_get(f, "services"), 0)), "a");
	/* 30/100 * 10/40 * 10/10 */
	assert_true(fabs(json_real_value(json_object_get(f, "fraction")) - 0.075) < 1e-9);
	assert_int_equal(json_integer_value(json_object_get(f, "requests")), 8);
	json_decref(r);
	graph_free(g);

	/* No nesting at all: a topology is no finding. */
	g = graph_load(DATA "demo.json", (char[256]){ 0 }, 256);
	assert_non_null(g);
	r = report_build(g);
	assert_true(count_kind(r, "sync_chain") > 0);
	json_decref(r);
	for (size_t i = 0; i < graph_edge_count(g); i++)
		json_object_del(graph_edge_at(g, i), "nesting");
	r = report_build(g);
	assert_int_equal(count_kind(r, "sync_chain"), 0);
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

/* The finding of one sync_chain entry service, or NULL. */
static json_t *chain_from(const json_t *r, const char *entry)
{
	json_t *f;
	size_t i;

	json_array_foreach(json_object_get(r, "findings"), i, f)
		if (!strcmp(json_str(f, "kind"), "sync_chain") &&
		    !strcmp(json_string_value(json_array_get(json_object_get(f, "services"), 0)), entry))
			return f;
	return NULL;
}

static void test_chain_groups(void **state)
{
	json_t *r = report_of(DATA "chains.json"), *web, *cron, *others, *c;
	const char *const second[] = { "web", "api", "orders", "stock", "db" };
	size_t i;

	/* web and cron start every chain; api's are inside web's. */
	assert_int_equal(count_kind(r, "sync_chain"), 2);
	assert_non_null(web = chain_from(r, "web"));
	assert_non_null(cron = chain_from(r, "cron"));
	assert_null(chain_from(r, "api"));

	assert_int_equal(json_integer_value(json_object_get(web, "hops")), 5);
	assert_string_equal(json_string_value(json_array_get(json_object_get(web, "services"), 2)), "billing");
	assert_int_equal(json_integer_value(json_object_get(web, "other_chain_count")), 3);
	assert_non_null(strstr(json_str(web, "title"), "and 3 other chains from web"));
	others = json_object_get(web, "other_chains");
	assert_int_equal(json_array_size(others), 3);
	/* Deepest first, then the busiest: via orders (100 * 80/100 * 60/80 *
	 * 50/60 = 50 requests) before search (100 * 40/100 * 10/40 = 10). */
	c = json_array_get(others, 0);
	assert_int_equal(json_integer_value(json_object_get(c, "hops")), 4);
	for (i = 0; i < 5; i++)
		assert_string_equal(json_string_value(json_array_get(json_object_get(c, "services"), i)), second[i]);
	assert_int_equal(json_integer_value(json_object_get(c, "requests")), 50);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(others, 1), "requests")), 10);
	/* Every detail of a chain is kept for the other chains too. */
	assert_true(fabs(json_real_value(json_object_get(c, "availability")) - 0.9606) < 1e-9);
	assert_true(json_real_value(json_object_get(c, "latency_ms")) == 8.0);
	assert_int_equal(json_array_size(json_object_get(c, "details")), 3);
	assert_int_equal(json_array_size(json_object_get(c, "hop_detail")), 4);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(others, 1), "hops")), 4);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(others, 2), "hops")), 3);
	/* The group's traffic counts each edge once: all 440 but cron -> billing. */
	assert_int_equal(json_integer_value(json_object_get(web, "traffic")), 440 - 5);

	assert_int_equal(json_integer_value(json_object_get(cron, "hops")), 4);
	/* cron -> billing -> ledger: two hops are a (causal) chain too. */
	assert_int_equal(json_integer_value(json_object_get(cron, "other_chain_count")), 1);
	assert_int_equal(json_array_size(json_object_get(cron, "other_chains")), 1);
	assert_int_equal(json_integer_value(json_object_get(cron, "traffic")), 5 + 20 + 60 + 50 + 5);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(r, "summary"), "chains")), 6);
	json_decref(r);
}

/* Most severe first, then the most traffic. */
static void test_order(void **state)
{
	const char *const files[] = { DATA "chains.json", DATA "demo.json", DATA "closure.json" };

	for (size_t k = 0; k < 3; k++) {
		json_t *r = report_of(files[k]), *f, *prev = NULL;
		size_t i;

		json_array_foreach(json_object_get(r, "findings"), i, f) {
			assert_true(json_is_integer(json_object_get(f, "traffic")));
			if (prev && !strcmp(json_str(prev, "severity"), json_str(f, "severity")))
				assert_true(json_integer_value(json_object_get(prev, "traffic")) >=
					    json_integer_value(json_object_get(f, "traffic")));
			prev = f;
		}
		json_decref(r);
	}
}

static void test_catalogs(void **state)
{
	json_t *r = report_of(DATA "catalog.json"), *cats, *c;
	size_t i;

	/* Three services read the catalogs and two update pg_settings: still
	 * no shared_table, and no co_access between billing and reporting. */
	assert_int_equal(json_array_size(json_object_get(r, "findings")), 0);
	cats = json_object_get(json_object_get(r, "summary"), "catalog_tables");
	assert_int_equal(json_array_size(cats), 3);
	json_array_foreach(cats, i, c) {
		assert_int_equal(json_array_size(json_object_get(c, "services")), 3);
		assert_string_equal(json_str(c, "database"), "shop");
		assert_true(has_string(json_object_get(c, "services"), "reporting"));
	}
	assert_string_equal(json_str(json_array_get(cats, 0), "table"), "information_schema.tables");
	assert_string_equal(json_str(json_array_get(cats, 2), "node"),
			    "table:svc:postgresql/shop/pg_catalog.pg_settings");
	json_decref(r);

	/* A plain table is no catalog; an empty list when there is none. */
	r = report_of(DATA "shared_critical.json");
	assert_int_equal(json_array_size(json_object_get(json_object_get(r, "summary"), "catalog_tables")), 0);
	json_decref(r);
}

static json_t *closure_of(const json_t *r, const char *svc)
{
	json_t *f;
	size_t i;

	json_array_foreach(json_object_get(r, "findings"), i, f)
		if (!strcmp(json_str(f, "kind"), "test_closure") &&
		    !strcmp(json_string_value(json_array_get(json_object_get(f, "services"), 0)), svc))
			return f;
	return NULL;
}

static void test_closure(void **state)
{
	json_t *r = report_of(DATA "closure.json"), *a, *y, *cs;

	/* g, a and y need 4 or more other services; b, c, d, e, x, h and pg
	 * do not. */
	assert_int_equal(count_kind(r, "test_closure"), 3);
	assert_non_null(closure_of(r, "g"));
	assert_null(closure_of(r, "b"));
	assert_null(closure_of(r, "x"));
	assert_null(closure_of(r, "h"));

	assert_non_null(a = closure_of(r, "a"));
	assert_string_equal(json_str(a, "severity"), "warning");
	cs = json_object_get(a, "closure_services");
	assert_int_equal(json_array_size(cs), 5);
	assert_true(has_string(cs, "b") && has_string(cs, "c") && has_string(cs, "d") &&
		    has_string(cs, "e") && has_string(cs, "pg"));
	assert_false(has_string(cs, "g") || has_string(cs, "a"));
	/* Its own table counts, the catalog does not. */
	cs = json_object_get(a, "closure_tables");
	assert_int_equal(json_array_size(cs), 3);
	assert_string_equal(json_string_value(json_array_get(cs, 0)), "public.ta");
	assert_false(has_string(json_object_get(a, "tables"), "pg_catalog.pg_class"));
	assert_true(fabs(json_real_value(json_object_get(a, "share")) - 0.556) < 1e-9); /* 5 of 9 */
	assert_string_equal(json_str(a, "title"), "testing a needs 5 other services and 3 tables running");
	/* Calls out of the closure (a -> b 10, a -> e 3, b -> c 7, c -> d 7,
	 * e -> c 2, a/c/d -> pg 6) and its statements (5 + 4 + 2). */
	assert_int_equal(json_integer_value(json_object_get(a, "traffic")), 35 + 11);

	/* Exactly the threshold: e, c, d, pg. */
	assert_non_null(y = closure_of(r, "y"));
	assert_int_equal(json_array_size(json_object_get(y, "closure_services")), REPORT_CLOSURE_MIN_SERVICES);
	assert_int_equal(json_array_size(json_object_get(y, "closure_tables")), 2);
	json_decref(r);
}

static void test_kinds(void **state)
{
	for (int k = 0; k < REPORT_NKINDS; k++)
		assert_int_equal(report_kind_parse(report_kind_name(k)), k);
	assert_int_equal(report_kind_parse("shared"), -1);
	assert_int_equal(report_kind_parse("test_closure"), REPORT_TEST_CLOSURE);
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

/* cmd_report's stdout as a string (free it); stderr silenced. */
static char *report_text(const char *file)
{
	char *argv[] = { "report", (char *)file, NULL }, *buf = calloc(1, 65536);
	char path[] = "/tmp/test_report.XXXXXX";
	int fd = mkstemp(path), out = dup(1), err = dup(2), null = open("/dev/null", O_WRONLY);
	ssize_t n;

	assert_true(fd >= 0 && buf);
	fflush(stdout);
	dup2(fd, 1);
	dup2(null, 2);
	assert_int_equal(cmd_report(2, argv), 0);
	fflush(stdout);
	dup2(out, 1);
	dup2(err, 2);
	n = pread(fd, buf, 65535, 0);
	assert_true(n > 0);
	close(fd);
	close(out);
	close(err);
	close(null);
	unlink(path);
	return buf;
}

static size_t count_lines_with(const char *text, const char *needle)
{
	size_t n = 0;

	for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		const char *end = strchr(line, '\n'), *hit = strstr(line, needle);

		n += hit && (!end || hit < end);
	}
	return n;
}

static void test_text(void **state)
{
	char *t = report_text(DATA "catalog.json");

	/* The catalogs take one line, and nothing else mentions them. */
	assert_int_equal(count_lines_with(t, "system catalogs"), 1);
	assert_int_equal(count_lines_with(t, "pg_catalog"), 1);
	assert_non_null(strstr(t, "(read by 3 services)"));
	assert_non_null(strstr(t, "no coupling findings"));
	free(t);

	/* Four test_closure findings: three shown, the fourth counted. */
	t = report_text(DATA "chains.json");
	assert_int_equal(count_lines_with(t, "WARNING  test_closure"), REPORT_TEXT_PER_KIND);
	assert_int_equal(count_lines_with(t, "WARNING  sync_chain"), 2);
	assert_non_null(strstr(t, "not shown: 1 more test_closure"));
	assert_int_equal(count_lines_with(t, "system catalogs"), 0);
	free(t);
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
	char *fail_closure[] = { "report", DATA "closure.json", "--fail-on", "test_closure", NULL };
	char *pass_closure[] = { "report", DATA "catalog.json", "--fail-on", "test_closure,shared_table,co_access", NULL };

	assert_int_equal(run_report(4, fail_shared), 3);
	assert_int_equal(run_report(4, fail_clean), 0);
	assert_int_equal(run_report(4, fail_other), 0);
	assert_int_equal(run_report(4, bad_kind), 2);
	assert_int_equal(run_report(2, bad_file), 1);
	assert_int_equal(run_report(4, json), 0);
	assert_int_equal(run_report(3, md), 0);
	assert_int_equal(run_report(4, bad_fmt), 2);
	assert_int_equal(run_report(4, fail_closure), 3);
	assert_int_equal(run_report(4, pass_closure), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chain),
		cmocka_unit_test(test_chain_branches),
		cmocka_unit_test(test_chain_not_causal),
		cmocka_unit_test(test_cycle),
		cmocka_unit_test(test_shared_critical),
		cmocka_unit_test(test_shared_warning),
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_co_access),
		cmocka_unit_test(test_fan_out),
		cmocka_unit_test(test_chain_groups),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_catalogs),
		cmocka_unit_test(test_closure),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_exit_status),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* export_*.c: each format is well formed, holds every drawn node and
 * escapes names that would break it. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "export.h"
#include "graph.h"
#include "report.h"

#define DATA "tests/data/"

struct fixture {
	struct graph *g;
	json_t *report;
};

static int setup(void **state)
{
	static struct fixture fx;
	char err[512];

	fx.g = graph_load(DATA "demo.json", err, sizeof(err));
	if (!fx.g)
		fail_msg("%s", err);
	fx.report = report_build(fx.g);
	*state = &fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	json_decref(fx->report);
	graph_free(fx->g);
	return 0;
}

/* Every service, external and table name appears in the document. */
static void assert_all_names(struct graph *g, const char *doc)
{
	for (size_t i = 0; i < graph_node_count(g); i++) {
		json_t *n = graph_node_at(g, i);

		if (strcmp(json_str(n, "kind"), "database") && !strstr(doc, json_str(n, "name")))
			fail_msg("%s is missing", json_str(n, "name"));
	}
}

static void test_dot(void **state)
{
	struct fixture *fx = *state;
	char err[256], *dot = export_dot(fx->g, fx->report, err, sizeof(err));

	assert_non_null(dot);
	assert_int_equal(strncmp(dot, "digraph seams {", 15), 0);
	assert_string_equal(dot + strlen(dot) - 2, "}\n");
	assert_all_names(fx->g, dot);
	assert_non_null(strstr(dot, "shared-write"));
	assert_non_null(strstr(dot, "subgraph cluster_"));
	free(dot);
}

static void test_mermaid(void **state)
{
	struct fixture *fx = *state;
	char err[256], *mmd = export_mermaid(fx->g, fx->report, err, sizeof(err));

	assert_non_null(mmd);
	assert_int_equal(strncmp(mmd, "flowchart LR\n", 13), 0);
	assert_all_names(fx->g, mmd);
	assert_non_null(strstr(mmd, "-->"));
	assert_non_null(strstr(mmd, "-.->"));
	free(mmd);
}

static void test_svg(void **state)
{
	struct fixture *fx = *state;
	char err[256], *svg = export_svg(fx->g, fx->report, err, sizeof(err));

	if (!svg)
		fail_msg("%s", err);
	assert_true(!strncmp(svg, "<?xml", 5) || !strncmp(svg, "<svg", 4));
	assert_non_null(strstr(svg, "</svg>"));
	assert_all_names(fx->g, svg);
	assert_non_null(strstr(svg, "fill=\"#fecaca\"")); /* the contested table */
	free(svg);
}

static void test_html(void **state)
{
	struct fixture *fx = *state;
	char err[256], *html = export_html(fx->g, fx->report, "demo <1>", err, sizeof(err));

	if (!html)
		fail_msg("%s", err);
	assert_int_equal(strncmp(html, "<!DOCTYPE html>", 15), 0);
	assert_non_null(strstr(html, "<svg"));
	assert_null(strstr(html, "<?xml")); /* the prolog is dropped inline */
	assert_non_null(strstr(html, "</html>"));
	assert_non_null(strstr(html, "demo &lt;1&gt;"));
	assert_non_null(strstr(html, "data-kind=\"shared_table\""));
	assert_non_null(strstr(html, "public.orders (database shop) is written by 2 services"));
	assert_non_null(strstr(html, "table written by several services")); /* legend */
	/* Self-contained: nothing to fetch. */
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<link"));
	assert_null(strstr(html, "src="));
	free(html);
}

/* Names are data: quotes, markup and backslashes must not break out. */
static void test_escaping(void **state)
{
	struct graph *g = graph_new();
	json_t *r;
	char err[256], *dot, *mmd, *html;

	graph_service(g, "evil\"<b>\\", NULL);
	graph_service(g, "ok", NULL);
	graph_edge(g, "svc:ok", "svc:evil\"<b>\\", "tcp");
	r = report_build(g);
	dot = export_dot(g, r, err, sizeof(err));
	mmd = export_mermaid(g, r, err, sizeof(err));
	html = export_html(g, r, "t", err, sizeof(err));
	assert_non_null(strstr(dot, "label=\"evil\\\"<b>\\\\\""));
	assert_non_null(strstr(mmd, "\"evil#34;#60;b#62;#92;\""));
	if (!html)
		fail_msg("%s", err);
	assert_null(strstr(html, "<b>"));
	free(dot);
	free(mmd);
	free(html);
	json_decref(r);
	graph_free(g);
}

static int run_export(int argc, char **argv)
{
	int out = dup(1), err = dup(2), null = open("/dev/null", O_WRONLY), ret;

	fflush(stdout);
	dup2(null, 1);
	dup2(null, 2);
	ret = cmd_export(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(out, 1);
	dup2(err, 2);
	close(out);
	close(err);
	close(null);
	return ret;
}

static void test_cmd_export(void **state)
{
	char dir[] = "/tmp/seams-test-XXXXXX", path[64];
	char *ok[] = { "export", DATA "demo.json", "--format", "html", "--output", path, NULL };
	char *bad_fmt[] = { "export", DATA "demo.json", "--format", "png", NULL };
	char *no_fmt[] = { "export", DATA "demo.json", NULL };
	char *bad_out[] = { "export", DATA "demo.json", "-f", "dot", "-o", "/nonexistent-dir/x.dot", NULL };
	struct dirent *d;
	size_t files = 0;
	DIR *dh;
	FILE *f;
	long size;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/graph.html", dir);
	assert_int_equal(run_export(6, ok), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fclose(f);
	assert_true(size > 1000);
	/* The atomic write leaves only the result behind. */
	dh = opendir(dir);
	while ((d = readdir(dh)))
		files += strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
	closedir(dh);
	assert_int_equal(files, 1);
	unlink(path);
	rmdir(dir);

	assert_int_equal(run_export(4, bad_fmt), 2);
	assert_int_equal(run_export(2, no_fmt), 2);
	assert_int_equal(run_export(6, bad_out), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dot),
		cmocka_unit_test(test_mermaid),
		cmocka_unit_test(test_svg),
		cmocka_unit_test(test_html),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_cmd_export),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}

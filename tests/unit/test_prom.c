/* prom.c: exact text for families, samples and histograms; label values
 * escaped, cut on a UTF-8 boundary and cleaned of bytes that are not UTF-8.
 *
 * Checked by hand with promtool (Debian `prometheus` 2.42): the page
 * test_promtool_page() writes to $SEAMS_PROM_PAGE, when set, lints clean:
 *   SEAMS_PROM_PAGE=/tmp/page.prom build/tests/test_prom &&
 *   promtool check metrics < /tmp/page.prom
 * The test itself never needs promtool. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

static void test_strbuf(void **state)
{
	struct strbuf b = { 0 };

	sb_printf(&b, "%s-%d", "a", 1);
	sb_putc(&b, '!');
	sb_append(&b, "xyz", 2);
	assert_string_equal(b.s, "a-1!xy");
	assert_int_equal(b.len, 6);
	/* Past the first allocation, in one printf. */
	sb_printf(&b, "%0600d", 7);
	assert_int_equal(b.len, 606);
	assert_int_equal(strlen(b.s), 606);
	assert_int_equal(b.s[605], '7');
	sb_reset(&b);
	assert_string_equal(b.s, "");
	assert_false(b.oom);
	sb_free(&b);
	assert_null(b.s);
}

static void test_format_value(void **state)
{
	char v[32];

	assert_string_equal(prom_format_value(0, v, sizeof(v)), "0");
	assert_string_equal(prom_format_value(1, v, sizeof(v)), "1");
	assert_string_equal(prom_format_value(-42, v, sizeof(v)), "-42");
	assert_string_equal(prom_format_value(0.005, v, sizeof(v)), "0.005");
	assert_string_equal(prom_format_value(0.1, v, sizeof(v)), "0.1");
	assert_string_equal(prom_format_value(2.5, v, sizeof(v)), "2.5");
	assert_string_equal(prom_format_value(1e6, v, sizeof(v)), "1000000");
	assert_string_equal(prom_format_value(9007199254740991.0, v, sizeof(v)), "9007199254740991");
	assert_string_equal(prom_format_value(9007199254740992.0, v, sizeof(v)), "9007199254740992");
	assert_string_equal(prom_format_value(1e300, v, sizeof(v)), "1e+300");
	assert_string_equal(prom_format_value(9007199254740994.0, v, sizeof(v)), "9007199254740994");
	assert_string_equal(prom_format_value(0.1 + 0.2, v, sizeof(v)), "0.30000000000000004");
	assert_string_equal(prom_format_value(1e-7, v, sizeof(v)), "1e-07");
	assert_string_equal(prom_format_value(1.0 / 3, v, sizeof(v)), "0.3333333333333333");
	assert_string_equal(prom_format_value(INFINITY, v, sizeof(v)), "+Inf");
	assert_string_equal(prom_format_value(-INFINITY, v, sizeof(v)), "-Inf");
	assert_string_equal(prom_format_value(NAN, v, sizeof(v)), "NaN");
}

static void test_family_and_samples(void **state)
{
	struct strbuf b = { 0 };
	const char *const labels[] = { "client", "gateway", "server", "orders", NULL };

	prom_family(&b, "traces_service_graph_request_total", "counter",
		    "Requests between two services.\nBack\\slash \"kept\"");
	prom_sample(&b, "traces_service_graph_request_total", labels, 327);
	prom_sample(&b, "traces_service_graph_request_total", NULL, 0.25);
	prom_sample(&b, "up", (const char *const[]){ NULL }, 1);
	assert_false(b.oom);
	assert_string_equal(b.s,
		"# HELP traces_service_graph_request_total Requests between two services.\\nBack\\\\slash \"kept\"\n"
		"# TYPE traces_service_graph_request_total counter\n"
		"traces_service_graph_request_total{client=\"gateway\",server=\"orders\"} 327\n"
		"traces_service_graph_request_total 0.25\n"
		"up 1\n");
	sb_free(&b);
}

static void test_escaping(void **state)
{
	struct strbuf b = { 0 };

	prom_sample(&b, "m", (const char *const[]){ "q", "a\\b \"c\"\nd\te", NULL }, 1);
	assert_string_equal(b.s, "m{q=\"a\\\\b \\\"c\\\"\\nd\te\"} 1\n");
	sb_reset(&b);
	/* Valid UTF-8 passes; a stray continuation byte, an overlong '/',
	 * a surrogate and a truncated sequence each become U+FFFD per byte. */
	prom_sample(&b, "m", (const char *const[]){
		"v", "h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\x80|\xc0\xaf|\xed\xa0\x80|\xe2\x82", NULL }, 1);
	assert_string_equal(b.s, "m{v=\"h\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80|\xef\xbf\xbd|"
				 "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
				 "\xef\xbf\xbd\xef\xbf\xbd\"} 1\n");
	sb_reset(&b);
	prom_sample(&b, "m", (const char *const[]){ "empty", "", NULL }, 1);
	assert_string_equal(b.s, "m{empty=\"\"} 1\n");
	sb_free(&b);
}

/* The value between the first pair of quotes of a one-label line. */
static size_t quoted_len(const char *line)
{
	const char *a = strchr(line, '"'), *z = strrchr(line, '"');

	return z - a - 1;
}

static void test_cut_on_utf8_boundary(void **state)
{
	struct strbuf b = { 0 };
	char v[2048];

	/* 1023 ASCII then a 2-byte character: it would end at 1025, so it
	 * goes whole and the value is 1023 bytes. */
	memset(v, 'a', 1023);
	strcpy(v + 1023, "\xc3\xa9zzzz");
	prom_sample(&b, "m", (const char *const[]){ "k", v, NULL }, 1);
	assert_int_equal(quoted_len(b.s), 1023);
	assert_string_equal(b.s + strlen(b.s) - 6, "a\"} 1\n");
	sb_reset(&b);

	/* Exactly 1024 fits; the 1025th byte is cut. */
	memset(v, 'b', 1100);
	v[1100] = '\0';
	prom_sample(&b, "m", (const char *const[]){ "k", v, NULL }, 1);
	assert_int_equal(quoted_len(b.s), PROM_LABEL_MAX);
	sb_reset(&b);

	/* The limit counts text, not escapes: 1024 quotes write 2048 bytes. */
	memset(v, '"', 1100);
	prom_sample(&b, "m", (const char *const[]){ "k", v, NULL }, 1);
	assert_int_equal(quoted_len(b.s), 2 * PROM_LABEL_MAX);
	sb_reset(&b);

	/* Three-byte characters: 341 of them are 1023 bytes, a 342nd would
	 * pass the limit. */
	for (int i = 0; i < 400; i++)
		memcpy(v + 3 * i, "\xe2\x82\xac", 3);
	v[1200] = '\0';
	prom_sample(&b, "m", (const char *const[]){ "k", v, NULL }, 1);
	assert_int_equal(quoted_len(b.s), 1023);
	sb_free(&b);
}

static void test_histogram(void **state)
{
	struct strbuf b = { 0 };
	const char *const labels[] = { "client", "a", "server", "b", NULL };
	const double bounds[] = { 0.005, 0.1, 1, 10 };
	const uint64_t counts[] = { 3, 0, 5, 1, 2 };

	prom_family(&b, "traces_service_graph_request_server_seconds", "histogram", "Server-side latency.");
	prom_histogram(&b, "traces_service_graph_request_server_seconds", labels, bounds, counts, 4, 12.75);
	prom_histogram(&b, "h", NULL, NULL, (const uint64_t[]){ 4 }, 0, 0.5);
	assert_false(b.oom);
	assert_string_equal(b.s,
		"# HELP traces_service_graph_request_server_seconds Server-side latency.\n"
		"# TYPE traces_service_graph_request_server_seconds histogram\n"
		"traces_service_graph_request_server_seconds_bucket{client=\"a\",server=\"b\",le=\"0.005\"} 3\n"
		"traces_service_graph_request_server_seconds_bucket{client=\"a\",server=\"b\",le=\"0.1\"} 3\n"
		"traces_service_graph_request_server_seconds_bucket{client=\"a\",server=\"b\",le=\"1\"} 8\n"
		"traces_service_graph_request_server_seconds_bucket{client=\"a\",server=\"b\",le=\"10\"} 9\n"
		"traces_service_graph_request_server_seconds_bucket{client=\"a\",server=\"b\",le=\"+Inf\"} 11\n"
		"traces_service_graph_request_server_seconds_sum{client=\"a\",server=\"b\"} 12.75\n"
		"traces_service_graph_request_server_seconds_count{client=\"a\",server=\"b\"} 11\n"
		"h_bucket{le=\"+Inf\"} 4\n"
		"h_sum 0.5\n"
		"h_count 4\n");
	sb_free(&b);
}

/* A page with every kind of line, for promtool (see the top comment). */
static void test_promtool_page(void **state)
{
	struct strbuf b = { 0 };
	const char *path = getenv("SEAMS_PROM_PAGE");
	const double bounds[] = { 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10 };
	const uint64_t counts[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
	const char *const edge[] = { "client", "orders", "server", "shop", "connection_type", "database", NULL };
	const char *const odd[] = { "client", "we\"ird\\na\nme \xff", "server", "x", "connection_type", "", NULL };
	FILE *f;

	prom_family(&b, "traces_service_graph_request_total", "counter", "Requests from client to server.");
	prom_sample(&b, "traces_service_graph_request_total", edge, 326);
	prom_sample(&b, "traces_service_graph_request_total", odd, 1);
	prom_family(&b, "traces_service_graph_request_server_seconds", "histogram", "Latency seen by the server.");
	prom_histogram(&b, "traces_service_graph_request_server_seconds", edge, bounds, counts, 9, 1.25);
	prom_family(&b, "seams_lost_events_total", "counter", "Events the kernel could not hand over.");
	prom_sample(&b, "seams_lost_events_total", NULL, 0);
	prom_family(&b, "seams_open_connections", "gauge", "Connections open now.");
	prom_sample(&b, "seams_open_connections", NULL, 17);
	assert_false(b.oom);
	if (path) {
		f = fopen(path, "w");
		assert_non_null(f);
		fwrite(b.s, 1, b.len, f);
		assert_int_equal(fclose(f), 0);
	}
	sb_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strbuf),
		cmocka_unit_test(test_format_value),
		cmocka_unit_test(test_family_and_samples),
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_cut_on_utf8_boundary),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_promtool_page),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

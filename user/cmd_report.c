/* seams report: the findings of a graph for a terminal, markdown or JSON,
 * and an exit status CI can gate on (--fail-on). */
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd.h"
#include "graph.h"
#include "report.h"

#define EXIT_FINDINGS 3	/* --fail-on matched: distinct from errors (1) and usage (2) */

enum format { FMT_TEXT, FMT_MARKDOWN, FMT_JSON };

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seams report GRAPH.json [--format text|markdown|json] [--fail-on KIND[,KIND...]]\n"
		"\n"
		"Lists the coupling found in a graph: shared_table, sync_chain, fan_out,\n"
		"cycle, co_access, test_closure.  GRAPH.json may be - for stdin.\n"
		"\n"
		"  -f, --format FMT     text (default: at most %d findings of a kind), markdown\n"
		"                       or json (every finding and every chain)\n"
		"      --fail-on KINDS  exit %d when a finding of these kinds is present\n"
		"\n"
		"exit status: 0 done, 1 unreadable graph, 2 bad usage, %d --fail-on matched\n",
		REPORT_TEXT_PER_KIND, EXIT_FINDINGS, EXIT_FINDINGS);
}

/* ---- text ------------------------------------------------------------ */

struct palette {
	const char *critical, *warning, *info, *dim, *reset;
};

static const struct palette no_colour = { "", "", "", "", "" };
static const struct palette ansi = { "\033[1;31m", "\033[33m", "\033[36m", "\033[2m", "\033[0m" };

/* Colour only for a person at a terminal who has not opted out
 * (https://no-color.org: any non-empty NO_COLOR). */
static const struct palette *pick_palette(void)
{
	const char *nc = getenv("NO_COLOR");

	if (!isatty(STDOUT_FILENO) || (nc && *nc))
		return &no_colour;
	return &ansi;
}

static const char *severity_colour(const struct palette *p, const char *sev)
{
	return !strcmp(sev, "critical") ? p->critical : !strcmp(sev, "warning") ? p->warning : p->info;
}

static json_int_t summary_int(const json_t *report, const char *key)
{
	return json_integer_value(json_object_get(json_object_get(report, "summary"), key));
}

static json_int_t severity_count(const json_t *report, const char *sev)
{
	json_t *s = json_object_get(json_object_get(report, "summary"), "by_severity");

	return json_integer_value(json_object_get(s, sev));
}

/* "8 services, 1 table, 13 tcp and 8 sql edges" */
static void print_counts(FILE *out, const json_t *report)
{
	long long svc = summary_int(report, "services"), tab = summary_int(report, "tables");

	fprintf(out, "%lld service%s, %lld table%s, %lld tcp and %lld sql edges\n",
		svc, svc == 1 ? "" : "s", tab, tab == 1 ? "" : "s",
		(long long)summary_int(report, "tcp_edges"), (long long)summary_int(report, "sql_edges"));
}

/* One line at most: every client reads the catalogs, so they are context,
 * not coupling. */
static void print_catalogs(FILE *out, const struct palette *p, const json_t *report)
{
	json_t *cats = json_object_get(json_object_get(report, "summary"), "catalog_tables"), *c, *svc;
	json_t *readers = json_object();
	size_t i, j, n = json_array_size(cats);

	if (!n) {
		json_decref(readers);
		return;
	}
	fprintf(out, "%ssystem catalogs (never a finding): ", p->dim);
	json_array_foreach(cats, i, c) {
		json_array_foreach(json_object_get(c, "services"), j, svc)
			json_object_set_new(readers, json_string_value(svc), json_true());
		if (i < 3)
			fprintf(out, "%s%s", i ? ", " : "", json_str(c, "table"));
	}
	if (n > 3)
		fprintf(out, " and %zu more", n - 3);
	fprintf(out, " (read by %zu service%s)%s\n", json_object_size(readers),
		json_object_size(readers) == 1 ? "" : "s", p->reset);
	json_decref(readers);
}

static void print_text(FILE *out, const char *path, const json_t *report)
{
	const struct palette *p = pick_palette();
	json_t *findings = json_object_get(report, "findings"), *f, *d;
	size_t i, j, shown[REPORT_NKINDS] = { 0 }, hidden[REPORT_NKINDS] = { 0 }, nhidden = 0;

	fprintf(out, "%s: ", path);
	print_counts(out, report);
	print_catalogs(out, p, report);
	if (!json_array_size(findings)) {
		fprintf(out, "no coupling findings\n");
		return;
	}
	fprintf(out, "%zu finding%s: %lld critical, %lld warning, %lld info\n", json_array_size(findings),
		json_array_size(findings) == 1 ? "" : "s",
		(long long)severity_count(report, "critical"), (long long)severity_count(report, "warning"),
		(long long)severity_count(report, "info"));
	json_array_foreach(findings, i, f) {
		const char *sev = json_str(f, "severity");
		int kind = report_kind_parse(json_str(f, "kind"));
		char upper[16];

		/* A terminal screen: the first few of a kind, most severe and
		 * busiest first, say what the rest would. */
		if (kind >= 0 && shown[kind]++ >= REPORT_TEXT_PER_KIND) {
			hidden[kind]++;
			nhidden++;
			continue;
		}
		for (j = 0; j + 1 < sizeof(upper) && sev[j]; j++)
			upper[j] = sev[j] - 32 * (sev[j] >= 'a' && sev[j] <= 'z');
		upper[j] = 0;
		fprintf(out, "\n%s%-8s%s %-12s  %s\n", severity_colour(p, sev), upper, p->reset,
			json_str(f, "kind"), json_str(f, "title"));
		json_array_foreach(json_object_get(f, "details"), j, d)
			fprintf(out, "%s%23s%s%s\n", p->dim, "", json_string_value(d), p->reset);
	}
	if (nhidden) {
		size_t listed = 0;

		fprintf(out, "\nnot shown:");
		for (int k = 0; k < REPORT_NKINDS; k++)
			if (hidden[k])
				fprintf(out, "%s %zu more %s", listed++ ? "," : "", hidden[k], report_kind_name(k));
		fprintf(out, " (--format json or markdown lists every finding)\n");
	}
	if (json_is_true(json_object_get(json_object_get(report, "summary"), "chain_search_truncated")))
		fprintf(out, "\nnote: the chain search stopped early on this dense graph; longer chains may exist\n");
}

/* ---- markdown -------------------------------------------------------- */

/* Names are user data: keep them from turning into markup. */
static void md_escape(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (strchr("\\`*_[]<|", *s))
			fputc('\\', out);
		fputc(*s, out);
	}
}

static void print_markdown(FILE *out, const char *path, const json_t *report)
{
	json_t *findings = json_object_get(report, "findings"), *f, *d;
	size_t i, j;

	fputs("# seams report: ", out);
	md_escape(out, path);
	fputs("\n\n", out);
	print_counts(out, report);
	fputc('\n', out);
	if (!json_array_size(findings)) {
		fputs("\nNo coupling findings.\n", out);
		return;
	}
	fprintf(out, "**%zu findings**: %lld critical, %lld warning, %lld info.\n\n",
		json_array_size(findings), (long long)severity_count(report, "critical"),
		(long long)severity_count(report, "warning"), (long long)severity_count(report, "info"));
	fputs("| # | severity | kind | finding |\n|---|---|---|---|\n", out);
	json_array_foreach(findings, i, f) {
		fprintf(out, "| %zu | %s | %s | ", i + 1, json_str(f, "severity"), json_str(f, "kind"));
		md_escape(out, json_str(f, "title"));
		fputs(" |\n", out);
	}
	json_array_foreach(findings, i, f) {
		fprintf(out, "\n## %zu. %s %s: ", i + 1, json_str(f, "severity"), json_str(f, "kind"));
		md_escape(out, json_str(f, "title"));
		fputs("\n\n", out);
		json_array_foreach(json_object_get(f, "details"), j, d) {
			fputs("- ", out);
			md_escape(out, json_string_value(d));
			fputc('\n', out);
		}
	}
}

/* ---- options --------------------------------------------------------- */

/* "shared_table,cycle" -> mask of report kinds; -1 on an unknown kind. */
static int parse_kinds(const char *list, unsigned *mask)
{
	char *copy = strdup(list), *save = NULL;
	int ret = 0;

	if (!copy)
		return -1;
	for (char *k = strtok_r(copy, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
		int kind = report_kind_parse(k);

		if (kind < 0) {
			char known[256];
			size_t used = 0;

			known[0] = 0;
			for (int i = 0; i < REPORT_NKINDS && used < sizeof(known); i++)
				used += snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "",
						 report_kind_name(i));
			die_msg("unknown finding kind '%s' in --fail-on; kinds are %s", k, known);
			ret = -1;
			break;
		}
		*mask |= 1u << kind;
	}
	free(copy);
	return ret;
}

static int parse_format(const char *s, enum format *fmt)
{
	if (!strcmp(s, "text"))
		*fmt = FMT_TEXT;
	else if (!strcmp(s, "markdown") || !strcmp(s, "md"))
		*fmt = FMT_MARKDOWN;
	else if (!strcmp(s, "json"))
		*fmt = FMT_JSON;
	else {
		die_msg("unknown report format '%s'; use text, markdown or json", s);
		return -1;
	}
	return 0;
}

/* The kinds from the mask that the report contains, as "a, b". */
static bool matched_kinds(const json_t *report, unsigned mask, char *buf, size_t len)
{
	json_t *by_kind = json_object_get(json_object_get(report, "summary"), "by_kind");
	size_t used = 0;

	buf[0] = 0;
	for (int k = 0; k < REPORT_NKINDS; k++)
		if ((mask & (1u << k)) && json_integer_value(json_object_get(by_kind, report_kind_name(k))) > 0 &&
		    used < len)
			used += snprintf(buf + used, len - used, "%s%s", used ? ", " : "", report_kind_name(k));
	return used > 0;
}

int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "fail-on", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	enum format fmt = FMT_TEXT;
	unsigned fail_mask = 0;
	char kinds[128];
	struct graph *g;
	json_t *report;
	int c, ret = 0;

	optind = 0; /* reinitialize: tests run several commands in one process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (parse_format(optarg, &fmt))
				return 2;
			break;
		case 'F':
			if (parse_kinds(optarg, &fail_mask))
				return 2;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return bad_option("report", argv);
		}
	}
	g = graph_arg("report", argc, argv, &ret);
	if (!g)
		return ret;
	report = report_build(g);
	graph_free(g);
	if (!report) {
		die_msg("out of memory building the report");
		return 1;
	}

	if (fmt == FMT_JSON) {
		json_dumpf(report, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
	} else if (fmt == FMT_MARKDOWN) {
		print_markdown(stdout, argv[optind], report);
	} else {
		print_text(stdout, argv[optind], report);
	}
	if (fflush(stdout)) {
		die_msg("cannot write the report to stdout");
		ret = 1;
	} else if (matched_kinds(report, fail_mask, kinds, sizeof(kinds))) {
		die_msg("found %s (--fail-on); exiting %d", kinds, EXIT_FINDINGS);
		ret = EXIT_FINDINGS;
	}
	json_decref(report);
	return ret;
}

/* seams export: a graph as dot, mermaid, svg or a self-contained html page. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "export.h"
#include "graph.h"
#include "report.h"

static const char *const formats[] = { "dot", "mermaid", "svg", "html" };
#define NFORMATS (sizeof(formats) / sizeof(formats[0]))

static void usage(FILE *f)
{
	fprintf(f,
		"usage: seams export GRAPH.json --format dot|mermaid|svg|html [--output FILE]\n"
		"\n"
		"Draws a graph.  Shared tables are highlighted; html is one page with the\n"
		"picture and the report side by side.  GRAPH.json may be - for stdin.\n"
		"\n"
		"  -f, --format FMT   dot, mermaid, svg or html\n"
		"  -o, --output FILE  write FILE atomically instead of stdout\n");
}

static char *render(int fmt, struct graph *g, const json_t *report, const char *title,
		    char *err, size_t errlen)
{
	switch (fmt) {
	case 0: return export_dot(g, report, err, errlen);
	case 1: return export_mermaid(g, report, err, errlen);
	case 2: return export_svg(g, report, err, errlen);
	default: return export_html(g, report, title, err, errlen);
	}
}

/* The page title: the graph's file name without directories. */
static const char *title_of(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!strcmp(path, "-"))
		return "stdin";
	return slash ? slash + 1 : path;
}

int cmd_export(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *output = "-", *format = NULL;
	struct graph *g = NULL;
	json_t *report = NULL;
	char err[512], *doc = NULL;
	int c, fmt = -1, ret = 1;

	optind = 0; /* reinitialize: tests run several commands in one process */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "f:o:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			format = optarg;
			break;
		case 'o':
			output = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return bad_option("export", argv);
		}
	}
	if (!format) {
		die_msg("export needs --format dot, mermaid, svg or html");
		return 2;
	}
	for (size_t i = 0; i < NFORMATS; i++)
		if (!strcmp(format, formats[i]))
			fmt = i;
	if (fmt < 0) {
		die_msg("unknown export format '%s'; use dot, mermaid, svg or html", format);
		return 2;
	}

	g = graph_arg("export", argc, argv, &ret);
	if (!g)
		return ret;
	report = report_build(g);
	doc = report ? render(fmt, g, report, title_of(argv[optind]), err, sizeof(err)) : NULL;
	if (!report)
		snprintf(err, sizeof(err), "out of memory building the report");
	if (!doc || atomic_write(output, doc, strlen(doc), err, sizeof(err)))
		die_msg("%s", err);
	else
		ret = 0;
	free(doc);
	json_decref(report);
	graph_free(g);
	return ret;
}

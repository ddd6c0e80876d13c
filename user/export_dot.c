/* Graphviz dot: the base picture.  svg lays this text out with libgvc and
 * html embeds that svg, so the node styles shared by every format live
 * here too. */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "report.h"

const struct export_style export_styles[EXPORT_NCLASSES] = {
	[EXPORT_SERVICE] = { "service", "#dbeafe", "#2563eb", "#1e3a8a", "service" },
	[EXPORT_EXTERNAL] = { "external", "#f1f5f9", "#64748b", "#334155",
			      "endpoint outside the capture" },
	[EXPORT_TABLE] = { "table", "#dcfce7", "#16a34a", "#14532d", "table used by one service" },
	[EXPORT_TABLE_SHARED] = { "table shared", "#ffedd5", "#ea580c", "#7c2d12",
				  "table written by one service, used by others" },
	[EXPORT_TABLE_CONTESTED] = { "table shared-write", "#fecaca", "#dc2626", "#7f1d1d",
				     "table written by several services" },
};

#define FONT "Helvetica,Arial,sans-serif"

int export_node_class(const json_t *node, const json_t *marks)
{
	const char *kind = json_str(node, "kind"), *mark;

	if (!strcmp(kind, "service"))
		return EXPORT_SERVICE;
	if (!strcmp(kind, "external"))
		return EXPORT_EXTERNAL;
	if (strcmp(kind, "table"))
		return -1;
	mark = json_str(marks, json_str(node, "id"));
	if (!mark)
		return EXPORT_TABLE;
	return !strcmp(mark, "critical") ? EXPORT_TABLE_CONTESTED : EXPORT_TABLE_SHARED;
}

char *export_database_title(struct graph *g, const json_t *db)
{
	json_t *server = graph_node(g, json_str(db, "server"));
	char *title = NULL;

	if (asprintf(&title, "database %s on %s", json_str(db, "database"),
		     server ? json_str(server, "name") : json_str(db, "server")) < 0)
		return NULL;
	return title;
}

int export_in_database(const json_t *node, const json_t *db)
{
	const char *in_db = json_str(node, "database");

	return !strcmp(json_str(node, "kind"), "table") && in_db && !strcmp(in_db, json_str(db, "id"));
}

/* "35 ms", "1.2 s": short enough for an edge label. */
static int format_ms(char *buf, size_t len, double ms)
{
	if (ms >= 1000)
		return snprintf(buf, len, "%.1f s", ms / 1000);
	return snprintf(buf, len, ms >= 100 ? "%.0f ms" : "%.1f ms", ms);
}

void export_edge_label(const json_t *edge, char *buf, size_t len)
{
	static const char *const verbs[] = { "read", "write", "ddl" };
	const json_t *access = json_object_get(edge, "access"), *timing;
	long long failed = json_integer_value(json_object_get(edge, "failed_connections"));
	size_t used = 0;

	buf[0] = 0;
	if (!strcmp(json_str(edge, "kind"), "tcp")) {
		used = snprintf(buf, len, "%lld conn",
				(long long)json_integer_value(json_object_get(edge, "connections")));
		if (failed > 0 && used < len)
			used += snprintf(buf + used, len - used, ", %lld failed", failed);
		timing = json_object_get(edge, "duration_ms");
	} else {
		for (size_t i = 0; i < 3; i++) {
			long long n = json_integer_value(json_object_get(access, verbs[i]));

			if (n > 0 && used < len)
				used += snprintf(buf + used, len - used, "%s%s %lld", used ? ", " : "", verbs[i], n);
		}
		timing = json_object_get(edge, "latency_ms");
	}
	if (json_is_number(json_object_get(timing, "p50")) && used < len) {
		used += snprintf(buf + used, len - used, ", p50 ");
		if (used < len)
			format_ms(buf + used, len - used, json_number_value(json_object_get(timing, "p50")));
	}
}

/* Inside a double-quoted dot string; backslash is escaped too because
 * labels give it meaning (\n, \N). */
static void dot_chars(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
}

static void dot_str(FILE *f, const char *s)
{
	fputc('"', f);
	dot_chars(f, s);
	fputc('"', f);
}

static void dot_node(FILE *f, struct graph *g, size_t i, const json_t *marks, const char *indent)
{
	json_t *node = graph_node_at(g, i);
	int cls = export_node_class(node, marks);
	const struct export_style *st;

	if (cls < 0)
		return;
	st = &export_styles[cls];
	fprintf(f, "%sn%zu [label=", indent, i);
	dot_str(f, json_str(node, "name"));
	fputs(", tooltip=", f);
	dot_str(f, json_str(node, "id"));
	fprintf(f, ", class=\"%s\", fillcolor=\"%s\", color=\"%s\", fontcolor=\"%s\"", st->css,
		st->fill, st->stroke, st->text);
	if (cls == EXPORT_SERVICE)
		fputs(", shape=box, style=\"rounded,filled\", penwidth=1.5", f);
	else if (cls == EXPORT_EXTERNAL)
		fputs(", shape=box, style=\"dashed,filled\"", f);
	else
		fprintf(f, ", shape=cylinder, style=filled, penwidth=%s", cls == EXPORT_TABLE ? "1" : "2.5");
	fputs("];\n", f);
}

/* A database is a frame around its tables, labelled with its server. */
static void dot_database(FILE *f, struct graph *g, size_t d, const json_t *marks)
{
	json_t *db = graph_node_at(g, d);
	char *title = export_database_title(g, db);

	fprintf(f, "\tsubgraph cluster_%zu {\n\t\tlabel=", d);
	dot_str(f, title);
	free(title);
	fputs(";\n\t\tstyle=\"rounded,dashed\"; color=\"#94a3b8\"; fontcolor=\"#475569\"; fontsize=12;\n", f);
	for (size_t i = 0; i < graph_node_count(g); i++)
		if (export_in_database(graph_node_at(g, i), db))
			dot_node(f, g, i, marks, "\t\t");
	fputs("\t}\n", f);
}

/* Client-to-server tcp edges of a database are implied by the sql edges
 * beside them; they are drawn faint so the tables stay readable. */
static bool is_db_server(struct graph *g, const char *id)
{
	for (size_t i = 0; i < graph_node_count(g); i++) {
		json_t *node = graph_node_at(g, i);
		const char *server = json_str(node, "server");

		if (!strcmp(json_str(node, "kind"), "database") && server && !strcmp(server, id))
			return true;
	}
	return false;
}

static void dot_edge(FILE *f, struct graph *g, const json_t *e, const json_t *marks)
{
	long s = graph_node_index(g, json_str(e, "source"));
	long t = graph_node_index(g, json_str(e, "target"));
	bool sql = !strcmp(json_str(e, "kind"), "sql");
	const char *colour = "#2563eb", *cls = "tcp";
	char label[160], *p50;

	if (s < 0 || t < 0)
		return;
	if (sql) {
		bool writes = json_integer_value(json_object_get(json_object_get(e, "access"), "write")) > 0;
		const char *mark = json_str(marks, json_str(e, "target"));

		cls = writes ? "sql write" : "sql read";
		colour = !writes ? "#64748b" : mark ? "#dc2626" : "#c2410c";
	} else if (is_db_server(g, json_str(e, "target"))) {
		colour = "#cbd5e1";
		cls = "tcp db";
	}
	export_edge_label(e, label, sizeof(label));
	/* Timing on a line of its own: a narrow label keeps the picture narrow
	 * enough to be read without zooming. */
	p50 = strstr(label, ", p50 ");
	if (p50)
		*p50 = 0;
	fprintf(f, "\tn%ld -> n%ld [label=\"", s, t);
	dot_chars(f, label);
	if (p50) {
		fputs("\\n", f);
		dot_chars(f, p50 + 2);
	}
	fputc('"', f);
	fprintf(f, ", class=\"%s\", color=\"%s\", fontcolor=\"%s\"%s];\n", cls, colour,
		strcmp(colour, "#cbd5e1") ? "#334155" : "#94a3b8", sql ? ", style=dashed" : "");
}

char *export_dot(struct graph *g, const json_t *report, char *err, size_t errlen)
{
	json_t *marks = report_shared_tables(report);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f || !marks) {
		snprintf(err, errlen, "out of memory drawing the graph");
		if (f)
			fclose(f);
		free(buf);
		json_decref(marks);
		return NULL;
	}
	fputs("digraph seams {\n", f);
	/* Top to bottom: callers above callees keeps a deep chain from
	 * stretching the picture wider than a screen. */
	fputs("\tgraph [rankdir=TB, fontname=\"" FONT "\", nodesep=0.35, ranksep=0.5, pad=0.2];\n", f);
	fprintf(f, "\tnode [fontname=\"" FONT "\", fontsize=%d, margin=\"0.15,0.06\"];\n", EXPORT_NODE_FONT_PT);
	fprintf(f, "\tedge [fontname=\"" FONT "\", fontsize=%d, arrowsize=0.7, penwidth=1.2];\n", EXPORT_EDGE_FONT_PT);
	for (size_t i = 0; i < graph_node_count(g); i++) {
		json_t *node = graph_node_at(g, i);

		if (!strcmp(json_str(node, "kind"), "database"))
			dot_database(f, g, i, marks);
		else if (strcmp(json_str(node, "kind"), "table"))
			dot_node(f, g, i, marks, "\t");
	}
	for (size_t i = 0; i < graph_edge_count(g); i++)
		dot_edge(f, g, graph_edge_at(g, i), marks);
	fputs("}\n", f);
	fclose(f);
	json_decref(marks);
	return buf;
}

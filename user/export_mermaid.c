/* Mermaid flowchart: pastes into a markdown file, a wiki or a pull request
 * and renders there. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "report.h"

/* Inside a quoted mermaid label only entity codes are safe for
 * punctuation ("#quot;" style, numeric here); UTF-8 passes through. */
static void mmd_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = *s;

		if (c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || strchr(" .,:/_-()", c))
			fputc(c, f);
		else if (c >= 0x20)
			fprintf(f, "#%u;", c);
	}
	fputc('"', f);
}

/* Shapes: services rounded, externals slanted, tables cylinders. */
static void mmd_node(FILE *f, struct graph *g, size_t i, const json_t *marks, const char *indent)
{
	json_t *node = graph_node_at(g, i);
	int cls = export_node_class(node, marks);
	static const char *const open[] = { "(", "[/", "[(", "[(", "[(" };
	static const char *const close[] = { ")", "/]", ")]", ")]", ")]" };

	if (cls < 0)
		return;
	fprintf(f, "%sn%zu%s", indent, i, open[cls]);
	mmd_str(f, json_str(node, "name"));
	/* Classes are numbered: mermaid class names cannot hold the css
	 * names' spaces. */
	fprintf(f, "%s:::c%d\n", close[cls], cls);
}

char *export_mermaid(struct graph *g, const json_t *report, char *err, size_t errlen)
{
	json_t *marks = report_shared_tables(report);
	char *buf = NULL, label[160];
	size_t len = 0, n = graph_node_count(g);
	FILE *f = open_memstream(&buf, &len);

	if (!f || !marks) {
		snprintf(err, errlen, "out of memory drawing the graph");
		if (f)
			fclose(f);
		free(buf);
		json_decref(marks);
		return NULL;
	}
	fputs("flowchart LR\n", f);
	for (int c = 0; c < EXPORT_NCLASSES; c++)
		fprintf(f, "  classDef c%d fill:%s,stroke:%s,color:%s%s\n", c, export_styles[c].fill,
			export_styles[c].stroke, export_styles[c].text,
			c >= EXPORT_TABLE_SHARED ? ",stroke-width:3px" : "");
	for (size_t i = 0; i < n; i++) {
		json_t *db = graph_node_at(g, i);
		char *title;

		if (strcmp(json_str(db, "kind"), "database"))
			continue;
		title = export_database_title(g, db);
		fprintf(f, "  subgraph n%zu[", i);
		mmd_str(f, title);
		free(title);
		fputs("]\n", f);
		for (size_t t = 0; t < n; t++)
			if (export_in_database(graph_node_at(g, t), db))
				mmd_node(f, g, t, marks, "    ");
		fputs("  end\n", f);
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(json_str(graph_node_at(g, i), "kind"), "table"))
			mmd_node(f, g, i, marks, "  ");
	for (size_t i = 0; i < graph_edge_count(g); i++) {
		json_t *e = graph_edge_at(g, i);
		long s = graph_node_index(g, json_str(e, "source"));
		long t = graph_node_index(g, json_str(e, "target"));

		if (s < 0 || t < 0)
			continue;
		export_edge_label(e, label, sizeof(label));
		fprintf(f, "  n%ld %s|", s, strcmp(json_str(e, "kind"), "sql") ? "-->" : "-.->");
		mmd_str(f, label);
		fprintf(f, "| n%ld\n", t);
	}
	fclose(f);
	json_decref(marks);
	return buf;
}

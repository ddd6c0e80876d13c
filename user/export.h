/* Pictures of a graph: dot, mermaid, svg (dot laid out by libgvc) and a
 * self-contained html page.  Each renderer returns a malloc'd,
 * NUL-terminated document, or NULL with a one-line reason in err.  The
 * report (report_build()) marks shared tables; html also lists it. */
#ifndef SEAMS_EXPORT_H
#define SEAMS_EXPORT_H

#include <jansson.h>
#include <stddef.h>

#include "graph.h"

char *export_dot(struct graph *g, const json_t *report, char *err, size_t errlen);
char *export_mermaid(struct graph *g, const json_t *report, char *err, size_t errlen);
char *export_svg(struct graph *g, const json_t *report, char *err, size_t errlen);
char *export_html(struct graph *g, const json_t *report, const char *title, char *err, size_t errlen);

/* How a node is drawn, the same in every format and in the html legend. */
enum export_class {
	EXPORT_SERVICE,
	EXPORT_EXTERNAL,
	EXPORT_TABLE,
	EXPORT_TABLE_SHARED,	/* written by one service, used by others */
	EXPORT_TABLE_CONTESTED,	/* written by two or more services */
	EXPORT_NCLASSES,
};

struct export_style {
	const char *css;	/* class name in svg and html */
	const char *fill, *stroke, *text;
	const char *legend;	/* what the html legend calls it */
};

/* Defined in export_dot.c: dot is the base the other pictures follow. */
extern const struct export_style export_styles[EXPORT_NCLASSES];

/* The class of a node given report_shared_tables() marks; -1 for a node
 * that is not drawn on its own (a database is a frame around its tables). */
int export_node_class(const json_t *node, const json_t *marks);

/* "database shop on postgresql": the frame around a database's tables;
 * free() it. */
char *export_database_title(struct graph *g, const json_t *db);

/* Is node a table of database db? */
int export_in_database(const json_t *node, const json_t *db);

/* Font sizes of the picture, in points.  html keeps the smallest, on edge
 * labels, at EXPORT_MIN_FONT_PX or more on screen: below that a person
 * squints or zooms. */
#define EXPORT_NODE_FONT_PT	14
#define EXPORT_EDGE_FONT_PT	12
#define EXPORT_MIN_FONT_PX	12

/* Edge label text, e.g. "120 conn, p50 35 ms" or "read 300, write 180". */
void export_edge_label(const json_t *edge, char *buf, size_t len);

#endif

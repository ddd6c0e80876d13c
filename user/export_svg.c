/* svg: the dot picture laid out in-process by Graphviz's libgvc, so seams
 * needs no `dot` binary at run time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>

#include "export.h"

static void gv_reason(char *err, size_t errlen, const char *step)
{
	char *why = aglasterr();

	snprintf(err, errlen, "graphviz could not %s the graph%s%.*s", step, why ? ": " : "",
		 why ? (int)strcspn(why, "\n") : 0, why ? why : "");
	free(why);
}

/* One context for the process: each gvContext() re-reads the plugin
 * configuration and graphviz 2.42 leaks part of it. */
static GVC_t *gv_context(void)
{
	static GVC_t *gvc;

	if (!gvc)
		gvc = gvContext();
	return gvc;
}

char *export_svg(struct graph *g, const json_t *report, char *err, size_t errlen)
{
	char *dot = export_dot(g, report, err, errlen), *data = NULL, *svg = NULL;
	unsigned int len = 0;
	GVC_t *gvc;
	Agraph_t *ag = NULL;

	if (!dot)
		return NULL;
	/* Keep libgvc quiet on stderr; its last error goes into err instead. */
	agseterr(AGMAX);
	gvc = gv_context();
	if (!gvc) {
		snprintf(err, errlen, "graphviz could not start; is the graphviz package installed?");
		goto out;
	}
	ag = agmemread(dot);
	if (!ag) {
		gv_reason(err, errlen, "read");
		goto out;
	}
	if (gvLayout(gvc, ag, "dot")) {
		gv_reason(err, errlen, "lay out");
		goto out;
	}
	if (gvRenderData(gvc, ag, "svg", &data, &len) || !data) {
		gv_reason(err, errlen, "render");
	} else {
		svg = strndup(data, len);
		if (!svg)
			snprintf(err, errlen, "out of memory rendering svg");
	}
	gvFreeRenderData(data);
	gvFreeLayout(gvc, ag);
out:
	if (ag)
		agclose(ag);
	free(dot);
	return svg;
}

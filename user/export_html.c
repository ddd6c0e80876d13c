/* html: one self-contained page, the svg picture beside the findings.  No
 * script and no network resource, so it opens from a file, an artifact
 * store or a mail attachment the same way. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export.h"
#include "report.h"

/* Text content: escaped, and the report's ASCII "->" drawn as an arrow. */
static void html_str(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		if (s[0] == '-' && s[1] == '>') {
			fputs("&rarr;", f);
			s++;
			continue;
		}
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
	}
}

static const char css[] =
	":root{--ink:#0f172a;--muted:#475569;--line:#e2e8f0;--critical:#dc2626;--warning:#d97706;--info:#0891b2}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
	"color:var(--ink);background:#f1f5f9}\n"
	"header{padding:14px 24px;background:var(--ink);color:#f8fafc}\n"
	"header h1{margin:0;font-size:19px;font-weight:600}\n"
	"header p{margin:3px 0 0;color:#cbd5e1;font-size:13px}\n"
	"main{display:grid;grid-template-columns:minmax(0,1fr) 380px;gap:16px;padding:16px 24px;align-items:start}\n"
	"@media (max-width:1000px){main{grid-template-columns:1fr}}\n"
	".panel{background:#fff;border:1px solid var(--line);border-radius:8px;padding:14px 16px}\n"
	".panel h2{margin:0 0 10px;font-size:15px}\n"
	".picture .scroll{overflow-x:auto}\n"
	".picture svg{display:block;max-width:100%;height:auto;margin:8px auto 0}\n"
	".legend{display:flex;flex-wrap:wrap;gap:6px 16px;margin:0;padding:0 0 10px;list-style:none;"
	"font-size:12px;color:var(--muted);border-bottom:1px solid var(--line)}\n"
	".legend li{display:flex;align-items:center;gap:6px}\n"
	".swatch{display:inline-block;width:16px;height:12px;border:2px solid;border-radius:3px}\n"
	".counts{display:flex;gap:8px;margin:0 0 12px;flex-wrap:wrap}\n"
	".count{padding:2px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}\n"
	".count.critical,.finding.critical .badge{background:var(--critical)}\n"
	".count.warning,.finding.warning .badge{background:var(--warning)}\n"
	".count.info,.finding.info .badge{background:var(--info)}\n"
	".finding{border-left:4px solid var(--line);background:#f8fafc;border-radius:0 6px 6px 0;"
	"padding:8px 12px;margin:0 0 10px}\n"
	".finding.critical{border-left-color:var(--critical)}\n"
	".finding.warning{border-left-color:var(--warning)}\n"
	".finding.info{border-left-color:var(--info)}\n"
	".badge{display:inline-block;padding:0 6px;border-radius:4px;color:#fff;font-size:11px;"
	"font-weight:700;text-transform:uppercase;letter-spacing:.03em}\n"
	".kind{margin-left:6px;font:12px ui-monospace,Menlo,Consolas,monospace;color:var(--muted)}\n"
	".finding h3{margin:4px 0 2px;font-size:13.5px;font-weight:600}\n"
	".finding ul{margin:2px 0 0;padding-left:18px;font-size:12.5px;color:var(--muted)}\n"
	".ok{color:#15803d;font-weight:600}\n"
	"footer{padding:0 24px 16px;font-size:12px;color:var(--muted)}\n";

/* Hosts and time range from "capture" or every entry of "captures". */
static void html_capture_line(FILE *f, struct graph *g)
{
	json_t *doc = graph_doc(g), *caps = json_array(), *c, *hosts = json_object();
	const char *start = NULL, *end = NULL;
	size_t i;

	if (json_is_object(json_object_get(doc, "capture")))
		json_array_append(caps, json_object_get(doc, "capture"));
	json_array_foreach(json_object_get(doc, "captures"), i, c)
		json_array_append(caps, c);
	json_array_foreach(caps, i, c) {
		const char *s = json_str(c, "start"), *e = json_str(c, "end");

		if (json_str(c, "host"))
			graph_node_add_string(hosts, "list", json_str(c, "host"));
		if (s && (!start || strcmp(s, start) < 0))
			start = s;
		if (e && (!end || strcmp(e, end) > 0))
			end = e;
	}
	fputs("<p>", f);
	if (json_array_size(json_object_get(hosts, "list"))) {
		fputs(json_array_size(json_object_get(hosts, "list")) == 1 ? "host " : "hosts ", f);
		json_array_foreach(json_object_get(hosts, "list"), i, c) {
			fputs(i ? ", " : "", f);
			html_str(f, json_string_value(c));
		}
	}
	if (start && end) {
		fputs(" &middot; captured ", f);
		html_str(f, start);
		fputs(" to ", f);
		html_str(f, end);
	}
	fputs("</p>\n", f);
	json_decref(caps);
	json_decref(hosts);
}

static void html_legend(FILE *f)
{
	fputs("<ul class=\"legend\">\n", f);
	for (int c = 0; c < EXPORT_NCLASSES; c++) {
		fprintf(f, "<li class=\"legend-%d\"><span class=\"swatch\" style=\"background:%s;border-color:%s%s\"></span>",
			c, export_styles[c].fill, export_styles[c].stroke,
			c == EXPORT_EXTERNAL ? ";border-style:dashed" : "");
		html_str(f, export_styles[c].legend);
		fputs("</li>\n", f);
	}
	fputs("<li><svg width=\"26\" height=\"8\"><line x1=\"0\" y1=\"4\" x2=\"26\" y2=\"4\" stroke=\"#2563eb\" stroke-width=\"2\"/></svg>tcp calls</li>\n"
	      "<li><svg width=\"26\" height=\"8\"><line x1=\"0\" y1=\"4\" x2=\"26\" y2=\"4\" stroke=\"#c2410c\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/></svg>sql writes</li>\n"
	      "<li><svg width=\"26\" height=\"8\"><line x1=\"0\" y1=\"4\" x2=\"26\" y2=\"4\" stroke=\"#64748b\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/></svg>sql reads</li>\n"
	      "</ul>\n", f);
}

static void html_findings(FILE *f, const json_t *report)
{
	json_t *findings = json_object_get(report, "findings"), *x, *d;
	json_t *sev = json_object_get(json_object_get(report, "summary"), "by_severity");
	static const char *const sevs[] = { "critical", "warning", "info" };
	size_t i, j;

	fputs("<aside class=\"panel findings\" aria-label=\"findings\">\n<h2>Findings</h2>\n", f);
	if (!json_array_size(findings)) {
		fputs("<p class=\"ok\">No coupling findings: no shared tables, deep chains, fan-out or cycles.</p>\n", f);
		fputs("</aside>\n", f);
		return;
	}
	fputs("<div class=\"counts\">", f);
	for (i = 0; i < 3; i++)
		if (json_integer_value(json_object_get(sev, sevs[i])) > 0)
			fprintf(f, "<span class=\"count %s\">%lld %s</span>", sevs[i],
				(long long)json_integer_value(json_object_get(sev, sevs[i])), sevs[i]);
	fputs("</div>\n", f);
	json_array_foreach(findings, i, x) {
		fprintf(f, "<div class=\"finding %s\" data-kind=\"%s\">", json_str(x, "severity"), json_str(x, "kind"));
		fprintf(f, "<span class=\"badge\">%s</span><span class=\"kind\">%s</span>\n<h3>",
			json_str(x, "severity"), json_str(x, "kind"));
		html_str(f, json_str(x, "title"));
		fputs("</h3>\n<ul>\n", f);
		json_array_foreach(json_object_get(x, "details"), j, d) {
			fputs("<li>", f);
			html_str(f, json_string_value(d));
			fputs("</li>\n", f);
		}
		fputs("</ul></div>\n", f);
	}
	fputs("</aside>\n", f);
}

/* The svg shrinks to its panel, but never so far that an edge label falls
 * under EXPORT_MIN_FONT_PX: past that the panel scrolls sideways.  Graphviz
 * gives the width in points, which a browser draws at 4/3 px each. */
static void svg_min_width(FILE *f, const char *svg)
{
	double width_pt = 0, scale = (double)EXPORT_MIN_FONT_PX / (EXPORT_EDGE_FONT_PT * 4.0 / 3);

	if (sscanf(svg, "<svg width=\"%lfpt\"", &width_pt) == 1 && width_pt > 0 && scale < 1)
		fprintf(f, "<svg style=\"min-width:%.0fpx\"%s", width_pt * 4 / 3 * scale, svg + 4);
	else
		fputs(svg, f);
}

char *export_html(struct graph *g, const json_t *report, const char *title, char *err, size_t errlen)
{
	json_t *summary = json_object_get(report, "summary");
	char *svg = export_svg(g, report, err, errlen), *buf = NULL, *inline_svg;
	size_t len = 0;
	FILE *f;

	if (!svg)
		return NULL;
	/* Drop the XML prolog and doctype: inside html the <svg> element
	 * stands on its own. */
	inline_svg = strstr(svg, "<svg");
	f = open_memstream(&buf, &len);
	if (!f || !inline_svg) {
		snprintf(err, errlen, inline_svg ? "out of memory writing html" : "graphviz returned no <svg> element");
		if (f)
			fclose(f);
		free(buf);
		free(svg);
		return NULL;
	}
	fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
	      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
	      "<title>seams: ", f);
	html_str(f, title);
	fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<header>\n<h1>seams &middot; ", css);
	html_str(f, title);
	fputs("</h1>\n", f);
	html_capture_line(f, g);
	fprintf(f, "<p>%lld services &middot; %lld tables &middot; %lld tcp and %lld sql edges &middot; %lld findings</p>\n",
		(long long)json_integer_value(json_object_get(summary, "services")),
		(long long)json_integer_value(json_object_get(summary, "tables")),
		(long long)json_integer_value(json_object_get(summary, "tcp_edges")),
		(long long)json_integer_value(json_object_get(summary, "sql_edges")),
		(long long)json_integer_value(json_object_get(summary, "findings")));
	fputs("</header>\n<main>\n<section class=\"panel picture\" aria-label=\"service graph\">\n<h2>Service graph</h2>\n", f);
	html_legend(f);
	fputs("<div class=\"scroll\">", f);
	svg_min_width(f, inline_svg);
	fputs("</div>\n</section>\n", f);
	html_findings(f, report);
	fputs("</main>\n<footer>Every number was measured from traffic during the capture; "
	      "latency is the p50 reported by the capture.</footer>\n</body>\n</html>\n", f);
	fclose(f);
	free(svg);
	return buf;
}

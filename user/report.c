/* The findings engine: shared tables, synchronous chains, fan-out, cycles
 * and co-access, computed from a graph into JSON that formatters render. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

static const char *const kind_names[REPORT_NKINDS] = {
	[REPORT_SHARED_TABLE] = "shared_table",
	[REPORT_SYNC_CHAIN] = "sync_chain",
	[REPORT_FAN_OUT] = "fan_out",
	[REPORT_CYCLE] = "cycle",
	[REPORT_CO_ACCESS] = "co_access",
};

const char *report_kind_name(int kind)
{
	return kind >= 0 && kind < REPORT_NKINDS ? kind_names[kind] : NULL;
}

int report_kind_parse(const char *name)
{
	for (int k = 0; k < REPORT_NKINDS; k++)
		if (!strcmp(name, kind_names[k]))
			return k;
	return -1;
}

/* ---- the service call graph ------------------------------------------ */

/* Services and the tcp edges between them, indexed so the graph searches
 * work on small integers.  Services are ordered by name so every run
 * reports the same paths in the same order. */
struct svc_edge {
	size_t from, to;
	json_t *edge;
};

struct svc_graph {
	size_t n;
	json_t **node;          /* service nodes by index */
	json_t *index;          /* service id -> index */
	size_t nedges;
	struct svc_edge *edges; /* sorted by from, then to */
	size_t *first;          /* edges of i: first[i] .. first[i + 1] */
};

static int cmp_node_names(const void *a, const void *b)
{
	return strcmp(json_str(*(json_t *const *)a, "name"), json_str(*(json_t *const *)b, "name"));
}

static int cmp_svc_edges(const void *a, const void *b)
{
	const struct svc_edge *x = a, *y = b;

	if (x->from != y->from)
		return x->from < y->from ? -1 : 1;
	return (x->to > y->to) - (x->to < y->to);
}

static void svc_graph_free(struct svc_graph *s)
{
	free(s->node);
	json_decref(s->index);
	free(s->edges);
	free(s->first);
}

static bool is_kind(const json_t *node, const char *kind)
{
	const char *k = json_str(node, "kind");

	return k && !strcmp(k, kind);
}

static long svc_index(const struct svc_graph *s, const char *id)
{
	json_t *i = json_object_get(s->index, id);

	return i ? (long)json_integer_value(i) : -1;
}

static int svc_graph_build(struct svc_graph *s, struct graph *g)
{
	size_t nn = graph_node_count(g), ne = graph_edge_count(g);

	memset(s, 0, sizeof(*s));
	s->node = calloc(nn + 1, sizeof(*s->node));
	s->edges = calloc(ne + 1, sizeof(*s->edges));
	s->index = json_object();
	if (!s->node || !s->edges || !s->index)
		return -1;
	for (size_t i = 0; i < nn; i++)
		if (is_kind(graph_node_at(g, i), "service"))
			s->node[s->n++] = graph_node_at(g, i);
	qsort(s->node, s->n, sizeof(*s->node), cmp_node_names);
	for (size_t i = 0; i < s->n; i++)
		json_object_set_new(s->index, json_str(s->node[i], "id"), json_integer(i));

	for (size_t i = 0; i < ne; i++) {
		json_t *e = graph_edge_at(g, i);
		long from = svc_index(s, json_str(e, "source"));
		long to = svc_index(s, json_str(e, "target"));

		if (strcmp(json_str(e, "kind"), "tcp") || from < 0 || to < 0)
			continue;
		s->edges[s->nedges++] = (struct svc_edge){ from, to, e };
	}
	qsort(s->edges, s->nedges, sizeof(*s->edges), cmp_svc_edges);

	s->first = calloc(s->n + 1, sizeof(*s->first));
	if (!s->first)
		return -1;
	for (size_t i = 0; i < s->nedges; i++)
		s->first[s->edges[i].from + 1]++;
	for (size_t i = 0; i < s->n; i++)
		s->first[i + 1] += s->first[i];
	return 0;
}

static const char *svc_name(const struct svc_graph *s, size_t i)
{
	return json_str(s->node[i], "name");
}

/* ---- building findings ----------------------------------------------- */

static void append_fmt(json_t *arr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append_fmt(json_t *arr, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) >= 0) {
		json_array_append_new(arr, json_string(s));
		free(s);
	}
	va_end(ap);
}

/* A finding with its common fields; the caller adds evidence. */
static json_t *finding_new(json_t *findings, int kind, const char *severity)
{
	json_t *f = json_pack("{s:s, s:s, s:s, s:[], s:[], s:[], s:[]}",
			      "kind", kind_names[kind], "severity", severity, "title", "",
			      "services", "tables", "nodes", "details");

	json_array_append_new(findings, f);
	return f;
}

static void finding_title(json_t *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void finding_title(json_t *f, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) >= 0) {
		json_object_set_new(f, "title", json_string(s));
		free(s);
	}
	va_end(ap);
}

/* Record a node the finding is about: its id, and its name under
 * "services" or "tables". */
static void finding_node(json_t *f, const json_t *node)
{
	const char *list = is_kind(node, "table") ? "tables" : "services";

	json_array_append_new(json_object_get(f, "nodes"), json_string(json_str(node, "id")));
	json_array_append_new(json_object_get(f, list), json_string(json_str(node, "name")));
}

/* "SELECT 20, UPDATE 5": most frequent first. */
struct count_item {
	const char *key;
	json_int_t n;
};

static int cmp_count_items(const void *a, const void *b)
{
	const struct count_item *x = a, *y = b;

	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->key, y->key);
}

static char *counts_text(const json_t *counts)
{
	size_t n = json_object_size(counts), i = 0, len = 0;
	struct count_item *items = calloc(n + 1, sizeof(*items));
	const char *key;
	json_t *v;
	char *buf = NULL;
	FILE *f;

	if (!items)
		return NULL;
	json_object_foreach((json_t *)counts, key, v)
		items[i++] = (struct count_item){ key, json_integer_value(v) };
	qsort(items, n, sizeof(*items), cmp_count_items);
	f = open_memstream(&buf, &len);
	if (f) {
		for (i = 0; i < n; i++)
			fprintf(f, "%s%s %lld", i ? ", " : "", items[i].key, (long long)items[i].n);
		fclose(f);
	}
	free(items);
	return buf;
}

static const char *plural(long long n)
{
	return n == 1 ? "" : "s";
}

static json_int_t count_of(const json_t *obj, const char *key)
{
	return json_integer_value(json_object_get(obj, key));
}

/* ---- shared_table ---------------------------------------------------- */

/* "writes 5, reads 20": what a service did to a table, in words. */
static const char *access_text(const json_t *acc, char *buf, size_t size)
{
	static const char *const verbs[][2] = { { "write", "writes" }, { "read", "reads" }, { "ddl", "ddl" } };
	size_t len = 0;

	buf[0] = 0;
	for (size_t i = 0; i < 3; i++) {
		json_int_t n = count_of(acc, verbs[i][0]);

		if (n > 0 && len < size)
			len += snprintf(buf + len, size - len, "%s%s %lld", len ? ", " : "",
					verbs[i][1], (long long)n);
	}
	return len ? buf : "no access counted";
}

/* "billing, orders": the services among touch[] that write. */
static char *names_of_writers(struct graph *g, json_t **touch, size_t ntouch)
{
	char *buf = NULL;
	size_t len = 0, n = 0;
	FILE *m = open_memstream(&buf, &len);

	if (!m)
		return NULL;
	for (size_t i = 0; i < ntouch; i++)
		if (count_of(json_object_get(touch[i], "access"), "write") > 0)
			fprintf(m, "%s%s", n++ ? ", " : "",
				json_str(graph_node(g, json_str(touch[i], "source")), "name"));
	fclose(m);
	return buf;
}

/* Who touches one table: sql edges from services, split by whether they
 * write.  A table has one owner; anybody else is coupled to its schema. */
static void check_table(json_t *findings, struct graph *g, json_t *table,
			json_t **touch, size_t ntouch)
{
	json_t *db = graph_node(g, json_str(table, "database"));
	const char *dbname = db ? json_str(db, "database") : "?";
	size_t writers = 0;
	json_t *f, *access;
	char *writer_names;

	for (size_t i = 0; i < ntouch; i++)
		if (count_of(json_object_get(touch[i], "access"), "write") > 0)
			writers++;
	if (!writers || (writers == 1 && ntouch == 1))
		return;

	f = finding_new(findings, REPORT_SHARED_TABLE, writers >= 2 ? "critical" : "warning");
	writer_names = names_of_writers(g, touch, ntouch);
	if (writers >= 2)
		finding_title(f, "%s (database %s) is written by %zu services: %s", json_str(table, "name"),
			      dbname, writers, writer_names ? writer_names : "");
	else
		finding_title(f, "%s (database %s) is written by %s and used by %zu other service%s",
			      json_str(table, "name"), dbname, writer_names ? writer_names : "",
			      ntouch - 1, plural(ntouch - 1));
	free(writer_names);
	finding_node(f, table);
	json_object_set_new(f, "database", json_string(dbname));
	json_object_set_new(f, "writers", json_integer(writers));
	access = json_array();
	json_object_set_new(f, "access", access);

	for (size_t i = 0; i < ntouch; i++) {
		json_t *e = touch[i], *svc = graph_node(g, json_str(e, "source"));
		json_t *acc = json_object_get(e, "access"), *ops = json_object_get(e, "operations");
		char *opstext = counts_text(ops), acctext[96];

		finding_node(f, svc);
		json_array_append_new(access, json_pack("{s:s, s:I, s:I, s:I, s:o}",
			"service", json_str(svc, "name"), "read", count_of(acc, "read"),
			"write", count_of(acc, "write"), "ddl", count_of(acc, "ddl"),
			"operations", ops ? json_incref(ops) : json_object()));
		append_fmt(json_object_get(f, "details"), "%s: %s (%s)", json_str(svc, "name"),
			   access_text(acc, acctext, sizeof(acctext)), opstext ? opstext : "");
		free(opstext);
	}
}

static int cmp_edge_sources(const void *a, const void *b)
{
	return strcmp(json_str(*(json_t *const *)a, "source"), json_str(*(json_t *const *)b, "source"));
}

static void check_shared_tables(json_t *findings, struct graph *g)
{
	size_t nn = graph_node_count(g), ne = graph_edge_count(g);
	json_t **touch = calloc(ne + 1, sizeof(*touch));

	if (!touch)
		return;
	for (size_t t = 0; t < nn; t++) {
		json_t *table = graph_node_at(g, t);
		const char *id = json_str(table, "id");
		size_t n = 0;

		if (!is_kind(table, "table"))
			continue;
		/* Quadratic in tables x edges; graphs are hundreds of edges. */
		for (size_t i = 0; i < ne; i++) {
			json_t *e = graph_edge_at(g, i);

			if (!strcmp(json_str(e, "kind"), "sql") && !strcmp(json_str(e, "target"), id) &&
			    is_kind(graph_node(g, json_str(e, "source")), "service"))
				touch[n++] = e;
		}
		qsort(touch, n, sizeof(*touch), cmp_edge_sources);
		check_table(findings, g, table, touch, n);
	}
	free(touch);
}

/* ---- sync_chain ------------------------------------------------------ */

struct path {
	size_t len;   /* nodes */
	size_t *v;
};

struct chain_search {
	const struct svc_graph *s;
	size_t *stack;
	bool *on_path;
	size_t depth;
	long budget;
	bool truncated;
	struct path best[4 * REPORT_MAX_CHAINS]; /* the longest seen, unordered */
	size_t nbest;
};

/* Keep the path if it is among the longest seen so far. */
static void chain_keep(struct chain_search *cs)
{
	const size_t cap = sizeof(cs->best) / sizeof(cs->best[0]);
	size_t slot = cs->nbest, *v;

	if (cs->depth - 1 < REPORT_CHAIN_MIN_HOPS)
		return;
	if (cs->nbest == cap) {
		slot = 0;
		for (size_t i = 1; i < cap; i++)
			if (cs->best[i].len < cs->best[slot].len)
				slot = i;
		if (cs->best[slot].len >= cs->depth)
			return;
	}
	v = malloc(cs->depth * sizeof(*v));
	if (!v)
		return;
	memcpy(v, cs->stack, cs->depth * sizeof(*v));
	if (slot == cs->nbest)
		cs->nbest++;
	else
		free(cs->best[slot].v);
	cs->best[slot] = (struct path){ cs->depth, v };
}

/* Simple paths only: a cycle would make every chain infinite, and the
 * cycle check reports it on its own. */
static void chain_dfs(struct chain_search *cs, size_t u)
{
	const struct svc_graph *s = cs->s;
	bool extended = false;

	cs->stack[cs->depth++] = u;
	cs->on_path[u] = true;
	for (size_t i = s->first[u]; i < s->first[u + 1]; i++) {
		size_t v = s->edges[i].to;

		if (cs->on_path[v])
			continue;
		if (--cs->budget < 0) {
			cs->truncated = true;
			break;
		}
		extended = true;
		chain_dfs(cs, v);
	}
	if (!extended)
		chain_keep(cs);
	cs->on_path[u] = false;
	cs->depth--;
}

static int cmp_paths(const void *a, const void *b)
{
	const struct path *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	for (size_t i = 0; i < x->len; i++)
		if (x->v[i] != y->v[i])
			return x->v[i] < y->v[i] ? -1 : 1;
	return 0;
}

/* Is p a contiguous run inside q? */
static bool path_within(const struct path *p, const struct path *q)
{
	for (size_t off = 0; off + p->len <= q->len; off++)
		if (!memcmp(q->v + off, p->v, p->len * sizeof(*p->v)))
			return true;
	return false;
}

static json_t *svc_edge_between(const struct svc_graph *s, size_t from, size_t to)
{
	for (size_t i = s->first[from]; i < s->first[from + 1]; i++)
		if (s->edges[i].to == to)
			return s->edges[i].edge;
	return NULL;
}

static void chain_finding(json_t *findings, const struct svc_graph *s, const struct path *p)
{
	size_t hops = p->len - 1, measured = 0;
	double latency = 0, avail = pow(REPORT_HOP_AVAILABILITY, hops);
	json_t *f = finding_new(findings, REPORT_SYNC_CHAIN, "warning");
	json_t *unmeasured = json_array();
	char *route = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&route, &len);

	for (size_t i = 0; i < p->len; i++) {
		finding_node(f, s->node[p->v[i]]);
		if (m)
			fprintf(m, "%s%s", i ? " -> " : "", svc_name(s, p->v[i]));
	}
	if (m)
		fclose(m);
	for (size_t i = 0; i < hops; i++) {
		json_t *e = svc_edge_between(s, p->v[i], p->v[i + 1]);
		json_t *p50 = json_object_get(json_object_get(e, "duration_ms"), "p50");

		if (json_is_number(p50)) {
			latency += json_number_value(p50);
			measured++;
		} else {
			append_fmt(unmeasured, "%s -> %s", svc_name(s, p->v[i]), svc_name(s, p->v[i + 1]));
		}
	}
	finding_title(f, "%zu synchronous hops: %s", hops, route ? route : "");
	json_object_set_new(f, "hops", json_integer(hops));
	json_object_set_new(f, "availability", json_real(round(avail * 10000) / 10000));
	json_object_set_new(f, "latency_ms", json_real(round(latency * 1000) / 1000));
	json_object_set_new(f, "measured_hops", json_integer(measured));
	json_object_set_new(f, "unmeasured", unmeasured);

	append_fmt(json_object_get(f, "details"),
		   "availability %.1f%% if each hop is %.0f%% up (%.2f^%zu)", avail * 100,
		   REPORT_HOP_AVAILABILITY * 100, REPORT_HOP_AVAILABILITY, hops);
	if (measured)
		append_fmt(json_object_get(f, "details"),
			   "latency adds up to %.1f ms (p50 connection time) on %zu of %zu hops",
			   latency, measured, hops);
	for (size_t i = 0; i < json_array_size(unmeasured); i++)
		append_fmt(json_object_get(f, "details"), "no latency measured on %s",
			   json_string_value(json_array_get(unmeasured, i)));
	free(route);
}

static void check_sync_chains(json_t *findings, const struct svc_graph *s, json_t *summary)
{
	struct chain_search cs = { .s = s, .budget = REPORT_PATH_BUDGET };
	struct path *reported[REPORT_MAX_CHAINS];
	size_t nreported = 0;

	cs.stack = calloc(s->n + 1, sizeof(*cs.stack));
	cs.on_path = calloc(s->n + 1, sizeof(*cs.on_path));
	for (size_t u = 0; cs.stack && cs.on_path && u < s->n && !cs.truncated; u++)
		chain_dfs(&cs, u);

	qsort(cs.best, cs.nbest, sizeof(cs.best[0]), cmp_paths);
	for (size_t i = 0; i < cs.nbest && nreported < REPORT_MAX_CHAINS; i++) {
		bool covered = false;

		for (size_t j = 0; j < nreported && !covered; j++)
			covered = path_within(&cs.best[i], reported[j]);
		if (covered)
			continue;
		reported[nreported++] = &cs.best[i];
		chain_finding(findings, s, &cs.best[i]);
	}
	json_object_set_new(summary, "chain_search_truncated", json_boolean(cs.truncated));
	for (size_t i = 0; i < cs.nbest; i++)
		free(cs.best[i].v);
	free(cs.stack);
	free(cs.on_path);
}

/* ---- fan_out --------------------------------------------------------- */

static int cmp_edge_targets(const void *a, const void *b)
{
	return strcmp(json_str(*(json_t *const *)a, "target"), json_str(*(json_t *const *)b, "target"));
}

/* Callees are services and external endpoints alike: a database server is
 * a callee too.  One tcp edge per target, so edges count distinct callees. */
static void check_fan_out(json_t *findings, struct graph *g, const struct svc_graph *s)
{
	size_t ne = graph_edge_count(g);
	json_t **callees = calloc(ne + 1, sizeof(*callees));

	for (size_t u = 0; callees && u < s->n; u++) {
		const char *id = json_str(s->node[u], "id");
		size_t n = 0;
		json_t *f;

		for (size_t i = 0; i < ne; i++) {
			json_t *e = graph_edge_at(g, i), *t;

			if (strcmp(json_str(e, "kind"), "tcp") || strcmp(json_str(e, "source"), id) ||
			    !strcmp(json_str(e, "target"), id))
				continue;
			t = graph_node(g, json_str(e, "target"));
			if (is_kind(t, "service") || is_kind(t, "external"))
				callees[n++] = e;
		}
		if (n < REPORT_FAN_OUT_MIN)
			continue;
		qsort(callees, n, sizeof(*callees), cmp_edge_targets);
		f = finding_new(findings, REPORT_FAN_OUT, "warning");
		finding_title(f, "%s calls %zu other services", svc_name(s, u), n);
		finding_node(f, s->node[u]);
		json_object_set_new(f, "callees", json_integer(n));
		for (size_t i = 0; i < n; i++) {
			json_t *e = callees[i], *t = graph_node(g, json_str(e, "target"));

			finding_node(f, t);
			append_fmt(json_object_get(f, "details"), "-> %s: %lld connection%s",
				   json_str(t, "name"), (long long)count_of(e, "connections"),
				   plural(count_of(e, "connections")));
		}
	}
	free(callees);
}

/* ---- cycle ----------------------------------------------------------- */

struct tarjan {
	const struct svc_graph *s;
	long *index, *low;
	bool *on_stack;
	size_t *stack, sp;
	long next;
	json_t *findings;
};

static void cycle_finding(struct tarjan *t, size_t *members, size_t n)
{
	const struct svc_graph *s = t->s;
	bool self = n == 1;
	char *names = NULL;
	size_t len = 0;
	FILE *m;
	json_t *f;

	/* A single service is a cycle only when it calls itself. */
	if (self && !svc_edge_between(s, members[0], members[0]))
		return;
	f = finding_new(t->findings, REPORT_CYCLE, self ? "warning" : "critical");
	m = open_memstream(&names, &len);
	for (size_t i = 0; m && i < n; i++)
		fprintf(m, "%s%s", i ? ", " : "", svc_name(s, members[i]));
	if (m)
		fclose(m);
	if (self)
		finding_title(f, "%s calls itself", svc_name(s, members[0]));
	else
		finding_title(f, "%zu services call each other in a cycle: %s", n, names ? names : "");
	free(names);
	json_object_set_new(f, "size", json_integer(n));
	for (size_t i = 0; i < n; i++)
		finding_node(f, s->node[members[i]]);
	/* Every call that keeps the group together, so the fix can pick one. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < n; j++) {
			json_t *e = svc_edge_between(s, members[i], members[j]);

			if (e)
				append_fmt(json_object_get(f, "details"), "%s -> %s (%lld connection%s)",
					   svc_name(s, members[i]), svc_name(s, members[j]),
					   (long long)count_of(e, "connections"),
					   plural(count_of(e, "connections")));
		}
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return (x > y) - (x < y);
}

/* Tarjan's strongly connected components; recursion depth is the number
 * of services, which stays small. */
static void tarjan_visit(struct tarjan *t, size_t u)
{
	const struct svc_graph *s = t->s;

	t->index[u] = t->low[u] = t->next++;
	t->stack[t->sp++] = u;
	t->on_stack[u] = true;
	for (size_t i = s->first[u]; i < s->first[u + 1]; i++) {
		size_t v = s->edges[i].to;

		if (t->index[v] < 0) {
			tarjan_visit(t, v);
			if (t->low[v] < t->low[u])
				t->low[u] = t->low[v];
		} else if (t->on_stack[v] && t->index[v] < t->low[u]) {
			t->low[u] = t->index[v];
		}
	}
	if (t->low[u] != t->index[u])
		return;
	size_t top = t->sp;

	do
		t->on_stack[t->stack[--t->sp]] = false;
	while (t->stack[t->sp] != u);
	qsort(t->stack + t->sp, top - t->sp, sizeof(*t->stack), cmp_size);
	cycle_finding(t, t->stack + t->sp, top - t->sp);
}

static void check_cycles(json_t *findings, const struct svc_graph *s)
{
	struct tarjan t = { .s = s, .findings = findings };

	t.index = malloc((s->n + 1) * sizeof(*t.index));
	t.low = malloc((s->n + 1) * sizeof(*t.low));
	t.on_stack = calloc(s->n + 1, sizeof(*t.on_stack));
	t.stack = malloc((s->n + 1) * sizeof(*t.stack));
	if (t.index && t.low && t.on_stack && t.stack) {
		for (size_t i = 0; i < s->n; i++)
			t.index[i] = -1;
		for (size_t i = 0; i < s->n; i++)
			if (t.index[i] < 0)
				tarjan_visit(&t, i);
	}
	free(t.index);
	free(t.low);
	free(t.on_stack);
	free(t.stack);
}

/* ---- co_access ------------------------------------------------------- */

/* Each service's tables as a sorted array of table ids. */
static json_t *tables_of(struct graph *g, const char *svc_id)
{
	json_t *holder = json_object(), *list;
	size_t ne = graph_edge_count(g);

	for (size_t i = 0; i < ne; i++) {
		json_t *e = graph_edge_at(g, i);

		if (!strcmp(json_str(e, "kind"), "sql") && !strcmp(json_str(e, "source"), svc_id))
			graph_node_add_string(holder, "tables", json_str(e, "target"));
	}
	list = json_incref(json_object_get(holder, "tables"));
	json_decref(holder);
	return list ? list : json_array();
}

static void co_access_pair(json_t *findings, struct graph *g, const struct svc_graph *s,
			   const json_t *shared, size_t a, size_t b, json_t *ta, json_t *tb)
{
	size_t na = json_array_size(ta), nb = json_array_size(tb), i = 0, j = 0;
	json_t *common = json_array(), *only_a = json_array(), *only_b = json_array(), *f;
	double jaccard;

	/* Both lists are sorted: one merge pass splits them. */
	while (i < na || j < nb) {
		const char *x = i < na ? json_string_value(json_array_get(ta, i)) : NULL;
		const char *y = j < nb ? json_string_value(json_array_get(tb, j)) : NULL;
		int c = !x ? 1 : !y ? -1 : strcmp(x, y);

		if (c == 0) {
			json_array_append_new(common, json_string(x));
			i++, j++;
		} else if (c < 0) {
			json_array_append_new(only_a, json_string(x));
			i++;
		} else {
			json_array_append_new(only_b, json_string(y));
			j++;
		}
	}
	jaccard = (double)json_array_size(common) / (na + nb - json_array_size(common));
	if (!json_array_size(common) ||
	    (jaccard < 1.0 && (jaccard < REPORT_CO_ACCESS_JACCARD ||
			       json_array_size(common) < REPORT_CO_ACCESS_MIN_TABLES)))
		goto out;
	/* One table in common that is already a shared_table finding would
	 * only say the same thing twice. */
	if (json_array_size(common) == 1 && json_object_get(shared, json_string_value(json_array_get(common, 0))))
		goto out;

	f = finding_new(findings, REPORT_CO_ACCESS, "info");
	if (jaccard == 1.0)
		finding_title(f, "%s and %s touch the same %zu table%s", svc_name(s, a), svc_name(s, b),
			      na, plural(na));
	else
		finding_title(f, "%s and %s touch mostly the same tables (%.0f%% overlap)",
			      svc_name(s, a), svc_name(s, b), jaccard * 100);
	finding_node(f, s->node[a]);
	finding_node(f, s->node[b]);
	for (i = 0; i < json_array_size(common); i++)
		finding_node(f, graph_node(g, json_string_value(json_array_get(common, i))));
	json_object_set_new(f, "jaccard", json_real(round(jaccard * 1000) / 1000));
	append_fmt(json_object_get(f, "details"), "%zu table%s in common; the data may want to live in one service",
		   json_array_size(common), plural(json_array_size(common)));
	for (i = 0; i < json_array_size(only_a); i++)
		append_fmt(json_object_get(f, "details"), "only %s: %s", svc_name(s, a),
			   json_str(graph_node(g, json_string_value(json_array_get(only_a, i))), "name"));
	for (i = 0; i < json_array_size(only_b); i++)
		append_fmt(json_object_get(f, "details"), "only %s: %s", svc_name(s, b),
			   json_str(graph_node(g, json_string_value(json_array_get(only_b, i))), "name"));
out:
	json_decref(common);
	json_decref(only_a);
	json_decref(only_b);
}

static void check_co_access(json_t *findings, struct graph *g, const struct svc_graph *s)
{
	json_t *so_far = json_pack("{s:O}", "findings", findings);
	json_t *shared = report_shared_tables(so_far);
	json_t **tables = calloc(s->n + 1, sizeof(*tables));

	json_decref(so_far);
	if (!tables) {
		json_decref(shared);
		return;
	}
	for (size_t i = 0; i < s->n; i++)
		tables[i] = tables_of(g, json_str(s->node[i], "id"));
	for (size_t a = 0; a < s->n; a++)
		for (size_t b = a + 1; b < s->n; b++)
			if (json_array_size(tables[a]) && json_array_size(tables[b]))
				co_access_pair(findings, g, s, shared, a, b, tables[a], tables[b]);
	for (size_t i = 0; i < s->n; i++)
		json_decref(tables[i]);
	free(tables);
	json_decref(shared);
}

/* ---- the report ------------------------------------------------------ */

static int severity_rank(const char *sev)
{
	return !strcmp(sev, "critical") ? 0 : !strcmp(sev, "warning") ? 1 : 2;
}

static int cmp_findings(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int c = severity_rank(json_str(x, "severity")) - severity_rank(json_str(y, "severity"));

	if (!c)
		c = report_kind_parse(json_str(x, "kind")) - report_kind_parse(json_str(y, "kind"));
	return c;
}

/* Most severe first; qsort is not stable, so sort indexes to keep each
 * check's own order (longest chain first) within a kind. */
static json_t *sort_findings(json_t *findings)
{
	size_t n = json_array_size(findings);
	json_t **items = calloc(n + 1, sizeof(*items)), *out = json_array();

	if (!items)
		return out;
	for (size_t i = 0; i < n; i++)
		items[i] = json_array_get(findings, i);
	for (size_t i = 1; i < n; i++) /* insertion sort: stable, n is small */
		for (size_t j = i; j > 0 && cmp_findings(&items[j - 1], &items[j]) > 0; j--) {
			json_t *tmp = items[j];

			items[j] = items[j - 1];
			items[j - 1] = tmp;
		}
	for (size_t i = 0; i < n; i++)
		json_array_append(out, items[i]);
	free(items);
	return out;
}

static json_t *summarize(struct graph *g, json_t *findings, json_t *summary)
{
	size_t nn = graph_node_count(g), ne = graph_edge_count(g), i;
	json_t *kinds = json_object(), *sev = json_pack("{s:i, s:i, s:i}", "critical", 0, "warning", 0, "info", 0);
	json_t *counts = json_object(), *f;

	for (int k = 0; k < REPORT_NKINDS; k++)
		json_object_set_new(kinds, kind_names[k], json_integer(0));
	for (i = 0; i < nn; i++)
		json_count_add(counts, json_str(graph_node_at(g, i), "kind"), 1);
	for (i = 0; i < ne; i++)
		json_count_add(counts, json_str(graph_edge_at(g, i), "kind"), 1);
	json_array_foreach(findings, i, f) {
		json_count_add(kinds, json_str(f, "kind"), 1);
		json_count_add(sev, json_str(f, "severity"), 1);
	}
	json_object_set_new(summary, "services", json_integer(count_of(counts, "service")));
	json_object_set_new(summary, "tables", json_integer(count_of(counts, "table")));
	json_object_set_new(summary, "tcp_edges", json_integer(count_of(counts, "tcp")));
	json_object_set_new(summary, "sql_edges", json_integer(count_of(counts, "sql")));
	json_object_set_new(summary, "findings", json_integer(json_array_size(findings)));
	json_object_set_new(summary, "by_severity", sev);
	json_object_set_new(summary, "by_kind", kinds);
	json_decref(counts);
	return summary;
}

json_t *report_build(struct graph *g)
{
	json_t *findings = json_array(), *summary = json_object(), *sorted;
	struct svc_graph s;

	if (svc_graph_build(&s, g)) {
		svc_graph_free(&s);
		json_decref(findings);
		json_decref(summary);
		return NULL;
	}
	check_shared_tables(findings, g);
	check_sync_chains(findings, &s, summary);
	check_fan_out(findings, g, &s);
	check_cycles(findings, &s);
	check_co_access(findings, g, &s);
	svc_graph_free(&s);

	sorted = sort_findings(findings);
	json_decref(findings);
	summarize(g, sorted, summary);
	return json_pack("{s:o, s:o}", "findings", sorted, "summary", summary);
}

json_t *report_shared_tables(const json_t *report)
{
	json_t *marks = json_object(), *f, *id;
	size_t i, j;

	json_array_foreach(json_object_get(report, "findings"), i, f) {
		if (strcmp(json_str(f, "kind"), kind_names[REPORT_SHARED_TABLE]))
			continue;
		json_array_foreach(json_object_get(f, "nodes"), j, id)
			if (!strncmp(json_string_value(id), "table:", 6))
				json_object_set_new(marks, json_string_value(id),
						    json_string(json_str(f, "severity")));
	}
	return marks;
}

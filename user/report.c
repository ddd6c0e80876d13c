/* The findings engine: shared tables, synchronous chains, fan-out, cycles,
 * co-access and test closures, computed from a graph into JSON that
 * formatters render. */
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
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
	[REPORT_TEST_CLOSURE] = "test_closure",
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
	struct graph *g;
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
	s->g = g;
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

bool report_is_catalog(const json_t *table)
{
	const char *schema = json_str(table, "schema");

	return is_kind(table, "table") && schema &&
	       (!strcmp(schema, "pg_catalog") || !strcmp(schema, "information_schema"));
}

/* ---- traffic --------------------------------------------------------- */

/* What an edge carries, to rank findings: connections on a tcp edge,
 * statements on a sql edge.  The units differ, but within a graph both
 * grow with the load a coupling sits on, which is what ranking needs. */
static json_int_t edge_traffic(const json_t *e)
{
	json_int_t n = 0;
	const char *key;
	json_t *v;

	if (!strcmp(json_str(e, "kind"), "tcp"))
		return json_integer_value(json_object_get(e, "connections"));
	json_object_foreach((json_t *)json_object_get(e, "operations"), key, v)
		n += json_integer_value(v);
	return n;
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
	json_t *f = json_pack("{s:s, s:s, s:s, s:[], s:[], s:[], s:[], s:i}",
			      "kind", kind_names[kind], "severity", severity, "title", "",
			      "services", "tables", "nodes", "details", "traffic", 0);

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
	json_int_t traffic = 0;
	json_t *f, *access;
	char *writer_names;

	for (size_t i = 0; i < ntouch; i++) {
		if (count_of(json_object_get(touch[i], "access"), "write") > 0)
			writers++;
		traffic += edge_traffic(touch[i]);
	}
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
	json_object_set_new(f, "traffic", json_integer(traffic));
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

		if (!is_kind(table, "table") || report_is_catalog(table))
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
	json_int_t traffic;
};

struct chain_search {
	const struct svc_graph *s;
	size_t *stack;
	bool *on_path;
	size_t depth;
	long budget;
	bool truncated;
	struct path *best; /* the longest seen, unordered, REPORT_CHAINS_KEPT at most */
	size_t nbest;
	size_t shortest;   /* index of the shortest in best once it is full */
};

/* Keep the path if it is among the longest seen so far. */
static void chain_keep(struct chain_search *cs)
{
	size_t slot = cs->nbest, *v;

	if (cs->depth - 1 < REPORT_CAUSAL_MIN_HOPS)
		return;
	if (cs->nbest == REPORT_CHAINS_KEPT) {
		slot = cs->shortest;
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
	cs->best[slot] = (struct path){ cs->depth, v, 0 };
	if (cs->nbest == REPORT_CHAINS_KEPT) {
		cs->shortest = 0;
		for (size_t i = 1; i < cs->nbest; i++)
			if (cs->best[i].len < cs->best[cs->shortest].len)
				cs->shortest = i;
	}
}

static json_t *svc_edge_between(const struct svc_graph *s, size_t from, size_t to);

/* The requests of an edge that nesting was measured on: those that were
 * not interleaved with another on their thread. */
static json_int_t nest_requests(const json_t *e)
{
	json_t *n = json_object_get(e, "nesting");

	return count_of(n, "requests") - count_of(n, "ambiguous");
}

/* What a -> u's requests called on u -> v, or NULL: the evidence that the
 * hop u -> v happens inside a -> u. */
static json_t *nested_call(const struct svc_graph *s, size_t a, size_t u, size_t v)
{
	json_t *e = svc_edge_between(s, a, u);
	json_t *c = json_object_get(json_object_get(json_object_get(e, "nesting"), "calls"),
				    json_str(s->node[v], "id"));

	return count_of(c, "requests") > 0 && nest_requests(e) > 0 ? c : NULL;
}

/* Simple paths only: a cycle would make every chain infinite, and the
 * cycle check reports it on its own.  Causal only: the first hop served
 * requests seen by the kernel, and every later hop was called inside the
 * one before. */
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
		if (cs->depth == 1 && nest_requests(s->edges[i].edge) <= 0)
			continue;
		if (cs->depth >= 2 && !nested_call(s, cs->stack[cs->depth - 2], u, v))
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

/* Deepest first; of equal depth, the one carrying most traffic stands for
 * its entry service. */
static int cmp_paths(const void *a, const void *b)
{
	const struct path *x = a, *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	if (x->traffic != y->traffic)
		return x->traffic > y->traffic ? -1 : 1;
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

static long svc_edge_index(const struct svc_graph *s, size_t from, size_t to)
{
	for (size_t i = s->first[from]; i < s->first[from + 1]; i++)
		if (s->edges[i].to == to)
			return (long)i;
	return -1;
}

static json_t *svc_edge_between(const struct svc_graph *s, size_t from, size_t to)
{
	long i = svc_edge_index(s, from, to);

	return i < 0 ? NULL : s->edges[i].edge;
}

/* The share of the entry edge's requests that take the whole chain: the
 * product of each hop's nesting fraction, which assumes a service's calls
 * do not depend on which of its callers asked. */
static double path_fraction(const struct svc_graph *s, const struct path *p)
{
	double f = 1;

	for (size_t i = 1; i + 1 < p->len; i++) {
		json_t *in = svc_edge_between(s, p->v[i - 1], p->v[i]);

		f *= (double)count_of(nested_call(s, p->v[i - 1], p->v[i], p->v[i + 1]), "requests") /
		     (double)nest_requests(in);
	}
	return f > 1 ? 1 : f;
}

/* Entry requests that take the whole chain. */
static json_int_t path_traffic(const struct svc_graph *s, const struct path *p)
{
	json_int_t n = nest_requests(svc_edge_between(s, p->v[0], p->v[1]));

	return (json_int_t)llround((double)n * path_fraction(s, p));
}

/* The share of from's statements on server's tables that failed (SQLSTATE
 * errors), 0 when from sent it none. */
static double sql_failure(const struct svc_graph *s, size_t from, size_t server)
{
	const char *src = json_str(s->node[from], "id"), *srv = json_str(s->node[server], "id");
	size_t n = strlen(srv);
	json_int_t ops = 0, errs = 0;
	const char *key;
	json_t *v;

	for (size_t i = 0; i < graph_edge_count(s->g); i++) {
		json_t *e = graph_edge_at(s->g, i);
		const char *t = json_str(e, "target");

		if (strcmp(json_str(e, "kind"), "sql") || strcmp(json_str(e, "source"), src) ||
		    strncmp(t, "table:", 6) || strncmp(t + 6, srv, n) || t[6 + n] != '/')
			continue;
		json_object_foreach(json_object_get(e, "operations"), key, v)
			ops += json_integer_value(v);
		json_object_foreach(json_object_get(e, "errors"), key, v)
			errs += json_integer_value(v);
	}
	return ops ? (double)errs / (double)ops : 0;
}

static double pct_of(const json_t *lat, const char *p)
{
	return json_number_value(json_object_get(lat, p));
}

/* One chain with all its evidence: a finding's body, or one entry of its
 * other_chains.  Hop 0's latency is the entry request's wall time, which
 * holds the rest; a later hop's is the time its caller's request spent
 * waiting on it.  Observed availability: what each hop's connects and
 * calls did not fail, multiplied. */
static json_t *chain_json(const struct svc_graph *s, const struct path *p)
{
	size_t hops = p->len - 1;
	double avail = pow(REPORT_HOP_AVAILABILITY, hops), observed = 1, fraction = path_fraction(s, p);
	json_t *c = json_pack("{s:s, s:[], s:[], s:[], s:[]}", "title", "", "services", "nodes", "details",
			      "hop_detail");
	json_t *hd = json_object_get(c, "hop_detail"), *lat0 = NULL;
	char *route = NULL, *lats = NULL;
	size_t len = 0, llen = 0;
	FILE *m = open_memstream(&route, &len), *l = open_memstream(&lats, &llen);

	for (size_t i = 0; i < p->len; i++) {
		finding_node(c, s->node[p->v[i]]);
		if (m)
			fprintf(m, "%s%s", i ? " -> " : "", svc_name(s, p->v[i]));
	}
	if (m)
		fclose(m);
	for (size_t i = 0; i < hops; i++) {
		json_t *e = svc_edge_between(s, p->v[i], p->v[i + 1]), *call = NULL, *lat, *h;
		json_int_t conns = count_of(e, "connections"), failed = count_of(e, "failed_connections");
		json_int_t req, nested;
		double fail;

		if (i == 0) {
			req = nested = nest_requests(e);
			lat = lat0 = json_object_get(json_object_get(e, "nesting"), "latency_ms");
		} else {
			call = nested_call(s, p->v[i - 1], p->v[i], p->v[i + 1]);
			req = nest_requests(svc_edge_between(s, p->v[i - 1], p->v[i]));
			nested = count_of(call, "requests");
			lat = json_object_get(call, "latency_ms");
		}
		/* Failed connects of all the edge's traffic, then failed
		 * statements when the callee is a PostgreSQL server.  A call
		 * left unreplied is no failure: a Terminate is never answered. */
		fail = conns + failed ? (double)failed / (double)(conns + failed) : 0;
		fail += (1 - fail) * sql_failure(s, p->v[i], p->v[i + 1]);
		observed *= 1 - fail;
		h = json_pack("{s:s, s:s, s:I, s:I, s:f}", "from", svc_name(s, p->v[i]), "to",
			      svc_name(s, p->v[i + 1]), "requests", req, "nested", nested,
			      "failure_rate", round(fail * 1e6) / 1e6);
		if (lat) {
			json_object_set_new(h, "p50_ms", json_real(pct_of(lat, "p50")));
			json_object_set_new(h, "p95_ms", json_real(pct_of(lat, "p95")));
			if (l)
				fprintf(l, "%s%s -> %s %.1f/%.1f", i ? ", " : "", svc_name(s, p->v[i]),
					svc_name(s, p->v[i + 1]), pct_of(lat, "p50"), pct_of(lat, "p95"));
		}
		json_array_append_new(hd, h);
	}
	if (l)
		fclose(l);
	finding_title(c, "%zu synchronous hops: %s", hops, route ? route : "");
	json_object_set_new(c, "hops", json_integer(hops));
	json_object_set_new(c, "fraction", json_real(round(fraction * 10000) / 10000));
	json_object_set_new(c, "availability", json_real(round(avail * 10000) / 10000));
	json_object_set_new(c, "observed_availability", json_real(round(observed * 10000) / 10000));
	if (lat0) {
		json_object_set_new(c, "latency_ms", json_real(pct_of(lat0, "p50")));
		json_object_set_new(c, "latency_p95_ms", json_real(pct_of(lat0, "p95")));
	}
	json_object_set_new(c, "requests", json_integer(p->traffic));

	append_fmt(json_object_get(c, "details"),
		   "%.1f%% of %s -> %s requests take the whole chain (%lld; product of each hop's nested share)",
		   fraction * 100, svc_name(s, p->v[0]), svc_name(s, p->v[1]), (long long)p->traffic);
	if (lats && *lats)
		append_fmt(json_object_get(c, "details"), "p50/p95 ms per hop: %s", lats);
	append_fmt(json_object_get(c, "details"),
		   "availability %.2f%% observed (failed connects, SQL errors); %.1f%% if each hop is %.0f%% up (%.2f^%zu)",
		   observed * 100, avail * 100, REPORT_HOP_AVAILABILITY * 100, REPORT_HOP_AVAILABILITY, hops);
	free(route);
	free(lats);
	return c;
}

/* The finding of one entry service: its deepest chain, and the others
 * that start there.  Its traffic counts each edge of the group once. */
struct chain_group {
	json_t *finding;
	bool *edge_used;
	json_int_t traffic;
	size_t min_hops, max_hops;
};

static void group_add_edges(struct chain_group *gr, const struct svc_graph *s, const struct path *p)
{
	for (size_t i = 0; i + 1 < p->len; i++) {
		long e = svc_edge_index(s, p->v[i], p->v[i + 1]);

		if (e >= 0 && !gr->edge_used[e]) {
			gr->edge_used[e] = true;
			gr->traffic += edge_traffic(s->edges[e].edge);
		}
	}
}

static void group_finish(struct chain_group *gr, const struct svc_graph *s, size_t entry)
{
	json_t *f = gr->finding, *others = json_object_get(f, "other_chains");
	size_t n = json_array_size(others);
	char *title;

	json_object_set_new(f, "traffic", json_integer(gr->traffic));
	json_object_set_new(f, "other_chain_count", json_integer(n));
	if (!n)
		return;
	if (asprintf(&title, "%s, and %zu other chain%s from %s", json_str(f, "title"), n, plural(n),
		     svc_name(s, entry)) >= 0) {
		json_object_set_new(f, "title", json_string(title));
		free(title);
	}
	if (gr->min_hops == gr->max_hops)
		append_fmt(json_object_get(f, "details"), "the other chain%s from %s: %zu hops",
			   plural(n), svc_name(s, entry), gr->min_hops);
	else
		append_fmt(json_object_get(f, "details"), "the other chains from %s: %zu to %zu hops",
			   svc_name(s, entry), gr->min_hops, gr->max_hops);
}

static void check_sync_chains(json_t *findings, const struct svc_graph *s, json_t *summary)
{
	struct chain_search cs = { .s = s, .budget = REPORT_PATH_BUDGET };
	struct path **accepted = NULL;
	struct chain_group *groups = NULL;
	size_t naccepted = 0, ngroups = 0, unreported = 0;

	cs.best = calloc(REPORT_CHAINS_KEPT, sizeof(*cs.best));
	cs.stack = calloc(s->n + 1, sizeof(*cs.stack));
	cs.on_path = calloc(s->n + 1, sizeof(*cs.on_path));
	groups = calloc(s->n + 1, sizeof(*groups));
	for (size_t u = 0; cs.best && cs.stack && cs.on_path && groups && u < s->n && !cs.truncated; u++)
		chain_dfs(&cs, u);
	for (size_t i = 0; i < cs.nbest; i++)
		cs.best[i].traffic = path_traffic(s, &cs.best[i]);
	if (cs.nbest)
		qsort(cs.best, cs.nbest, sizeof(cs.best[0]), cmp_paths);
	accepted = calloc(cs.nbest + 1, sizeof(*accepted));

	/* A chain inside a longer one says nothing new; what is left is grouped
	 * by the service it starts at, deepest first. */
	for (size_t i = 0; accepted && groups && i < cs.nbest; i++) {
		struct path *p = &cs.best[i];
		struct chain_group *gr = &groups[p->v[0]];
		bool covered = false;

		for (size_t j = 0; j < naccepted && !covered; j++)
			covered = path_within(p, accepted[j]);
		if (covered)
			continue;
		accepted[naccepted++] = p;
		if (!gr->finding) {
			json_t *body;

			if (ngroups == REPORT_MAX_CHAINS) {
				unreported++;
				continue;
			}
			gr->edge_used = calloc(s->nedges + 1, sizeof(*gr->edge_used));
			if (!gr->edge_used)
				continue;
			gr->finding = finding_new(findings, REPORT_SYNC_CHAIN,
						  p->len - 1 >= REPORT_CHAIN_MIN_HOPS ? "warning" : "info");
			body = chain_json(s, p);
			json_object_update(gr->finding, body);
			json_decref(body);
			json_object_set_new(gr->finding, "other_chains", json_array());
			gr->min_hops = SIZE_MAX;
			ngroups++;
		} else {
			json_array_append_new(json_object_get(gr->finding, "other_chains"), chain_json(s, p));
			if (p->len - 1 < gr->min_hops)
				gr->min_hops = p->len - 1;
			if (p->len - 1 > gr->max_hops)
				gr->max_hops = p->len - 1;
		}
		group_add_edges(gr, s, p);
	}
	for (size_t u = 0; groups && u < s->n; u++) {
		if (groups[u].finding)
			group_finish(&groups[u], s, u);
		free(groups[u].edge_used);
	}
	json_object_set_new(summary, "chains", json_integer(naccepted));
	json_object_set_new(summary, "chains_left_out", json_integer(unreported));
	json_object_set_new(summary, "chain_search_truncated", json_boolean(cs.truncated));
	for (size_t i = 0; i < cs.nbest; i++)
		free(cs.best[i].v);
	free(cs.best);
	free(accepted);
	free(groups);
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
		json_int_t traffic = 0;
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

			traffic += edge_traffic(e);
			finding_node(f, t);
			append_fmt(json_object_get(f, "details"), "-> %s: %lld connection%s",
				   json_str(t, "name"), (long long)count_of(e, "connections"),
				   plural(count_of(e, "connections")));
		}
		json_object_set_new(f, "traffic", json_integer(traffic));
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

			if (!e)
				continue;
			json_object_set_new(f, "traffic", json_integer(count_of(f, "traffic") + edge_traffic(e)));
			append_fmt(json_object_get(f, "details"), "%s -> %s (%lld connection%s)",
				   svc_name(s, members[i]), svc_name(s, members[j]),
				   (long long)count_of(e, "connections"), plural(count_of(e, "connections")));
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

		if (!strcmp(json_str(e, "kind"), "sql") && !strcmp(json_str(e, "source"), svc_id) &&
		    !report_is_catalog(graph_node(g, json_str(e, "target"))))
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
	for (i = 0; i < json_array_size(common); i++) {
		const char *t = json_string_value(json_array_get(common, i));

		finding_node(f, graph_node(g, t));
		json_object_set_new(f, "traffic", json_integer(count_of(f, "traffic") +
			edge_traffic(graph_find_edge(g, json_str(s->node[a], "id"), t, "sql")) +
			edge_traffic(graph_find_edge(g, json_str(s->node[b], "id"), t, "sql"))));
	}
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

/* ---- test_closure ---------------------------------------------------- */

/* "a, b, c" from a sorted array of names. */
static char *join_names(const json_t *names)
{
	char *buf = NULL;
	size_t len = 0, i;
	FILE *m = open_memstream(&buf, &len);
	json_t *v;

	if (!m)
		return NULL;
	json_array_foreach(names, i, v)
		fprintf(m, "%s%s", i ? ", " : "", json_string_value(v));
	fclose(m);
	return buf;
}

/* What must run to test service u: every service it reaches through
 * synchronous calls, and the tables they all use.  reach[] holds the
 * services reached; u itself is in it. */
static void closure_finding(json_t *findings, struct graph *g, const struct svc_graph *s,
			    size_t u, const bool *reach, size_t nother)
{
	size_t ne = graph_edge_count(g);
	json_t *f, *tables = json_object(), *svc_names = json_array(), *table_names = json_array();
	json_t **sorted = calloc(ne + 1, sizeof(*sorted)), *v;
	json_int_t traffic = 0;
	size_t ntables = 0;
	const char *id;
	char *svc_text, *table_text;

	/* Every call out of a reached service lands on a reached one. */
	for (size_t i = 0; i < s->nedges; i++)
		if (reach[s->edges[i].from])
			traffic += edge_traffic(s->edges[i].edge);
	for (size_t i = 0; i < ne; i++) {
		json_t *e = graph_edge_at(g, i), *t;
		long from = svc_index(s, json_str(e, "source"));

		if (strcmp(json_str(e, "kind"), "sql") || from < 0 || !reach[from])
			continue;
		t = graph_node(g, json_str(e, "target"));
		if (!is_kind(t, "table") || report_is_catalog(t))
			continue;
		json_object_set(tables, json_str(t, "id"), t);
		traffic += edge_traffic(e);
	}

	f = finding_new(findings, REPORT_TEST_CLOSURE, "warning");
	finding_node(f, s->node[u]);
	for (size_t i = 0; i < s->n; i++)
		if (reach[i] && i != u) {
			finding_node(f, s->node[i]);
			json_array_append_new(svc_names, json_string(svc_name(s, i)));
		}
	json_object_foreach(tables, id, v)
		if (sorted)
			sorted[ntables++] = v;
	if (ntables)
		qsort(sorted, ntables, sizeof(*sorted), cmp_node_names);
	for (size_t i = 0; i < ntables; i++) {
		finding_node(f, sorted[i]);
		json_array_append_new(table_names, json_string(json_str(sorted[i], "name")));
	}
	free(sorted);
	if (ntables)
		finding_title(f, "testing %s needs %zu other service%s and %zu table%s running",
			      svc_name(s, u), nother, plural(nother), ntables, plural(ntables));
	else
		finding_title(f, "testing %s needs %zu other service%s running", svc_name(s, u), nother,
			      plural(nother));
	json_object_set_new(f, "traffic", json_integer(traffic));
	json_object_set_new(f, "closure_services", svc_names);
	json_object_set_new(f, "closure_tables", table_names);
	json_object_set_new(f, "share", json_real(round(1000.0 * nother / (s->n - 1)) / 1000));
	svc_text = join_names(svc_names);
	table_text = join_names(table_names);
	append_fmt(json_object_get(f, "details"), "services: %s (%.0f%% of the other services)",
		   svc_text ? svc_text : "", 100.0 * nother / (s->n - 1));
	if (json_array_size(table_names))
		append_fmt(json_object_get(f, "details"), "tables: %s", table_text ? table_text : "");
	free(svc_text);
	free(table_text);
	json_decref(tables);
}

/* Breadth-first from each service over tcp edges between services. */
static void check_test_closures(json_t *findings, struct graph *g, const struct svc_graph *s)
{
	bool *reach = calloc(s->n + 1, sizeof(*reach));
	size_t *queue = calloc(s->n + 1, sizeof(*queue));

	for (size_t u = 0; reach && queue && u < s->n; u++) {
		size_t head = 0, tail = 0;

		memset(reach, 0, s->n * sizeof(*reach));
		reach[u] = true;
		queue[tail++] = u;
		while (head < tail) {
			size_t x = queue[head++];

			for (size_t i = s->first[x]; i < s->first[x + 1]; i++)
				if (!reach[s->edges[i].to]) {
					reach[s->edges[i].to] = true;
					queue[tail++] = s->edges[i].to;
				}
		}
		if (tail - 1 >= REPORT_CLOSURE_MIN_SERVICES)
			closure_finding(findings, g, s, u, reach, tail - 1);
	}
	free(reach);
	free(queue);
}

/* ---- system catalogs --------------------------------------------------- */

/* [{"table", "database", "node", "services"}]: shown, never a finding. */
static json_t *catalog_tables(struct graph *g)
{
	size_t nn = graph_node_count(g), ne = graph_edge_count(g);
	json_t *out = json_array();

	for (size_t t = 0; t < nn; t++) {
		json_t *table = graph_node_at(g, t), *db, *entry;
		const char *id = json_str(table, "id");

		if (!report_is_catalog(table))
			continue;
		db = graph_node(g, json_str(table, "database"));
		entry = json_pack("{s:s, s:s, s:s}", "table", json_str(table, "name"), "database",
				  db && json_str(db, "database") ? json_str(db, "database") : "?", "node", id);
		for (size_t i = 0; i < ne; i++) {
			json_t *e = graph_edge_at(g, i), *src;

			if (strcmp(json_str(e, "kind"), "sql") || strcmp(json_str(e, "target"), id))
				continue;
			src = graph_node(g, json_str(e, "source"));
			if (is_kind(src, "service"))
				graph_node_add_string(entry, "services", json_str(src, "name"));
		}
		if (!json_object_get(entry, "services"))
			json_object_set_new(entry, "services", json_array());
		json_array_append_new(out, entry);
	}
	return out;
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

	if (!c && count_of(x, "traffic") != count_of(y, "traffic"))
		c = count_of(x, "traffic") > count_of(y, "traffic") ? -1 : 1;
	if (!c)
		c = report_kind_parse(json_str(x, "kind")) - report_kind_parse(json_str(y, "kind"));
	return c;
}

/* Most severe first, then the most traffic; qsort is not stable, and ties
 * keep each check's own order. */
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
	check_test_closures(findings, g, &s);
	svc_graph_free(&s);
	json_object_set_new(summary, "catalog_tables", catalog_tables(g));

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

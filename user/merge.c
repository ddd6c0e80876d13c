/* Merge per-host graphs: one node per service name, external endpoints
 * rewritten to the service that accepted them on another host, counts
 * added, one capture section per host. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "merge.h"

struct merge {
	struct graph *out;
	json_t *resolve;   /* "ext:ADDR:PORT" -> service id, or null when ambiguous */
	json_t *warnings;
};

/* A loopback address names a different socket on every host, so it never
 * resolves across hosts (capture already resolves it within one). */
static bool is_loopback(const char *endpoint)
{
	return !strncmp(endpoint, "127.", 4) || !strncmp(endpoint, "[::1]", 5) ||
	       !strncmp(endpoint, "[::ffff:127.", 12);
}

static void warn(struct merge *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct merge *m, const char *fmt, ...)
{
	va_list ap;
	char *s;

	if (!m->warnings)
		return;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) >= 0) {
		json_array_append_new(m->warnings, json_string(s));
		free(s);
	}
	va_end(ap);
}

static void learn_listens(struct merge *m, const json_t *svc)
{
	const char *svc_id = json_str(svc, "id");
	json_t *l;
	size_t i;

	json_array_foreach(json_object_get(svc, "listens"), i, l) {
		const char *ep = json_string_value(l);
		char ext_id[128];
		json_t *known;

		if (!ep || is_loopback(ep))
			continue;
		snprintf(ext_id, sizeof(ext_id), "ext:%s", ep);
		known = json_object_get(m->resolve, ext_id);
		if (!known) {
			json_object_set_new(m->resolve, ext_id, json_string(svc_id));
		} else if (json_is_string(known) && strcmp(json_string_value(known), svc_id)) {
			/* Two services claim the address (NAT, reused private
			 * ranges): guessing would invent an edge. */
			warn(m, "%s is accepted by both %s and %s; it stays an external node",
			     ep, json_string_value(known), svc_id);
			json_object_set_new(m->resolve, ext_id, json_null());
		}
	}
}

/* The id a node of an input graph has in the output, creating databases
 * and tables there: their ids embed the server's id, which a resolved
 * external endpoint changes. */
static const char *map_id(struct merge *m, struct graph *in, const char *id)
{
	json_t *node = graph_node(in, id), *to, *made = NULL;
	const char *kind = json_str(node, "kind");
	char *qualified;

	if (!kind)
		return id;
	if (!strcmp(kind, "external")) {
		to = json_object_get(m->resolve, id);
		return json_is_string(to) ? json_string_value(to) : id;
	}
	if (!strcmp(kind, "database")) {
		made = graph_database(m->out, map_id(m, in, json_str(node, "server")),
				      json_str(node, "database"));
	} else if (!strcmp(kind, "table")) {
		if (asprintf(&qualified, "%s.%s", json_str(node, "schema"), json_str(node, "table")) < 0)
			return id;
		made = graph_table(m->out, map_id(m, in, json_str(node, "database")), qualified);
		free(qualified);
	}
	/* Services keep their id, svc:NAME, which is what merges them. */
	return made ? json_str(made, "id") : id;
}

/* Union string arrays (processes, listens, hosts); otherwise the first
 * input's value stands (cgroup: a service is one unit however many hosts
 * run it). */
static void merge_node_fields(json_t *dst, const json_t *src)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)src, key, v) {
		json_t *have = json_object_get(dst, key);
		size_t i;
		json_t *s;

		if (!have) {
			json_object_set_new(dst, key, json_deep_copy(v));
		} else if (json_is_array(have) && json_is_array(v)) {
			json_array_foreach(v, i, s)
				if (json_is_string(s))
					graph_node_add_string(dst, key, json_string_value(s));
		}
	}
}

static void merge_node(struct merge *m, struct graph *in, const json_t *node)
{
	const char *kind = json_str(node, "kind");
	json_t *out;

	if (!strcmp(kind, "service"))
		out = graph_service(m->out, json_str(node, "name"), json_str(node, "cgroup"));
	else if (!strcmp(kind, "external") && json_is_string(json_object_get(m->resolve, json_str(node, "id"))))
		return; /* resolved: its edges move to the service */
	else if (!strcmp(kind, "external"))
		out = graph_external(m->out, json_str(node, "address"),
				     json_integer_value(json_object_get(node, "port")));
	else
		out = graph_node(m->out, map_id(m, in, json_str(node, "id")));
	if (out)
		merge_node_fields(out, node);
}

/* ---- edges ----------------------------------------------------------- */

static bool is_percentiles(const json_t *v)
{
	return json_is_object(v) && json_object_get(v, "p50") && json_object_get(v, "count");
}

/* Percentiles cannot be combined exactly without the samples: keep the
 * worst of each and add the counts (docs/schema.md). */
static void merge_percentiles(json_t *dst, const json_t *src)
{
	static const char *const ps[] = { "p50", "p95", "p99" };

	for (size_t i = 0; i < 3; i++) {
		json_t *a = json_object_get(dst, ps[i]), *b = json_object_get(src, ps[i]);

		if (json_is_number(b) && (!json_is_number(a) || json_number_value(b) > json_number_value(a)))
			json_object_set_new(dst, ps[i], json_deep_copy(b));
	}
	json_count_add(dst, "count", json_integer_value(json_object_get(src, "count")));
}

static int cmp_statements(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t cx = json_integer_value(json_object_get(x, "count"));
	json_int_t cy = json_integer_value(json_object_get(y, "count"));

	if (cx != cy)
		return cx > cy ? -1 : 1;
	return strcmp(json_str(x, "query") ?: "", json_str(y, "query") ?: "");
}

/* Same query text adds up; the list is re-ranked and cut to the top. */
static void merge_statements(json_t *edge, const json_t *src)
{
	json_t *dst = json_object_get(edge, "statements"), *s, **items, *out;
	size_t i, n;

	json_array_foreach(src, i, s) {
		const char *q = json_str(s, "query");
		json_t *t = NULL;
		size_t j;

		json_array_foreach(dst, j, t)
			if (q && json_str(t, "query") && !strcmp(q, json_str(t, "query")))
				break;
		if (j < json_array_size(dst))
			json_count_add(t, "count", json_integer_value(json_object_get(s, "count")));
		else
			json_array_append_new(dst, json_deep_copy(s));
	}
	n = json_array_size(dst);
	items = calloc(n + 1, sizeof(*items));
	if (!items)
		return;
	for (i = 0; i < n; i++)
		items[i] = json_array_get(dst, i);
	qsort(items, n, sizeof(*items), cmp_statements);
	out = json_array();
	for (i = 0; i < n && i < GRAPH_MAX_STATEMENTS; i++)
		json_array_append(out, items[i]);
	free(items);
	json_object_set_new(edge, "statements", out);
}

/* Integers add up at any depth (connections, bytes, operations, access,
 * errors); a few keys are identities or ranges, not counts. */
static void merge_counts(json_t *dst, const json_t *src, bool top)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)src, key, v) {
		json_t *have = json_object_get(dst, key);

		if (top && (!strcmp(key, "source") || !strcmp(key, "target") || !strcmp(key, "kind") ||
			    !strcmp(key, "first_seen") || !strcmp(key, "last_seen") || !strcmp(key, "port")))
			continue;
		if (!have)
			json_object_set_new(dst, key, json_deep_copy(v));
		else if (is_percentiles(have) && is_percentiles(v))
			merge_percentiles(have, v);
		else if (top && !strcmp(key, "statements") && json_is_array(have))
			merge_statements(dst, v);
		else if (json_is_integer(have) && json_is_integer(v))
			json_integer_set(have, json_integer_value(have) + json_integer_value(v));
		else if (json_is_object(have) && json_is_object(v))
			merge_counts(have, v, false);
	}
}

/* The edge with its nesting's callees under their ids in the output: a
 * resolved external endpoint is a service there.  A new reference. */
static json_t *map_nesting(struct merge *m, struct graph *in, const json_t *e)
{
	json_t *calls = json_object_get(json_object_get(e, "nesting"), "calls"), *copy, *mapped, *v;
	const char *key;

	if (!json_is_object(calls))
		return json_incref((json_t *)e);
	copy = json_deep_copy(e);
	mapped = json_object();
	json_object_foreach(calls, key, v) {
		const char *to = map_id(m, in, key);
		json_t *have = json_object_get(mapped, to);

		if (have)
			merge_counts(have, v, false);
		else
			json_object_set_new(mapped, to, json_deep_copy(v));
	}
	json_object_set_new(json_object_get(copy, "nesting"), "calls", mapped);
	return copy;
}

static void merge_edge(struct merge *m, struct graph *in, const json_t *e)
{
	const char *src = map_id(m, in, json_str(e, "source"));
	const char *tgt = map_id(m, in, json_str(e, "target"));
	json_t *out = graph_edge(m->out, src, tgt, json_str(e, "kind")), *mapped;

	if (!out)
		return;
	if (!json_object_get(out, "port") && json_object_get(e, "port"))
		json_object_set_new(out, "port", json_deep_copy(json_object_get(e, "port")));
	mapped = map_nesting(m, in, e);
	merge_counts(out, mapped, true);
	json_decref(mapped);
	graph_seen_str(out, json_str(e, "first_seen"), json_str(e, "last_seen"));
}

/* ---- captures -------------------------------------------------------- */

/* One capture section per host: an input that is itself a merge brings
 * all of its sections. */
static void merge_captures(json_t *captures, struct graph *in)
{
	json_t *doc = graph_doc(in), *c;
	size_t i;

	if (json_is_object(json_object_get(doc, "capture")))
		json_array_append_new(captures, json_deep_copy(json_object_get(doc, "capture")));
	json_array_foreach(json_object_get(doc, "captures"), i, c)
		json_array_append_new(captures, json_deep_copy(c));
}

static void merge_kind(struct merge *m, struct graph *const *in, size_t n, const char *kind)
{
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < graph_node_count(in[k]); i++) {
			json_t *node = graph_node_at(in[k], i);

			if (!strcmp(json_str(node, "kind"), kind))
				merge_node(m, in[k], node);
		}
}

struct graph *merge_graphs(struct graph *const *in, size_t n, json_t *warnings,
			   char *err, size_t errlen)
{
	struct merge m = { .warnings = warnings };
	json_t *captures;

	if (!n) {
		snprintf(err, errlen, "nothing to merge; give one or more graph files");
		return NULL;
	}
	m.out = graph_new();
	m.resolve = json_object();
	captures = json_array();
	if (!m.out || !m.resolve || !captures) {
		snprintf(err, errlen, "out of memory merging graphs");
		graph_free(m.out);
		json_decref(m.resolve);
		json_decref(captures);
		return NULL;
	}
	json_object_set_new(graph_doc(m.out), "captures", captures);

	for (size_t k = 0; k < n; k++) {
		merge_captures(captures, in[k]);
		for (size_t i = 0; i < graph_node_count(in[k]); i++)
			if (!strcmp(json_str(graph_node_at(in[k], i), "kind"), "service"))
				learn_listens(&m, graph_node_at(in[k], i));
	}
	/* Servers before the databases on them, databases before tables. */
	merge_kind(&m, in, n, "service");
	merge_kind(&m, in, n, "external");
	merge_kind(&m, in, n, "database");
	merge_kind(&m, in, n, "table");
	for (size_t k = 0; k < n; k++)
		for (size_t i = 0; i < graph_edge_count(in[k]); i++)
			merge_edge(&m, in[k], graph_edge_at(in[k], i));

	json_decref(m.resolve);
	return m.out;
}

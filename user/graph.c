/* The seams graph: a jansson document (docs/schema.md) plus two jansson
 * objects used as hash tables, node id -> index and edge key -> index, so
 * capture can find-or-create in O(1) however large the graph grows. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "graph.h"
#include "hist.h"
#include "u64map.h"

struct graph {
	json_t *doc;
	json_t *nodes;     /* borrowed from doc */
	json_t *edges;     /* borrowed from doc */
	json_t *node_idx;  /* id -> index in nodes */
	json_t *edge_idx;  /* edge_key() -> index in edges */
};

/* Unit separator: cannot appear in a node id built by this file, so the
 * concatenation is unambiguous. */
#define KEY_SEP "\x1f"

static struct graph *graph_wrap(json_t *doc)
{
	struct graph *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->doc = doc;
	g->nodes = json_object_get(doc, "nodes");
	g->edges = json_object_get(doc, "edges");
	g->node_idx = json_object();
	g->edge_idx = json_object();
	if (!g->node_idx || !g->edge_idx) {
		graph_free(g);
		return NULL;
	}
	return g;
}

struct graph *graph_new(void)
{
	json_t *doc = json_pack("{s:s, s:[], s:[]}", "schema", GRAPH_SCHEMA, "nodes", "edges");

	if (!doc)
		return NULL;
	return graph_wrap(doc);
}

void graph_free(struct graph *g)
{
	if (!g)
		return;
	json_decref(g->doc);
	json_decref(g->node_idx);
	json_decref(g->edge_idx);
	free(g);
}

json_t *graph_doc(struct graph *g)
{
	return g->doc;
}

json_t *graph_capture(struct graph *g)
{
	json_t *c = json_object_get(g->doc, "capture");

	if (!c) {
		c = json_object();
		json_object_set_new(g->doc, "capture", c);
	}
	return c;
}

size_t graph_node_count(struct graph *g)
{
	return json_array_size(g->nodes);
}

json_t *graph_node_at(struct graph *g, size_t i)
{
	return json_array_get(g->nodes, i);
}

size_t graph_edge_count(struct graph *g)
{
	return json_array_size(g->edges);
}

json_t *graph_edge_at(struct graph *g, size_t i)
{
	return json_array_get(g->edges, i);
}

/* ---- strings ---------------------------------------------------------- */

/* Names come from the kernel (comm, cgroup paths) and may not be UTF-8;
 * jansson refuses those, so replace each non-ASCII byte of an invalid
 * string rather than drop the node. */
static json_t *json_string_lossy(const char *s)
{
	json_t *j = json_string(s);
	char *copy;

	if (j)
		return j;
	copy = strdup(s);
	if (!copy)
		return NULL;
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80 || *p == KEY_SEP[0])
			*p = '?';
	j = json_string(copy);
	free(copy);
	return j;
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

const char *json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* ---- nodes ------------------------------------------------------------ */

json_t *graph_node(struct graph *g, const char *id)
{
	json_t *idx = json_object_get(g->node_idx, id);

	return idx ? json_array_get(g->nodes, json_integer_value(idx)) : NULL;
}

long graph_node_index(struct graph *g, const char *id)
{
	json_t *idx = json_object_get(g->node_idx, id);

	return idx ? (long)json_integer_value(idx) : -1;
}

/* Append a node that has "id", "kind" and "name" and index it. */
static json_t *graph_add_node(struct graph *g, json_t *node)
{
	const char *id = json_str(node, "id");

	if (!id || json_array_append_new(g->nodes, node)) {
		json_decref(node);
		return NULL;
	}
	json_object_set_new(g->node_idx, id, json_integer(json_array_size(g->nodes) - 1));
	return node;
}

static json_t *node_new(const char *id, const char *kind, const char *name)
{
	json_t *node = json_object();

	json_object_set_new(node, "id", json_string_lossy(id));
	json_object_set_new(node, "kind", json_string(kind));
	json_object_set_new(node, "name", json_string_lossy(name));
	return node;
}

json_t *graph_service(struct graph *g, const char *name, const char *cgroup)
{
	char *id = xasprintf("svc:%s", name);
	json_t *node;

	if (!id)
		return NULL;
	node = graph_node(g, id);
	if (!node) {
		node = node_new(id, "service", name);
		json_object_set_new(node, "processes", json_array());
		json_object_set_new(node, "listens", json_array());
		json_object_set_new(node, "hosts", json_array());
		node = graph_add_node(g, node);
	}
	/* The first cgroup wins: a service is named after its cgroup, so a
	 * second one is the same unit seen again (or on another host). */
	if (node && cgroup && !json_object_get(node, "cgroup"))
		json_object_set_new(node, "cgroup", json_string_lossy(cgroup));
	free(id);
	return node;
}

void graph_format_endpoint(const char *address, unsigned port, char *buf, size_t len)
{
	/* IPv6 is bracketed so the port stays unambiguous, as in "listens". */
	if (strchr(address, ':') && address[0] != '[')
		snprintf(buf, len, "[%s]:%u", address, port);
	else
		snprintf(buf, len, "%s:%u", address, port);
}

json_t *graph_external(struct graph *g, const char *address, uint16_t port)
{
	char ep[80], id[96];
	json_t *node;

	/* Port 0: a remote client (its port is ephemeral) or a Unix socket path. */
	if (port)
		graph_format_endpoint(address, port, ep, sizeof(ep));
	else
		snprintf(ep, sizeof(ep), "%s", address);
	snprintf(id, sizeof(id), "ext:%s", ep);
	node = graph_node(g, id);
	if (node)
		return node;
	node = node_new(id, "external", ep);
	json_object_set_new(node, "address", json_string_lossy(address));
	if (port)
		json_object_set_new(node, "port", json_integer(port));
	return graph_add_node(g, node);
}

json_t *graph_database(struct graph *g, const char *server_id, const char *dbname)
{
	char *id = xasprintf("db:%s/%s", server_id, dbname);
	json_t *node;

	if (!id)
		return NULL;
	node = graph_node(g, id);
	if (!node) {
		node = node_new(id, "database", dbname);
		json_object_set_new(node, "server", json_string_lossy(server_id));
		json_object_set_new(node, "database", json_string_lossy(dbname));
		node = graph_add_node(g, node);
	}
	free(id);
	return node;
}

/* Split "schema.table" at the first dot outside double quotes; an
 * unqualified name is in "public", as PostgreSQL's default search_path. */
static void split_qualified(const char *q, char **schema, char **table)
{
	const char *dot = NULL;
	int quoted = 0;

	for (const char *p = q; *p; p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '.' && !quoted) {
			dot = p;
			break;
		}
	}
	if (dot) {
		*schema = strndup(q, dot - q);
		*table = strdup(dot + 1);
	} else {
		*schema = strdup("public");
		*table = strdup(q);
	}
}

json_t *graph_table(struct graph *g, const char *database_id, const char *qualified)
{
	const char *db = strncmp(database_id, "db:", 3) ? database_id : database_id + 3;
	char *schema = NULL, *table = NULL, *id = NULL, *name = NULL;
	json_t *node = NULL;

	split_qualified(qualified, &schema, &table);
	if (!schema || !table)
		goto out;
	name = xasprintf("%s.%s", schema, table);
	id = xasprintf("table:%s/%s", db, name ? name : "");
	if (!name || !id)
		goto out;
	node = graph_node(g, id);
	if (!node) {
		node = node_new(id, "table", name);
		json_object_set_new(node, "database", json_string_lossy(database_id));
		json_object_set_new(node, "schema", json_string_lossy(schema));
		json_object_set_new(node, "table", json_string_lossy(table));
		node = graph_add_node(g, node);
	}
out:
	free(schema);
	free(table);
	free(name);
	free(id);
	return node;
}

void graph_node_add_string(json_t *node, const char *field, const char *value)
{
	json_t *arr = json_object_get(node, field);
	size_t i;

	if (!json_is_array(arr)) {
		arr = json_array();
		json_object_set_new(node, field, arr);
	}
	/* Arrays stay small (processes, addresses, hosts): a linear scan keeps
	 * them sorted without a second structure. */
	for (i = 0; i < json_array_size(arr); i++) {
		int c = strcmp(json_string_value(json_array_get(arr, i)) ?: "", value);

		if (c == 0)
			return;
		if (c > 0)
			break;
	}
	json_array_insert_new(arr, i, json_string_lossy(value));
}

/* ---- edges ------------------------------------------------------------ */

static char *edge_key(const char *source, const char *target, const char *kind)
{
	return xasprintf("%s" KEY_SEP "%s" KEY_SEP "%s", source, target, kind);
}

json_t *graph_find_edge(struct graph *g, const char *source, const char *target, const char *kind)
{
	char *key = edge_key(source, target, kind);
	json_t *idx;

	if (!key)
		return NULL;
	idx = json_object_get(g->edge_idx, key);
	free(key);
	return idx ? json_array_get(g->edges, json_integer_value(idx)) : NULL;
}

json_t *graph_edge(struct graph *g, const char *source, const char *target, const char *kind)
{
	char *key = edge_key(source, target, kind);
	json_t *idx, *edge = NULL;

	if (!key)
		return NULL;
	idx = json_object_get(g->edge_idx, key);
	if (idx) {
		edge = json_array_get(g->edges, json_integer_value(idx));
		goto out;
	}
	edge = json_object();
	json_object_set_new(edge, "source", json_string_lossy(source));
	json_object_set_new(edge, "target", json_string_lossy(target));
	json_object_set_new(edge, "kind", json_string(kind));
	if (json_array_append_new(g->edges, edge)) {
		edge = NULL;
		goto out;
	}
	json_object_set_new(g->edge_idx, key, json_integer(json_array_size(g->edges) - 1));
out:
	free(key);
	return edge;
}

/* ---- values ----------------------------------------------------------- */

void json_count_add(json_t *obj, const char *key, json_int_t n)
{
	json_t *v = json_object_get(obj, key);

	if (json_is_integer(v))
		json_integer_set(v, json_integer_value(v) + n);
	else
		json_object_set_new(obj, key, json_integer(n));
}

void graph_format_time(uint64_t realtime_ns, char *buf, size_t len)
{
	time_t sec = realtime_ns / 1000000000ull;
	unsigned ms = (realtime_ns / 1000000ull) % 1000;
	struct tm tm;
	char day[24];

	gmtime_r(&sec, &tm);
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03uZ", day, ms);
}

void graph_seen_str(json_t *obj, const char *first, const char *last)
{
	/* Same fixed-width UTC format everywhere, so strcmp orders times. */
	const char *f = json_str(obj, "first_seen");
	const char *l = json_str(obj, "last_seen");

	if (first && (!f || strcmp(first, f) < 0))
		json_object_set_new(obj, "first_seen", json_string(first));
	if (last && (!l || strcmp(last, l) > 0))
		json_object_set_new(obj, "last_seen", json_string(last));
}

void graph_seen(json_t *obj, uint64_t realtime_ns)
{
	char t[32];

	graph_format_time(realtime_ns, t, sizeof(t));
	graph_seen_str(obj, t, t);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Nearest-rank percentile, rounded to microseconds to keep the JSON short. */
static double percentile(const double *sorted, size_t n, double p)
{
	size_t rank = (size_t)ceil(p / 100.0 * n);

	if (rank < 1)
		rank = 1;
	return round(sorted[rank - 1] * 1000.0) / 1000.0;
}

json_t *graph_percentiles(double *samples_ms, size_t n)
{
	if (!n)
		return NULL;
	qsort(samples_ms, n, sizeof(*samples_ms), cmp_double);
	return json_pack("{s:f, s:f, s:f, s:I}",
			 "p50", percentile(samples_ms, n, 50),
			 "p95", percentile(samples_ms, n, 95),
			 "p99", percentile(samples_ms, n, 99),
			 "count", (json_int_t)n);
}

void graph_edge_hist_merge(struct u64map *m, json_t *edge, const struct hist *h)
{
	struct hist *acc = u64map_get(m, (uintptr_t)edge);

	if (!acc) {
		acc = calloc(1, sizeof(*acc));
		if (!acc || u64map_put(m, (uintptr_t)edge, acc)) {
			free(acc);
			return;
		}
	}
	hist_merge(acc, h);
}

void graph_edge_hists_finish(struct u64map *m, const char *field)
{
	struct hist *acc;

	u64map_for_each(m, i, acc) {
		json_object_set_new((json_t *)(uintptr_t)m->keys[i], field, hist_json_ms(acc));
		free(acc);
	}
	u64map_free(m);
}

/* ---- writing ---------------------------------------------------------- */

/* Keys a reader looks for first, then everything else by name, then the
 * long arrays: the same document always prints the same way, so two
 * captures diff cleanly. */
static const char *const key_first[] = {
	"schema", "capture", "captures", "id", "source", "target", "kind", "name",
	"host", "kernel", "start", "end", "duration_s", "first_seen", "last_seen",
	"query", "p50", "p95", "p99",
};
static const char *const key_last[] = { "statements", "nodes", "edges" };

static int key_rank(const char *key)
{
	const int nfirst = sizeof(key_first) / sizeof(key_first[0]);
	const int nlast = sizeof(key_last) / sizeof(key_last[0]);

	for (int i = 0; i < nfirst; i++)
		if (!strcmp(key, key_first[i]))
			return i;
	for (int i = 0; i < nlast; i++)
		if (!strcmp(key, key_last[i]))
			return nfirst + 1 + i;
	return nfirst;
}

static int cmp_keys(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	int rx = key_rank(x), ry = key_rank(y);

	return rx != ry ? rx - ry : strcmp(x, y);
}

static int cmp_node_ids(const void *a, const void *b)
{
	return strcmp(json_str(*(json_t *const *)a, "id") ?: "",
		      json_str(*(json_t *const *)b, "id") ?: "");
}

static int cmp_edges(const void *a, const void *b)
{
	static const char *const keys[] = { "source", "target", "kind" };
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

	for (int i = 0; i < 3; i++) {
		int c = strcmp(json_str(x, keys[i]) ?: "", json_str(y, keys[i]) ?: "");

		if (c)
			return c;
	}
	return 0;
}

static json_t *canonical(json_t *v, int (*sort_items)(const void *, const void *));
static json_t *canonical_object(json_t *obj, int top);

static json_t *canonical_array(json_t *arr, int (*sort_items)(const void *, const void *))
{
	size_t n = json_array_size(arr);
	json_t **items = calloc(n ?: 1, sizeof(*items));
	json_t *out = json_array();

	if (!items) {
		json_decref(out);
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		items[i] = json_array_get(arr, i);
	if (sort_items)
		qsort(items, n, sizeof(*items), sort_items);
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, canonical(items[i], NULL));
	free(items);
	return out;
}

static json_t *canonical_object(json_t *obj, int top)
{
	size_t n = json_object_size(obj), i = 0;
	const char **keys = calloc(n ?: 1, sizeof(*keys));
	json_t *out = json_object(), *v;
	const char *k;

	if (!keys) {
		json_decref(out);
		return NULL;
	}
	json_object_foreach(obj, k, v)
		keys[i++] = k;
	qsort(keys, n, sizeof(*keys), cmp_keys);
	for (i = 0; i < n; i++) {
		int (*sort)(const void *, const void *) = NULL;

		v = json_object_get(obj, keys[i]);
		/* Only the top-level lists are sorted: other arrays carry their
		 * own order (sorted strings, statements by count). */
		if (top && !strcmp(keys[i], "nodes"))
			sort = cmp_node_ids;
		else if (top && !strcmp(keys[i], "edges"))
			sort = cmp_edges;
		json_object_set_new(out, keys[i], canonical(v, sort));
	}
	free(keys);
	return out;
}

static json_t *canonical(json_t *v, int (*sort_items)(const void *, const void *))
{
	if (json_is_object(v))
		return canonical_object(v, 0);
	if (json_is_array(v))
		return canonical_array(v, sort_items);
	return json_incref(v);
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= n;
	}
	return 0;
}

int atomic_write(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
	char *dir_copy = NULL, *tmp = NULL;
	int fd = -1, created = 0, saved;
	struct stat st;

	if (!strcmp(path, "-")) {
		if (fwrite(data, 1, len, stdout) != len || fflush(stdout)) {
			snprintf(err, errlen, "cannot write to stdout: %s", strerror(errno));
			return -1;
		}
		return 0;
	}
	/* A device or a pipe (/dev/null, a FIFO a reader waits on) is written
	 * to, never replaced: renaming over it would destroy it. */
	if (!stat(path, &st) && !S_ISREG(st.st_mode)) {
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write_all(fd, data, len))
			goto fail;
		if (close(fd)) {
			fd = -1;
			goto fail;
		}
		return 0;
	}
	/* The temporary file lives beside the target so rename() stays on one
	 * filesystem and a reader never sees half a file. */
	dir_copy = strdup(path);
	if (!dir_copy)
		goto fail;
	tmp = xasprintf("%s/.%s.XXXXXX", dirname(dir_copy), strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
	if (!tmp)
		goto fail;
	fd = mkstemp(tmp);
	if (fd < 0)
		goto fail;
	created = 1;
	if (write_all(fd, data, len) || fchmod(fd, 0644) || fsync(fd))
		goto fail;
	if (close(fd)) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path))
		goto fail;
	free(tmp);
	free(dir_copy);
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (created)
		unlink(tmp);
	snprintf(err, errlen, "cannot write %s: %s; choose a writable --output path",
		 path, strerror(saved));
	free(tmp);
	free(dir_copy);
	return -1;
}

char *graph_dumps(struct graph *g)
{
	json_t *out = canonical_object(g->doc, 1);
	char *text, *withnl = NULL;

	if (!out)
		return NULL;
	text = json_dumps(out, JSON_INDENT(2));
	json_decref(out);
	if (text) {
		withnl = xasprintf("%s\n", text);
		free(text);
	}
	return withnl;
}

int graph_write(struct graph *g, const char *path, char *err, size_t errlen)
{
	char *text = graph_dumps(g);
	int ret;

	if (!text) {
		snprintf(err, errlen, "cannot write %s: out of memory", path);
		return -1;
	}
	ret = atomic_write(path, text, strlen(text), err, errlen);
	free(text);
	return ret;
}

/* ---- loading ---------------------------------------------------------- */

struct load_ctx {
	const char *path;
	char *err;
	size_t errlen;
};

static int load_fail(struct load_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Every load error starts with the file name: merge reads several. */
static int load_fail(struct load_ctx *c, const char *fmt, ...)
{
	va_list ap;
	int n;

	n = snprintf(c->err, c->errlen, "%s: ", c->path);
	if (n >= 0 && (size_t)n < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + n, c->errlen - n, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* Which fields each node kind must carry, beyond id, kind and name. */
static const struct {
	const char *kind;
	const char *fields[3];
} node_kinds[] = {
	{ "service", { NULL } },
	{ "external", { "address", NULL } },
	{ "database", { "server", "database", NULL } },
	{ "table", { "database", "schema", "table" } },
};

static int check_node(struct load_ctx *c, struct graph *g, json_t *node, size_t i)
{
	static const char *const common[] = { "id", "kind", "name" };
	const char *id, *kind;
	size_t k;

	if (!json_is_object(node))
		return load_fail(c, "node %zu is not an object", i);
	for (k = 0; k < 3; k++)
		if (!json_is_string(json_object_get(node, common[k])))
			return load_fail(c, "node %zu has no \"%s\" string field", i, common[k]);
	id = json_str(node, "id");
	kind = json_str(node, "kind");
	for (k = 0; k < sizeof(node_kinds) / sizeof(node_kinds[0]); k++)
		if (!strcmp(kind, node_kinds[k].kind))
			break;
	if (k == sizeof(node_kinds) / sizeof(node_kinds[0]))
		return load_fail(c, "node %zu (%s) has unknown kind \"%s\"; expected service, external, database or table",
				 i, id, kind);
	for (size_t f = 0; f < 3 && node_kinds[k].fields[f]; f++)
		if (!json_object_get(node, node_kinds[k].fields[f]))
			return load_fail(c, "node %zu (%s) has no \"%s\" field, which a %s node needs",
					 i, id, node_kinds[k].fields[f], kind);
	if (json_object_get(g->node_idx, id))
		return load_fail(c, "nodes %lld and %zu have the same id \"%s\"; ids must be unique",
				 json_integer_value(json_object_get(g->node_idx, id)), i, id);
	json_object_set_new(g->node_idx, id, json_integer(i));
	return 0;
}

/* A database names its server, a table its database: both must exist. */
static int check_node_refs(struct load_ctx *c, struct graph *g, json_t *node, size_t i)
{
	const char *kind = json_str(node, "kind");
	const char *field = !strcmp(kind, "database") ? "server" :
			    !strcmp(kind, "table") ? "database" : NULL;
	const char *ref;

	if (!field)
		return 0;
	ref = json_str(node, field);
	if (!ref)
		return load_fail(c, "node %zu (%s): \"%s\" is not a string", i, json_str(node, "id"), field);
	if (!graph_node(g, ref))
		return load_fail(c, "node %zu (%s): %s \"%s\" is not a node in the file",
				 i, json_str(node, "id"), field, ref);
	return 0;
}

static int check_edge(struct load_ctx *c, struct graph *g, json_t *edge, size_t i)
{
	static const char *const required[] = { "source", "target", "kind" };
	const char *src, *tgt, *kind;
	char *key;
	int ret = 0;

	if (!json_is_object(edge))
		return load_fail(c, "edge %zu is not an object", i);
	for (size_t k = 0; k < 3; k++)
		if (!json_is_string(json_object_get(edge, required[k])))
			return load_fail(c, "edge %zu has no \"%s\" string field", i, required[k]);
	src = json_str(edge, "source");
	tgt = json_str(edge, "target");
	kind = json_str(edge, "kind");
	if (strcmp(kind, "tcp") && strcmp(kind, "sql"))
		return load_fail(c, "edge %zu (%s -> %s) has unknown kind \"%s\"; expected tcp or sql",
				 i, src, tgt, kind);
	if (!graph_node(g, src))
		return load_fail(c, "edge %zu (%s -> %s, %s): source \"%s\" is not a node in the file",
				 i, src, tgt, kind, src);
	if (!graph_node(g, tgt))
		return load_fail(c, "edge %zu (%s -> %s, %s): target \"%s\" is not a node in the file",
				 i, src, tgt, kind, tgt);
	key = edge_key(src, tgt, kind);
	if (!key)
		return load_fail(c, "out of memory");
	if (json_object_get(g->edge_idx, key))
		ret = load_fail(c, "edge %zu repeats %s -> %s (%s); there is at most one edge per source, target and kind",
				i, src, tgt, kind);
	else
		json_object_set_new(g->edge_idx, key, json_integer(i));
	free(key);
	return ret;
}

static int check_captures(struct load_ctx *c, json_t *doc)
{
	json_t *one = json_object_get(doc, "capture");
	json_t *many = json_object_get(doc, "captures");
	size_t i;
	json_t *v;

	if (one && !json_is_object(one))
		return load_fail(c, "\"capture\" is not an object");
	if (!many)
		return 0;
	if (!json_is_array(many))
		return load_fail(c, "\"captures\" is not an array");
	json_array_foreach(many, i, v)
		if (!json_is_object(v))
			return load_fail(c, "captures[%zu] is not an object", i);
	return 0;
}

static int check_doc(struct load_ctx *c, json_t *doc)
{
	const char *schema;

	if (!json_is_object(doc))
		return load_fail(c, "not a seams graph: the top level is not a JSON object");
	schema = json_str(doc, "schema");
	if (!schema)
		return load_fail(c, "no \"schema\" field; expected \"%s\" (is this a seams graph?)", GRAPH_SCHEMA);
	if (strcmp(schema, GRAPH_SCHEMA))
		return load_fail(c, "schema is \"%s\" but this seams reads \"%s\"; re-capture or use a matching seams",
				 schema, GRAPH_SCHEMA);
	if (!json_is_array(json_object_get(doc, "nodes")))
		return load_fail(c, "no \"nodes\" array");
	if (!json_is_array(json_object_get(doc, "edges")))
		return load_fail(c, "no \"edges\" array");
	return check_captures(c, doc);
}

static json_t *load_json(struct load_ctx *c)
{
	json_error_t jerr;
	json_t *doc;
	FILE *f;

	f = strcmp(c->path, "-") ? fopen(c->path, "r") : stdin;
	if (!f) {
		load_fail(c, "cannot open: %s", strerror(errno));
		return NULL;
	}
	doc = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	if (f != stdin)
		fclose(f);
	if (!doc) {
		if (jerr.position == 0 && jerr.line <= 1)
			load_fail(c, "empty or unreadable file (%s); expected a seams graph", jerr.text);
		else
			load_fail(c, "invalid JSON at line %d column %d: %s (truncated or hand-edited?)",
				  jerr.line, jerr.column, jerr.text);
	}
	return doc;
}

struct graph *graph_load(const char *path, char *err, size_t errlen)
{
	struct load_ctx c = { .path = path, .err = err, .errlen = errlen };
	struct graph *g;
	json_t *doc, *v;
	size_t i;

	doc = load_json(&c);
	if (!doc)
		return NULL;
	if (check_doc(&c, doc)) {
		json_decref(doc);
		return NULL;
	}
	g = graph_wrap(doc);
	if (!g) {
		json_decref(doc);
		load_fail(&c, "out of memory");
		return NULL;
	}
	json_array_foreach(g->nodes, i, v)
		if (check_node(&c, g, v, i))
			goto fail;
	json_array_foreach(g->nodes, i, v)
		if (check_node_refs(&c, g, v, i))
			goto fail;
	json_array_foreach(g->edges, i, v)
		if (check_edge(&c, g, v, i))
			goto fail;
	return g;
fail:
	graph_free(g);
	return NULL;
}

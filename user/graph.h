/* The seams graph (docs/schema.md): a jansson document plus id indexes, built
 * by capture, read by report/export/merge. */
#ifndef SEAMS_GRAPH_H
#define SEAMS_GRAPH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define GRAPH_SCHEMA "seams.graph/v1"
#define GRAPH_MAX_STATEMENTS 10	/* "statements" keeps the most frequent ones */

struct graph;

/* An empty graph with no capture section. */
struct graph *graph_new(void);
void graph_free(struct graph *g);

/* The document itself: {"schema", "capture"|"captures", "nodes", "edges"}. */
json_t *graph_doc(struct graph *g);

/* The single-host capture section, created on first use. */
json_t *graph_capture(struct graph *g);

/* Find-or-create.  Each returns the node object (borrowed reference). */
json_t *graph_service(struct graph *g, const char *name, const char *cgroup);
json_t *graph_external(struct graph *g, const char *address, uint16_t port);
json_t *graph_database(struct graph *g, const char *server_id, const char *dbname);
json_t *graph_table(struct graph *g, const char *database_id, const char *qualified);
json_t *graph_node(struct graph *g, const char *id); /* lookup only, NULL if absent */

/* Add a string to a node's sorted, de-duplicated string array field
 * (e.g. "processes", "listens", "hosts"). */
void graph_node_add_string(json_t *node, const char *field, const char *value);

/* Find-or-create the edge (source, target, kind). */
json_t *graph_edge(struct graph *g, const char *source, const char *target, const char *kind);
json_t *graph_find_edge(struct graph *g, const char *source, const char *target, const char *kind);

/* obj[key] += n, creating the integer when absent. */
void json_count_add(json_t *obj, const char *key, json_int_t n);

/* Widen edge/obj "first_seen"/"last_seen" to include the time (ns since the epoch). */
void graph_seen(json_t *obj, uint64_t realtime_ns);

/* RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void graph_format_time(uint64_t realtime_ns, char *buf, size_t len);

/* {"p50","p95","p99","count"} from n samples in milliseconds (sorts them). */
json_t *graph_percentiles(double *samples_ms, size_t n);

/* Several aggregates can draw one edge: their histograms add up in m (edge
 * -> histogram) until finish sets each edge's field and empties m. */
struct u64map;
struct hist;
void graph_edge_hist_merge(struct u64map *m, json_t *edge, const struct hist *h);
void graph_edge_hists_finish(struct u64map *m, const char *field);

/* Write atomically: a temporary file in the same directory, fsync, rename.
 * path "-" writes to stdout.  Returns 0, or -1 with a one-line reason in err. */
int graph_write(struct graph *g, const char *path, char *err, size_t errlen);

/* Read and validate a graph file.  NULL with a one-line reason naming the file
 * and the problem (wrong schema, truncated, missing field, dangling edge). */
struct graph *graph_load(const char *path, char *err, size_t errlen);

/* Additions for report, export and merge. */

/* The node's position for graph_node_at(), or -1 if absent. */
long graph_node_index(struct graph *g, const char *id);

/* obj[key] as a string, NULL when absent or not a string. */
const char *json_str(const json_t *obj, const char *key);

/* "ADDR:PORT", IPv6 as "[ADDR]:PORT": the form of "listens" and ext: ids. */
void graph_format_endpoint(const char *address, unsigned port, char *buf, size_t len);

/* graph_seen() for times already formatted (NULL leaves that end alone). */
void graph_seen_str(json_t *obj, const char *first, const char *last);

/* The document as graph_write() prints it (keys in a fixed order, nodes by
 * id, edges by source/target/kind), newline-terminated; free() it. */
char *graph_dumps(struct graph *g);

/* graph_write()'s atomic write for any bytes; path "-" is stdout. */
int atomic_write(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Iterate. */
size_t graph_node_count(struct graph *g);
json_t *graph_node_at(struct graph *g, size_t i);
size_t graph_edge_count(struct graph *g);
json_t *graph_edge_at(struct graph *g, size_t i);

#endif

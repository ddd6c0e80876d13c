/* Series with the same labels add up: one client reaches one server by
 * several addresses, and several aggregates make one label set.  Labels
 * carry names only, never a pid, a port of a client or a statement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tlsprobe.h"

#ifndef SEAMS_VERSION
#define SEAMS_VERSION "dev"
#endif

#define MAX_LABELS 6

struct series {
	struct series *next;
	char *vals;      /* label values, each NUL-terminated, one after another */
	uint64_t total, failed;
	struct hist h;
};

struct family {
	const char *const *keys; /* label names, NULL-terminated */
	struct u64map index;     /* hash of values -> series chain */
	bool oom;
};

static struct series *series_get(struct family *f, const char *const *vals)
{
	size_t n = 0, len = 0;
	uint64_t h = FNV_SEED;
	struct series *s;

	for (; f->keys[n]; n++) {
		size_t k = strlen(vals[n]) + 1;

		h = fnv1a(h, vals[n], k);
		len += k;
	}
	for (s = u64map_get(&f->index, h); s; s = s->next) {
		const char *v = s->vals;
		size_t i = 0;

		for (; i < n && !strcmp(v, vals[i]); i++)
			v += strlen(v) + 1;
		if (i == n)
			return s;
	}
	s = calloc(1, sizeof(*s));
	if (s)
		s->vals = malloc(len);
	if (!s || !s->vals) {
		if (s)
			free(s);
		f->oom = true;
		return NULL;
	}
	len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = strlen(vals[i]) + 1;

		memcpy(s->vals + len, vals[i], k);
		len += k;
	}
	s->next = u64map_get(&f->index, h);
	if (u64map_put(&f->index, h, s)) {
		free(s->vals);
		free(s);
		f->oom = true;
		return NULL;
	}
	return s;
}

/* labels for prom_*: key/value pairs of series s, plus an optional extra. */
static void labels_of(const struct family *f, const struct series *s, const char **out)
{
	const char *v = s->vals;
	size_t i = 0;

	for (; f->keys[i]; i++) {
		out[2 * i] = f->keys[i];
		out[2 * i + 1] = v;
		v += strlen(v) + 1;
	}
	out[2 * i] = NULL;
}

static void family_free(struct family *f)
{
	struct series *s, *next;

	u64map_for_each(&f->index, i, s)
		for (; s; s = next) {
			next = s->next;
			free(s->vals);
			free(s);
		}
	u64map_free(&f->index);
}

static void hist_out(struct strbuf *b, const char *name, const char *const *labels, const struct hist *h)
{
	prom_histogram(b, name, labels, hist_bounds_s, h->le, HIST_BOUNDS, (double)h->sum_ns / 1e9);
}

static const char *const graph_keys[] = { "client", "server", "connection_type", NULL };
static const char *const db_keys[] = { "db_system_name", "db_namespace", "db_collection_name",
				       "db_operation_name", "error_type", "client", NULL };

struct gather {
	const struct collector *c;
	struct family graph, db;
};

static void on_tcp(void *ctx, const struct tcpagg *a)
{
	struct gather *g = ctx;
	const struct tcpstats *st = &a->st[STAT_TOTAL];
	const char *vals[3];
	struct series *s;
	char client[64], server[80];

	if (a->key.client)
		vals[0] = a->key.client->name;
	else {
		addr_format(a->key.addr, -1, client, sizeof(client));
		vals[0] = client;
	}
	if (a->key.server)
		vals[1] = a->key.server->name;
	else {
		addr_format(a->key.addr, a->key.port, server, sizeof(server));
		vals[1] = server;
	}
	vals[2] = "";
	s = series_get(&g->graph, vals);
	if (!s)
		return;
	/* A request is an exchange (a send after a receive) on a connection
	 * that closed; a connect that failed is a failed request. */
	s->total += st->requests + st->failed;
	s->failed += st->failed;
	hist_merge(&s->h, &st->duration);
}

static void on_sql(void *ctx, const struct sqlagg *a)
{
	struct gather *g = ctx;
	const struct sqlstats *st = &a->st[STAT_TOTAL];
	const char *vals[6];
	struct series *s;
	char server[512], errclass[3] = "";
	const char *db;

	if (!a->kind || !st->count)
		return;
	db = pgtrack_db_name(&g->c->pg, a);
	snprintf(server, sizeof(server), "%s%s%s", db, a->table ? "." : "", a->table ? a->table : "");
	vals[0] = a->client->name;
	vals[1] = server;
	vals[2] = "database";
	s = series_get(&g->graph, vals);
	if (s) {
		s->total += st->count;
		s->failed += a->sqlstate[0] ? st->count : 0;
		hist_merge(&s->h, &st->latency);
	}
	/* OpenTelemetry's error.type: the SQLSTATE class says what kind of
	 * failure ("23": integrity constraint) without one series per code. */
	memcpy(errclass, a->sqlstate, a->sqlstate[0] ? 2 : 0);
	vals[0] = "postgresql";
	vals[1] = db;
	vals[2] = a->table ? a->table : "";
	vals[3] = a->kind;
	vals[4] = errclass;
	vals[5] = a->client->name;
	s = series_get(&g->db, vals);
	if (s) {
		s->total += st->count;
		hist_merge(&s->h, &st->latency);
	}
}

static long rss_bytes(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb < 0 ? -1 : kb * 1024;
}

static void self_metrics(struct strbuf *b, const struct collector *c)
{
	const char *build[] = { "version", SEAMS_VERSION, NULL };
	const char *reason[] = { "reason", NULL, NULL };
	struct tlsprobe_stats tls;
	long rss = rss_bytes();

	prom_family(b, "seams_build_info", "gauge", "seams' version; always 1");
	prom_sample(b, "seams_build_info", build, 1);
	prom_family(b, "seams_events_total", "counter", "Kernel events read");
	prom_sample(b, "seams_events_total", NULL, (double)c->events);
	prom_family(b, "seams_events_lost_total", "counter",
		    "Kernel events dropped because a ring was full; the graph undercounts");
	prom_sample(b, "seams_events_lost_total", NULL,
		    (double)(c->cnt[CNT_LOST_EVENTS] + c->cnt[CNT_PG_EVENTS_LOST]));
	prom_family(b, "seams_pg_bytes_lost_total", "counter",
		    "PostgreSQL bytes that could not be followed; statements in them are missing");
	prom_sample(b, "seams_pg_bytes_lost_total", NULL, (double)c->cnt[CNT_PG_LOST]);
	prom_family(b, "seams_untracked_connections_total", "counter",
		    "Connections the kernel side had no room to track");
	prom_sample(b, "seams_untracked_connections_total", NULL,
		    (double)(c->cnt[CNT_SOCK_FULL] + c->cnt[CNT_PG_FULL]));
	prom_family(b, "seams_sockets_without_slot_total", "counter",
		    "Traced TCP sockets whose kernel slot was in use: kept in socket storage, at a helper call more per call");
	prom_sample(b, "seams_sockets_without_slot_total", NULL, (double)c->cnt[CNT_NO_SLOT]);
	prom_family(b, "seams_series_dropped_total", "counter",
		    "Series folded into ~other or not kept, by the limit that was reached");
	for (int i = 0; i < DROP_NR; i++) {
		reason[1] = ct_drop_names[i];
		prom_sample(b, "seams_series_dropped_total", reason, (double)c->ct.dropped[i]);
	}
	prom_family(b, "seams_drain_errors_total", "counter", "Failed reads of the event rings");
	prom_sample(b, "seams_drain_errors_total", NULL, (double)c->drain_errors);
	prom_family(b, "seams_evicted_total", "counter", "Aggregates and services forgotten after idling");
	prom_sample(b, "seams_evicted_total", NULL, (double)c->ct.evicted);
	prom_family(b, "seams_open_connections", "gauge", "Connections open and tracked now");
	prom_sample(b, "seams_open_connections", NULL, (double)conntrack_open_count(&c->ct));
	prom_family(b, "seams_pg_statements_total", "counter", "PostgreSQL statements decoded");
	prom_sample(b, "seams_pg_statements_total", NULL, (double)c->pg.statements);
	prom_family(b, "seams_pg_tls_connections_total", "counter",
		    "PostgreSQL TLS connections decoded from OpenSSL's plaintext");
	prom_sample(b, "seams_pg_tls_connections_total", NULL, (double)c->pg.tls_connections);
	prom_family(b, "seams_pg_encrypted_connections_total", "counter",
		    "PostgreSQL connections that negotiated TLS or GSS and could not be decoded");
	prom_sample(b, "seams_pg_encrypted_connections_total", NULL, (double)c->pg.encrypted_connections);
	loader_tls_stats(c->loader, &tls);
	prom_family(b, "seams_tls_probed_processes", "gauge", "Processes whose OpenSSL is probed now");
	prom_sample(b, "seams_tls_probed_processes", NULL, (double)tls.procs);
	prom_family(b, "seams_tls_released_processes_total", "counter",
		    "Probed processes let go: their PostgreSQL connections were plain, or they made none in 30 s");
	prom_sample(b, "seams_tls_released_processes_total", NULL, (double)tls.released);
	if (rss >= 0) {
		prom_family(b, "seams_memory_bytes", "gauge", "Resident memory of the agent");
		prom_sample(b, "seams_memory_bytes", NULL, (double)rss);
	}
}

enum out { OUT_TOTAL, OUT_FAILED, OUT_HIST };

/* One family: its HELP and TYPE lines, then every series of f. */
static void write_family(struct strbuf *b, const struct family *f, const char *name, enum out what,
			 const char *help)
{
	const char *labels[2 * MAX_LABELS + 1];
	struct series *s;

	prom_family(b, name, what == OUT_HIST ? "histogram" : "counter", help);
	u64map_for_each(&f->index, i, s)
		for (; s; s = s->next) {
			labels_of(f, s, labels);
			if (what == OUT_HIST)
				hist_out(b, name, labels, &s->h);
			else
				prom_sample(b, name, labels, (double)(what == OUT_TOTAL ? s->total : s->failed));
		}
}

int metrics_render(struct strbuf *b, const struct collector *c)
{
	struct gather g = { .c = c, .graph = { .keys = graph_keys }, .db = { .keys = db_keys } };
	int ret;

	conntrack_for_each_edge(&c->ct, STAT_TOTAL, on_tcp, &g);
	pgtrack_for_each(&c->pg, on_sql, &g);
	sb_reset(b);

	write_family(b, &g.graph, "traces_service_graph_request_total", OUT_TOTAL,
		     "Requests between two services (TCP: exchanges on closed connections, and failed connects), or a service and a database table (statements)");
	write_family(b, &g.graph, "traces_service_graph_request_failed_total", OUT_FAILED,
		     "Failed requests (TCP: connects that failed; SQL: statements that returned an error)");
	write_family(b, &g.graph, "traces_service_graph_request_server_seconds", OUT_HIST,
		     "Request duration (TCP: connection lifetime; SQL: statement latency)");
	write_family(b, &g.graph, "traces_service_graph_request_client_seconds", OUT_HIST,
		     "Request duration as the client sees it (the same measurement as the server's)");
	write_family(b, &g.db, "db_client_operation_duration_seconds", OUT_HIST,
		     "Duration of PostgreSQL operations, per table and operation (OpenTelemetry db.client.operation.duration)");
	self_metrics(b, c);
	ret = g.graph.oom || g.db.oom || b->oom ? -1 : 0;
	family_free(&g.graph);
	family_free(&g.db);
	return ret;
}

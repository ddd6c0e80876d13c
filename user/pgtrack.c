/* PostgreSQL tracking: each connection's framed bytes go through its own
 * decoder; each statement is turned into tables (cached by text) and counted
 * on one aggregate per (client service, server, database, table).  Only the
 * normalized, literal-free statement text is ever kept. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cgname.h"
#include "pgtrack.h"
#include "pgwire.h"
#include "sqltables.h"

#define LATENCY_SAMPLES 8192 /* reservoir per aggregate */
#define SQL_CACHE_SIZE  8192

struct pgconn {
	struct pgtrack *pt;
	struct pg_conn *dec;
	struct service *client;
	char *server;   /* "ADDR:PORT" or "unix:PATH" */
	uint8_t addr[16], laddr[16];
	uint16_t port, lport;
	bool synced;    /* seen from its startup message */
	bool terminated;/* sent Terminate: let go after this event */
	char *dbname;
	struct u64map aggs; /* hash of table name -> its aggregate, a shortcut */
};

struct sqlagg {
	struct sqlagg *next;  /* hash chain */
	char *key;
	struct service *client;
	char *server;
	uint8_t addr[16];
	uint16_t port;
	char *dbname;
	char *table;          /* NULL: statements that touch no table */
	json_t *ops, *access, *errors, *stmts;
	double *lat;
	size_t nlat;
	uint64_t seen_lat, encrypted, first_ns, last_ns;
};

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n, sz);

	if (!p) {
		perror("seams: out of memory");
		exit(1);
	}
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p) {
		perror("seams: out of memory");
		exit(1);
	}
	return p;
}

int pgtrack_init(struct pgtrack *pt, struct conntrack *ct)
{
	memset(pt, 0, sizeof(*pt));
	pt->ct = ct;
	pt->cache = sql_cache_new(SQL_CACHE_SIZE);
	return pt->cache ? 0 : -1;
}

static void conn_free(struct pgtrack *pt, struct pgconn *pc)
{
	if (pc->dec)
		pt->undecodable_bytes += pg_conn_stats(pc->dec)->undecodable_bytes;
	pg_conn_free(pc->dec);
	u64map_free(&pc->aggs);
	free(pc->server);
	free(pc->dbname);
	free(pc);
}

void pgtrack_free(struct pgtrack *pt)
{
	struct pgconn *pc;
	struct sqlagg *a, *next;

	u64map_for_each(&pt->conns, i, pc)
		conn_free(pt, pc);
	u64map_free(&pt->conns);
	u64map_for_each(&pt->aggs, i, a) {
		for (; a; a = next) {
			next = a->next;
			json_decref(a->ops);
			json_decref(a->access);
			json_decref(a->errors);
			json_decref(a->stmts);
			free(a->lat);
			free(a->key);
			free(a->server);
			free(a->dbname);
			free(a->table);
			free(a);
		}
	}
	u64map_free(&pt->aggs);
	sql_cache_free(pt->cache);
}

uint64_t pgtrack_undecodable(const struct pgtrack *pt)
{
	uint64_t n = pt->undecodable_bytes;
	struct pgconn *pc;

	u64map_for_each(&pt->conns, i, pc)
		n += pg_conn_stats(pc->dec)->undecodable_bytes;
	return n;
}

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ULL;
	return h;
}

/* A connection opened before the capture never shows its database on the
 * wire.  When the server runs here, its backend's process title does:
 * "postgres: [CLUSTER: ]USER DATABASE HOST(PORT) STATE". */
static char *backend_database(struct pgconn *pc)
{
	struct conn *srv = conntrack_find(pc->pt->ct, pc->addr, pc->port, pc->laddr, pc->lport);
	char path[64], title[512], user[128], db[128];
	const char *p = title;
	size_t n;
	FILE *f;

	if (!srv || !srv->tgid)
		return NULL;
	snprintf(path, sizeof(path), "/proc/%u/cmdline", srv->tgid);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	n = fread(title, 1, sizeof(title) - 1, f);
	fclose(f);
	title[n] = '\0';
	if (strncmp(p, "postgres: ", 10))
		return NULL;
	p += 10;
	if (sscanf(p, "%127s %127s", user, db) != 2)
		return NULL;
	if (user[strlen(user) - 1] == ':' && sscanf(p, "%*s %127s %127s", user, db) != 2)
		return NULL;
	return xstrdup(db);
}

/* The aggregate for this connection's client, server and database, and
 * table, shared by every connection with the same four. */
static struct sqlagg *agg_find(struct pgconn *pc, const char *table)
{
	struct pgtrack *pt = pc->pt;
	const char *db = pc->dbname ? pc->dbname : "unknown";
	char *key;
	uint64_t h;
	struct sqlagg *head, *a;

	if (asprintf(&key, "%s\x1f%s\x1f%s\x1f%s", pc->client->name, pc->server, db,
		     table ? table : "") < 0) {
		perror("seams: out of memory");
		exit(1);
	}
	h = fnv1a(key);
	head = u64map_get(&pt->aggs, h);
	for (a = head; a; a = a->next)
		if (!strcmp(a->key, key)) {
			free(key);
			return a;
		}
	a = xcalloc(1, sizeof(*a));
	a->key = key;
	a->client = pc->client;
	a->server = xstrdup(pc->server);
	memcpy(a->addr, pc->addr, 16);
	a->port = pc->port;
	a->dbname = xstrdup(db);
	a->table = table ? xstrdup(table) : NULL;
	a->ops = json_object();
	a->access = json_object();
	a->errors = json_object();
	a->stmts = json_object();
	a->next = head;
	if (u64map_put(&pt->aggs, h, a)) {
		perror("seams: out of memory");
		exit(1);
	}
	return a;
}

/* The hot path: one lookup in the connection's own small map, keyed by the
 * table name, before the shared one. */
static struct sqlagg *agg_get(struct pgconn *pc, const char *table)
{
	uint64_t h = fnv1a(table ? table : "");
	struct sqlagg *a = u64map_get(&pc->aggs, h);

	if (a && (a->table ? table && !strcmp(a->table, table) : !table))
		return a;
	if (!pc->dbname && !pc->synced && strncmp(pc->server, "unix:", 5))
		pc->dbname = backend_database(pc);
	a = agg_find(pc, table);
	if (u64map_put(&pc->aggs, h, a)) {
		perror("seams: out of memory");
		exit(1);
	}
	return a;
}

static void agg_record(struct sqlagg *a, const char *kind, int access, const char *normalized,
		       const struct pg_stmt *st)
{
	double ms = st->end_ns > st->start_ns ? (double)(st->end_ns - st->start_ns) / 1e6 : 0;

	json_count_add(a->ops, kind, 1);
	if (access & TABLE_READ)
		json_count_add(a->access, "read", 1);
	if (access & TABLE_WRITE)
		json_count_add(a->access, "write", 1);
	if (access & TABLE_DDL)
		json_count_add(a->access, "ddl", 1);
	if (st->sqlstate)
		json_count_add(a->errors, st->sqlstate, 1);
	if (normalized)
		json_count_add(a->stmts, normalized, 1);
	/* Reservoir sampling keeps percentiles honest over long captures. */
	if (!a->lat)
		a->lat = xcalloc(LATENCY_SAMPLES, sizeof(*a->lat));
	if (a->nlat < LATENCY_SAMPLES) {
		a->lat[a->nlat++] = ms;
	} else {
		uint64_t j = (uint64_t)random() % (a->seen_lat + 1);

		if (j < LATENCY_SAMPLES)
			a->lat[j] = ms;
	}
	a->seen_lat++;
	if (!a->first_ns || st->start_ns < a->first_ns)
		a->first_ns = st->start_ns;
	if (st->end_ns > a->last_ns)
		a->last_ns = st->end_ns;
}

static void on_startup(void *ctx, const char *user, const char *database, const char *app)
{
	struct pgconn *pc = ctx;

	free(pc->dbname);
	u64map_free(&pc->aggs);
	/* libpq's default database is the user's name. */
	pc->dbname = database && *database ? xstrdup(database) : user && *user ? xstrdup(user) : NULL;
}

static void on_encrypted(void *ctx)
{
	struct pgconn *pc = ctx;

	pc->pt->encrypted_connections++;
	agg_get(pc, NULL)->encrypted++;
}

static void on_statement(void *ctx, const struct pg_stmt *st)
{
	struct pgconn *pc = ctx;
	struct pgtrack *pt = pc->pt;
	const struct sql_info *info;

	pt->statements++;
	if (!st->sql) {
		pt->unknown_statements++;
		agg_record(agg_get(pc, NULL), "UNKNOWN", 0, NULL, st);
		return;
	}
	info = sql_cache_lookup(pt->cache, st->sql);
	if (!info->ntables)
		agg_record(agg_get(pc, NULL), info->kind, 0, info->normalized, st);
	for (size_t i = 0; i < info->ntables; i++)
		agg_record(agg_get(pc, info->tables[i].name), info->kind, info->tables[i].access,
			   info->normalized, st);
}

static void on_terminate(void *ctx)
{
	((struct pgconn *)ctx)->terminated = true;
}

static const struct pg_callbacks callbacks = {
	.startup = on_startup,
	.encrypted = on_encrypted,
	.statement = on_statement,
	.terminate = on_terminate,
};

void pgtrack_open(struct pgtrack *pt, const struct pg_open_event *e, struct service *client)
{
	struct pgconn *pc = xcalloc(1, sizeof(*pc)), *old;
	char buf[PG_PATH_MAX + 8];

	pc->pt = pt;
	pc->client = client;
	if (e->family == AF_UNIX) {
		snprintf(buf, sizeof(buf), "unix:%.*s", PG_PATH_MAX, e->path);
	} else {
		memcpy(pc->addr, e->raddr, 16);
		memcpy(pc->laddr, e->laddr, 16);
		pc->port = e->rport;
		pc->lport = e->lport;
		addr_format(e->raddr, e->rport, buf, sizeof(buf));
	}
	pc->server = xstrdup(buf);
	pc->synced = e->synced;
	pc->dec = pg_conn_new(&callbacks, pc, e->synced);
	if (!pc->dec) {
		perror("seams: out of memory");
		exit(1);
	}
	/* The kernel reuses a socket's address only after its close. */
	old = u64map_get(&pt->conns, e->sock);
	if (old)
		conn_free(pt, old);
	if (u64map_put(&pt->conns, e->sock, pc)) {
		perror("seams: out of memory");
		exit(1);
	}
	pt->connections++;
}

/* One chunk: header e (copied out, aligned), then its data and segments. */
static void chunk(struct pgtrack *pt, const struct pg_data_event *e, const uint8_t *data)
{
	struct pgconn *pc = u64map_get(&pt->conns, e->sock);
	enum pg_dir dir = e->dir == PG_DIR_FRONTEND ? PG_FRONTEND : PG_BACKEND;
	size_t off = 0;

	if (!pc || !e->nsegs)
		return;
	for (uint32_t i = 0; i < e->nsegs; i++) {
		struct pg_seg s;

		memcpy(&s, data + e->len + i * sizeof(s), sizeof(s));
		if (s.len > e->len - off)
			return;
		if (s.len)
			pg_conn_feed(pc->dec, dir, data + off, s.len, e->ts_ns);
		off += s.len;
		if (s.skipped)
			pg_conn_elide(pc->dec, dir, s.skipped, e->ts_ns);
		if (s.lost)
			pg_conn_skip(pc->dec, dir, s.lost, e->ts_ns);
	}
	if (pc->terminated)
		pgtrack_close(pt, e->sock);
}

void pgtrack_record(struct pgtrack *pt, const void *rec, size_t size)
{
	struct pg_data_event e;

	if (size < sizeof(e))
		return;
	memcpy(&e, rec, sizeof(e));
	if (e.type != EV_PG_DATA || e.len > PG_DATA_MAX || e.nsegs > PG_SEGS_MAX ||
	    sizeof(e) + (size_t)e.len + (size_t)e.nsegs * sizeof(struct pg_seg) > size)
		return;
	chunk(pt, &e, (const uint8_t *)rec + sizeof(e));
}

void pgtrack_close(struct pgtrack *pt, uint64_t sock)
{
	struct pgconn *pc = u64map_del(&pt->conns, sock);

	if (pc)
		conn_free(pt, pc);
}

/* The node serving an aggregate's connections. */
static json_t *server_node(struct graph *g, struct conntrack *ct, const struct sqlagg *a)
{
	char cgroup[4096], comm[64], name[256];
	struct service *s;

	if (strncmp(a->server, "unix:", 5)) {
		char addr[64];

		s = conntrack_server(ct, a->addr, a->port);
		if (s)
			return conntrack_node(g, s);
		addr_format(a->addr, -1, addr, sizeof(addr));
		return graph_external(g, addr, a->port);
	}
	if (cg_unix_listener(a->server + 5, cgroup, sizeof(cgroup), comm, sizeof(comm)))
		return graph_external(g, a->server, 0);
	cg_service_name(cgroup, comm, name, sizeof(name));
	return conntrack_node(g, conntrack_service(ct, name, cgroup, comm));
}

/* The most frequent normalized statements, most frequent first. */
static json_t *top_statements(json_t *stmts)
{
	json_t *out = json_array();

	for (size_t k = 0; k < GRAPH_MAX_STATEMENTS; k++) {
		const char *q, *best = NULL;
		json_int_t best_n = 0;
		json_t *v;

		json_object_foreach(stmts, q, v) {
			json_int_t n = json_integer_value(v);

			if (n > best_n || (n == best_n && best && strcmp(q, best) < 0)) {
				best = q;
				best_n = n;
			}
		}
		if (!best)
			break;
		json_array_append_new(out, json_pack("{s:s, s:I}", "query", best, "count", best_n));
		json_object_del(stmts, best);
	}
	return out;
}

void pgtrack_to_graph(struct pgtrack *pt, struct graph *g, struct conntrack *ct, int64_t off)
{
	struct sqlagg *a;

	u64map_for_each(&pt->aggs, i, a) {
		for (; a; a = a->next) {
			const char *client = json_str(conntrack_node(g, a->client), "id");
			const char *server = json_str(server_node(g, ct, a), "id");
			json_t *db = graph_database(g, server, a->dbname);
			json_t *target = a->table ? graph_table(g, json_str(db, "id"), a->table) : db;
			json_t *e = graph_edge(g, client, json_str(target, "id"), "sql");

			json_object_set(e, "operations", a->ops);
			if (json_object_size(a->access))
				json_object_set(e, "access", a->access);
			if (json_object_size(a->errors))
				json_object_set(e, "errors", a->errors);
			if (a->nlat) {
				json_t *lat = graph_percentiles(a->lat, a->nlat);

				/* The reservoir holds a sample; count them all. */
				json_object_set_new(lat, "count", json_integer(a->seen_lat));
				json_object_set_new(e, "latency_ms", lat);
			}
			if (json_object_size(a->stmts))
				json_object_set_new(e, "statements", top_statements(a->stmts));
			if (a->encrypted)
				json_object_set_new(e, "encrypted_connections", json_integer(a->encrypted));
			if (a->first_ns) {
				graph_seen(e, a->first_ns + off);
				graph_seen(e, a->last_ns + off);
			}
		}
	}
}

/* PostgreSQL tracking: each connection's framed bytes go through its own
 * decoder; each statement is turned into tables (cached by text) and counted
 * on its aggregate.  Only the normalized, literal-free statement text is
 * ever kept. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cgname.h"
#include "pgtrack.h"
#include "pgwire.h"
#include "sqltables.h"

#define SQL_CACHE_SIZE  8192
#define DB_RETRY_NS     1000000000ULL /* between looks at a backend's title */

struct pgconn {
	struct pgtrack *pt;
	struct pg_conn *dec;
	struct service *client;
	struct service *unix_server;
	char *server;   /* "ADDR:PORT" or "unix:PATH" */
	uint8_t addr[16], laddr[16];
	uint16_t port, lport;
	bool synced;    /* seen from its startup message */
	bool terminated;/* sent Terminate: let go after this event */
	bool tls;       /* the plaintext stream of a TLS connection */
	bool counted_encrypted; /* counted as not decodable */
	char *dbname;
	uint64_t last_ns, db_tried_ns;
	struct u64map aggs; /* a shortcut to its aggregates; emptied by sweeps */
};

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

static void agg_free(struct sqlagg *a)
{
	for (size_t i = 0; i < a->nstmts; i++)
		free(a->stmts[i].text);
	free(a->key);
	free(a->server);
	free(a->dbname);
	free(a->table);
	free(a->kind);
	free(a);
}

void pgtrack_free(struct pgtrack *pt)
{
	struct pgconn *pc;
	struct sqlagg *a, *next;

	u64map_for_each(&pt->conns, i, pc)
		conn_free(pt, pc);
	u64map_free(&pt->conns);
	u64map_for_each(&pt->aggs, i, a)
		for (; a; a = next) {
			next = a->next;
			agg_free(a);
		}
	u64map_free(&pt->aggs);
	u64map_free(&pt->tables);
	u64map_free(&pt->dbtables);
	u64map_free(&pt->unix_servers);
	u64map_free(&pt->known_db);
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

static uint64_t hash_str(uint64_t h, const char *s)
{
	/* The separator keeps ("ab", "c") apart from ("a", "bc"). */
	return fnv1a(h, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* A connection opened before tracing never shows its database on the
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
	return strdup(db);
}

/* Past PG_MAX_TABLES distinct tables in one database, further ones are
 * counted as "~other". */
static const char *table_name(struct pgtrack *pt, const char *server, const char *db, const char *table,
			      bool rebuilding)
{
	uint64_t hdb = hash_str(hash_str(FNV_SEED, server), db);
	uint64_t ht = hash_str(hdb, table);
	uintptr_t n;

	if (!table || u64map_get(&pt->tables, ht))
		return table;
	n = (uintptr_t)u64map_get(&pt->dbtables, hdb);
	if (n >= PG_MAX_TABLES) {
		if (!rebuilding)
			pt->ct->dropped[DROP_TABLES]++;
		return "~other";
	}
	if (u64map_put(&pt->tables, ht, (void *)1) || u64map_put(&pt->dbtables, hdb, (void *)(n + 1)))
		return "~other";
	return table;
}

static char ambiguous;

static uint64_t client_server_hash(const struct service *client, const char *server)
{
	return hash_str(fnv1a(FNV_SEED, &client, sizeof(client)), server);
}

static void note_db(struct pgtrack *pt, const struct sqlagg *a)
{
	uint64_t h = client_server_hash(a->client, a->server);
	const char *db = u64map_get(&pt->known_db, h);

	if (!strcmp(a->dbname, "unknown") || db == &ambiguous || (db && !strcmp(db, a->dbname)))
		return;
	u64map_put(&pt->known_db, h, db ? &ambiguous : a->dbname);
}

const char *pgtrack_db_name(const struct pgtrack *pt, const struct sqlagg *a)
{
	const char *db;

	if (strcmp(a->dbname, "unknown"))
		return a->dbname;
	db = u64map_get(&pt->known_db, client_server_hash(a->client, a->server));
	return db && db != &ambiguous ? db : a->dbname;
}

static struct sqlagg *agg_new(struct pgconn *pc, char *key, const char *db, const char *table,
			      const char *kind, const char *sqlstate)
{
	struct sqlagg *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->key = key;
	a->client = pc->client;
	a->unix_server = pc->unix_server;
	a->server = strdup(pc->server);
	memcpy(a->addr, pc->addr, 16);
	a->port = pc->port;
	a->dbname = strdup(db);
	a->table = table ? strdup(table) : NULL;
	a->kind = kind ? strdup(kind) : NULL;
	snprintf(a->sqlstate, sizeof(a->sqlstate), "%s", sqlstate ? sqlstate : "");
	if (!a->server || !a->dbname || (table && !a->table) || (kind && !a->kind)) {
		a->key = NULL;
		agg_free(a);
		return NULL;
	}
	return a;
}

/* The aggregate for this connection's client, server and database and the
 * given table, operation and outcome, shared by every connection with the
 * same six.  NULL only when out of memory (the statement is then lost, and
 * counted as a dropped series). */
static struct sqlagg *agg_find(struct pgconn *pc, const char *table, const char *kind, const char *sqlstate)
{
	struct pgtrack *pt = pc->pt;
	const char *db = pc->dbname ? pc->dbname : "unknown";
	struct sqlagg *head, *a;
	char *key;
	uint64_t h;

	table = table_name(pt, pc->server, db, table, false);
	if (pt->naggs >= PG_MAX_AGGS) {
		pt->ct->dropped[DROP_SQL_SERIES]++;
		table = "~other";
		kind = "~other";
		sqlstate = NULL;
	}
	if (asprintf(&key, "%s\x1f%s\x1f%s\x1f%s\x1f%s\x1f%s", pc->client->name, pc->server, db,
		     table ? table : "", kind ? kind : "", sqlstate ? sqlstate : "") < 0)
		return NULL;
	h = hash_str(FNV_SEED, key);
	head = u64map_get(&pt->aggs, h);
	for (a = head; a; a = a->next)
		if (!strcmp(a->key, key)) {
			free(key);
			return a;
		}
	a = agg_new(pc, key, db, table, kind, sqlstate);
	if (!a) {
		free(key);
		pt->ct->dropped[DROP_SQL_SERIES]++;
		return NULL;
	}
	a->next = head;
	if (u64map_put(&pt->aggs, h, a)) {
		agg_free(a);
		pt->ct->dropped[DROP_SQL_SERIES]++;
		return NULL;
	}
	pt->naggs++;
	note_db(pt, a);
	return a;
}

/* The hot path: one lookup in the connection's own small map before the
 * shared one. */
static struct sqlagg *agg_get(struct pgconn *pc, const char *table, const char *kind, const char *sqlstate)
{
	uint64_t h = hash_str(hash_str(hash_str(FNV_SEED, table), kind), sqlstate);
	struct sqlagg *a = u64map_get(&pc->aggs, h);

	if (a && (a->table ? table && !strcmp(a->table, table) : !table) &&
	    (a->kind ? kind && !strcmp(a->kind, kind) : !kind) &&
	    !strcmp(a->sqlstate, sqlstate ? sqlstate : ""))
		return a;
	/* Until the database is known, look again now and then: a backend's
	 * end may be reported just after its client's first statement. */
	if (!pc->dbname && !pc->synced && !pc->unix_server && strncmp(pc->server, "unix:", 5) &&
	    (!pc->db_tried_ns || pc->last_ns - pc->db_tried_ns >= DB_RETRY_NS)) {
		pc->db_tried_ns = pc->last_ns ? pc->last_ns : 1;
		pc->dbname = backend_database(pc);
		if (pc->dbname)
			u64map_free(&pc->aggs);
	}
	a = agg_find(pc, table, kind, sqlstate);
	/* An aggregate under "unknown" is not remembered: the next statement
	 * looks for the database again. */
	if (a && pc->dbname)
		u64map_put(&pc->aggs, h, a); /* a shortcut only: failing costs a lookup */
	return a;
}

static void stmt_record(struct pgtrack *pt, struct sqlagg *a, const struct sql_info *info)
{
	struct sqlstmt *s = NULL;

	for (size_t i = 0; i < a->nstmts; i++)
		if (a->stmts[i].hash == info->normalized_hash && !strcmp(a->stmts[i].text, info->normalized)) {
			s = &a->stmts[i];
			break;
		}
	if (!s && a->nstmts < PG_MAX_STMTS) {
		char *text = strdup(info->normalized);

		if (text) {
			s = &a->stmts[a->nstmts++];
			s->text = text;
			s->hash = info->normalized_hash;
		}
	}
	for (int w = 0; w < STAT_NR; w++) {
		if (s)
			s->n[w]++;
		else
			a->st[w].other_stmts++;
	}
	if (!s)
		pt->ct->dropped[DROP_STATEMENTS]++;
}

static void agg_record(struct pgtrack *pt, struct sqlagg *a, int access, const struct sql_info *info,
		       const struct pg_stmt *st, bool tls)
{
	uint64_t ns = st->end_ns > st->start_ns ? st->end_ns - st->start_ns : 0;

	if (!a)
		return;
	for (int w = 0; w < STAT_NR; w++) {
		struct sqlstats *s = &a->st[w];

		s->count++;
		s->reads += !!(access & TABLE_READ);
		s->writes += !!(access & TABLE_WRITE);
		s->ddl += !!(access & TABLE_DDL);
		s->tls += tls;
		hist_add(&s->latency, ns);
		if (!s->first_ns || st->start_ns < s->first_ns)
			s->first_ns = st->start_ns;
		if (st->end_ns > s->last_ns)
			s->last_ns = st->end_ns;
	}
	if (info && info->normalized)
		stmt_record(pt, a, info);
}

static void on_startup(void *ctx, const char *user, const char *database, const char *app)
{
	struct pgconn *pc = ctx;

	free(pc->dbname);
	u64map_free(&pc->aggs);
	/* libpq's default database is the user's name. */
	pc->dbname = database && *database ? strdup(database) : user && *user ? strdup(user) : NULL;
}

static void on_encrypted(void *ctx)
{
	struct pgconn *pc = ctx;
	struct sqlagg *a;

	pc->pt->encrypted_connections++;
	pc->counted_encrypted = true;
	a = agg_get(pc, NULL, NULL, NULL);
	if (!a)
		return;
	for (int w = 0; w < STAT_NR; w++) {
		a->st[w].encrypted++;
		if (!a->st[w].first_ns)
			a->st[w].first_ns = pc->last_ns;
		if (pc->last_ns > a->st[w].last_ns)
			a->st[w].last_ns = pc->last_ns;
	}
}

static void on_statement(void *ctx, const struct pg_stmt *st)
{
	struct pgconn *pc = ctx;
	struct pgtrack *pt = pc->pt;
	const struct sql_info *info;

	pt->statements++;
	if (!st->sql) {
		pt->unknown_statements++;
		agg_record(pt, agg_get(pc, NULL, "UNKNOWN", st->sqlstate), 0, NULL, st, pc->tls);
		return;
	}
	info = sql_cache_lookup(pt->cache, st->sql);
	if (!info->ntables)
		agg_record(pt, agg_get(pc, NULL, info->kind, st->sqlstate), 0, info, st, pc->tls);
	for (size_t i = 0; i < info->ntables; i++)
		agg_record(pt, agg_get(pc, info->tables[i].name, info->kind, st->sqlstate),
			   info->tables[i].access, info, st, pc->tls);
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

/* Who listens on a Unix socket path, looked up once per path (until the
 * next sweep): the lookup walks every process's descriptors. */
static struct service no_listener;

static struct service *unix_server(struct pgtrack *pt, const char *path)
{
	uint64_t h = hash_str(FNV_SEED, path);
	struct service *s = u64map_get(&pt->unix_servers, h);
	char cgroup[4096], comm[64], name[256];

	if (s)
		return s == &no_listener ? NULL : s;
	if (cg_unix_listener(path, cgroup, sizeof(cgroup), comm, sizeof(comm))) {
		u64map_put(&pt->unix_servers, h, &no_listener);
		return NULL;
	}
	cg_service_name(cgroup, comm, name, sizeof(name));
	s = conntrack_service(pt->ct, name, cgroup, comm);
	u64map_put(&pt->unix_servers, h, s);
	return s;
}

/* A TLS connection whose plaintext turned up: it is decoded after all. */
static void tls_decoded(struct pgtrack *pt, struct pgconn *cipher)
{
	struct sqlagg *a;

	if (!cipher->counted_encrypted)
		return;
	cipher->counted_encrypted = false;
	pt->encrypted_connections--;
	a = agg_get(cipher, NULL, NULL, NULL);
	for (int w = 0; a && w < STAT_NR; w++)
		if (a->st[w].encrypted)
			a->st[w].encrypted--;
}

void pgtrack_open(struct pgtrack *pt, const struct pg_open_event *e, struct service *client)
{
	struct pgconn *pc = calloc(1, sizeof(*pc)), *old;
	char buf[PG_PATH_MAX + 8];

	if (!pc) {
		pt->ct->dropped[DROP_CONNS]++;
		return;
	}
	pc->pt = pt;
	pc->client = client;
	pc->last_ns = e->ts_ns;
	if (e->family == AF_UNIX) {
		snprintf(buf, sizeof(buf), "unix:%.*s", PG_PATH_MAX, e->path);
		pc->unix_server = unix_server(pt, buf + 5);
	} else {
		memcpy(pc->addr, e->raddr, 16);
		memcpy(pc->laddr, e->laddr, 16);
		pc->port = e->rport;
		pc->lport = e->lport;
		addr_format(e->raddr, e->rport, buf, sizeof(buf));
	}
	pc->server = strdup(buf);
	pc->synced = e->synced;
	pc->tls = e->sock & PG_TLS_STREAM;
	pc->dec = pg_conn_new(&callbacks, pc, e->synced);
	if (!pc->server || !pc->dec) {
		free(pc->server);
		pg_conn_free(pc->dec);
		free(pc);
		pt->ct->dropped[DROP_CONNS]++;
		return;
	}
	/* The kernel reuses a socket's address only after its close. */
	old = u64map_get(&pt->conns, e->sock);
	if (old)
		conn_free(pt, old);
	if (u64map_put(&pt->conns, e->sock, pc)) {
		u64map_del(&pt->conns, e->sock);
		conn_free(pt, pc);
		pt->ct->dropped[DROP_CONNS]++;
		return;
	}
	if (pc->tls) {
		struct pgconn *cipher = u64map_get(&pt->conns, e->sock & ~PG_TLS_STREAM);

		pt->tls_connections++;
		/* One connection, two streams: counted once. */
		if (cipher) {
			tls_decoded(pt, cipher);
			return;
		}
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
	pc->last_ns = e->ts_ns;
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
	/* A TCP close ends its TLS plaintext stream too. */
	if (!(sock & PG_TLS_STREAM) && (pc = u64map_del(&pt->conns, sock | PG_TLS_STREAM)))
		conn_free(pt, pc);
}

void pgtrack_window_reset(struct pgtrack *pt)
{
	struct sqlagg *a;

	u64map_for_each(&pt->aggs, i, a)
		for (; a; a = a->next) {
			memset(&a->st[STAT_WINDOW], 0, sizeof(a->st[STAT_WINDOW]));
			for (size_t k = 0; k < a->nstmts; k++)
				a->stmts[k].n[STAT_WINDOW] = 0;
		}
}

void pgtrack_evict(struct pgtrack *pt, uint64_t cutoff)
{
	struct u64map keep = { 0 };
	struct sqlagg *a, *next;
	struct pgconn *pc;
	size_t n = 0;

	/* The shortcuts may point at aggregates about to go; they refill. */
	u64map_for_each(&pt->conns, i, pc) {
		if (!strncmp(pc->server, "unix:", 5) && pc->last_ns < cutoff) {
			u64map_del(&pt->conns, pt->conns.keys[i]);
			conn_free(pt, pc);
			pt->idle_closed++;
			continue;
		}
		u64map_free(&pc->aggs);
		pc->client->mark = true;
		if (pc->unix_server)
			pc->unix_server->mark = true;
	}
	u64map_free(&pt->tables);
	u64map_free(&pt->dbtables);
	u64map_free(&pt->known_db);
	u64map_for_each(&pt->aggs, i, a)
		for (; a; a = next) {
			next = a->next;
			if (a->st[STAT_TOTAL].last_ns < cutoff) {
				agg_free(a);
				pt->ct->evicted++;
				continue;
			}
			a->next = u64map_get(&keep, pt->aggs.keys[i]);
			if (u64map_put(&keep, pt->aggs.keys[i], a)) {
				agg_free(a);
				pt->ct->dropped[DROP_SQL_SERIES]++;
				continue;
			}
			n++;
			a->client->mark = true;
			if (a->unix_server)
				a->unix_server->mark = true;
			/* "~other" is where tables past the limit go, not one of them. */
			if (a->table && strcmp(a->table, "~other"))
				table_name(pt, a->server, a->dbname, a->table, true);
			note_db(pt, a);
		}
	u64map_free(&pt->aggs);
	pt->aggs = keep;
	pt->naggs = n;
	/* A path's listener is looked up again when next needed. */
	u64map_free(&pt->unix_servers);
}

json_t *pgtrack_server_node(struct graph *g, const struct conntrack *ct, const struct sqlagg *a)
{
	struct service *s;

	if (a->unix_server)
		return conntrack_node(g, a->unix_server);
	if (!strncmp(a->server, "unix:", 5))
		return graph_external(g, a->server, 0);
	s = conntrack_server(ct, a->addr, a->port);
	if (s)
		return conntrack_node(g, s);
	return conntrack_remote_node(g, a->addr, a->port);
}

void pgtrack_for_each(const struct pgtrack *pt, void (*fn)(void *ctx, const struct sqlagg *a), void *ctx)
{
	struct sqlagg *a;

	u64map_for_each(&pt->aggs, i, a)
		for (; a; a = a->next)
			fn(ctx, a);
}

struct render {
	const struct pgtrack *pt;
	struct graph *g;
	int which;
	int64_t off;
	struct u64map hists; /* edge -> latency histogram */
	struct u64map stmts; /* edge -> json object: text -> count */
};

static void render_agg(void *ctx, const struct sqlagg *a)
{
	struct render *r = ctx;
	const struct sqlstats *s = &a->st[r->which];
	const char *client, *server;
	json_t *db, *target, *e, *ops, *texts;

	if (!s->count && !s->encrypted)
		return;
	client = json_str(conntrack_node(r->g, a->client), "id");
	server = json_str(pgtrack_server_node(r->g, r->pt->ct, a), "id");
	db = graph_database(r->g, server, pgtrack_db_name(r->pt, a));
	target = a->table ? graph_table(r->g, json_str(db, "id"), a->table) : db;
	e = graph_edge(r->g, client, json_str(target, "id"), "sql");
	ops = json_object_get(e, "operations");
	if (!ops) {
		ops = json_object();
		json_object_set_new(e, "operations", ops);
	}
	if (a->kind && s->count)
		json_count_add(ops, a->kind, (json_int_t)s->count);
	if (s->reads || s->writes || s->ddl) {
		json_t *acc = json_object_get(e, "access");

		if (!acc) {
			acc = json_object();
			json_object_set_new(e, "access", acc);
		}
		if (s->reads)
			json_count_add(acc, "read", (json_int_t)s->reads);
		if (s->writes)
			json_count_add(acc, "write", (json_int_t)s->writes);
		if (s->ddl)
			json_count_add(acc, "ddl", (json_int_t)s->ddl);
	}
	if (a->sqlstate[0] && s->count) {
		json_t *errs = json_object_get(e, "errors");

		if (!errs) {
			errs = json_object();
			json_object_set_new(e, "errors", errs);
		}
		json_count_add(errs, a->sqlstate, (json_int_t)s->count);
	}
	if (s->latency.count)
		graph_edge_hist_merge(&r->hists, e, &s->latency);
	texts = u64map_get(&r->stmts, (uintptr_t)e);
	for (size_t i = 0; i < a->nstmts; i++) {
		if (!a->stmts[i].n[r->which])
			continue;
		if (!texts) {
			texts = json_object();
			u64map_put(&r->stmts, (uintptr_t)e, texts);
		}
		json_count_add(texts, a->stmts[i].text, (json_int_t)a->stmts[i].n[r->which]);
	}
	if (s->other_stmts)
		json_count_add(e, "statements_other", (json_int_t)s->other_stmts);
	if (s->encrypted)
		json_count_add(e, "encrypted_connections", (json_int_t)s->encrypted);
	if (s->tls)
		json_object_set_new(e, "tls", json_true());
	if (s->first_ns) {
		graph_seen(e, s->first_ns + r->off);
		graph_seen(e, s->last_ns + r->off);
	}
}

static int by_count(const void *x, const void *y)
{
	json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	json_int_t na = json_integer_value(json_object_get(a, "count"));
	json_int_t nb = json_integer_value(json_object_get(b, "count"));

	if (na != nb)
		return na > nb ? -1 : 1;
	return strcmp(json_str(a, "query"), json_str(b, "query"));
}

/* The most frequent normalized statements, most frequent first. */
static json_t *top_statements(json_t *texts)
{
	size_t n = json_object_size(texts), k = 0;
	json_t **all = calloc(n ? n : 1, sizeof(*all)), *out = json_array(), *v;
	const char *q;

	if (!all)
		return out;
	json_object_foreach(texts, q, v)
		all[k++] = json_pack("{s:s, s:I}", "query", q, "count", json_integer_value(v));
	qsort(all, k, sizeof(*all), by_count);
	for (size_t i = 0; i < k; i++) {
		if (i < GRAPH_MAX_STATEMENTS)
			json_array_append(out, all[i]);
		json_decref(all[i]);
	}
	free(all);
	return out;
}

void pgtrack_to_graph(const struct pgtrack *pt, struct graph *g, int which, int64_t off)
{
	struct render r = { .pt = pt, .g = g, .which = which, .off = off };
	json_t *texts;

	pgtrack_for_each(pt, render_agg, &r);
	graph_edge_hists_finish(&r.hists, "latency_ms");
	u64map_for_each(&r.stmts, i, texts) {
		json_object_set_new((json_t *)(uintptr_t)r.stmts.keys[i], "statements", top_statements(texts));
		json_decref(texts);
	}
	u64map_free(&r.stmts);
}

/* PostgreSQL connections: kernel payload events -> one decoder per
 * connection -> statements counted on one aggregate per (client, server,
 * database, table, operation, SQLSTATE).  Aggregates keep counts for the
 * whole run and for the current window, and are evicted when idle. */
#ifndef SEAMS_PGTRACK_H
#define SEAMS_PGTRACK_H

#include <stdint.h>
#include <linux/types.h>

#include "conntrack.h"
#include "graph.h"
#include "hist.h"
#include "seams.h"
#include "u64map.h"

#define PG_MAX_AGGS      20000 /* aggregates in all */
#define PG_MAX_TABLES    1000  /* distinct tables per database */
#define PG_MAX_STMTS     16    /* statement texts kept per aggregate */

struct sql_cache;

struct sqlstats {
	uint64_t count, reads, writes, ddl, encrypted;
	uint64_t tls;         /* statements decoded from TLS plaintext */
	uint64_t first_ns, last_ns;
	uint64_t other_stmts; /* statements whose text did not fit */
	struct hist latency;
};

struct sqlstmt {
	char *text;           /* normalized: no literals */
	uint64_t hash;
	uint64_t n[STAT_NR];
};

struct sqlagg {
	struct sqlagg *next;  /* hash chain */
	char *key;
	struct service *client;
	char *server;         /* "ADDR:PORT" or "unix:PATH" */
	struct service *unix_server; /* who listens on the Unix socket, if known */
	uint8_t addr[16];
	uint16_t port;
	char *dbname;
	char *table;          /* NULL: statements that touch no table */
	char *kind;           /* "SELECT", ...; NULL: only counts encrypted connections */
	char sqlstate[6];     /* "" on success */
	struct sqlstats st[STAT_NR];
	struct sqlstmt stmts[PG_MAX_STMTS];
	size_t nstmts;
};

struct pgtrack {
	struct conntrack *ct;     /* finds a local server's end of a connection */
	struct u64map conns;      /* kernel sock -> struct pgconn */
	struct u64map aggs;       /* key hash -> struct sqlagg chain */
	size_t naggs;
	struct u64map tables;     /* hash of server, database, table -> (void *)1 */
	struct u64map dbtables;   /* hash of server, database -> table count */
	struct u64map unix_servers; /* path hash -> struct service listening there */
	struct u64map known_db;   /* hash of client, server -> the one database it used */
	struct sql_cache *cache;
	uint64_t statements;
	uint64_t unknown_statements;
	uint64_t encrypted_connections; /* TLS or GSS, not decoded */
	uint64_t tls_connections;       /* TLS, decoded from the library's plaintext */
	uint64_t undecodable_bytes; /* from decoders already freed */
	uint64_t connections;
	uint64_t idle_closed;     /* decoders let go after idling (no close seen) */
};

int pgtrack_init(struct pgtrack *pt, struct conntrack *ct);
void pgtrack_free(struct pgtrack *pt);

/* A connection found to speak PostgreSQL, owned by client. */
void pgtrack_open(struct pgtrack *pt, const struct pg_open_event *e, struct service *client);
/* An EV_PG_DATA ring record: one pg_data_event, its data and segments. */
void pgtrack_record(struct pgtrack *pt, const void *rec, size_t size);
/* A TCP connection closed: its decoder goes. */
void pgtrack_close(struct pgtrack *pt, uint64_t sock);

/* Zero every aggregate's window counts. */
void pgtrack_window_reset(struct pgtrack *pt);
/* Free aggregates idle since before cutoff and decoders of Unix-socket
 * connections idle as long (their close is not traced); mark the services
 * still in use (after conntrack_evict, before conntrack_sweep_services). */
void pgtrack_evict(struct pgtrack *pt, uint64_t cutoff_ns);

uint64_t pgtrack_undecodable(const struct pgtrack *pt);

/* The node serving an aggregate's connections: TCP servers are named as ct
 * names them, Unix-socket servers by the process listening on the path. */
json_t *pgtrack_server_node(struct graph *g, const struct conntrack *ct, const struct sqlagg *a);

/* The database an aggregate's statements went to.  A connection opened
 * before tracing began over a Unix socket never names it; when its client
 * used exactly one database on that server, that is the one. */
const char *pgtrack_db_name(const struct pgtrack *pt, const struct sqlagg *a);

/* Database, table and sql edges into g from counts `which`; reads, never
 * changes, pt. */
void pgtrack_to_graph(const struct pgtrack *pt, struct graph *g, int which, int64_t mono_to_real_ns);

/* Every aggregate, for metrics. */
void pgtrack_for_each(const struct pgtrack *pt, void (*fn)(void *ctx, const struct sqlagg *a), void *ctx);

#endif

/* PostgreSQL connections: kernel payload events -> one decoder per
 * connection -> statements aggregated per (client, database, table). */
#ifndef SEAMS_PGTRACK_H
#define SEAMS_PGTRACK_H

#include <stdint.h>
#include <linux/types.h>

#include "conntrack.h"
#include "graph.h"
#include "seams.h"
#include "u64map.h"

struct sql_cache;

struct pgtrack {
	struct conntrack *ct;     /* finds a local server's end of a connection */
	struct u64map conns;      /* kernel sock -> struct pgconn */
	struct u64map aggs;       /* key hash -> struct sqlagg */
	struct sql_cache *cache;
	uint64_t statements;
	uint64_t unknown_statements;
	uint64_t encrypted_connections;
	uint64_t undecodable_bytes; /* from decoders already freed */
	uint64_t connections;
};

int pgtrack_init(struct pgtrack *pt, struct conntrack *ct);
void pgtrack_free(struct pgtrack *pt);

/* A connection found to speak PostgreSQL, owned by client. */
void pgtrack_open(struct pgtrack *pt, const struct pg_open_event *e, struct service *client);
/* An EV_PG_DATA ring record: one pg_data_event, its data and segments. */
void pgtrack_record(struct pgtrack *pt, const void *rec, size_t size);
/* A TCP connection closed: its decoder goes. */
void pgtrack_close(struct pgtrack *pt, uint64_t sock);

uint64_t pgtrack_undecodable(const struct pgtrack *pt);

/* Database, table and sql edges into g; TCP servers are named as ct names
 * them, Unix-socket servers by the process listening on the path. */
void pgtrack_to_graph(struct pgtrack *pt, struct graph *g, struct conntrack *ct, int64_t mono_to_real_ns);

#endif

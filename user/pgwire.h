/* Passive PostgreSQL v3 protocol decoder: one per connection, fed the bytes of
 * each direction incrementally (in the shape of hiredis' reader).  It never
 * keeps bind values, row data, copy data or passwords. */
#ifndef SEAMS_PGWIRE_H
#define SEAMS_PGWIRE_H

#include <stddef.h>
#include <stdint.h>

enum pg_dir { PG_FRONTEND = 0, PG_BACKEND = 1 }; /* client->server, server->client */

/* One completed (or failed) statement. */
struct pg_stmt {
	const char *sql;     /* one statement's text as sent; NULL when unknown
			      * (prepared before the capture began) */
	const char *tag;     /* CommandComplete tag ("UPDATE 3"), NULL on error */
	const char *sqlstate;/* ErrorResponse SQLSTATE, NULL on success */
	uint64_t start_ns;   /* when the request was seen: the Query, or the
			      * Execute (the Parse/Bind when that failed) */
	uint64_t end_ns;     /* when its CommandComplete/ErrorResponse was seen */
	int truncated;       /* the text was longer than the decoder keeps
			      * (PG_SQL_MAX): sql is NULL, tables unknown */
};

struct pg_callbacks {
	void (*startup)(void *ctx, const char *user, const char *database, const char *application_name);
	void (*encrypted)(void *ctx); /* TLS or GSS negotiated: nothing more is decodable */
	void (*statement)(void *ctx, const struct pg_stmt *stmt);
	/* The client sent Terminate: nothing more will come.  A Unix socket's
	 * close is not traced, so this is how its state is let go. */
	void (*terminate)(void *ctx);
};

struct pg_stats {
	uint64_t messages;          /* messages decoded */
	uint64_t undecodable_bytes; /* bytes dropped while out of sync or malformed */
	uint64_t resyncs;           /* times the decoder found its footing again */
	uint64_t unknown_statements;/* Binds/Executes of statements parsed before capture */
	uint64_t truncated_statements;/* statements whose text exceeded PG_SQL_MAX */
	uint64_t encrypted_bytes;   /* bytes after TLS/GSS was negotiated, not decoded */
};

/* Longest SQL text kept per Query/Parse message; longer ones are reported
 * with sql NULL and truncated set, never as a wrong prefix. */
#define PG_SQL_MAX (64 * 1024)

struct pg_conn;

/* synced: the stream is seen from its first byte (a new connection); when 0 the
 * decoder starts by resynchronizing. */
struct pg_conn *pg_conn_new(const struct pg_callbacks *cb, void *ctx, int synced);
void pg_conn_free(struct pg_conn *c);

/* Bytes in one direction, in order, as the kernel saw them at time ts_ns. */
void pg_conn_feed(struct pg_conn *c, enum pg_dir dir, const uint8_t *buf, size_t len, uint64_t ts_ns);

/* n bytes of that direction were not copied (the kernel skipped a DataRow or
 * CopyData body, or lost them).  Skips inside a DataRow/CopyData body keep the
 * decoder in sync; anywhere else it resynchronizes. */
void pg_conn_skip(struct pg_conn *c, enum pg_dir dir, uint64_t n, uint64_t ts_ns);

/* n bytes that seams' kernel framer left out on purpose, in step with the
 * message framing: first the rest of the current message's body (its needed
 * prefix was fed), then whole DataRow or CopyData messages.  The decoder
 * stays in step; if it was not at the matching place, it resynchronizes. */
void pg_conn_elide(struct pg_conn *c, enum pg_dir dir, uint64_t n, uint64_t ts_ns);

const struct pg_stats *pg_conn_stats(const struct pg_conn *c);

#endif

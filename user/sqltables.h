/* SQL text -> the tables it touches and a normalized, literal-free form, via
 * libpg_query.  Results are cached by statement text. */
#ifndef SEAMS_SQLTABLES_H
#define SEAMS_SQLTABLES_H

#include <stddef.h>

enum table_access { TABLE_READ = 1, TABLE_WRITE = 2, TABLE_DDL = 4 };

struct sql_table {
	char *name;   /* schema-qualified: "public.orders", quoted case kept */
	int access;   /* TABLE_* bits */
};

struct sql_info {
	const char *kind;        /* statement kind: "SELECT", "INSERT", "UPDATE", "DELETE",
				  * "MERGE", "COPY", "TRUNCATE", "CREATE TABLE", ... */
	const char *normalized;  /* every literal replaced by $n, comments dropped;
				  * NULL if the text could not be parsed */
	unsigned long long normalized_hash; /* FNV-1a of normalized: callers compare it first */
	size_t ntables;
	struct sql_table *tables;
};

struct sql_cache;

struct sql_cache *sql_cache_new(size_t max_entries);
void sql_cache_free(struct sql_cache *c);

/* One statement's info (owned by the cache; valid until the next lookup that
 * may evict, so copy what you keep).  Never NULL: unparseable text gives
 * kind "UNKNOWN", no tables, normalized NULL. */
const struct sql_info *sql_cache_lookup(struct sql_cache *c, const char *sql);

/* Split a simple-Query string into statements: calls fn for each, in order,
 * with its len bytes in sql (not NUL-terminated).  Returns the count. */
size_t sql_split(const char *sql, void (*fn)(void *ctx, const char *stmt, size_t len), void *ctx);

#endif

/* libFuzzer target for SQL -> tables / normalization / splitting. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sqltables.h"

static size_t sink;

static void on_stmt(void *ctx, const char *stmt, size_t len)
{
	/* Every byte of a statement is in the string, before its end. */
	if (!len || memchr(stmt, '\0', len))
		abort();
	sink += len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sql_cache *c = sql_cache_new(2);
	char *sql = malloc(size + 1);
	const struct sql_info *in;
	size_t i;

	if (!c || !sql)
		abort();
	memcpy(sql, data, size);
	sql[size] = '\0';
	in = sql_cache_lookup(c, sql);
	sink += strlen(in->kind) + (in->normalized ? strlen(in->normalized) : 0);
	for (i = 0; i < in->ntables; i++)
		sink += strlen(in->tables[i].name) + in->tables[i].access;
	if (sql_cache_lookup(c, sql) != in)     /* a hit returns the same entry */
		abort();
	sql_split(sql, on_stmt, NULL);
	sql_cache_free(c);
	free(sql);
	return 0;
}

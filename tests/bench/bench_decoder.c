/* Decoder + SQL cache throughput on one core: replays a recorded pgbench
 * stream (tests/data/pg/pgbench_prepared.seg by default) many times and
 * prints messages/s.  Exits non-zero if decoding produced no statements.
 * Usage: bench_decoder [file.seg] [seconds] [cache entries] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pgwire.h"
#include "sqltables.h"

struct rec {
	enum pg_dir dir;
	const uint8_t *p;
	size_t len;
};

struct bench {
	struct sql_cache *cache;
	uint64_t statements, tables;
};

static void on_statement(void *ctx, const struct pg_stmt *st)
{
	struct bench *b = ctx;

	b->statements++;
	if (st->sql)
		b->tables += sql_cache_lookup(b->cache, st->sql)->ntables;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "tests/data/pg/pgbench_prepared.seg";
	double secs = argc > 2 ? atof(argv[2]) : 2.0, t0, t;
	struct pg_callbacks cb = { .statement = on_statement };
	struct bench b = { .cache = sql_cache_new(argc > 3 ? atoi(argv[3]) : 10000) };
	struct rec *recs = NULL;
	size_t nrec = 0, off = 0, i;
	uint64_t messages = 0, bytes = 0, rounds = 0, ts = 0;
	uint8_t *data;
	long size;
	FILE *f = fopen(path, "rb");

	if (!f || !b.cache) {
		perror(path);
		return 1;
	}
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	data = malloc(size);
	if (!data || fread(data, 1, size, f) != (size_t)size)
		return 1;
	fclose(f);
	while (off + 5 <= (size_t)size) {
		size_t len = (size_t)data[off + 1] << 24 | data[off + 2] << 16 | data[off + 3] << 8 | data[off + 4];

		recs = realloc(recs, (nrec + 1) * sizeof(*recs));
		if (!recs || off + 5 + len > (size_t)size)
			return 1;
		recs[nrec++] = (struct rec){ data[off], data + off + 5, len };
		off += 5 + len;
	}
	t0 = now();
	do {
		struct pg_conn *c = pg_conn_new(&cb, &b, 1);

		for (i = 0; i < nrec; i++) {
			pg_conn_feed(c, recs[i].dir, recs[i].p, recs[i].len, ts++);
			bytes += recs[i].len;
		}
		messages += pg_conn_stats(c)->messages;
		pg_conn_free(c);
		rounds++;
	} while ((t = now() - t0) < secs);
	printf("%s: %llu messages, %llu statements in %.2f s: %.0f messages/s, %.1f MB/s, %.0f statements/s\n",
	       path, (unsigned long long)messages, (unsigned long long)b.statements, t, messages / t,
	       bytes / t / 1e6, b.statements / t);
	sql_cache_free(b.cache);
	free(recs);
	free(data);
	return b.statements && b.tables ? 0 : 1;
}

/* libFuzzer target for the decoder.  Input: flags byte, 16-bit split point,
 * then bytes: [0, split) is the client stream, the rest the server stream,
 * fed interleaved in chunks whose size the flags choose. */
#include <stdint.h>
#include <string.h>

#include "pgwire.h"

static size_t sink;

static void on_startup(void *ctx, const char *user, const char *db, const char *app)
{
	sink += (user ? strlen(user) : 0) + (db ? strlen(db) : 0) + (app ? strlen(app) : 0);
}

static void on_encrypted(void *ctx)
{
	sink++;
}

static void on_statement(void *ctx, const struct pg_stmt *st)
{
	/* let the sanitizers check every string handed out */
	sink += (st->sql ? strlen(st->sql) : 0) + (st->tag ? strlen(st->tag) : 0) +
		(st->sqlstate ? strlen(st->sqlstate) : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct pg_callbacks cb = { on_startup, on_encrypted, on_statement, NULL };
	struct pg_conn *c;
	size_t split, chunk, fe = 0, be = 0;
	uint64_t ts = 0;
	uint8_t flags;

	if (size < 3)
		return 0;
	flags = data[0];
	split = (size_t)data[1] << 8 | data[2];
	data += 3;
	size -= 3;
	if (split > size)
		split = size;
	chunk = flags & 0x40 ? 1 + (flags & 0x3f) : SIZE_MAX;
	c = pg_conn_new(&cb, NULL, flags & 0x80);
	while (fe < split || be < size - split) {
		size_t n = split - fe < chunk ? split - fe : chunk;

		pg_conn_feed(c, PG_FRONTEND, data + fe, n, ts++);
		fe += n;
		n = size - split - be < chunk ? size - split - be : chunk;
		pg_conn_feed(c, PG_BACKEND, data + split + be, n, ts++);
		be += n;
		if ((flags & 0x3f) == 0x3f && be < size - split)
			pg_conn_skip(c, PG_BACKEND, data[split + be] & 0x1f, ts++);
	}
	pg_conn_free(c);
	return 0;
}

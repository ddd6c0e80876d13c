/* pgwire: recorded streams (tests/data/pg, see extract.py) fed whole,
 * split at every boundary and byte by byte; synthetic edge cases; privacy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgwire.h"
#include "sqltables.h"

/* ---- recorded streams ------------------------------------------------------ */

struct seg {
	uint8_t *data;
	size_t len;
};

static struct seg load(const char *name)
{
	const char *dir = getenv("SEAMS_TEST_DATA");
	char path[512];
	struct seg s = { 0 };
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s.seg", dir ? dir : "tests/data/pg", name);
	f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s (run from the repository root)", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	s.data = malloc(n);
	assert_non_null(s.data);
	assert_int_equal(fread(s.data, 1, n, f), (size_t)n);
	s.len = n;
	fclose(f);
	return s;
}

/* ---- what the callbacks saw --------------------------------------------------- */

struct log {
	char *buf;
	size_t len, cap;
	int statements, encrypted;
};

static void log_add(struct log *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(l->buf + l->len, l->cap - l->len, fmt, ap);
		va_end(ap);
		if (l->len + n < l->cap)
			break;
		l->cap = (l->cap + n) * 2 + 256;
		l->buf = realloc(l->buf, l->cap);
		assert_non_null(l->buf);
	}
	l->len += n;
}

static const char *s_(const char *s)
{
	return s ? s : "-";
}

static void on_startup(void *ctx, const char *user, const char *db, const char *app)
{
	log_add(ctx, "startup %s %s %s\n", s_(user), s_(db), s_(app));
}

static void on_encrypted(void *ctx)
{
	struct log *l = ctx;

	l->encrypted++;
	log_add(l, "encrypted\n");
}

static void on_statement(void *ctx, const struct pg_stmt *st)
{
	struct log *l = ctx;

	assert_true(st->end_ns >= st->start_ns);
	l->statements++;
	log_add(l, "stmt [%s] %s %s%s\n", s_(st->sql), s_(st->tag), s_(st->sqlstate),
		st->truncated ? " truncated" : "");
}

static void on_terminate(void *ctx)
{
	log_add(ctx, "terminate\n");
}

static const struct pg_callbacks cbs = { on_startup, on_encrypted, on_statement, on_terminate };

/* Replay records; record `split` is fed in two parts at `at` (or byte by byte
 * when at == SIZE_MAX); bytes before `from` are never fed. */
static struct pg_stats replay(const struct seg *s, struct log *l, int synced, size_t split,
			      size_t at, size_t from)
{
	struct pg_conn *c = pg_conn_new(&cbs, l, synced);
	struct pg_stats st;
	size_t off = 0, rec = 0, pos = 0;
	uint64_t ts = 1000;

	assert_non_null(c);
	while (off + 5 <= s->len) {
		enum pg_dir dir = s->data[off];
		size_t len = (size_t)s->data[off + 1] << 24 | s->data[off + 2] << 16 |
			     s->data[off + 3] << 8 | s->data[off + 4];
		const uint8_t *p = s->data + off + 5;
		size_t skip = pos >= from ? 0 : from - pos < len ? from - pos : len;

		off += 5 + len;
		pos += len;
		p += skip;
		len -= skip;
		ts += 1000;
		if (!len) {
			rec++;
			continue;
		}
		if (rec++ != split) {
			pg_conn_feed(c, dir, p, len, ts);
		} else if (at == SIZE_MAX) {
			for (size_t i = 0; i < len; i++)
				pg_conn_feed(c, dir, p + i, 1, ts);
		} else {
			pg_conn_feed(c, dir, p, at, ts);
			pg_conn_feed(c, dir, p + at, len - at, ts);
		}
	}
	st = *pg_conn_stats(c);
	pg_conn_free(c);
	return st;
}

static size_t nrecords(const struct seg *s)
{
	size_t off = 0, n = 0;

	while (off + 5 <= s->len) {
		off += 5 + ((size_t)s->data[off + 1] << 24 | s->data[off + 2] << 16 |
			    s->data[off + 3] << 8 | s->data[off + 4]);
		n++;
	}
	return n;
}

static size_t record_len(const struct seg *s, size_t idx)
{
	size_t off = 0, len = 0;

	while (off + 5 <= s->len) {
		len = (size_t)s->data[off + 1] << 24 | s->data[off + 2] << 16 |
		      s->data[off + 3] << 8 | s->data[off + 4];
		if (!idx--)
			return len;
		off += 5 + len;
	}
	return 0;
}

static void log_free(struct log *l)
{
	free(l->buf);
	memset(l, 0, sizeof(*l));
}

/* Every split point of every record (sampled in large records), and byte by
 * byte, yields exactly the callbacks of the whole stream. */
static void check_splits(const char *name, struct log *whole)
{
	struct seg s = load(name);
	size_t r, at, n = nrecords(&s);
	struct log l = { 0 };

	replay(&s, whole, 1, SIZE_MAX, 0, 0);
	for (r = 0; r < n; r++) {
		size_t len = record_len(&s, r);
		size_t step = len > 4096 ? 61 : 1;

		for (at = 1; at < len; at += at < 16 || at > len - 16 ? 1 : step) {
			replay(&s, &l, 1, r, at, 0);
			if (l.len != whole->len || memcmp(l.buf, whole->buf, l.len))
				fail_msg("%s: record %zu split at %zu differs:\n%s\n---\n%s", name, r, at,
					 l.buf, whole->buf);
			log_free(&l);
		}
		replay(&s, &l, 1, r, SIZE_MAX, 0);
		assert_int_equal(l.len, whole->len);
		assert_memory_equal(l.buf, whole->buf, l.len);
		log_free(&l);
	}
	free(s.data);
}

static void expect_in(const struct log *l, const char *line)
{
	if (!l->buf || !strstr(l->buf, line))
		fail_msg("missing \"%s\" in:\n%s", line, l->buf ? l->buf : "");
}

static void test_psql_simple(void **state)
{
	struct log l = { 0 };

	check_splits("psql_simple", &l);
	expect_in(&l, "startup postgres postgres psqlapp\n");
	expect_in(&l, "stmt [SELECT count(*) FROM pgbench_branches] SELECT 1 -\n");
	expect_in(&l, "stmt [SELECT 1/0] - 22012\nstmt [SELECT 3] SELECT 1 -\n");
	expect_in(&l, "stmt [COPY items (id, label, price) FROM STDIN] COPY 2 -\n");
	expect_in(&l, "stmt [COPY items TO STDOUT] COPY 3 -\n");
	expect_in(&l, "stmt [COPY (SELECT id FROM items WHERE id > 1) TO STDOUT] COPY 2 -\n");
	expect_in(&l, "SELECT 300 -\n");
	expect_in(&l, "stmt [LOCK TABLE items] LOCK TABLE -\nstmt [COMMIT] COMMIT -\n");
	/* psql's Terminate ends the stream: the connection can be let go. */
	assert_true(l.len >= 10 && !strcmp(l.buf + l.len - 10, "terminate\n"));
	assert_int_equal(l.statements, 16);
	log_free(&l);
}

/* psql sent SSLRequest, the server answered a bare 'N', not a NoticeResponse;
 * one Query holds several statements and an error stops the batch. */
static void test_ssl_refused_multi(void **state)
{
	struct log l = { 0 };

	check_splits("psql_multi", &l);
	assert_string_equal(l.buf,
			    "startup postgres postgres psql\n"
			    "stmt [SELECT 1] SELECT 1 -\n"
			    "stmt [SELECT 1/0] - 22012\n"
			    "stmt [SELECT 1 AS a] SELECT 1 -\n"
			    "stmt [UPDATE items SET price = 0 WHERE false] UPDATE 0 -\n"
			    "stmt [SELECT 2] SELECT 1 -\n"
			    "terminate\n");
	log_free(&l);
}

static void test_tls(void **state)
{
	struct seg s = load("tls");
	struct log l = { 0 };
	struct pg_stats st = replay(&s, &l, 1, SIZE_MAX, 0, 0);

	assert_string_equal(l.buf, "encrypted\n");
	assert_true(st.encrypted_bytes > 2000);
	assert_int_equal(st.undecodable_bytes, 0);
	log_free(&l);
	free(s.data);
}

static void test_pgbench(void **state)
{
	static const char *modes[] = { "pgbench_simple", "pgbench_extended", "pgbench_prepared" };
	size_t i;

	for (i = 0; i < 3; i++) {
		struct log l = { 0 };

		check_splits(modes[i], &l);
		assert_int_equal(l.statements, 70);    /* 10 TPC-B transactions */
		expect_in(&l, "UPDATE pgbench_accounts SET abalance = abalance + ");
		expect_in(&l, "INSERT INTO pgbench_history");
		expect_in(&l, "] COMMIT -\n");
		log_free(&l);
	}
}

/* Pipelined: named statements reused (prepared) and the unnamed statement
 * re-parsed inside one pipeline (extended). */
static void test_pipelines(void **state)
{
	static const char *names[] = { "pipe_prepared", "pipe_extended" };
	const char *txn =
		"stmt [SELECT abalance FROM pgbench_accounts WHERE aid = $1;] SELECT 1 -\n"
		"stmt [UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1;] UPDATE 1 -\n"
		"stmt [SELECT abalance FROM pgbench_accounts WHERE aid = $1;] SELECT 1 -\n";
	size_t i;

	for (i = 0; i < 2; i++) {
		struct log l = { 0 };
		char want[2048];

		check_splits(names[i], &l);
		snprintf(want, sizeof(want), "startup postgres postgres pgbench\n%s%s%sterminate\n", txn,
			 txn, txn);
		assert_string_equal(l.buf, want);
		log_free(&l);
	}
}

static void test_pipeline_error(void **state)
{
	struct log l = { 0 };

	check_splits("pipe_err", &l);
	assert_string_equal(l.buf,
			    "startup postgres postgres pgbench\n"
			    "stmt [SELECT 1;] SELECT 1 -\n"
			    "stmt [SELECT abalance FROM pgbench_accounts WHERE aid = 1;] SELECT 1 -\n"
			    "stmt [SELECT 1/0;] - 22012\n"
			    "terminate\n");
	log_free(&l);
}

/* Start inside the 300-DataRow result: later statements are found, nothing
 * is reported that the full decode did not report. */
static void test_midstream(void **state)
{
	struct seg s = load("psql_simple");
	struct log whole = { 0 };
	size_t from;

	replay(&s, &whole, 1, SIZE_MAX, 0, 0);
	for (from = 20000; from < 70000; from += 997) {
		struct log l = { 0 };
		struct pg_stats st = replay(&s, &l, 0, SIZE_MAX, 0, from);
		char *line, *save = NULL;

		assert_true(st.resyncs > 0);
		expect_in(&l, "stmt [COMMIT] COMMIT -\n");
		for (line = strtok_r(l.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
			expect_in(&whole, line);
		log_free(&l);
	}
	log_free(&whole);
	free(s.data);
}

/* ---- synthetic messages ------------------------------------------------------------ */

struct msg {
	uint8_t b[256 * 1024];
	size_t len, start;
};

static void put(struct msg *m, const void *p, size_t n)
{
	assert_true(m->len + n <= sizeof(m->b));
	memcpy(m->b + m->len, p, n);
	m->len += n;
}

static void put32(struct msg *m, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	put(m, b, 4);
}

static void put16(struct msg *m, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v };

	put(m, b, 2);
}

static void puts_(struct msg *m, const char *s)
{
	put(m, s, strlen(s) + 1);
}

static void begin(struct msg *m, char type)
{
	put(m, &type, 1);
	m->start = m->len;
	put32(m, 0);
}

static void end(struct msg *m)
{
	uint32_t n = m->len - m->start;

	m->b[m->start] = n >> 24;
	m->b[m->start + 1] = n >> 16;
	m->b[m->start + 2] = n >> 8;
	m->b[m->start + 3] = n;
}

static void simple(struct msg *m, char type, const char *s)
{
	begin(m, type);
	if (s)
		puts_(m, s);
	end(m);
}

static void parse(struct msg *m, const char *name, const char *sql)
{
	begin(m, 'P');
	puts_(m, name);
	puts_(m, sql);
	put16(m, 0);
	end(m);
}

static void bind(struct msg *m, const char *portal, const char *stmt, const char *value)
{
	begin(m, 'B');
	puts_(m, portal);
	puts_(m, stmt);
	put16(m, 0);
	put16(m, 1);
	put32(m, strlen(value));
	put(m, value, strlen(value));
	put16(m, 0);
	end(m);
}

static void execute(struct msg *m, const char *portal)
{
	begin(m, 'E');
	puts_(m, portal);
	put32(m, 0);
	end(m);
}

static void ready(struct msg *m)
{
	begin(m, 'Z');
	put(m, "I", 1);
	end(m);
}

static void datarow(struct msg *m, const char *value)
{
	begin(m, 'D');
	put16(m, 1);
	put32(m, strlen(value));
	put(m, value, strlen(value));
	end(m);
}

static void error(struct msg *m, const char *code)
{
	begin(m, 'E');
	put(m, "SERROR", 7);
	put(m, "C", 1);
	puts_(m, code);
	put(m, "Mfailed: SECRET_ERR", 20);
	put(m, "", 1);
	end(m);
}

static void startup(struct msg *m)
{
	size_t at = m->len;
	uint32_t n;

	put32(m, 0);
	put32(m, 196608);
	puts_(m, "user");
	puts_(m, "app");
	puts_(m, "database");
	puts_(m, "shop");
	put(m, "", 1);
	n = m->len - at;
	m->b[at] = n >> 24;
	m->b[at + 1] = n >> 16;
	m->b[at + 2] = n >> 8;
	m->b[at + 3] = n;
}

static void feed(struct pg_conn *c, enum pg_dir dir, struct msg *m, uint64_t ts)
{
	pg_conn_feed(c, dir, m->b, m->len, ts);
	m->len = 0;
}

static struct pg_conn *connect_(struct log *l, struct msg *fe, struct msg *be)
{
	struct pg_conn *c = pg_conn_new(&cbs, l, 1);

	startup(fe);
	feed(c, PG_FRONTEND, fe, 1);
	begin(be, 'R');
	put32(be, 0);
	end(be);
	ready(be);
	feed(c, PG_BACKEND, be, 2);
	return c;
}

/* Named reuse, the unnamed statement re-parsed within one pipeline, a Bind
 * of a statement never seen, Close, DEALLOCATE and DISCARD ALL forgetting
 * statements. */
static void test_extended_names(void **state)
{
	static struct msg fe, be;
	struct log l = { 0 };
	struct pg_conn *c = connect_(&l, &fe, &be);

	parse(&fe, "s1", "SELECT * FROM a WHERE id = $1");
	bind(&fe, "", "s1", "SECRET_BIND_1");
	execute(&fe, "");
	parse(&fe, "", "SELECT * FROM b WHERE id = $1");
	bind(&fe, "", "", "SECRET_BIND_2");
	execute(&fe, "");
	parse(&fe, "", "UPDATE c SET x = $1");
	bind(&fe, "", "", "SECRET_BIND_3");
	execute(&fe, "");
	bind(&fe, "", "s1", "SECRET_BIND_4");
	execute(&fe, "");
	bind(&fe, "", "before_capture", "SECRET_BIND_5");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 10);
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	datarow(&be, "SECRET_ROW_A");
	simple(&be, 'C', "SELECT 1");
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	simple(&be, 'C', "SELECT 0");
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	simple(&be, 'C', "UPDATE 2");
	simple(&be, '2', NULL);
	simple(&be, 'C', "SELECT 0");
	simple(&be, '2', NULL);
	simple(&be, 'C', "SELECT 5");
	ready(&be);
	feed(c, PG_BACKEND, &be, 20);
	/* Close forgets s1; a DEALLOCATE of it (after re-preparing) too */
	begin(&fe, 'C');
	put(&fe, "S", 1);
	puts_(&fe, "s1");
	end(&fe);
	bind(&fe, "", "s1", "x");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 30);
	simple(&be, '3', NULL);
	error(&be, "26000");
	ready(&be);
	feed(c, PG_BACKEND, &be, 40);
	parse(&fe, "S1", "SELECT 1");
	simple(&fe, 'S', NULL);
	simple(&fe, 'Q', "DEALLOCATE \"S1\"");
	feed(c, PG_FRONTEND, &fe, 50);
	simple(&be, '1', NULL);
	ready(&be);
	simple(&be, 'C', "DEALLOCATE");
	ready(&be);
	feed(c, PG_BACKEND, &be, 60);
	bind(&fe, "", "S1", "x");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 70);
	error(&be, "26000");
	ready(&be);
	feed(c, PG_BACKEND, &be, 80);
	/* and DISCARD ALL forgets every statement */
	parse(&fe, "s2", "SELECT 2");
	simple(&fe, 'S', NULL);
	simple(&fe, 'Q', "DISCARD ALL");
	feed(c, PG_FRONTEND, &fe, 90);
	simple(&be, '1', NULL);
	ready(&be);
	simple(&be, 'C', "DISCARD ALL");
	ready(&be);
	feed(c, PG_BACKEND, &be, 100);
	bind(&fe, "", "s2", "x");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 110);
	error(&be, "26000");
	ready(&be);
	feed(c, PG_BACKEND, &be, 120);

	assert_string_equal(l.buf,
			    "startup app shop -\n"
			    "stmt [SELECT * FROM a WHERE id = $1] SELECT 1 -\n"
			    "stmt [SELECT * FROM b WHERE id = $1] SELECT 0 -\n"
			    "stmt [UPDATE c SET x = $1] UPDATE 2 -\n"
			    "stmt [SELECT * FROM a WHERE id = $1] SELECT 0 -\n"
			    "stmt [-] SELECT 5 -\n"
			    "stmt [-] - 26000\n"
			    "stmt [DEALLOCATE \"S1\"] DEALLOCATE -\n"
			    "stmt [-] - 26000\n"
			    "stmt [DISCARD ALL] DISCARD ALL -\n"
			    "stmt [-] - 26000\n");
	assert_int_equal(pg_conn_stats(c)->unknown_statements, 4);
	pg_conn_free(c);
	log_free(&l);
}

/* An error in the middle of a pipeline drops the rest up to Sync. */
static void test_extended_error(void **state)
{
	static struct msg fe, be;
	struct log l = { 0 };
	struct pg_conn *c = connect_(&l, &fe, &be);

	parse(&fe, "", "INSERT INTO t VALUES ($1)");
	bind(&fe, "", "", "1");
	execute(&fe, "");
	parse(&fe, "", "INSERT INTO t VALUES ($1)");
	bind(&fe, "", "", "1");
	execute(&fe, "");
	parse(&fe, "", "SELECT 2");
	bind(&fe, "", "", "2");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	parse(&fe, "", "SELECT 3");
	bind(&fe, "", "", "3");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 10);
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	simple(&be, 'C', "INSERT 0 1");
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	simple(&be, 'N', "SNOTICE");      /* a notice is not a reply */
	error(&be, "23505");
	ready(&be);
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	simple(&be, 'C', "SELECT 1");
	ready(&be);
	feed(c, PG_BACKEND, &be, 20);
	assert_string_equal(l.buf,
			    "startup app shop -\n"
			    "stmt [INSERT INTO t VALUES ($1)] INSERT 0 1 -\n"
			    "stmt [INSERT INTO t VALUES ($1)] - 23505\n"
			    "stmt [SELECT 3] SELECT 1 -\n");
	pg_conn_free(c);
	log_free(&l);
}

/* COPY FROM STDIN in the extended protocol: the Sync sent with the Execute is
 * ignored by the server during copy-in; libpq sends another after CopyDone. */
static void test_copy_extended(void **state)
{
	static struct msg fe, be;
	struct log l = { 0 };
	struct pg_conn *c = connect_(&l, &fe, &be);

	parse(&fe, "", "COPY t FROM STDIN");
	bind(&fe, "", "", "");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 10);
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	begin(&be, 'G');
	put(&be, "\0\0\0", 3);
	end(&be);
	feed(c, PG_BACKEND, &be, 20);
	simple(&fe, 'd', "SECRET_COPY_X\t1\n");
	simple(&fe, 'd', "SECRET_COPY_Y\t2\n");
	simple(&fe, 'c', NULL);
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 30);
	simple(&be, 'C', "COPY 2");
	ready(&be);
	feed(c, PG_BACKEND, &be, 40);
	simple(&fe, 'Q', "SELECT 1");
	feed(c, PG_FRONTEND, &fe, 50);
	simple(&be, 'C', "SELECT 1");
	ready(&be);
	feed(c, PG_BACKEND, &be, 60);
	assert_string_equal(l.buf, "startup app shop -\n"
			    "stmt [COPY t FROM STDIN] COPY 2 -\n"
			    "stmt [SELECT 1] SELECT 1 -\n");
	pg_conn_free(c);
	log_free(&l);
}

/* A kernel skip inside a DataRow body stays in sync; elsewhere it resyncs
 * and the decoder recovers at the next ReadyForQuery. */
static void test_skip(void **state)
{
	static struct msg fe, be;
	char big[2000];
	struct log l = { 0 };
	struct pg_conn *c = connect_(&l, &fe, &be);

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	simple(&fe, 'Q', "SELECT x FROM t");
	feed(c, PG_FRONTEND, &fe, 10);
	datarow(&be, big);
	pg_conn_feed(c, PG_BACKEND, be.b, 100, 11);
	pg_conn_skip(c, PG_BACKEND, 1500, 12);
	pg_conn_feed(c, PG_BACKEND, be.b + 1600, be.len - 1600, 13);
	be.len = 0;
	simple(&be, 'C', "SELECT 1");
	ready(&be);
	feed(c, PG_BACKEND, &be, 20);
	assert_int_equal(pg_conn_stats(c)->resyncs, 0);
	assert_int_equal(l.statements, 1);

	simple(&fe, 'Q', "SELECT y FROM t");
	feed(c, PG_FRONTEND, &fe, 30);
	simple(&be, 'T', NULL);
	pg_conn_skip(c, PG_BACKEND, 3, 31);     /* not a body we can count over */
	datarow(&be, "abc");
	simple(&be, 'C', "SELECT 1");
	ready(&be);
	feed(c, PG_BACKEND, &be, 40);
	simple(&fe, 'Q', "SELECT z FROM t");
	feed(c, PG_FRONTEND, &fe, 50);
	simple(&be, 'C', "SELECT 1");
	ready(&be);
	feed(c, PG_BACKEND, &be, 60);
	assert_string_equal(l.buf, "startup app shop -\n"
			    "stmt [SELECT x FROM t] SELECT 1 -\n"
			    "stmt [SELECT z FROM t] SELECT 1 -\n");
	assert_true(pg_conn_stats(c)->resyncs > 0);
	pg_conn_free(c);
	log_free(&l);
}

/* A Query longer than PG_SQL_MAX: unknown, never a wrong prefix. */
static void test_truncated(void **state)
{
	static struct msg fe, be;
	static char sql[PG_SQL_MAX + 100];
	struct log l = { 0 };
	struct pg_conn *c = connect_(&l, &fe, &be);

	memset(sql, ' ', sizeof(sql) - 1);
	memcpy(sql, "SELECT * FROM a, b", 18);
	sql[sizeof(sql) - 1] = '\0';
	simple(&fe, 'Q', sql);
	feed(c, PG_FRONTEND, &fe, 10);
	simple(&be, 'C', "SELECT 0");
	ready(&be);
	feed(c, PG_BACKEND, &be, 20);
	assert_string_equal(l.buf, "startup app shop -\nstmt [-] SELECT 0 - truncated\n");
	assert_int_equal(pg_conn_stats(c)->truncated_statements, 1);
	pg_conn_free(c);
	log_free(&l);
}

/* GSSENC refused with 'N', then SSLRequest accepted with 'S'. */
static void test_gss_then_ssl(void **state)
{
	static const uint8_t gss[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30 };
	static const uint8_t ssl[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	struct log l = { 0 };
	struct pg_conn *c = pg_conn_new(&cbs, &l, 1);

	pg_conn_feed(c, PG_FRONTEND, gss, sizeof(gss), 1);
	pg_conn_feed(c, PG_BACKEND, (const uint8_t *)"N", 1, 2);
	pg_conn_feed(c, PG_FRONTEND, ssl, sizeof(ssl), 3);
	pg_conn_feed(c, PG_BACKEND, (const uint8_t *)"S", 1, 4);
	pg_conn_feed(c, PG_FRONTEND, (const uint8_t *)"\x16\x03\x01\x02\x00", 5, 5);
	assert_string_equal(l.buf, "encrypted\n");
	assert_int_equal(pg_conn_stats(c)->encrypted_bytes, 5);
	pg_conn_free(c);
	log_free(&l);

	/* PG17 direct SSL: the first client byte is a TLS record */
	l = (struct log){ 0 };
	c = pg_conn_new(&cbs, &l, 1);
	pg_conn_feed(c, PG_FRONTEND, (const uint8_t *)"\x16\x03\x01\x02\x00", 5, 1);
	assert_int_equal(l.encrypted, 1);
	pg_conn_free(c);
	log_free(&l);
}

/* Garbage, another protocol, absurd lengths: no crash, no statement. */
static void test_garbage(void **state)
{
	static const char *http_req = "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
	static const char *http_resp = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
	static const uint8_t absurd[][9] = {
		{ 'Q', 0xff, 0xff, 0xff, 0xff, 'x', 0 },
		{ 'Q', 0, 0, 0, 2, 'x' },
		{ 'D', 0x7f, 0xff, 0xff, 0xff },
		{ 0, 3, 0, 0, 0, 3, 0, 0 },             /* startup len 196608 */
	};
	uint8_t noise[4096];
	int synced, i;
	size_t k;

	srand(7);
	for (k = 0; k < sizeof(noise); k++)
		noise[k] = rand();
	for (synced = 0; synced < 2; synced++) {
		struct log l = { 0 };
		struct pg_conn *c = pg_conn_new(&cbs, &l, synced);

		pg_conn_feed(c, PG_FRONTEND, (const uint8_t *)http_req, strlen(http_req), 1);
		pg_conn_feed(c, PG_BACKEND, (const uint8_t *)http_resp, strlen(http_resp), 2);
		for (i = 0; i < 4; i++) {
			pg_conn_feed(c, PG_FRONTEND, absurd[i], sizeof(absurd[i]), 3);
			pg_conn_feed(c, PG_BACKEND, absurd[i], sizeof(absurd[i]), 4);
		}
		pg_conn_feed(c, PG_FRONTEND, noise, sizeof(noise), 5);
		pg_conn_feed(c, PG_BACKEND, noise, sizeof(noise), 6);
		assert_int_equal(l.statements, 0);
		assert_true(pg_conn_stats(c)->undecodable_bytes > 4096);
		pg_conn_free(c);
		log_free(&l);
	}
}

/* Nothing a callback receives, nor the normalized SQL, may hold row data,
 * copy data, bind values, error messages or a password. */
static void test_privacy(void **state)
{
	static const char *recorded[] = { "password", "psql_simple", "pgbench_prepared" };
	static const char *markers[] = { "SECRET_PW_7781", "SECRET_ROW_1", "SECRET_COPY_IN",
					 "SECRET_BIND", "SECRET_ERR", "SECRET_COPY_X" };
	static struct msg fe, be;
	struct sql_cache *cache = sql_cache_new(100);
	struct log l = { 0 };
	struct pg_conn *c;
	char *line, *save = NULL;
	size_t i, m;

	for (i = 0; i < 3; i++) {
		struct seg s = load(recorded[i]);

		replay(&s, &l, 1, SIZE_MAX, 0, 0);
		free(s.data);
	}
	c = connect_(&l, &fe, &be);
	parse(&fe, "", "SELECT $1");
	bind(&fe, "", "", "SECRET_BIND_9");
	execute(&fe, "");
	simple(&fe, 'S', NULL);
	feed(c, PG_FRONTEND, &fe, 10);
	simple(&be, '1', NULL);
	simple(&be, '2', NULL);
	error(&be, "22000");
	ready(&be);
	feed(c, PG_BACKEND, &be, 11);
	pg_conn_free(c);
	expect_in(&l, "startup pwuser postgres psql\n");
	for (m = 0; m < sizeof(markers) / sizeof(markers[0]); m++)
		assert_null(strstr(l.buf, markers[m]));
	/* raw SQL carries its literals; the normalized form must not */
	for (line = strtok_r(l.buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sql = strstr(line, "stmt [");
		char *close = sql ? strrchr(line, ']') : NULL;
		const struct sql_info *in;

		if (!close)
			continue;
		*close = '\0';
		in = sql_cache_lookup(cache, sql + 6);
		if (in->normalized) {
			assert_null(strstr(in->normalized, "MARKER_SQL_LITERAL"));
			assert_null(strstr(in->normalized, "SECRET"));
		}
	}
	sql_cache_free(cache);
	log_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_psql_simple),
		cmocka_unit_test(test_ssl_refused_multi),
		cmocka_unit_test(test_tls),
		cmocka_unit_test(test_pgbench),
		cmocka_unit_test(test_pipelines),
		cmocka_unit_test(test_pipeline_error),
		cmocka_unit_test(test_midstream),
		cmocka_unit_test(test_extended_names),
		cmocka_unit_test(test_extended_error),
		cmocka_unit_test(test_copy_extended),
		cmocka_unit_test(test_skip),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_gss_then_ssl),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_privacy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

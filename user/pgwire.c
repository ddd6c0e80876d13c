/* Passive PostgreSQL v3 decoder.  Each direction is a small state machine
 * that keeps only the prefix of a message it needs (names, SQL text, tags)
 * and counts its way over the rest, so row and copy data are never held.
 * Replies are matched to a FIFO of pending requests (pgwire.md).
 *
 * Timing: a request's start_ns is when its message was complete (the Query;
 * for the extended protocol the Execute, or the Parse/Bind that failed);
 * end_ns is when its CommandComplete or ErrorResponse was complete. */
#include <linux/types.h>

#include "pgwire.h"
#include "seams.h"
#include "sqltables.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define STARTUP_MAX   10000           /* the server's own limit */
#define MSG_MAX       (1u << 30)      /* longer is garbage */
#define NAME_KEEP     1024            /* statement and portal names */
#define SMALL_KEEP    512             /* CommandComplete tag, error fields */
#define WIN_MAX       (PG_SQL_MAX + 2 * NAME_KEEP) /* resync window */
#define FIFO_MAX      65536           /* pending requests per connection */
#define NAMES_MAX     4096            /* prepared statements per connection */
#define PORTALS_MAX   256
#define NAME_BUCKETS  64

#define CODE_CANCEL   80877102u
#define CODE_SSL      80877103u
#define CODE_GSSENC   80877104u

enum mode {
	M_STARTUP,      /* untyped startup-phase message expected */
	M_HDR,          /* collecting a type byte and length */
	M_BODY,         /* inside a body: keeping a prefix, counting the rest */
	M_SSL_ANSWER,   /* one bare byte answering SSLRequest/GSSENCRequest */
	M_RESYNC,       /* looking for a message start in a window of bytes */
	M_DEAD,         /* encrypted: nothing more to decode */
};

struct half {
	enum mode mode;
	uint8_t hdr[8];
	uint8_t hdr_have;
	uint8_t type;           /* 0 for a startup-phase message */
	uint8_t nuls;           /* NULs kept so far (Bind keeps two names only) */
	uint32_t code;          /* startup-phase request code */
	uint32_t body_len, body_left;
	uint8_t *kbuf;          /* kept prefix of the body */
	size_t klen, kcap, kmax;
	uint8_t *win;           /* resync window */
	size_t wlen;
};

/* Refcounted SQL text shared by the statement map, portals and FIFO. */
struct pg_sql {
	unsigned refs;
	int truncated;
	char text[];
};

enum pend_kind { P_PARSE, P_BIND, P_DESCRIBE, P_EXECUTE, P_CLOSE, P_SYNC, P_QUERY, P_FUNC };

struct pend {
	enum pend_kind kind;
	uint64_t ts;
	struct pg_sql *sql;     /* PARSE: its text; BIND/EXECUTE: the statement's;
				 * QUERY: its one statement, or every statement
				 * when truncated; NULL: unknown */
	struct pg_sql **stmts;  /* QUERY of two or more statements: each */
	uint32_t nstmts, next;  /* QUERY: the next CommandComplete is stmts[next] */
	int failed;             /* QUERY: an error ended the batch */
};

struct name_ent {
	struct name_ent *next;
	struct pg_sql *sql;
	char name[];
};

struct namemap {
	struct name_ent *b[NAME_BUCKETS];
	size_t n, max;
	unsigned sweep;         /* where eviction looks next */
};

struct pg_conn {
	struct pg_callbacks cb;
	void *ctx;
	struct half half[2];
	struct pg_stats stats;
	uint64_t now;
	int aligned;            /* replies can be matched to the FIFO */
	int backend_quiet;      /* mid-stream start, and no reply seen yet */
	int copy_in;            /* client is sending CopyData */
	uint8_t ssl_answer;     /* 'S' or 'G' when a bare answer byte is due */
	struct pend *ring;
	size_t rhead, rcount, rcap;
	struct namemap stmts, portals;
};

/* ---- small helpers ------------------------------------------------------- */

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bounds-checked reader over a kept body. */
struct rd {
	const uint8_t *p;
	size_t n, off;
	int err;
};

static const char *rd_str(struct rd *r)
{
	const uint8_t *z;
	const char *s;

	/* An empty body has no buffer at all: check before any arithmetic on it. */
	if (r->err || r->off >= r->n || !(z = memchr(r->p + r->off, 0, r->n - r->off))) {
		r->err = 1;
		return NULL;
	}
	s = (const char *)r->p + r->off;
	r->off = z - r->p + 1;
	return s;
}

static uint32_t rd_int(struct rd *r, size_t size)
{
	uint32_t v = 0;

	if (r->err || r->n - r->off < size) {
		r->err = 1;
		return 0;
	}
	while (size--)
		v = v << 8 | r->p[r->off++];
	return v;
}

static void rd_skip(struct rd *r, size_t n)
{
	if (r->err || r->n - r->off < n)
		r->err = 1;
	else
		r->off += n;
}

static int rd_done(const struct rd *r)
{
	return !r->err && r->off == r->n;
}

static struct pg_sql *sql_new(const char *text, size_t len, int truncated)
{
	struct pg_sql *s = malloc(sizeof(*s) + len + 1);

	if (!s)
		return NULL;
	s->refs = 1;
	s->truncated = truncated;
	memcpy(s->text, text, len);
	s->text[len] = '\0';
	return s;
}

static struct pg_sql *sql_ref(struct pg_sql *s)
{
	if (s)
		s->refs++;
	return s;
}

static void sql_unref(struct pg_sql *s)
{
	if (s && !--s->refs)
		free(s);
}

/* ---- name -> SQL maps (prepared statements, portals) -------------------- */

static unsigned name_hash(const char *s)
{
	unsigned h = 2166136261u;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h % NAME_BUCKETS;
}

static struct name_ent **map_find(struct namemap *m, const char *name)
{
	struct name_ent **pp = &m->b[name_hash(name)];

	while (*pp && strcmp((*pp)->name, name))
		pp = &(*pp)->next;
	return pp;
}

static void map_unlink(struct namemap *m, struct name_ent **pp)
{
	struct name_ent *e = *pp;

	*pp = e->next;
	sql_unref(e->sql);
	free(e);
	m->n--;
}

static void map_del(struct namemap *m, const char *name)
{
	struct name_ent **pp = map_find(m, name);

	if (*pp)
		map_unlink(m, pp);
}

static void map_clear(struct namemap *m)
{
	size_t i;

	for (i = 0; i < NAME_BUCKETS; i++)
		while (m->b[i])
			map_unlink(m, &m->b[i]);
}

/* A full map forgets some entry: a later Bind of it is then "unknown". */
static void map_evict_one(struct namemap *m)
{
	while (m->n) {
		struct name_ent **pp = &m->b[m->sweep++ % NAME_BUCKETS];

		if (*pp) {
			map_unlink(m, pp);
			return;
		}
	}
}

static void map_set(struct namemap *m, const char *name, struct pg_sql *sql)
{
	struct name_ent **pp = map_find(m, name), *e;
	size_t len;

	if (*pp) {
		sql_unref((*pp)->sql);
		(*pp)->sql = sql_ref(sql);
		return;
	}
	if (m->n >= m->max) {
		map_evict_one(m);
		pp = map_find(m, name);
	}
	len = strlen(name);
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return;
	memcpy(e->name, name, len + 1);
	e->sql = sql_ref(sql);
	e->next = NULL;
	*pp = e;
	m->n++;
}

/* NULL: not known, or known to have unknown SQL. */
static struct pg_sql *map_get(struct namemap *m, const char *name)
{
	struct name_ent *e = *map_find(m, name);

	return e ? e->sql : NULL;
}

/* ---- pending request FIFO ------------------------------------------------ */

static void pend_release(struct pend *p)
{
	uint32_t i;

	sql_unref(p->sql);
	for (i = 0; i < p->nstmts; i++)
		sql_unref(p->stmts[i]);
	free(p->stmts);
}

static struct pend *fifo_at(struct pg_conn *c, size_t i)
{
	return &c->ring[(c->rhead + i) & (c->rcap - 1)];
}

static struct pend *fifo_head(struct pg_conn *c)
{
	return c->rcount ? fifo_at(c, 0) : NULL;
}

static void fifo_pop(struct pg_conn *c)
{
	pend_release(fifo_head(c));
	c->rhead = (c->rhead + 1) & (c->rcap - 1);
	c->rcount--;
}

static void fifo_clear(struct pg_conn *c)
{
	while (c->rcount)
		fifo_pop(c);
}

/* Takes over the references in *p; on failure they are released and the
 * replies can no longer be matched. */
static void fifo_push(struct pg_conn *c, struct pend *p)
{
	p->ts = c->now;
	if (c->rcount == c->rcap) {
		size_t cap = c->rcap ? c->rcap * 2 : 16, i;
		struct pend *ring = cap <= FIFO_MAX ? malloc(cap * sizeof(*ring)) : NULL;

		if (!ring) {
			pend_release(p);
			c->aligned = 0;
			return;
		}
		for (i = 0; i < c->rcount; i++)
			ring[i] = *fifo_at(c, i);
		free(c->ring);
		c->ring = ring;
		c->rcap = cap;
		c->rhead = 0;
	}
	*fifo_at(c, c->rcount++) = *p;
	/* Joined mid-stream on an idle connection (a pool's, typically): the
	 * first request seen is answered by the first reply seen. */
	if (c->backend_quiet)
		c->aligned = 1;
}

/* Remove entries behind the head that match kind (Syncs before CopyIn). */
static void fifo_drop_behind(struct pg_conn *c, enum pend_kind kind)
{
	size_t i, o = 1;

	for (i = 1; i < c->rcount; i++) {
		struct pend *p = fifo_at(c, i);

		if (p->kind == kind)
			pend_release(p);
		else
			*fifo_at(c, o++) = *p;
	}
	c->rcount = c->rcount ? o : 0;
}

/* ---- reporting ------------------------------------------------------------ */

static void forget_deallocated(struct pg_conn *c, const char *sql);

static void report(struct pg_conn *c, const struct pend *p, struct pg_sql *sql,
		   const char *tag, const char *sqlstate)
{
	struct pg_stmt st = {
		.sql = sql && !sql->truncated ? sql->text : NULL,
		.tag = tag,
		.sqlstate = sqlstate,
		.start_ns = p->ts,
		.end_ns = c->now,
		.truncated = sql && sql->truncated,
	};

	if (st.truncated)
		c->stats.truncated_statements++;
	else if (!st.sql)
		c->stats.unknown_statements++;
	/* Only these tags can mean statements went away, and a tag is
	 * cheaper to test than the text of every statement. */
	if (tag && st.sql && (!strncmp(tag, "DEALLOCATE", 10) || !strcmp(tag, "DISCARD ALL")))
		forget_deallocated(c, st.sql);
	if (c->cb.statement)
		c->cb.statement(c->ctx, &st);
}

static void encrypted(struct pg_conn *c)
{
	c->half[PG_FRONTEND].mode = M_DEAD;
	c->half[PG_BACKEND].mode = M_DEAD;
	fifo_clear(c);
	if (c->cb.encrypted)
		c->cb.encrypted(c->ctx);
}

/* Lost our footing in one direction: replies cannot be trusted to match the
 * FIFO until the next ReadyForQuery, which then clears it. */
static void unalign(struct pg_conn *c)
{
	c->aligned = 0;
	c->copy_in = 0;
	c->backend_quiet = 0;
}

/* ---- SQL-level DEALLOCATE / DISCARD ----------------------------------------- */

static const char *skip_space(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

static const char *keyword(const char *s, const char *kw)
{
	size_t n = strlen(kw);

	s = skip_space(s);
	if (strncasecmp(s, kw, n) || isalnum((unsigned char)s[n]) || s[n] == '_')
		return NULL;
	return s + n;
}

/* DEALLOCATE [PREPARE] name: quoted names keep case, others fold. */
static void forget_deallocated(struct pg_conn *c, const char *sql)
{
	const char *s = keyword(sql, "deallocate"), *t;
	char name[NAME_KEEP];
	size_t n = 0;

	if (!s) {
		if ((s = keyword(sql, "discard")) && keyword(s, "all")) {
			map_clear(&c->stmts);
			map_clear(&c->portals);
		}
		return;
	}
	if ((t = keyword(s, "prepare")))
		s = t;
	if (keyword(s, "all")) {
		map_clear(&c->stmts);
		return;
	}
	s = skip_space(s);
	if (*s == '"') {
		for (s++; *s && n < sizeof(name) - 1; s++) {
			if (*s == '"' && *++s != '"')
				break;
			name[n++] = *s;
		}
	} else {
		for (; (isalnum((unsigned char)*s) || *s == '_' || *s == '$' || (*s & 0x80)) &&
		       n < sizeof(name) - 1; s++)
			name[n++] = tolower((unsigned char)*s);
	}
	name[n] = '\0';
	if (n)
		map_del(&c->stmts, name);
}

/* ---- frontend messages ---------------------------------------------------- */

static void go_resync(struct pg_conn *c, enum pg_dir dir);

static void on_startup(struct pg_conn *c, struct half *h, struct rd *r)
{
	const char *user = NULL, *db = NULL, *app = NULL, *k, *v;

	if (h->code == CODE_SSL || h->code == CODE_GSSENC) {
		c->ssl_answer = h->code == CODE_SSL ? 'S' : 'G';
		if (c->half[PG_BACKEND].mode == M_HDR && !c->half[PG_BACKEND].hdr_have)
			c->half[PG_BACKEND].mode = M_SSL_ANSWER;
		return;
	}
	if (h->code == CODE_CANCEL)
		return;
	if (h->code >> 16 != 3) {       /* not protocol 3.x: nothing we can read */
		go_resync(c, PG_FRONTEND);
		return;
	}
	h->mode = M_HDR;
	while ((k = rd_str(r)) && *k && (v = rd_str(r))) {
		if (!strcmp(k, "user"))
			user = v;
		else if (!strcmp(k, "database"))
			db = v;
		else if (!strcmp(k, "application_name"))
			app = v;
	}
	if (c->cb.startup)
		c->cb.startup(c->ctx, user, db, app);
}

struct split_ctx {
	struct pend *p;
	size_t cap;
	int oom;
};

static void add_split(void *ctx, const char *stmt, size_t len)
{
	struct split_ctx *s = ctx;
	struct pend *p = s->p;
	struct pg_sql *sql = sql_new(stmt, len, 0);

	if (!sql) {
		s->oom = 1;
		return;
	}
	/* Most Queries hold one statement: it goes where a Query's unknown
	 * SQL would, and needs no array. */
	if (!p->sql && !p->nstmts) {
		p->sql = sql;
		return;
	}
	if (p->nstmts + 2 > s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 4;
		struct pg_sql **v = realloc(p->stmts, cap * sizeof(*v));

		if (!v) {
			sql_unref(sql);
			s->oom = 1;
			return;
		}
		p->stmts = v;
		s->cap = cap;
	}
	if (p->sql) {
		p->stmts[p->nstmts++] = p->sql;
		p->sql = NULL;
	}
	p->stmts[p->nstmts++] = sql;
}

/* A truncated Query's statement count is unknown: each of its completions
 * is then reported with unknown SQL (nstmts 0). */
static void on_query(struct pg_conn *c, const struct half *h)
{
	struct pend p = { .kind = P_QUERY };
	struct split_ctx s = { .p = &p };
	/* An empty Query has no buffer at all. */
	const uint8_t *z = h->klen ? memchr(h->kbuf, 0, h->klen) : NULL;

	if (z && h->klen == h->body_len)
		sql_split((const char *)h->kbuf, add_split, &s);
	else
		p.sql = sql_new("", 0, 1);
	if (s.oom) {
		pend_release(&p);
		unalign(c);
		return;
	}
	fifo_push(c, &p);
}

/* Parse: name\0 query\0 ... ; a query cut by the keep limit is truncated.
 * Requests with unreadable names are still queued to keep replies in step. */
static void on_parse(struct pg_conn *c, struct rd *r)
{
	const char *name = rd_str(r), *q = rd_str(r);
	struct pend p = { .kind = P_PARSE };

	p.sql = q ? sql_new(q, strlen(q), 0) : sql_new("", 0, 1);
	if (name)
		map_set(&c->stmts, name, p.sql);
	fifo_push(c, &p);
}

static void on_bind(struct pg_conn *c, struct rd *r)
{
	const char *portal = rd_str(r), *stmt = rd_str(r);
	struct pend p = { .kind = P_BIND };

	if (stmt) {
		p.sql = sql_ref(map_get(&c->stmts, stmt));
		map_set(&c->portals, portal, p.sql);
	}
	fifo_push(c, &p);
}

static void on_execute(struct pg_conn *c, struct rd *r)
{
	const char *portal = rd_str(r);
	struct pend p = { .kind = P_EXECUTE };

	if (portal)
		p.sql = sql_ref(map_get(&c->portals, portal));
	fifo_push(c, &p);
}

static void on_close(struct pg_conn *c, struct rd *r)
{
	uint8_t what = rd_int(r, 1);
	const char *name = rd_str(r);
	struct pend p = { .kind = P_CLOSE };

	if (name)
		map_del(what == 'S' ? &c->stmts : &c->portals, name);
	fifo_push(c, &p);
}

static void frontend_msg(struct pg_conn *c, struct half *h)
{
	struct rd r = { .p = h->kbuf, .n = h->klen };
	struct pend p = { .kind = P_SYNC };

	switch (h->type) {
	case 0:   on_startup(c, h, &r); break;
	case 'Q': on_query(c, h); break;
	case 'P': on_parse(c, &r); break;
	case 'B': on_bind(c, &r); break;
	case 'E': on_execute(c, &r); break;
	case 'C': on_close(c, &r); break;
	case 'X':
		if (c->cb.terminate)
			c->cb.terminate(c->ctx);
		break;
	case 'D':
		p.kind = P_DESCRIBE;
		fifo_push(c, &p);
		break;
	case 'S':
		/* the server ignores Sync during copy-in */
		if (!c->copy_in)
			fifo_push(c, &p);
		break;
	case 'F':
		p.kind = P_FUNC;
		fifo_push(c, &p);
		break;
	case 'c':
	case 'f':
		c->copy_in = 0;
		break;
	}
}

/* ---- backend messages ------------------------------------------------------ */

static const char *error_code(struct rd *r)
{
	uint8_t field;

	while (!r->err && (field = rd_int(r, 1))) {
		const char *v = rd_str(r);

		if (field == 'C')
			return v;
	}
	return NULL;
}

/* After an error in the extended protocol the server skips to Sync. */
static void drop_to_sync(struct pg_conn *c)
{
	while (c->rcount && fifo_head(c)->kind != P_SYNC)
		fifo_pop(c);
}

static void on_error(struct pg_conn *c, struct pend *p, struct rd *r)
{
	const char *state = error_code(r);

	c->copy_in = 0;
	if (!p)
		return;
	switch (p->kind) {
	case P_QUERY:
		if (!p->failed)
			report(c, p, p->next < p->nstmts ? p->stmts[p->next] : p->sql, NULL, state);
		p->failed = 1;
		break;
	case P_PARSE:
	case P_BIND:
	case P_EXECUTE:
		report(c, p, p->sql, NULL, state);
		/* fall through */
	case P_DESCRIBE:
	case P_CLOSE:
		drop_to_sync(c);
		break;
	case P_SYNC:
	case P_FUNC:
		break;
	}
}

static void on_complete(struct pg_conn *c, struct pend *p, struct rd *r)
{
	const char *tag = rd_str(r);

	if (!tag)
		tag = "";
	if (p && p->kind == P_EXECUTE) {
		report(c, p, p->sql, tag, NULL);
		fifo_pop(c);
	} else if (p && p->kind == P_QUERY) {
		if (!p->failed)
			report(c, p, p->next < p->nstmts ? p->stmts[p->next] : p->sql, tag, NULL);
		p->next++;
	} else {
		unalign(c);
	}
}

/* ReadyForQuery ends a Query, a FunctionCall or a Sync'ed pipeline. */
static void on_ready(struct pg_conn *c)
{
	c->copy_in = 0;
	if (!c->aligned) {
		fifo_clear(c);
		c->aligned = 1;
		return;
	}
	while (c->rcount) {
		enum pend_kind k = fifo_head(c)->kind;

		fifo_pop(c);
		if (k == P_SYNC || k == P_QUERY || k == P_FUNC)
			break;
	}
}

/* Pop the head if it is of kind k, else the FIFO no longer matches. */
static void expect(struct pg_conn *c, struct pend *p, enum pend_kind k)
{
	if (p && p->kind == k)
		fifo_pop(c);
	else
		unalign(c);
}

static void backend_msg(struct pg_conn *c, struct half *h)
{
	struct rd r = { .p = h->kbuf, .n = h->klen };
	struct pend *p = fifo_head(c);

	if (h->type == 'Z') {
		on_ready(c);
		return;
	}
	if (!c->aligned)
		return;
	switch (h->type) {
	case 'E': on_error(c, p, &r); break;
	case 'C': on_complete(c, p, &r); break;
	case '1': expect(c, p, P_PARSE); break;
	case '2': expect(c, p, P_BIND); break;
	case '3': expect(c, p, P_CLOSE); break;
	case 'n': expect(c, p, P_DESCRIBE); break;
	case 't':
		if (!p || p->kind != P_DESCRIBE)
			unalign(c);
		break;
	case 'T':
		/* a Describe's answer, or the row header of a result */
		if (p && p->kind == P_DESCRIBE)
			fifo_pop(c);
		break;
	case 'I':
		if (p && p->kind == P_QUERY)
			p->next++;
		else
			expect(c, p, P_EXECUTE);
		break;
	case 's':
		/* suspended portal: its final Execute reports it */
		expect(c, p, P_EXECUTE);
		break;
	case 'G':
		c->copy_in = 1;
		fifo_drop_behind(c, P_SYNC);
		break;
	}
}

/* ---- framing ------------------------------------------------------------------ */

/* Message types by direction (include/seams.h): a table, since every
 * header and every resynchronization candidate asks. */
#define LEGAL(c) [c] = 1,
static const uint8_t legal_types[2][256] = {
	[PG_FRONTEND] = { PG_FRONTEND_TYPES(LEGAL) },
	[PG_BACKEND] = { PG_BACKEND_TYPES(LEGAL) },
};
#undef LEGAL

static int legal_type(enum pg_dir dir, uint8_t t)
{
	return legal_types[dir == PG_FRONTEND ? PG_FRONTEND : PG_BACKEND][t];
}

/* How much of a body the handlers need; the rest is only counted. */
static size_t keep_limit(enum pg_dir dir, uint8_t type)
{
	if (dir == PG_FRONTEND) {
		switch (type) {
		case 0:   return STARTUP_MAX;
		case 'Q': return PG_SQL_MAX;
		case 'P': return PG_SQL_MAX + NAME_KEEP;
		case 'B': return 2 * NAME_KEEP;
		case 'E': case 'C': case 'D': return NAME_KEEP + 8;
		}
		return 0;
	}
	switch (type) {
	case 'C': case 'E': return SMALL_KEEP;
	case 'Z': return 1;
	}
	return 0;
}

static void message_done(struct pg_conn *c, enum pg_dir dir)
{
	struct half *h = &c->half[dir];

	c->stats.messages++;
	if (h->mode == M_BODY)
		h->mode = h->type ? M_HDR : M_STARTUP;
	if (dir == PG_FRONTEND)
		frontend_msg(c, h);
	else
		backend_msg(c, h);
	h->hdr_have = 0;
	h->klen = 0;
	/* do not pin a 64 KiB buffer to every idle connection */
	if (h->kcap > 4096) {
		free(h->kbuf);
		h->kbuf = NULL;
		h->kcap = 0;
	}
}

static void go_resync(struct pg_conn *c, enum pg_dir dir)
{
	struct half *h = &c->half[dir];

	c->stats.undecodable_bytes += h->wlen;
	h->wlen = 0;
	h->mode = M_RESYNC;
	h->hdr_have = 0;
	h->klen = 0;
	unalign(c);
}

/* A complete header, also kept in h->hdr: start the body, or give up on
 * this position. */
static void header_done(struct pg_conn *c, enum pg_dir dir, const uint8_t *hdr)
{
	struct half *h = &c->half[dir];
	int startup = h->mode == M_STARTUP;
	uint32_t len = be32(hdr + (startup ? 0 : 1));

	if (startup) {
		h->type = 0;
		h->code = be32(hdr + 4);
		if (len < 8 || len > STARTUP_MAX)
			goto bad;
		len -= 4;
	} else {
		h->type = hdr[0];
		if (!legal_type(dir, h->type) || len < 4 || len > MSG_MAX)
			goto bad;
	}
	h->body_len = h->body_left = len - 4;
	h->kmax = keep_limit(dir, h->type);
	h->nuls = 0;
	h->klen = 0;
	if (!h->body_left) {
		message_done(c, dir);
		return;
	}
	h->mode = M_BODY;
	return;
bad:
	/* retry from the next byte: the header bytes go to the resync window */
	{
		uint8_t hdr[8];
		size_t n = h->hdr_have - 1;

		memcpy(hdr, h->hdr + 1, n);
		go_resync(c, dir);
		c->stats.undecodable_bytes++;
		h->win = h->win ? h->win : malloc(WIN_MAX);
		if (h->win) {
			memcpy(h->win, hdr, n);
			h->wlen = n;
		} else {
			c->stats.undecodable_bytes += n;
		}
	}
}

static int keep_bytes(struct half *h, const uint8_t *p, size_t n)
{
	size_t want = h->klen + n;

	if (want > h->kcap) {
		size_t cap = h->kcap ? h->kcap : 256;
		uint8_t *k;

		while (cap < want)
			cap *= 2;
		if (cap > h->kmax)
			cap = h->kmax;
		k = realloc(h->kbuf, cap);
		if (!k)
			return -1;
		h->kbuf = k;
		h->kcap = cap;
	}
	memcpy(h->kbuf + h->klen, p, n);
	h->klen += n;
	return 0;
}

/* Bind keeps its two names and stops before the parameter values. */
static size_t bind_prefix(struct half *h, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && h->nuls < 2; i++)
		if (!p[i])
			h->nuls++;
	if (h->nuls == 2)
		h->kmax = h->klen + i;
	return i;
}

static size_t consume_body(struct pg_conn *c, enum pg_dir dir, const uint8_t *p, size_t n)
{
	struct half *h = &c->half[dir];
	size_t take = n < h->body_left ? n : h->body_left;
	size_t keep = h->kmax > h->klen ? h->kmax - h->klen : 0;

	if (keep > take)
		keep = take;
	if (h->type == 'B' && dir == PG_FRONTEND)
		keep = bind_prefix(h, p, keep);
	if (keep && keep_bytes(h, p, keep) < 0) {
		c->stats.undecodable_bytes += take;
		go_resync(c, dir);
		return take;
	}
	h->body_left -= take;
	if (!h->body_left)
		message_done(c, dir);
	return take;
}

/* Decode from p in any mode but M_RESYNC; returns the bytes used. */
static size_t consume(struct pg_conn *c, enum pg_dir dir, const uint8_t *p, size_t n)
{
	struct half *h = &c->half[dir];
	size_t need;

	switch (h->mode) {
	case M_DEAD:
		c->stats.encrypted_bytes += n;
		return n;
	case M_SSL_ANSWER:
		if (*p == c->ssl_answer) {
			encrypted(c);
			return 1;
		}
		h->mode = M_HDR;
		return *p == 'N';       /* anything else is a typed message, e.g. E */
	case M_BODY:
		return consume_body(c, dir, p, n);
	case M_STARTUP:
		/* PG17 direct SSL: a TLS ClientHello instead of a startup packet */
		if (!h->hdr_have && *p == 0x16) {
			encrypted(c);
			return 0;
		}
		/* fall through */
	case M_HDR:
		need = (h->mode == M_STARTUP ? 8 : 5) - h->hdr_have;
		if (need > n)
			need = n;
		memcpy(h->hdr + h->hdr_have, p, need);
		h->hdr_have += need;
		/* A header whole in p is read from there: read back from
		 * h->hdr right after the copy, the length spans two of its
		 * stores and waits for them (a third of the decoder's time
		 * under pgbench, tests/bench/decoder_throughput.sh). */
		if (h->hdr_have == (h->mode == M_STARTUP ? 8 : 5))
			header_done(c, dir, need == h->hdr_have ? p : h->hdr);
		return need;
	case M_RESYNC:
		break;
	}
	return 0;
}

/* ---- resynchronization ---------------------------------------------------------- */

enum verdict { INVALID, NEED_MORE, VALID };

static int cstrings_exact(const uint8_t *b, size_t n, int count)
{
	struct rd r = { .p = b, .n = n };

	while (count--)
		rd_str(&r);
	return rd_done(&r);
}

/* Does a body have exactly the shape its type prescribes? */
static int body_ok(enum pg_dir dir, uint8_t t, const uint8_t *b, size_t n)
{
	struct rd r = { .p = b, .n = n };
	uint32_t k, i;

	if (dir == PG_FRONTEND) {
		switch (t) {
		case 'Q':
			if (!n || memchr(b, 0, n) != b + n - 1)
				return 0;
			for (i = 0; i + 1 < n; i++)
				if (b[i] < 0x20 && !isspace(b[i]))
					return 0;
			return 1;
		case 'P':
			rd_str(&r);
			rd_str(&r);
			rd_skip(&r, 4 * rd_int(&r, 2));
			return rd_done(&r);
		case 'B':
			rd_str(&r);
			rd_str(&r);
			rd_skip(&r, 2 * rd_int(&r, 2));
			for (k = rd_int(&r, 2), i = 0; i < k && !r.err; i++) {
				uint32_t len = rd_int(&r, 4);

				if (len != 0xffffffffu)
					rd_skip(&r, len);
			}
			rd_skip(&r, 2 * rd_int(&r, 2));
			return rd_done(&r);
		case 'E':
			rd_str(&r);
			rd_skip(&r, 4);
			return rd_done(&r);
		case 'C': case 'D':
			return n >= 2 && (b[0] == 'S' || b[0] == 'P') && cstrings_exact(b + 1, n - 1, 1);
		case 'S': case 'H': case 'X': case 'c':
			return n == 0;
		case 'f':
			return cstrings_exact(b, n, 1);
		case 'd':
			return 1;
		}
		return 0;       /* p, F: too shapeless to trust */
	}
	switch (t) {
	case 'Z':
		return n == 1 && (b[0] == 'I' || b[0] == 'T' || b[0] == 'E');
	case '1': case '2': case '3': case 'n': case 'I': case 's': case 'c':
		return n == 0;
	case 'C':
		return n >= 2 && isupper(b[0]) && cstrings_exact(b, n, 1);
	case 'E': case 'N':
		while (!r.err && rd_int(&r, 1))
			rd_str(&r);
		return rd_done(&r);
	case 'T':
		for (k = rd_int(&r, 2), i = 0; i < k && !r.err; i++) {
			rd_str(&r);
			rd_skip(&r, 18);
		}
		return rd_done(&r);
	case 'D':
		for (k = rd_int(&r, 2), i = 0; i < k && !r.err; i++) {
			uint32_t len = rd_int(&r, 4);

			if (len != 0xffffffffu)
				rd_skip(&r, len);
		}
		return rd_done(&r);
	case 'S':
		return cstrings_exact(b, n, 2);
	case 'K':
		return n >= 8 && n <= 260;
	case 'R':
		k = rd_int(&r, 4);
		return !r.err && (k == 0 ? n == 4 : (k <= 12 && k != 1 && k != 4));
	case 't':
		return n >= 2 && n == 2 + 4 * (size_t)((b[0] << 8) | b[1]);
	case 'G': case 'H': case 'W':
		return n >= 3 && b[0] <= 1 && n == 3 + 2 * (size_t)((b[1] << 8) | b[2]);
	case 'A':
		rd_skip(&r, 4);
		return cstrings_exact(b + 4, n >= 4 ? n - 4 : 0, 2) && !r.err;
	case 'd': case 'v': case 'V':
		return 1;
	}
	return 0;
}

/* Only structure-free bodies need the next header to vouch for them. */
static int weak_type(uint8_t t)
{
	return t == 'd' || t == 'v' || t == 'V';
}

static int fixed_len_ok(enum pg_dir dir, uint8_t t, uint32_t len)
{
	if (dir == PG_BACKEND && t == 'Z')
		return len == 5;
	if (strchr(dir == PG_BACKEND ? "123nIsc" : "SHXc", t))
		return len == 4;
	return len >= 4 && len <= MSG_MAX;
}

/* Is b[0] a plausible message start?  See pgwire.md "Resynchronizing". */
static enum verdict check_at(enum pg_dir dir, const uint8_t *b, size_t avail)
{
	uint8_t t = b[0];
	uint32_t len;
	size_t total;

	if (!legal_type(dir, t))
		return INVALID;
	if (avail < 5)
		return NEED_MORE;
	len = be32(b + 1);
	if (len < 4 || len > WIN_MAX - 16 || !fixed_len_ok(dir, t, len))
		return INVALID;
	total = 1 + (size_t)len;
	if (avail < total)
		return NEED_MORE;
	if (!body_ok(dir, t, b + 5, len - 4))
		return INVALID;
	if (dir == PG_BACKEND && strchr("Z123n", t))
		return VALID;   /* strong anchors */
	if (avail == total)
		/* a write usually ends at a message end: trust a shaped body */
		return weak_type(t) ? NEED_MORE : VALID;
	if (!legal_type(dir, b[total]))
		return INVALID;
	if (avail < total + 5)
		return NEED_MORE;
	return fixed_len_ok(dir, b[total], be32(b + total + 1)) ? VALID : INVALID;
}

/* Append to the window and look for a message start.  On success the mode is
 * M_HDR and the window holds the bytes to decode from, starting there. */
static size_t resync_take(struct pg_conn *c, enum pg_dir dir, const uint8_t *p, size_t n)
{
	struct half *h = &c->half[dir];
	enum verdict v = INVALID;
	size_t take, i;

	if (!h->win && !(h->win = malloc(WIN_MAX))) {
		c->stats.undecodable_bytes += n;
		return n;
	}
	if (h->wlen == WIN_MAX) {       /* cannot happen: a full window decides */
		c->stats.undecodable_bytes++;
		memmove(h->win, h->win + 1, --h->wlen);
	}
	take = WIN_MAX - h->wlen < n ? WIN_MAX - h->wlen : n;
	memcpy(h->win + h->wlen, p, take);
	h->wlen += take;
	for (i = 0; i < h->wlen; i++)
		if ((v = check_at(dir, h->win + i, h->wlen - i)) != INVALID)
			break;
	c->stats.undecodable_bytes += i;
	memmove(h->win, h->win + i, h->wlen - i);
	h->wlen -= i;
	if (v == VALID) {
		c->stats.resyncs++;
		h->mode = M_HDR;
		h->hdr_have = 0;
	}
	return take;
}

struct src {
	const uint8_t *p;
	size_t n;
};

void pg_conn_feed(struct pg_conn *c, enum pg_dir dir, const uint8_t *buf, size_t len, uint64_t ts_ns)
{
	struct half *h = &c->half[dir];
	struct src in = { buf, len }, rp = { NULL, 0 };
	uint8_t *owned = NULL;

	c->now = ts_ns;
	if (dir == PG_BACKEND && len)
		c->backend_quiet = 0;
	while (rp.n || in.n) {
		struct src *s = rp.n ? &rp : &in;
		size_t used;

		if (h->mode != M_RESYNC) {
			used = consume(c, dir, s->p, s->n);
			s->p += used;
			s->n -= used;
			continue;
		}
		used = resync_take(c, dir, s->p, s->n);
		s->p += used;
		s->n -= used;
		if (h->mode == M_RESYNC)
			continue;
		/* replay the window, then what was left of the replay */
		{
			uint8_t *next = malloc(h->wlen + rp.n);

			if (!next) {
				c->stats.undecodable_bytes += h->wlen + rp.n;
				h->wlen = 0;
				rp.n = 0;
				go_resync(c, dir);
				continue;
			}
			memcpy(next, h->win, h->wlen);
			if (rp.n)
				memcpy(next + h->wlen, rp.p, rp.n);
			rp.p = next;
			rp.n += h->wlen;
			h->wlen = 0;
			free(owned);
			owned = next;
			free(h->win);
			h->win = NULL;
		}
	}
	free(owned);
}

void pg_conn_skip(struct pg_conn *c, enum pg_dir dir, uint64_t n, uint64_t ts_ns)
{
	struct half *h = &c->half[dir];

	c->now = ts_ns;
	if (dir == PG_BACKEND || n)
		c->backend_quiet = 0;
	if (h->mode == M_DEAD) {
		c->stats.encrypted_bytes += n;
		return;
	}
	/* inside a body whose needed prefix is already kept (DataRow, CopyData
	 * keep nothing): counting keeps us in sync */
	if (h->mode == M_BODY && n <= h->body_left && h->klen >= h->kmax) {
		h->body_left -= n;
		if (!h->body_left)
			message_done(c, dir);
		return;
	}
	c->stats.undecodable_bytes += n;
	go_resync(c, dir);
}

void pg_conn_elide(struct pg_conn *c, enum pg_dir dir, uint64_t n, uint64_t ts_ns)
{
	struct half *h = &c->half[dir];

	c->now = ts_ns;
	if (dir == PG_BACKEND)
		c->backend_quiet = 0;
	if (h->mode == M_DEAD) {
		c->stats.encrypted_bytes += n;
		return;
	}
	if (h->mode == M_BODY) {
		uint64_t k = n < h->body_left ? n : h->body_left;

		h->body_left -= k;
		n -= k;
		if (!h->body_left)
			message_done(c, dir);
	}
	/* What is left is whole messages, so it must start at a boundary. */
	if (!n || (h->mode == M_HDR && !h->hdr_have))
		return;
	c->stats.undecodable_bytes += n;
	go_resync(c, dir);
}

/* ---- lifetime ----------------------------------------------------------------- */

struct pg_conn *pg_conn_new(const struct pg_callbacks *cb, void *ctx, int synced)
{
	struct pg_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	if (cb)
		c->cb = *cb;
	c->ctx = ctx;
	c->stmts.max = NAMES_MAX;
	c->portals.max = PORTALS_MAX;
	if (synced) {
		c->aligned = 1;
		c->half[PG_FRONTEND].mode = M_STARTUP;
		c->half[PG_BACKEND].mode = M_HDR;
	} else {
		c->half[PG_FRONTEND].mode = M_RESYNC;
		c->half[PG_BACKEND].mode = M_RESYNC;
		c->backend_quiet = 1;
	}
	return c;
}

void pg_conn_free(struct pg_conn *c)
{
	int i;

	if (!c)
		return;
	fifo_clear(c);
	free(c->ring);
	map_clear(&c->stmts);
	map_clear(&c->portals);
	for (i = 0; i < 2; i++) {
		free(c->half[i].kbuf);
		free(c->half[i].win);
	}
	free(c);
}

const struct pg_stats *pg_conn_stats(const struct pg_conn *c)
{
	return &c->stats;
}

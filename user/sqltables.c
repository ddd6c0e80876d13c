/* SQL text -> statement kind, tables touched (with read/write/DDL access) and
 * a literal-free normalized form, via libpg_query; memoized per statement
 * shape (its text without literals) because the same statement repeats
 * millions of times.
 *
 * Table names: "schema.relname" with libpg_query's folding (Foo.BAR ->
 * foo.bar, "My Table" keeps case and spaces and is NOT re-quoted).  An
 * unqualified name is reported as public.name (search_path is not on the
 * wire), except pg_* names, which resolve to pg_catalog first, and tables
 * created TEMP, reported as pg_temp.name.
 * Access decisions beyond the obvious: LOCK counts as a write (it is taken to
 * serialize writers); VACUUM/ANALYZE/CLUSTER/REINDEX and the tables a CREATE
 * statement references (INHERITS, FOREIGN KEY ... REFERENCES) count as DDL;
 * CREATE TABLE AS / SELECT INTO targets are written (and created). */
#include "sqltables.h"

#include <ctype.h>
#include <jansson.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WALK_MAX_DEPTH 1000 /* deeper trees are truncated, never crash */

/* ---- table extraction -------------------------------------------------- */

struct scope {                  /* CTE names visible at a point of the tree */
	const char *name;
	const struct scope *up;
};

struct walker {
	struct sql_table *tables;
	size_t ntables, cap;
	int depth;
	int oom;
};

static void walk(struct walker *w, json_t *v, int access, const struct scope *sc);

static int in_scope(const struct scope *sc, const char *name)
{
	for (; sc; sc = sc->up)
		if (!strcmp(sc->name, name))
			return 1;
	return 0;
}

static void add_table(struct walker *w, const char *schema, const char *rel, int access)
{
	char *name;
	size_t i;

	if (!schema)
		schema = strncmp(rel, "pg_", 3) ? "public" : "pg_catalog";
	if (asprintf(&name, "%s.%s", schema, rel) < 0) {
		w->oom = 1;
		return;
	}
	for (i = 0; i < w->ntables; i++) {
		if (!strcmp(w->tables[i].name, name)) {
			w->tables[i].access |= access;
			free(name);
			return;
		}
	}
	if (w->ntables == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4;
		struct sql_table *t = realloc(w->tables, cap * sizeof(*t));

		if (!t) {
			free(name);
			w->oom = 1;
			return;
		}
		w->tables = t;
		w->cap = cap;
	}
	w->tables[w->ntables].name = name;
	w->tables[w->ntables].access = access;
	w->ntables++;
}

/* Any object with "relname" is a RangeVar, wrapped or not (InsertStmt.relation,
 * IntoClause.rel, ... are bare).  A bare name matching a visible CTE is the CTE. */
static void range_var(struct walker *w, json_t *rv, int access, const struct scope *sc)
{
	const char *rel = json_string_value(json_object_get(rv, "relname"));
	const char *schema = json_string_value(json_object_get(rv, "schemaname"));
	const char *persist = json_string_value(json_object_get(rv, "relpersistence"));

	if (!rel || (!schema && in_scope(sc, rel)))
		return;
	if (!schema && persist && !strcmp(persist, "t"))
		schema = "pg_temp";
	add_table(w, schema, rel, access);
}

/* One [schema.]name given as a List of String nodes. */
static void name_list(struct walker *w, json_t *obj)
{
	json_t *items = json_object_get(json_object_get(obj, "List"), "items"), *item;
	const char *part[3] = { NULL, NULL, NULL };
	size_t n = 0, i;

	json_array_foreach(items, i, item) {
		const char *s = json_string_value(json_object_get(json_object_get(item, "String"), "sval"));

		if (!s || n == 3)
			return;
		part[n++] = s;
	}
	if (n == 1)
		add_table(w, NULL, part[0], TABLE_DDL);
	else if (n >= 2)
		add_table(w, part[n - 2], part[n - 1], TABLE_DDL);
}

/* DROP TABLE and COMMENT ON TABLE name tables by String lists, not RangeVars. */
static void named_objects(struct walker *w, const char *node, json_t *stmt)
{
	int drop = !strcmp(node, "DropStmt");
	const char *type;
	json_t *obj;
	size_t i;

	if (!drop && strcmp(node, "CommentStmt"))
		return;
	type = json_string_value(json_object_get(stmt, drop ? "removeType" : "objtype"));
	if (!type || (strcmp(type, "OBJECT_TABLE") && strcmp(type, "OBJECT_VIEW") &&
		      strcmp(type, "OBJECT_MATVIEW") && strcmp(type, "OBJECT_FOREIGN_TABLE")))
		return;
	if (!drop) {
		name_list(w, json_object_get(stmt, "object"));
		return;
	}
	json_array_foreach(json_object_get(stmt, "objects"), i, obj)
		name_list(w, obj);
}

/* Per statement node: how its own fields access the tables they name.
 * Fields not listed get `rest`; the WITH clause is handled generically. */
struct stmt_rule {
	const char *node;
	int rest;
	const char *field;      /* a field with its own access ... */
	int field_access;       /* ... this one (0: decided by the node) */
};

static const struct stmt_rule rules[] = {
	{ "SelectStmt",        TABLE_READ,  "intoClause", TABLE_WRITE },
	{ "InsertStmt",        TABLE_READ,  "relation",   TABLE_WRITE },
	{ "UpdateStmt",        TABLE_READ,  "relation",   TABLE_WRITE },
	{ "DeleteStmt",        TABLE_READ,  "relation",   TABLE_WRITE },
	{ "MergeStmt",         TABLE_READ,  "relation",   TABLE_WRITE },
	{ "CopyStmt",          TABLE_READ,  "relation",   0 },
	{ "TruncateStmt",      TABLE_WRITE, NULL,         0 },
	{ "LockStmt",          TABLE_WRITE, NULL,         0 },
	{ "CreateTableAsStmt", TABLE_READ,  "into",       TABLE_WRITE | TABLE_DDL },
	{ "ViewStmt",          TABLE_READ,  "view",       TABLE_DDL },
};

static const struct stmt_rule *rule_for(const char *node)
{
	size_t i;

	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (!strcmp(rules[i].node, node))
			return &rules[i];
	return NULL;
}

static int field_access(const struct stmt_rule *r, json_t *stmt, const char *key)
{
	if (!r->field || strcmp(r->field, key))
		return r->rest;
	if (r->field_access)
		return r->field_access;
	/* CopyStmt.relation: COPY t FROM writes t, COPY t TO reads it */
	return json_is_true(json_object_get(stmt, "is_from")) ? TABLE_WRITE : TABLE_READ;
}

/* Walk a statement node's fields with the CTEs of its WITH clause in scope.
 * A CTE's own query sees the CTEs before it (all of them if RECURSIVE), so
 * WITH users AS (SELECT * FROM users) reads the real users table. */
static void statement(struct walker *w, const char *node, json_t *stmt, int access,
		      const struct scope *sc)
{
	const struct stmt_rule *r = rule_for(node);
	json_t *with = json_object_get(stmt, "withClause");
	json_t *ctes = json_object_get(with, "ctes");
	int recursive = json_is_true(json_object_get(with, "recursive"));
	size_t n = json_array_size(ctes), i;
	struct scope *frames = NULL;
	const struct scope *inner = sc;
	const char *key;
	json_t *val;

	if (n) {
		frames = calloc(n, sizeof(*frames));
		if (!frames) {
			w->oom = 1;
			return;
		}
		for (i = 0; i < n; i++) {
			json_t *cte = json_object_get(json_array_get(ctes, i), "CommonTableExpr");

			frames[i].name = json_string_value(json_object_get(cte, "ctename"));
			if (!frames[i].name)
				frames[i].name = "";
			frames[i].up = i ? &frames[i - 1] : sc;
		}
		for (i = 0; i < n; i++) {
			json_t *cte = json_object_get(json_array_get(ctes, i), "CommonTableExpr");

			walk(w, json_object_get(cte, "ctequery"), TABLE_READ,
			     recursive ? &frames[n - 1] : (i ? &frames[i - 1] : sc));
		}
		inner = &frames[n - 1];
	}
	named_objects(w, node, stmt);
	json_object_foreach(stmt, key, val) {
		/* FOR UPDATE OF names aliases, not tables */
		if (!strcmp(key, "withClause") || !strcmp(key, "lockingClause"))
			continue;
		walk(w, val, r ? field_access(r, stmt, key) : access, inner);
	}
	free(frames);
}

static void walk(struct walker *w, json_t *v, int access, const struct scope *sc)
{
	const char *key;
	json_t *val;
	size_t i;

	if (w->oom || w->depth >= WALK_MAX_DEPTH)
		return;
	w->depth++;
	if (json_is_array(v)) {
		json_array_foreach(v, i, val)
			walk(w, val, access, sc);
	} else if (json_is_object(v)) {
		if (json_object_get(v, "relname")) {
			range_var(w, v, access, sc);
		} else {
			json_object_foreach(v, key, val) {
				size_t len = strlen(key);

				/* node names are capitalized, field names are not */
				if (len > 4 && isupper((unsigned char)key[0]) &&
				    !strcmp(key + len - 4, "Stmt") && json_is_object(val))
					statement(w, key, val, access, sc);
				else
					walk(w, val, access, sc);
			}
		}
	}
	w->depth--;
}

/* ---- statement kind ---------------------------------------------------- */

static const struct { const char *node, *kind; } kinds[] = {
	{ "SelectStmt", "SELECT" },             { "InsertStmt", "INSERT" },
	{ "UpdateStmt", "UPDATE" },             { "DeleteStmt", "DELETE" },
	{ "MergeStmt", "MERGE" },               { "CopyStmt", "COPY" },
	{ "TruncateStmt", "TRUNCATE" },         { "CreateStmt", "CREATE TABLE" },
	{ "IndexStmt", "CREATE INDEX" },        { "ViewStmt", "CREATE VIEW" },
	{ "LockStmt", "LOCK" },                 { "ExplainStmt", "EXPLAIN" },
	{ "PrepareStmt", "PREPARE" },           { "ExecuteStmt", "EXECUTE" },
	{ "DeallocateStmt", "DEALLOCATE" },     { "DiscardStmt", "DISCARD" },
	{ "VariableShowStmt", "SHOW" },         { "CallStmt", "CALL" },
	{ "DoStmt", "DO" },                     { "ListenStmt", "LISTEN" },
	{ "NotifyStmt", "NOTIFY" },             { "UnlistenStmt", "UNLISTEN" },
	{ "DeclareCursorStmt", "DECLARE CURSOR" }, { "ClosePortalStmt", "CLOSE" },
	{ "CommentStmt", "COMMENT" },           { "CreateSeqStmt", "CREATE SEQUENCE" },
	{ "AlterSeqStmt", "ALTER SEQUENCE" },   { "CreatedbStmt", "CREATE DATABASE" },
	{ "DropdbStmt", "DROP DATABASE" },      { "CheckPointStmt", "CHECKPOINT" },
	{ "ClusterStmt", "CLUSTER" },           { "ReindexStmt", "REINDEX" },
	{ "RefreshMatViewStmt", "REFRESH MATERIALIZED VIEW" },
	{ "CreateTrigStmt", "CREATE TRIGGER" }, { "RenameStmt", "RENAME" },
	{ "CreateFunctionStmt", "CREATE FUNCTION" }, { "CreateRoleStmt", "CREATE ROLE" },
};

/* "FooBarStmt" -> "FOO BAR", "OBJECT_FOREIGN_TABLE" -> "FOREIGN TABLE" */
static char *words(const char *prefix, const char *s, size_t len, int camel)
{
	size_t plen = strlen(prefix), i, o = plen;
	char *out = malloc(plen + 2 * len + 1);

	if (!out)
		return NULL;
	memcpy(out, prefix, plen);
	for (i = 0; i < len; i++) {
		if (camel && i && isupper((unsigned char)s[i]))
			out[o++] = ' ';
		out[o++] = s[i] == '_' ? ' ' : toupper((unsigned char)s[i]);
	}
	out[o] = '\0';
	return out;
}

static char *enum_words(const char *prefix, const char *val, const char *strip)
{
	size_t n = strlen(strip);

	if (!val)
		return strdup(prefix);
	if (!strncmp(val, strip, n))
		val += n;
	return words(prefix, val, strlen(val), 0);
}

static char *stmt_kind(const char *node, json_t *s)
{
	const char *obj = json_string_value(json_object_get(s, "objtype"));
	size_t i, len = strlen(node);

	if (!strcmp(node, "TransactionStmt")) {
		const char *k = json_string_value(json_object_get(s, "kind"));

		if (k && !strcmp(k, "TRANS_STMT_START"))
			return strdup("START TRANSACTION");
		if (k && !strcmp(k, "TRANS_STMT_PREPARE"))
			return strdup("PREPARE TRANSACTION");
		return enum_words("", k, "TRANS_STMT_");
	}
	if (!strcmp(node, "VariableSetStmt")) {
		const char *k = json_string_value(json_object_get(s, "kind"));

		return strdup(k && !strncmp(k, "VAR_RESET", 9) ? "RESET" : "SET");
	}
	if (!strcmp(node, "DropStmt"))
		return enum_words("DROP ", json_string_value(json_object_get(s, "removeType")), "OBJECT_");
	if (!strcmp(node, "AlterTableStmt"))
		return enum_words("ALTER ", obj, "OBJECT_");
	if (!strcmp(node, "VacuumStmt"))
		return strdup(json_is_true(json_object_get(s, "is_vacuumcmd")) ? "VACUUM" : "ANALYZE");
	if (!strcmp(node, "GrantStmt"))
		return strdup(json_is_true(json_object_get(s, "is_grant")) ? "GRANT" : "REVOKE");
	if (!strcmp(node, "FetchStmt"))
		return strdup(json_is_true(json_object_get(s, "ismove")) ? "MOVE" : "FETCH");
	if (!strcmp(node, "CreateTableAsStmt")) {
		if (obj && !strcmp(obj, "OBJECT_MATVIEW"))
			return strdup("CREATE MATERIALIZED VIEW");
		return strdup(json_is_true(json_object_get(s, "is_select_into")) ?
			      "SELECT INTO" : "CREATE TABLE AS");
	}
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(kinds[i].node, node))
			return strdup(kinds[i].kind);
	if (len > 4 && !strcmp(node + len - 4, "Stmt"))
		len -= 4;
	return words("", node, len, 1);
}

/* ---- normalization ----------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int is_literal(int tok)
{
	switch (tok) {
	case PG_QUERY__TOKEN__SCONST: case PG_QUERY__TOKEN__USCONST:
	case PG_QUERY__TOKEN__ICONST: case PG_QUERY__TOKEN__FCONST:
	case PG_QUERY__TOKEN__BCONST: case PG_QUERY__TOKEN__XCONST:
		return 1;
	}
	return 0;
}

/* pg_query_normalize keeps literals in utility statements (DEFAULT 'x',
 * COMMENT ... IS 'x', PREPARE/EXECUTE/CALL arguments) and keeps comments:
 * redact whatever it left from the scanner's tokens.  NULL on failure, so
 * that nothing unredacted can ever be returned. */
static char *redact(const char *q)
{
	PgQueryScanResult res = pg_query_scan(q);
	PgQuery__ScanResult *scan = NULL;
	struct sbuf b = { 0 };
	int next = 0, last = 0;
	size_t i;

	if (res.error)
		goto out;
	scan = pg_query__scan_result__unpack(NULL, res.pbuf.len, (void *)res.pbuf.data);
	if (!scan)
		goto out;
	for (i = 0; i < scan->n_tokens; i++)
		if (scan->tokens[i]->token == PG_QUERY__TOKEN__PARAM) {
			int n = atoi(q + scan->tokens[i]->start + 1);

			if (n > next)
				next = n;
		}
	sb_add(&b, "", 0);
	for (i = 0; i < scan->n_tokens; i++) {
		const PgQuery__ScanToken *t = scan->tokens[i];
		int tok = t->token;
		char param[16];

		if (t->start < last || t->end < t->start)
			continue;
		if (tok == PG_QUERY__TOKEN__SQL_COMMENT || tok == PG_QUERY__TOKEN__C_COMMENT) {
			sb_add(&b, q + last, t->start - last);
			sb_add(&b, " ", 1);
			last = t->end;
		} else if (is_literal(tok)) {
			sb_add(&b, q + last, t->start - last);
			snprintf(param, sizeof(param), "$%d", ++next);
			sb_add(&b, param, strlen(param));
			last = t->end;
		}
	}
	sb_add(&b, q + last, strlen(q + last));
out:
	if (scan)
		pg_query__scan_result__free_unpacked(scan, NULL);
	pg_query_free_scan_result(res);
	if (b.oom || res.error || !scan) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* Trim and collapse whitespace runs left by dropped comments. */
static void squeeze(char *s)
{
	char *o = s, *p = s;
	int space = 0;

	for (; *p; p++) {
		if (isspace((unsigned char)*p)) {
			space = o != s;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = 0;
		*o++ = *p;
	}
	*o = '\0';
}

static char *normalize(const char *sql)
{
	PgQueryNormalizeResult n = pg_query_normalize(sql);
	char *out = NULL;

	if (!n.error && n.normalized_query)
		out = redact(n.normalized_query);
	pg_query_free_normalize_result(n);
	if (out) {
		size_t len;

		squeeze(out);
		/* "x;" and "x" are one statement, whichever protocol sent it. */
		len = strlen(out);
		while (len && (out[len - 1] == ';' || out[len - 1] == ' '))
			out[--len] = '\0';
	}
	return out;
}

/* ---- analysis of one text ---------------------------------------------- */

struct entry {
	struct sql_info info;
	char *kind;              /* owned storage behind info.kind */
	char *normalized;
	char *key;
	size_t keylen;
	uint64_t hash;
	struct entry *next;      /* hash chain */
	struct entry *newer, *older; /* LRU list */
};

static void analyze(struct entry *e, const char *sql)
{
	PgQueryParseResult res = pg_query_parse(sql);
	struct walker w = { 0 };
	json_t *root = NULL, *stmts, *s;
	size_t i;

	if (res.error)
		goto out;
	root = json_loads(res.parse_tree, JSON_DECODE_ANY, NULL);
	stmts = json_object_get(root, "stmts");
	json_array_foreach(stmts, i, s) {
		const char *node;
		json_t *body;
		void *it = json_object_iter(json_object_get(s, "stmt"));

		if (!it)
			continue;
		node = json_object_iter_key(it);
		body = json_object_iter_value(it);
		if (!e->kind)
			e->kind = stmt_kind(node, body);
		/* utility statements name the tables they define or maintain */
		statement(&w, node, body, TABLE_DDL, NULL);
	}
	if (!e->kind || w.oom) {
		free(e->kind);
		e->kind = NULL;
		goto out;
	}
	e->normalized = normalize(sql);
	e->info.tables = w.tables;
	e->info.ntables = w.ntables;
	w.tables = NULL;
	w.ntables = 0;
out:
	for (i = 0; i < w.ntables; i++)
		free(w.tables[i].name);
	free(w.tables);
	json_decref(root);
	pg_query_free_parse_result(res);
	e->info.kind = e->kind ? e->kind : "UNKNOWN";
	e->info.normalized = e->kind ? e->normalized : NULL;
	e->info.normalized_hash = 0xcbf29ce484222325ULL;
	for (const char *p = e->info.normalized; p && *p; p++)
		e->info.normalized_hash = (e->info.normalized_hash ^ (unsigned char)*p) * 0x100000001b3ULL;
}

static void entry_free(struct entry *e)
{
	size_t i;

	if (!e)
		return;
	for (i = 0; i < e->info.ntables; i++)
		free(e->info.tables[i].name);
	free(e->info.tables);
	free(e->kind);
	free(e->normalized);
	free(e->key);
	free(e);
}

/* ---- cache: chained hash + LRU list ------------------------------------ */

struct sql_cache {
	char *kbuf;              /* the key being looked up */
	size_t kcap;
	struct entry **buckets;
	size_t nbuckets;         /* power of two */
	size_t n, max;
	struct entry *newest, *oldest;
	struct entry fallback;   /* returned when memory runs out */
};

/* 8 bytes per step: keys are long SQL strings looked up per message. */
static uint64_t hash_text(const char *s, size_t len)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ len, k;

	while (len >= 8) {
		memcpy(&k, s, 8);
		h = (h ^ k) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
		s += 8;
		len -= 8;
	}
	k = 0;
	memcpy(&k, s, len);
	h = (h ^ k) * 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 29);
}

struct sql_cache *sql_cache_new(size_t max_entries)
{
	struct sql_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->max = max_entries ? max_entries : 1;
	for (c->nbuckets = 16; c->nbuckets < 2 * c->max; c->nbuckets *= 2)
		;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->fallback.info.kind = "UNKNOWN";
	return c;
}

void sql_cache_free(struct sql_cache *c)
{
	struct entry *e, *older;

	if (!c)
		return;
	for (e = c->newest; e; e = older) {
		older = e->older;
		entry_free(e);
	}
	free(c->buckets);
	free(c->kbuf);
	free(c);
}

static void lru_unlink(struct sql_cache *c, struct entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
}

static void lru_push(struct sql_cache *c, struct entry *e)
{
	e->newer = NULL;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	c->newest = e;
	if (!c->oldest)
		c->oldest = e;
}

static void evict_oldest(struct sql_cache *c)
{
	struct entry *e = c->oldest, **pp;

	for (pp = &c->buckets[e->hash & (c->nbuckets - 1)]; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	lru_unlink(c, e);
	entry_free(e);
	c->n--;
}

/* Character classes of the key's lexer, by table: <ctype.h> goes through the
 * locale for every byte, and the lexer looks at each byte of every
 * statement. */
#define CH_WORD  1   /* starts a word: letter, '_', any byte of a UTF-8 sequence */
#define CH_IDENT 2   /* continues a word: those, digits and '$' */
#define CH_SPACE 4
#define CH_DIGIT 8

static const unsigned char ch_class[256] = {
	['a' ... 'z'] = CH_WORD | CH_IDENT, ['A' ... 'Z'] = CH_WORD | CH_IDENT,
	['_'] = CH_WORD | CH_IDENT, [0x80 ... 0xff] = CH_WORD | CH_IDENT,
	['0' ... '9'] = CH_IDENT | CH_DIGIT, ['$'] = CH_IDENT,
	[' '] = CH_SPACE, ['\t'] = CH_SPACE, ['\n'] = CH_SPACE, ['\v'] = CH_SPACE,
	['\f'] = CH_SPACE, ['\r'] = CH_SPACE,
};

static inline int ch_is(char ch, int cls)
{
	return ch_class[(unsigned char)ch] & cls;
}

static int ident_char(char ch)
{
	return ch_is(ch, CH_IDENT);
}

/* The cache key: the text with every string and number literal replaced by
 * '?', comments dropped and white space collapsed.  Statements that differ only in their literals
 * (most of them, with clients that inline values) share one entry, parse
 * once, and no literal is kept in memory.  Anything this lexer does not
 * understand is kept verbatim, which only costs a cache miss. */
static size_t shape_key(const char *sql, size_t n, char *k)
{
	const char *p = sql, *end = sql + n;
	size_t o = 0;

	while (p < end) {
		int prev_ident;

		if (ch_is(*p, CH_WORD)) {
			/* Most of a statement is words: one tight loop per word,
			 * whose digits are part of it, not literals. */
			do
				k[o++] = *p++;
			while (p < end && ident_char(*p));
			continue;
		}
		prev_ident = p > sql && ident_char(p[-1]);
		if (ch_is(*p, CH_SPACE) || (p[0] == '-' && p[1] == '-')) {
			if (*p == '-')
				while (p < end && *p != '\n')
					p++;
			else
				p++;
			if (o && k[o - 1] != ' ')
				k[o++] = ' ';
		} else if (p[0] == '/' && p[1] == '*') {
			int depth = 0;

			do {
				if (p[0] == '/' && p[1] == '*')
					depth++, p += 2;
				else if (p[0] == '*' && p[1] == '/')
					depth--, p += 2;
				else
					p++;
			} while (p < end && depth);
			if (o && k[o - 1] != ' ')
				k[o++] = ' ';
		} else if (*p == '"') {
			/* a quoted identifier is structure: keep it */
			do
				k[o++] = *p++;
			while (p < end && *p != '"');
			if (p < end)
				k[o++] = *p++;
		} else if (*p == '\'') {
			/* E'', B'', X'', N'': the prefix is part of the literal */
			int prefixed = p > sql && strchr("eEbBxXnN", p[-1]) && p[-1] &&
				       !(p - 1 > sql && ident_char(p[-2]));
			int esc = prefixed && (p[-1] == 'e' || p[-1] == 'E');

			if (prefixed && o)
				o--;

			for (p++; p < end; p++) {
				if (esc && *p == '\\' && p + 1 < end) {
					p++;
				} else if (*p == '\'') {
					if (p + 1 < end && p[1] == '\'')
						p++;
					else
						break;
				}
			}
			p += p < end;
			k[o++] = '?';
		} else if (*p == '$' && !prev_ident && (p[1] == '$' || ch_is(p[1], CH_WORD))) {
			/* $tag$ ... $tag$ */
			const char *t = p + 1, *close;
			size_t tl;

			while (t < end && *t != '$' && ident_char(*t))
				t++;
			if (t >= end || *t != '$') {
				k[o++] = *p++;
				continue;
			}
			tl = t + 1 - p;
			close = t + 1;
			while (close + tl <= end && memcmp(close, p, tl))
				close++;
			if (close + tl > end) {
				k[o++] = *p++;
				continue;
			}
			p = close + tl;
			k[o++] = '?';
		} else if (ch_is(*p, CH_DIGIT) && !prev_ident) {
			while (p < end && (ch_is(*p, CH_DIGIT) || *p == '.' || *p == '_'))
				p++;
			if (p < end && (*p == 'e' || *p == 'E') &&
			    (ch_is(p[1], CH_DIGIT) ||
			     ((p[1] == '+' || p[1] == '-') && ch_is(p[2], CH_DIGIT)))) {
				p += 2;
				while (p < end && ch_is(*p, CH_DIGIT))
					p++;
			}
			k[o++] = '?';
		} else {
			k[o++] = *p++;
		}
	}
	while (o && (k[o - 1] == ' ' || k[o - 1] == ';'))
		o--;
	k[o] = '\0';
	return o;
}

const struct sql_info *sql_cache_lookup(struct sql_cache *c, const char *sql)
{
	size_t len = strlen(sql);
	uint64_t h;
	struct entry **b, *e;

	/* The key never grows longer than the text; it is copied only into a
	 * new entry, so a hit allocates nothing. */
	if (len + 1 > c->kcap) {
		char *k = realloc(c->kbuf, len + 1);

		if (!k)
			return &c->fallback.info;
		c->kbuf = k;
		c->kcap = len + 1;
	}
	len = shape_key(sql, len, c->kbuf);
	h = hash_text(c->kbuf, len);
	b = &c->buckets[h & (c->nbuckets - 1)];
	for (e = *b; e; e = e->next) {
		if (e->hash == h && e->keylen == len && !memcmp(e->key, c->kbuf, len)) {
			if (c->newest != e) {
				lru_unlink(c, e);
				lru_push(c, e);
			}
			return &e->info;
		}
	}
	e = calloc(1, sizeof(*e));
	if (e)
		e->key = strndup(c->kbuf, len);
	if (!e || !e->key) {
		free(e);
		return &c->fallback.info;
	}
	e->keylen = len;
	e->hash = h;
	analyze(e, sql);
	if (c->n >= c->max)
		evict_oldest(c);
	e->next = *b;
	*b = e;
	lru_push(c, e);
	c->n++;
	return &e->info;
}

/* ---- splitting ----------------------------------------------------------- */

static void emit_trimmed(const char *s, size_t len, void (*fn)(void *, const char *, size_t),
			 void *ctx, size_t *count)
{
	while (len && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	if (!len)
		return;
	fn(ctx, s, len);
	(*count)++;
}

/* One statement and no ';' except as the last character: the common case,
 * answered without running the parser (it costs microseconds per Query). */
static int single_statement(const char *sql, size_t *len)
{
	const char *semi = strchr(sql, ';');
	size_t n = strlen(sql);

	while (n && isspace((unsigned char)sql[n - 1]))
		n--;
	if (semi && semi != sql + n - 1)
		return 0;
	*len = semi ? n - 1 : n;
	return 1;
}

size_t sql_split(const char *sql, void (*fn)(void *ctx, const char *stmt, size_t len), void *ctx)
{
	PgQuerySplitResult res;
	size_t count = 0, total = strlen(sql), len;
	int i;

	if (single_statement(sql, &len)) {
		emit_trimmed(sql, len, fn, ctx, &count);
		return count;
	}
	res = pg_query_split_with_parser(sql);
	if (res.error) {
		/* The server rejects the whole string then: counts matter little. */
		pg_query_free_split_result(res);
		res = pg_query_split_with_scanner(sql);
	}
	for (i = 0; !res.error && i < res.n_stmts; i++) {
		size_t loc = res.stmts[i]->stmt_location;
		size_t n = res.stmts[i]->stmt_len;

		if (loc > total)
			break;
		if (!n || n > total - loc)
			n = total - loc;
		emit_trimmed(sql + loc, n, fn, ctx, &count);
	}
	pg_query_free_split_result(res);
	return count;
}

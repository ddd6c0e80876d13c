#!/usr/bin/env bash
# psql clients in two cgroups against one PostgreSQL (postmaster in `db`):
#   tcpclient   over TCP (-h 127.0.0.1): DDL, INSERT/SELECT/UPDATE/DELETE,
#               a multi-statement simple query, a unique violation, a
#               schema-qualified and a quoted table, a CTE that shadows a
#               table name
#   unixclient  over the Unix socket: statements on the same tables
# The Unix-socket client's edges must reach the same table nodes, under the
# same database node on svc:db, as the TCP client's.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

cg_new db
cg_new tcpclient
cg_new unixclient
pg_start --cgroup db
PSQL=$PG_BIN/psql
# A real table that the CTE below shadows: it must get no edge.
pg_psql -c "CREATE TABLE audit (id int, what text)" >/dev/null || fail "setup failed"

# tcp ARGS... / unix ARGS...: one psql session from the client's cgroup.
tcp() {
	cg_run tcpclient timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" \
		-U postgres -d postgres "$@"
}
unix() {
	cg_run unixclient timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST_SOCK" -p "$PGPORT" \
		-U postgres -d postgres "$@"
}

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"

# --- TCP client -------------------------------------------------------------
tcp -c "CREATE TABLE items (id int PRIMARY KEY, name text)" > /dev/null || fail "create items"
tcp -c "INSERT INTO items VALUES (1, 'a'), (2, 'b'), (3, 'c')" \
	-c "SELECT name FROM items WHERE id = 1" \
	-c "UPDATE items SET name = 'bb' WHERE id = 2" \
	-c "DELETE FROM items WHERE id = 3" > /dev/null || fail "items statements"
# Several statements in one Query message: the k-th completion belongs to
# the k-th statement.
tcp -c "SELECT count(*) FROM items; UPDATE items SET name = 'z' WHERE id = 1; SELECT 1;" > /dev/null ||
	fail "multi-statement query"
# A unique violation (23505, once) in the middle of a batch: the SELECT
# before it ran, the DELETE after it never did (the error ends the batch).
if tcp -c "SELECT name FROM items WHERE id = 2; INSERT INTO items VALUES (1, 'dup'); DELETE FROM items WHERE id = 1;" \
	> "$TEST_TMP/dup.out" 2>&1; then
	fail "the duplicate insert succeeded"
fi
grep -q 'duplicate key' "$TEST_TMP/dup.out" || { cat "$TEST_TMP/dup.out" >&2; fail "expected a unique violation"; }
# Schema-qualified (case folds) and quoted (case kept) names.
tcp -c "CREATE SCHEMA inv" -c "CREATE TABLE inv.stock (sku int, qty int)" \
	-c "INSERT INTO Inv.STOCK VALUES (1, 10)" -c "SELECT qty FROM inv.stock" > /dev/null || fail "inv.stock"
tcp -c 'CREATE SCHEMA "MySchema"' -c 'CREATE TABLE "MySchema"."My Table" (k int)' \
	-c 'INSERT INTO "MySchema"."My Table" VALUES (7)' -c 'SELECT k FROM "MySchema"."My Table"' > /dev/null ||
	fail "quoted table"
# A CTE named like the real table public.audit: reads items, not audit.
tcp -c "WITH audit AS (SELECT id FROM items) SELECT * FROM audit" > /dev/null || fail "CTE"

# --- Unix-socket client -----------------------------------------------------
unix -c "INSERT INTO items VALUES (10, 'u')" -c "SELECT name FROM items WHERE id = 10" \
	-c "UPDATE inv.stock SET qty = qty - 1 WHERE sku = 1" \
	-c 'SELECT k FROM "MySchema"."My Table"' \
	-c "BEGIN" -c "DELETE FROM items WHERE id = 10" -c "COMMIT" > /dev/null || fail "unix client"

seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
DB=db:svc:db/postgres
T=table:svc:db/postgres
assert_node "$G" "$DB" '.kind == "database" and .server == "svc:db" and .database == "postgres"'
assert_node "$G" "$T/public.items" ".kind == \"table\" and .name == \"public.items\" and .schema == \"public\" and .table == \"items\" and .database == \"$DB\""
assert_node "$G" "$T/inv.stock" ".name == \"inv.stock\" and .schema == \"inv\" and .table == \"stock\" and .database == \"$DB\""
assert_node "$G" "$T/MySchema.My Table" ".name == \"MySchema.My Table\" and .schema == \"MySchema\" and .table == \"My Table\" and .database == \"$DB\""
# Only these user tables (plus catalog tables a client may read).
assert_jq "$G" '[.nodes[] | select(.kind == "table" and .schema != "pg_catalog" and .schema != "information_schema") | .name] | sort
	== ["MySchema.My Table", "inv.stock", "public.items"]' \
	"exactly the tables public.items, inv.stock, \"MySchema\".\"My Table\" (no folded, unquoted or CTE names)"

# items from TCP: INSERT 1 (+1 failed), SELECT 1 + 1 (multi) + 1 (before
# the error) + 1 (CTE), UPDATE 1 + 1 (multi), DELETE 1 (not the one after
# the error), CREATE TABLE (ddl).
assert_edge "$G" svc:tcpclient "$T/public.items" sql '
	.operations.INSERT == 2 and .operations.SELECT == 4 and .operations.UPDATE == 2
	and .operations.DELETE == 1
	and .access.read == 4 and .access.write == 5 and .access.ddl == 1
	and .errors == {"23505": 1}
	and .latency_ms.count >= 10'
assert_edge "$G" svc:tcpclient "$T/public.items" sql '
	(.statements | any(.query == "INSERT INTO items VALUES ($1, $2), ($3, $4), ($5, $6)"))
	and (.statements | any(.query == "SELECT name FROM items WHERE id = $1"))
	and (.statements | any(.query == "UPDATE items SET name = $1 WHERE id = $2"))
	and (.statements | any(.query == "DELETE FROM items WHERE id = $1"))
	and (.statements | any(.query | test("^SELECT count\\(\\*\\) FROM items;?$")))
	and (.statements | any(.query | test("^WITH audit AS")))'
assert_no_edge "$G" svc:tcpclient "$T/public.audit" sql
assert_no_edge "$G" svc:unixclient "$T/public.audit" sql
assert_edge "$G" svc:tcpclient "$T/inv.stock" sql '
	.operations.INSERT == 1 and .operations.SELECT == 1 and .access.write == 1 and .access.read == 1
	and .access.ddl == 1 and .errors == null'
assert_edge "$G" svc:tcpclient "$T/MySchema.My Table" sql '
	.operations.INSERT == 1 and .operations.SELECT == 1 and .access.ddl == 1'
# Statements with no table (SELECT 1) go to the database node.
assert_edge "$G" svc:tcpclient "$DB" sql '([.operations[]] | add) >= 1'

# The Unix-socket client: same table nodes, same database node.
assert_edge "$G" svc:unixclient "$T/public.items" sql '
	.operations.INSERT == 1 and .operations.SELECT == 1 and .operations.DELETE == 1
	and .access.write == 2 and .access.read == 1 and (.access.ddl // 0) == 0 and .errors == null
	and .latency_ms.count >= 3'
assert_edge "$G" svc:unixclient "$T/inv.stock" sql '.operations == {"UPDATE": 1} and .access.write == 1'
assert_edge "$G" svc:unixclient "$T/MySchema.My Table" sql '.operations == {"SELECT": 1} and .access == {"read": 1}'
assert_edge "$G" svc:unixclient "$DB" sql '.operations.BEGIN == 1 and .operations.COMMIT == 1'
# Exactly one database node: the socket and TCP clients reached the same one.
assert_jq "$G" '[.nodes[] | select(.kind == "database")] | length == 1' "one database node"
assert_jq "$G" ".capture.pg_connections >= 8 and .capture.pg_unknown_statements == 0
	and .capture.pg_lost_bytes == 0 and .capture.pg_events_lost == 0" \
	"pg_connections >= 8 (one per psql session), nothing unknown or lost"
# TCP edge for the TCP client; none for the Unix-socket client.
assert_edge "$G" svc:tcpclient svc:db tcp ".port == $PGPORT"
assert_no_edge "$G" svc:unixclient svc:db tcp

#!/usr/bin/env bash
# A PostgreSQL connection opened BEFORE the capture and used during it: a
# psycopg2 client (simple Query protocol, autocommit) in cgroup `pool`.
# Before the capture it connects, runs a statement and PREPAREs (SQL) a
# statement on pre_hidden; then it idles.  During the capture it runs
# INSERT/SELECT/UPDATE on pre_items on that same connection, and EXECUTEs
# the statement prepared before the capture.
#   - sql edges svc:pool -> public.pre_items with exact counts
#   - EXECUTE p(...) names no table in its text: nothing is invented for it
#     (no pre_hidden table node), nothing crashes, the graph is valid
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq
"$PY" -c 'import psycopg2' 2>/dev/null || skip "needs python3-psycopg2 for $PY"

N_INS=8 N_SEL=12 N_UPD=5 N_EXEC=4

cg_new db
cg_new pool
pg_start --cgroup db
pg_psql -c "CREATE TABLE pre_items (id int PRIMARY KEY, v text)" \
	-c "CREATE TABLE pre_hidden (id int, v text)" > /dev/null || fail "setup failed"

cat > "$TEST_TMP/pool.py" <<'PY'
import os, sys, time
import psycopg2
port, tmp = int(sys.argv[1]), sys.argv[2]
n_ins, n_sel, n_upd, n_exec = map(int, sys.argv[3:7])
conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT count(*) FROM pre_items")
cur.fetchall()
cur.execute("PREPARE p (int) AS SELECT v FROM pre_hidden WHERE id = $1")
open(tmp + "/ready", "w").close()
deadline = time.time() + 60
while not os.path.exists(tmp + "/go"):
    if time.time() > deadline:
        sys.exit("no go file")
    time.sleep(0.05)
for i in range(n_ins):
    cur.execute("INSERT INTO pre_items (id, v) VALUES (%s, %s)", (i, "x%d" % i))
for i in range(n_sel):
    cur.execute("SELECT v FROM pre_items WHERE id = %s", (i % n_ins,))
    cur.fetchall()
for i in range(n_upd):
    cur.execute("UPDATE pre_items SET v = %s WHERE id = %s", ("y", i))
for i in range(n_exec):
    cur.execute("EXECUTE p (%s)", (i,))
    cur.fetchall()
conn.close()
print("done")
PY
cg_exec pool timeout 90 "$PY" "$TEST_TMP/pool.py" "$PGPORT" "$TEST_TMP" "$N_INS" "$N_SEL" "$N_UPD" "$N_EXEC" \
	> "$TEST_TMP/pool.log" 2>&1
# A few seconds of silence once the capture runs.
G=$TEST_TMP/graph.json
capture_released "$CG_LAST_PID" "$TEST_TMP/pool.log" "$G" 2 30 --cgroup "$CG_PARENT" --pg-port "$PGPORT"

assert_valid_graph "$G"
# The table, on a database of svc:db.  The database name was sent before the
# capture; whatever name seams gives it, the node must be svc:db's.
TID=$(jq -r '.nodes[] | select(.kind == "table" and .name == "public.pre_items") | .id' "$G")
[ -n "$TID" ] || { show_graph "$G"; fail "no table node public.pre_items"; }
info "pre_items node: $TID"
assert_jq "$G" '(.nodes[] | select(.id == $t) | .database) as $d
	| .nodes[] | select(.id == $d) | .kind == "database" and .server == "svc:db"' \
	"public.pre_items belongs to a database node whose server is svc:db" --arg t "$TID"
assert_edge "$G" svc:pool "$TID" sql "
	.operations == {\"INSERT\": $N_INS, \"SELECT\": $N_SEL, \"UPDATE\": $N_UPD}
	and .access == {\"read\": $N_SEL, \"write\": $((N_INS + N_UPD))}
	and .latency_ms.count == $((N_INS + N_SEL + N_UPD))"
assert_edge "$G" svc:pool "$TID" sql '
	(.statements | any(.query == "INSERT INTO pre_items (id, v) VALUES ($1, $2)"))
	and (.statements | any(.query == "SELECT v FROM pre_items WHERE id = $1"))'
# EXECUTE p: its text names no table.  No table node for pre_hidden, no edge
# to any table counting it, and it is still counted (on a database edge).
assert_jq "$G" '[.nodes[] | select(.kind == "table" and .table == "pre_hidden")] | length == 0' \
	"no table node for pre_hidden (prepared before the capture)"
assert_jq "$G" '[.edges[] | select(.kind == "sql" and .source == "svc:pool") | .target] | all(startswith("db:") or . == "'"$TID"'")' \
	"svc:pool's sql edges go to public.pre_items or a database node only"
assert_jq "$G" "[.edges[] | select(.kind == \"sql\" and .source == \"svc:pool\" and (.target | startswith(\"db:svc:db/\"))) | .operations[]] | add == $N_EXEC" \
	"the $N_EXEC EXECUTEs are counted on svc:pool's database edge"
assert_jq "$G" '.capture.pg_lost_bytes == 0 and .capture.pg_events_lost == 0 and .capture.pg_connections >= 1' \
	"the connection was decoded, nothing lost"
assert_edge "$G" svc:pool svc:db tcp ".port == $PGPORT and .connections == 1"

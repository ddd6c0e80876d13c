#!/usr/bin/env bash
# A pooled client over the Unix socket, in cgroup `pool`, with one
# connection opened before the capture (its startup message, and so its
# database name, never crosses the wire while seams watches) and one opened
# during it, both on database `shop`.  The database must not split into an
# `unknown` node beside `shop`: both connections' statements on
# public.items add up on one edge under db:svc:db/shop.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq
"$PY" -c 'import psycopg2' 2>/dev/null || skip "needs python3-psycopg2 for $PY"

cg_new db
cg_new pool
pg_start --cgroup db --db shop
pg_psql -c "CREATE TABLE items (id int, v text)" > /dev/null || fail "setup failed"

cat > "$TEST_TMP/pool.py" <<'PY'
import os, sys, time
import psycopg2
sock, port, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def connect():
    c = psycopg2.connect(host=sock, port=port, user="postgres", dbname="shop")
    c.autocommit = True
    return c
old = connect()
old.cursor().execute("SELECT 1")
open(tmp + "/ready", "w").close()
deadline = time.time() + 60
while not os.path.exists(tmp + "/go"):
    if time.time() > deadline:
        sys.exit("no go file")
    time.sleep(0.05)
for c in (old, connect()):
    cur = c.cursor()
    for i in range(3):
        cur.execute("INSERT INTO items VALUES (%s, 'x')", (i,))
        cur.execute("SELECT v FROM items WHERE id = %s", (i,))
        cur.fetchall()
    c.close()
print("done")
PY
cg_exec pool timeout 90 "$PY" "$TEST_TMP/pool.py" "$PGHOST_SOCK" "$PGPORT" "$TEST_TMP" > "$TEST_TMP/pool.log" 2>&1
G=$TEST_TMP/graph.json
capture_released "$CG_LAST_PID" "$TEST_TMP/pool.log" "$G" 1 30 --cgroup "$CG_PARENT" --pg-port "$PGPORT"

assert_valid_graph "$G"
assert_jq "$G" '[.nodes[] | select(.kind == "database") | .id] == ["db:svc:db/shop"]' \
	"one database node, db:svc:db/shop (no unknown beside it)"
assert_edge "$G" svc:pool table:svc:db/shop/public.items sql \
	'.operations == {"INSERT": 6, "SELECT": 6} and .latency_ms.count == 12'

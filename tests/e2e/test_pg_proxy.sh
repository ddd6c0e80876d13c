#!/usr/bin/env bash
# A PostgreSQL client behind a TCP proxy, neither on a PostgreSQL port:
#   app    psql in cgroup `app`, connecting to the proxy's port (not given to
#          seams: found by the shape of its startup message)
#   proxy  socat in cgroup `proxy`, relaying to PostgreSQL (on --pg-port)
#          with plain read(2) and write(2), where libpq uses send and recv
# Both hops must show the same statements on the same table: app's under
# the proxy's database node, proxy's under the real server's.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq socat

cg_new db
pg_start --cgroup db
pg_psql -c "CREATE TABLE orders (id int PRIMARY KEY, total int)" >/dev/null || fail "setup failed"
PPORT=$(free_port)
cg_exec proxy socat TCP-LISTEN:"$PPORT",bind=127.0.0.1,reuseaddr,fork TCP:127.0.0.1:"$PGPORT" \
	> "$TEST_TMP/socat.log" 2>&1
wait_port "$PPORT"

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
for i in 1 2 3; do
	cg_run app timeout 30 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PPORT" \
		-U postgres -d postgres \
		-c "INSERT INTO orders VALUES ($i, $((i * 10)))" \
		-c "SELECT total FROM orders WHERE id = $i" \
		-c "UPDATE orders SET total = total + 1 WHERE id = $i" > /dev/null ||
		fail "psql through the proxy failed"
done
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
ops='.operations == {"INSERT": 3, "SELECT": 3, "UPDATE": 3} and .errors == null'
assert_edge "$G" svc:proxy table:svc:db/postgres/public.orders sql "$ops"
assert_edge "$G" svc:app table:svc:proxy/postgres/public.orders sql "$ops"
assert_edge "$G" svc:app svc:proxy tcp ".port == $PPORT and .connections == 3"
assert_edge "$G" svc:proxy svc:db tcp ".port == $PGPORT and .connections == 3"
assert_jq "$G" '.capture.pg_connections == 6 and .capture.pg_lost_bytes == 0
	and .capture.pg_undecodable_bytes == 0 and .capture.pg_unknown_statements == 0' \
	"six PostgreSQL connections (three per hop), nothing lost or undecodable"

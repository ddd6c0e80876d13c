#!/usr/bin/env bash
# One client reaching one PostgreSQL by three ways (127.0.0.1, the Unix
# socket, and ::1 when the host has it): its statements on one table add
# up on one edge instead of the last way's overwriting the others.
#   - svc:client -> public.t: SELECT == 2 per way, INSERT == 1 per way
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

cg_new db
cg_new client
pg_start --cgroup db
pg_psql -c "CREATE TABLE t (id int, v text)" > /dev/null || fail "setup failed"
PSQL=$PG_BIN/psql

hosts=(127.0.0.1 "$PGHOST_SOCK")
lo_ipv6 && hosts+=(::1)

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
for h in "${hosts[@]}"; do
	cg_run client timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$h" -p "$PGPORT" -U postgres -d postgres \
		-c "INSERT INTO t VALUES (1, 'a')" -c "SELECT v FROM t WHERE id = 1" \
		-c "SELECT count(*) FROM t" > /dev/null || fail "psql via $h failed"
done
seams_capture_stop || fail "capture did not exit cleanly"

n=${#hosts[@]}
assert_valid_graph "$G"
T=table:svc:db/postgres/public.t
assert_jq "$G" '[.nodes[] | select(.kind == "database")] | length == 1' "one database node"
assert_edge "$G" svc:client "$T" sql ".operations.SELECT == $((2 * n)) and .operations.INSERT == $n
	and .latency_ms.count == $((3 * n))
	and ([.statements[].count] | add) == $((3 * n))"

#!/usr/bin/env bash
# A ~110 MB result: table big (1,000,000 rows of ~100 bytes) is created
# before the capture; during it one psql session per client runs
#   SELECT * FROM big          (output to /dev/null)
#   UPDATE big SET ... WHERE id = 1
# over TCP (cgroup `bigtcp`) and over the Unix socket (cgroup `bigunix`).
# The UPDATE must be attributed after the large result (the decoder stayed
# in step through ~1M DataRows), while the kernel copied little: the
# DataRows are skipped, not copied (pg_bytes_copied < 1 MB), nothing lost.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

ROWS=1000000
cg_new db
cg_new bigtcp
cg_new bigunix
pg_start --cgroup db
pg_psql -c "CREATE TABLE big (id int PRIMARY KEY, pad text)" \
	-c "INSERT INTO big SELECT g, repeat('x', 90) FROM generate_series(1, $ROWS) g" \
	-c "VACUUM ANALYZE big" > /dev/null || fail "setup failed"
PSQL=$PG_BIN/psql

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
cg_run bigtcp timeout 60 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres \
	-c "SELECT * FROM big" -c "UPDATE big SET pad = 'tcp' WHERE id = 1" > /dev/null ||
	fail "psql over TCP failed"
cg_run bigunix timeout 60 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST_SOCK" -p "$PGPORT" -U postgres -d postgres \
	-c "SELECT * FROM big" -c "UPDATE big SET pad = 'unix' WHERE id = 1" > /dev/null ||
	fail "psql over the Unix socket failed"
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
T=table:svc:db/postgres/public.big
assert_node "$G" "$T" '.name == "public.big"'
for c in bigtcp bigunix; do
	assert_edge "$G" "svc:$c" "$T" sql '
		.operations == {"SELECT": 1, "UPDATE": 1} and .access == {"read": 1, "write": 1}
		and .latency_ms.count == 2 and .errors == null
		and (.statements | any(.query == "UPDATE big SET pad = $1 WHERE id = $2"))
		and (.statements | any(.query == "SELECT * FROM big"))'
done
# ~2 x 110 MB went by; the kernel copied headers, SQL and tags only.
assert_edge "$G" svc:bigtcp svc:db tcp '.bytes_received >= 100000000'
assert_jq "$G" '.capture.pg_bytes_copied < 1000000' "pg_bytes_copied < 1 MB although ~220 MB flowed"
assert_jq "$G" '.capture.pg_bytes_skipped >= 200000000' "pg_bytes_skipped >= 200 MB (the DataRows)"
assert_jq "$G" '.capture.pg_lost_bytes == 0 and .capture.pg_events_lost == 0 and .capture.pg_undecodable_bytes == 0' \
	"nothing lost or undecodable"
assert_jq "$G" '.capture.pg_statements == 4 and .capture.pg_unknown_statements == 0' \
	"exactly the 4 statements"
info "pg_bytes_copied $(jq .capture.pg_bytes_copied "$G"), pg_bytes_skipped $(jq .capture.pg_bytes_skipped "$G")"

#!/usr/bin/env bash
# Bytes the kernel copies per query must not grow with the size of the
# result: seams frames PostgreSQL messages in the kernel and copies only
# headers, SQL text and completion tags, skipping DataRows.
#
# One PostgreSQL (cgroup `db`) with table big (1,000,000 rows of ~100 bytes).
# For each result size, a separate capture while one psql session (cgroup
# `client`, TCP) runs N queries returning that much:
#   1row    SELECT * FROM big WHERE id <= 1
#   10MB    SELECT * FROM big WHERE id <= 90000
#   100MB   SELECT * FROM big WHERE id <= 900000
# A first capture of the connection alone (no query) measures its fixed cost
# (startup, authentication, termination), subtracted from each size's
# pg_bytes_copied before dividing by N ("copied/query").
# Prints a table of statements, bytes received by the client, and
# pg_bytes_copied / pg_bytes_skipped per query, and the ratio of bytes copied
# per query large/small (expected ~1).  A measurement, not a pass/fail test.
#
#   N=10 N_100MB=5 tests/bench/pg_copy_bytes.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

N=${N:-10}
N_100MB=${N_100MB:-$N}

cg_new db
cg_new client
pg_start --cgroup db
pg_psql -c "CREATE TABLE big (id int PRIMARY KEY, pad text)" \
	-c "INSERT INTO big SELECT g, repeat('x', 90) FROM generate_series(1, 1000000) g" \
	-c "VACUUM ANALYZE big" > /dev/null || fail "setup failed"

# measure LABEL QUERIES ROWS: prints one table row; sets COPIED_PER_QUERY
# (pg_bytes_copied minus what the connection alone costs, per query).
# QUERIES 0: the connection alone (startup, authentication, termination).
BASE=0
measure() {
	local label=$1 n=$2 rows=$3 g=$TEST_TMP/graph.$1.json args=(-f /dev/null) i
	for ((i = 0; i < n; i++)); do args+=(-c "SELECT * FROM big WHERE id <= $rows"); done
	[ "$n" -gt 0 ] && args=("${args[@]:2}")
	seams_capture_bg "$g" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
	cg_run client timeout 600 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" \
		-U postgres -d postgres "${args[@]}" > /dev/null || fail "psql ($label) failed"
	# Let the connection's close reach the capture (bytes_received is
	# summed over closed connections).
	sleep 0.5
	seams_capture_stop || fail "capture ($label) failed"
	jq -r --arg lbl "$label" --argjson n "$n" --argjson base "$BASE" '
		.capture as $c
		| ([.edges[] | select(.kind == "tcp" and .source == "svc:client" and .target == "svc:db") | .bytes_received // 0] | add // 0) as $rx
		| def per($x): if $n > 0 then ($x / $n | floor) else "-" end;
		  [$lbl, $n, $c.pg_statements, $rx, per($rx), $c.pg_bytes_copied,
		   per($c.pg_bytes_copied - $base), per($c.pg_bytes_skipped),
		   $c.pg_lost_bytes, $c.pg_events_lost]
		| @tsv' "$g" > "$TEST_TMP/row.$label"
	awk -F'\t' '{ printf "%-6s %7s %10s %14s %14s %12s %12s %14s %8s %8s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' \
		"$TEST_TMP/row.$label"
	COPIED_PER_QUERY=$(cut -f7 "$TEST_TMP/row.$label")
	[ "$n" -gt 0 ] || BASE=$(cut -f6 "$TEST_TMP/row.$label")
}

printf '%-6s %7s %10s %14s %14s %12s %12s %14s %8s %8s\n' size queries statements \
	rx_bytes rx/query copied copied/query skipped/query lost ev_lost
measure conn 0 0
measure 1row "$N" 1;          small=$COPIED_PER_QUERY
measure 10MB "$N" 90000;      mid=$COPIED_PER_QUERY
measure 100MB "$N_100MB" 900000; large=$COPIED_PER_QUERY
awk -v s="$small" -v m="$mid" -v l="$large" 'BEGIN {
	if (s <= 0) { print "no bytes copied for the 1-row queries: cannot compute ratios"; exit }
	printf "bytes copied per query, 10MB/1row:  %.3f (expected ~1)\n", m / s
	printf "bytes copied per query, 100MB/1row: %.3f (expected ~1)\n", l / s
}'

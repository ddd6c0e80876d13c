#!/usr/bin/env bash
# pgbench TPC-B against a PostgreSQL whose postmaster runs in cgroup `db`,
# pgbench in cgroup `bench` over TCP, in three captures:
#   simple    -M simple   (Query messages; no --pg-port: the server is on a
#                          random port, found by the startup packet's shape)
#   extended  -M extended (unnamed Parse/Bind/Execute every time)
#   prepared  -M prepared (named statements, parsed once per connection)
#   connect   -M simple -C (a new connection per transaction: its opening
#                          and close come through the ring buffer, its
#                          statements through per-CPU rings, and all must
#                          be read in order for the counts to add up)
# Each must give sql edges svc:bench -> the four pgbench tables with counts
# that match the transactions pgbench reports, latency, and the tcp edge
# svc:bench -> svc:db.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

CLIENTS=2
SECS=${PGBENCH_SECS:-5}
TOL=$((2 * CLIENTS))

cg_new db
cg_new bench
pg_start --cgroup db
PGBENCH=$PG_BIN/pgbench
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench) || skip "needs pgbench (postgresql-15)"
runuser -u postgres -- timeout 60 "$PGBENCH" -i -q -s 1 -h 127.0.0.1 -p "$PGPORT" postgres \
	> "$TEST_TMP/init.log" 2>&1 || { cat "$TEST_TMP/init.log" >&2; fail "pgbench -i failed"; }

DB=db:svc:db/postgres
T=table:svc:db/postgres/public

# phase NAME MODE [capture args...]
phase() {
	local name=$1 mode=$2; shift 2
	local g=$TEST_TMP/graph.$name.json out=$TEST_TMP/pgbench.$name.log n extra=()
	[ "$name" = connect ] && extra=(-C)
	info "--- pgbench -M $mode ${extra[*]}"
	seams_capture_bg "$g" --cgroup "$CG_PARENT" "$@"
	cg_run bench runuser -u postgres -- timeout $((SECS + 30)) "$PGBENCH" -n -M "$mode" "${extra[@]}" \
		-c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -h 127.0.0.1 -p "$PGPORT" postgres > "$out" 2>&1 ||
		{ cat "$out" >&2; fail "pgbench -M $mode failed"; }
	seams_capture_stop || fail "capture ($name) did not exit cleanly"
	n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	[ -n "$n" ] && [ "$n" -gt 0 ] || { cat "$out" >&2; fail "pgbench -M $mode processed no transactions"; }
	info "pgbench $name: $n transactions"

	assert_valid_graph "$g"
	assert_jq "$g" '.capture.pg_events_lost == 0 and .capture.pg_lost_bytes == 0' \
		"$name: no PostgreSQL events or bytes lost"
	assert_node "$g" "$DB" '.kind == "database" and .server == "svc:db" and .database == "postgres"'
	local tbl
	for tbl in pgbench_accounts pgbench_tellers pgbench_branches pgbench_history; do
		assert_node "$g" "$T.$tbl" "$(printf '.kind == "table" and .name == "public.%s"
			and .schema == "public" and .table == "%s" and .database == "%s"' "$tbl" "$tbl" "$DB")"
	done
	# Counts per statement kind, compared with the transactions pgbench
	# reports (each transaction runs each statement once).
	local near="(. - $n) | fabs <= $TOL"
	local lat='(.latency_ms.count > 0) and (.latency_ms.p50 > 0) and (.latency_ms.p50 <= .latency_ms.p95) and (.latency_ms.p95 <= .latency_ms.p99)'
	assert_edge "$g" svc:bench "$T.pgbench_accounts" sql "
		(.operations.UPDATE | $near) and (.operations.SELECT | $near)
		and (.access.write | $near) and (.access.read | $near) and (.access.ddl // 0) == 0
		and $lat and (.errors == null)"
	assert_edge "$g" svc:bench "$T.pgbench_tellers" sql "
		(.operations.UPDATE | $near) and (.access.write | $near) and $lat"
	assert_edge "$g" svc:bench "$T.pgbench_branches" sql "
		(.operations.UPDATE | $near) and (.access.write | $near) and $lat"
	assert_edge "$g" svc:bench "$T.pgbench_history" sql "
		(.operations.INSERT | $near) and (.access.write | $near)
		and (.operations | keys) == [\"INSERT\"] and $lat"
	# Consistency between the tables of one transaction.
	local acc tel his
	acc=$(jq --arg t "$T.pgbench_accounts" '.edges[] | select(.source == "svc:bench" and .target == $t) | .operations.UPDATE' "$g")
	tel=$(jq --arg t "$T.pgbench_tellers" '.edges[] | select(.source == "svc:bench" and .target == $t) | .operations.UPDATE' "$g")
	his=$(jq --arg t "$T.pgbench_history" '.edges[] | select(.source == "svc:bench" and .target == $t) | .operations.INSERT' "$g")
	info "$name: accounts UPDATE $acc, tellers UPDATE $tel, history INSERT $his"
	[ $(( acc > tel ? acc - tel : tel - acc )) -le "$TOL" ] && [ $(( acc > his ? acc - his : his - acc )) -le "$TOL" ] ||
		fail "$name: inconsistent counts: accounts UPDATE $acc, tellers UPDATE $tel, history INSERT $his"
	# The statements, normalized: pgbench's :aid etc. arrive as literals
	# (simple) or $n parameters (extended/prepared); either way $n.  (The
	# extended protocol's text keeps pgbench's trailing ';': tolerated.)
	assert_edge "$g" svc:bench "$T.pgbench_accounts" sql '
		(.statements | any(.query | test("^UPDATE pgbench_accounts SET abalance = abalance \\+ \\$[0-9]+ WHERE aid = \\$[0-9]+;?$")))
		and (.statements | any(.query | test("^SELECT abalance FROM pgbench_accounts WHERE aid = \\$[0-9]+;?$")))'
	# BEGIN/END touch no table: they go to the database node.
	assert_edge "$g" svc:bench "$DB" sql "
		([.operations[]] | add) >= 2 * $n - $TOL and $lat"
	# Every statement's text was seen (prepared during the capture).
	assert_jq "$g" '.capture.pg_unknown_statements == 0' "$name: no unknown statements"
	assert_jq "$g" "[.edges[] | select(.kind == \"sql\") | .operations.UNKNOWN // 0] | add == 0" \
		"$name: no UNKNOWN operations"
	assert_jq "$g" ".capture.pg_connections >= $CLIENTS and .capture.pg_statements >= 5 * $n" \
		"$name: pg_connections >= $CLIENTS and pg_statements >= 5 * $n"
	# The TCP edge to the database server stays.
	assert_edge "$g" svc:bench svc:db tcp ".port == $PGPORT and .connections >= $CLIENTS"
	assert_node "$g" svc:db ".cgroup == \"$(cg_rel db)\" and (.processes | any(. == \"postgres\"))"
	# No sql edge from the server side.
	assert_jq "$g" '[.edges[] | select(.kind == "sql" and .source == "svc:db")] | length == 0' \
		"$name: no sql edge from the server"
}

phase simple simple
phase extended extended --pg-port "$PGPORT"
phase prepared prepared --pg-port "$PGPORT"
phase connect simple --pg-port "$PGPORT"

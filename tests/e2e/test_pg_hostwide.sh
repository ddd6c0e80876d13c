#!/usr/bin/env bash
# A capture of the whole host (no --cgroup): PostgreSQL's end of a
# connection from a client here goes quiet after announcing itself, since
# the client's end is traced and counts.  Both ways of knowing that end: by
# the startup message it receives, and by --pg-port.  Over 127.0.0.1 and
# ::1 (when the host has it), with sessions one after another, so that a
# new connection's socket often takes a closed one's memory.
#   - svc:client -> svc:db over TCP: every connection, and its exchanges
#     (the SSLRequest, the startup message, each Query, the Terminate)
#     counted exactly once
#   - svc:db is known from its own end: its listening addresses, its process
#   - svc:client -> public.t: every statement
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

cg_new db
cg_new client
pg_start --cgroup db
pg_psql -c "CREATE TABLE t (id int, v text)" > /dev/null || fail "setup failed"
PSQL=$PG_BIN/psql
hosts=(127.0.0.1)
lo_ipv6 && hosts+=(::1)
SESSIONS=8

# capture NAME OPTIONS...: SESSIONS psql sessions per address, three
# statements each, under a capture of the whole host.
capture() {
	local g=$TEST_TMP/$1.json; shift
	seams_capture_bg "$g" "$@"
	for h in "${hosts[@]}"; do
		for _ in $(seq "$SESSIONS"); do
			cg_run client timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$h" -p "$PGPORT" -U postgres \
				-d postgres -c "INSERT INTO t VALUES (1, 'a')" -c "SELECT v FROM t WHERE id = 1" \
				-c "UPDATE t SET v = 'b' WHERE id = 1" > /dev/null || fail "psql via $h failed"
		done
	done
	# The last connection's close reaches both ends before the capture ends.
	sleep 1
	seams_capture_stop || fail "capture did not exit cleanly"
	assert_valid_graph "$g"
}

n=$((SESSIONS * ${#hosts[@]}))
for run in startup port; do
	opts=()
	[ "$run" = port ] && opts=(--pg-port "$PGPORT")
	capture "$run" "${opts[@]}"
	G=$TEST_TMP/$run.json
	assert_edge "$G" svc:client svc:db tcp ".port == $PGPORT and .connections == $n and .requests == $((6 * n))"
	assert_node "$G" svc:db "(.processes | index(\"postgres\")) and (.listens | index(\"127.0.0.1:$PGPORT\"))"
	assert_edge "$G" svc:client table:svc:db/postgres/public.t sql \
		".operations == {\"INSERT\": $n, \"SELECT\": $n, \"UPDATE\": $n} and .latency_ms.count == $((3 * n))"
	assert_jq "$G" ".capture.pg_lost_bytes == 0 and .capture.pg_events_lost == 0 and .capture.lost_events == 0
		and .capture.pg_undecodable_bytes == 0" "$run: nothing lost or undecodable"
done

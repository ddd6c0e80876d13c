#!/usr/bin/env bash
# A process probed for TLS (--tls-probe process, the default) pays on
# every context switch while its perf events are on it, so seams lets go
# of one whose PostgreSQL client is refused TLS: pgbench, probed at its
# exec since it links libpq, asks for TLS first (sslmode=prefer) and gets
# 'N' from a server without it.  While pgbench still runs, seams holds no
# perf event but the ones its programs hang on (one per tracefs event),
# the capture counts the process as released, and its plain statements
# are decoded as usual.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

pgbench_init 1
g=$TEST_TMP/graph.json
seams_capture_bg "$g" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
cg_exec bench runuser -u postgres -- env PGSSLMODE=prefer "$PG_BIN/pgbench" -n -c 2 -j 2 -R 200 -T 5 \
	-h 127.0.0.1 -p "$PGPORT" postgres > "$TEST_TMP/pgbench.log" 2>&1
bench=$CG_LAST_PID

perf_fds() { find "/proc/$SEAMS_PID/fd" -lname 'anon_inode:*perf_event*' 2>/dev/null | wc -l; }
events() { grep -c "^[pr]:seams_${SEAMS_PID}_" /sys/kernel/tracing/uprobe_events 2>/dev/null || true; }
# Probed at its exec, let go at its first connection's answer: once its
# clients are connected, one perf event per tracefs event is left (8 for
# libssl's four SSL functions, made at the start), the one its program
# hangs on.
only_carriers() { [ "$(events)" -ge 8 ] && [ "$(perf_fds)" = "$(events)" ]; }
pgbench_clients() {
	[ "$(pg_psql -At -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" -ge 2 ]
}
wait_for 10 pgbench_clients || fail "pgbench's clients did not connect"
wait_for 10 only_carriers ||
	fail "pgbench's perf events still held: $(perf_fds) perf events for $(events) tracefs events"
kill -0 "$bench" 2>/dev/null || fail "pgbench ended before the check; it must still be running"
info "while pgbench runs: $(perf_fds) perf events, one per tracefs event ($(events))"
cg_wait_empty bench || fail "pgbench did not end"
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$g"
assert_jq "$g" '.capture.tls_released_processes >= 1 and .capture.tls_probed_processes == 0
	and .capture.pg_tls_connections == 0 and .capture.lost_events == 0' "pgbench let go, nothing lost"
assert_edge "$g" svc:bench "table:svc:db/postgres/public.pgbench_accounts" sql \
	'.operations.UPDATE > 0 and .operations.UPDATE == .operations.SELECT and .tls != true'

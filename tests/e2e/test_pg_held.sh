#!/usr/bin/env bash
# A frontend record waits in the kernel for its reply, and any holding of
# records must not lose the last ones of a connection that makes no later call:
#   idle   a TCP client that runs its queries, then stays idle past the
#          capture's end
#   killed a Unix-socket client killed by SIGKILL after its queries, so no
#          Terminate is sent and no hook sees its socket close
# Counts must equal the executions.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq
"$PY" -c 'import psycopg2' 2>/dev/null || skip "needs python3-psycopg2 (make deps)"

declare -A N=([idle]=7 [killed]=5)
pg_start --cgroup pg
pg_psql -c "CREATE TABLE held_tcp (id int); CREATE TABLE held_unix (id int)" >/dev/null

cat > "$TEST_TMP/client.py" <<'PY'
import os, signal, sys, time
import psycopg2
mode, n, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
host = "127.0.0.1" if mode == "idle" else os.environ["PGHOST_SOCK"]
conn = psycopg2.connect(host=host, port=os.environ["PGPORT"], user="postgres", dbname="postgres")
conn.autocommit = True
deadline = time.time() + 60
cur = conn.cursor()
table = "held_tcp" if mode == "idle" else "held_unix"
for i in range(n):
    cur.execute("SELECT count(*) FROM " + table + " WHERE id = %s", (i,))
    cur.fetchall()
open(tmp + "/" + mode + ".done", "w").close()
if mode == "killed":
    os.kill(os.getpid(), signal.SIGKILL)
while not os.path.exists(tmp + "/stop") and time.time() < deadline:
    time.sleep(0.05)
PY
G=$TEST_TMP/graph.json
cg_new idle; cg_new killed
seams_capture_bg "$G" --cgroup "$(cg_path pg)" --cgroup "$(cg_path idle)" --cgroup "$(cg_path killed)"
for mode in idle killed; do
	cg_exec "$mode" "$PY" "$TEST_TMP/client.py" "$mode" "${N[$mode]}" "$TEST_TMP" > "$TEST_TMP/$mode.log" 2>&1
	wait_for 15 test -e "$TEST_TMP/$mode.done" || { cat "$TEST_TMP/$mode.log" >&2; fail "$mode client did not run"; }
done
# Well past the kill, and idle: no later call of either connection.
sleep 0.5
seams_capture_stop || fail "capture did not exit cleanly"
touch "$TEST_TMP/stop"

assert_valid_graph "$G"
T=table:svc:pg/postgres
assert_edge "$G" svc:idle "$T/public.held_tcp" sql ".operations == {\"SELECT\": ${N[idle]}}"
assert_edge "$G" svc:killed "$T/public.held_unix" sql ".operations == {\"SELECT\": ${N[killed]}}"
assert_jq "$G" '.capture.pg_events_lost == 0 and .capture.pg_lost_bytes == 0' "nothing lost"

#!/usr/bin/env bash
# tests/bench/agent_soak.sh: does `seams agent` hold its memory under the
# churn a real host makes?  Peer agents' users report memory that only
# grows (docs: coroot-node-agent #195, beyla #1342); this runs the agent for
# SOAK_SECS while, all in test cgroups it traces:
#   churn     CHURN_RATE short TCP connections a second to a server in `api`
#   eph-N     a new cgroup every CG_EVERY seconds, running a short client
#             (a few connections to `api` and one query), then removed
#   sqlgen    SHAPES distinct statement shapes over the run against a
#             PostgreSQL in `db` (tables t0..t199, columns c0..c49: the
#             shapes differ after literals are normalized away), one new
#             connection every 1000 statements
# and scrapes /metrics every SAMPLE_SECS like Prometheus, noting the
# agent's VmRSS.  Prints the samples, the peak, and the RSS slope in KiB/min
# after warm-up (least squares over all but the first 20% of samples).  A
# measurement, not a pass/fail test: it fails only when the agent dies.
#
#   SOAK_SECS=60 tests/bench/agent_soak.sh         # a quick run
#   SOAK_SECS=3600 EVICT_AFTER=300 tests/bench/agent_soak.sh
# Environment: SOAK_SECS (600), SAMPLE_SECS (10), CHURN_RATE (200), CG_EVERY
# (3), SHAPES (100000), EVICT_AFTER (120, so eviction happens within the
# default run), AGENT_ARGS (more agent options).
# Not in `make bench`'s default list (it takes SOAK_SECS); SOAK=1 adds it.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl

SOAK_SECS=${SOAK_SECS:-600}
SAMPLE_SECS=${SAMPLE_SECS:-10}
CHURN_RATE=${CHURN_RATE:-200}
CG_EVERY=${CG_EVERY:-3}
SHAPES=${SHAPES:-100000}
EVICT_AFTER=${EVICT_AFTER:-120}
read -r -a EXTRA <<< "${AGENT_ARGS:-}"
"$PY" -c 'import psycopg2' 2>/dev/null || skip "needs python3-psycopg2 (make deps)"

cg_new db
cg_new api
cg_new churn
cg_new sqlgen
pg_start --cgroup db
# 200 tables of 50 int columns, empty: statements cost the server little.
pg_psql > /dev/null <<'EOF' || fail "creating the tables failed"
DO $$
BEGIN
	FOR t IN 0..199 LOOP
		EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, %s)', t,
			(SELECT string_agg(format('c%s int', c), ', ') FROM generate_series(0, 49) c));
	END LOOP;
END $$;
EOF

# A TCP server that answers each connection with one line and closes it.
api_port=$(free_port)
cg_exec api "$PY" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(1024)
while True:
    c, _ = s.accept()
    try:
        c.recv(64)
        c.sendall(b"ok\n")
    except OSError:
        pass
    c.close()' "$api_port" > "$TEST_TMP/api.log" 2>&1
wait_port "$api_port"

mkdir -p "$TEST_TMP/snap"
seams_agent_bg --cgroup "$CG_PARENT" --pg-port "$PGPORT" --snapshot-dir "$TEST_TMP/snap" \
	--window 10 --evict-after "$EVICT_AFTER" "${EXTRA[@]}"
info "agent $SEAMS_AGENT_PID at $SEAMS_AGENT_URL; soaking for $SOAK_SECS s"
END=$((SECONDS + SOAK_SECS))

# (a) connection churn, paced to CHURN_RATE a second.
cg_exec churn "$PY" -c '
import socket, sys, time
port, rate, end = int(sys.argv[1]), float(sys.argv[2]), time.time() + float(sys.argv[3])
n, t0 = 0, time.time()
while time.time() < end:
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        c.sendall(b"hi\n"); c.recv(16); c.close()
        n += 1
    except OSError:
        time.sleep(0.01)
    ahead = t0 + n / rate - time.time()
    if ahead > 0:
        time.sleep(ahead)
print(n)' "$api_port" "$CHURN_RATE" "$SOAK_SECS" > "$TEST_TMP/churn.out" 2>&1
churn_pid=$CG_LAST_PID

# (c) SHAPES distinct shapes, paced over the run.  Statement i reads table
# t(i % 200) and columns picked from i // 200, so no two share a shape.
cg_exec sqlgen "$PY" -c '
import psycopg2, random, sys, time
port, shapes, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
t0 = time.time(); end = t0 + secs
conn = None
i = 0
while i < shapes and time.time() < end:
    if i % 1000 == 0:
        if conn: conn.close()
        conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        cur = conn.cursor()
    k = i // 200
    a, b, d = k % 50, (k // 50) % 50, (k // 2500) % 50
    cur.execute("SELECT c%d, c%d FROM t%d WHERE id = %d AND c%d = %d"
                % (a, b, i % 200, random.randrange(1 << 30), d, random.randrange(1 << 30)))
    cur.fetchall()
    i += 1
    ahead = t0 + i * secs / shapes - time.time()
    if ahead > 0:
        time.sleep(ahead)
print(i)' "$PGPORT" "$SHAPES" "$SOAK_SECS" > "$TEST_TMP/sqlgen.out" 2>&1
sqlgen_pid=$CG_LAST_PID

# (b) a cgroup born and removed every CG_EVERY seconds.  Its parent is
# ours, so cleanup removes any left over.
(
	n=0
	while [ "$SECONDS" -lt "$END" ]; do
		n=$((n + 1))
		d=$CG_PARENT/eph-$n
		mkdir "$d"
		sh -c 'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"' seams-cg "$d" \
			"$PY" -c '
import socket, sys, psycopg2
for _ in range(5):
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    c.sendall(b"hi\n"); c.recv(16); c.close()
conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[2]), user="postgres", dbname="postgres")
conn.cursor().execute("SELECT 1")
conn.close()' "$api_port" "$PGPORT" > /dev/null 2>&1 || true
		cg_destroy_tree "$d"
		echo "$n" > "$TEST_TMP/cgroups.out"
		sleep "$CG_EVERY"
	done
) &
LIB_PIDS+=("$!")

# Samples: seconds since start, VmRSS in KiB, series and bytes on /metrics.
: > "$TEST_TMP/samples"
start=$SECONDS
while [ "$SECONDS" -lt "$END" ]; do
	sleep "$SAMPLE_SECS"
	kill -0 "$SEAMS_AGENT_PID" 2>/dev/null || { tail -n 20 "$SEAMS_AGENT_ERR" >&2; fail "the agent died after $((SECONDS - start)) s"; }
	rss=$(proc_status_field "$SEAMS_AGENT_PID" VmRSS)
	curl -sf --max-time 10 -o "$TEST_TMP/metrics" "$SEAMS_AGENT_URL/metrics" || : > "$TEST_TMP/metrics"
	echo "$((SECONDS - start)) $rss $(grep -vc '^#' "$TEST_TMP/metrics") $(wc -c < "$TEST_TMP/metrics")" >> "$TEST_TMP/samples"
done

# What was generated: the loops stop themselves at the deadline.
wait_for 30 sh -c "! kill -0 $churn_pid 2>/dev/null && ! kill -0 $sqlgen_pid 2>/dev/null" || true
lost=$(awk '/^seams_events_lost_total / { print $2 }' "$TEST_TMP/metrics")
pglost=$(awk '/^seams_pg_bytes_lost_total / { print $2 }' "$TEST_TMP/metrics")
dropped=$(awk '/^seams_series_dropped_total/ { s += $NF } END { print s + 0 }' "$TEST_TMP/metrics")
rc=0
seams_agent_stop TERM || rc=$?

printf '%8s %12s %10s %12s\n' seconds rss_kib series metrics_bytes
awk '{ printf "%8d %12d %10d %12d\n", $1, $2, $3, $4 }' "$TEST_TMP/samples"
echo "generated: $(cat "$TEST_TMP/churn.out" 2>/dev/null || echo ?) churn connections," \
	"$(cat "$TEST_TMP/sqlgen.out" 2>/dev/null || echo ?) of $SHAPES statement shapes," \
	"$(cat "$TEST_TMP/cgroups.out" 2>/dev/null || echo 0) short-lived cgroups"
echo "agent: events lost ${lost:-?}, pg bytes lost ${pglost:-?}, series dropped $dropped;" \
	"exit status $rc on SIGTERM; snapshot $(stat -c %s "$TEST_TMP/snap/graph.json" 2>/dev/null || echo 0) bytes"
awk -v secs="$SOAK_SECS" '
	{ t[NR] = $1; r[NR] = $2; if ($2 > peak) peak = $2 }
	END {
		printf "peak RSS: %d KiB (%.1f MiB) over %d samples\n", peak, peak / 1024, NR
		drop = int(NR * 0.2); if (drop < NR * 0.2) drop++
		first = drop + 1
		n = NR - first + 1
		if (n < 2) { print "slope: too few samples after warm-up (run longer)"; exit }
		for (i = first; i <= NR; i++) { sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i] }
		den = n * sxx - sx * sx
		if (den == 0) { print "slope: undefined"; exit }
		b = (n * sxy - sx * sy) / den
		printf "RSS slope after warm-up (samples %d..%d, t >= %d s): %.1f KiB/min\n", first, NR, t[first], b * 60
	}' "$TEST_TMP/samples"
[ "$rc" = 0 ] || fail "the agent exited $rc on SIGTERM"

#!/usr/bin/env bash
# seams agent scraped by a real Prometheus (Debian's):
#   db    PostgreSQL, the postmaster in this cgroup
#   api   python http.server on 127.0.0.1
#   web   curl to api N times; psql over TCP creating, writing and reading
#         public.orders
# The agent traces only these cgroups.  Checked through Prometheus' HTTP
# API: the service-graph counters for web->api and web->postgres.public.orders,
# the server histogram for the database edge, and OpenTelemetry's
# db_client_operation_duration_seconds for the INSERTs.  Checked on the
# agent itself: /metrics passes promtool and its labels hold no pid, client
# port, SQL text or literal; /healthz, /graph.json (both forms) and /report;
# it listens on loopback only; it runs with no BPF, PERFMON or SYS_ADMIN
# capability left; SIGTERM writes the snapshot and exits 0.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl ss prometheus promtool

N=6
# A literal that appears in the SQL only: it must never leave the agent.
SECRET=apple-4711

cg_new db
cg_new api
cg_new web
pg_start --cgroup db
mkdir -p "$TEST_TMP/www"
echo hello > "$TEST_TMP/www/index.txt"
api_port=$(free_port)
cg_exec api "$PY" -m http.server --bind 127.0.0.1 --directory "$TEST_TMP/www" "$api_port" \
	> "$TEST_TMP/api.log" 2>&1
wait_port "$api_port"

SNAP=$TEST_TMP/snap
mkdir -p "$SNAP"
# --tls-probe off: no TLS probes, so nothing needs CAP_BPF or CAP_PERFMON
# later (the other modes keep them to probe processes and libraries that
# come later: test_agent_tls).
seams_agent_bg --cgroup "$CG_PARENT" --pg-port "$PGPORT" --window 5 --snapshot-dir "$SNAP" --tls-probe off
AGENT=$SEAMS_AGENT_URL
prom_start "${AGENT#http://}"

# --- privileges of the running agent ------------------------------------------
# At most CAP_DAC_READ_SEARCH (2) and CAP_SYS_PTRACE (19), in every set.
allowed=$(( (1 << 2) | (1 << 19) ))
for set in CapEff CapPrm CapBnd CapInh CapAmb; do
	v=$(proc_status_field "$SEAMS_AGENT_PID" "$set")
	[ -n "$v" ] || fail "no $set in /proc/$SEAMS_AGENT_PID/status"
	for bit in 21 38 39; do
		(( (0x$v >> bit) & 1 )) && fail "the agent still has capability $bit in $set ($v)"
	done
	(( 0x$v & ~allowed )) && fail "the agent's $set is $v: more than CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE"
done
[ "$(proc_status_field "$SEAMS_AGENT_PID" NoNewPrivs)" = 1 ] || fail "the agent did not set no_new_privs"

# --- it listens on loopback only ---------------------------------------------
ss -Hltnp > "$TEST_TMP/ss.tcp"
ss -Hlunp > "$TEST_TMP/ss.udp"
mine=$(cat "$TEST_TMP/ss.tcp" "$TEST_TMP/ss.udp" | grep "pid=$SEAMS_AGENT_PID," | awk '{ print $4 }')
[ -n "$mine" ] || { cat "$TEST_TMP/ss.tcp" >&2; fail "ss shows no listening socket of the agent (pid $SEAMS_AGENT_PID)"; }
for a in $mine; do
	case $a in
		127.0.0.1:*) ;;
		*) fail "the agent listens on $a; without --listen it must listen on 127.0.0.1 only" ;;
	esac
done

# --- the workload ---------------------------------------------------------------
for i in $(seq "$N"); do
	cg_run web curl -sSf -o /dev/null "http://127.0.0.1:$api_port/index.txt" || fail "curl $i failed"
done
cg_run web timeout 30 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" \
	-U postgres -d postgres \
	-c "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int)" \
	-c "INSERT INTO orders VALUES (1, '$SECRET', 3)" \
	-c "INSERT INTO orders VALUES (2, 'pear', 5)" \
	-c "SELECT item FROM orders WHERE item = '$SECRET'" \
	-c "UPDATE orders SET qty = 4 WHERE id = 2" > /dev/null || fail "psql failed"

# --- through Prometheus ----------------------------------------------------------
TCP_EDGE='client="web",server="api",connection_type=""'
DB_EDGE='client="web",server="postgres.public.orders",connection_type="database"'
wait_prom_series "traces_service_graph_request_total{$TCP_EDGE} >= $N" 60 ||
	fail "Prometheus has no traces_service_graph_request_total{$TCP_EDGE} >= $N"
wait_prom_series "traces_service_graph_request_total{$DB_EDGE} >= 1" 60 ||
	fail "Prometheus has no traces_service_graph_request_total{$DB_EDGE} >= 1"
wait_prom_series "traces_service_graph_request_server_seconds_count{$DB_EDGE} >= 1" 30 ||
	fail "Prometheus has no traces_service_graph_request_server_seconds_count{$DB_EDGE}"
wait_prom_series "traces_service_graph_request_server_seconds_bucket{$DB_EDGE,le=\"+Inf\"}" 30 ||
	fail "the server histogram of the database edge has no +Inf bucket"
DB_OP='db_system_name="postgresql",db_namespace="postgres",db_collection_name="public.orders",db_operation_name="INSERT",client="web"'
wait_prom_series "db_client_operation_duration_seconds_count{$DB_OP} >= 2" 30 ||
	fail "Prometheus has no db_client_operation_duration_seconds_count{$DB_OP} >= 2 (2 INSERTs ran)"
# No series may name the server by pid or port, or split web->api by
# client port: one series for the edge.
n=$(prom_query "traces_service_graph_request_total{client=\"web\",server=\"api\"}" | jq '.data.result | length')
[ "$n" = 1 ] || fail "web->api is $n series in Prometheus, expected 1"

# --- /metrics itself -------------------------------------------------------------
M=$TEST_TMP/metrics.txt
curl -sf -D "$TEST_TMP/metrics.hdr" -o "$M" "$AGENT/metrics" || fail "GET /metrics failed"
grep -qi '^content-type: text/plain; version=0.0.4' "$TEST_TMP/metrics.hdr" ||
	{ cat "$TEST_TMP/metrics.hdr" >&2; fail "/metrics is not served as text/plain; version=0.0.4"; }
promtool check metrics < "$M" > "$TEST_TMP/promtool.out" 2>&1 ||
	{ cat "$TEST_TMP/promtool.out" >&2; fail "promtool check metrics rejects /metrics"; }
for h in traces_service_graph_request_total traces_service_graph_request_failed_total \
	traces_service_graph_request_server_seconds traces_service_graph_request_client_seconds \
	db_client_operation_duration_seconds seams_build_info seams_events_lost_total \
	seams_pg_bytes_lost_total seams_series_dropped_total seams_memory_bytes; do
	grep -q "^# TYPE $h " "$M" || fail "/metrics has no # TYPE line for $h"
done
grep -q '^# TYPE db_client_operation_duration_seconds histogram' "$M" ||
	fail "db_client_operation_duration_seconds is not a histogram"
# OpenTelemetry's advised buckets.
buckets=$(grep '^db_client_operation_duration_seconds_bucket{' "$M" | head -n 200 |
	sed -n 's/.*le="\([^"]*\)".*/\1/p' | sort -u | sort -g | tr '\n' ' ')
[ "$buckets" = "0.001 0.005 0.01 0.05 0.1 0.5 1 5 10 +Inf " ] ||
	fail "db_client_operation_duration_seconds buckets are '$buckets', expected 0.001 .. 10 and +Inf"
rss=$(awk '/^seams_memory_bytes[ {]/ { print $NF; exit }' "$M")
awk -v r="${rss:-0}" 'BEGIN { exit !(r > 1000000) }' || fail "seams_memory_bytes is '$rss', not an RSS in bytes"

# Labels: no pid, no client port, no SQL text, no literal.  Known pids of
# this test's processes, the agent's own included.
pids="$SEAMS_AGENT_PID $(cg_procs "$(cg_path db)") $(cg_procs "$(cg_path api)")"
"$PY" - "$M" "$SECRET" $pids <<'EOF' || fail "a label in /metrics holds what it must not (above)"
import re, sys
text, secret, pids = open(sys.argv[1]).read(), sys.argv[2], set(sys.argv[3:])
label = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
bad = []
for line in text.splitlines():
    if line.startswith("#") or "{" not in line:
        continue
    for name, value in label.findall(line[line.index("{"):line.rindex("}") + 1]):
        why = None
        if "pid" in name or "port" in name:
            why = "a pid or port label"
        elif name not in ("le", "quantile") and re.fullmatch(r"\d+", value):
            why = "a bare number (a pid or port?)"
        elif value in pids or re.search(r":\d{2,5}$", value):
            why = "a pid or an address with a port"
        elif re.search(r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE)\s", value, re.I):
            why = "SQL text"
        elif secret in value or "pear" in value:
            why = "a query literal"
        if why:
            bad.append(f"{why}: {name}=\"{value}\" in {line[:200]}")
for b in bad[:20]:
    print(b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
grep -q "$SECRET" "$M" && fail "the literal $SECRET appears in /metrics"

# --- the other endpoints ---------------------------------------------------------
code=$(curl -s -o "$TEST_TMP/healthz" -w '%{http_code}' "$AGENT/healthz") || fail "GET /healthz failed"
[ "$code" = 200 ] || fail "/healthz answered $code"
[ "$(tr -d '\r\n' < "$TEST_TMP/healthz")" = ok ] || fail "/healthz body is '$(head -c 100 "$TEST_TMP/healthz")', expected ok"

curl -sf -o "$TEST_TMP/window.json" "$AGENT/graph.json" || fail "GET /graph.json failed"
assert_valid_graph "$TEST_TMP/window.json"
curl -sf -o "$TEST_TMP/since.json" "$AGENT/graph.json?since=start" || fail "GET /graph.json?since=start failed"
assert_valid_graph "$TEST_TMP/since.json"
assert_edge "$TEST_TMP/since.json" svc:web svc:api tcp ".port == $api_port and .connections >= $N"
assert_edge "$TEST_TMP/since.json" svc:web table:svc:db/postgres/public.orders sql \
	'.operations.INSERT == 2 and .operations.SELECT == 1 and .operations.UPDATE == 1'
grep -q "$SECRET" "$TEST_TMP/since.json" && fail "the literal $SECRET appears in /graph.json?since=start"

curl -sf -o "$TEST_TMP/report.json" "$AGENT/report" || fail "GET /report failed"
jq -e '(.findings | type) == "array" and (.summary | type) == "object"' "$TEST_TMP/report.json" >/dev/null ||
	{ head -c 2000 "$TEST_TMP/report.json" >&2; fail "/report is not the JSON of 'seams report --format json'"; }
code=$(curl -s -o /dev/null -w '%{http_code}' "$AGENT/no-such-page") || true
[ "$code" = 404 ] || fail "an unknown path answered $code, expected 404"

# --- SIGTERM: snapshot and exit 0 -------------------------------------------------
prom_stop
seams_agent_stop TERM || fail "the agent did not exit 0 on SIGTERM"
assert_valid_graph "$SNAP/graph.json"
assert_edge "$SNAP/graph.json" svc:web svc:api tcp ".connections >= $N"
assert_edge "$SNAP/graph.json" svc:web table:svc:db/postgres/public.orders sql '.operations.INSERT == 2'
grep -q "$SECRET" "$SNAP/graph.json" && fail "the literal $SECRET appears in the snapshot"
# Written atomically: nothing but graph.json is left beside it.
others=$(find "$SNAP" -mindepth 1 ! -name graph.json -printf "%f ")
[ -z "$others" ] || fail "files left in the snapshot directory besides graph.json: $others"
exit 0

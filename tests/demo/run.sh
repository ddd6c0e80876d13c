#!/usr/bin/env bash
# tests/demo/run.sh (`make demo`): a small "distributed monolith" on this
# host, captured by seams.
#
#   loadgen -> gateway -> orders -> inventory -> pricing     synchronous chain
#   gateway -> pricing, inventory, orders, billing           fan-out
#   pricing -> orders, orders <-> billing                    cycles
#   PostgreSQL (cgroup postgres), database "shop":
#     orders and inventory both write public.stock           shared table
#     billing reads public.orders, owned by orders
#     billing connects over the Unix socket, the others over TCP
#
# Each service runs in its own cgroup under <cgroup2>/seams-demo/.  The demo
# captures DEMO_DURATION (10) seconds while the load runs, then prints the
# capture summary and the report and writes build/demo/graph.json and
# build/demo/seams.html (SEAMS_DEMO_OUT overrides build/demo).  Everything
# it starts is stopped and removed on exit, also on Ctrl-C.
set -euo pipefail
export SEAMS_CG_PARENT=seams-demo
source "$(dirname "$0")/../lib.sh"

DEMO_DIR=$SEAMS_ROOT/tests/demo
OUT=${SEAMS_DEMO_OUT:-$SEAMS_ROOT/build/demo}
DURATION=${DEMO_DURATION:-10}
SERVICES=(pricing inventory billing orders gateway)
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=$DEMO_DIR

say() { printf '\n== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "demo: run as root (seams needs CAP_BPF; cgroups need root)" >&2; exit 1; }
[ -n "$CG2" ] || { echo "demo: no cgroup2 mount found in /proc/self/mountinfo" >&2; exit 1; }
[ -x "$SEAMS" ] || { echo "demo: $SEAMS is not built; run 'make demo'" >&2; exit 1; }
"$PY" -c 'import psycopg2' 2>/dev/null || { echo "demo: $PY cannot import psycopg2 (make deps)" >&2; exit 1; }

mkdir -p "$OUT/logs"
# One demo at a time: the cgroup names are fixed.
exec 9> "$OUT/.lock"
flock -n 9 || { echo "demo: another demo is running (lock $OUT/.lock)" >&2; exit 1; }
# Left over by a demo that was killed with SIGKILL.
cg_destroy_tree "$CG_PARENT"
rm -f "$OUT/graph.json" "$OUT/seams.html" "$OUT"/logs/*

say "starting PostgreSQL (cgroup postgres)"
pg_start --cgroup postgres --db shop
pg_psql -f "$DEMO_DIR/schema.sql" > /dev/null
echo "postgres listens on 127.0.0.1:$PGPORT, socket $PGHOST_SOCK/.s.PGSQL.$PGPORT, database shop"

say "starting services: ${SERVICES[*]}"
for s in "${SERVICES[@]}"; do
	export "PORT_${s^^}=$(free_port)"
done
for s in "${SERVICES[@]}"; do
	cg_exec "$s" "$PY" "$DEMO_DIR/$s.py" > "$OUT/logs/$s.log" 2>&1
done
for s in "${SERVICES[@]}"; do
	port_var=PORT_${s^^}
	if ! wait_for 15 port_listening "${!port_var}"; then
		cat "$OUT/logs/$s.log" >&2
		echo "demo: $s did not start" >&2
		exit 1
	fi
	printf '  %-10s 127.0.0.1:%s  cgroup %s\n' "$s" "${!port_var}" "$(cg_rel "$s")"
done
# One request through everything before the load, to fail early and clearly.
if ! curl -sSf -o /dev/null "http://127.0.0.1:$PORT_GATEWAY/checkout?sku=sku-1" ||
	! curl -sSf -o /dev/null "http://127.0.0.1:$PORT_GATEWAY/browse?sku=sku-2"; then
	tail -n 20 "$OUT"/logs/*.log >&2
	echo "demo: the services do not answer" >&2
	exit 1
fi

say "starting the load generator (cgroup loadgen)"
STATS_FILE=$TEST_TMP/loadgen.stats cg_exec loadgen "$PY" "$DEMO_DIR/loadgen.py" > "$OUT/logs/loadgen.log" 2>&1
LOADGEN_PID=$CG_LAST_PID
loadgen_busy() { [ -s "$TEST_TMP/loadgen.stats" ] && [ "$(cut -d' ' -f1 "$TEST_TMP/loadgen.stats")" -ge 5 ]; }
wait_for 15 loadgen_busy || { cat "$OUT/logs/loadgen.log" >&2; echo "demo: no load" >&2; exit 1; }

say "seams capture --duration $DURATION --output $OUT/graph.json"
cg_args=()
for s in "${SERVICES[@]}" postgres loadgen; do cg_args+=(--cgroup "$(cg_path "$s")"); done
# PostgreSQL decoding (until every build has it, ask before passing --pg-port).
if "$SEAMS" capture --help 2>&1 | grep -q -- --pg-port; then
	cg_args+=(--pg-port "$PGPORT")
else
	echo "(this seams has no --pg-port yet: TCP edges only)"
fi
set +e
"$SEAMS" capture --duration "$DURATION" --output "$OUT/graph.json" "${cg_args[@]}" \
	2> >(tee "$OUT/capture.log" >&2)
rc=$?
set -e

kill -TERM "$LOADGEN_PID" 2>/dev/null || true
wait_for 15 pid_gone "$LOADGEN_PID" || true
sed -n 's/^loadgen: /  load: /p' "$OUT/logs/loadgen.log"
for s in "${SERVICES[@]}"; do
	n=$(grep -c . "$OUT/logs/$s.log" || true)
	[ "$n" = 0 ] || echo "  $s logged $n error lines (see $OUT/logs/$s.log)"
done
if [ "$rc" != 0 ] || [ ! -s "$OUT/graph.json" ]; then
	echo "demo: seams capture failed (status $rc); see $OUT/capture.log" >&2
	exit 1
fi

say "seams report $OUT/graph.json"
if ! "$SEAMS" report "$OUT/graph.json" --format text; then
	echo "(seams report failed: not built yet? carrying on)"
fi

say "seams export $OUT/graph.json --format html --output $OUT/seams.html"
if ! "$SEAMS" export "$OUT/graph.json" --format html --output "$OUT/seams.html"; then
	echo "(seams export failed: not built yet? carrying on)"
fi

say "done"
echo "graph:   $OUT/graph.json"
[ -s "$OUT/seams.html" ] && echo "picture: $OUT/seams.html"
echo "logs:    $OUT/logs/"
exit 0

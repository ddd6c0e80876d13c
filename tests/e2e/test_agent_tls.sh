#!/usr/bin/env bash
# The agent with its default --tls-probe process: a psycopg2 client over
# TLS (sslmode=require) started after the agent attached and dropped its
# privileges is probed at its exec, by the agent's own probe thread, and
# its statements show on /graph.json with tls: true.  The agent keeps
# CAP_BPF and CAP_PERFMON for that, and nothing more than the other agent
# tests allow.  Meanwhile another process in the traced cgroups execs
# python without pause: no event may be lost.  At SIGTERM the agent
# removes its tracefs uprobe events.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq; require_cmd curl; require_cmd openssl
"$PY" -c 'import psycopg2' 2>/dev/null || skip "needs python3-psycopg2 for $PY"

cg_new db
cg_new app
cg_new storm
pg_start --ssl --cgroup db
pg_psql -c "CREATE TABLE orders (id int PRIMARY KEY, v text)" > /dev/null || fail "setup failed"

mkdir -p "$TEST_TMP/snap"
seams_agent_bg --cgroup "$CG_PARENT" --pg-port "$PGPORT" --window 60 --snapshot-dir "$TEST_TMP/snap"
AGENT=$SEAMS_AGENT_URL

# CAP_DAC_READ_SEARCH (2), CAP_SYS_PTRACE (19), CAP_PERFMON (38), CAP_BPF (39).
allowed=$(( (1 << 2) | (1 << 19) | (1 << 38) | (1 << 39) ))
for set in CapEff CapPrm CapBnd; do
	v=$(proc_status_field "$SEAMS_AGENT_PID" "$set")
	(( 0x$v & ~allowed )) && fail "the agent's $set is $v: more than it needs to probe TLS"
done
v=$(proc_status_field "$SEAMS_AGENT_PID" CapEff)
(( (0x$v >> 39) & 1 && (0x$v >> 38) & 1 )) || fail "the agent dropped CAP_BPF or CAP_PERFMON ($v): it cannot probe new processes"

cg_exec storm sh -c 'while :; do "$1" -c pass; done' storm "$PY"
STORM=$CG_LAST_PID
cat > "$TEST_TMP/client.py" <<'PY'
import sys
import psycopg2
conn = psycopg2.connect(host="127.0.0.1", port=int(sys.argv[1]), user="postgres", dbname="postgres",
                        sslmode="require")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
if cur.fetchone()[0] is not True:
    sys.exit("not TLS")
for i in range(9):
    cur.execute("INSERT INTO orders (id, v) VALUES (%s, %s)", (i, "x"))
for i in range(4):
    cur.execute("SELECT v FROM orders WHERE id = %s", (i,))
    cur.fetchall()
conn.close()
print("done")
PY
cg_run app timeout 60 "$PY" "$TEST_TMP/client.py" "$PGPORT" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" >&2; fail "the client failed"; }

G=$TEST_TMP/graph.json
T=table:svc:db/postgres/public.orders
wait_for 20 sh -c 'curl -sf "$1/graph.json" > "$2" && jq -e --arg t "$3" \
	"any(.edges[]; .source == \"svc:app\" and .target == \$t and .kind == \"sql\" and .operations.INSERT == 9)" "$2" > /dev/null' \
	sh "$AGENT" "$G" "$T" || { show_graph "$G"; fail "no sql edge svc:app -> $T with 9 INSERTs"; }
assert_edge "$G" svc:app "$T" sql '.operations == {"INSERT": 9, "SELECT": 4} and .tls == true'
assert_jq "$G" '.capture.lost_events == 0 and .capture.pg_encrypted_connections == 0' \
	"nothing lost, nothing left encrypted, beside an exec storm"

kill "$STORM" 2>/dev/null || true
pid=$SEAMS_AGENT_PID
TRACEFS=/sys/kernel/tracing
[ -e "$TRACEFS/uprobe_events" ] || TRACEFS=/sys/kernel/debug/tracing
grep -q "seams_${pid}_" "$TRACEFS/uprobe_events" || fail "no uprobe event of the agent's in $TRACEFS/uprobe_events"
seams_agent_stop || fail "the agent did not exit cleanly"
if grep -q "seams_${pid}_" "$TRACEFS/uprobe_events" 2>/dev/null; then
	cat "$TRACEFS/uprobe_events" >&2
	fail "the agent left its uprobe events in $TRACEFS/uprobe_events"
fi
echo "PASS: a TLS client started after the agent dropped its privileges was decoded"

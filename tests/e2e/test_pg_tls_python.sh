#!/usr/bin/env bash
# psycopg2 clients over TLS (sslmode=require), each in its own cgroup:
#   early   connected and in TLS before the capture starts; it PREPAREs a
#           named statement then, and uses it (EXECUTE) and other
#           statements during the capture
#   fresh   started during the capture (probed at its exec, before it
#           loads libpq and libssl); named statements (PREPARE/EXECUTE)
#           and plain ones
#   midq    in the middle of a query (pg_sleep) when the capture starts;
#           afterwards more statements on the same connection
# Every statement run during the capture shows on its table, exactly, and
# the edges say tls: true.  The ciphertext is never counted as lost.  The
# server's backend, which uses the same libssl, gets no breakpoint.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq; require_cmd openssl
"$PY" -c 'import psycopg2' 2>/dev/null || skip "needs python3-psycopg2 for $PY"

cg_new db
cg_new early
cg_new fresh
cg_new midq
pg_start --ssl --cgroup db
pg_psql -c "CREATE TABLE early_items (id int PRIMARY KEY, v text)" \
	-c "CREATE TABLE fresh_items (id int PRIMARY KEY, v text)" \
	-c "CREATE TABLE mid_items (id int PRIMARY KEY, v text)" > /dev/null || fail "setup failed"

# client.py NAME PORT TMP WAIT: connect over TLS; with WAIT, PREPARE and
# wait for TMP/go.NAME (or, for midq, run a slow query that outlives the
# start of the capture); then the statements.
cat > "$TEST_TMP/client.py" <<'PY'
import os, sys, time
import psycopg2
name, port, tmp, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
table = name + "_items" if name != "midq" else "mid_items"
conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", sslmode="require")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
if cur.fetchone()[0] is not True:
    sys.exit("not TLS")
if name != "midq":
    cur.execute("PREPARE getv (int) AS SELECT v FROM %s WHERE id = $1" % table)
open("%s/ready.%s" % (tmp, name), "w").close()
if name == "midq":
    # In flight while the capture starts.
    cur.execute("SELECT pg_sleep(3), count(*) FROM mid_items")
    cur.fetchall()
elif wait:
    deadline = time.time() + 60
    while not os.path.exists("%s/go.%s" % (tmp, name)):
        if time.time() > deadline:
            sys.exit("no go file")
        time.sleep(0.05)
for i in range(7):
    cur.execute("INSERT INTO " + table + " (id, v) VALUES (%s, %s)", (i, "x%d" % i))
for i in range(11):
    cur.execute("SELECT v FROM " + table + " WHERE id = %s", (i % 7,))
    cur.fetchall()
for i in range(5):
    cur.execute("UPDATE " + table + " SET v = %s WHERE id = %s", ("y", i))
if name != "midq":
    for i in range(4):
        cur.execute("EXECUTE getv (%s)", (i,))
        cur.fetchall()
    cur.execute("DEALLOCATE getv")
conn.close()
print("done")
PY

start_client() {  # NAME WAIT
	cg_exec "$1" timeout 90 "$PY" "$TEST_TMP/client.py" "$1" "$PGPORT" "$TEST_TMP" "$2" \
		> "$TEST_TMP/$1.log" 2>&1
	eval "PID_$1=\$CG_LAST_PID"
}
start_client early 1
start_client midq 1
wait_for 20 test -e "$TEST_TMP/ready.early" || { cat "$TEST_TMP/early.log" >&2; fail "early did not connect"; }
wait_for 20 test -e "$TEST_TMP/ready.midq" || { cat "$TEST_TMP/midq.log" >&2; fail "midq did not connect"; }
sleep 0.3

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
# Per-process probes (the default): the client's libssl code has the
# breakpoints (a copied-on-write page in its text), the server backend
# serving it, which calls SSL_read/SSL_write too, has none: it pays nothing.
ssl_text_anon() {  # PID: kB of anonymous memory in its libssl text mappings
	awk '/ r-xp .*libssl\.so/ { on = 1; next } /^[0-9a-f]+-[0-9a-f]+ / { on = 0 }
		on && /^Anonymous:/ { kb += $2 } END { print kb + 0 }' "/proc/$1/smaps"
}
BACKEND=$(pg_psql -tAc "SELECT pid FROM pg_stat_activity WHERE client_port IS NOT NULL AND state = 'idle' AND query LIKE 'PREPARE%' LIMIT 1")
[ -n "$BACKEND" ] || fail "no backend found for the early client"
grep -q libssl "/proc/$BACKEND/maps" || fail "the backend has no libssl mapped"
[ "$(ssl_text_anon "$BACKEND")" = 0 ] || fail "the server backend $BACKEND has uprobe breakpoints in libssl"
EARLY_PY=$(pgrep -f -P "$PID_early" "client.py early") || fail "no python under $PID_early"
[ "$(ssl_text_anon "$EARLY_PY")" -gt 0 ] || fail "the early client $EARLY_PY has no breakpoint in libssl"
touch "$TEST_TMP/go.early"
start_client fresh 0
for c in early fresh midq; do
	pid_var=PID_$c
	wait_for 60 sh -c "! kill -0 ${!pid_var} 2>/dev/null" || fail "$c did not finish"
	grep -q done "$TEST_TMP/$c.log" || { cat "$TEST_TMP/$c.log" >&2; fail "$c failed"; }
done
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
# The pre-existing connections sent their database name before the
# capture: as for a plain connection, whatever name seams gives it, the
# table is under a database node of svc:db.
for c in early fresh midq; do
	t=${c}_items ins=7
	# midq: the reply to the query in flight at the start is not framed
	# from its start; as on a plain connection the decoder resynchronizes
	# on the next exchange, which may cost that one statement.
	[ "$c" = midq ] && t=mid_items ins='(6, 7)'
	tid=$(jq -r --arg n "public.$t" '.nodes[] | select(.kind == "table" and .name == $n) | .id' "$G")
	[ -n "$tid" ] || { show_graph "$G"; fail "no table node public.$t"; }
	assert_jq "$G" '(.nodes[] | select(.id == $t) | .database) as $d
		| .nodes[] | select(.id == $d) | .kind == "database" and .server == "svc:db"' \
		"$tid belongs to a database of svc:db" --arg t "$tid"
	assert_edge "$G" "svc:$c" "$tid" sql '
		(.operations.INSERT | IN('"$ins"')) and .operations.SELECT == 11 and .operations.UPDATE == 5
		and .tls == true and .errors == null
		and (.statements | any(.query == "UPDATE '"$t"' SET v = $1 WHERE id = $2"))'
done
assert_edge "$G" svc:fresh table:svc:db/postgres/public.fresh_items sql '.operations.INSERT == 7'
# The named statement prepared during the capture: its PREPARE names the table.
assert_edge "$G" svc:fresh table:svc:db/postgres/public.fresh_items sql '.operations.PREPARE == 1'
assert_jq "$G" '.capture.pg_encrypted_connections == 0
	and .capture.pg_tls_connections >= 3 and .capture.pg_unknown_statements == 0' \
	"three TLS connections decoded, none left encrypted"
# Only the reply of the query in flight at the start can be lost (it is
# not framed from its start); the ciphertext never is.
lost=$(jq '.capture.pg_lost_bytes' "$G")
undec=$(jq '.capture.pg_undecodable_bytes' "$G")
[ "$lost" -lt 200 ] && [ "$undec" -lt 200 ] || fail "pg_lost_bytes $lost: more than the one reply in flight"

#!/usr/bin/env bash
# A client that pipelines simple Queries, one small send() each, with Nagle
# on (no TCP_NODELAY) and its thread moved to the other CPU before every
# send.  Some sends go out at once, some wait behind unacknowledged bytes,
# and consecutive records of one connection land in different CPUs' rings:
# the collector must still see them in order.  A send's record takes the
# time TCP pushed its bytes, or the time read then when TCP held them back
# (bpf/seams.bpf.c, sent_at).
# Every third Query fails (a CHECK constraint): a reply paired with the
# wrong Query would put an error on the other table's edge.  Written against
# the wire protocol (python3, no driver) so nothing waits for a reply
# between the Queries.  Counts must equal the executions, with no byte
# undecodable.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

N=300
pg_start --cgroup pg
pg_psql -c "CREATE TABLE pipe_a (id int); CREATE TABLE pipe_b (id int CHECK (id < 0))" >/dev/null

cat > "$TEST_TMP/client.py" <<'PY'
import os, socket, struct, sys
n, port = int(sys.argv[1]), int(sys.argv[2])
cpus = sorted(os.sched_getaffinity(0))

def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body

s = socket.create_connection(("127.0.0.1", port))
params = b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!II", len(params) + 8, 196608) + params)

buf = b""
errors = 0
def until_ready(count):
    """Read up to the count-th ReadyForQuery, counting ErrorResponses."""
    global buf, errors
    while count:
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
            chunk = s.recv(65536)
            if not chunk:
                sys.exit("server closed the connection")
            buf += chunk
        t, ln = buf[:1], struct.unpack("!I", buf[1:5])[0]
        errors += t == b"E"
        if t == b"Z":
            count -= 1
        buf = buf[1 + ln:]

until_ready(1)
for i in range(n):
    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
    sql = "SELECT id FROM pipe_a WHERE id = %d" % i if i % 3 else "INSERT INTO pipe_b VALUES (%d)" % i
    s.send(msg(b"Q", sql.encode() + b"\0"))
until_ready(n)
if errors != (n + 2) // 3:
    sys.exit("%d errors, expected %d" % (errors, (n + 2) // 3))
s.sendall(msg(b"X", b""))
s.close()
PY

G=$TEST_TMP/graph.json
cg_new pipeclient
seams_capture_bg "$G" --cgroup "$(cg_path pg)" --cgroup "$(cg_path pipeclient)"
cg_exec pipeclient "$PY" "$TEST_TMP/client.py" "$N" "$PGPORT" > "$TEST_TMP/client.log" 2>&1
wait_for 60 pid_gone "$CG_LAST_PID" || fail "the client did not finish"
wait_for 10 cg_empty "$(cg_path pipeclient)" || fail "the client's cgroup did not empty"
[ -s "$TEST_TMP/client.log" ] && { cat "$TEST_TMP/client.log" >&2; fail "the client failed"; }
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
T=table:svc:pg/postgres
n_ins=$(( (N + 2) / 3 ))
assert_edge "$G" svc:pipeclient "$T/public.pipe_a" sql ".operations == {\"SELECT\": $((N - n_ins))} and (.errors // {}) == {}"
assert_edge "$G" svc:pipeclient "$T/public.pipe_b" sql ".operations == {\"INSERT\": $n_ins} and .errors == {\"23514\": $n_ins}"
assert_jq "$G" '.capture.pg_undecodable_bytes == 0' "no byte undecodable"
assert_jq "$G" '.capture.pg_events_lost == 0 and .capture.pg_lost_bytes == 0' "nothing lost"
echo "PASS: $N pipelined Queries from alternating CPUs, counted in order"

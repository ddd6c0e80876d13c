#!/usr/bin/env bash
# A PostgreSQL client speaking the protocol with vectored I/O: python3
# writes with writev(2) and sendmsg(2), several iovecs per message and a
# message header split between two of them, and reads with readv(2) and
# recvmsg(2) into a 3-byte buffer followed by a large one.  The framer
# follows each iovec; every statement must reach the table, nothing lost.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq python3

N=5
cg_new db
pg_start --cgroup db
pg_psql -c "CREATE TABLE iov (v int)" >/dev/null || fail "setup failed"
cat > "$TEST_TMP/client.py" <<'PY'
import os, socket, struct, sys

port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
reads = 0

def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body

def until_ready():
    global reads
    buf = b""
    while True:
        while len(buf) >= 5:
            t, l = buf[0:1], struct.unpack("!I", buf[1:5])[0]
            if len(buf) < 1 + l:
                break
            body, buf = buf[5:1 + l], buf[1 + l:]
            if t == b"E":
                sys.exit("server error: %r" % body)
            if t == b"Z":
                return
        a, b = bytearray(3), bytearray(8192)
        reads += 1
        k = os.readv(s.fileno(), [a, b]) if reads % 2 else s.recvmsg_into([a, b])[0]
        if k == 0:
            sys.exit("server closed the connection")
        buf += bytes((a + b)[:k])

params = b"user\0postgres\0database\0postgres\0\0"
startup = struct.pack("!II", len(params) + 8, 196608) + params
s.sendmsg([startup[:8], startup[8:]])
until_ready()
for i in range(n):
    q = msg(b"Q", b"INSERT INTO iov VALUES (%d)\0" % i)
    os.writev(s.fileno(), [q[:2], q[2:9], q[9:]])
    until_ready()
    q = msg(b"Q", b"SELECT v FROM iov WHERE v = %d\0" % i)
    s.sendmsg([q[:1], q[1:]])
    until_ready()
s.sendmsg([msg(b"X", b"")])
s.close()
PY

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
cg_run app timeout 30 python3 "$TEST_TMP/client.py" "$PGPORT" "$N" || fail "the python client failed"
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
assert_edge "$G" svc:app table:svc:db/postgres/public.iov sql \
	".operations == {\"INSERT\": $N, \"SELECT\": $N} and .errors == null"
assert_jq "$G" '.capture.pg_connections == 1 and .capture.pg_lost_bytes == 0
	and .capture.pg_undecodable_bytes == 0 and .capture.pg_unknown_statements == 0' \
	"one PostgreSQL connection, nothing lost or undecodable"

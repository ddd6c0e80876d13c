#!/usr/bin/env bash
# Hostile bytes on a port declared with --pg-port: a plain TCP server
# (python, cgroup `fakepg`) that answers garbage, and clients (cgroup
# `garbler`) that send random bytes, HTTP (with SQL in it), truncated
# startup packets, absurd lengths, a Query without its terminator, a huge
# declared message, and valid-looking PostgreSQL headers followed by junk.
# seams must exit 0 with a valid graph, invent no table or database, and
# count what it could not decode, and still decode a real client afterwards.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

PORT=$(free_port)

cat > "$TEST_TMP/server.py" <<'PY'
import os, socket, struct, sys, threading
port = int(sys.argv[1])
rnd = os.urandom
replies = [
    lambda: rnd(3000),
    lambda: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    # AuthenticationOk, then a RowDescription claiming 65535 fields in 10 bytes
    lambda: b"R" + struct.pack(">II", 8, 0) + b"T" + struct.pack(">IH", 10, 65535) + b"\0\0\0\0",
    # a DataRow declaring 2 GB, then garbage
    lambda: b"D" + struct.pack(">I", 0x7fffffff) + rnd(5000),
    # CommandComplete with no terminator, ReadyForQuery with a bad status
    lambda: b"C" + struct.pack(">I", 12) + b"SELECT 9" + b"Z" + struct.pack(">I", 5) + b"Q",
    # an ErrorResponse with a length smaller than 4
    lambda: b"E" + struct.pack(">I", 2) + rnd(100),
    lambda: b"",
]
def serve(c, i):
    try:
        c.settimeout(5)
        while True:
            d = c.recv(65536)
            if not d:
                break
            c.sendall(replies[i % len(replies)]())
            i += 1
    except Exception:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
n = 0
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c, n), daemon=True).start()
    n += 1
PY

cat > "$TEST_TMP/client.py" <<'PY'
import os, socket, struct, sys, time
port = int(sys.argv[1])
def startup(user=b"u", db=b"garbage_db"):
    body = struct.pack(">I", 196608) + b"user\0" + user + b"\0database\0" + db + b"\0\0"
    return struct.pack(">I", len(body) + 4) + body
def q(sql):
    return b"Q" + struct.pack(">I", len(sql) + 5) + sql + b"\0"
rnd = os.urandom
cases = [
    [rnd(4096)],
    [rnd(1), rnd(7), rnd(100000)],
    [b"GET /?q=SELECT+*+FROM+http_tbl HTTP/1.1\r\nHost: x\r\n\r\n"],
    [b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\nINSERT INTO http_body VALUES 1"],
    # truncated startup: declares 8 bytes, sends 5
    [struct.pack(">I", 8) + b"\0"],
    # startup with an absurd length
    [struct.pack(">II", 0x7fffffff, 196608) + rnd(200)],
    # startup declaring a length below the minimum
    [struct.pack(">II", 3, 196608)],
    # SSLRequest, then plaintext garbage (the server answered garbage, not S/N)
    [struct.pack(">II", 8, 80877103), rnd(500)],
    # a valid startup, then a Query whose length is absurd
    [startup(), b"Q" + struct.pack(">I", 0xfffffff0) + b"SELECT * FROM absurd_len"],
    # a valid startup, then a Query whose length is 3
    [startup(), b"Q" + struct.pack(">I", 3) + b"SELECT * FROM short_len\0"],
    # a valid startup, then a Query without its NUL terminator, then junk
    [startup(), b"Q" + struct.pack(">I", 30) + b"SELECT * FROM no_nul_terminator_xx" + rnd(300)],
    # a valid startup, then Parse/Bind with counts that do not fit
    [startup(), b"P" + struct.pack(">I", 12) + b"\0\0\xff\xff\xff\xff\xff",
     b"B" + struct.pack(">I", 9) + b"\0\0\xff\xff\0"],
    # a valid startup, then a header split across writes and junk
    [startup(), b"Q\0", b"\0\0", rnd(64)],
    # unknown type bytes with plausible lengths
    [startup(), b"\x01" + struct.pack(">I", 8) + b"abcd", b"z" + struct.pack(">I", 4)],
    # a huge declared message, partly sent
    [startup(), b"d" + struct.pack(">I", 0x40000000) + rnd(200000)],
]
for round_ in range(3):
    for parts in cases:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=3)
            for p in parts:
                s.sendall(p)
                try:
                    s.settimeout(0.05)
                    s.recv(65536)
                except Exception:
                    pass
                s.settimeout(3)
            s.close()
        except Exception as e:
            print("case error:", e, file=sys.stderr)
print("done")
PY

cg_new db
pg_start --cgroup db
pg_psql -c "CREATE TABLE after_garbage (id int)" > /dev/null || fail "setup failed"

cg_exec fakepg "$PY" "$TEST_TMP/server.py" "$PORT" > "$TEST_TMP/server.log" 2>&1
wait_port "$PORT"
cg_new garbler

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PORT" --pg-port "$PGPORT"
cg_run garbler timeout 60 "$PY" "$TEST_TMP/client.py" "$PORT" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" >&2; fail "garbage client failed"; }
grep -qx "done" "$TEST_TMP/client.log" || { cat "$TEST_TMP/client.log" >&2; fail "garbage client did not finish"; }
kill -0 "$SEAMS_PID" 2>/dev/null || { cat "$SEAMS_ERR" >&2; fail "seams died during the garbage"; }
# A real client afterwards is still decoded.
cg_run after timeout 30 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGPORT" -U postgres \
	-d postgres -c "INSERT INTO after_garbage VALUES (1)" > /dev/null || fail "psql after the garbage failed"
seams_capture_stop || fail "seams capture did not exit cleanly after the garbage"

assert_valid_graph "$G"
if grep -Eiq 'sanitizer|segmentation|abort|assert' "$SEAMS_ERR"; then
	cat "$SEAMS_ERR" >&2
	fail "seams reported a crash or an assertion on stderr"
fi
assert_edge "$G" svc:garbler svc:fakepg tcp ".port == $PORT and .connections >= 40"
assert_jq "$G" '[.nodes[] | select(.kind == "table") | .id] == ["table:svc:db/postgres/public.after_garbage"]' \
	"no table node invented from garbage (only public.after_garbage, from the real client)"
assert_jq "$G" '[.edges[] | select(.kind == "sql" and .source != "svc:after")] | all(.target | startswith("table:") | not)' \
	"no sql edge from the garbage client to a table"
assert_edge "$G" svc:after table:svc:db/postgres/public.after_garbage sql '.operations == {"INSERT": 1}'
assert_jq "$G" '[.nodes[] | select(.kind == "database" and .server == "svc:db")] | length == 1' \
	"one database node on the real server"
assert_jq "$G" '.capture.pg_undecodable_bytes + .capture.pg_lost_bytes > 0' \
	"pg_undecodable_bytes or pg_lost_bytes counts the garbage"
info "capture: $(jq -c '.capture | with_entries(select(.key | startswith("pg_")))' "$G")"

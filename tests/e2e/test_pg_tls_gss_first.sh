#!/usr/bin/env bash
# A client that asks for GSS encryption first, as libpq does with a
# Kerberos ticket (gssencmode=prefer): a server built without GSS refuses
# it ('N'), the client then sends an SSLRequest, gets 'S' and goes on over
# TLS.  The first 'N' answers a GSSENCRequest, not an SSLRequest, so seams
# must not let go of the client's TLS probes for it (--tls-probe process,
# the default): every statement is decoded from the first, and the client
# is not let go.  Debian's server has GSS (it answers 'G'), so a relay in
# front of it answers the GSSENCRequest itself and passes the rest on.
# The client is python speaking the protocol itself over ssl.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq; require_cmd openssl

cg_new db
cg_new gss
cg_new relay
pg_start --ssl --cgroup db
pg_psql -c "CREATE TABLE gss_items (id int PRIMARY KEY)" -c "INSERT INTO gss_items VALUES (1)" >/dev/null ||
	fail "setup failed"

cat > "$TEST_TMP/client.py" <<'PY'
import socket, ssl, struct, sys

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            sys.exit("connection closed")
        b += c
    return b

def until_ready(s):
    while True:
        t = recv_exact(s, 1)
        n = struct.unpack("!i", recv_exact(s, 4))[0]
        body = recv_exact(s, n - 4)
        if t == b"E":
            sys.exit("server error: %r" % body)
        if t == b"Z":
            return

sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
sock.sendall(struct.pack("!ii", 8, 80877104))  # GSSENCRequest
if recv_exact(sock, 1) != b"N":
    sys.exit("GSS encryption not refused")
sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
if recv_exact(sock, 1) != b"S":
    sys.exit("TLS refused")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(sock)
params = b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
until_ready(s)
for i in range(20):
    q = b"SELECT id FROM gss_items WHERE id = 1\0"
    s.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
    until_ready(s)
s.sendall(b"X" + struct.pack("!i", 4))
s.close()
PY

# relay.py LISTEN UPSTREAM: one connection; answers its GSSENCRequest 'N'.
cat > "$TEST_TMP/relay.py" <<'PY'
import socket, sys, threading
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(1)
c, _ = ls.accept()
first = c.recv(8)
if first[4:] != bytes.fromhex("04d21630"):
    sys.exit("not a GSSENCRequest")
c.sendall(b"N")
u = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
def pipe(a, b):
    while True:
        d = a.recv(65536)
        if not d:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        b.sendall(d)
t = threading.Thread(target=pipe, args=(u, c))
t.start()
pipe(c, u)
t.join()
PY
RELAY_PORT=$(free_port)
cg_exec relay "$PY" "$TEST_TMP/relay.py" "$RELAY_PORT" "$PGPORT"
wait_port "$RELAY_PORT"

g=$TEST_TMP/graph.json
seams_capture_bg "$g" --cgroup "$CG_PARENT" --pg-port "$PGPORT" --pg-port "$RELAY_PORT"
cg_run gss timeout 60 "$PY" "$TEST_TMP/client.py" "$RELAY_PORT" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" >&2; fail "the client failed"; }
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$g"
info "capture: $(jq -c '.capture | {tls_probed_processes, tls_released_processes, pg_tls_connections, pg_connections}' "$g")"
assert_jq "$g" '.capture.tls_released_processes == 0 and .capture.pg_tls_connections == 1
	and .capture.lost_events == 0' "the client kept its probes, its TLS connection decoded"
# Its server, as the client sees it, is the relay.
assert_edge "$g" svc:gss "table:svc:relay/postgres/public.gss_items" sql \
	'.operations == {"SELECT": 20} and .tls == true'

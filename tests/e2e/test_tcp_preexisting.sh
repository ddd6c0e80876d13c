#!/usr/bin/env bash
# Connections opened BEFORE the capture starts, to `api`:
#   pool   a keep-alive HTTP/1.1 client used during the capture: the edge
#          pool -> api must be in the graph although no connect/accept is seen
#   quiet  a client that moves no byte during the capture, only closes: its
#          close names it, so the api's end is not taken for a remote peer
#   gone   a client that sends its last bytes and closes before the capture;
#          `late` reads them and closes during it.  Its client cannot be
#          named: the connection is counted as client_gone, not drawn from
#          an invented external peer.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

mkdir -p "$TEST_TMP/www"
echo ok > "$TEST_TMP/www/ping"
port=$(free_port)
cg_exec api "$PY" -m http.server --protocol HTTP/1.1 --bind 127.0.0.1 \
	--directory "$TEST_TMP/www" "$port" > "$TEST_TMP/api.log" 2>&1
wait_port "$port"

# The client: one connection, one request now, then a request every 50 ms
# while $TEST_TMP/go exists; it fails if the connection is ever replaced.
cat > "$TEST_TMP/pool.py" <<'PY'
import http.client, os, sys, time
port, tmp = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
def get():
    conn.request("GET", "/ping")
    r = conn.getresponse()
    r.read()
    if r.status != 200 or r.will_close:
        sys.exit("bad response %d (will_close=%s)" % (r.status, r.will_close))
get()
local = conn.sock.getsockname()
open(tmp + "/ready.tmp", "w").write("%s:%d\n" % local)
os.rename(tmp + "/ready.tmp", tmp + "/ready")
n = 0
deadline = time.time() + 120
while not os.path.exists(tmp + "/stop") and time.time() < deadline:
    if os.path.exists(tmp + "/go"):
        get()
        if conn.sock is None or conn.sock.getsockname() != local:
            sys.exit("connection was replaced")
        n += 1
        with open(tmp + "/count.tmp", "w") as f:
            f.write("%d\n" % n)
        os.rename(tmp + "/count.tmp", tmp + "/count")
    time.sleep(0.05)
print("requests during capture:", n)
PY
cg_exec pool "$PY" "$TEST_TMP/pool.py" "$port" "$TEST_TMP" > "$TEST_TMP/pool.log" 2>&1
POOL_PID=$CG_LAST_PID
wait_for 15 test -s "$TEST_TMP/ready" || { cat "$TEST_TMP/pool.log" >&2; fail "pool client did not connect"; }
# Make sure the connection is idle and established before the capture.
sleep 0.2

cat > "$TEST_TMP/quiet.py" <<'PY'
import http.client, os, sys, time
port, tmp = int(sys.argv[1]), sys.argv[2]
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
conn.request("GET", "/ping")
conn.getresponse().read()
open(tmp + "/quiet.ready", "w").close()
deadline = time.time() + 60
while not os.path.exists(tmp + "/quiet.close") and time.time() < deadline:
    time.sleep(0.02)
conn.close()
PY
cg_exec quiet "$PY" "$TEST_TMP/quiet.py" "$port" "$TEST_TMP" > "$TEST_TMP/quiet.log" 2>&1
QUIET_PID=$CG_LAST_PID
wait_for 15 test -e "$TEST_TMP/quiet.ready" || { cat "$TEST_TMP/quiet.log" >&2; fail "quiet client did not connect"; }
# Make sure the connections are idle and established before the capture.
sleep 0.2

cat > "$TEST_TMP/late.py" <<'PY'
import os, socket, sys, time
tmp = sys.argv[1]
srv = socket.create_server(("127.0.0.1", 0))
open(tmp + "/late.port.tmp", "w").write("%d\n" % srv.getsockname()[1])
os.rename(tmp + "/late.port.tmp", tmp + "/late.port")
conn, _ = srv.accept()
deadline = time.time() + 60
while not os.path.exists(tmp + "/late.read") and time.time() < deadline:
    time.sleep(0.02)
got = b""
while True:
    b = conn.recv(100)
    if not b:
        break
    got += b
conn.close()
print("late read", got, flush=True)
# Still listening when the capture ends: that tells which end served.
while not os.path.exists(tmp + "/stop") and time.time() < deadline:
    time.sleep(0.05)
PY
cg_exec late "$PY" "$TEST_TMP/late.py" "$TEST_TMP" > "$TEST_TMP/late.log" 2>&1
wait_for 15 test -s "$TEST_TMP/late.port" || { cat "$TEST_TMP/late.log" >&2; fail "late server did not listen"; }
cg_run gone "$PY" -c 'import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"bye")
s.close()' "$(cat "$TEST_TMP/late.port")" || fail "gone client failed"
sleep 0.2

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$(cg_path pool)" --cgroup "$(cg_path api)" --cgroup "$(cg_path quiet)" \
	--cgroup "$(cg_path late)" --cgroup "$(cg_path gone)"
touch "$TEST_TMP/late.read"
wait_for 10 grep -q "late read b'bye'" "$TEST_TMP/late.log" || { cat "$TEST_TMP/late.log" >&2; fail "late server did not read"; }
touch "$TEST_TMP/quiet.close"
wait_for 10 pid_gone "$QUIET_PID" || fail "quiet client did not close"
touch "$TEST_TMP/go"
count_at_least() { [ -s "$TEST_TMP/count" ] && [ "$(cat "$TEST_TMP/count")" -ge "$1" ]; }
wait_for 20 count_at_least 20 || { cat "$TEST_TMP/pool.log" >&2; fail "pool client stopped sending"; }
seams_capture_stop || fail "capture did not exit cleanly"
touch "$TEST_TMP/stop"
wait_for 10 pid_gone "$POOL_PID" || fail "pool client did not stop"
grep -q 'requests during capture' "$TEST_TMP/pool.log" ||
	{ cat "$TEST_TMP/pool.log" >&2; fail "pool client failed (see above)"; }

assert_valid_graph "$G"
assert_no_external_listener "$G"
assert_edge "$G" svc:pool svc:api tcp ".port == $port and .connections >= 1"
# Exactly one connection existed: no connection may be counted twice.
assert_edge "$G" svc:pool svc:api tcp ".connections == 1"
assert_node "$G" svc:api ".cgroup == \"$(cg_rel api)\""
assert_node "$G" svc:pool ".cgroup == \"$(cg_rel pool)\""
assert_edge "$G" svc:quiet svc:api tcp ".port == $port and .connections == 1"
assert_jq "$G" '[.nodes[] | select(.kind == "external")] == []' \
	"no external node: both ends of every connection are captured services"
assert_no_edge "$G" svc:gone svc:late tcp
assert_jq "$G" '.capture.client_gone_connections == 1' \
	"the connection whose client closed before the capture is counted as client_gone"

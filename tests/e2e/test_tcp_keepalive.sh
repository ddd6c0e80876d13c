#!/usr/bin/env bash
# Exchanges on keep-alive connections: an HTTP/1.1 server in cgroup `api`,
# a client in cgroup `web` making N requests on one connection and then,
# on a second connection, M more.  The edge counts 2 connections and N + M
# requests: a send after a receive starts an exchange.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

N=100 M=7
port=$(free_port)
cat > "$TEST_TMP/server.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
cat > "$TEST_TMP/client.py" <<'PY'
import http.client, sys
port = int(sys.argv[1])
for n in map(int, sys.argv[2:]):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(n):
        c.request("GET", "/%d" % i)
        r = c.getresponse()
        assert r.read() == b"ok\n"
    c.close()
print("done")
PY
cg_exec api "$PY" "$TEST_TMP/server.py" "$port" > "$TEST_TMP/api.log" 2>&1
wait_port "$port"
cg_new web

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT"
cg_run web "$PY" "$TEST_TMP/client.py" "$port" "$N" "$M" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" >&2; fail "client failed"; }
# The server closes its ends after the client: let both closes arrive.
sleep 0.5
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
assert_edge "$G" svc:web svc:api tcp ".port == $port and .connections == 2 and .requests == $((N + M))"

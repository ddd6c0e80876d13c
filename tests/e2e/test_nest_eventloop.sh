#!/usr/bin/env bash
# Nesting under an event loop: b serves every request on one thread
# (asyncio) and calls c inside each, while a sends requests from several
# threads at once.  Interleaved requests are counted as ambiguous and their
# calls are not attributed; the calls that are attributed never outnumber
# the requests that were served alone.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

THREADS=4 N=30
port_b=$(free_port)
port_c=$(free_port)
cat > "$TEST_TMP/c.py" <<'PY'
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
cat > "$TEST_TMP/b.py" <<'PY'
import asyncio, sys
port, callee = int(sys.argv[1]), int(sys.argv[2])

async def call():
    r, w = await asyncio.open_connection("127.0.0.1", callee)
    w.write(b"GET / HTTP/1.0\r\n\r\n")
    await w.drain()
    await r.read()
    w.close()

async def serve(r, w):
    await r.readuntil(b"\r\n\r\n")
    await asyncio.sleep(0.01)
    await call()
    w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    await w.drain()
    w.close()

async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", port)
    async with s:
        await s.serve_forever()
asyncio.run(main())
PY
cat > "$TEST_TMP/client.py" <<'PY'
import http.client, sys, threading
port, threads, n = map(int, sys.argv[1:4])
def run():
    for i in range(n):
        c = http.client.HTTPConnection("127.0.0.1", port)
        c.request("GET", "/")
        assert c.getresponse().read() == b"ok\n"
        c.close()
ts = [threading.Thread(target=run) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print("done")
PY
cg_exec c "$PY" "$TEST_TMP/c.py" "$port_c" > "$TEST_TMP/c.log" 2>&1
wait_port "$port_c"
cg_exec b "$PY" "$TEST_TMP/b.py" "$port_b" "$port_c" > "$TEST_TMP/b.log" 2>&1
wait_port "$port_b"
cg_new a

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT"
cg_run a "$PY" "$TEST_TMP/client.py" "$port_b" "$THREADS" "$N" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" >&2; fail "client failed"; }
sleep 0.5
seams_capture_stop || fail "capture did not exit cleanly"
assert_valid_graph "$G"
show_graph "$G"

# Every request is counted; with four clients at once, some interleave.
assert_edge "$G" svc:a svc:b tcp ".nesting.requests >= $((THREADS * N * 9 / 10)) and .nesting.ambiguous > 0"
# Attributed calls only come from requests served alone.
assert_edge "$G" svc:a svc:b tcp '(.nesting.calls["svc:c"].requests // 0) <= .nesting.requests - .nesting.ambiguous'
assert_edge "$G" svc:a svc:b tcp '(.nesting.calls // {} | keys) - ["svc:c"] == []'

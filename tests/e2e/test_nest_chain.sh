#!/usr/bin/env bash
# Causal nesting: a client `a` calls service `b` N times; b calls service
# `c` while serving one request in EVERY, and a timer thread in b calls c
# on its own.  The edge a -> b nests b -> c in N/EVERY of its requests; the
# timer's calls are on the edge b -> c but inside no request; the report's
# chain a -> b -> c carries that fraction.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

N=80 EVERY=4 TIMER=0.05
port_b=$(free_port)
port_c=$(free_port)
cat > "$TEST_TMP/svc.py" <<'PY'
import http.client, http.server, sys, threading, time
port, callee, every, timer = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
count = [0]
lock = threading.Lock()

def call():
    # A new connection per call, as urllib and many clients do.
    c = http.client.HTTPConnection("127.0.0.1", callee)
    c.request("GET", "/")
    assert c.getresponse().read() == b"ok\n"
    c.close()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with lock:
            count[0] += 1
            n = count[0]
        if callee and n % every == 0:
            call()
        time.sleep(0.002)
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

def background():
    while True:
        time.sleep(timer)
        call()

if callee and timer > 0:
    threading.Thread(target=background, daemon=True).start()
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
cat > "$TEST_TMP/client.py" <<'PY'
import http.client, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
for i in range(n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/%d" % i)
    assert c.getresponse().read() == b"ok\n"
    c.close()
print("done")
PY
cg_exec c "$PY" "$TEST_TMP/svc.py" "$port_c" 0 1 0 > "$TEST_TMP/c.log" 2>&1
wait_port "$port_c"
cg_exec b "$PY" "$TEST_TMP/svc.py" "$port_b" "$port_c" "$EVERY" "$TIMER" > "$TEST_TMP/b.log" 2>&1
wait_port "$port_b"
cg_new a

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT"
cg_run a "$PY" "$TEST_TMP/client.py" "$port_b" "$N" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" >&2; fail "client failed"; }
sleep 0.5
seams_capture_stop || fail "capture did not exit cleanly"
assert_valid_graph "$G"
show_graph "$G"

# Every request of a was served and seen; one in EVERY called c.
assert_edge "$G" svc:a svc:b tcp ".nesting.requests == $N and (.nesting.ambiguous // 0) == 0"
assert_edge "$G" svc:a svc:b tcp ".nesting.calls[\"svc:c\"].requests == $((N / EVERY))"
assert_edge "$G" svc:a svc:b tcp ".nesting.calls[\"svc:c\"].latency_ms.p50 > 0"
assert_edge "$G" svc:a svc:b tcp ".nesting.latency_ms.count == $N"
# The timer's calls are on b -> c too, and more of them than the nested ones.
b_to_c=$(edge_json "$G" svc:b svc:c tcp | jq '.connections')
[ "$b_to_c" -gt $((N / EVERY + 5)) ] || fail "b -> c has $b_to_c connections; the timer's calls are missing"
# Nothing is nested in c's requests: it calls nobody.
assert_edge "$G" svc:b svc:c tcp '(.nesting.calls // {}) == {}'

# The report: one causal chain a -> b -> c, with the nested fraction.
R=$TEST_TMP/report.json
"$SEAMS" report --format json "$G" > "$R"
jq -e '[.findings[] | select(.kind == "sync_chain")] | length == 1' "$R" > /dev/null ||
	{ jq '.findings' "$R" >&2; fail "expected exactly one sync_chain finding"; }
jq -e --argjson every "$EVERY" '.findings[] | select(.kind == "sync_chain") |
	.services == ["a", "b", "c"] and (.fraction - 1 / $every | fabs) < 0.02' "$R" > /dev/null ||
	{ jq '.findings[] | select(.kind == "sync_chain")' "$R" >&2; fail "chain a -> b -> c or its fraction is wrong"; }
"$SEAMS" report "$G" > "$TEST_TMP/report.txt"
cat "$TEST_TMP/report.txt" >&2
grep -q "a -> b -> c" "$TEST_TMP/report.txt" || fail "the text report does not show the chain"

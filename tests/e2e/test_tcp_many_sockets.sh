#!/usr/bin/env bash
# More traced sockets than the kernel side's table of per-socket slots
# (1024): a client in cgroup `web` holds 1500 connections open at once to a
# server in cgroup `api`, and makes 3 requests on each, in turn, before
# closing them all.  At most 1024 of the 3000 ends find a free slot, the
# rest keep their state in socket storage, and are counted
# (sockets_without_slot); either way the edge counts every
# connection once and every request once (a socket whose state went missing
# would count a request again).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

CONNS=1500 ROUNDS=3
port=$(free_port)
cat > "$TEST_TMP/server.py" <<'PY'
import resource, selectors, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
sel = selectors.DefaultSelector()
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(4096)
sel.register(ls, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        s = key.fileobj
        if s is ls:
            c, _ = ls.accept()
            sel.register(c, selectors.EVENT_READ)
            continue
        d = s.recv(64)
        if d:
            s.sendall(d)
        else:
            sel.unregister(s)
            s.close()
PY
cat > "$TEST_TMP/client.py" <<'PY'
import resource, socket, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
port, conns, rounds = map(int, sys.argv[1:])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
for r in range(rounds):
    for s in socks:
        s.sendall(b"x")
    for s in socks:
        assert s.recv(1) == b"x"
for s in socks:
    s.close()
print("done")
PY
cg_exec api "$PY" "$TEST_TMP/server.py" "$port" > "$TEST_TMP/api.log" 2>&1
wait_port "$port"
cg_new web

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT"
cg_run web "$PY" "$TEST_TMP/client.py" "$port" "$CONNS" "$ROUNDS" > "$TEST_TMP/client.log" 2>&1 ||
	{ cat "$TEST_TMP/client.log" "$TEST_TMP/api.log" >&2; fail "client failed"; }
# The server closes its ends after the client: let the closes arrive.
sleep 1
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
assert_jq "$G" '.capture.lost_events == 0' "no event lost"
# 3000 ends, all traced before any closes, for 1024 slots.
assert_jq "$G" ".capture.sockets_without_slot >= $((2 * CONNS - 1024)) and .capture.sockets_without_slot < $((2 * CONNS))" \
	"sockets without a slot counted"
assert_edge "$G" svc:web svc:api tcp \
	".port == $port and .connections == $CONNS and .requests == $((CONNS * ROUNDS))"

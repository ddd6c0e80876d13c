#!/usr/bin/env bash
# A process name the kernel cut inside a UTF-8 character: the task comm
# holds 15 bytes, so "seams-utf8-tes" + "é" (2 bytes) keeps only the
# first byte of the "é".  jansson refuses such a string, which used to
# give several nodes with one id, or a "processes" list with the name
# twice, and a graph that `seams report` rejects.
#   server  in cgroup `web`: its comm is listed in the node's "processes"
#   client  in the root cgroup: its service is named by its comm
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq

N=5
NAME_BYTES='b"seams-utf8-tes\xc3\xa9"'
WANT=seams-utf8-tes   # the name without the cut character

cat > "$TEST_TMP/server.py" <<PYEOF
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p($NAME_BYTES), 0, 0, 0)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(16)
while True:
    c, _ = s.accept()
    c.recv(100)
    c.sendall(b"pong")
    c.close()
PYEOF
cat > "$TEST_TMP/client.py" <<PYEOF
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p($NAME_BYTES), 0, 0, 0)
assert open("/proc/self/comm", "rb").read() == b"seams-utf8-tes\xc3\n", "comm not cut as expected"
for _ in range($N):
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    c.sendall(b"ping")
    assert c.recv(100) == b"pong"
    c.close()
PYEOF

port=$(free_port)
cg_exec web "$PY" "$TEST_TMP/server.py" "$port" > "$TEST_TMP/web.log" 2>&1
wait_port "$port"

G=$TEST_TMP/graph.json
seams_capture_bg "$G"
# The client moves itself into the root cgroup, where a service is named by
# its process name; it exits on its own, so nothing is left behind.
sh -c 'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"' seams-root "$CG2" \
	"$PY" "$TEST_TMP/client.py" "$port" || fail "client failed"
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
"$SEAMS" report "$G" > "$TEST_TMP/report.txt" 2>&1 ||
	{ cat "$TEST_TMP/report.txt" >&2; show_graph "$G"; fail "seams report rejected the graph"; }
assert_node "$G" svc:web "$(printf '.cgroup == "%s" and ([.processes[] | select(startswith("seams-utf8"))] == ["%s"])' \
	"$(cg_rel web)" "$WANT")"
assert_node "$G" "svc:$WANT" "$(printf '.kind == "service" and .name == "%s" and .processes == ["%s"]' "$WANT" "$WANT")"
assert_jq "$G" '[.nodes[] | select(.kind == "service" and (.name | startswith("seams-utf8")))] | length == 1' \
	"one service node for the client's process name"
assert_edge "$G" "svc:$WANT" svc:web tcp ".port == $port and .connections >= $N"

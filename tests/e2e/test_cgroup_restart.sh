#!/usr/bin/env bash
# `--cgroup PATH` keeps tracing a unit that restarts.  systemd removes a
# unit's cgroup when it stops and makes a new one at the same path when it
# starts, with a new id; the capture must follow the path, not the id.
#   app/web     a TCP server, app/client its client; --cgroup app
# Traffic before the restart, then everything in app is killed, app is
# removed and made again, and the same services talk again: the edge must
# count the connections of both runs.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq bpftool

N1=3
N2=4

cat > "$TEST_TMP/server.py" <<'PYEOF'
import socket, sys
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
cat > "$TEST_TMP/client.py" <<'PYEOF'
import socket, sys
for _ in range(int(sys.argv[2])):
    c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    c.sendall(b"ping")
    assert c.recv(100) == b"pong"
    c.close()
PYEOF

# run N: start the unit's server, make N connections from its client.
run() {
	local port
	port=$(free_port)
	cg_exec app/web "$PY" "$TEST_TMP/server.py" "$port" > "$TEST_TMP/web.log" 2>&1
	wait_port "$port"
	cg_run app/client "$PY" "$TEST_TMP/client.py" "$port" "$1" || fail "client failed"
}

# The ids in the running capture's cgroup_allow map (found among the maps
# its fds hold, so another capture on this host does not confuse it).
allowed_ids() {
	local f id
	for f in /proc/"$SEAMS_PID"/fdinfo/*; do
		id=$(awk '/^map_id:/ { print $2 }' "$f" 2>/dev/null)
		[ -n "$id" ] || continue
		[ "$(bpftool map show id "$id" -j | jq -r .name)" = cgroup_allow ] || continue
		bpftool map dump id "$id" -j | jq '.[].formatted.key'
	done
}
id_allowed() { allowed_ids | grep -qx "$1"; }

cg_new app/web
cg_new app/client
G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$(cg_path app)"
old_id=$(stat -c %i "$(cg_path app)")
wait_for 10 id_allowed "$old_id" || fail "the capture does not allow cgroup id $old_id of app"
run "$N1"
# The collector names an event's cgroup when it reads the event (every
# 100 ms): give it that time before the cgroup is gone.
sleep 0.5

# The unit stops: its processes die and its cgroup goes.
cg_destroy_tree "$(cg_path app)"
[ ! -d "$(cg_path app)" ] || fail "could not remove cgroup app"
# ... and starts again: same path, new cgroup.
cg_new app/web
cg_new app/client
new_id=$(stat -c %i "$(cg_path app)")
[ "$new_id" != "$old_id" ] || skip "the kernel gave the new cgroup the old id $old_id; nothing to test"
# The capture looks again about once a second; without that, the new id
# never appears and the traffic below goes unseen.
wait_for 10 id_allowed "$new_id" || info "cgroup id $new_id of the new app was not allowed within 10 s"
id_allowed "$old_id" && info "the gone cgroup id $old_id is still allowed"
run "$N2"
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
assert_node "$G" svc:web "$(printf '.cgroup == "%s"' "$(cg_rel app/web)")"
assert_edge "$G" svc:client svc:web tcp ".connections == $((N1 + N2))"
assert_no_edge "$G" svc:web svc:client tcp
# The map is kept to the paths' current ids.
id_allowed "$old_id" 2>/dev/null && fail "the gone cgroup id $old_id is still allowed" || true

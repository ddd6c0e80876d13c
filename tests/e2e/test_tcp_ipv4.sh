#!/usr/bin/env bash
# IPv4 service->service edge: python http.server in cgroup `web` on
# 127.0.0.1, curl from cgroup `client`, capture over the whole host.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl

N=5
SIZE=3000
mkdir -p "$TEST_TMP/www"
head -c "$SIZE" /dev/zero | tr '\0' x > "$TEST_TMP/www/page.txt"

port=$(free_port)
cg_exec web "$PY" -m http.server --bind 127.0.0.1 --directory "$TEST_TMP/www" "$port" \
	> "$TEST_TMP/web.log" 2>&1
wait_port "$port"
cg_new client

G=$TEST_TMP/graph.json
seams_capture_bg "$G"
for i in $(seq "$N"); do
	cg_run client curl -sSf -o /dev/null "http://127.0.0.1:$port/page.txt" ||
		fail "curl $i failed"
done
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
assert_no_external_listener "$G"
assert_node "$G" svc:web "$(printf '.kind == "service" and .name == "web" and .cgroup == "%s"
	and (.processes | any(. == "python3"))
	and (.listens | any(. == "127.0.0.1:%s"))' "$(cg_rel web)" "$port")"
assert_node "$G" svc:client "$(printf '.kind == "service" and .cgroup == "%s"
	and (.processes | any(. == "curl"))' "$(cg_rel client)")"
assert_edge "$G" svc:client svc:web tcp "
	.port == $port and .connections >= $N
	and .bytes_sent >= $N * 60 and .bytes_received >= $N * $SIZE
	and .duration_ms.count >= $N
	and (.first_seen | type) == \"string\" and (.last_seen | type) == \"string\""
# The server never connected to the client.
assert_no_edge "$G" svc:web svc:client tcp
# The connections were joined: no external node for the server's port.
assert_jq "$G" "[.nodes[] | select(.kind == \"external\" and .port == $port)] | length == 0" \
	"no external node for port $port (both ends were captured)"

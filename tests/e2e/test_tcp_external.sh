#!/usr/bin/env bash
# Capture limited (--cgroup) to the client's cgroup: the server's accept is
# not seen, so the peer is an external node ext:127.0.0.1:PORT.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl

N=3
mkdir -p "$TEST_TMP/www"
echo "outside" > "$TEST_TMP/www/index.html"
port=$(free_port)
cg_exec hidden "$PY" -m http.server --bind 127.0.0.1 --directory "$TEST_TMP/www" "$port" \
	> "$TEST_TMP/hidden.log" 2>&1
wait_port "$port"
cg_new client

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$(cg_path client)"
for _ in $(seq "$N"); do
	cg_run client curl -sSf -o /dev/null "http://127.0.0.1:$port/" || fail "curl failed"
done
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
EXT="ext:127.0.0.1:$port"
assert_node "$G" "$EXT" ".kind == \"external\" and .address == \"127.0.0.1\" and .port == $port"
assert_edge "$G" svc:client "$EXT" tcp ".port == $port and .connections >= $N"
assert_node "$G" svc:client ".cgroup == \"$(cg_rel client)\" and (.processes | any(. == \"curl\"))"
assert_jq "$G" '[.nodes[] | select(.id == "svc:hidden" or (.kind == "service" and .name != "client"))] | length == 0' \
	"no service but client (the server's cgroup was not captured)"

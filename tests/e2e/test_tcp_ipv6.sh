#!/usr/bin/env bash
# IPv6: a server on ::1 (web6 <- client6), and a dual-stack server on ::
# reached over 127.0.0.1 (dual <- mapped), whose accepted sockets see the
# peer as ::ffff:127.0.0.1.  Both must be joined into one service edge each,
# with addresses normalized (no ::ffff: anywhere).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl
lo_ipv6 || skip "no ::1 on lo"

N=4
mkdir -p "$TEST_TMP/www"
echo "hello over v6" > "$TEST_TMP/www/index.html"

p6=$(free_port)
cg_exec web6 "$PY" -m http.server --bind ::1 --directory "$TEST_TMP/www" "$p6" \
	> "$TEST_TMP/web6.log" 2>&1
pd=$(free_port)
# http.server binds "::" dual-stack (IPV6_V6ONLY off).
cg_exec dual "$PY" -m http.server --bind :: --directory "$TEST_TMP/www" "$pd" \
	> "$TEST_TMP/dual.log" 2>&1
wait_port "$p6"; wait_port "$pd"
cg_new client6; cg_new mapped

G=$TEST_TMP/graph.json
# Relative cgroup paths (to the cgroup2 mount) must work too.
seams_capture_bg "$G" \
	--cgroup "$SEAMS_CG_PARENT/web6" --cgroup "$SEAMS_CG_PARENT/client6" \
	--cgroup "$(cg_path dual)" --cgroup "$(cg_path mapped)"
for i in $(seq "$N"); do
	cg_run client6 curl -sSf -g -o /dev/null "http://[::1]:$p6/" || fail "curl [::1] failed"
	cg_run mapped curl -sSf -o /dev/null "http://127.0.0.1:$pd/" || fail "curl 127.0.0.1 (dual) failed"
done
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
assert_no_external_listener "$G"
assert_edge "$G" svc:client6 svc:web6 tcp ".port == $p6 and .connections >= $N"
assert_node "$G" svc:web6 "(.listens | any(. == \"[::1]:$p6\")) and .cgroup == \"$(cg_rel web6)\""
assert_edge "$G" svc:mapped svc:dual tcp ".port == $pd and .connections >= $N"
assert_node "$G" svc:dual "(.listens | any(. == \"127.0.0.1:$pd\"))"
assert_jq "$G" '[.. | strings | select(test("::ffff:"; "i"))] | length == 0' \
	"v4-mapped addresses are normalized (no ::ffff: in the graph)"
assert_jq "$G" "[.nodes[] | select(.kind == \"external\" and (.port == $p6 or .port == $pd))] | length == 0" \
	"no external node for the captured servers"
# Only the four cgroups were captured.
assert_jq "$G" '[.nodes[] | select(.kind == "service") | .name] | sort == ["client6","dual","mapped","web6"]' \
	"--cgroup limits the services to client6, dual, mapped, web6"

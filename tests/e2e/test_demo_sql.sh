#!/usr/bin/env bash
# PENDING: the demo's SQL/table map.  Not run by tests/run.sh (its name does
# not start with test_); rename to test_demo_sql.sh once the PostgreSQL
# decoder lands.  Runs the demo (or checks SEAMS_DEMO_GRAPH if set) and
# asserts the service -> table edges the demo's services produce:
#   orders, inventory  UPDATE public.stock       (shared table: two writers)
#   orders             INSERT/UPDATE public.orders, billing SELECTs it
#   billing            INSERT public.payments    (over the Unix socket)
#   pricing            SELECT public.prices
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl

G=${SEAMS_DEMO_GRAPH:-}
if [ -z "$G" ]; then
	G=$SEAMS_ROOT/build/demo/graph.json
	DEMO_DURATION=${DEMO_DURATION:-8} timeout 180 bash "$SEAMS_ROOT/tests/demo/run.sh" \
		> "$TEST_TMP/demo.out" 2>&1 || { cat "$TEST_TMP/demo.out" >&2; fail "the demo failed"; }
fi
assert_valid_graph "$G"

DB=db:svc:postgres/shop
assert_node "$G" "$DB" '.kind == "database" and .server == "svc:postgres" and .database == "shop"'
for t in stock orders prices payments; do
	assert_node "$G" "table:svc:postgres/shop/public.$t" \
		".kind == \"table\" and .database == \"$DB\" and .schema == \"public\" and .table == \"$t\" and .name == \"public.$t\""
done

# sql_edge SRC SCHEMA.TABLE COND: the sql edge from svc:SRC to that table of
# database shop (whatever server id the connection was attributed to: the
# Unix socket connection of billing included) satisfies COND.
sql_edge() {
	local src=$1 tbl=$2 cond=$3
	assert_jq "$G" "
		[.nodes[] | select(.kind == \"table\" and .name == \"$tbl\" and (.database | endswith(\"/shop\"))) | .id] as \$ids
		| [.edges[] | select(.kind == \"sql\" and .source == \"svc:$src\" and (.target as \$t | \$ids | index([\$t]) != null))]
		| length == 1 and (.[0] | $cond)" \
		"sql edge svc:$src -> $tbl with $cond"
}

# Shared table: two services write public.stock.
sql_edge orders public.stock '.operations.UPDATE >= 1 and .access.write >= 1'
sql_edge inventory public.stock '.operations.UPDATE >= 1 and .access.write >= 1 and .access.read >= 1'
assert_jq "$G" '[.edges[] | select(.kind == "sql" and (.target | endswith("/shop/public.stock")) and .access.write > 0) | .source] | unique | length >= 2' \
	"public.stock is written by at least two services"
# public.orders: owned by orders, read by billing.
sql_edge orders public.orders '.operations.INSERT >= 1 and .operations.UPDATE >= 1 and .access.write >= 2'
sql_edge billing public.orders '.operations.SELECT >= 1 and .access.read >= 1 and (.access.write // 0) == 0'
# billing over the Unix socket.
sql_edge billing public.payments '.operations.INSERT >= 1 and .access.write >= 1'
# pricing reads its own table only.
sql_edge pricing public.prices '.operations.SELECT >= 1 and .access.read >= 1 and (.access.write // 0) == 0'
# Latency measured, statements normalized (no literal sku values).
assert_jq "$G" '[.edges[] | select(.kind == "sql")] | length >= 6 and all(.latency_ms.count >= 1 and .latency_ms.p50 >= 0)' \
	"every sql edge has latency_ms"
assert_jq "$G" '[.edges[] | select(.kind == "sql") | .statements[]?.query | select(test("sku-[0-9]"))] | length == 0' \
	"statements are normalized (no sku literals)"
sql_edge pricing public.prices '.statements[0].query | test("SELECT cents FROM prices WHERE sku = \\$1"; "i")'
# The services' TCP edge to the server stays next to the sql edges.
assert_edge "$G" svc:orders svc:postgres tcp '.connections >= 1'
# Nobody's SQL is attributed to postgres itself or to the load generator.
assert_jq "$G" '[.edges[] | select(.kind == "sql" and (.source == "svc:postgres" or .source == "svc:loadgen" or .source == "svc:gateway"))] | length == 0' \
	"no sql edges from postgres, loadgen or gateway"

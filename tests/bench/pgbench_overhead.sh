#!/usr/bin/env bash
# pgbench TPC-B throughput with and without `seams capture` attached, in
# alternating runs in one go (these 2-core machines are noisy).  Prints each
# run, the median ratio with/without, and the events seams lost.
# Each run starts with pgbench's own vacuum and the order within a round
# alternates, so the drift of a database under TPC-B favours neither side.
#   ROUNDS=5 SECS=15 CLIENTS=4 tests/bench/pgbench_overhead.sh
# SEAMS_ARGS adds capture options, e.g. "--cgroup /empty" for a control run
# in which every hook fires but nothing is traced.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams

ROUNDS=${ROUNDS:-5}
SECS=${SECS:-15}
CLIENTS=${CLIENTS:-4}
read -r -a EXTRA <<< "${SEAMS_ARGS:-}"

cg_new db
cg_new bench
pg_start --cgroup db
runuser -u postgres -- "$PG_BIN/pgbench" -i -q -s 4 -h 127.0.0.1 -p "$PGPORT" postgres >/dev/null 2>&1 ||
	fail "pgbench -i failed"

run_pgbench() {
	local out=$TEST_TMP/pgbench.$RANDOM
	cg_run bench runuser -u postgres -- "$PG_BIN/pgbench" -c "$CLIENTS" -j 2 -T "$SECS" \
		-h 127.0.0.1 -p "$PGPORT" postgres > "$out" 2>&1 || { cat "$out" >&2; fail "pgbench failed"; }
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$out" | head -n1
}

ratios=()
sum_base=0 sum_traced=0
lost_total=0
printf '%-6s %12s %12s %8s %10s %12s\n' round without with ratio lost events/s
run_traced() {
	seams_capture_bg "$1" "${EXTRA[@]}"
	traced=$(run_pgbench)
	seams_capture_stop || fail "capture failed"
}

for r in $(seq "$ROUNDS"); do
	g=$TEST_TMP/graph.$r.json
	if [ $((r % 2)) = 1 ]; then
		base=$(run_pgbench)
		run_traced "$g"
	else
		run_traced "$g"
		base=$(run_pgbench)
	fi
	lost=$(jq '.capture.lost_events + (.capture.pg_events_lost // 0)' "$g")
	evs=$(jq '(.capture.events / .capture.duration_s) | floor' "$g")
	ratio=$(awk -v a="$traced" -v b="$base" 'BEGIN { printf "%.4f", a / b }')
	ratios+=("$ratio")
	sum_base=$(awk -v a="$sum_base" -v b="$base" 'BEGIN { print a + b }')
	sum_traced=$(awk -v a="$sum_traced" -v b="$traced" 'BEGIN { print a + b }')
	lost_total=$((lost_total + lost))
	printf '%-6s %12s %12s %8s %10s %12s\n' "$r" "$base" "$traced" "$ratio" "$lost" "$evs"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }')
spread=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ a[NR] = $1 } END { q = int((NR + 3) / 4); printf "%s..%s", a[q], a[NR + 1 - q] }')
total=$(awk -v a="$sum_traced" -v b="$sum_base" 'BEGIN { printf "%.4f", a / b }')
echo "median TPS ratio with/without seams: $median (target >= 0.98); middle half of the rounds: $spread"
echo "ratio of total TPS with/without: $total; events lost: $lost_total (target 0)"

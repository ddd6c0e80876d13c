#!/usr/bin/env bash
# tests/bench/syscall_cost.sh: nanoseconds a running `seams capture` adds to
# one syscall, by kind (tests/bench/syscost.c): a syscall seams ignores, a
# read of a file, a TCP round trip that is not PostgreSQL, and a PostgreSQL
# Query round trip (4 data syscalls each).  Single-threaded and CPU-bound, so
# it resolves differences of a few nanoseconds where pgbench's TPS cannot.
# ROUNDS (5) alternating runs without and with a capture of the whole host;
# prints each run and the median added ns per iteration.
#   ROUNDS=5 ITERS=200000 tests/bench/syscall_cost.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq gcc

ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-200000}
BIN=$SEAMS_ROOT/build/bench/syscost
mkdir -p "$(dirname "$BIN")"
if [ ! -x "$BIN" ] || [ "$SEAMS_ROOT/tests/bench/syscost.c" -nt "$BIN" ]; then
	gcc -O2 -Wall -Wextra -o "$BIN" "$SEAMS_ROOT/tests/bench/syscost.c"
fi
cg_new bench
port=$(free_port)

# Pinned: the vCPUs of these machines differ (one also takes the host's
# interrupts), and a run that lands on either gives a bimodal result.
CPU=$(($(nproc) - 1))
run() { cg_run bench taskset -c "$CPU" "$BIN" "$port" "$ITERS" > "$1" || fail "syscost failed"; }

for r in $(seq "$ROUNDS"); do
	run "$TEST_TMP/off.$r"
	seams_capture_bg "$TEST_TMP/graph.$r.json" --pg-port "$port"
	run "$TEST_TMP/on.$r"
	seams_capture_stop || fail "capture failed"
done
jq -e '[.edges[] | select(.kind == "sql")] | length > 0' "$TEST_TMP/graph.1.json" >/dev/null ||
	fail "the capture saw no PostgreSQL traffic from syscost"

printf '%-6s %10s %10s %10s %8s\n' kind without with added ratio
for kind in other file tcp pg; do
	off=$(awk -v k=$kind '$1 == k { print $2 }' "$TEST_TMP"/off.* | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
	on=$(awk -v k=$kind '$1 == k { print $2 }' "$TEST_TMP"/on.* | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
	awk -v k=$kind -v a="$off" -v b="$on" 'BEGIN { printf "%-6s %10.1f %10.1f %10.1f %8.3f\n", k, a, b, b - a, a / b }'
done

#!/usr/bin/env bash
# tests/bench/syscall_cost.sh: nanoseconds a running `seams capture` adds to
# one syscall, by kind (tests/bench/syscost.c): a syscall seams ignores, a
# read of a file, a TCP round trip that is not PostgreSQL, and a PostgreSQL
# Query round trip (4 data syscalls each).  Single-threaded and CPU-bound, so
# it resolves differences of a few nanoseconds where pgbench's TPS cannot.
# ROUNDS (5) rounds of three runs: without, with empty BPF programs on the
# same two socket tracepoints (floor.bpf.c: what any program there costs),
# and with a capture of the whole host; prints the median ns per iteration
# of each, and what the floor and seams add.
#   ROUNDS=5 ITERS=200000 tests/bench/syscall_cost.sh
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq gcc

ROUNDS=${ROUNDS:-5}
ITERS=${ITERS:-200000}
B=$SEAMS_ROOT/build/bench
BIN=$B/syscost
mkdir -p "$B"
gcc -O2 -Wall -Wextra -o "$BIN" "$SEAMS_ROOT/tests/bench/syscost.c"
gcc -O2 -Wall -Wextra -o "$B/floor" "$SEAMS_ROOT/tests/bench/floor.c" -lbpf
clang -g -O2 -Wall -target bpf -I"$SEAMS_ROOT/vmlinux" -c "$SEAMS_ROOT/tests/bench/floor.bpf.c" \
	-o "$B/floor.bpf.o"
cg_new bench
port=$(free_port)

# Pinned: the vCPUs of these machines differ (one also takes the host's
# interrupts), and a run that lands on either gives a bimodal result.
CPU=$(($(nproc) - 1))
run() { cg_run bench taskset -c "$CPU" "$BIN" "$port" "$ITERS" > "$1" || fail "syscost failed"; }

for r in $(seq "$ROUNDS"); do
	run "$TEST_TMP/off.$r"
	"$B/floor" "$B/floor.bpf.o" 2> "$TEST_TMP/floor.err" &
	fpid=$!; LIB_PIDS+=("$fpid")
	wait_for 10 grep -q attached "$TEST_TMP/floor.err" || { cat "$TEST_TMP/floor.err" >&2; fail "floor did not attach"; }
	run "$TEST_TMP/floor.$r"
	kill -INT "$fpid"; wait "$fpid" || fail "floor failed"
	seams_capture_bg "$TEST_TMP/graph.$r.json" --pg-port "$port"
	run "$TEST_TMP/on.$r"
	seams_capture_stop || fail "capture failed"
done
jq -e '[.edges[] | select(.kind == "sql")] | length > 0' "$TEST_TMP/graph.1.json" >/dev/null ||
	fail "the capture saw no PostgreSQL traffic from syscost"

median() { awk -v k="$1" '$1 == k { print $2 }' "${@:2}" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
printf '%-6s %10s %10s %10s %12s %12s %8s\n' kind without floor with "floor adds" "seams adds" ratio
for kind in other file tcp pg; do
	off=$(median $kind "$TEST_TMP"/off.*)
	flo=$(median $kind "$TEST_TMP"/floor.*)
	on=$(median $kind "$TEST_TMP"/on.*)
	awk -v k=$kind -v a="$off" -v f="$flo" -v b="$on" \
		'BEGIN { printf "%-6s %10.1f %10.1f %10.1f %12.1f %12.1f %8.3f\n", k, a, f, b, f - a, b - a, a / b }'
done

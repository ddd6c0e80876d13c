#!/usr/bin/env bash
# tests/bench/bpf_lines.sh: where seams' programs spend their time, by
# source line, under pgbench (TPC-B, 4 clients over TCP) at a fixed rate.
# perf samples the whole machine by cpu-clock (no hardware counters needed)
# while a capture runs; jitlines.c puts each sample taken in a program on
# its source line, from the program's JIT line info and BTF.  A line's
# samples are the time of the instructions it became, stalls included: a
# cache miss shows on the load that waits for it or the one after, and a
# program's entry and exit, cold at low rates, on its first line.
#   RATE=1000 SECS=15 TOP=30 tests/bench/bpf_lines.sh
# It also gives the kernel functions the programs call (helpers) and the
# hooks' dispatch, as shares of all the samples in pgbench and PostgreSQL.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams
require_cmd perf jq bpftool gcc

RATE=${RATE:-1000}
SECS=${SECS:-15}
export TOP=${TOP:-30}
B=$TEST_TMP/bin
mkdir -p "$B"
gcc -O2 -Wall -Wextra -o "$B/jitlines" "$SEAMS_ROOT/tests/bench/jitlines.c" -lbpf

pgbench_init 4
pg_psql -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
seams_capture_bg "$TEST_TMP/graph.json"
pgbench_bg "$RATE" "$TEST_TMP/pgbench.out"
sleep 3
perf record -q -a -F 4999 -o "$TEST_TMP/perf.data" -- sleep "$SECS" > /dev/null 2>&1 ||
	fail "perf record failed"
# The programs' line info, read while they are loaded.
ids=$(seams_prog_ids "$SEAMS_PID" | jq -r '.[]')
perf script -i "$TEST_TMP/perf.data" -F ip,sym 2>/dev/null > "$TEST_TMP/samples"
echo "seams' programs under pgbench -R $RATE, $SECS s of cpu-clock samples at 4999 Hz on every CPU:"
# shellcheck disable=SC2086 # one argument per program id
"$B/jitlines" $ids < "$TEST_TMP/samples"
pgbench_stop
seams_capture_stop || fail "capture failed"

echo
echo "kernel functions of the hooks and their helpers, by process (samples):"
perf report -i "$TEST_TMP/perf.data" --sort comm,sym --no-children -n 2>/dev/null |
	awk '($3 == "pgbench" || $3 == "postgres") &&
		$5 ~ /bpf_|call_trace_sock|copy_from_user_nofault|ktime_get_mono_fast|srso|__x86_indirect_thunk/ && $5 !~ /^bpf_lsm_/ && ++n <= 20 {
		printf "  %7s  %-10s %s\n", $2, $3, $5 }'

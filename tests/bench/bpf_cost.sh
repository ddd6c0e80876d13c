#!/usr/bin/env bash
# tests/bench/bpf_cost.sh: nanoseconds each seams BPF program spends per run
# while pgbench (TPC-B, 4 clients over TCP) runs, from the kernel's own
# accounting (kernel.bpf_stats_enabled, restored at the end).  pgbench's TPS
# moves by a few percent between windows on these machines; this counts the
# programs' own time exactly, so two builds can be told apart by tens of
# nanoseconds.  Builds (default build/seams) run in turn, ROUNDS times:
#   ROUNDS=3 tests/bench/bpf_cost.sh [SEAMS_BINARY...]
# Runs of on_recv include the calls that return at once (EAGAIN reads).
# It also gives seams' share of the machine's CPU time while attached: all
# its programs' time, and the collector's user and system time.  On a
# machine pgbench keeps busy, that share is what TPS loses to seams.
# With IDLE=1 each build also runs with --cgroup naming an empty cgroup:
# every hook still fires on every socket call of the host, finds nothing to
# trace and returns, which is the least any capture on these hooks costs.
# Add the hooks' own floor (syscall_cost.sh, per call) times the calls per
# second shown here for the whole budget.
# LOAD=tcp runs tests/bench/tcpbench instead of pgbench: two threads of
# short connections (connect, 64-byte request and reply, close) to a server
# in cgroup bench-server, so every request is one a server accepted during
# the capture: the cost of request nesting's one record per request.
# FRESH=1 starts pgbench anew in each run, once the capture is attached
# (FRESH_WARM seconds before counting, default 2): its connections are then
# seen from their start, as a capture sees most, and PostgreSQL's end of
# them is known for what it is.  Otherwise pgbench runs throughout, and its
# connections are older than every capture.
# RATE=N runs pgbench at N transactions a second (-R) instead of flat out:
# at the rates pg_cpu_per_tx.sh measures, the caches are cold between two
# calls of a connection, and each line a program touches costs a miss.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cmd jq bpftool
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
builds=("$@")
[ ${#builds[@]} -gt 0 ] || builds=("$SEAMS")
# configs: a binary and the options it runs with, and how the table names it.
bins=() args=() labels=()
for b in "${builds[@]}"; do bins+=("$b"); args+=(""); labels+=("$b"); done
if [ "${IDLE:-0}" = 1 ]; then
	cg_new idle
	for b in "${builds[@]}"; do
		bins+=("$b"); args+=("--cgroup $(cg_rel idle)"); labels+=("$b, tracing nothing")
	done
fi

old_stats=$(sysctl -n kernel.bpf_stats_enabled)
restore_stats() { sysctl -qw kernel.bpf_stats_enabled="$old_stats"; }
trap 'restore_stats; cleanup' EXIT

rate=()
[ -z "${RATE:-}" ] || rate=(-R "$RATE")
pgbench_start() {
	cg_exec bench runuser -u postgres -- "$PG_BIN/pgbench" -c 4 -j 2 "${rate[@]}" -T "$1" -h 127.0.0.1 \
		-p "$PGPORT" postgres > "$TEST_TMP/pgbench.out" 2>&1
}
fresh=0
[ "${LOAD:-pgbench}" = pgbench ] && [ "${FRESH:-0}" = 1 ] && fresh=1
if [ "${LOAD:-pgbench}" = tcp ]; then
	require_cmd gcc
	tcpbench=$SEAMS_ROOT/build/bench/tcpbench
	mkdir -p "$(dirname "$tcpbench")"
	if [ ! -x "$tcpbench" ] || [ "$SEAMS_ROOT/tests/bench/tcpbench.c" -nt "$tcpbench" ]; then
		gcc -O2 -Wall -Wextra -Wno-unused-parameter -pthread \
			-o "$tcpbench" "$SEAMS_ROOT/tests/bench/tcpbench.c"
	fi
	port=$(free_port)
	cg_exec bench-server "$tcpbench" server "$port" > "$TEST_TMP/server.log" 2>&1
	wait_port "$port"
	cg_exec bench "$tcpbench" client "$port" 86400 2 0 > "$TEST_TMP/client.log" 2>&1
else
	pgbench_init 4
	[ "$fresh" = 1 ] || pgbench_start 86400
fi
sleep 3
sysctl -qw kernel.bpf_stats_enabled=1

now() { date +%s.%N; }
# The collector's user plus system time, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SEAMS_PID/stat"; }
ncpu=$(nproc)
# Only this capture's programs: a neighbour's test may load its own seams,
# whose programs have the same names.  They are the ones it holds open.
progs='map(select(.id as $i | any($ids[]; . == $i)) | select(.name == "on_send" or .name == "on_recv" or .name == "on_sock_state"))'
tick=$(getconf CLK_TCK)

# One line per run: build, then program, runs and ns per run for each, then
# the programs' and the collector's share of the machine in percent.
for r in $(seq "$ROUNDS"); do
	for i in "${!bins[@]}"; do
		read -r -a opts <<< "${args[$i]}"
		SEAMS=${bins[$i]} seams_capture_bg "$TEST_TMP/graph.json" "${opts[@]}"
		if [ "$fresh" = 1 ]; then
			pgbench_start $((SECS + ${FRESH_WARM:-2} + 5))
			sleep "${FRESH_WARM:-2}"
		fi
		# The programs count from their load; the verifier's time is the
		# collector's before it attaches.
		ids=$(seams_prog_ids "$SEAMS_PID")
		read -r bpf0 cnt0 < <(bpftool prog show --json | jq -r --argjson ids "$ids" "$progs | \"\\(map(.run_time_ns // 0) | add) \\(map(.run_cnt // 0) | add)\"")
		t0=$(now); c0=$(cpu_ticks)
		sleep "$SECS"
		c1=$(cpu_ticks); t1=$(now)
		bpftool prog show --json | jq -r --arg b "$i" --argjson ids "$ids" --argjson bpf0 "$bpf0" --argjson cnt0 "$cnt0" \
			--argjson secs "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')" \
			--argjson wall "$(awk -v a="$t0" -v b="$t1" -v n="$ncpu" 'BEGIN { printf "%.6f", (b - a) * n }')" \
			--argjson coll "$(awk -v a="$c0" -v b="$c1" -v t="$tick" 'BEGIN { printf "%.6f", (b - a) / t }')" "
			$progs as \$p"'
			| [$p[] | "\(.name) \(.run_cnt // 0) \((.run_time_ns // 0) / ((.run_cnt // 0) + 1e-9) | floor)"]
			| "\($b) " + join(" ")
			  + " bpf% \(((($p | map(.run_time_ns // 0) | add) - $bpf0) / 1e9 / $wall * 100 * 100 | floor) / 100)"
			  + " collector% \(($coll / $wall * 100 * 100 | floor) / 100)"
			  + " calls/s \((($p | map(.run_cnt // 0) | add) - $cnt0) / $secs | floor)"' >> "$TEST_TMP/runs"
		if [ "$fresh" = 1 ]; then
			kill -INT $(cg_procs "$(cg_path bench)") 2>/dev/null || true
			wait_for 30 sh -c '! grep -q "^populated 1" "$0/cgroup.events"' "$(cg_path bench)"
		fi
		seams_capture_stop || fail "capture failed"
	done
done
kill -INT $(cg_procs "$(cg_path bench)") $(cg_procs "$(cg_path bench-server)") 2>/dev/null || true

# median FORMAT: the median of the numbers on stdin, printed with FORMAT.
median() { sort -n | awk -v f="$1" '{ v[NR] = $1 } END { if (NR) printf f, v[int((NR + 1) / 2)]; else printf "-" }'; }
printf '%-40s %14s %14s %14s %10s %10s %10s\n' build on_send on_recv on_sock_state "bpf cpu" collector calls/s
for i in "${!bins[@]}"; do
	printf '%-40s' "${labels[$i]}"
	for p in on_send on_recv on_sock_state; do
		printf ' %14s' "$(awk -v b="$i" -v p="$p" '$1 == b { for (f = 2; f < NF; f += 3) if ($f == p) print $(f + 2) }' \
			"$TEST_TMP/runs" | median "%.0f ns")"
	done
	for p in bpf% collector% calls/s; do
		printf ' %10s' "$(awk -v b="$i" -v p="$p" '$1 == b { for (f = 2; f < NF; f++) if ($f == p) print $(f + 1) }' \
			"$TEST_TMP/runs" | median "$([ "$p" = calls/s ] && echo %.0f || echo %.2f%%)")"
	done
	echo
done
echo "(bpf cpu and collector: share of all $ncpu CPUs' time while attached; calls/s: runs of its programs per second)"
echo "(median over $ROUNDS rounds of ${SECS} s; every round:)"
cat "$TEST_TMP/runs"

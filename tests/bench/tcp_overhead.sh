#!/usr/bin/env bash
# tests/bench/tcp_overhead.sh: what a running `seams capture` costs a
# loopback request/response load.
#
# Load (tests/bench/tcpbench.c, built into build/bench/): a server in cgroup
# bench-server; a client in cgroup bench-client.  Each run has two phases of
# BENCH_SECONDS (5) each:
#   short: BENCH_SHORT_THREADS (2) threads of connect / 64-byte request /
#          64-byte response / close (many short connections),
#   long:  one long-lived connection doing 64-byte round trips (chatty).
# BENCH_PAIRS (5) pairs of runs, without and with a capture of the whole host
# attached during both phases (the order alternates between pairs).  Prints
# each run, the median ratio with/without for each phase, and the events per
# second the collector handled (capture.events / capture.duration_s).
#
# Environment: BENCH_PAIRS, BENCH_SECONDS, BENCH_SHORT_THREADS,
# BENCH_SEAMS_ARGS (extra capture arguments, e.g. "--cgroup /x").
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq gcc

PAIRS=${BENCH_PAIRS:-5}
SECS=${BENCH_SECONDS:-5}
THREADS=${BENCH_SHORT_THREADS:-2}
read -r -a EXTRA <<< "${BENCH_SEAMS_ARGS:-}"

BIN=$SEAMS_ROOT/build/bench/tcpbench
mkdir -p "$(dirname "$BIN")"
if [ ! -x "$BIN" ] || [ "$SEAMS_ROOT/tests/bench/tcpbench.c" -nt "$BIN" ]; then
	gcc -O2 -Wall -Wextra -Wno-unused-parameter -pthread \
		-o "$BIN" "$SEAMS_ROOT/tests/bench/tcpbench.c"
fi

port=$(free_port)
cg_exec bench-server "$BIN" server "$port" > "$TEST_TMP/server.log" 2>&1
wait_port "$port"
cg_new bench-client

# run_load PREFIX: the two phases, into PREFIX.short and PREFIX.long.
run_load() {
	cg_run bench-client "$BIN" client "$port" "$SECS" "$THREADS" 0 > "$1.short" ||
		fail "load client (short) failed: $(cat "$1.short")"
	cg_run bench-client "$BIN" client "$port" "$SECS" 0 1 > "$1.long" ||
		fail "load client (long) failed: $(cat "$1.long")"
}
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' "$2"; }
rate() { awk -v n="$(field "$1" "$2")" -v s="$(field seconds "$2")" 'BEGIN { printf "%.0f", n / s }'; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

echo "tcp_overhead: $PAIRS pairs; each run: ${SECS} s of short connections ($THREADS threads), ${SECS} s of one chatty connection; $(nproc) CPUs"
printf '%-5s %-8s %12s %12s %12s  %s\n' run capture conns/s rtts/s events/s "connections seams counted"
: > "$TEST_TMP/without"; : > "$TEST_TMP/with"; : > "$TEST_TMP/evps"
for pair in $(seq "$PAIRS"); do
	if [ $((pair % 2)) = 1 ]; then order="off on"; else order="on off"; fi
	for mode in $order; do
		r=$TEST_TMP/run-$pair-$mode
		if [ "$mode" = off ]; then
			run_load "$r"
			evps=- saw=-
		else
			G=$TEST_TMP/graph-$pair.json
			seams_capture_bg "$G" "${EXTRA[@]}"
			run_load "$r"
			seams_capture_stop || fail "capture failed"
			assert_valid_graph "$G"
			evps=$(jq -r '.capture.events / .capture.duration_s | floor' "$G")
			echo "$evps" >> "$TEST_TMP/evps"
			got=$(jq -r --arg p "$port" '[.edges[] | select(.source == "svc:bench-client" and .port == ($p | tonumber)) | .connections] | add // 0' "$G")
			saw="$got of $(( $(field connections "$r.short") + 1 ))"
		fi
		c=$(rate connections "$r.short"); t=$(rate round_trips "$r.long")
		echo "$c $t" >> "$TEST_TMP/$([ "$mode" = on ] && echo with || echo without)"
		printf '%-5s %-8s %12s %12s %12s  %s\n' "$pair" "$mode" "$c" "$t" "$evps" "$saw"
	done
done

c_off=$(cut -d' ' -f1 "$TEST_TMP/without" | median); c_on=$(cut -d' ' -f1 "$TEST_TMP/with" | median)
t_off=$(cut -d' ' -f2 "$TEST_TMP/without" | median); t_on=$(cut -d' ' -f2 "$TEST_TMP/with" | median)
ev=$(median < "$TEST_TMP/evps")
awk -v a="$c_on" -v b="$c_off" -v c="$t_on" -v d="$t_off" -v e="$ev" 'BEGIN {
	printf "short connections/s (median): %.0f without, %.0f with capture: ratio %.3f\n", b, a, a / b
	printf "chatty round trips/s (median): %.0f without, %.0f with capture: ratio %.3f\n", d, c, c / d
	printf "collector handled %.0f events/s (median of the captures)\n", e
}'

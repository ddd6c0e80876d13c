#!/usr/bin/env bash
# pgbench TPC-B throughput with and without `seams capture` attached.  One
# long pgbench run reports its TPS every second while a capture is started
# and stopped in alternating windows: each second is compared with the
# seconds around it, so the drift of a noisy 2-core machine and of a
# database under TPC-B cancels out, which separate runs minutes apart do
# not.  The seconds in which a capture starts or stops are left out.
#   WINDOWS=8 SECS=8 CLIENTS=4 SCALE=4 tests/bench/pgbench_overhead.sh
# WINDOWS pairs of windows without and with a capture, each SECS long.
# SCALE is pgbench's: at 4, the 4 clients contend for 4 branch rows, so any
# latency added while a client holds a row lock costs all of them.
# SEAMS_ARGS adds capture options, e.g. "--cgroup /empty" for a control run
# in which every hook fires but nothing is traced.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams
require_cmd jq

WINDOWS=${WINDOWS:-8}
SECS=${SECS:-8}
CLIENTS=${CLIENTS:-4}
SCALE=${SCALE:-4}
read -r -a EXTRA <<< "${SEAMS_ARGS:-}"

pgbench_init "$SCALE"

now() { date +%s.%N; }
progress=$TEST_TMP/progress
# Runs until the last window is over (loading takes longer on a busy host).
cg_exec bench runuser -u postgres -- "$PG_BIN/pgbench" -c "$CLIENTS" -j 2 -T 86400 \
	-P 1 --progress-timestamp -h 127.0.0.1 -p "$PGPORT" postgres > "$TEST_TMP/pgbench.out" 2> "$progress" &
bench_pid=$!
LIB_PIDS+=("$bench_pid")
wait_for 30 grep -q '^progress' "$progress" || { cat "$progress" >&2; fail "pgbench did not start"; }

# windows: one line per capture: when it was started, when it reported it
# was attached, when it was told to stop, and when it had exited.
: > "$TEST_TMP/windows"
sleep "$SECS"
for w in $(seq "$WINDOWS"); do
	t0=$(now)
	seams_capture_bg "$TEST_TMP/graph.$w.json" "${EXTRA[@]}"
	t1=$(now)
	sleep "$SECS"
	t2=$(now)
	seams_capture_stop || fail "capture failed"
	echo "$t0 $t1 $t2 $(now)" >> "$TEST_TMP/windows"
	sleep "$SECS"
done
grep -q 'failed' "$TEST_TMP/pgbench.out" && { cat "$TEST_TMP/pgbench.out" >&2; fail "pgbench failed"; }
kill -INT $(cg_procs "$(cg_path bench)") 2>/dev/null || true
wait "$bench_pid" || true

# Each progress line covers the second before its timestamp.  A second is
# "with" from half a second after seams reported it was attached until it
# was told to stop, and "without" outside the whole life of every capture:
# loading (a second or more of verifier time) and writing the graph are
# one-off costs, not overhead.  A window's ratio is its seconds against the
# seconds without on either side of it.
awk -v rfile="$TEST_TMP/ratios" '
	FNR == NR { launch[NR] = $1; ws[NR] = $2 + 0.5; we[NR] = $3; gone[NR] = $4; nw = NR; next }
	/^progress: / {
		t = $2 + 0; tps = $4 + 0; end = t; start = t - 1
		kind = "off"
		for (i = 1; i <= nw; i++) {
			if (start >= ws[i] && end <= we[i]) { kind = "on"; win = i; break }
			if (end > launch[i] && start < gone[i] + 0.5) { kind = "edge"; break }
		}
		if (kind == "on") { on[win] += tps; non[win]++; ton += tps; nton++ }
		else if (kind == "off") {
			slot = 0
			for (i = 1; i <= nw; i++) if (start >= gone[i]) slot = i
			off[slot] += tps; noff[slot]++; toff += tps; ntoff++
		}
	}
	END {
		printf "%-7s %12s %12s %8s\n", "window", "without", "with", "ratio"
		for (i = 1; i <= nw; i++) {
			# the seconds without just before (slot i-1) and just after (slot i)
			b = (noff[i - 1] ? off[i - 1] / noff[i - 1] : 0); a = (noff[i] ? off[i] / noff[i] : 0)
			base = (b && a) ? (a + b) / 2 : a + b
			if (!non[i] || !base) continue
			r = on[i] / non[i] / base
			printf "%-7d %12.1f %12.1f %8.4f\n", i, base, on[i] / non[i], r
			print r > rfile
		}
		printf "all seconds: %.1f TPS without (%d s), %.1f with (%d s), ratio %.4f\n", toff / ntoff, ntoff, ton / nton, nton, (ton / nton) / (toff / ntoff)
	}' "$TEST_TMP/windows" "$progress" > "$TEST_TMP/table"
sed '$d' "$TEST_TMP/table"
sort -n "$TEST_TMP/ratios" | awk '{ a[NR] = $1 } END {
	med = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; q = int((NR + 3) / 4)
	printf "median TPS ratio with/without seams: %.4f (target >= 0.98); middle half of the windows: %.4f..%.4f\n", med, a[q], a[NR + 1 - q] }'
tail -n1 "$TEST_TMP/table"
jq -rs 'map(.capture) | "events lost: \(map(.lost_events + (.pg_events_lost // 0)) | add) (target 0); "
	+ "\((map(.events) | add) / (map(.duration_s) | add) | floor) events/s"' "$TEST_TMP"/graph.*.json

#!/usr/bin/env bash
# pgbench TPC-B throughput with and without `seams capture` attached.  One
# long pgbench run reports its TPS every second while captures start and
# stop in alternating windows; each window is compared with the seconds
# without anything on either side of it, so the drift of a database under
# TPC-B cancels out, which separate runs minutes apart do not.
#
# pgbench's TPS on a 2-core machine varies by about 12% from one second to
# the next with nothing else running, so a handful of windows cannot tell
# 2% from noise.  Every capture window is therefore paired with a control
# window run the same way with `sleep` in place of seams: the control's
# ratio is what the method itself reads when nothing is attached, and
# seams' overhead is its ratio against the control's.  Both come with a 95%
# confidence interval over their windows.
#   WINDOWS=24 SECS=5 CLIENTS=4 SCALE=4 tests/bench/pgbench_overhead.sh
# WINDOWS capture windows (and as many control windows), each SECS long,
# with SECS without anything between any two.
# SCALE is pgbench's: at 4, the 4 clients contend for 4 branch rows.
# SEAMS_ARGS adds capture options, e.g. "--cgroup /CG" naming an existing
# empty cgroup for a run in which every hook fires but nothing is traced
# (bpf_cost.sh's IDLE=1 measures that case more finely).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams
require_cmd jq

WINDOWS=${WINDOWS:-24}
SECS=${SECS:-5}
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

# windows: one line per window: its kind, when it was started, when it was
# attached, when it was told to stop, and when it had exited.
: > "$TEST_TMP/windows"
sleep "$SECS"
for w in $(seq "$WINDOWS"); do
	for kind in seams control; do
		t0=$(now)
		if [ "$kind" = seams ]; then
			seams_capture_bg "$TEST_TMP/graph.$w.json" "${EXTRA[@]}"
		else
			sleep 86400 & ctl=$!
		fi
		t1=$(now)
		sleep "$SECS"
		t2=$(now)
		if [ "$kind" = seams ]; then
			seams_capture_stop || fail "capture failed"
		else
			kill "$ctl"; wait "$ctl" 2>/dev/null || true
		fi
		echo "$kind $t0 $t1 $t2 $(now)" >> "$TEST_TMP/windows"
		sleep "$SECS"
	done
done
grep -q 'failed' "$TEST_TMP/pgbench.out" && { cat "$TEST_TMP/pgbench.out" >&2; fail "pgbench failed"; }
kill -INT $(cg_procs "$(cg_path bench)") 2>/dev/null || true
wait "$bench_pid" || true

# Each progress line covers the second before its timestamp.  A second is
# in a window from half a second after it was attached until it was told
# to stop, and "without" outside the whole life of every window: loading
# (a second or more of verifier time) and writing the graph are one-off
# costs, not overhead.  A window's ratio is its seconds against the seconds
# without on either side of it.
awk '
	FNR == NR { kind[NR] = $1; launch[NR] = $2; ws[NR] = $3 + 0.5; we[NR] = $4; gone[NR] = $5; nw = NR; next }
	/^progress: / {
		t = $2 + 0; tps = $4 + 0; end = t; start = t - 1
		k = "off"
		for (i = 1; i <= nw; i++) {
			if (start >= ws[i] && end <= we[i]) { k = "on"; win = i; break }
			if (end > launch[i] && start < gone[i] + 0.5) { k = "edge"; break }
		}
		if (k == "on") { on[win] += tps; non[win]++ }
		else if (k == "off") {
			slot = 0
			for (i = 1; i <= nw; i++) if (start >= gone[i]) slot = i
			off[slot] += tps; noff[slot]++
		}
	}
	END {
		for (i = 1; i <= nw; i++) {
			# the seconds without just before (slot i-1) and just after (slot i)
			b = (noff[i - 1] ? off[i - 1] / noff[i - 1] : 0); a = (noff[i] ? off[i] / noff[i] : 0)
			base = (b && a) ? (a + b) / 2 : a + b
			if (non[i] && base)
				printf "%s %d %.1f %.1f %.4f\n", kind[i], i, base, on[i] / non[i], on[i] / non[i] / base
		}
	}' "$TEST_TMP/windows" "$progress" > "$TEST_TMP/ratios"
{
	printf "%-8s %-7s %10s %10s %8s\n" kind window without with ratio
	awk '{ printf "%-8s %-7d %10.1f %10.1f %8.4f\n", $1, $2, $3, $4, $5 }' "$TEST_TMP/ratios"
} | column -t
# Mean and 95% interval (t for 20-30 windows ~ 2.05) per kind; the seams
# ratio over the control's, with the intervals' extremes as its bounds.
awk '{ n[$1]++; s[$1] += $5; ss[$1] += $5 * $5 }
	END {
		for (k in n) {
			m[k] = s[k] / n[k]
			h[k] = n[k] > 1 ? 2.05 * sqrt((ss[k] - n[k] * m[k] ^ 2) / (n[k] - 1) / n[k]) : 0
			printf "%-8s mean TPS ratio over %d windows: %.4f (95%% interval %.4f..%.4f)\n", k, n[k], m[k], m[k] - h[k], m[k] + h[k]
		}
		if (n["seams"] && n["control"])
			printf "seams against the control: %.4f (%.4f..%.4f) (target >= 0.98)\n", m["seams"] / m["control"],
				(m["seams"] - h["seams"]) / (m["control"] + h["control"]),
				(m["seams"] + h["seams"]) / (m["control"] - h["control"])
	}' "$TEST_TMP/ratios"
jq -rs 'map(.capture) | "events lost: \(map(.lost_events + (.pg_events_lost // 0)) | add) (target 0); "
	+ "\((map(.events) | add) / (map(.duration_s) | add) | floor) events/s"' "$TEST_TMP"/graph.*.json

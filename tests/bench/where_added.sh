#!/usr/bin/env bash
# tests/bench/where_added.sh: where the CPU time seams adds goes, by process
# and function, its own code and the rest.  perf samples every CPU by
# cpu-clock (no hardware counters needed) under pgbench (TPC-B, 4 clients
# over TCP) at a fixed rate, with nothing attached and with seams capture,
# in alternating rounds; each function's samples become µs per transaction
# (RATE x SECS transactions a window, pgbench keeping to its schedule).
#   RATE=1000 ROUNDS=4 SECS=15 TOP=40 tests/bench/where_added.sh
# The machine's idle loop loses what the rest gains, so the added busy time
# is what it lost.  Of that, seams' own part is its programs, the hooks'
# dispatch and the helpers they call (in the traced processes), and its
# collector; the rest is what seams costs the work around it: caches and
# TLBs refilled, context switches that take longer.  A cpu-clock sample
# due while interrupts were off lands where they come back on
# (finish_task_switch, _raw_spin_unlock_irqrestore): the cost of a switch
# or a wakeup shows there.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams
require_cmd perf

RATE=${RATE:-1000}
ROUNDS=${ROUNDS:-4}
SECS=${SECS:-15}
WARM=${WARM:-3}
TOP=${TOP:-40}
HZ_PERF=4999

pgbench_init 4
pg_psql -c "ALTER SYSTEM SET autovacuum = off" -c "SELECT pg_reload_conf()" >/dev/null
: > "$TEST_TMP/samples"
for r in $(seq "$ROUNDS"); do
	order=(none seams)
	[ $((r % 2)) = 1 ] || order=(seams none)
	for c in "${order[@]}"; do
		pg_psql -c CHECKPOINT >/dev/null
		[ "$c" = none ] || seams_capture_bg "$TEST_TMP/graph.$r.json"
		pgbench_bg "$RATE" "$TEST_TMP/pgbench.$r.$c.out"
		sleep "$WARM"
		perf record -q -a -F "$HZ_PERF" -o "$TEST_TMP/perf.data" -- sleep "$SECS" > /dev/null 2>&1 ||
			fail "perf record failed"
		pgbench_stop
		[ "$c" = none ] || seams_capture_stop || fail "capture failed"
		grep -qiE 'error|abort' "$TEST_TMP/pgbench.$r.$c.out.err" &&
			{ cat "$TEST_TMP/pgbench.$r.$c.out.err" >&2; fail "pgbench failed"; }
		# "round config samples comm dso symbol..." per function.
		perf report -i "$TEST_TMP/perf.data" --sort comm,dso,sym --no-children -n -q 2>/dev/null |
			awk -v r="$r" -v c="$c" '$2 ~ /^[0-9]+$/ { $1 = ""; print r, c, $0 }' >> "$TEST_TMP/samples"
		rm -f "$TEST_TMP/perf.data"
	done
done

echo "CPU time per transaction under pgbench -R $RATE, nothing attached against seams capture:"
echo "$ROUNDS alternating rounds of $SECS s, cpu-clock samples at $HZ_PERF Hz on every CPU"
# The collector's process name: its binary's, as the kernel keeps it (15 bytes).
awk -v us_per="$(awk -v f="$HZ_PERF" -v t="$((RATE * SECS))" 'BEGIN { print 1e6 / f / t }')" \
	-v rounds="$ROUNDS" -v top="$TOP" -v collector="$(basename "$SEAMS" | cut -c1-15)" '
	function part(comm, sym) {
		if (comm == "swapper" && sym ~ /(safe_halt|default_idle|poll_idle|mwait|acpi_idle)/) return "idle"
		if (comm == collector) return "collector"
		if (sym ~ /^bpf_prog_/) return "programs"
		if (sym ~ /^(bpf_|__bpf_|call_trace_sock_|copy_from_user_nofault|__check_object_size|nmi_uaccess_okay|ktime_get_mono_fast_ns|__virt_addr_valid)/) return "dispatch"
		return "rest"
	}
	{
		r = $1; c = $2; n = $3; comm = $4; dso = $5; sym = $7
		for (i = 8; i <= NF; i++) sym = sym " " $i
		x = n * us_per
		p = part(comm, sym)
		tot[c, r, p] += x
		if (p != "idle") tot[c, r, "busy"] += x
		k = comm " " sym
		fn[c, r, k] += x; keys[k] = 1
	}
	function mean(c, k, a,   s, i) { s = 0; for (i = 1; i <= rounds; i++) s += a[c, i, k]; return s / rounds }
	function per(c, k, a,   s, i) { s = ""; for (i = 1; i <= rounds; i++) s = s sprintf(" %.2f", a[c, i, k]); return s }
	END {
		name["busy"] = "busy (all but the idle loop)"; name["programs"] = "seams programs"
		name["dispatch"] = "hooks dispatch and helpers"; name["collector"] = "seams collector"
		name["rest"] = "everything else"
		printf "\n  %-30s %10s %10s %9s   %s\n", "part", "nothing", "seams", "added", "added per round"
		split("busy programs dispatch collector rest", P, " ")
		for (j = 1; j <= 5; j++) {
			s = ""
			for (i = 1; i <= rounds; i++) s = s sprintf(" %+.1f", tot["seams", i, P[j]] - tot["none", i, P[j]])
			printf "  %-30s %10.1f %10.1f %+9.1f  %s\n", name[P[j]], mean("none", P[j], tot), mean("seams", P[j], tot),
				mean("seams", P[j], tot) - mean("none", P[j], tot), s
		}
		printf "\nfunctions by added µs/tx (process, function: nothing, seams, added; per round nothing | seams):\n"
		for (k in keys) {
			d = mean("seams", k, fn) - mean("none", k, fn)
			line[k] = sprintf("  %+7.2f %7.2f %7.2f  %-60s |%s |%s", d, mean("none", k, fn), mean("seams", k, fn), k,
				per("none", k, fn), per("seams", k, fn))
			added[k] = d
		}
		# the TOP largest, by selection: few lines wanted of many
		for (t = 1; t <= top; t++) {
			best = ""
			for (k in added) if (best == "" || added[k] > added[best]) best = k
			if (best == "" || added[best] <= 0) break
			print line[best]; delete added[best]
		}
	}' "$TEST_TMP/samples"

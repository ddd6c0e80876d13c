#!/usr/bin/env bash
# tests/bench/pg_cpu_per_tx.sh: the machine's CPU time per PostgreSQL
# transaction at a fixed load rate, with nothing attached, with seams, and
# with what users run instead to see their queries: log_statement = all,
# and tshark dissecting pgsql on the loopback.  At a fixed rate the work
# pgbench and PostgreSQL do is the same in every configuration, so the busy
# CPU time per transaction over it is what each observer adds, also on a
# machine with idle CPU left (where TPS would not move at all).
#   RATES="1000 1500" ROUNDS=3 SECS=8 WARM=2 tests/bench/pg_cpu_per_tx.sh
# (CONFIGS="none hooks seams" for some of the configurations only)
# Every round runs each rate with every configuration in turn, the order
# reversed in every other round, so drift over the run (a warming or
# bloating database, a neighbour's load) falls on all of them alike.  The
# added cost is taken against the "nothing" run of the same round.
# pgbench: TPC-B, 4 clients over TCP, -R RATE, new connections for every
# run (so a capture sees them from their start); a run's first WARM seconds
# of progress are left out, then SECS seconds are measured.
# Busy time is user+nice+system+irq+softirq of /proc/stat's "cpu" line:
# steal is another guest's, iowait is idle.  It is the whole machine's, so
# anything else running is in it too: compare within a round, look at the
# spread.  So the same is also given from the CPU time of pgbench's and
# PostgreSQL's cgroups and the observer's own processes, which a
# neighbour's load does not reach (the hooks' cost in unrelated processes
# is not in it either).
# SATURATE=1 adds a rate at 90% of the TPS a 5 s unlimited run reaches, and
# reports each configuration's TPS there against nothing's.
# For seams it also splits its cost per transaction: the collector's CPU
# time (schedstat) and its BPF programs' own run time (the kernel's
# accounting, kernel.bpf_stats_enabled), in a window of PARTS_SECS (4)
# after the measured one: the accounting itself costs about 100 ns per
# program run, so it is off while the added cost is measured (BPF_STATS=0:
# never on, programs not measured).  Both are per transaction of pgbench,
# but the programs run on every socket call of the host: a busy
# neighbour's calls are in that figure too.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams
require_cmd jq

RATES=${RATES:-1000 1500}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
WARM=${WARM:-2}
SCALE=${SCALE:-4}
# pgbench's built-in tpcb-like: BEGIN, 3 UPDATEs, SELECT, INSERT, END.
STMTS_PER_TX=7
HZ=$(getconf CLK_TCK)
BPF_STATS=${BPF_STATS:-1}
PARTS_SECS=${PARTS_SECS:-4}
command -v bpftool >/dev/null 2>&1 || BPF_STATS=0

# CONFIGS="none seams" compares fewer (none is always needed).
configs=(${CONFIGS:-none seams hooks logstmt tshark})
declare -A label=(
	[none]="nothing"
	[seams]="seams capture"
	[hooks]="seams --cgroup (empty)"
	[logstmt]="log_statement = all"
	[tshark]="tshark pgsql dissection"
)
if ! command -v tshark >/dev/null 2>&1; then
	echo "tshark not installed (make deps): skipping its configuration" >&2
	kept=(); for c in "${configs[@]}"; do [ "$c" = tshark ] || kept+=("$c"); done; configs=("${kept[@]}")
fi

if [ "$BPF_STATS" = 1 ]; then
	old_stats=$(sysctl -n kernel.bpf_stats_enabled)
	trap 'sysctl -qw kernel.bpf_stats_enabled="$old_stats"; cleanup' EXIT
	# On only for the own-parts windows, see measure.
	sysctl -qw kernel.bpf_stats_enabled=0
fi
pgbench_init "$SCALE"
# The database does the same work in every run: no autovacuum worker lands
# in one configuration's window (vacuuming pgbench_accounts takes a good
# part of a second of CPU), since pgbench vacuums its small tables before
# each run anyway; and each run starts after a checkpoint, the next one
# far off.
pg_psql -c "ALTER SYSTEM SET autovacuum = off" -c "ALTER SYSTEM SET checkpoint_timeout = '1h'" \
	-c "ALTER SYSTEM SET max_wal_size = '8GB'" -c "SELECT pg_reload_conf()" >/dev/null
cg_new idle
cg_new tshark

# busy_read: BUSY = busy ticks of all CPUs so far.  A builtin read, no fork,
# so reading it costs nothing worth counting.
busy_read() {
	local l
	read -r -a l < /proc/stat
	BUSY=$((l[1] + l[2] + l[3] + l[6] + l[7]))
}

# ipi_read: IPIS = interrupts one CPU sent another so far, all CPUs: a
# remote wakeup (CAL), a reschedule (RES), a TLB shootdown (TLB), and irq
# work (IWI, a BPF ring buffer's wakeup among others).  In a VM each one
# costs an exit, so an observer that changes where tasks wake pays there
# too, outside its own code.
ipi_read() {
	local name rest n total=0
	while read -r name rest; do
		case $name in RES:|CAL:|TLB:|IWI:)
			for n in $rest; do
				[[ $n =~ ^[0-9]+$ ]] || break
				total=$((total + n))
			done
			;;
		esac
	done < /proc/interrupts
	IPIS=$total
}

# pg_set_log_statement VALUE|default: log_statement for new sessions; waits until a new session
# sees it, since pg_reload_conf() only signals the postmaster.
pg_set_log_statement() {
	if [ "$1" = default ]; then
		pg_psql -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
		wait_for 10 sh -c '[ "$(runuser -u postgres -- "$0" -X -At -h "$1" -p "$2" -d postgres -c "SHOW log_statement")" = none ]' \
			"$PG_BIN/psql" "$PGHOST_SOCK" "$PGPORT" || fail "log_statement not reset"
	else
		pg_psql -c "ALTER SYSTEM SET log_statement = '$1'" -c "SELECT pg_reload_conf()" >/dev/null
		wait_for 10 sh -c '[ "$(runuser -u postgres -- "$0" -X -At -h "$1" -p "$2" -d postgres -c "SHOW log_statement")" = "$3" ]' \
			"$PG_BIN/psql" "$PGHOST_SOCK" "$PGPORT" "$1" || fail "log_statement = $1 not in effect"
	fi
}

TSHARK_PID=
observer_start() {  # CONFIG TAG
	case $1 in
		seams) seams_capture_bg "$TEST_TMP/graph.$2.json" ;;
		hooks) seams_capture_bg "$TEST_TMP/graph.$2.json" --cgroup "$(cg_rel idle)" ;;
		logstmt) pg_set_log_statement all ;;
		tshark)
			# In a cgroup of its own, so cleanup also gets dumpcap; TMPDIR
			# for the capture file it writes while it dissects.
			TMPDIR=$TEST_TMP cg_exec tshark tshark -i lo -f "tcp port $PGPORT" \
				-d "tcp.port==$PGPORT,pgsql" -T fields -e frame.time_epoch -e pgsql.query \
				> "$TEST_TMP/tshark.$2.out" 2> "$TEST_TMP/tshark.$2.err"
			TSHARK_PID=$CG_LAST_PID
			wait_for 30 grep -q "^Capturing on" "$TEST_TMP/tshark.$2.err" ||
				{ cat "$TEST_TMP/tshark.$2.err" >&2; fail "tshark did not start"; }
			;;
	esac
}
observer_stop() {  # CONFIG TAG
	case $1 in
		seams|hooks)
			seams_capture_stop || fail "capture failed"
			jq -r --arg t "$2" '.capture | "\($t) \(.lost_events) \(.pg_lost_bytes)"' \
				"$TEST_TMP/graph.$2.json" >> "$TEST_TMP/lost"
			;;
		logstmt) pg_set_log_statement default ;;
		tshark)
			kill -INT "$TSHARK_PID" 2>/dev/null || true
			cg_wait_empty tshark || fail "tshark did not exit"
			;;
	esac
}

# run_load RATE TAG: pgbench at RATE (0: unlimited) until pgbench_stop; sets
# BENCH_PROGRESS.  --progress-timestamp puts the epoch time on every line.
run_load() {
	pgbench_bg "$1" "$TEST_TMP/pgbench.$2.out" -P 1 --progress-timestamp
	BENCH_PROGRESS=$TEST_TMP/pgbench.$2.out.err
}
progress_lines() { grep -c '^progress' "$BENCH_PROGRESS" 2>/dev/null || true; }
has_lines() { [ "$(progress_lines)" -ge "$1" ]; }
# progress_after T: a progress line stamped at or after epoch time T.
progress_after() {
	awk -v t="$1" '/^progress/ && $2 + 0 >= t { found = 1 } END { exit !found }' "$BENCH_PROGRESS"
}
# tx_between T0 T1: transactions pgbench completed between the two epoch
# times, from its per-second progress lines (each one's tps over the time
# since the previous line), the lines that straddle T0 or T1 prorated.  The
# few milliseconds after the last line are counted at its rate rather than
# waiting a second for the next line.
tx_between() {
	awk -v t0="$1" -v t1="$2" '
		/^progress/ {
			t = $2 + 0; tps = $4 + 0
			if (prev) {
				a = prev > t0 ? prev : t0; b = t < t1 ? t : t1
				if (b > a) n += tps * (b - a)
			}
			prev = t
		}
		END {
			if (prev < t1) n += tps * (t1 - (prev > t0 ? prev : t0))
			printf "%.0f\n", n
		}' "$BENCH_PROGRESS"
}

# ours_read: OURS = µs of CPU that pgbench, PostgreSQL, tshark (their
# cgroups) and the seams collector have run so far: what /proc/stat counts
# less the neighbours' load (on a shared 2-CPU machine, often a whole CPU)
# and less the interrupts and kernel threads not run on their behalf.
# Nanosecond scheduler time rather than /proc/stat's 100 Hz samples.
ours_read() {
	local g k v total=0
	for g in db bench tshark; do
		while read -r k v; do
			[ "$k" = usage_usec ] && { total=$((total + v)); break; }
		done < "$CG_PARENT/$g/cpu.stat"
	done
	if [ -n "$SEAMS_PID" ] && read -r v _ < "/proc/$SEAMS_PID/schedstat"; then
		total=$((total + v / 1000))
	fi
	OURS=$total
}

# seams_parts_read: PARTS = "collector-ns programs-ns" so far, for the
# running capture: its schedstat, and the run time of the programs it holds
# open (a neighbour's seams has programs of the same names).
seams_parts_read() {
	local coll prog=0 ids
	read -r coll _ < "/proc/$SEAMS_PID/schedstat"
	if [ "$BPF_STATS" = 1 ]; then
		ids=$(seams_prog_ids "$SEAMS_PID")
		prog=$(bpftool prog show --json | jq --argjson ids "$ids" \
			'[.[] | select(.id as $i | any($ids[]; . == $i)) | .run_time_ns // 0] | add // 0')
	fi
	PARTS="$coll $prog"
}

# measure CONFIG RATE ROUND: one run; appends "round rate config tx secs
# busy_us ours_us interrupts" to runs, and for seams "round rate config tx
# collector-ns programs-ns" over a window of its own after it to parts.
measure() {
	local c=$1 rate=$2 r=$3 tag=$3.$2.$1 t0 t1 b0 b1 o0 o1 i0 i1 tx p0= p1 pt0 pt1
	pg_psql -c CHECKPOINT
	observer_start "$c" "$tag"
	run_load "$rate" "$tag"
	wait_for 60 has_lines "$WARM" || { cat "$BENCH_PROGRESS" >&2; fail "pgbench did not start"; }
	ipi_read; i0=$IPIS; ours_read; o0=$OURS; busy_read; b0=$BUSY; t0=$EPOCHREALTIME
	sleep "$SECS"
	busy_read; b1=$BUSY; t1=$EPOCHREALTIME; ours_read; o1=$OURS; ipi_read; i1=$IPIS
	# seams' own parts, in a window of their own after the measured one:
	# the kernel's accounting costs about 100 ns per program run here
	# (syscall_cost.sh's floor doubles with it), which users do not pay.
	case $c in seams|hooks)
		[ "$BPF_STATS" = 1 ] && sysctl -qw kernel.bpf_stats_enabled=1
		pt0=$EPOCHREALTIME; seams_parts_read; p0=$PARTS
		sleep "$PARTS_SECS"
		;;
	esac
	if [ -n "$p0" ]; then
		seams_parts_read; p1=$PARTS; pt1=$EPOCHREALTIME
		[ "$BPF_STATS" = 1 ] && sysctl -qw kernel.bpf_stats_enabled=0
		wait_for 10 progress_after "$pt1" || fail "pgbench progress stalled"
		echo "$r $rate $c $(tx_between "$pt0" "$pt1") $p0 $p1" |
			awk '{ print $1, $2, $3, $4, $7 - $5, $8 - $6 }' >> "$TEST_TMP/parts"
	fi
	pgbench_stop
	observer_stop "$c" "$tag"
	grep -qiE 'error|abort' "$BENCH_PROGRESS" && { cat "$BENCH_PROGRESS" >&2; fail "pgbench failed"; }
	tx=$(tx_between "$t0" "$t1")
	[ "$tx" -gt 0 ] || fail "no transactions in run $tag"
	# How much of the window tshark dissected before it was stopped: one
	# Query per packet from pgbench -M simple.  Behind, it costs less per
	# transaction than doing the whole job would.
	if [ "$c" = tshark ]; then
		awk -F'\t' -v t0="$t0" -v t1="$t1" -v r="$r" -v rate="$rate" -v want="$((tx * STMTS_PER_TX))" \
			'$2 != "" && $1 >= t0 && $1 < t1 { n++ } END { print r, rate, n / want }' \
			"$TEST_TMP/tshark.$tag.out" >> "$TEST_TMP/tshark_share"
		rm -f "$TEST_TMP/tshark.$tag.out"
	fi
	awk -v r="$r" -v rate="$rate" -v c="$c" -v tx="$tx" -v t0="$t0" -v t1="$t1" -v b="$((b1 - b0))" -v hz="$HZ" \
		-v o="$((o1 - o0))" -v i="$((i1 - i0))" 'BEGIN { printf "%s %s %s %d %.3f %.0f %d %d\n", r, rate, c, tx, t1 - t0, b * 1e6 / hz, o, i }' \
		>> "$TEST_TMP/runs"
}

# Another seams (a neighbour's test or agent) tracing the whole host puts
# its hooks and collector into every configuration, "nothing" included.
foreign_seams() {
	command -v bpftool >/dev/null 2>&1 || { echo 0; return; }
	bpftool prog show 2>/dev/null | grep -c ' name on_send ' || true
}
warn_foreign() {
	[ "$(foreign_seams)" = 0 ] ||
		echo "warning ($1): another seams' programs are attached; its cost is in every configuration" >&2
}
warn_foreign start

: > "$TEST_TMP/runs"; : > "$TEST_TMP/lost"; : > "$TEST_TMP/parts"; : > "$TEST_TMP/tshark_share"
rates=($RATES)
if [ "${SATURATE:-0}" = 1 ]; then
	run_load 0 max
	wait_for 60 has_lines 2 || { cat "$BENCH_PROGRESS" >&2; fail "pgbench did not start"; }
	t0=$EPOCHREALTIME; sleep 5; t1=$EPOCHREALTIME
	wait_for 10 progress_after "$t1" || fail "pgbench progress stalled"
	pgbench_stop
	max=$(awk -v n="$(tx_between "$t0" "$t1")" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
	SAT_RATE=$((max * 9 / 10))
	echo "unlimited: $max TPS; near saturation: -R $SAT_RATE"
	rates+=("$SAT_RATE")
fi

for r in $(seq "$ROUNDS"); do
	order=("${configs[@]}")
	if [ $((r % 2)) = 0 ]; then
		order=(); for ((i = ${#configs[@]} - 1; i >= 0; i--)); do order+=("${configs[i]}"); done
	fi
	for rate in "${rates[@]}"; do
		for c in "${order[@]}"; do measure "$c" "$rate" "$r"; done
	done
done

warn_foreign end

# sort_ ARRAY N: sorts ARRAY[1..N] in place (few values: insertion).
SORT_AWK='
	function sort_(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
'
# The tables: per rate, measure and configuration, µs of CPU per
# transaction over the rounds, and the added cost against nothing's run in
# the same round; then seams' added cost as a ratio of the others', one
# ratio per round.
awk -v stmts="$STMTS_PER_TX" -v rates="${rates[*]}" -v configs="${configs[*]}" -v sat="${SAT_RATE:-}" \
	-v l_none="${label[none]}" -v l_seams="${label[seams]}" -v l_hooks="${label[hooks]}" \
	-v l_logstmt="${label[logstmt]}" -v l_tshark="${label[tshark]}" "$SORT_AWK"'
	function median(k,   a, n, i) {
		n = nv[k]; for (i = 1; i <= n; i++) a[i] = v[k, i]
		sort_(a, n)
		return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
	}
	function lo(k,   i, m) { m = v[k, 1]; for (i = 2; i <= nv[k]; i++) if (v[k, i] < m) m = v[k, i]; return m }
	function hi(k,   i, m) { m = v[k, 1]; for (i = 2; i <= nv[k]; i++) if (v[k, i] > m) m = v[k, i]; return m }
	# stats KEY FORMAT: "median (min..max)" of v[KEY, 1..nv[KEY]]
	function stats(k, f) { return nv[k] ? sprintf(f " (" f ".." f ")", median(k), lo(k), hi(k)) : "-" }
	function put(k, x) { v[k, ++nv[k]] = x }
	# Student t, 97.5%, by degrees of freedom: a 95% interval from few rounds.
	function tq(df) {
		split("12.71 4.30 3.18 2.78 2.57 2.45 2.36 2.31 2.26 2.23 2.20 2.18 2.16 2.14 2.13 2.12 2.11 2.10 2.09 2.09 2.08 2.07 2.07 2.06 2.06 2.06 2.05 2.05 2.05 2.04", T, " ")
		return df < 1 ? 0 : df <= 30 ? T[df] : df <= 60 ? 2.00 : 1.98
	}
	FILENAME ~ /tshark_share$/ { share[$1, $2] = $3; next }
	{ cpu[$1, $2, $3, 1] = $6 / $4; cpu[$1, $2, $3, 2] = $7 / $4; tps[$1, $2, $3] = $4 / $5; round[$1] = 1 }
	END {
		name["none"] = l_none; name["seams"] = l_seams; name["hooks"] = l_hooks
		name["logstmt"] = l_logstmt; name["tshark"] = l_tshark
		title[1] = "the machine'"'"'s busy CPU (/proc/stat)"
		title[2] = "CPU of pgbench, PostgreSQL and the observer (cgroups, schedstat)"
		nr = split(rates, R, " "); nc = split(configs, C, " ")
		for (ri = 1; ri <= nr; ri++) for (m = 1; m <= 2; m++) {
			rate = R[ri]
			for (r in round) {
				if (!((r, rate, "none", m) in cpu)) continue
				for (ci = 1; ci <= nc; ci++) {
					c = C[ci]; k = rate SUBSEP m SUBSEP c
					if (!((r, rate, c, m) in cpu)) continue
					put(k SUBSEP "us", cpu[r, rate, c, m])
					add[c] = cpu[r, rate, c, m] - cpu[r, rate, "none", m]
					put(k SUBSEP "add", add[c])
					put(k SUBSEP "addstmt", add[c] / stmts)
					if (m == 1) {
						put(rate SUBSEP c SUBSEP "tps", tps[r, rate, c])
						put(rate SUBSEP c SUBSEP "tpsratio", tps[r, rate, c] / tps[r, rate, "none"])
					}
				}
				for (s = 1; s <= 2; s++) for (o = 1; o <= 2; o++) {
					sc = s == 1 ? "seams" : "hooks"; oc = o == 1 ? "logstmt" : "tshark"
					if (!((r, rate, sc, m) in cpu) || !((r, rate, oc, m) in cpu)) continue
					# A round in which the other added nothing measurable has no ratio.
					if (add[oc] > 0) put(rate SUBSEP m SUBSEP sc SUBSEP oc, add[sc] / add[oc])
					else noratio[rate, m, sc, oc]++
					# The pair, for the verdict: both taken against the same "nothing".
					put(rate SUBSEP m SUBSEP sc SUBSEP oc SUBSEP "s", add[sc])
					put(rate SUBSEP m SUBSEP sc SUBSEP oc SUBSEP "o", add[oc])
					# Against what tshark would add dissecting every statement.
					if (oc == "tshark" && add[oc] > 0 && share[r, rate] > 0)
						put(rate SUBSEP m SUBSEP sc SUBSEP "tsharkall", add[sc] * share[r, rate] / add[oc])
				}
				if ((r, rate) in share && m == 1) put(rate SUBSEP "share", share[r, rate])
			}
			printf "\n-R %s%s, %s:\n", rate, rate == sat ? " (90% of saturation)" : "", title[m]
			printf "  %-24s %-26s %-26s %-24s %s\n", "configuration", "µs/tx", "added µs/tx", "added µs/statement",
				m == 2 ? "" : rate == sat ? "TPS (ratio to nothing)" : "TPS"
			for (ci = 1; ci <= nc; ci++) {
				c = C[ci]; k = rate SUBSEP m SUBSEP c
				printf "  %-24s %-26s %-26s %-24s %s\n", name[c], stats(k SUBSEP "us", "%.1f"),
					c == "none" ? "-" : stats(k SUBSEP "add", "%+.1f"),
					c == "none" ? "-" : stats(k SUBSEP "addstmt", "%+.2f"),
					m == 2 ? "" : rate == sat ? sprintf("%.0f (%s)", median(rate SUBSEP c SUBSEP "tps"),
						stats(rate SUBSEP c SUBSEP "tpsratio", "%.3f")) : sprintf("%.0f", median(rate SUBSEP c SUBSEP "tps"))
			}
			# The verdict is on the ratio of the mean added costs, with its 95%
			# interval (by Fieller, from the spread over the rounds).  The
			# rounds are pairs, seams and the other taken against the same
			# "nothing", so a slow "nothing" run moves both alike and the
			# interval is narrower than from either spread alone.  It is met
			# when the whole interval is under the target: the same as the
			# added cost of seams less target times that of the other being
			# below 0 with 95% confidence.  The noise of a window falls as
			# the root of SECS, that of the mean as the root of ROUNDS too.
			for (s = 1; s <= 2; s++) for (o = 1; o <= 2; o++) {
				sc = s == 1 ? "seams" : "hooks"; oc = o == 1 ? "logstmt" : "tshark"; target = o == 1 ? 0.5 : 0.1
				k = rate SUBSEP m SUBSEP sc SUBSEP oc
				if (!nv[k SUBSEP "s"]) continue
				n = nv[k SUBSEP "s"]; ms = mo = 0
				for (i = 1; i <= n; i++) { ms += v[k SUBSEP "s", i] / n; mo += v[k SUBSEP "o", i] / n }
				vs = vo = cso = 0
				for (i = 1; i <= n && n > 1; i++) {
					ds = v[k SUBSEP "s", i] - ms; do_ = v[k SUBSEP "o", i] - mo
					vs += ds * ds / (n - 1) / n; vo += do_ * do_ / (n - 1) / n; cso += ds * do_ / (n - 1) / n
				}
				q = tq(n - 1); a = mo * mo - q * q * vo; b = ms * mo - q * q * cso; d = b * b - a * (ms * ms - q * q * vs)
				ratio = mo > 0 ? ms / mo : 1e9
				rs = mo > 0 ? sprintf("%.3f", ratio) : "n/a"
				# Fieller: bounded only when the mean of the other is clear of 0.
				iv = n > 1 && a > 0 && d >= 0 ? sprintf("%.3f..%.3f", (b - sqrt(d)) / a, (b + sqrt(d)) / a) : "unbounded"
				mg = ms - target * mo; x = vs - 2 * target * cso + target * target * vo; mgerr = q * sqrt(x > 0 ? x : 0)
				verdict = n < 2 ? "not resolved (one round)" : mg - mgerr > 0 ? "NOT met" : \
					mg + mgerr >= 0 ? "not resolved (the target is within the 95% interval; more ROUNDS or SECS narrow it)" : \
					nv[k] && hi(k) <= target && !noratio[rate, m, sc, oc] ? "met, and in every round" : "met (95%), not in every round"
				printf "  %s added / %s added: %s, mean of %d rounds (median (min..max) of the ratio per round %s%s)", name[sc], name[oc], rs, n,
					nv[k] ? stats(k, "%.3f") : "-",
					noratio[rate, m, sc, oc] ? sprintf("; %d without a measurable cost for %s", noratio[rate, m, sc, oc], name[oc]) : ""
				if (sc == "seams")
					printf ";\n    95%% interval %s (added - %.1f x %s added: %+.1f, %+.1f..%+.1f µs/tx); target <= %.1f: %s",
						iv, target, name[oc], mg, mg - mgerr, mg + mgerr, target, verdict
				printf "\n"
				k = rate SUBSEP m SUBSEP sc SUBSEP "tsharkall"
				if (oc == "tshark" && nv[k])
					printf "    (tshark dissected %s of the statements before it was stopped; against its added cost scaled to all of them: %s)\n",
						stats(rate SUBSEP "share", "%.2f"), stats(k, "%.3f")
			}
		}
	}' "$TEST_TMP/tshark_share" "$TEST_TMP/runs"
echo
echo "(median (min..max) over rounds; added: against nothing's run of the same round, one ratio per round;"
echo " ratios from a negative added cost are noise; busy = user+nice+system+irq+softirq of all $(nproc) CPUs;"
echo " $STMTS_PER_TX statements per TPC-B transaction)"
awk '{ n[$1 ~ /hooks$/ ? "hooks" : "seams"]++; e[$1 ~ /hooks$/ ? "hooks" : "seams"] += $2; b[$1 ~ /hooks$/ ? "hooks" : "seams"] += $3 }
	END { for (k in n) printf "%s captures: %d, events lost %d, PostgreSQL bytes lost %d (target 0)\n",
		k == "seams" ? "seams capture" : "seams --cgroup (empty)", n[k], e[k], b[k] }' "$TEST_TMP/lost" | sort
# Where seams' time goes, per transaction and per statement: what is left
# of its added cost beyond these two is the hooks' own entry and exit and
# what its work costs the traced processes (caches, the ring's memory).
# stats ARRAY N FORMAT: "median (min..max)" of ARRAY[1..N], for the tables below.
STATS_AWK=$SORT_AWK'
	function stats(a, n, f) { sort_(a, n); return sprintf(f " (" f ".." f ")", n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2, a[1], a[n]) }
'
echo
echo "seams' own parts (median (min..max) over rounds$([ "$BPF_STATS" = 1 ] || echo "; programs not measured: BPF_STATS=0")):"
printf '  %-8s %-24s %-28s %-28s %s\n' rate configuration "collector µs/tx" "programs µs/tx" "both µs/statement"
for rate in "${rates[@]}"; do
	for c in seams hooks; do
		awk -v rate="$rate" -v c="$c" -v stmts="$STMTS_PER_TX" "$STATS_AWK"'
			$2 == rate && $3 == c && $4 > 0 { n++; coll[n] = $5 / 1000 / $4; prog[n] = $6 / 1000 / $4; both[n] = (coll[n] + prog[n]) / stmts }
			END { if (n) printf "  %-8s %-24s %-28s %-28s %s\n", rate, c == "seams" ? "seams capture" : "seams --cgroup (empty)",
				stats(coll, n, "%.2f"), stats(prog, n, "%.2f"), stats(both, n, "%.2f") }' "$TEST_TMP/parts"
	done
done
echo
echo "interrupts between CPUs per transaction (RES, CAL, TLB, IWI of /proc/interrupts; median (min..max) over rounds):"
awk -v rates="${rates[*]}" -v configs="${configs[*]}" -v names="${label[none]}|${label[seams]}|${label[hooks]}|${label[logstmt]}|${label[tshark]}" "$STATS_AWK"'
	{ ipi[$1, $2, $3] = $8 / $4; round[$1] = 1 }
	END {
		nr = split(rates, R, " "); nc = split(configs, C, " ")
		split(names, L, "|"); name["none"] = L[1]; name["seams"] = L[2]; name["hooks"] = L[3]
		name["logstmt"] = L[4]; name["tshark"] = L[5]
		for (ri = 1; ri <= nr; ri++) for (ci = 1; ci <= nc; ci++) {
			n = 0; delete per; delete add
			for (r in round) if ((r, R[ri], C[ci]) in ipi && (r, R[ri], "none") in ipi) {
				n++; per[n] = ipi[r, R[ri], C[ci]]; add[n] = per[n] - ipi[r, R[ri], "none"]
			}
			if (n) printf "  -R %-6s %-24s %-22s added %s\n", R[ri], name[C[ci]], stats(per, n, "%.2f"), C[ci] == "none" ? "-" : stats(add, n, "%+.2f")
		}
	}' "$TEST_TMP/runs"
echo "every run: round rate configuration transactions seconds machine-busy-µs ours-µs interrupts-between-CPUs"
cat "$TEST_TMP/runs"

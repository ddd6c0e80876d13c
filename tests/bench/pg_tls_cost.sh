#!/usr/bin/env bash
# tests/bench/pg_tls_cost.sh: CPU time per statement that seams adds to
# PostgreSQL over TLS, at a fixed rate (as pg_cpu_per_tx.sh: the work is
# the same in every configuration, so the CPU time per transaction over it
# is what the observer adds).  pgbench TPC-B, 4 clients, sslmode=require,
# -R RATE for SECS seconds, in cgroup `bench`; the server in cgroup `db`.
#   RATE=400 ROUNDS=3 SECS=10 tests/bench/pg_tls_cost.sh
# Configurations, in turn, the order reversed every other round:
#   none      nothing attached
#   process   seams capture --cgroup (bench and db): per-process probes
#   file      the same with --tls-probe file: file-wide probes
# CPU is the nanosecond scheduler time of the two cgroups plus the seams
# collector, and of the server's cgroup alone: the server is traced for
# TCP but its TLS calls are never decoded, so with per-process probes it
# must pay nothing for them, while file-wide probes trap in its SSL calls.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root
require_seams
require_cmd jq
require_cmd openssl

RATE=${RATE:-400}
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-10}
STMTS_PER_TX=7 # BEGIN, 3 UPDATEs, SELECT, INSERT, END

cg_new db
cg_new bench
pg_start --ssl --cgroup db
runuser -u postgres -- "$PG_BIN/pgbench" -i -q -s 4 -h 127.0.0.1 -p "$PGPORT" postgres \
	> "$TEST_TMP/init.log" 2>&1 || { cat "$TEST_TMP/init.log" >&2; fail "pgbench -i failed"; }

usage_us() {  # CGROUP: its CPU time so far, in µs
	local k v
	while read -r k v; do
		[ "$k" = usage_usec ] && { echo "$v"; return; }
	done < "$CG_PARENT/$1/cpu.stat"
}
seams_us() {
	local v=0
	[ -n "$SEAMS_PID" ] && read -r v _ < "/proc/$SEAMS_PID/schedstat"
	echo $((v / 1000))
}

# measure CONFIG ROUND: appends "config tx all_us server_us" to runs.
measure() {
	local c=$1 tag=$2.$1 g=$TEST_TMP/graph.$2.$1.json out=$TEST_TMP/pgbench.$2.$1.out
	local d0 b0 s0=0 d1 b1 s1=0 tx
	case $c in
		process) seams_capture_bg "$g" --cgroup "$CG_PARENT" --pg-port "$PGPORT" ;;
		file) seams_capture_bg "$g" --cgroup "$CG_PARENT" --pg-port "$PGPORT" --tls-probe file ;;
	esac
	d0=$(usage_us db); b0=$(usage_us bench); [ "$c" = none ] || s0=$(seams_us)
	cg_run bench runuser -u postgres -- env PGSSLMODE=require "$PG_BIN/pgbench" -n -c 4 -j 2 \
		-R "$RATE" -T "$SECS" -h 127.0.0.1 -p "$PGPORT" postgres > "$out" 2>&1 ||
		{ cat "$out" >&2; fail "pgbench failed"; }
	d1=$(usage_us db); b1=$(usage_us bench); [ "$c" = none ] || s1=$(seams_us)
	if [ "$c" != none ]; then
		seams_capture_stop || fail "capture failed"
		# Per-process probes attach some milliseconds after pgbench's exec:
		# its first connection may be caught mid-startup (as in
		# test_pg_tls_pgbench), the clients' never.
		jq -e '.capture.pg_tls_connections >= 4 and .capture.pg_lost_bytes < 1000' "$g" > /dev/null ||
			{ jq -c .capture "$g" >&2; fail "$tag: the TLS connections were not decoded"; }
	fi
	tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
	[ -n "$tx" ] && [ "$tx" -gt 0 ] || { cat "$out" >&2; fail "no transactions in $tag"; }
	echo "$c $tx $((d1 - d0 + b1 - b0 + s1 - s0)) $((d1 - d0))" >> "$TEST_TMP/runs"
	info "$(awk -v c="$c" -v r="$2" -v tx="$tx" -v a="$((d1 - d0 + b1 - b0 + s1 - s0))" -v s="$((d1 - d0))" \
		'BEGIN { printf "%-8s round %s: %6d tx, %7.1f µs/tx all, %7.1f µs/tx server", c, r, tx, a / tx, s / tx }')"
}

configs=(none process file)
for r in $(seq 1 "$ROUNDS"); do
	order=("${configs[@]}")
	[ $((r % 2)) = 0 ] && order=(file process none)
	for c in "${order[@]}"; do
		measure "$c" "$r"
	done
done

echo
echo "TLS (sslmode=require), pgbench -R $RATE, ${SECS}s x $ROUNDS rounds; CPU µs per transaction ($STMTS_PER_TX statements)"
awk -v k="$STMTS_PER_TX" '
	{ tx[$1] += $2; all[$1] += $3; srv[$1] += $4 }
	END {
		printf "%-9s %12s %12s %14s %14s\n", "config", "all/tx", "server/tx", "added/stmt", "server added/stmt"
		n = split("none process file", cs, " ")
		for (i = 1; i <= n; i++) {
			c = cs[i]
			a = all[c] / tx[c]; s = srv[c] / tx[c]
			printf "%-9s %12.1f %12.1f %14.2f %14.2f\n", c, a, s,
				(a - all["none"] / tx["none"]) / k, (s - srv["none"] / tx["none"]) / k
		}
	}' "$TEST_TMP/runs"

#!/usr/bin/env bash
# Offline decoder throughput on one core: recorded pgbench streams replayed
# through the PostgreSQL decoder and the statement cache (target >= 500k
# messages/s).  Needs build/bench/bench_decoder (make bench builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=build/bench/bench_decoder
[ -x "$bin" ] || make --no-print-directory "$bin"
for f in tests/data/pg/pgbench_simple.seg tests/data/pg/pgbench_extended.seg tests/data/pg/pgbench_prepared.seg; do
	printf '%-40s ' "$f"
	taskset -c 0 "$bin" "$f" 3 | tail -n 1
done

#!/usr/bin/env bash
# Collector memory per tracked open connection (goal <= 5 KiB): the
# bench_conn_memory program, at two sizes so map growth shows.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s build/bench/bench_conn_memory
for n in 10000 100000; do build/bench/bench_conn_memory "$n"; done

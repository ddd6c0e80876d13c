#!/usr/bin/env bash
# tests/bench/run.sh (`make bench`): run every tests/bench/*.sh but this one.
# agent_soak.sh runs for SOAK_SECS (10 minutes by default), so only with
# SOAK=1: `SOAK=1 SOAK_SECS=60 make bench`.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
failed=0
for b in tests/bench/*.sh; do
	[ "$(basename "$b")" = run.sh ] && continue
	[ "$(basename "$b")" = agent_soak.sh ] && [ "${SOAK:-0}" != 1 ] && continue
	echo "== $b"
	bash "$b" || { echo "$b: FAILED (status $?)"; failed=$((failed + 1)); }
done
[ "$failed" = 0 ]

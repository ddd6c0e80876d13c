#!/usr/bin/env bash
# tests/bench/run.sh (`make bench`): run every tests/bench/*.sh but this one.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
failed=0
for b in tests/bench/*.sh; do
	[ "$(basename "$b")" = run.sh ] && continue
	echo "== $b"
	bash "$b" || { echo "$b: FAILED (status $?)"; failed=$((failed + 1)); }
done
[ "$failed" = 0 ]

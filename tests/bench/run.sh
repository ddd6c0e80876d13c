#!/usr/bin/env bash
# tests/bench/run.sh (`make bench`): run every tests/bench/*.sh but this one.
# agent_soak.sh runs for SOAK_SECS (10 minutes by default), so only with
# SOAK=1: `SOAK=1 SOAK_SECS=60 make bench`.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ran=0 skipped=0 failed=0
for b in tests/bench/*.sh; do
	[ "$(basename "$b")" = run.sh ] && continue
	[ "$(basename "$b")" = agent_soak.sh ] && [ "${SOAK:-0}" != 1 ] && continue
	echo "== $b"
	rc=0
	bash "$b" || rc=$?
	# 77: a tool it needs is missing here (it said which); not a failure.
	case $rc in
		0) ran=$((ran + 1)) ;;
		77) skipped=$((skipped + 1)) ;;
		*) echo "$b: FAILED (status $rc)"; failed=$((failed + 1)) ;;
	esac
done
echo "$ran ran, $skipped skipped, $failed failed"
[ "$failed" = 0 ]

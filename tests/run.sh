#!/usr/bin/env bash
# tests/run.sh: run every built test; `make test` calls it after building.
#
#   tests/run.sh [PATTERN]      only groups whose name contains PATTERN
#
# Order: unit tests (build/tests/test_*, cmocka: each test case counts),
# fuzzers (build/fuzz/fuzz_*, a short fixed run each on a copy of the seed
# corpus), end-to-end tests (tests/e2e/test_*.sh: exit 0 pass, 77 skip).
# Logs go to build/test-logs/NAME.log and are shown on failure.
# Ends with the line "N passed, N failed"; exits non-zero if anything failed.
#
# Environment: BUILD (default build), FUZZ_TIME (seconds per fuzzer, 20),
# E2E_TIMEOUT (seconds per e2e test, 300).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

BUILD=${BUILD:-build}
FUZZ_TIME=${FUZZ_TIME:-20}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
PATTERN=${1:-}
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"

passed=0 failed=0 skipped=0
failed_names=() skipped_names=()
TMPROOT=$(mktemp -d /tmp/seams-run.XXXXXX)
trap 'rm -rf "$TMPROOT"' EXIT

selected() { [ -z "$PATTERN" ] || [[ $1 == *"$PATTERN"* ]]; }

show_log() {
	local log=$1 n
	n=$(wc -l < "$log")
	if [ "$n" -gt 150 ]; then
		echo "    --- $log (last 150 of $n lines):"
	else
		echo "    --- $log:"
	fi
	tail -n 150 "$log" | sed 's/^/    | /'
	echo "    ---"
}

# --- unit tests (cmocka) ------------------------------------------------------
for bin in "$BUILD"/tests/test_*; do
	[ -x "$bin" ] && [ -f "$bin" ] || continue
	name=$(basename "$bin")
	selected "$name" || continue
	log=$LOGDIR/$name.log
	CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 5 120 "$bin" > "$log" 2>&1
	rc=$?
	ok=$(grep -cE '^ok [0-9]+' "$log")
	sk=$(grep -cE '^(not )?ok [0-9]+ # SKIP' "$log")
	nok=$(grep -cE '^not ok [0-9]+' "$log")
	ok=$((ok - $(grep -cE '^ok [0-9]+ # SKIP' "$log")))
	nok=$((nok - $(grep -cE '^not ok [0-9]+ # SKIP' "$log")))
	note=
	if [ "$rc" != 0 ] && [ "$nok" = 0 ]; then
		nok=1
		note=" (exit status $rc${ok:+, after $ok passing cases})"
	fi
	if [ $((ok + nok)) = 0 ]; then
		nok=1; note=" (no test cases ran)"
	fi
	passed=$((passed + ok)); failed=$((failed + nok)); skipped=$((skipped + sk))
	if [ "$nok" = 0 ]; then
		extra=; [ "$sk" != 0 ] && extra=", $sk skipped"
		echo "PASS unit $name: $ok cases$extra"
	else
		echo "FAIL unit $name: $ok passed, $nok failed$note"
		grep -E '^not ok [0-9]+' "$log" | grep -v '# SKIP' | sed 's/^/    /'
		show_log "$log"
		failed_names+=("$name")
	fi
	[ "$sk" != 0 ] && skipped_names+=("$name ($sk cases)")
done

# --- fuzzers ------------------------------------------------------------------
for bin in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$bin" ] && [ -f "$bin" ] || continue
	name=$(basename "$bin")
	selected "$name" || continue
	log=$LOGDIR/$name.log
	seeds=tests/fuzz/corpus/${name#fuzz_}
	corpus=$TMPROOT/$name.corpus
	artifacts=$LOGDIR/$name.artifacts
	mkdir -p "$corpus"
	rm -rf "$artifacts"; mkdir -p "$artifacts"
	[ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/
	timeout -k 5 $((FUZZ_TIME + 120)) "$bin" -max_total_time="$FUZZ_TIME" -timeout=10 \
		-artifact_prefix="$artifacts/" -print_final_stats=1 "$corpus" > "$log" 2>&1
	rc=$?
	rmdir "$artifacts" 2>/dev/null
	if [ "$rc" = 0 ]; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
		echo "PASS fuzz $name: ${runs:-?} runs in ${FUZZ_TIME} s"
		passed=$((passed + 1))
	else
		echo "FAIL fuzz $name: exit status $rc; crashing inputs in $artifacts/"
		show_log "$log"
		failed=$((failed + 1)); failed_names+=("$name")
	fi
done

# --- end-to-end tests -----------------------------------------------------------
for t in tests/e2e/test_*.sh; do
	[ -f "$t" ] || continue
	name=$(basename "$t" .sh)
	selected "$name" || continue
	log=$LOGDIR/$name.log
	start=$SECONDS
	timeout -k 15 "$E2E_TIMEOUT" bash "$t" > "$log" 2>&1 < /dev/null
	rc=$?
	took=$((SECONDS - start))
	case $rc in
	0)
		echo "PASS e2e $name (${took} s)"
		passed=$((passed + 1)) ;;
	77)
		why=$(grep -m1 '^SKIP' "$log")
		echo "SKIP e2e $name: ${why#SKIP: }"
		skipped=$((skipped + 1)); skipped_names+=("$name") ;;
	124|137)
		echo "FAIL e2e $name: timed out after ${E2E_TIMEOUT} s"
		show_log "$log"
		failed=$((failed + 1)); failed_names+=("$name") ;;
	*)
		echo "FAIL e2e $name: exit status $rc (${took} s)"
		show_log "$log"
		failed=$((failed + 1)); failed_names+=("$name") ;;
	esac
done

if [ "$failed" != 0 ]; then
	echo "failed: ${failed_names[*]}"
fi
if [ "$skipped" != 0 ]; then
	echo "$skipped skipped: ${skipped_names[*]}"
fi
[ $((passed + failed + skipped)) = 0 ] && echo "no tests found${PATTERN:+ matching '$PATTERN'}"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ] && [ $((passed + skipped)) -gt 0 ]

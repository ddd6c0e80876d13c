#!/usr/bin/env bash
# seams capture's failure modes and clean exits:
#   - not root                  -> non-zero, one line mentioning root/CAP_BPF
#   - --cgroup that is missing   -> non-zero, one line naming it, output untouched
#   - unwritable --output        -> non-zero, one line, no partial file anywhere
#   - SIGINT / SIGTERM mid-run   -> exit 0 and a valid seams.graph/v1 document
#   - --output -                 -> the document on stdout
#   - after exit no BPF program of the capture stays loaded
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq curl bpftool setpriv

# run_seams NAME ARGS...: run capture (max 60 s) with stdout/stderr in
# $TEST_TMP/NAME.{out,err}; sets RC.
run_seams() {
	local name=$1; shift
	set +e
	timeout 60 "$@" > "$TEST_TMP/$name.out" 2> "$TEST_TMP/$name.err"
	RC=$?
	set -e
}

# expect_one_line_error NAME REGEX: RC non-zero (not a timeout or crash),
# stderr exactly one non-empty line matching REGEX (case-insensitive).
expect_one_line_error() {
	local name=$1 re=$2 err=$TEST_TMP/$1.err lines
	[ "$RC" != 0 ] || fail "$name: expected a non-zero exit status, got 0"
	[ "$RC" != 124 ] || fail "$name: seams did not exit within 60 s"
	[ "$RC" -lt 128 ] || fail "$name: seams died of a signal (status $RC)"
	lines=$(grep -c . "$err" || true)
	if [ "$lines" != 1 ] || [ "$(wc -l < "$err")" != 1 ]; then
		echo "stderr of $name:" >&2; cat "$err" >&2
		fail "$name: expected exactly one line on stderr, got $(wc -l < "$err")"
	fi
	grep -Eqi -- "$re" "$err" || { cat "$err" >&2; fail "$name: stderr does not match /$re/"; }
}

# --- not root -------------------------------------------------------------------
# A copy anyone can execute, in a directory nobody can write to.
NB=$TEST_TMP/nobody
mkdir -p "$NB/out"; chmod 777 "$NB/out"
cp "$SEAMS" "$NB/seams"; chmod 755 "$NB/seams"
run_seams notroot setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=-all \
	--bounding-set=-all env -C "$NB/out" "$NB/seams" capture --duration 1 --output "$NB/out/g.json"
expect_one_line_error notroot 'root|CAP_BPF|privilege|permission'
[ -z "$(ls -A "$NB/out")" ] || fail "not root: files were left in the output dir: $(ls -A "$NB/out")"

# --- missing cgroup ---------------------------------------------------------------
echo '{"previous":"graph"}' > "$TEST_TMP/keep.json"
cp "$TEST_TMP/keep.json" "$TEST_TMP/keep.orig"
run_seams nocgroup "$SEAMS" capture --duration 1 --cgroup /does/not/exist --output "$TEST_TMP/keep.json"
expect_one_line_error nocgroup '/does/not/exist'
cmp -s "$TEST_TMP/keep.json" "$TEST_TMP/keep.orig" || fail "a failed capture modified the existing output file"
run_seams nocgroup_rel "$SEAMS" capture --duration 1 --cgroup "$SEAMS_CG_PARENT/nonexistent" \
	--output "$TEST_TMP/keep.json"
expect_one_line_error nocgroup_rel 'nonexistent'

# --- unwritable output ---------------------------------------------------------------
OUTNAME=seams-e2e-$$-forbidden.json
mkdir -p "$TEST_TMP/cwd"
run_seams forbidden env -C "$TEST_TMP/cwd" "$SEAMS" capture --duration 1 --output "/proc/forbidden/$OUTNAME"
expect_one_line_error forbidden 'forbidden|output|write|create|open|director'
[ -z "$(ls -A "$TEST_TMP/cwd")" ] || fail "unwritable output: files left in the working directory: $(ls -A "$TEST_TMP/cwd")"
after=$(find /tmp "$SEAMS_ROOT" -maxdepth 3 -name "*seams-e2e-$$*" 2>/dev/null | sort)
[ -z "$after" ] || fail "unwritable output: partial files left: $after"
# A directory that does not exist, in a writable place.
run_seams nodir "$SEAMS" capture --duration 1 --output "$TEST_TMP/no/such/dir/g.json"
expect_one_line_error nodir 'no/such/dir|output|director'
[ ! -e "$TEST_TMP/no" ] || fail "--output into a missing directory created $(find "$TEST_TMP/no")"

# --- SIGINT / SIGTERM mid-capture, and no BPF program left behind ---------------------
mkdir -p "$TEST_TMP/www"; echo hi > "$TEST_TMP/www/index.html"
port=$(free_port)
cg_exec web "$PY" -m http.server --bind 127.0.0.1 --directory "$TEST_TMP/www" "$port" \
	> "$TEST_TMP/web.log" 2>&1
wait_port "$port"
cg_new client

# IDs of BPF programs process $1 holds (program and link fds show prog_id in
# fdinfo; bpftool's "pids" field needs a kernel iterator that may be absent).
progs_of_pid() {
	grep -h '^prog_id:' /proc/"$1"/fdinfo/* 2>/dev/null | awk '{ print $2 }' | sort -un
}
prog_ids() { bpftool prog show -j 2>/dev/null | jq -r '.[].id' | sort -n; }

for sig in INT TERM; do
	G=$TEST_TMP/graph-$sig.json
	ids_before=$(prog_ids)
	seams_capture_bg "$G" --duration 120
	mine=$(progs_of_pid "$SEAMS_PID")
	if [ -z "$mine" ]; then
		# bpftool without pid support: the programs that appeared since.
		mine=$(comm -13 <(echo "$ids_before") <(prog_ids))
	fi
	[ -n "$mine" ] || fail "no BPF program is loaded while the capture runs"
	cg_run client curl -sSf -o /dev/null "http://127.0.0.1:$port/" || fail "curl failed"
	t0=$SECONDS
	seams_capture_stop "$sig" || fail "SIG$sig: capture exited non-zero"
	[ $((SECONDS - t0)) -le 10 ] || fail "SIG$sig: capture took $((SECONDS - t0)) s to exit"
	assert_valid_graph "$G"
	assert_jq "$G" '.capture.duration_s > 0 and .capture.duration_s < 60 and .capture.end > .capture.start' \
		"SIG$sig: capture.duration_s reflects the interrupted run"
	assert_edge "$G" svc:client svc:web tcp ".connections >= 1 and .port == $port"
	left=$(comm -12 <(echo "$mine" | sort -n) <(prog_ids) | tr '\n' ' ')
	[ -z "$left" ] || fail "SIG$sig: BPF programs still loaded after exit: $left"
	# The name check of the brief, when no other seams runs on this host.
	if command -v pgrep >/dev/null && ! pgrep -x seams >/dev/null; then
		n=$(bpftool prog list | grep -ci seams || true)
		[ "$n" = 0 ] || { bpftool prog list | grep -i seams >&2; fail "SIG$sig: $n seams BPF programs still loaded"; }
	fi
done

# --- --output - -----------------------------------------------------------------------
mkdir -p "$TEST_TMP/cwd2"
run_seams stdout env -C "$TEST_TMP/cwd2" "$SEAMS" capture --duration 1 --output -
[ "$RC" = 0 ] || { cat "$TEST_TMP/stdout.err" >&2; fail "--output -: exit status $RC"; }
assert_valid_graph "$TEST_TMP/stdout.out"
[ -z "$(ls -A "$TEST_TMP/cwd2")" ] || fail "--output - created files: $(ls -A "$TEST_TMP/cwd2")"

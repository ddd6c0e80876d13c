#!/usr/bin/env bash
# seams agent's command line: a mistake costs one line on stderr and exit
# status 2, before anything is attached; a listen address already in use
# costs one line naming it and exit status 1.  None of them may leave an
# agent running.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_seams; require_cmd ss

SNAP=$TEST_TMP/snap
mkdir -p "$SNAP"

# run_agent EXPECTED_STATUS ARGS...: run the agent (30 s at most); its
# stderr must be exactly one line starting "seams: "; sets LINE.
run_agent() {
	local want=$1 rc=0; shift
	timeout -k 5 30 "$SEAMS" agent "$@" > "$TEST_TMP/out" 2> "$TEST_TMP/err" < /dev/null || rc=$?
	LINE=$(cat "$TEST_TMP/err")
	[ "$rc" != 124 ] && [ "$rc" != 137 ] || fail "'seams agent $*' was still running after 30 s"
	[ "$rc" = "$want" ] || { cat "$TEST_TMP/err" >&2; fail "'seams agent $*' exited $rc, expected $want"; }
	[ "$(wc -l < "$TEST_TMP/err")" = 1 ] ||
		{ cat "$TEST_TMP/err" >&2; fail "'seams agent $*' printed $(wc -l < "$TEST_TMP/err") lines on stderr, expected one"; }
	[[ $LINE == "seams: "* ]] || fail "'seams agent $*' said '$LINE', which does not start with 'seams: '"
	[ ! -s "$TEST_TMP/out" ] || fail "'seams agent $*' printed on stdout: $(head -c 200 "$TEST_TMP/out")"
}

# bad OPTION [VALUE]: a usage error (2) whose line names the option or the
# value; the agent's other options are valid.
bad() {
	run_agent 2 --snapshot-dir "$SNAP" "$@"
	[[ $LINE == *"$1"* || ( -n ${2:-} && $LINE == *"$2"* ) ]] ||
		fail "the error for 'seams agent $*' names neither $1 nor ${2:-its value}: $LINE"
	log "seams agent $*: $LINE"
}

bad --listen nonsense
bad --listen 127.0.0.1
bad --listen 127.0.0.1:
bad --listen 127.0.0.1:99999
bad --listen 127.0.0.1:http-alt-not-a-port
bad --window 0
bad --window -5
bad --window abc
bad --snapshot-every 0
bad --snapshot-every 1x
bad --evict-after -1
bad --pg-port 0
bad --pg-port 70000
bad --no-such-option
bad --window
bad stray-argument

# The snapshot directory is checked before attaching, by name.
run_agent 2 --snapshot-dir /nonexistent/x
[[ $LINE == *"/nonexistent/x"* ]] || fail "the error for --snapshot-dir /nonexistent/x does not name it: $LINE"
# A file is no directory either.
: > "$TEST_TMP/file"
run_agent 2 --snapshot-dir "$TEST_TMP/file"
[[ $LINE == *"$TEST_TMP/file"* ]] || fail "the error for --snapshot-dir FILE does not name it: $LINE"

# --help: the usage on stdout, status 0, and the command table lists it.
"$SEAMS" agent --help > "$TEST_TMP/help" 2>&1 || fail "seams agent --help exited non-zero"
for o in --listen --snapshot-dir --snapshot-every --window --evict-after --cgroup --pg-port; do
	grep -q -- "$o" "$TEST_TMP/help" || fail "seams agent --help does not mention $o"
done
"$SEAMS" --help > "$TEST_TMP/cmds" 2>&1 || fail "seams --help exited non-zero"
grep -qw agent "$TEST_TMP/cmds" || fail "seams --help does not list the agent"

# --- a port already taken -------------------------------------------------------
port=$(free_port)
"$PY" -c '
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
time.sleep(600)' "$port" &
LIB_PIDS+=("$!")
wait_port "$port"
run_agent 1 --listen "127.0.0.1:$port" --snapshot-dir "$SNAP"
[[ $LINE == *"$port"* ]] || fail "the error for a taken port does not name it: $LINE"
log "port taken: $LINE"
# Nothing of the failed agent is left listening or running.
pgrep -f "seams agent --listen 127.0.0.1:$port" >/dev/null && fail "an agent is still running"
exit 0

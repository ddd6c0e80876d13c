# shellcheck shell=bash
# tests/lib.sh: helpers for seams end-to-end tests, benchmarks and the demo.
#
#   source "$(dirname "$0")/../lib.sh"
#
# Sourcing it: finds the cgroup2 mount, makes a temp dir ($TEST_TMP) and
# registers `cleanup` on EXIT/INT/TERM.  Everything a test starts through
# these helpers (cgroups and their processes, postgres, seams capture and
# agent, prometheus, temp files) is removed by cleanup, also when the test fails halfway.
#
# Set before sourcing:
#   SEAMS_CG_PARENT  name of the parent cgroup under the cgroup2 mount
#                    (default seams-test-$$; the demo uses seams-demo)
#   SEAMS_KEEP_TMP=1 keep $TEST_TMP for inspection
#
# Exit status conventions: 0 pass, 77 skip, anything else fail.

SEAMS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SEAMS=${SEAMS:-$SEAMS_ROOT/build/seams}
# Debian's python: the one that can import python3-psycopg2.  Running it by
# this path makes the process name "python3".
PY=/usr/bin/python3
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)}
export PATH="$PATH:/usr/sbin:/sbin"

LIB_CG_DIRS=()      # cgroups we created, in creation order
LIB_PIDS=()         # background pids started outside cgroups
LIB_CLEANED=0
SEAMS_PID=
SEAMS_ERR=
SEAMS_AGENT_PID=
SEAMS_AGENT_ERR=
SEAMS_AGENT_URL=
PROM_PID=
PROM_URL=
PG_RUNNING=0

# --- messages ---------------------------------------------------------------

log()  { [ "${SEAMS_TEST_VERBOSE:-0}" = 1 ] && echo "# $*" >&2; return 0; }
info() { echo "$*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

require_root() { [ "$(id -u)" = 0 ] || skip "needs root"; }
require_seams() {
	[ -x "$SEAMS" ] || fail "$SEAMS not built (run make all)"
}
require_cmd() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "needs $c (make deps)"
	done
}

# --- waiting ----------------------------------------------------------------

# wait_for TIMEOUT_S CMD...: run CMD every 50 ms until it succeeds.
wait_for() {
	local timeout=$1; shift
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# pid_gone PID: the process has exited (for wait_for).
pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# --- cgroups ----------------------------------------------------------------

# The cgroup2 mount point, from /proc/self/mountinfo (field 5 is the mount
# point; the fs type follows the " - " separator).
cg2_mount() {
	awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") { print $5; exit } break } }' \
		/proc/self/mountinfo | sed 's/\\040/ /g'
}

CG2=$(cg2_mount)
SEAMS_CG_PARENT=${SEAMS_CG_PARENT:-seams-test-$$}
CG_PARENT=${CG2:+$CG2/$SEAMS_CG_PARENT}
# The path seams reports for a cgroup (relative to the cgroup2 mount).
CG_REL=/$SEAMS_CG_PARENT

require_cgroup2() { [ -n "$CG2" ] || skip "no cgroup2 mount in /proc/self/mountinfo"; }

cg_path() { echo "$CG_PARENT/$1"; }          # absolute path of child NAME
cg_rel()  { echo "$CG_REL/$1"; }             # as seams reports it

cg_new() {
	local name=$1 dir
	require_cgroup2
	if [ ! -d "$CG_PARENT" ]; then
		mkdir "$CG_PARENT" || fail "cannot create cgroup $CG_PARENT"
		LIB_CG_DIRS+=("$CG_PARENT")
	fi
	dir=$CG_PARENT/$name
	if [ ! -d "$dir" ]; then
		mkdir -p "$dir" || fail "cannot create cgroup $dir"
		LIB_CG_DIRS+=("$dir")
	fi
}

# cg_exec NAME CMD...: run CMD in cgroup NAME in the background.  The
# wrapper shell moves itself into the cgroup, then execs CMD, so CMD and all
# its children are in the cgroup from their first instruction.  Sets
# CG_LAST_PID.  Redirect the call to capture CMD's output.
cg_exec() {
	local name=$1; shift
	cg_new "$name"
	sh -c 'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"' seams-cg "$(cg_path "$name")" "$@" &
	CG_LAST_PID=$!
	# cleanup kills it with the cgroup; disowned, bash does not announce that.
	disown "$CG_LAST_PID"
}

# cg_run NAME CMD...: like cg_exec but in the foreground; returns CMD's status.
cg_run() {
	local name=$1; shift
	cg_new "$name"
	sh -c 'echo $$ > "$1/cgroup.procs" || exit 126; shift; exec "$@"' seams-cg "$(cg_path "$name")" "$@"
}

cg_procs() { cat "$1/cgroup.procs" 2>/dev/null; }

cg_populated() {
	local d=$1
	if [ -f "$d/cgroup.events" ]; then
		grep -q '^populated 1' "$d/cgroup.events"
	else
		[ -n "$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)" ]
	fi
}

# Kill every process in cgroup dir $1 and its descendants, wait until empty,
# then remove the directories deepest first.
cg_destroy_tree() {
	local top=$1 d pid i
	[ -d "$top" ] || return 0
	for i in $(seq 1 100); do
		cg_populated "$top" || break
		if [ -w "$top/cgroup.kill" ]; then
			echo 1 > "$top/cgroup.kill" 2>/dev/null
		else
			while read -r d; do
				for pid in $(cg_procs "$d"); do kill -KILL "$pid" 2>/dev/null; done
			done < <(find "$top" -type d)
		fi
		sleep 0.05
	done
	cg_populated "$top" && echo "warning: cgroup $top still has processes" >&2
	find "$top" -depth -type d -exec rmdir {} \; 2>/dev/null
	[ -d "$top" ] && echo "warning: could not remove cgroup $top" >&2
	return 0
}

# Remove seams-test-PID cgroups left behind by tests that were SIGKILLed.
cg_reap_stale() {
	local d pid
	[ -n "$CG2" ] || return 0
	for d in "$CG2"/seams-test-*; do
		[ -d "$d" ] || continue
		pid=${d##*/seams-test-}
		case $pid in ''|*[!0-9]*) continue ;; esac
		[ -d "/proc/$pid" ] && continue
		cg_destroy_tree "$d"
	done
}

# --- ports ------------------------------------------------------------------

free_port() {
	"$PY" - <<'EOF'
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 0))
print(s.getsockname()[1])
EOF
}

port_listening() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# wait_port PORT [TIMEOUT_S]: wait until something listens on TCP PORT
# (checked with ss, without connecting, so it adds no edge to a capture).
wait_port() {
	wait_for "${2:-15}" port_listening "$1" || fail "nothing listens on port $1 after ${2:-15} s"
}

# --- PostgreSQL -------------------------------------------------------------

PG_PASSWORD=seams-e2e-Secret-pw-4711
PG_DIR=

# lo_ipv6: does the loopback have ::1?  PostgreSQL listens there too then.
lo_ipv6() { ip -6 addr show dev lo 2>/dev/null | grep -q '::1/128'; }

# pg_start [--password] [--ssl] [--cgroup NAME] [--db NAME]
# initdb into $TEST_TMP/pg as user postgres, start postgres on a free port
# listening on 127.0.0.1 (and ::1 when present), socket dir in the temp dir.
# --password: TCP clients must use the password method with $PG_PASSWORD.
# --ssl: ssl = on with a self-signed certificate made here.
# --cgroup NAME: the postmaster runs in test cgroup NAME (service NAME).
# Exports PGPORT, PGHOST_SOCK, PGDATA, PGUSER, PG_PASSWORD, PG_DB.
pg_start() {
	local password=0 cgname='' db=postgres listen=127.0.0.1 pwfile ssl=()
	while [ $# -gt 0 ]; do
		case $1 in
			--password) password=1 ;;
			--ssl) ssl=(-c ssl=on) ;;
			--cgroup) cgname=$2; shift ;;
			--db) db=$2; shift ;;
			*) fail "pg_start: unknown option $1" ;;
		esac
		shift
	done
	[ -x "$PG_BIN/initdb" ] || skip "postgresql server binaries not found (make deps)"
	id postgres >/dev/null 2>&1 || skip "no postgres user (make deps)"
	PG_DIR=$TEST_TMP/pg
	mkdir -p "$PG_DIR/sock"
	chown -R postgres: "$PG_DIR"
	pwfile=$PG_DIR/pw
	printf '%s\n' "$PG_PASSWORD" > "$pwfile"
	chown postgres: "$pwfile"; chmod 600 "$pwfile"
	local auth=(--auth-local=trust --auth-host=trust)
	[ "$password" = 1 ] && auth=(--auth-local=trust --auth-host=password --pwfile="$pwfile")
	runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -N -E UTF8 \
		--locale=C "${auth[@]}" > "$PG_DIR/initdb.log" 2>&1 ||
		{ cat "$PG_DIR/initdb.log" >&2; fail "initdb failed"; }
	if [ ${#ssl[@]} -gt 0 ]; then
		# A throwaway self-signed certificate; clients use sslmode=require
		# (no verification).
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
			-keyout "$PG_DIR/server.key" -out "$PG_DIR/server.crt" > "$PG_DIR/openssl.log" 2>&1 ||
			{ cat "$PG_DIR/openssl.log" >&2; fail "openssl could not make a certificate"; }
		chown postgres: "$PG_DIR/server.key" "$PG_DIR/server.crt"
		chmod 600 "$PG_DIR/server.key"
		ssl+=(-c ssl_cert_file="$PG_DIR/server.crt" -c ssl_key_file="$PG_DIR/server.key")
	fi
	lo_ipv6 && listen=127.0.0.1,::1
	PGPORT=$(free_port)
	PGHOST_SOCK=$PG_DIR/sock
	PGDATA=$PG_DIR/data
	PGUSER=postgres
	PG_DB=$db
	export PGPORT PGHOST_SOCK PGDATA PGUSER PG_PASSWORD PG_DB
	# setsid: a Ctrl-C in the terminal must not shut the postmaster down
	# before cleanup does.
	local cmd=(setsid setpriv --reuid=postgres --regid=postgres --init-groups
		env -u PGPORT -u PGDATA HOME="$PG_DIR"
		"$PG_BIN/postgres" -D "$PGDATA" -p "$PGPORT" -k "$PGHOST_SOCK"
		-c listen_addresses="$listen" -c fsync=off -c synchronous_commit=off
		-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB
		-c logging_collector=off -c log_min_messages=warning "${ssl[@]}")
	if [ -n "$cgname" ]; then
		cg_exec "$cgname" "${cmd[@]}" > "$PG_DIR/postgres.log" 2>&1
		PG_PID=$CG_LAST_PID
	else
		"${cmd[@]}" > "$PG_DIR/postgres.log" 2>&1 &
		PG_PID=$!
		disown "$PG_PID"
	fi
	PG_RUNNING=1
	if ! wait_for 30 "$PG_BIN/pg_isready" -q -h "$PGHOST_SOCK" -p "$PGPORT"; then
		cat "$PG_DIR/postgres.log" >&2
		fail "postgres did not become ready"
	fi
	if [ "$db" != postgres ]; then
		pg_psql -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null || fail "createdb $db failed"
	fi
	wait_port "$PGPORT"
}

# pg_psql ARGS...: psql as postgres over the Unix socket (trust), database
# $PG_DB unless -d is given.
pg_psql() {
	runuser -u postgres -- "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$PGHOST_SOCK" -p "$PGPORT" -d "$PG_DB" "$@"
}

# pgbench_init SCALE: PostgreSQL in cgroup `db` with pgbench's tables at
# SCALE, and cgroup `bench` for the load.
pgbench_init() {
	cg_new db
	cg_new bench
	pg_start --cgroup db
	runuser -u postgres -- "$PG_BIN/pgbench" -i -q -s "$1" -h 127.0.0.1 -p "$PGPORT" postgres \
		> "$TEST_TMP/pgbench-init.log" 2>&1 ||
		{ cat "$TEST_TMP/pgbench-init.log" >&2; fail "pgbench -i failed"; }
}

# pgbench_bg RATE OUT [ARGS...]: pgbench's TPC-B, 4 clients over TCP from
# the bench cgroup, at RATE transactions a second (0: unlimited) until
# pgbench_stop; its output in OUT, its errors and progress in OUT.err.
pgbench_bg() {
	local rate=() out=$2
	[ "$1" = 0 ] || rate=(-R "$1")
	shift 2
	cg_exec bench runuser -u postgres -- "$PG_BIN/pgbench" -c 4 -j 2 "${rate[@]}" -T 86400 "$@" \
		-h 127.0.0.1 -p "$PGPORT" postgres > "$out" 2> "$out.err"
}

# cg_wait_empty NAME: wait up to 30 s for cgroup NAME to have no process.
cg_empty() { ! cg_populated "$1"; }
cg_wait_empty() { wait_for 30 cg_empty "$(cg_path "$1")"; }

pgbench_stop() {
	# TERM: a background job ignores INT.
	kill -TERM $(cg_procs "$(cg_path bench)") 2>/dev/null || true
	cg_wait_empty bench || fail "pgbench did not exit"
}

pg_stop() {
	[ "$PG_RUNNING" = 1 ] || return 0
	PG_RUNNING=0
	# pg_ctl -w returns once the postmaster is gone; a postmaster in a test
	# cgroup is killed with the cgroup anyway.
	runuser -u postgres -- timeout 15 "$PG_BIN/pg_ctl" -D "$PGDATA" stop -m fast -w -t 10 \
		>/dev/null 2>&1 || kill -KILL "$PG_PID" 2>/dev/null
	return 0
}

# cc_libpq SRC OUT: compile a libpq client for a test.
cc_libpq() {
	gcc -O1 -Wall -Werror -o "$2" "$1" -I/usr/include/postgresql -lpq 2> "$TEST_TMP/gcc.log" ||
		{ cat "$TEST_TMP/gcc.log" >&2; fail "cannot compile the libpq client $1"; }
}

# --- seams capture ----------------------------------------------------------

# seams_prog_ids PID: the ids of the BPF programs process PID holds open, as
# a JSON array.  Its fds come and go while it runs (it reads /proc, and
# attaches TLS probes): one that closes during the read is not an error.
seams_prog_ids() {
	{ grep -h '^prog_id:' "/proc/$1"/fdinfo/* 2>/dev/null || true; } | awk '{ print $2 }' | jq -sc .
}

# capture_released PID LOG OUT WAIT_S TIMEOUT_S ARGS...: a client (PID, its
# output in LOG) that connects, makes $TEST_TMP/ready, then waits for
# $TEST_TMP/go is captured from while already connected: once it is ready
# and idle, start `seams capture --output OUT ARGS...`, release the client
# WAIT_S later, wait up to TIMEOUT_S for it to exit having printed "done",
# and stop the capture.
capture_released() {
	local pid=$1 log=$2 out=$3 wait_s=$4 timeout_s=$5
	shift 5
	wait_for 20 test -e "$TEST_TMP/ready" || { cat "$log" >&2; fail "client did not get ready"; }
	# Idle, established, nothing in flight when the capture starts.
	sleep 0.3
	seams_capture_bg "$out" "$@"
	sleep "$wait_s"
	touch "$TEST_TMP/go"
	wait_for "$timeout_s" pid_gone "$pid" || fail "client did not finish"
	grep -qx "done" "$log" || { cat "$log" >&2; fail "client failed"; }
	seams_capture_stop || fail "capture did not exit cleanly"
}

# seams_capture_bg OUT ARGS...: start `seams capture --output OUT ARGS...` in
# the background and wait (up to 30 s) until it reports "attached" on stderr.
# SIGINT and SIGTERM get their default disposition (as in a terminal), not
# the "ignored" that bash gives background jobs.
seams_capture_bg() {
	local out=$1; shift
	SEAMS_ERR=$TEST_TMP/capture.$RANDOM.err
	env --default-signal=INT,TERM "$SEAMS" capture --output "$out" "$@" 2> "$SEAMS_ERR" &
	SEAMS_PID=$!
	local deadline=$((SECONDS + 30))
	until grep -q attached "$SEAMS_ERR" 2>/dev/null; do
		if ! kill -0 "$SEAMS_PID" 2>/dev/null; then
			local rc=0
			wait "$SEAMS_PID" || rc=$?  # not a bare wait: set -e would exit silently
			SEAMS_PID=
			cat "$SEAMS_ERR" >&2
			fail "seams capture exited ($rc) before attaching"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			cat "$SEAMS_ERR" >&2
			fail "seams capture did not report 'attached' within 30 s"
		fi
		sleep 0.05
	done
}

# seams_capture_stop [SIGNAL]: signal the capture (default INT), wait up to
# 30 s for it to exit; returns its exit status (shows stderr when non-zero).
seams_capture_stop() {
	local sig=${1:-INT} pid=$SEAMS_PID rc
	[ -n "$pid" ] || return 0
	kill -"$sig" "$pid" 2>/dev/null
	seams_capture_wait 30
}

# reap NAME PID ERR TIMEOUT_S [WHEN]: wait up to TIMEOUT_S for PID (a child
# of this shell) to exit, then SIGKILL it; returns its exit status, and
# shows ERR (its stderr) when that is not 0.  WHEN ends the line said on a
# kill ("did not exit WHEN").
reap() {
	local name=$1 pid=$2 err=$3 rc=0
	local deadline=$((SECONDS + $4))
	while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
	if kill -0 "$pid" 2>/dev/null; then
		echo "$name did not exit${5:+ $5}; killing it" >&2
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" || rc=$?
	if [ "$rc" != 0 ]; then
		echo "$name exited with status $rc; its stderr:" >&2
		cat "$err" >&2
	fi
	return "$rc"
}

# seams_capture_wait [TIMEOUT_S]: wait for the running capture to exit.
seams_capture_wait() {
	local rc=0
	[ -n "$SEAMS_PID" ] || return 0
	reap "seams capture" "$SEAMS_PID" "$SEAMS_ERR" "${1:-30}" || rc=$?
	SEAMS_PID=
	return "$rc"
}

# seams_capture_fg OUT ARGS...: run a capture for --duration given in ARGS.
seams_capture_fg() {
	local out=$1; shift
	SEAMS_ERR=$TEST_TMP/capture.$RANDOM.err
	"$SEAMS" capture --output "$out" "$@" 2> "$SEAMS_ERR" ||
		{ cat "$SEAMS_ERR" >&2; fail "seams capture failed"; }
}

# --- seams agent ------------------------------------------------------------

# seams_agent_bg ARGS...: start `seams agent ARGS...` in the background and
# wait (up to 30 s) until it reports "attached" on stderr and answers
# /healthz.  Without --listen in ARGS it gets --listen 127.0.0.1:FREE_PORT,
# so tests never collide with an agent on the default port.  Sets
# SEAMS_AGENT_PID, SEAMS_AGENT_ERR (its stderr) and SEAMS_AGENT_URL
# (http://HOST:PORT, a wildcard address replaced by loopback).  SIGINT and
# SIGTERM get their default disposition, as for seams_capture_bg.
seams_agent_bg() {
	local listen='' a prev='' args=("$@")
	for a in "$@"; do
		case $a in --listen=*) listen=${a#--listen=} ;; esac
		[ "$prev" = --listen ] && listen=$a
		prev=$a
	done
	if [ -z "$listen" ]; then
		listen=127.0.0.1:$(free_port)
		args=(--listen "$listen" "${args[@]}")
	fi
	case $listen in
		0.0.0.0:*) SEAMS_AGENT_URL=http://127.0.0.1:${listen##*:} ;;
		'[::]':*) SEAMS_AGENT_URL="http://[::1]:${listen##*:}" ;;
		*) SEAMS_AGENT_URL=http://$listen ;;
	esac
	SEAMS_AGENT_ERR=$TEST_TMP/agent.$RANDOM.err
	env --default-signal=INT,TERM "$SEAMS" agent "${args[@]}" 2> "$SEAMS_AGENT_ERR" &
	SEAMS_AGENT_PID=$!
	local deadline=$((SECONDS + 30))
	until grep -q attached "$SEAMS_AGENT_ERR" 2>/dev/null &&
		curl -sf -o /dev/null --max-time 2 "$SEAMS_AGENT_URL/healthz"; do
		if ! kill -0 "$SEAMS_AGENT_PID" 2>/dev/null; then
			local rc=0
			wait "$SEAMS_AGENT_PID" || rc=$?  # not a bare wait: set -e would exit silently
			SEAMS_AGENT_PID=
			cat "$SEAMS_AGENT_ERR" >&2
			fail "seams agent exited ($rc) before attaching and serving $SEAMS_AGENT_URL"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			cat "$SEAMS_AGENT_ERR" >&2
			grep -q attached "$SEAMS_AGENT_ERR" &&
				fail "seams agent attached but $SEAMS_AGENT_URL/healthz did not answer within 30 s"
			fail "seams agent did not report 'attached' within 30 s"
		fi
		sleep 0.05
	done
	log "seams agent $SEAMS_AGENT_PID serving $SEAMS_AGENT_URL"
}

# seams_agent_stop [SIGNAL]: signal the agent (default TERM), wait up to
# 30 s for it to exit (then SIGKILL); returns its exit status and shows its
# stderr when that is not 0.
seams_agent_stop() {
	local sig=${1:-TERM} rc=0
	[ -n "$SEAMS_AGENT_PID" ] || return 0
	kill -"$sig" "$SEAMS_AGENT_PID" 2>/dev/null
	reap "seams agent" "$SEAMS_AGENT_PID" "$SEAMS_AGENT_ERR" 30 "within 30 s of SIG$sig" || rc=$?
	SEAMS_AGENT_PID=
	return "$rc"
}

# proc_status_field PID FIELD: a field of /proc/PID/status (e.g. CapEff).
proc_status_field() {
	awk -v f="$2:" '$1 == f { print $2; exit }' "/proc/$1/status"
}

# --- Prometheus -------------------------------------------------------------

# prom_start TARGET_HOST:PORT: Debian's prometheus on a free loopback port,
# scraping TARGET's /metrics every second, its data in $TEST_TMP; waits
# until /-/ready answers.  Sets PROM_URL and PROM_PID.
prom_start() {
	local target=$1 port dir
	require_cmd prometheus
	port=$(free_port)
	dir=$TEST_TMP/prom.$port
	mkdir -p "$dir/data"
	printf '%s\n' \
		'global:' \
		'  scrape_interval: 1s' \
		'  scrape_timeout: 1s' \
		'  evaluation_interval: 1s' \
		'scrape_configs:' \
		'  - job_name: seams' \
		'    static_configs:' \
		"      - targets: ['$target']" > "$dir/prometheus.yml"
	prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
		--web.listen-address="127.0.0.1:$port" --log.level=warn > "$dir/prometheus.log" 2>&1 &
	PROM_PID=$!
	PROM_URL=http://127.0.0.1:$port
	local deadline=$((SECONDS + 30))
	until curl -sf -o /dev/null --max-time 2 "$PROM_URL/-/ready"; do
		if ! kill -0 "$PROM_PID" 2>/dev/null; then
			wait "$PROM_PID" 2>/dev/null || true
			PROM_PID=
			cat "$dir/prometheus.log" >&2
			fail "prometheus exited before it was ready"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			cat "$dir/prometheus.log" >&2
			fail "prometheus was not ready within 30 s"
		fi
		sleep 0.1
	done
	log "prometheus $PROM_PID at $PROM_URL scraping $target"
}

# prom_query EXPR: the HTTP API's JSON answer to an instant query.
prom_query() {
	curl -sfG --max-time 10 --data-urlencode "query=$1" "$PROM_URL/api/v1/query"
}

# prom_value EXPR: the value of the query's first series, or nothing.
prom_value() {
	prom_query "$1" | jq -r '.data.result[0].value[1] // empty'
}

# wait_prom_series EXPR [TIMEOUT_S]: wait (default 30 s) until EXPR returns
# at least one series.  On timeout shows the last answer and the scrape
# target's health, and returns 1.
wait_prom_series() {
	local expr=$1 timeout=${2:-30} out
	local deadline=$((SECONDS + timeout))
	while :; do
		out=$(prom_query "$expr" 2>/dev/null) || out=
		jq -e '.status == "success" and (.data.result | length) > 0' <<<"$out" >/dev/null 2>&1 && return 0
		[ "$SECONDS" -lt "$deadline" ] || break
		sleep 0.5
	done
	echo "no series for $expr after $timeout s; last answer: ${out:-(none)}" >&2
	echo "scrape targets: $(curl -sf --max-time 5 "$PROM_URL/api/v1/targets" |
		jq -c '[.data.activeTargets[] | {scrapeUrl, health, lastError}]' 2>/dev/null)" >&2
	return 1
}

prom_stop() {
	local i
	[ -n "$PROM_PID" ] || return 0
	# Tests run with set -e: neither a dead process nor its status may end them.
	kill -TERM "$PROM_PID" 2>/dev/null || true
	for i in $(seq 1 100); do kill -0 "$PROM_PID" 2>/dev/null || break; sleep 0.05; done
	kill -KILL "$PROM_PID" 2>/dev/null || true
	wait "$PROM_PID" 2>/dev/null || true
	PROM_PID=
	return 0
}

# --- graph assertions (jq) --------------------------------------------------

show_graph() {
	local g=$1
	echo "--- graph $g:" >&2
	if jq -e . "$g" >/dev/null 2>&1; then
		jq -c '.capture // .captures' "$g" >&2
		echo "nodes:" >&2
		jq -c '.nodes[]' "$g" 2>/dev/null | head -n 60 >&2
		echo "edges:" >&2
		jq -c '.edges[]' "$g" 2>/dev/null | head -n 80 >&2
	else
		echo "(not valid JSON)" >&2
		head -c 2000 "$g" >&2 2>/dev/null
	fi
	echo "---" >&2
}

# assert_valid_graph GRAPH: parses, schema seams.graph/v1, nodes/edges arrays.
assert_valid_graph() {
	local g=$1
	[ -s "$g" ] || fail "graph $g missing or empty"
	jq -e . "$g" >/dev/null 2>&1 || { show_graph "$g"; fail "graph $g is not valid JSON"; }
	assert_jq "$g" '.schema == "seams.graph/v1" and (.nodes|type) == "array" and (.edges|type) == "array"' \
		"graph has schema seams.graph/v1 with nodes and edges arrays"
	assert_jq "$g" '[.nodes[].id] | length == (unique | length)' "node ids are unique"
	assert_jq "$g" '[.nodes[].id] as $ids | all(.edges[]; ([.source, .target] - $ids) == [])' \
		"every edge's source and target is a node"
	assert_jq "$g" '[.edges[] | [.source, .target, .kind]] | length == (unique | length)' \
		"at most one edge per (source, target, kind)"
}

# assert_no_external_listener GRAPH: no external node is an address a
# captured service listens on (such a peer must be joined to the service).
assert_no_external_listener() {
	assert_jq "$1" '[.nodes[] | select(.kind == "service") | .listens[]?] as $l
		| [.nodes[] | select(.kind == "external")
		   | (if (.address | contains(":")) then "[\(.address)]:\(.port)" else "\(.address):\(.port)" end)
		   | select(. as $a | $l | index([$a]) != null)] == []' \
		"no external node for an address a captured service listens on"
}

# assert_jq GRAPH FILTER MESSAGE [jq args...]: FILTER must yield true.
assert_jq() {
	local g=$1 filter=$2 msg=$3; shift 3
	if ! jq -e "$@" "$filter" "$g" >/dev/null 2>&1; then
		echo "expected: $msg" >&2
		echo "  jq filter: $filter" >&2
		show_graph "$g"
		fail "$msg"
	fi
}

# edge_json GRAPH SRC TGT KIND: print the edge (compact JSON) or nothing.
edge_json() {
	jq -c --arg s "$2" --arg t "$3" --arg k "$4" \
		'.edges[] | select(.source == $s and .target == $t and .kind == $k)' "$1"
}

node_json() {
	jq -c --arg id "$2" '.nodes[] | select(.id == $id)' "$1"
}

# assert_edge GRAPH SRC TGT KIND [JQ_CONDITION]: an edge SRC->TGT of KIND
# exists (and JQ_CONDITION, evaluated on the edge, is true).
assert_edge() {
	local g=$1 s=$2 t=$3 k=$4 cond=${5:-true} e
	e=$(edge_json "$g" "$s" "$t" "$k")
	if [ -z "$e" ]; then
		echo "expected: edge $s -> $t kind $k" >&2
		show_graph "$g"
		fail "edge $s -> $t ($k) missing"
	fi
	if ! jq -e "$cond" <<<"$e" >/dev/null 2>&1; then
		echo "expected: edge $s -> $t kind $k with: $cond" >&2
		echo "actual:   $e" >&2
		fail "edge $s -> $t ($k) does not satisfy: $cond"
	fi
}

assert_no_edge() {
	local g=$1 s=$2 t=$3 k=$4
	if [ -n "$(edge_json "$g" "$s" "$t" "$k")" ]; then
		echo "expected no edge $s -> $t kind $k" >&2
		show_graph "$g"
		fail "unexpected edge $s -> $t ($k)"
	fi
}

# assert_node GRAPH ID [JQ_CONDITION]
assert_node() {
	local g=$1 id=$2 cond=${3:-true} n
	n=$(node_json "$g" "$id")
	if [ -z "$n" ]; then
		echo "expected: node $id" >&2
		show_graph "$g"
		fail "node $id missing"
	fi
	if ! jq -e "$cond" <<<"$n" >/dev/null 2>&1; then
		echo "expected: node $id with: $cond" >&2
		echo "actual:   $n" >&2
		fail "node $id does not satisfy: $cond"
	fi
}

# --- cleanup ----------------------------------------------------------------

cleanup() {
	local rc=$? i pid
	[ "$LIB_CLEANED" = 1 ] && return "$rc"
	LIB_CLEANED=1
	set +e
	trap - INT TERM
	if [ -n "$SEAMS_PID" ]; then
		kill -INT "$SEAMS_PID" 2>/dev/null
		for i in $(seq 1 100); do kill -0 "$SEAMS_PID" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$SEAMS_PID" 2>/dev/null
		wait "$SEAMS_PID" 2>/dev/null
	fi
	if [ -n "$SEAMS_AGENT_PID" ]; then
		kill -TERM "$SEAMS_AGENT_PID" 2>/dev/null
		for i in $(seq 1 100); do kill -0 "$SEAMS_AGENT_PID" 2>/dev/null || break; sleep 0.05; done
		kill -KILL "$SEAMS_AGENT_PID" 2>/dev/null
		wait "$SEAMS_AGENT_PID" 2>/dev/null
	fi
	prom_stop
	pg_stop
	for pid in "${LIB_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
	# Our cgroups, deepest first (cg_destroy_tree handles nesting).
	for ((i = ${#LIB_CG_DIRS[@]} - 1; i >= 0; i--)); do
		cg_destroy_tree "${LIB_CG_DIRS[i]}"
	done
	for pid in "${LIB_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	if [ -n "${TEST_TMP:-}" ] && [ -d "$TEST_TMP" ]; then
		if [ "${SEAMS_KEEP_TMP:-0}" = 1 ]; then
			echo "kept $TEST_TMP" >&2
		else
			rm -rf "$TEST_TMP"
		fi
	fi
	return "$rc"
}

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TEST_TMP=$(mktemp -d /tmp/seams-test.XXXXXX)
chmod 755 "$TEST_TMP"
cg_reap_stale

#!/usr/bin/env bash
# PostgreSQL over TLS (ssl = on, a self-signed certificate), psql with
# sslmode=require over TCP from cgroup `tlsclient`, and the same statements
# in plain text (sslmode=disable) from `plainclient`.  The plaintext comes
# from the uprobes on libssl, attached file-wide (--tls-probe file): each
# psql lives a few milliseconds, less than a per-process probe may take to
# attach after its exec.  The TLS client's sql edges must equal the
# plain client's, say tls: true, and nothing is counted as encrypted,
# undecodable or lost (the ciphertext is left out on purpose).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq; require_cmd openssl

cg_new db
cg_new tlsclient
cg_new plainclient
pg_start --ssl --cgroup db
PSQL=$PG_BIN/psql
pg_psql -c "CREATE TABLE items (id int PRIMARY KEY, name text)" >/dev/null || fail "setup failed"

# run CGROUP SSLMODE ARGS...: one psql session over TCP.
run() {
	local cg=$1 mode=$2; shift 2
	cg_run "$cg" env PGSSLMODE="$mode" timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres "$@"
}
# The server must really encrypt: pg_stat_ssl says so for this session.
[ "$(run tlsclient require -tAc "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")" = t ] ||
	fail "psql with sslmode=require did not get TLS"

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT" --tls-probe file

for cg in tlsclient plainclient; do
	mode=require
	[ "$cg" = plainclient ] && mode=disable
	run "$cg" "$mode" -c "INSERT INTO items VALUES (1, 'a'), (2, 'b')" \
		-c "SELECT name FROM items WHERE id = 1" \
		-c "UPDATE items SET name = 'bb' WHERE id = 2" \
		-c "DELETE FROM items WHERE id = 2" > /dev/null || fail "$cg statements"
	run "$cg" "$mode" -c "SELECT count(*) FROM items; UPDATE items SET name = 'z' WHERE id = 1;" > /dev/null ||
		fail "$cg multi-statement"
	if run "$cg" "$mode" -c "INSERT INTO items VALUES (1, 'dup')" > /dev/null 2>&1; then
		fail "$cg: the duplicate insert succeeded"
	fi
	run "$cg" "$mode" -c "DELETE FROM items" > /dev/null || fail "$cg cleanup"
done

seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
T=table:svc:db/postgres
assert_edge "$G" svc:tlsclient "$T/public.items" sql '
	.operations == {"INSERT": 2, "SELECT": 2, "UPDATE": 2, "DELETE": 2}
	and .errors == {"23505": 1} and .tls == true and .encrypted_connections == null'
# Exactly what the plain client's edge says, but for tls and latencies.
strip='del(.source, .tls, .latency_ms, .first_seen, .last_seen)'
[ "$(edge_json "$G" svc:tlsclient "$T/public.items" sql | jq -S "$strip")" = \
  "$(edge_json "$G" svc:plainclient "$T/public.items" sql | jq -S "$strip")" ] || {
	edge_json "$G" svc:tlsclient "$T/public.items" sql >&2
	edge_json "$G" svc:plainclient "$T/public.items" sql >&2
	fail "the TLS client's edge differs from the plain client's"
}
assert_edge "$G" svc:plainclient "$T/public.items" sql '.tls == null'
assert_jq "$G" '.capture.pg_encrypted_connections == 0 and .capture.pg_tls_connections == 4
	and .capture.pg_lost_bytes == 0 and .capture.pg_undecodable_bytes == 0
	and .capture.pg_unknown_statements == 0 and .capture.pg_connections == 8' \
	"4 TLS connections decoded, none counted as encrypted, nothing lost"
assert_edge "$G" svc:tlsclient svc:db tcp ".port == $PGPORT"
assert_jq "$G" '.capture.tls_probed_files >= 1 and .capture.tls_probed_processes == 0' "file-wide probes"

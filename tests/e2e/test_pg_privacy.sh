#!/usr/bin/env bash
# Privacy: no password, literal, bind value, row data, COPY data, comment or
# error detail may leave the kernel into anything seams writes.
# PostgreSQL with cleartext `password` auth for TCP.  During the capture:
#   - a libpq client (cgroup `privapp`) logs in as `app` with a marker
#     password and binds marker parameters (unnamed and named statements)
#   - psql (cgroup `privpsql`) as `app`: literals (string, numeric, escape,
#     Unicode, dollar-quoted), rows holding a marker in DataRows, COPY FROM
#     STDIN / TO STDOUT with marker data, COMMENT ON ... IS, /* */ and --
#     comments, DEFAULT / VIEW / PREPARE / EXECUTE / SET / NOTIFY / DO with
#     literals (statements where normalizing is known to leave literals),
#     errors whose message and detail quote a marker
#   - psql as postgres with the test's own password
# Then no marker may appear in the graph, in seams' stdout or stderr, or in
# any file under the directory seams wrote into; the tables must be there.
# All of it twice against one server with ssl = on: in plain text
# (sslmode=disable), then over TLS (sslmode=require), where the plaintext
# comes from the uprobes on libssl and must obey the same rules.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq gcc grep
[ -f /usr/include/postgresql/libpq-fe.h ] || skip "needs libpq-dev (libpq-fe.h)"

APP_PW=pw-MARKER-7f3a
NUM=8675309
# Every marker contains MARKER, except the number and the postgres password.
markers_grep() { grep -r -n -F -e MARKER -e "$NUM" -e "$APP_PW" -e "$PG_PASSWORD" "$@"; }

cat > "$TEST_TMP/bind.c" <<'C'
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>

static void check(PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		fprintf(stderr, "bind: %s: %s\n", what, PQerrorMessage(c));
		exit(1);
	}
	PQclear(r);
}

int main(int argc, char **argv)
{
	PGconn *c = PQconnectdb(argv[1]);
	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "bind: connect: %s\n", PQerrorMessage(c));
		return 1;
	}
	const char *ins[2] = { "8675310", "bind-MARKER-55e1" };
	check(c, PQexecParams(c, "INSERT INTO priv (id, v) VALUES ($1, $2)", 2, NULL, ins, NULL, NULL, 0), "insert");
	check(c, PQprepare(c, "ins_named", "INSERT INTO priv (id, v) VALUES ($1, $2)", 2, NULL), "prepare");
	const char *ins2[2] = { "8675311", "bind-MARKER-55e1-named" };
	check(c, PQexecPrepared(c, "ins_named", 2, ins2, NULL, NULL, 0), "insert named");
	const char *sel[1] = { "bind-MARKER-55e1" };
	check(c, PQexecParams(c, "SELECT id, v FROM priv WHERE v = $1", 1, NULL, sel, NULL, NULL, 0), "select");
	/* A binary-format parameter too. */
	const char bin[] = "bind-MARKER-55e1-binary";
	const char *pv[1] = { bin };
	int len[1] = { sizeof(bin) - 1 }, fmt[1] = { 1 };
	check(c, PQexecParams(c, "UPDATE priv SET v = $1 WHERE id = 8675311", 1, NULL, pv, len, fmt, 0), "update");
	PQfinish(c);
	printf("done\n");
	return 0;
}
C
cc_libpq "$TEST_TMP/bind.c" "$TEST_TMP/bind"

cg_new db
cg_new privapp
cg_new privpsql
pg_start --password --ssl --cgroup db
grep -q 'password' "$PGDATA/pg_hba.conf" || fail "pg_hba.conf does not use password auth"
pg_psql -c "CREATE ROLE app LOGIN SUPERUSER PASSWORD '$APP_PW'" > /dev/null || fail "create role failed"
PSQL=$PG_BIN/psql

# round SSLMODE: one capture, every client with sslmode=SSLMODE.
round() {
export PGSSLMODE=$1
info "--- sslmode=$PGSSLMODE"
# Setup before the capture (Unix socket, trust).  Marker rows exist only in
# the table: during the capture they travel only in DataRows / CopyData.
pg_psql -c "DROP SCHEMA public CASCADE" -c "CREATE SCHEMA public" \
	-c "CREATE TABLE priv (id int PRIMARY KEY, v text)" \
	-c "CREATE TABLE priv_rows (id int, secret text)" \
	-c "INSERT INTO priv_rows SELECT g, 'row-MARKER-3b7d-' || g FROM generate_series(1, 50) g" \
	-c "CREATE TABLE priv_copy (id int, v text)" \
	-c "CREATE TABLE priv_uniq (v text PRIMARY KEY)" > /dev/null || fail "setup failed"

OUT=$TEST_TMP/out.$PGSSLMODE
mkdir "$OUT"
G=$OUT/graph.json
# File-wide TLS probes: the clients here live a few milliseconds each.
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT" --tls-probe file > "$OUT/seams.stdout"
# seams' stderr is in $SEAMS_ERR (in $TEST_TMP); checked below.

# 1. libpq: password login and bind values.
cg_run privapp timeout 30 "$TEST_TMP/bind" "host=127.0.0.1 port=$PGPORT user=app password=$APP_PW dbname=postgres sslmode=$PGSSLMODE" \
	> "$TEST_TMP/bind.log" 2>&1 || { cat "$TEST_TMP/bind.log" >&2; fail "libpq client failed"; }

# 2. psql as app over TCP, password from the environment.
app_psql() {
	cg_run privpsql env PGPASSWORD="$APP_PW" PGSSLMODE="$PGSSLMODE" timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 \
		-h 127.0.0.1 -p "$PGPORT" -U app -d postgres "$@"
}
app_psql -c "INSERT INTO priv (id, v) VALUES ($NUM, 'lit-MARKER-91c2')" \
	-c "SELECT id, v FROM priv WHERE v = 'lit-MARKER-91c2' OR id = $NUM" \
	-c "UPDATE priv SET v = 'lit-MARKER-91c2-u' WHERE id = $NUM" \
	-c "SELECT * FROM priv_rows" \
	-c "COMMENT ON TABLE priv IS 'comment-MARKER-c0m1'" \
	-c "SELECT /* comment-MARKER2-b10c */ count(*) FROM priv -- line-MARKER-11ne" \
	-c "CREATE TABLE priv_dflt (id int, v text DEFAULT 'dflt-MARKER-de1')" \
	-c "CREATE VIEW priv_view AS SELECT * FROM priv WHERE v <> 'view-MARKER-v13w'" \
	-c "PREPARE q (text) AS SELECT id FROM priv WHERE v = \$1 OR v = 'prep-MARKER-pr3p'" \
	-c "EXECUTE q ('exec-MARKER-ex3c')" \
	-c "SET application_name = 'set-MARKER-5e7'" \
	-c "LISTEN ch" -c "NOTIFY ch, 'notify-MARKER-n0t1'" \
	-c "DO \$\$BEGIN PERFORM 'do-MARKER-d0d0'; END\$\$" \
	-c "SELECT E'esc-MARKER-\\x41', U&'uni-MARKER-\\0041', \$t\$dollar-MARKER\$t\$, 8675309.5, 8675309e3" \
	-c "SELECT id FROM priv WHERE v IN ('in-MARKER-1', 'in-MARKER-2') LIMIT 8675309" \
	> /dev/null || fail "psql statements failed"
printf '1\tcopy-MARKER-d00d\n2\tcopy-MARKER-d00d-2\n' |
	app_psql -c "COPY priv_copy (id, v) FROM STDIN" > /dev/null || fail "COPY FROM STDIN failed"
app_psql -c "COPY priv_rows TO STDOUT" > "$TEST_TMP/copy_out.txt" || fail "COPY TO STDOUT failed"
grep -q row-MARKER-3b7d "$TEST_TMP/copy_out.txt" || fail "COPY TO STDOUT returned no marker rows"
# Errors whose message or detail quote a marker.
app_psql -c "INSERT INTO priv_uniq VALUES ('err-MARKER-e4e4')" > /dev/null || fail "insert into priv_uniq"
if app_psql -c "INSERT INTO priv_uniq VALUES ('err-MARKER-e4e4')" > "$TEST_TMP/err1.log" 2>&1; then
	fail "duplicate insert succeeded"
fi
grep -q 'err-MARKER-e4e4' "$TEST_TMP/err1.log" || { cat "$TEST_TMP/err1.log" >&2; fail "the error detail does not quote the marker"; }
if app_psql -c "SELECT 'errlit-MARKER-e5e5'::int" > "$TEST_TMP/err2.log" 2>&1; then
	fail "bad cast succeeded"
fi

# 3. psql as postgres with the test's password.
cg_run privpsql env PGPASSWORD="$PG_PASSWORD" PGSSLMODE="$PGSSLMODE" timeout 30 "$PSQL" -X -q -v ON_ERROR_STOP=1 \
	-h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -c "SELECT count(*) FROM priv" > /dev/null ||
	fail "psql as postgres failed"

seams_capture_stop || fail "capture did not exit cleanly"
cp "$SEAMS_ERR" "$OUT/seams.stderr.copy" 2>/dev/null || true

# --- nothing leaked ---------------------------------------------------------
assert_valid_graph "$G"
if markers_grep "$OUT" "$SEAMS_ERR" > "$TEST_TMP/leaks.txt"; then
	echo "markers found in what seams wrote:" >&2
	cut -c1-300 "$TEST_TMP/leaks.txt" >&2
	fail "seams stored or printed a password, literal, bind value, row data, COPY data or comment"
fi

# --- and the graph still has the tables -----------------------------------
T=table:svc:db/postgres/public
assert_edge "$G" svc:privapp "$T.priv" sql '
	.operations.INSERT == 2 and .operations.SELECT == 1 and .operations.UPDATE == 1
	and (.statements | any(.query == "INSERT INTO priv (id, v) VALUES ($1, $2)"))'
assert_edge "$G" svc:privpsql "$T.priv" sql '
	.operations.INSERT == 1 and .operations.UPDATE == 1 and .operations.SELECT >= 3
	and .access.write >= 2 and .access.read >= 3
	and (.statements | any(.query | test("^INSERT INTO priv \\(id, v\\) VALUES \\(\\$1, \\$2\\)$")))'
assert_edge "$G" svc:privpsql "$T.priv_rows" sql '.operations.SELECT == 1 and .access.read >= 2'
assert_edge "$G" svc:privpsql "$T.priv_copy" sql '.access.write == 1'
assert_edge "$G" svc:privpsql "$T.priv_uniq" sql '.operations.INSERT == 2 and .errors == {"23505": 1}'
assert_jq "$G" '.capture.pg_lost_bytes == 0 and .capture.pg_events_lost == 0' "nothing lost"
if [ "$PGSSLMODE" = require ]; then
	assert_jq "$G" '.capture.pg_tls_connections == .capture.pg_connections and .capture.pg_connections >= 8 and .capture.pg_encrypted_connections == 0
		and ([.edges[] | select(.kind == "sql") | .tls == true] | all)' \
		"over TLS: every connection decoded, every sql edge says tls: true"
else
	assert_jq "$G" '.capture.pg_tls_connections == 0' "sslmode=disable: no TLS"
fi
}

round disable
round require

#!/usr/bin/env bash
# The extended query protocol, from a small libpq program (compiled here) in
# cgroup `extclient` over TCP:
#   - NAMED prepared statements (PQprepare + PQexecPrepared): INSERT, SELECT,
#     UPDATE on ext_items; a failing execution (unique violation)
#   - the unnamed statement (PQexecParams), re-parsed every time
#   - pipeline mode: many unnamed Parse/Bind/Execute and named executions
#     before one Sync; an error in a pipeline (the rest up to Sync is
#     skipped by the server and must not be counted)
#   - a name reused after DEALLOCATE for a statement on another table
#   - a statement prepared on a connection opened BEFORE the capture and
#     executed during it: its text is unknown -> operations {"UNKNOWN": n}
#     on a database edge, and no table invented
# Counts must equal the executions.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq gcc
[ -f /usr/include/postgresql/libpq-fe.h ] || skip "needs libpq-dev (libpq-fe.h)"

N_INS=25 N_SEL=40 N_UPD=15 N_UNNAMED=12 K_PIPE=30 N_A=3 N_B=4 N_EARLY=6

cat > "$TEST_TMP/ext.c" <<'C'
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

static void die(PGconn *c, const char *what)
{
	fprintf(stderr, "ext: %s: %s\n", what, c ? PQerrorMessage(c) : "");
	exit(1);
}

static PGconn *connect_db(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);
	if (PQstatus(c) != CONNECTION_OK)
		die(c, "connect");
	return c;
}

static void cmd(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		die(c, sql);
	PQclear(r);
}

static void prepare(PGconn *c, const char *name, const char *sql, int nparams)
{
	PGresult *r = PQprepare(c, name, sql, nparams, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		die(c, name);
	PQclear(r);
}

/* Execute a named statement; expect_ok 0 means it must fail with SQLSTATE. */
static void exec_named(PGconn *c, const char *name, int n, const char *const *v, const char *sqlstate)
{
	PGresult *r = PQexecPrepared(c, name, n, v, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (sqlstate) {
		const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		if (st != PGRES_FATAL_ERROR || !s || strcmp(s, sqlstate) != 0)
			die(c, "expected an error");
	} else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		die(c, name);
	}
	PQclear(r);
}

static void exec_unnamed(PGconn *c, const char *sql, int n, const char *const *v)
{
	PGresult *r = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		die(c, sql);
	PQclear(r);
}

static int exists(const char *name)
{
	char p[4096];
	struct stat st;
	snprintf(p, sizeof(p), "%s/%s", tmp, name);
	return stat(p, &st) == 0;
}

static void touch(const char *name)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/%s", tmp, name);
	FILE *f = fopen(p, "w");
	if (!f || fclose(f) != 0)
		die(NULL, "touch");
}

/* Results of one pipeline up to and including its Sync: returns the number
 * of PGRES_FATAL_ERROR results and of PGRES_PIPELINE_ABORTED ones. */
static void drain_pipeline(PGconn *c, int *errors, int *aborted)
{
	*errors = *aborted = 0;
	for (;;) {
		PGresult *r = PQgetResult(c);
		if (!r)
			continue; /* end of one query's results */
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st == PGRES_PIPELINE_SYNC)
			return;
		if (st == PGRES_FATAL_ERROR)
			(*errors)++;
		else if (st == PGRES_PIPELINE_ABORTED)
			(*aborted)++;
		else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			die(c, "pipeline result");
	}
}

int main(int argc, char **argv)
{
	if (argc != 11) {
		fprintf(stderr, "usage: ext CONNINFO TMP N_INS N_SEL N_UPD N_UNNAMED K_PIPE N_A N_B N_EARLY\n");
		return 2;
	}
	const char *conninfo = argv[1];
	tmp = argv[2];
	int n_ins = atoi(argv[3]), n_sel = atoi(argv[4]), n_upd = atoi(argv[5]);
	int n_unnamed = atoi(argv[6]), k_pipe = atoi(argv[7]), n_a = atoi(argv[8]);
	int n_b = atoi(argv[9]), n_early = atoi(argv[10]);
	char a[32], b[32];
	const char *v[2] = { a, b };

	/* Before the capture: a connection with a prepared statement. */
	PGconn *early = connect_db(conninfo);
	prepare(early, "early_sel", "SELECT v FROM ext_hidden WHERE id = $1", 1);
	touch("ready");
	for (int i = 0; !exists("go"); i++) {
		if (i > 1200)
			die(NULL, "no go file after 60 s");
		usleep(50000);
	}

	/* During the capture. */
	PGconn *c = connect_db(conninfo);
	prepare(c, "ins_item", "INSERT INTO ext_items (id, name) VALUES ($1, $2)", 2);
	prepare(c, "sel_item", "SELECT name FROM ext_items WHERE id = $1", 1);
	prepare(c, "upd_item", "UPDATE ext_items SET name = $2 WHERE id = $1", 2);
	for (int i = 1; i <= n_ins; i++) {
		snprintf(a, sizeof(a), "%d", i);
		snprintf(b, sizeof(b), "n%d", i);
		exec_named(c, "ins_item", 2, v, NULL);
	}
	for (int i = 0; i < n_sel; i++) {
		snprintf(a, sizeof(a), "%d", 1 + i % n_ins);
		exec_named(c, "sel_item", 1, v, NULL);
	}
	for (int i = 0; i < n_upd; i++) {
		snprintf(a, sizeof(a), "%d", 1 + i % n_ins);
		snprintf(b, sizeof(b), "u%d", i);
		exec_named(c, "upd_item", 2, v, NULL);
	}
	/* A failing execution of a named statement: duplicate key. */
	snprintf(a, sizeof(a), "1");
	snprintf(b, sizeof(b), "dup");
	exec_named(c, "ins_item", 2, v, "23505");

	/* The unnamed statement, parsed anew each time. */
	for (int i = 0; i < n_unnamed; i++) {
		snprintf(a, sizeof(a), "%d", i);
		exec_unnamed(c, "DELETE FROM ext_log WHERE id = $1", 1, v);
	}

	/* Pipeline: k_pipe unnamed INSERTs interleaved with k_pipe named SELECTs
	 * (sel_item), one Sync. */
	if (!PQenterPipelineMode(c))
		die(c, "pipeline mode");
	for (int i = 0; i < k_pipe; i++) {
		snprintf(a, sizeof(a), "%d", i);
		if (!PQsendQueryParams(c, "INSERT INTO ext_pipe (id) VALUES ($1)", 1, NULL, v, NULL, NULL, 0))
			die(c, "send insert");
		snprintf(a, sizeof(a), "%d", 1 + i % n_ins);
		if (!PQsendQueryPrepared(c, "sel_item", 1, v, NULL, NULL, 0))
			die(c, "send sel_item");
	}
	if (!PQpipelineSync(c))
		die(c, "sync");
	int errs, aborted;
	drain_pipeline(c, &errs, &aborted);
	if (errs || aborted)
		die(c, "pipeline 1 had errors");
	/* Pipeline with an error: 100 ok, 100 duplicate (23505), 101 skipped. */
	const char *ids[3] = { "100", "100", "101" };
	for (int i = 0; i < 3; i++) {
		const char *p[1] = { ids[i] };
		if (!PQsendQueryParams(c, "INSERT INTO ext_pipe2 (id) VALUES ($1)", 1, NULL, p, NULL, NULL, 0))
			die(c, "send insert 2");
	}
	if (!PQpipelineSync(c))
		die(c, "sync 2");
	drain_pipeline(c, &errs, &aborted);
	if (errs != 1 || aborted != 1) {
		fprintf(stderr, "ext: pipeline 2: %d errors, %d aborted (expected 1, 1)\n", errs, aborted);
		return 1;
	}
	if (!PQexitPipelineMode(c))
		die(c, "exit pipeline mode");

	/* A statement name reused after DEALLOCATE, for another table. */
	prepare(c, "s_re", "INSERT INTO ext_a (id) VALUES ($1)", 1);
	for (int i = 0; i < n_a; i++) {
		snprintf(a, sizeof(a), "%d", i);
		exec_named(c, "s_re", 1, v, NULL);
	}
	cmd(c, "DEALLOCATE s_re");
	prepare(c, "s_re", "INSERT INTO ext_b (id) VALUES ($1)", 1);
	for (int i = 0; i < n_b; i++) {
		snprintf(a, sizeof(a), "%d", i);
		exec_named(c, "s_re", 1, v, NULL);
	}
	PQfinish(c);

	/* The statement prepared before the capture. */
	for (int i = 0; i < n_early; i++) {
		snprintf(a, sizeof(a), "%d", i);
		exec_named(early, "early_sel", 1, v, NULL);
	}
	PQfinish(early);
	printf("done\n");
	return 0;
}
C
cc_libpq "$TEST_TMP/ext.c" "$TEST_TMP/ext"

cg_new db
cg_new extclient
pg_start --cgroup db
pg_psql -c "CREATE TABLE ext_items (id int PRIMARY KEY, name text)" \
	-c "CREATE TABLE ext_log (id int)" -c "CREATE TABLE ext_pipe (id int)" \
	-c "CREATE TABLE ext_pipe2 (id int PRIMARY KEY)" \
	-c "CREATE TABLE ext_a (id int)" -c "CREATE TABLE ext_b (id int)" \
	-c "CREATE TABLE ext_hidden (id int, v text)" > /dev/null || fail "setup failed"

cg_exec extclient timeout 90 "$TEST_TMP/ext" "host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres" \
	"$TEST_TMP" "$N_INS" "$N_SEL" "$N_UPD" "$N_UNNAMED" "$K_PIPE" "$N_A" "$N_B" "$N_EARLY" \
	> "$TEST_TMP/ext.log" 2>&1
G=$TEST_TMP/graph.json
capture_released "$CG_LAST_PID" "$TEST_TMP/ext.log" "$G" 0 60 --cgroup "$CG_PARENT" --pg-port "$PGPORT"

assert_valid_graph "$G"
DB=db:svc:db/postgres
T=table:svc:db/postgres/public
assert_node "$G" "$DB" '.server == "svc:db" and .database == "postgres"'
assert_edge "$G" svc:extclient "$T.ext_items" sql "
	.operations == {\"INSERT\": $((N_INS + 1)), \"SELECT\": $((N_SEL + K_PIPE)), \"UPDATE\": $N_UPD}
	and .access.write == $((N_INS + 1 + N_UPD)) and .access.read == $((N_SEL + K_PIPE))
	and .errors == {\"23505\": 1}
	and .latency_ms.count == $((N_INS + 1 + N_SEL + K_PIPE + N_UPD))"
assert_edge "$G" svc:extclient "$T.ext_items" sql '
	(.statements | any(.query == "INSERT INTO ext_items (id, name) VALUES ($1, $2)"))
	and (.statements | any(.query == "SELECT name FROM ext_items WHERE id = $1"))
	and (.statements | any(.query == "UPDATE ext_items SET name = $2 WHERE id = $1"))'
assert_edge "$G" svc:extclient "$T.ext_log" sql "
	.operations == {\"DELETE\": $N_UNNAMED} and .access == {\"write\": $N_UNNAMED}"
assert_edge "$G" svc:extclient "$T.ext_pipe" sql "
	.operations == {\"INSERT\": $K_PIPE} and .access == {\"write\": $K_PIPE} and .errors == null"
# 100 ok, 100 failed (23505), 101 skipped by the server: two executions.
assert_edge "$G" svc:extclient "$T.ext_pipe2" sql '
	.operations == {"INSERT": 2} and .errors == {"23505": 1}'
assert_edge "$G" svc:extclient "$T.ext_a" sql ".operations == {\"INSERT\": $N_A}"
assert_edge "$G" svc:extclient "$T.ext_b" sql ".operations == {\"INSERT\": $N_B}"
# The statement prepared before the capture: unknown, on a database edge,
# never attributed to a table.
assert_jq "$G" "[.edges[] | select(.kind == \"sql\" and .source == \"svc:extclient\") | .operations.UNKNOWN // 0] | add == $N_EARLY" \
	"$N_EARLY UNKNOWN operations (early_sel, prepared before the capture)"
assert_jq "$G" '[.edges[] | select(.kind == "sql" and .source == "svc:extclient" and (.operations.UNKNOWN // 0) > 0) | .target as $t
	| ($t | startswith("db:svc:db/"))] | all' \
	"UNKNOWN operations are on an edge to a database node of svc:db"
assert_jq "$G" '[.nodes[] | select(.kind == "table" and (.table == "ext_hidden"))] | length == 0' \
	"no table node for ext_hidden (early_sel's text was never seen)"
assert_jq "$G" "[.nodes[] | select(.kind == \"table\" and .schema == \"public\") | .table] | sort
	== [\"ext_a\", \"ext_b\", \"ext_items\", \"ext_log\", \"ext_pipe\", \"ext_pipe2\"]" \
	"exactly the six tables the client used"
assert_jq "$G" ".capture.pg_unknown_statements == $N_EARLY and .capture.pg_lost_bytes == 0 and .capture.pg_events_lost == 0" \
	"pg_unknown_statements == $N_EARLY, nothing lost"
assert_edge "$G" svc:extclient svc:db tcp ".port == $PGPORT"

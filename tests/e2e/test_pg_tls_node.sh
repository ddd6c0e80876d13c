#!/usr/bin/env bash
# node-postgres (pg from npm) over TLS, ssl: { rejectUnauthorized: false },
# from cgroup `nodeclient`, started during the capture.  NodeSource's node
# links OpenSSL statically and exports its SSL_* functions: they are probed
# in the node executable itself.  node's memory BIO does its socket I/O
# outside the SSL calls.  Simple queries, parameterized ones (extended protocol) and a
# named prepared statement; the edges must say tls: true with exact counts.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
require_root; require_cgroup2; require_seams; require_cmd jq; require_cmd openssl; require_cmd node
NODE_MODULES=$SEAMS_ROOT/${BUILD:-build}/node/node_modules
[ -f "$NODE_MODULES/pg/package.json" ] || skip "needs node-postgres (pg from npm): make node-pg"
# NodeSource's node links OpenSSL in and exports it; Debian's uses the shared
# libssl: either way node's memory BIO does its socket I/O outside SSL calls.
nm -D "$(readlink -f "$(command -v node)")" 2>/dev/null > "$TEST_TMP/node.syms" || true
grep -qw SSL_write "$TEST_TMP/node.syms" && info "node exports SSL_write: probed in the executable"

cg_new db
cg_new nodeclient
pg_start --ssl --cgroup db
pg_psql -c "CREATE TABLE node_items (id int PRIMARY KEY, v text)" > /dev/null || fail "setup failed"

cat > "$TEST_TMP/client.js" <<'JS'
const { Client } = require('pg');
(async () => {
	const c = new Client({ host: '127.0.0.1', port: +process.argv[2], user: 'postgres',
		database: 'postgres', ssl: { rejectUnauthorized: false } });
	await c.connect();
	const r = await c.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
	if (r.rows[0].ssl !== true) throw new Error('not TLS');
	for (let i = 0; i < 6; i++)
		await c.query('INSERT INTO node_items (id, v) VALUES ($1, $2)', [i, 'x' + i]);
	for (let i = 0; i < 9; i++)
		await c.query({ name: 'getv', text: 'SELECT v FROM node_items WHERE id = $1', values: [i % 6] });
	await c.query("UPDATE node_items SET v = 'y' WHERE id < 3");
	await c.end();
	console.log('done');
})().catch(e => { console.error(e); process.exit(1); });
JS

G=$TEST_TMP/graph.json
seams_capture_bg "$G" --cgroup "$CG_PARENT" --pg-port "$PGPORT"
cg_run nodeclient env NODE_PATH="$NODE_MODULES" timeout 60 node "$TEST_TMP/client.js" "$PGPORT" \
	> "$TEST_TMP/node.log" 2>&1 || { cat "$TEST_TMP/node.log" >&2; fail "node client failed"; }
grep -qx done "$TEST_TMP/node.log" || { cat "$TEST_TMP/node.log" >&2; fail "node client did not finish"; }
seams_capture_stop || fail "capture did not exit cleanly"

assert_valid_graph "$G"
T=table:svc:db/postgres/public.node_items
assert_edge "$G" svc:nodeclient "$T" sql '
	.operations == {"INSERT": 6, "SELECT": 9, "UPDATE": 1} and .access == {"read": 9, "write": 7}
	and .tls == true and .errors == null and .latency_ms.count == 16
	and (.statements | any(.query == "SELECT v FROM node_items WHERE id = $1"))'
assert_jq "$G" '.capture.pg_encrypted_connections == 0 and .capture.pg_tls_connections == 1
	and .capture.pg_connections == 1 and .capture.pg_lost_bytes == 0 and .capture.pg_unknown_statements == 0' \
	"the node connection decoded from its start, nothing lost or left encrypted"
assert_jq "$G" '.capture.tls_probed_processes >= 1' "node was probed"

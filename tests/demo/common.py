"""Shared plumbing of the demo services: a threaded JSON-over-HTTP server,
an HTTP client for calling the other services, and a small PostgreSQL pool.

Only the standard library and psycopg2 (Debian's python3-psycopg2; run with
/usr/bin/python3).  Configuration comes from the environment that
tests/demo/run.sh sets: PORT_<SERVICE>, PGPORT, PGHOST_SOCK, PG_DB.
"""
import json
import os
import signal
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICES = ("gateway", "orders", "inventory", "pricing", "billing")
PORTS = {s: int(os.environ["PORT_" + s.upper()]) for s in SERVICES
         if "PORT_" + s.upper() in os.environ}


def call(service, path, **params):
    """GET http://127.0.0.1:PORT/path?params on another service: a new TCP
    connection per call (urllib sends Connection: close)."""
    url = "http://127.0.0.1:%d%s" % (PORTS[service], path)
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


class DB:
    """A tiny connection pool.  Connections are closed after MAX_AGE seconds
    so that a capture of a few seconds sees connections start (the startup
    message carries the database name), as short-lived pools do."""
    MAX_AGE = 1.0

    def __init__(self, unix_socket=False):
        import psycopg2
        self._connect = psycopg2.connect
        self.kw = dict(dbname=os.environ["PG_DB"], user="postgres",
                       port=int(os.environ["PGPORT"]),
                       host=os.environ["PGHOST_SOCK"] if unix_socket else "127.0.0.1",
                       application_name=os.path.basename(sys.argv[0]))
        self.idle = []
        self.lock = threading.Lock()

    def _get(self):
        now = time.monotonic()
        with self.lock:
            while self.idle:
                conn, born = self.idle.pop()
                if now - born < self.MAX_AGE:
                    return conn, born
                conn.close()
        conn = self._connect(**self.kw)
        conn.autocommit = True
        return conn, now

    def query(self, sql, args=()):
        conn, born = self._get()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                rows = cur.fetchall() if cur.description else cur.rowcount
        except Exception:
            conn.close()
            raise
        with self.lock:
            self.idle.append((conn, born))
        return rows

    def one(self, sql, args=()):
        rows = self.query(sql, args)
        return rows[0][0] if rows else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def serve(name, routes):
    """Serve ROUTES ({path: fn(params) -> dict}) on 127.0.0.1:PORT_<NAME>."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            fn = routes.get(url.path)
            if fn is None:
                return self._reply(404, {"error": "no route " + url.path})
            params = dict(urllib.parse.parse_qsl(url.query))
            try:
                self._reply(200, fn(params))
            except Exception as e:  # report, keep serving
                sys.stderr.write("%s %s: %s\n" % (name, self.path, e))
                if os.environ.get("DEMO_DEBUG"):
                    traceback.print_exc()
                self._reply(500, {"error": str(e)})

        def _reply(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    routes.setdefault("/health", lambda p: {"service": name, "ok": True})
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    server = _Server(("127.0.0.1", PORTS[name]), Handler)
    server.serve_forever()

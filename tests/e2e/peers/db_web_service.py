"""A small web service that queries its databases, untouched by tracing, for
tests/e2e/test_db_spans.py (run by Debian's python3: python3-psycopg2, python3-redis).

    python3 db_web_service.py PORT PG_PORT [REDIS_PORT]

GET /order/<id>: one thread per request (ThreadingHTTPServer) reads the order's total from
PostgreSQL (table e2e_web_orders, one long-lived psycopg2 connection shared under a lock) and,
with REDIS_PORT, counts the view in Redis (INCR views:<id>, one long-lived connection), then
answers {"total": ..., "views": ...}. Prints {"listening": PORT} once serving.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

PORT = int(sys.argv[1])
PG_PORT = int(sys.argv[2])
REDIS_PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 0

pg = psycopg2.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname="postgres", sslmode="disable")
pg.autocommit = True
pg_lock = threading.Lock()
with pg.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS e2e_web_orders (id int PRIMARY KEY, total numeric)")
    cur.execute("INSERT INTO e2e_web_orders VALUES (1, 12.5), (2, 7) ON CONFLICT DO NOTHING")

cache = None
if REDIS_PORT:
    import redis
    cache = redis.Redis(host="127.0.0.1", port=REDIS_PORT, single_connection_client=True)
    cache.ping()
cache_lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        order_id = int(self.path.rsplit("/", 1)[-1])
        with pg_lock, pg.cursor() as cur:
            cur.execute("SELECT total FROM e2e_web_orders WHERE id = %s", (order_id,))
            row = cur.fetchone()
        views = None
        if cache is not None:
            with cache_lock:
                views = cache.incr(f"views:{order_id}")
        body = json.dumps({"total": str(row[0]) if row else None, "views": views}).encode()
        self.send_response(200 if row else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(json.dumps({"listening": PORT}), flush=True)
server.serve_forever()

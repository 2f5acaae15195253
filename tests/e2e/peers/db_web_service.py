"""A small web service that queries its databases, untouched by tracing, for
tests/e2e/test_db_spans.py (run by Debian's python3: python3-psycopg2, python3-redis,
python3-pymysql).

    python3 db_web_service.py PORT PG_PORT [REDIS_PORT [MYSQL_PORT]]

GET /order/<id>: one thread per request (ThreadingHTTPServer) reads the order's total from
PostgreSQL (table e2e_web_orders, one long-lived psycopg2 connection shared under a lock); with
MYSQL_PORT, its customer from MariaDB (database e2e_web, table customers, one long-lived PyMySQL
connection, user root without a password); with REDIS_PORT, counts the view in Redis
(INCR views:<id>, one long-lived connection); then answers {"total": ..., "customer": ...,
"views": ...}. Each driver puts the order id into its statement as a literal (psycopg2 and
PyMySQL interpolate parameters in the client). Prints {"listening": PORT} once serving.
"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

PORT = int(sys.argv[1])
PG_PORT = int(sys.argv[2])
REDIS_PORT = int(sys.argv[3]) if len(sys.argv) > 3 else 0
MYSQL_PORT = int(sys.argv[4]) if len(sys.argv) > 4 else 0

pg = psycopg2.connect(host="127.0.0.1", port=PG_PORT, user="postgres", dbname="postgres", sslmode="disable")
pg.autocommit = True
pg_lock = threading.Lock()
with pg.cursor() as cur:
    cur.execute("CREATE TABLE IF NOT EXISTS e2e_web_orders (id int PRIMARY KEY, total numeric)")
    cur.execute("INSERT INTO e2e_web_orders VALUES (1, 12.5), (2, 7) ON CONFLICT DO NOTHING")

mysql = None
if MYSQL_PORT:
    import pymysql
    mysql = pymysql.connect(host="127.0.0.1", port=MYSQL_PORT, user="root", autocommit=True)
    with mysql.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS e2e_web")
        mysql.select_db("e2e_web")
        cur.execute("CREATE TABLE IF NOT EXISTS customers (order_id int PRIMARY KEY, name varchar(40))")
        cur.execute("INSERT IGNORE INTO customers VALUES (1, 'Ada'), (2, 'Grace')")
mysql_lock = threading.Lock()

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
        customer = None
        if mysql is not None:
            with mysql_lock, mysql.cursor() as cur:
                cur.execute("SELECT name FROM customers WHERE order_id = %s", (order_id,))
                found = cur.fetchone()
                customer = found[0] if found else None
        views = None
        if cache is not None:
            with cache_lock:
                views = cache.incr(f"views:{order_id}")
        body = json.dumps({"total": str(row[0]) if row else None, "customer": customer, "views": views}).encode()
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

"""Database spans (issue 17) as a user sees them: the built agent (--output=json) against real
servers from Debian started here (PostgreSQL 15, plain and with TLS; MariaDB 10.11; Redis 7) and
real clients (psql, pgbench, Python psycopg2, Node pg, the mariadb CLI, Node mysql2, redis-cli,
Python redis), plus a small web service whose request becomes one trace with its database calls
under it.

The agent's start is the slow part, so one agent serves the whole file, filtered to the ports of
the servers started here; every test asserts on spans of its own (its own tables, statements and
client processes).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import unittest
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from db_servers import MariaDb, Postgres, Redis, require_debian_python
from e2e_util import (LOOPBACK, SPAN_KIND_CLIENT, Agent, PeerProcess, SpanRecord, deadline_loop, free_port,
                      give_up, go_peer, main, npm_peer, require_root, require_tool, wait_for_spans)

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")


class Environment:
    """The servers, the web service and the one agent every test of this file shares, made by
    the first test that needs them and stopped when the module ends. A server that cannot start
    (not installed) leaves a reason its tests give up with."""

    def __init__(self, test: unittest.TestCase):
        self.missing: dict[str, str] = {}
        cleanup = unittest.addModuleCleanup
        self.pg = self._start("postgres", test, lambda: Postgres(test, cleanup=cleanup))
        self.pg_tls = self._start("postgres_tls", test, lambda: Postgres(test, tls=True, cleanup=cleanup))
        self.redis = self._start("redis", test, lambda: Redis(test, cleanup=cleanup))
        self.mariadb = self._start("mariadb", test, lambda: MariaDb(test, cleanup=cleanup))
        ports = [s.port for s in (self.pg, self.pg_tls, self.redis, self.mariadb) if s is not None]
        if self.redis is not None:
            ports.append(self.redis.tls_port)
        self.web_port = free_port()
        self.go_port = free_port()  # tests/e2e/peers/go_db_service.go, started by its test
        self.node_port = free_port()  # tests/e2e/peers/node-pg/web_service.js, the same
        ports += [self.web_port, self.go_port, self.node_port]
        argv = ["--output=json", "--inject", "off", "--stats-interval", "0", "--metrics-address", "127.0.0.1:0",
                "--ui-address", "off"]
        for p in ports:
            argv += ["--port", str(p)]
        self.agent = Agent(argv)
        cleanup(self.agent.kill)
        self.metrics_url = None
        for line in self.agent.stderr_lines:
            m = re.search(r"metrics endpoint: (http://127\.0\.0\.1:\d+/metrics)", line)
            if m:
                self.metrics_url = m.group(1)
        self.web = None
        if self.pg is not None and self.redis is not None and self.mariadb is not None:
            try:
                python = require_debian_python(test, "psycopg2", "redis", "pymysql")
                self.web = PeerProcess([python, os.path.join(PEERS, "db_web_service.py"), str(self.web_port),
                                        str(self.pg.port), str(self.redis.port), str(self.mariadb.port)],
                                       port=self.web_port)
                cleanup(self.web.stop)
            except unittest.SkipTest as e:
                self.missing["web"] = str(e)

    def _start(self, name: str, test: unittest.TestCase, make):
        try:
            return make()
        except unittest.SkipTest as e:
            self.missing[name] = str(e)
            return None

    def require(self, test: unittest.TestCase, *names: str) -> None:
        for n in names:
            if n in self.missing:
                give_up(test, self.missing[n])


_ENV: Environment | None = None


def spans_of_pid(spans: list[SpanRecord], pid: int) -> list[SpanRecord]:
    return [s for s in spans if s.pid == pid]


def parent_verdicts(servers: dict[int, SpanRecord], *children: dict[int, SpanRecord]) -> dict[str, int]:
    """For database spans keyed by the id of the request that made them: right when the parent is
    that request's SERVER span, wrong when another request's, broken when none of them."""
    verdicts = {"right": 0, "wrong": 0, "broken": 0}
    for by_id in children:
        for i, child in by_id.items():
            if child.parent_span_id == servers[i].span_id and child.trace_id == servers[i].trace_id:
                verdicts["right"] += 1
            elif any(child.parent_span_id == s.span_id for s in servers.values()):
                verdicts["wrong"] += 1
            else:
                verdicts["broken"] += 1
    return verdicts


def spans_by_request(spans: list[SpanRecord], pid: int, path: str, *texts: str) -> list[dict[int, SpanRecord]]:
    """The process's SERVER spans of `path`<id>, then for each regular expression of `texts` (one
    group: the id) its CLIENT spans whose db.query.text matches, each keyed by id."""
    out: list[dict[int, SpanRecord]] = [{} for _ in range(1 + len(texts))]
    for x in spans:
        if x.pid != pid:
            continue
        if x.is_server and (x.attrs.get("url.path") or "").startswith(path):
            out[0][int(x.attrs["url.path"].rsplit("/", 1)[-1])] = x
        for k, pattern in enumerate(texts):
            m = re.fullmatch(pattern, x.attrs.get("db.query.text") or "")
            if m and x.kind == SPAN_KIND_CLIENT:
                out[1 + k][int(m.group(1))] = x
    return out


def db_spans(spans: list[SpanRecord], port: int) -> list[SpanRecord]:
    return [s for s in spans if s.attrs.get("server.port") == port and s.is_client]


class DatabaseSpans(unittest.TestCase):
    def setUp(self):
        require_root(self)
        global _ENV
        if _ENV is None:
            _ENV = Environment(self)
        self.env = _ENV

    # -- helpers ----------------------------------------------------------------------------
    def run_client(self, argv: list[str], stdin: str | None = None, timeout: float = 60) -> subprocess.Popen:
        """Runs a client to its end, keeping it unreaped until cleanup (its /proc entry names
        its spans' service) and returns it; fails the test on a non-zero exit."""
        p = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        out, err = p.communicate(stdin, timeout=timeout)
        p.out, p.err = out, err
        if p.returncode != 0:
            self.fail(f"{' '.join(argv)} failed (rc {p.returncode}):\n{out}\n{err}")
        return p

    def wait_db_spans(self, pid: int, count: int, port: int | None = None) -> list[SpanRecord]:
        port = port or self.env.pg.port
        spans = wait_for_spans(self.env.agent, lambda ss: len(db_spans(spans_of_pid(ss, pid), port)) >= count)
        return db_spans(spans_of_pid(spans, pid), port)

    def assert_redis_span(self, s: SpanRecord) -> None:
        self.assertEqual(s.kind, SPAN_KIND_CLIENT, s.brief())
        self.assertEqual(s.attrs.get("db.system.name"), "redis", s.brief())
        self.assertEqual(s.attrs.get("server.port"), self.env.redis.port, s.brief())
        self.assertFalse(any(k.startswith(("http.", "url.")) for k in s.attrs), s.brief())

    def assert_postgres_span(self, s: SpanRecord, port: int) -> None:
        self.assertEqual(s.kind, SPAN_KIND_CLIENT, s.brief())
        self.assertEqual(s.attrs.get("db.system.name"), "postgresql", s.brief())
        self.assertEqual(s.attrs.get("db.namespace"), "postgres", s.brief())
        self.assertEqual(s.attrs.get("server.address"), "127.0.0.1", s.brief())
        self.assertEqual(s.attrs.get("server.port"), port, s.brief())
        self.assertFalse(any(k.startswith(("http.", "url.")) for k in s.attrs), s.brief())
        self.assertGreater(s.end_ns, s.start_ns, s.brief())

    # -- PostgreSQL ---------------------------------------------------------------------------
    def test_psql_simple_queries_errors_copy(self):
        self.env.require(self, "postgres")
        pg = self.env.pg
        p = self.run_client(["psql", pg.dsn(), "-X", "-q",
                             "-c", "CREATE TABLE e2e_psql (id int PRIMARY KEY, name text, total numeric)",
                             "-c", "INSERT INTO e2e_psql VALUES (1, 'alice', 12.5)",
                             "-c", "SELECT name, total FROM e2e_psql WHERE id = 1 AND name = 'alice'",
                             "-c", "SELECT * FROM e2e_missing_table",
                             "-c", "\\copy e2e_psql FROM STDIN",
                             "-c", "BEGIN; UPDATE e2e_psql SET total = total * 2 WHERE id = 1; COMMIT;",
                             # 20000 rows of 100 bytes: far more than the 4 KiB captured per read.
                             "-c", "SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g",
                             "-c", "SELECT count(*) FROM e2e_psql"],
                            stdin="2\tbob\t3\n")
        spans = self.wait_db_spans(p.pid, 8)
        by_name = {s.name: s for s in spans}
        for s in spans:
            self.assert_postgres_span(s, pg.port)
        select = next((s for s in spans if s.attrs.get("db.query.text", "").startswith("SELECT name, total")), None)
        self.assertIsNotNone(select, [s.brief() for s in spans])
        self.assertEqual(select.name, "SELECT e2e_psql")
        self.assertEqual(select.attrs.get("db.operation.name"), "SELECT")
        self.assertEqual(select.attrs.get("db.collection.name"), "e2e_psql")
        # Sanitised: no literal of the statement leaves the node.
        self.assertEqual(select.attrs.get("db.query.text"),
                         "SELECT name, total FROM e2e_psql WHERE id = ? AND name = ?")
        self.assertEqual(select.status_code, 0)
        insert = by_name["INSERT e2e_psql"]
        self.assertNotIn("alice", json.dumps(insert.raw))
        self.assertEqual(insert.attrs.get("db.query.text"), "INSERT INTO e2e_psql VALUES (?)")
        error = by_name["SELECT e2e_missing_table"]
        self.assertTrue(error.is_error)
        self.assertEqual(error.attrs.get("db.response.status_code"), "42P01")
        self.assertEqual(error.attrs.get("error.type"), "42P01")
        copy = by_name["COPY e2e_psql"]
        self.assertEqual(copy.attrs.get("db.query.text"), "COPY e2e_psql FROM STDIN")
        tx = by_name["BEGIN UPDATE e2e_psql COMMIT"]
        self.assertNotIn("db.operation.name", tx.attrs)  # three statements: no single operation
        self.assertEqual(by_name["CREATE TABLE e2e_psql"].attrs.get("db.operation.name"), "CREATE TABLE")
        # The large result was skipped by length (gaps and all), and the query after it paired.
        big = next(s for s in spans if s.attrs.get("db.query.text") == "SELECT g, repeat(?, ?) FROM generate_series(?, ?) g")
        self.assertFalse(big.is_error, big.brief())
        after = next(s for s in spans if s.attrs.get("db.query.text") == "SELECT count(*) FROM e2e_psql")
        self.assertFalse(after.is_error, after.brief())
        self.assertLess(big.end_ns, after.start_ns)
        # Each statement is a root of its own (psql runs outside any traced request).
        for s in spans:
            self.assertEqual(s.parent_span_id, "", s.brief())

    def test_psycopg2_transaction_and_cancel(self):
        self.env.require(self, "postgres")
        python = require_debian_python(self, "psycopg2")
        pg = self.env.pg
        script = r"""
import json, os, sys, threading, psycopg2
c = psycopg2.connect(sys.argv[1])
cur = c.cursor()
cur.execute("CREATE TABLE IF NOT EXISTS e2e_tx (id int PRIMARY KEY, owner text)")
cur.execute("INSERT INTO e2e_tx VALUES (%s, %s)", (7, "secret-owner"))
c.commit()
threading.Timer(0.5, c.cancel).start()
try:
    cur.execute("SELECT pg_sleep(10)")
except psycopg2.extensions.QueryCanceledError:
    pass
c.rollback()
print(json.dumps({"pid": os.getpid()}))
"""
        p = self.run_client([python, "-c", script, pg.dsn()])
        spans = self.wait_db_spans(p.pid, 8)
        names = [s.name for s in sorted(spans, key=lambda s: s.start_ns)]
        self.assertEqual(names[:4], ["BEGIN", "CREATE TABLE e2e_tx", "INSERT e2e_tx", "COMMIT"], names)
        insert = next(s for s in spans if s.name == "INSERT e2e_tx")
        self.assertEqual(insert.attrs.get("db.query.text"), "INSERT INTO e2e_tx VALUES (?)")
        self.assertNotIn("secret-owner", json.dumps(insert.raw))
        sleep = next(s for s in spans if s.attrs.get("db.query.text") == "SELECT pg_sleep(?)")
        self.assertTrue(sleep.is_error, sleep.brief())
        self.assertEqual(sleep.attrs.get("db.response.status_code"), "57014")  # query_canceled
        cancel = next(s for s in spans if s.name == "CANCEL")
        self.assertFalse(cancel.is_error)
        # The cancel request arrived while the query ran.
        self.assertLess(sleep.start_ns, cancel.start_ns)
        self.assertLess(cancel.start_ns, sleep.end_ns)
        self.assertIn("ROLLBACK", names)

    def test_pgbench_prepared_and_pipelined_extended_queries(self):
        self.env.require(self, "postgres")
        require_tool(self, "pgbench")
        pg = self.env.pg
        pg.psql("CREATE TABLE IF NOT EXISTS e2e_bench (id int PRIMARY KEY, total numeric)",
                "INSERT INTO e2e_bench VALUES (1, 10) ON CONFLICT DO NOTHING")
        script = os.path.join(pg.dir, "pipeline.sql")
        with open(script, "w") as f:
            f.write("\\startpipeline\nSELECT total FROM e2e_bench WHERE id = 1;\n"
                    "UPDATE e2e_bench SET total = total + 1 WHERE id = 1;\n"
                    "SELECT count(*) FROM e2e_bench;\n\\endpipeline\n")
        p = self.run_client(["pgbench", "-n", "-h", pg.host, "-p", str(pg.port), "-U", "postgres",
                             "-M", "prepared", "-t", "2", "-f", script, "postgres"])
        # Each of the three statements: one prepare, then executed twice by name, pipelined.
        spans = self.wait_db_spans(p.pid, 9)
        names = sorted(s.name for s in spans)
        self.assertEqual(names.count("SELECT e2e_bench"), 4, names)
        self.assertEqual(names.count("UPDATE e2e_bench"), 2, names)
        self.assertEqual(sum(1 for n in names if n.startswith("PREPARE ")), 3, names)
        update = next(s for s in spans if s.name == "UPDATE e2e_bench")
        self.assertEqual(update.attrs.get("db.query.text"), "UPDATE e2e_bench SET total = total + ? WHERE id = ?;")
        for s in spans:
            self.assert_postgres_span(s, pg.port)
            self.assertFalse(s.is_error, s.brief())

    def test_node_pg_named_statements(self):
        self.env.require(self, "postgres")
        pg = self.env.pg
        peer = npm_peer("node-pg", self)
        p = self.run_client(["node", os.path.join(peer, "client.js"), str(pg.port), "e2e_node"])
        result = json.loads(p.out.strip().splitlines()[-1])
        self.assertEqual(result["error"], "42703")
        spans = self.wait_db_spans(result["pid"], 5)
        selects = [s for s in spans if s.attrs.get("db.query.text") == "SELECT total FROM e2e_node WHERE id = $1"]
        # Parsed once, executed twice: the second execution knows its text from the first Parse.
        self.assertEqual(len(selects), 2, [s.brief() for s in spans])
        for s in selects:
            self.assertEqual(s.name, "SELECT e2e_node")
            self.assertFalse(s.is_error)
        insert = next(s for s in spans if s.name == "INSERT e2e_node")
        self.assertEqual(insert.attrs.get("db.query.text"), "INSERT INTO e2e_node VALUES ($1, $2), ($3, $4) ON CONFLICT DO NOTHING")
        error = next(s for s in spans if s.is_error)
        self.assertEqual(error.attrs.get("db.response.status_code"), "42703")

    def test_tls_postgres_gives_the_same_spans(self):
        self.env.require(self, "postgres_tls")
        pg = self.env.pg_tls
        p = self.run_client(["psql", pg.dsn(sslmode="require"), "-X", "-q",
                             "-c", "SHOW ssl", "-c", "SELECT 42 AS answer"])
        self.assertIn(" on", p.out)  # the connection really was TLS
        spans = self.wait_db_spans(p.pid, 2, port=pg.port)
        names = [s.name for s in spans]
        self.assertIn("SHOW", names)
        select = next(s for s in spans if s.name == "SELECT")
        self.assertEqual(select.attrs.get("db.query.text"), "SELECT ? AS answer")
        self.assert_postgres_span(select, pg.port)

    def test_tls_mariadb_and_redis_give_the_same_spans(self):
        """The plaintext the TLS capture takes at libssl: MariaDB's starts inside the handshake
        (the greeting and SSLRequest were clear text), Redis's at the first command."""
        self.env.require(self, "mariadb", "redis")
        m, r = self.env.mariadb, self.env.redis
        subprocess.run(m.cli("-e", "CREATE DATABASE IF NOT EXISTS e2e_tls"), check=True, capture_output=True, timeout=60)
        p = self.run_client(m.cli("--database=e2e_tls", "-e", "SHOW STATUS LIKE 'Ssl_cipher'; SELECT 42 AS answer",
                                  tls=True))
        self.assertIn("TLS", p.out)  # the connection really was TLS
        spans = self.wait_db_spans(p.pid, 2, port=m.port)
        select = next((s for s in spans if s.attrs.get("db.query.text") == "SELECT ? AS answer"), None)
        self.assertIsNotNone(select, [s.brief() for s in spans])
        self.assert_mariadb_span(select)  # MariaDB: the clear-text greeting said so
        self.assertEqual(select.attrs.get("db.namespace"), "e2e_tls")  # the HandshakeResponse inside TLS
        self.assertFalse(select.is_error)
        pids = [self.run_client(r.cli(*args, tls=True)).pid
                for args in (["SET", "e2e:tls", "secret-tls"], ["GET", "e2e:tls"])]
        set_, get = [self.wait_db_spans(pid, 1, port=r.tls_port)[0] for pid in pids]
        for s in (set_, get):
            self.assertEqual(s.attrs.get("db.system.name"), "redis", s.brief())
            self.assertFalse(s.is_error, s.brief())
        self.assertEqual(set_.attrs.get("db.query.text"), "SET e2e:tls ?")
        self.assertNotIn("secret-tls", json.dumps(set_.raw))
        self.assertEqual(get.attrs.get("db.query.text"), "GET e2e:tls")

    def test_huge_results_are_skipped_and_the_next_operation_pairs(self):
        """Results far larger than the 4 KiB captured per read (most of them gaps) end their
        operation, and the next one on the connection pairs with its own answer: 20000 rows from
        MariaDB's sequence engine, a 2 MiB Redis value."""
        self.env.require(self, "mariadb", "redis")
        m, r = self.env.mariadb, self.env.redis
        p = self.run_client(m.cli("-e", "SELECT seq, REPEAT('x', 100) FROM seq_1_to_20000; SELECT 7 AS after_big",
                                  "mysql"))
        spans = sorted(self.wait_db_spans(p.pid, 2, port=m.port), key=lambda s: s.start_ns)
        texts = [s.attrs.get("db.query.text") for s in spans]
        big = spans[texts.index("SELECT seq, REPEAT(?, ?) FROM seq_1_to_20000")]
        after = spans[texts.index("SELECT ? AS after_big")]
        for s in (big, after):
            self.assert_mariadb_span(s)
            self.assertFalse(s.is_error, s.brief())
        self.assertLess(big.end_ns, after.start_ns)
        python = require_debian_python(self, "redis")
        script = ("import json, os, sys, redis\n"
                  "c = redis.Redis(host='127.0.0.1', port=int(sys.argv[1]), single_connection_client=True)\n"
                  "c.set('e2e:big', b'v' * (2 << 20))\n"
                  "n = len(c.get('e2e:big'))\n"
                  "c.get('e2e:after_big')\n"
                  "print(json.dumps({'pid': os.getpid(), 'n': n}))\n")
        q = self.run_client([python, "-c", script, str(r.port)])
        result = json.loads(q.out.strip().splitlines()[-1])
        self.assertEqual(result["n"], 2 << 20)
        spans = sorted(self.wait_db_spans(result["pid"], 3, port=r.port), key=lambda s: s.start_ns)
        texts = [s.attrs.get("db.query.text") for s in spans]
        self.assertEqual(texts[-3:], ["SET e2e:big ?", "GET e2e:big", "GET e2e:after_big"], texts)
        for s in spans[-3:]:
            self.assert_redis_span(s)
            self.assertFalse(s.is_error, s.brief())
        self.assertLess(spans[-2].end_ns, spans[-1].start_ns)

    # -- MariaDB (MySQL protocol) ------------------------------------------------------------
    def assert_mariadb_span(self, s: SpanRecord) -> None:
        self.assertEqual(s.kind, SPAN_KIND_CLIENT, s.brief())
        self.assertEqual(s.attrs.get("db.system.name"), "mariadb", s.brief())
        self.assertEqual(s.attrs.get("server.port"), self.env.mariadb.port, s.brief())
        self.assertFalse(any(k.startswith(("http.", "url.")) for k in s.attrs), s.brief())

    def test_mariadb_cli_queries_use_errors_transaction(self):
        self.env.require(self, "mariadb")
        m = self.env.mariadb
        sql = ("CREATE DATABASE IF NOT EXISTS e2e_shop; USE e2e_shop; "
               "CREATE TABLE IF NOT EXISTS orders (id int PRIMARY KEY, owner varchar(64), total decimal(10,2)); "
               "INSERT INTO orders VALUES (1, 'secret-owner', 9.5) ON DUPLICATE KEY UPDATE total = 9.5; "
               "SELECT owner, total FROM orders WHERE id = 1; "
               "BEGIN; UPDATE orders SET total = total + 1 WHERE id = 1; COMMIT; "
               "SELECT * FROM e2e_missing")
        p = subprocess.Popen(m.cli("--force", "-e", sql), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        out, err = p.communicate(timeout=60)
        self.assertIn("1146", err)  # the missing table, reported by the client too
        spans = self.wait_db_spans(p.pid, 10, port=m.port)
        by_name = {s.name: s for s in spans}
        for s in spans:
            self.assert_mariadb_span(s)
        self.assertIn("USE e2e_shop", by_name)  # the CLI's USE is COM_INIT_DB
        select = by_name["SELECT orders"]
        self.assertEqual(select.attrs.get("db.namespace"), "e2e_shop")
        self.assertEqual(select.attrs.get("db.operation.name"), "SELECT")
        self.assertEqual(select.attrs.get("db.collection.name"), "orders")
        self.assertEqual(select.attrs.get("db.query.text"), "SELECT owner, total FROM orders WHERE id = ?")
        insert = by_name["INSERT orders"]
        self.assertNotIn("secret-owner", json.dumps(insert.raw))
        for name in ("BEGIN", "UPDATE orders", "COMMIT"):
            self.assertIn(name, by_name)
            self.assertFalse(by_name[name].is_error)
        missing = by_name["SELECT e2e_missing"]
        self.assertTrue(missing.is_error)
        self.assertEqual(missing.attrs.get("db.response.status_code"), "1146")

    def test_node_mysql2_prepared_statements(self):
        self.env.require(self, "mariadb")
        m = self.env.mariadb
        subprocess.run(m.cli("-e", "CREATE DATABASE IF NOT EXISTS e2e_node"), check=True, capture_output=True, timeout=60)
        peer = npm_peer("node-mysql2", self)
        p = self.run_client(["node", os.path.join(peer, "client.js"), str(m.port), "e2e_node", "orders"])
        result = json.loads(p.out.strip().splitlines()[-1])
        self.assertEqual(result["error"], 1054)
        spans = self.wait_db_spans(result["pid"], 6, port=m.port)
        for s in spans:
            self.assert_mariadb_span(s)
            self.assertEqual(s.attrs.get("db.namespace"), "e2e_node")  # from the handshake
        executes = [s for s in spans if s.name == "SELECT orders"]
        # Prepared once, executed twice by statement id: both executions carry its text.
        self.assertEqual(len(executes), 2, [s.brief() for s in spans])
        for s in executes:
            self.assertEqual(s.attrs.get("db.query.text"), "SELECT total FROM orders WHERE id = ?")
            self.assertFalse(s.is_error)
        prepares = [s for s in spans if s.name == "PREPARE SELECT orders"]
        self.assertEqual(len(prepares), 2)  # the second is the failing one
        failed = [s for s in prepares if s.is_error]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0].attrs.get("db.response.status_code"), "1054")

    # -- Redis ------------------------------------------------------------------------------
    def test_redis_cli_commands_and_errors(self):
        self.env.require(self, "redis")
        r = self.env.redis
        pids = []
        for args in (["SET", "e2e:user", "secret-value"], ["GET", "e2e:user"], ["INCR", "e2e:user"],
                     ["HSET", "e2e:h", "f1", "v1", "f2", "v2"]):
            pids.append(self.run_client(["redis-cli", "-h", r.host, "-p", str(r.port), *args]).pid)
        spans = [self.wait_db_spans(pid, 1, port=r.port)[0] for pid in pids]
        for s in spans:
            self.assert_redis_span(s)
            self.assertEqual(s.attrs.get("db.namespace"), "0")
        set_, get, incr, hset = spans
        self.assertEqual(set_.name, "SET")
        self.assertEqual(set_.attrs.get("db.operation.name"), "SET")
        self.assertEqual(set_.attrs.get("db.query.text"), "SET e2e:user ?")
        self.assertNotIn("secret-value", json.dumps(set_.raw))
        self.assertEqual(get.attrs.get("db.query.text"), "GET e2e:user")
        self.assertFalse(get.is_error)
        self.assertTrue(incr.is_error, incr.brief())  # not an integer
        self.assertEqual(incr.attrs.get("db.response.status_code"), "ERR")
        self.assertEqual(hset.attrs.get("db.query.text"), "HSET e2e:h ? ? ? ?")

    def test_redis_py_pipeline_transaction_and_pubsub(self):
        self.env.require(self, "redis")
        python = require_debian_python(self, "redis")
        r = self.env.redis
        script = r"""
import json, os, sys, time, redis
port = int(sys.argv[1])
c = redis.Redis(host="127.0.0.1", port=port, single_connection_client=True)
p = c.pipeline(transaction=False)
for i in range(5):
    p.incr(f"e2e:count:{i}")
p.lpush("e2e:count:0", "x")                     # WRONGTYPE: an error among the replies
p.execute(raise_on_error=False)
t = c.pipeline(transaction=True)
t.set("e2e:a", "1").set("e2e:b", "2")
t.execute()
ps = c.pubsub()
ps.subscribe("e2e:news")
ps.get_message(timeout=1)
pub = redis.Redis(host="127.0.0.1", port=port)
for i in range(3):
    pub.publish("e2e:news", f"m{i}")
got = 0
for _ in range(30):
    m = ps.get_message(timeout=0.2)
    if m and m["type"] == "message":
        got += 1
    if got == 3:
        break
ps.unsubscribe("e2e:news")
ps.get_message(timeout=1)
ps.close()
c.get("e2e:a")                                   # after the pub/sub: still paired right
print(json.dumps({"pid": os.getpid(), "messages": got}))
"""
        p = self.run_client([python, "-c", script, str(r.port)])
        result = json.loads(p.out.strip().splitlines()[-1])
        self.assertEqual(result["messages"], 3)
        spans = self.wait_db_spans(result["pid"], 8, port=r.port)
        by_name = {}
        for s in spans:
            self.assert_redis_span(s)
            by_name.setdefault(s.name, []).append(s)
        pipeline = by_name["PIPELINE"][0]  # INCR x5 and LPUSH: not all the same command
        self.assertEqual(pipeline.attrs.get("db.operation.batch.size"), 6)
        self.assertTrue(pipeline.is_error)
        self.assertEqual(pipeline.attrs.get("db.response.status_code"), "WRONGTYPE")
        self.assertTrue(pipeline.attrs.get("db.query.text").startswith("INCRBY e2e:count:0 ?; INCRBY e2e:count:1 ?"))
        tx = by_name["MULTI SET"][0]
        self.assertEqual(tx.attrs.get("db.operation.batch.size"), 2)
        self.assertEqual(tx.attrs.get("db.query.text"), "MULTI; SET e2e:a ?; SET e2e:b ?; EXEC")
        self.assertFalse(tx.is_error)
        self.assertIn("SUBSCRIBE", by_name)
        self.assertIn("UNSUBSCRIBE", by_name)
        # The published messages were never taken for replies: the GET after them is a GET
        # answered without error, and nothing else appeared.
        get = by_name["GET"][0]
        self.assertEqual(get.attrs.get("db.query.text"), "GET e2e:a")
        self.assertFalse(get.is_error)
        self.assertFalse(any(s.is_error for s in spans if s is not pipeline), [s.brief() for s in spans])

    def test_redis_cli_resp3_pushes_between_replies(self):
        """RESP3 (redis-cli -3 says HELLO 3) with client-side caching: the server pushes an
        invalidation to the connection that read the key when it changes, between the replies;
        the push is counted, never paired with a command."""
        self.env.require(self, "redis")
        r = self.env.redis

        def pushes() -> int:
            with urllib.request.urlopen(self.env.metrics_url, timeout=10) as resp:
                body = resp.read().decode()
            m = re.search(r'^threadline_db_pushes_total\{protocol="redis"\} (\d+)', body, re.M)
            return int(m.group(1)) if m else 0
        before = pushes()
        p = self.run_client(r.cli("-3"), stdin="CLIENT TRACKING on\nGET e2e:track\nSET e2e:track 1\n"
                                                "GET e2e:track\nSET e2e:track 2\nEXISTS e2e:track:end\n")
        self.assertEqual(p.out.split(), ["OK", "OK", "1", "OK", "0"], p.out)  # (redis-cli prints no pushes)
        spans = sorted(self.wait_db_spans(p.pid, 7, port=r.port), key=lambda s: s.start_ns)
        texts = [s.attrs.get("db.query.text") for s in spans]
        self.assertEqual(texts, ["HELLO ?", "COMMAND DOCS", "CLIENT TRACKING ?", "GET e2e:track", "SET e2e:track ?",
                                 "GET e2e:track", "SET e2e:track ?", "EXISTS e2e:track:end"][-len(texts):], texts)
        for s in spans:
            self.assert_redis_span(s)
            self.assertFalse(s.is_error, s.brief())
        self.assertGreaterEqual(pushes() - before, 2)

    # -- sanitisation, end to end ------------------------------------------------------------
    def test_no_literal_leaves_the_node(self):
        """A value written into statements in every way the three protocols allow (string, escape,
        dollar-quoted, hex and numeric literals, lists, comments, a literal in an error message,
        prepared-statement arguments, COPY and LOAD DATA rows, Redis values, scripts and a
        password) appears nowhere in what the agent prints or serves: not in any span, log line
        or metric."""
        self.env.require(self, "postgres", "mariadb", "redis")
        secret = f"tlsecret{os.urandom(6).hex()}"
        number = str(int.from_bytes(os.urandom(4), "big") | 1 << 31)  # ten digits
        hex_secret = secret.encode().hex()
        pg, m, r = self.env.pg, self.env.mariadb, self.env.redis
        psql = self.run_client(["psql", pg.dsn(), "-X", "-q"], stdin=(
            "CREATE TABLE IF NOT EXISTS e2e_leak (name text, n bigint);\n"
            f"INSERT INTO e2e_leak VALUES ('{secret}', {number}), (E'{secret}\\t', -{number});\n"
            f"SELECT n FROM e2e_leak WHERE name = '{secret}' OR n IN ({number}, {number}) "
            f"OR name = $q${secret}$q$; -- {secret}\n"
            f"SELECT /* {secret} */ '{secret}'::int;\n"  # 22P02, its message quotes the value
            "PREPARE e2e_leak_p(text) AS SELECT count(*) FROM e2e_leak WHERE name = $1;\n"
            f"EXECUTE e2e_leak_p('{secret}');\n"
            f"COPY e2e_leak FROM STDIN;\n{secret}\t{number}\n\\.\n"
            "SELECT count(*) AS e2e_leak_end FROM e2e_leak;\n"))
        rows = os.path.join(m.dir, "leak.tsv")
        with open(rows, "w") as f:
            f.write(f"{secret}\t{number}\n")
        maria = self.run_client(m.cli("--force", "--local-infile=1"), stdin=(
            "CREATE DATABASE IF NOT EXISTS e2e_leak; USE e2e_leak;\n"
            "CREATE TABLE IF NOT EXISTS t (name varchar(80), n bigint);\n"
            f"INSERT INTO t VALUES ('{secret}', {number}), (\"{secret}\", -{number});\n"
            f"SELECT n FROM t WHERE name = '{secret}' OR n IN ({number}) OR name = X'{hex_secret}' "
            f"OR name = 0x{hex_secret}; # {secret}\n"
            f"SELECT '{secret}' FROM;\n"  # 1064, its message quotes the statement
            "PREPARE s FROM 'SELECT count(*) FROM t WHERE name = ?';\n"
            f"SET @v = '{secret}'; EXECUTE s USING @v;\n"
            f"LOAD DATA LOCAL INFILE '{rows}' INTO TABLE t;\n"
            "SELECT count(*) AS e2e_leak_end FROM t;\n"))
        cli = self.run_client(["redis-cli", "-h", r.host, "-p", str(r.port)], stdin=(
            f"SET e2e:leak {secret}\nHSET e2e:leak:h field {secret}\nECHO {secret}\n"
            f"EVAL \"return '{secret}'\" 0\nAUTH {secret}\nPUBLISH e2e:leak:chan {secret}\n"
            "GET e2e:leak\nEXISTS e2e:leak:end\n"))
        self.assertIn(secret, psql.out + maria.out + cli.out)  # the values went through

        def done(ss: list[SpanRecord]) -> bool:
            texts = {x.attrs.get("db.query.text") for x in ss if x.pid in (psql.pid, maria.pid, cli.pid)}
            return {"SELECT count(*) AS e2e_leak_end FROM e2e_leak;", "SELECT count(*) AS e2e_leak_end FROM t",
                    "EXISTS e2e:leak:end"} <= texts
        spans = wait_for_spans(self.env.agent, done)
        ours = [x for x in spans if x.pid in (psql.pid, maria.pid, cli.pid)]
        texts = [x.attrs.get("db.query.text") for x in ours]
        # The statements that held the value are there, with ? in its place.
        for expected in ("INSERT INTO e2e_leak VALUES (?);", "SELECT ?::int;", "EXECUTE e2e_leak_p(?);",
                         "SELECT n FROM e2e_leak WHERE name = ? OR n IN (?) OR name = ?;",
                         "INSERT INTO t VALUES (?)", "SELECT ? FROM", "SET @v = ?",
                         "SELECT n FROM t WHERE name = ? OR n IN (?) OR name = ? OR name = ?",
                         "LOAD DATA LOCAL INFILE ? INTO TABLE t",
                         "SET e2e:leak ?", "HSET e2e:leak:h ? ?", "ECHO ?", "EVAL ? ?", "AUTH ?",
                         "PUBLISH e2e:leak:chan ?"):
            self.assertIn(expected, texts)
        errors = {x.attrs.get("db.response.status_code") for x in ours if x.is_error}
        self.assertTrue({"22P02", "1064", "ERR"} <= errors, errors)
        with urllib.request.urlopen(self.env.metrics_url, timeout=10) as resp:
            metrics = resp.read().decode()
        for where, text in (("spans", "\n".join(self.env.agent.stdout_lines)),
                            ("logs", "\n".join(self.env.agent.stderr_lines)), ("metrics", metrics)):
            for value in (secret, number, hex_secret):
                at = text.find(value)
                self.assertEqual(at, -1, f"{value} in the agent's {where}: ...{text[max(0, at - 300):at + 100]}...")

    def test_query_text_switched_off(self):
        """--db-query-text off: the spans keep their name, operation and collection but carry no
        statement text at all (a second agent, given the switch by its environment variable)."""
        self.env.require(self, "postgres", "redis")
        pg, r = self.env.pg, self.env.redis
        agent = Agent(["--output=json", "--inject", "off", "--stats-interval", "0", "--ui-address", "off",
                       "--tls", "off", "--port", str(pg.port), "--port", str(r.port)],
                      env={"THREADLINE_DB_QUERY_TEXT": "off"})
        self.addCleanup(agent.kill)
        self.assertTrue(any("no statement text (--db-query-text off)" in line for line in agent.stderr_lines),
                        agent.stderr_tail())
        p = self.run_client(["psql", pg.dsn(), "-X", "-q", "-c", "SELECT count(*) FROM pg_class WHERE relname = 'x'"])
        q = self.run_client(r.cli("SET", "e2e:notext", "v"))
        spans = wait_for_spans(agent, lambda ss: {p.pid, q.pid} <= {x.pid for x in ss})
        ours = [x for x in spans if x.pid in (p.pid, q.pid) and x.is_client]
        select = next(x for x in ours if x.pid == p.pid)
        self.assertEqual(select.name, "SELECT pg_class")
        self.assertEqual(select.attrs.get("db.collection.name"), "pg_class")
        set_ = next(x for x in ours if x.pid == q.pid)
        self.assertEqual(set_.name, "SET")
        for x in ours:
            self.assertNotIn("db.query.text", x.attrs, x.brief())

    # -- RED metrics ---------------------------------------------------------------------------
    def test_red_metrics_of_database_calls(self):
        self.env.require(self, "postgres")
        if self.env.metrics_url is None:
            self.fail(f"no metrics endpoint line from the agent\n{self.env.agent.describe()}")
        p = self.run_client(["psql", self.env.pg.dsn(), "-X", "-q",
                             "-c", "CREATE TABLE IF NOT EXISTS e2e_red (id int)",
                             "-c", "SELECT * FROM e2e_red_missing",
                             "-c", "SELECT * FROM e2e_red", "-c", "SELECT * FROM e2e_red WHERE id = 1"])
        self.wait_db_spans(p.pid, 4)

        def series() -> dict[tuple[str, str], int]:
            with urllib.request.urlopen(self.env.metrics_url, timeout=10) as r:
                body = r.read().decode()
            out = {}
            for line in body.splitlines():
                if not line.startswith("db_client_operation_duration_seconds_count{"):
                    continue
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
                if labels.get("service_name") == "psql" and labels.get("db_system_name") == "postgresql":
                    out[(labels.get("db_collection_name"), labels.get("error_type"))] = int(float(line.rsplit(" ", 1)[1]))
            return out
        got = {}
        for _ in deadline_loop(10, 0.2):
            got = series()
            if got.get(("e2e_red", ""), 0) >= 2 and got.get(("e2e_red_missing", "42P01"), 0) >= 1:
                break
        self.assertGreaterEqual(got.get(("e2e_red", ""), 0), 2, got)
        self.assertGreaterEqual(got.get(("e2e_red_missing", "42P01"), 0), 1, got)

    # -- one trace across a web request and its databases ------------------------------------
    def test_web_request_is_one_trace_with_its_queries(self):
        self.env.require(self, "postgres", "redis", "mariadb", "web")
        require_tool(self, "curl")
        url = f"http://{LOOPBACK}:{self.env.web_port}/order/1"
        p = self.run_client(["curl", "-sS", "--noproxy", "*", "--max-time", "10", url])
        self.assertEqual(json.loads(p.out)["customer"], "Ada", p.out)
        self.assertIn("12.5", p.out)
        web_pid = self.env.web.pid

        def ours(ss: list[SpanRecord]) -> tuple[list, list, list, list]:
            server = [x for x in ss if x.is_server and x.pid == web_pid]
            query = [x for x in ss if x.pid == web_pid and x.attrs.get("db.collection.name") == "e2e_web_orders"
                     and x.attrs.get("db.operation.name") == "SELECT"]
            customer = [x for x in ss if x.pid == web_pid and x.attrs.get("db.system.name") == "mariadb"
                        and x.attrs.get("db.collection.name") == "customers"
                        and x.attrs.get("db.operation.name") == "SELECT"]
            cache = [x for x in ss if x.pid == web_pid and x.attrs.get("db.system.name") == "redis"
                     and x.attrs.get("db.query.text") == "INCRBY views:1 ?"]
            return server, query, customer, cache
        spans = wait_for_spans(self.env.agent, lambda ss: all(ours(ss)))
        server, query, customer, cache = ours(spans)
        self.assertEqual(len(server), 1, [s.brief() for s in server])
        self.assertEqual(len(customer), 1, [s.brief() for s in customer])
        server, query, customer, cache = server[0], query[0], customer[0], cache[0]
        self.assertEqual(server.name, "GET /order/{id}")
        self.assertEqual(query.name, "SELECT e2e_web_orders")
        self.assertEqual(customer.name, "SELECT customers")
        self.assertEqual(cache.name, "INCRBY")  # redis-py sends INCR as INCRBY key 1
        # Each driver wrote the order id into its statement; the spans carry a ? instead.
        self.assertEqual(query.attrs.get("db.query.text"), "SELECT total FROM e2e_web_orders WHERE id = ?")
        self.assertEqual(customer.attrs.get("db.query.text"), "SELECT name FROM customers WHERE order_id = ?")
        self.assertEqual(customer.attrs.get("db.namespace"), "e2e_web")  # from PyMySQL's COM_INIT_DB
        self.assertEqual(customer.attrs.get("server.port"), self.env.mariadb.port)
        # One trace: the three database calls are children of the request that made them.
        for child in (query, customer, cache):
            self.assertEqual(child.kind, SPAN_KIND_CLIENT)
            self.assertEqual(child.trace_id, server.trace_id, child.brief())
            self.assertEqual(child.parent_span_id, server.span_id, child.brief())
            self.assertEqual(child.attrs.get("threadline.parent.source"), "thread")
            self.assertGreaterEqual(child.start_ns, server.start_ns)
            self.assertLessEqual(child.end_ns, server.end_ns)
        # The handler asks PostgreSQL, then MariaDB, then Redis.
        self.assertLessEqual(query.end_ns, customer.start_ns)
        self.assertLessEqual(customer.end_ns, cache.start_ns)

    def test_go_goroutines_parent_their_queries_under_concurrency(self):
        """A Go net/http service (its own small PostgreSQL and Redis clients over net.Conn, pooled,
        written from the goroutine that calls) gets 16 requests at once; each request's handler
        goroutine asks Redis while a goroutine it started asks PostgreSQL. Both queries of each
        request must be children of that request's SERVER span: only goroutine context can tell
        (16 requests in flight in one process, threads shared by all goroutines)."""
        self.env.require(self, "postgres", "redis")
        binary = go_peer(self, "go_db_service.go", "go_db_service")
        svc = PeerProcess([binary, str(self.env.go_port), str(self.env.pg.port), str(self.env.redis.port)],
                          self, port=self.env.go_port)
        # The agent probes a Go binary when it is exec'd, asynchronously: requests before that
        # would run on goroutines nobody followed.
        for _ in deadline_loop(20, 0.05):
            if any("followed by goroutine" in line and "go_db_service" in line for line in self.env.agent.stderr_lines):
                break
        else:
            self.fail(f"the agent did not follow {binary}'s goroutines\n{self.env.agent.stderr_tail()}")
        ids = list(range(101, 117))

        def fetch(i: int) -> str:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{self.env.go_port}/item/{i}", timeout=20) as r:
                return r.read().decode().strip()
        with ThreadPoolExecutor(len(ids)) as pool:
            self.assertEqual(list(pool.map(fetch, ids)), [str(i) for i in ids])

        def split(ss: list[SpanRecord]) -> list[dict[int, SpanRecord]]:
            return spans_by_request(ss, svc.pid, "/item/", r"SELECT \? AS i(\d+)", r"GET item:(\d+)")
        spans = wait_for_spans(self.env.agent, lambda ss: all(len(d) == len(ids) for d in split(ss)))
        servers, queries, gets = split(spans)
        verdicts = parent_verdicts(servers, queries, gets)
        self.assertEqual(verdicts, {"right": 2 * len(ids), "wrong": 0, "broken": 0},
                         [c.brief() for c in list(queries.values()) + list(gets.values())])
        for child in list(queries.values()) + list(gets.values()):
            self.assertEqual(child.attrs.get("threadline.parent.source"), "goroutine", child.brief())

    def test_node_event_loop_queries_never_get_a_wrong_parent(self):
        """A Node http service querying PostgreSQL through a node-postgres Pool: alone in flight,
        its request's query is its child (the one request the thread serves); with 16 in
        flight on the one event-loop thread nothing ties a query to its request, and the rule is
        that it then gets no parent (ambiguous), never another request's."""
        self.env.require(self, "postgres")
        peer = npm_peer("node-pg", self)
        port = self.env.node_port
        svc = PeerProcess(["node", os.path.join(peer, "web_service.js"), str(port), str(self.env.pg.port)],
                          self, port=port)

        def fetch(i: int) -> str:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/item/{i}", timeout=20) as r:
                return r.read().decode().strip()

        def split(ss: list[SpanRecord]) -> list[dict[int, SpanRecord]]:
            return spans_by_request(ss, svc.pid, "/item/", r"SELECT \? AS i(\d+)")
        self.assertEqual(fetch(1), "1")
        servers, queries = split(wait_for_spans(self.env.agent, lambda ss: all(1 in d for d in split(ss))))
        self.assertEqual(parent_verdicts({1: servers[1]}, {1: queries[1]}), {"right": 1, "wrong": 0, "broken": 0},
                         queries[1].brief())
        ids = list(range(201, 217))
        with ThreadPoolExecutor(len(ids)) as pool:
            self.assertEqual(list(pool.map(fetch, ids)), [str(i) for i in ids])
        servers, queries = split(wait_for_spans(
            self.env.agent, lambda ss: all(all(i in d for i in ids) for d in split(ss))))
        servers = {i: servers[i] for i in ids}
        queries = {i: queries[i] for i in ids}
        verdicts = parent_verdicts(servers, queries)
        self.assertEqual(verdicts["wrong"], 0, [q.brief() for q in queries.values()])
        for q in queries.values():
            if q.parent_span_id != servers[int(q.attrs["db.query.text"].rsplit("i", 1)[-1])].span_id:
                self.assertEqual(q.attrs.get("threadline.parent.source"), "ambiguous", q.brief())
        print(f"node event loop, 16 in flight: {verdicts}")

if __name__ == "__main__":
    main()

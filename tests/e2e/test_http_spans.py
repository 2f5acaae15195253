"""HTTP/1.x spans (issue 3) as a user sees them: the built agent with --output=json (and
--output=console) against real servers and clients on loopback: curl, `python3 -m http.server`,
a keep-alive Python server (peers/http_peer.py), Node, and a Node service instrumented by the
real OpenTelemetry JS SDK (peers/otel-js, installed from npm into the build tree).

Each test starts its own agent, filtered to the programs and ports it uses, and asserts whole
spans: ids and parents, names, semantic-convention attributes, status, timing and resources.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from e2e_util import (LOOPBACK, STATUS_ERROR, Agent, PeerProcess, SpanRecord,
                      agent_metrics, agent_spans, deadline_loop, format_spans, free_port, main,
                      npm_peer, require_root, span_nesting_problem, wait_for_spans,
                      wait_port_connections_closed)

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, "peers")
HTTP_PEER = os.path.join(PEERS, "http_peer.py")
PYTHON = sys.executable
# The name the agent matches python peers by (--exe also matches the executable's basename).
PYTHON_EXE = os.path.basename(os.path.realpath(PYTHON))

DONE_WHEN_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
DONE_WHEN_PARENT = "00f067aa0ba902b7"
DONE_WHEN_TRACEPARENT = f"00-{DONE_WHEN_TRACE}-{DONE_WHEN_PARENT}-01"

# Span timestamps are kernel boot-clock ns converted to epoch ns with an offset the agent
# refreshes: a span lies within the test's own wall-clock window give or take this.
WINDOW_SLACK_NS = 1_000_000
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def curl_version() -> str:
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.split()[1]


class Curl:
    """curl run once, exited and reaped at once, as any short-lived client is: by the time the
    agent builds its span, /proc/<pid> may be gone (the agent names it from its exec event)."""

    def __init__(self, url: str, *extra: str, fmt: str = "%{http_code} %{local_port}"):
        cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null",
               *extra, "-w", fmt, url]
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
        self.pid = p.pid
        self.out, _ = p.communicate(timeout=20)  # --max-time bounds it
        self.fields = self.out.split()


def run_python(source: str, *args: str, stdin: str | None = None,
               timeout: float = 30.0) -> subprocess.CompletedProcess:
    p = subprocess.run([PYTHON, "-c", source, *args], input=stdin, capture_output=True,
                       text=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError(f"python client failed (rc {p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p


# A client process that prints its pid, then one JSON object per line.
KEEPALIVE_CLIENT = r"""
import http.client, json, os, sys
port = int(sys.argv[1])
print(json.dumps({"pid": os.getpid()}), flush=True)
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
for method, path, body in json.loads(sys.argv[2]):
    conn.request(method, path, body=body.encode() if body else None)
    r = conn.getresponse()
    data = r.read()
    print(json.dumps({"path": path, "status": r.status, "len": len(data),
                      "local_port": conn.sock.getsockname()[1]}), flush=True)
conn.close()
"""

# Sends every request in one write (pipelining), reads until the server closes.
PIPELINE_CLIENT = r"""
import json, os, socket, sys
port = int(sys.argv[1])
paths = json.loads(sys.argv[2])
reqs = b""
for i, p in enumerate(paths):
    last = i == len(paths) - 1
    reqs += (f"GET {p} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: tl-pipeline\r\n"
             + ("Connection: close\r\n" if last else "") + "\r\n").encode()
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(reqs)
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
s.close()
print(json.dumps({"pid": os.getpid(), "responses": got.count(b"HTTP/1.1 ")}))
"""

# A client whose argv holds no secret: the URL and a header come on stdin.
STDIN_CLIENT = r"""
import json, sys, urllib.error, urllib.request
spec = json.loads(sys.stdin.read())
req = urllib.request.Request(spec["url"], headers=spec.get("headers", {}))
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read(); status = r.status
except urllib.error.HTTPError as e:
    status = e.code
import os
print(json.dumps({"pid": os.getpid(), "status": status}))
"""

# Sends raw bytes on one connection (in writes of at most argv[2] bytes, 0: one write), reads
# whatever comes back until close or timeout.
RAW_CLIENT = r"""
import socket, sys
port, piece = int(sys.argv[1]), int(sys.argv[2])
payload = bytes.fromhex(sys.stdin.read().strip())
s = socket.create_connection(("127.0.0.1", port), timeout=5)
try:
    if piece:
        for i in range(0, len(payload), piece):
            s.sendall(payload[i:i + piece])
    else:
        s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
except OSError:
    pass
s.close()
"""


class HttpSpansTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    # -- helpers ----------------------------------------------------------------------------
    def start_agent(self, *args: str, exe: tuple[str, ...] = (PYTHON_EXE, "curl"),
                    ports: tuple[int, ...] = (), output: str = "json") -> Agent:
        # No context on the wire (neither injection nor the TCP option): these tests pin
        # same-node (tuple) and thread linking; with either on the same edges arrive as `header`
        # or `tcp_option` (tests/e2e/test_inject.py and test_tcp_option.py cover those).
        argv = [f"--output={output}", "--context-propagation", "none"]
        for e in exe:
            argv += ["--exe", e]
        for p in ports:
            argv += ["--port", str(p)]
        return Agent([*argv, *args], self)

    def http_server(self, files: dict[str, bytes] | None = None,
                    env: dict[str, str] | None = None) -> PeerProcess:
        """Untouched `python3 -m http.server PORT --bind 127.0.0.1` serving `files`."""
        www = tempfile.mkdtemp(prefix="tl-e2e-www-")
        self.addCleanup(shutil.rmtree, www, True)
        for name, body in (files or {}).items():
            with open(os.path.join(www, name), "wb") as f:
                f.write(body)
        port = free_port()
        return PeerProcess([PYTHON, "-m", "http.server", str(port), "--bind", LOOPBACK], self,
                           port=port, env=env, cwd=www)

    def http_peer(self, env: dict[str, str] | None = None) -> PeerProcess:
        port = free_port()
        return PeerProcess([PYTHON, HTTP_PEER, str(port)], self, port=port, env=env)

    def curl_with_port(self, url: str, *extra: str) -> tuple[int, int, int]:
        """curl once (reaped at once); returns (status, curl's pid, curl's local port)."""
        c = Curl(url, *extra)
        if len(c.fields) != 2:
            self.fail(f"curl {url} failed: output {c.out!r}")
        return int(c.fields[0]), c.pid, int(c.fields[1])

    MARKER_PATH = "/marker-after-everything"

    def wait_all_handled(self, agent: Agent, peer) -> None:
        """Before a check that something did NOT happen (a duplicate span): once every connection
        on the peer's port is closed at both ends, one more exchange is made and its spans waited
        for. The agent handles the kernel's events in order and writes spans in the order it
        makes them, so anything the earlier exchanges would produce is out by then. Spans of the
        marker have url.path MARKER_PATH."""
        wait_port_connections_closed(peer.port)
        c = Curl(peer.url(self.MARKER_PATH))
        wait_for_spans(agent, lambda ss: any(s.pid == c.pid and s.is_client for s in ss) and any(
            s.pid == peer.pid and s.is_server and s.attrs.get("url.path") == self.MARKER_PATH for s in ss))

    def stop_agent(self, agent: Agent) -> dict[str, int]:
        """Stops the agent cleanly (asserting exit code 0) and returns its final counters."""
        rc = agent.stop(signal.SIGINT)
        self.assertEqual(rc, 0, f"agent exited with {rc}\n{agent.describe()}")
        return agent_metrics(agent.stderr_lines)

    def one(self, spans: list[SpanRecord], what: str, pred) -> SpanRecord:
        found = [s for s in spans if pred(s)]
        self.assertEqual(len(found), 1, f"expected exactly one {what}, found {len(found)}:\n"
                         + format_spans(spans))
        return found[0]

    def assert_id_shapes(self, s: SpanRecord) -> None:
        self.assertRegex(s.trace_id, HEX32, s.brief())
        self.assertNotEqual(s.trace_id, "0" * 32, s.brief())
        self.assertRegex(s.span_id, HEX16, s.brief())
        self.assertNotEqual(s.span_id, "0" * 16, s.brief())
        if s.parent_span_id:
            self.assertRegex(s.parent_span_id, HEX16, s.brief())

    def assert_inside(self, inner: SpanRecord, outer: SpanRecord, cross_process: bool = True):
        """inner lies inside outer (e2e_util.nesting_problem: exact within one process, and
        across processes up to what the capture cannot order)."""
        problem = span_nesting_problem(inner, outer, cross_process)
        self.assertIsNone(problem, f"{problem}:\n{inner.brief()} [{inner.start_ns}, {inner.end_ns}]\n"
                                   f"not inside\n{outer.brief()} [{outer.start_ns}, {outer.end_ns}]")

    # -- 1. the Done-when scenario ----------------------------------------------------------
    def test_done_when_curl_traceparent_to_http_server(self):
        server = self.http_server()
        agent = self.start_agent(ports=(server.port,))
        t0 = time.time_ns()
        status, curl_pid, curl_port = self.curl_with_port(
            server.url("/items/42"), "-H", f"traceparent: {DONE_WHEN_TRACEPARENT}")
        t1 = time.time_ns()
        self.assertEqual(status, 404)

        spans = wait_for_spans(agent, lambda ss: any(s.pid == server.pid for s in ss)
                               and any(s.pid == curl_pid for s in ss))
        srv = self.one(spans, "SERVER span of http.server",
                       lambda s: s.pid == server.pid and s.is_server)
        cli = self.one(spans, "CLIENT span of curl", lambda s: s.pid == curl_pid and s.is_client)
        self.assertEqual(len(spans), 2, format_spans(spans))

        for s in (srv, cli):
            self.assert_id_shapes(s)
            self.assertEqual(s.trace_id, DONE_WHEN_TRACE, s.brief())
            self.assertEqual(s.parent_span_id, DONE_WHEN_PARENT, s.brief())
            self.assertEqual(s.name, "GET /items/{id}", s.brief())
            self.assertEqual(s.attrs.get("http.request.method"), "GET")
            self.assertEqual(s.attrs.get("http.response.status_code"), 404)
            self.assertEqual(s.attrs.get("url.path"), "/items/42")
            self.assertNotIn("url.query", s.attrs)
            self.assertEqual(s.attrs.get("url.scheme"), "http")
            self.assertEqual(s.attrs.get("server.address"), LOOPBACK)
            self.assertEqual(s.attrs.get("server.port"), server.port)
            self.assertEqual(s.attrs.get("network.peer.address"), LOOPBACK)
            self.assertEqual(s.attrs.get("network.protocol.version"), "1.1")
            self.assertEqual(s.attrs.get("user_agent.original"), f"curl/{curl_version()}")
            self.assertEqual(s.attrs.get("threadline.parent.source"), "header")
            self.assertGreater(s.duration_ns, 0, s.brief())
            self.assertGreaterEqual(s.start_ns, t0 - WINDOW_SLACK_NS,
                                    f"{s.brief()} starts before curl was started")
            self.assertLessEqual(s.end_ns, t1 + WINDOW_SLACK_NS,
                                 f"{s.brief()} ends after curl exited")
            self.assertGreater(s.attrs.get("http.response.body.size", 0), 0, s.brief())

        self.assertNotEqual(srv.span_id, cli.span_id)
        self.assertEqual(srv.service, "http.server")
        self.assertEqual(cli.service, "curl")
        # The server's peer is curl's socket, curl's peer the server's.
        self.assertEqual(srv.attrs.get("network.peer.port"), curl_port)
        self.assertEqual(srv.attrs.get("client.address"), LOOPBACK)
        self.assertEqual(cli.attrs.get("network.peer.port"), server.port)
        self.assertEqual(cli.attrs.get("url.full"), f"{server.url('/items/42')}")
        # Status: a 404 is the client's error, not the server's.
        self.assertNotEqual(srv.status_code, STATUS_ERROR, srv.brief())
        self.assertEqual(cli.status_code, STATUS_ERROR, cli.brief())
        self.assertEqual(cli.attrs.get("error.type"), "404")
        # curl's own span is the header's parent-id (curl put it there): linked to it.
        self.assertEqual([(l.get("traceId"), l.get("spanId")) for l in cli.links],
                         [(DONE_WHEN_TRACE, DONE_WHEN_PARENT)], cli.brief())
        self.assertTrue(srv.raw.get("flags", 0) & 0x1, "sampled flag lost")
        # The server handled the request while curl waited for it.
        self.assert_inside(srv, cli)

    def test_short_lived_client_gone_before_the_agent_reads_it(self):
        """curl exits and is reaped at once, and the agent is behind (paused while curl runs, as
        a loaded node delays it): /proc/<curl's pid> is gone before the agent handles curl's
        exec, yet the span names curl, from what the kernel reported at exec."""
        server = self.http_server()
        # All processes (port-filtered): selection by executable is decided when the agent
        # handles the exec, so a paused agent would not select curl at all.
        agent = self.start_agent(exe=(), ports=(server.port,))
        agent.proc.send_signal(signal.SIGSTOP)
        try:
            c = Curl(server.url("/short"))
            self.assertFalse(os.path.exists(f"/proc/{c.pid}"), "premise: curl is reaped")
        finally:
            agent.proc.send_signal(signal.SIGCONT)
        self.assertEqual(c.fields[:1], ["404"], c.out)
        spans = wait_for_spans(agent, lambda ss: any(s.pid == c.pid and s.is_client for s in ss))
        cli = self.one(spans, "CLIENT span of curl", lambda s: s.pid == c.pid and s.is_client)
        self.assertEqual(cli.service, "curl", cli.resource)
        self.assertEqual(cli.resource.get("process.executable.name"), "curl", cli.resource)
        self.assertEqual(cli.resource.get("process.executable.path"), shutil.which("curl"), cli.resource)
        self.assertEqual(cli.resource.get("process.parent_pid"), os.getpid(), cli.resource)
        self.assertRegex(cli.resource.get("process.command_line", ""),
                         rf"^curl -sS .* {re.escape(server.url('/short'))}$", cli.resource)
        self.assertRegex(cli.resource.get("service.instance.id", ""),
                         r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        counters = self.stop_agent(agent)
        self.assertGreaterEqual(counters.get("threadline_resource_from_exec_total", 0), 1, agent.describe())

    # -- 2. keep-alive and pipelining -------------------------------------------------------
    def test_keep_alive_one_span_per_request_in_order(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        requests = [("GET", "/ka/1", ""), ("GET", "/status/404/ka-2", ""),
                    ("POST", "/status/201/ka-3", "0123456789"), ("GET", "/ka/4?x=1", "")]
        out = run_python(KEEPALIVE_CLIENT, str(peer.port), json.dumps(requests))
        lines = [json.loads(l) for l in out.stdout.splitlines()]
        client_pid = lines[0]["pid"]
        answers = lines[1:]
        self.assertEqual([a["status"] for a in answers], [200, 404, 201, 200])
        self.assertEqual(len({a["local_port"] for a in answers}), 1, "not one connection")
        local_port = answers[0]["local_port"]

        def mine(ss):
            return (len([s for s in ss if s.pid == peer.pid and s.is_server]) >= 4
                    and len([s for s in ss if s.pid == client_pid and s.is_client]) >= 4)
        wait_for_spans(agent, mine)
        self.wait_all_handled(agent, peer)  # then a duplicate would be out
        spans = [s for s in agent_spans(agent) if s.attrs.get("url.path") != self.MARKER_PATH]
        expected = [("GET", "/ka/1", 200), ("GET", "/status/404/ka-2", 404),
                    ("POST", "/status/201/ka-3", 201), ("GET", "/ka/4", 200)]
        for side, pid, is_kind in (("server", peer.pid, SpanRecord.is_server.fget),
                                   ("client", client_pid, SpanRecord.is_client.fget)):
            mine_spans = sorted((s for s in spans if s.pid == pid and is_kind(s)),
                                key=lambda s: s.start_ns)
            self.assertEqual(
                [(s.attrs.get("http.request.method"), s.attrs.get("url.path"),
                  s.attrs.get("http.response.status_code")) for s in mine_spans],
                expected, f"{side} spans:\n" + format_spans(mine_spans))
            self.assertEqual(len({s.span_id for s in mine_spans}), 4, "span ids not distinct")
            self.assertEqual(len({s.trace_id for s in mine_spans}), 4,
                             "independent requests share a trace")
            for a, b in zip(mine_spans, mine_spans[1:]):
                self.assertLessEqual(a.end_ns, b.start_ns, f"{side} spans overlap:\n"
                                     f"{a.brief()}\n{b.brief()}")
            for s in mine_spans:
                self.assert_id_shapes(s)
                self.assertGreater(s.duration_ns, 0, s.brief())
            self.assertEqual(mine_spans[2].attrs.get("http.request.body.size"), 10)
            self.assertEqual(mine_spans[3].attrs.get("url.query"), "x=1")
            # Bodies are "<status> <path>\n" / "ok <path>\n": sizes tell the pairing too.
            self.assertEqual([s.attrs.get("http.response.body.size") for s in mine_spans],
                             [a["len"] for a in answers])
        servers = sorted((s for s in spans if s.pid == peer.pid and s.is_server),
                         key=lambda s: s.start_ns)
        clients = sorted((s for s in spans if s.pid == client_pid and s.is_client),
                         key=lambda s: s.start_ns)
        self.assertEqual({s.attrs.get("network.peer.port") for s in servers}, {local_port})
        # Both ends are traced here: each client call is the parent of the server span of the
        # same request (same-node linking, by 4-tuple and order on the connection).
        for cli, srv in zip(clients, servers):
            self.assertEqual(cli.attrs.get("threadline.parent.source"), "root", cli.brief())
            self.assertEqual(cli.parent_span_id, "", cli.brief())
            self.assertEqual(srv.attrs.get("threadline.parent.source"), "tuple", srv.brief())
            self.assertEqual((srv.trace_id, srv.parent_span_id), (cli.trace_id, cli.span_id),
                             f"\n{cli.brief()}\n{srv.brief()}")
            self.assert_inside(srv, cli)

    def test_pipelined_requests_paired_in_order(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        paths = ["/status/201/p", "/status/202/pp-two", "/status/203/ppp-three-3"]
        out = run_python(PIPELINE_CLIENT, str(peer.port), json.dumps(paths))
        result = json.loads(out.stdout)
        self.assertEqual(result["responses"], 3, out.stdout)
        client_pid = result["pid"]

        def mine(ss):
            return (len([s for s in ss if s.pid == peer.pid and s.is_server]) >= 3
                    and len([s for s in ss if s.pid == client_pid and s.is_client]) >= 3)
        wait_for_spans(agent, mine)
        self.wait_all_handled(agent, peer)  # then a duplicate would be out
        spans = [s for s in agent_spans(agent) if s.attrs.get("url.path") != self.MARKER_PATH]
        for side, pid, is_kind in (("server", peer.pid, SpanRecord.is_server.fget),
                                   ("client", client_pid, SpanRecord.is_client.fget)):
            got = sorted((s for s in spans if s.pid == pid and is_kind(s)),
                         key=lambda s: s.start_ns)
            self.assertEqual(
                [(s.attrs.get("url.path"), s.attrs.get("http.response.status_code"),
                  s.attrs.get("http.response.body.size")) for s in got],
                [(p, int(p.split("/")[2]), len(f"{p.split('/')[2]} {p}\n")) for p in paths],
                f"{side} spans paired wrong:\n" + format_spans(got))
            self.assertEqual(len({s.span_id for s in got}), 3)
            for s in got:
                self.assertEqual(s.attrs.get("user_agent.original"), "tl-pipeline")
                self.assertGreater(s.duration_ns, 0, s.brief())
        # Each server span's parent is the client call of the same request (linked in order).
        servers = sorted((s for s in spans if s.pid == peer.pid and s.is_server),
                         key=lambda s: s.start_ns)
        clients = sorted((s for s in spans if s.pid == client_pid and s.is_client),
                         key=lambda s: s.start_ns)
        for cli, srv in zip(clients, servers):
            self.assertEqual((srv.trace_id, srv.parent_span_id), (cli.trace_id, cli.span_id),
                             f"\n{cli.brief()}\n{srv.brief()}")

    # -- 3. chunked bodies and error statuses -----------------------------------------------
    def test_chunked_response_body_size_is_decoded_size(self):
        node_port = free_port()
        node = PeerProcess(["node", os.path.join(PEERS, "node_chunked_server.js"),
                            str(node_port)], self, port=node_port)
        py = self.http_peer()
        agent = self.start_agent(exe=(PYTHON_EXE, "curl", "node"), ports=(node_port, py.port))
        cases = [(node, "/parts/1000,2345,7", 1000 + 2345 + 7),
                 (py, "/chunked/100,2000,3", 100 + 2000 + 3)]
        curls = []
        for peer, path, size in cases:
            out = Curl(peer.url(path), fmt="%{http_code} %{size_download}")
            self.assertEqual(out.fields, ["200", str(size)], out.out)
            curls.append(out.pid)

        def done(ss):
            return all(any(s.pid == p for s in ss) for p in [node.pid, py.pid, *curls])
        spans = wait_for_spans(agent, done)
        for (peer, path, size), curl_pid in zip(cases, curls):
            srv = self.one(spans, f"SERVER span for {path}",
                           lambda s: s.pid == peer.pid and s.is_server)
            cli = self.one(spans, f"CLIENT span for {path}",
                           lambda s: s.pid == curl_pid and s.is_client)
            for s in (srv, cli):
                self.assertEqual(s.attrs.get("url.path"), path, s.brief())
                self.assertEqual(s.attrs.get("http.response.status_code"), 200, s.brief())
                self.assertEqual(s.attrs.get("http.response.body.size"), size,
                                 f"not the decoded size: {s.brief()}")
                self.assertNotIn("threadline.response.incomplete", s.attrs, s.brief())
                self.assertNotEqual(s.status_code, STATUS_ERROR, s.brief())
        # service.name: the script a runtime runs (no OTEL_SERVICE_NAME here).
        self.assertEqual(self.one(spans, "node server", lambda s: s.pid == node.pid).service,
                         "node_chunked_server")

    def test_500_and_404_statuses(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        s500, pid500, _ = self.curl_with_port(peer.url("/status/500/boom"))
        s404, pid404, _ = self.curl_with_port(peer.url("/status/404/missing"))
        self.assertEqual((s500, s404), (500, 404))
        spans = wait_for_spans(agent, lambda ss: len([s for s in ss if s.pid == peer.pid]) >= 2
                               and any(s.pid == pid500 for s in ss)
                               and any(s.pid == pid404 for s in ss))
        srv500 = self.one(spans, "server 500", lambda s: s.pid == peer.pid
                          and s.attrs.get("url.path") == "/status/500/boom")
        srv404 = self.one(spans, "server 404", lambda s: s.pid == peer.pid
                          and s.attrs.get("url.path") == "/status/404/missing")
        cli500 = self.one(spans, "curl 500", lambda s: s.pid == pid500)
        cli404 = self.one(spans, "curl 404", lambda s: s.pid == pid404)
        # 5xx: an error on both sides.
        for s in (srv500, cli500):
            self.assertEqual(s.status_code, STATUS_ERROR, s.brief())
            self.assertEqual(s.attrs.get("error.type"), "500", s.brief())
            self.assertEqual(s.attrs.get("http.response.status_code"), 500)
        # 4xx: the client's error only.
        self.assertNotEqual(srv404.status_code, STATUS_ERROR, srv404.brief())
        self.assertNotIn("error.type", srv404.attrs, srv404.brief())
        self.assertEqual(cli404.status_code, STATUS_ERROR, cli404.brief())
        self.assertEqual(cli404.attrs.get("error.type"), "404", cli404.brief())
        self.assertEqual(srv500.name, "GET /status/{id}/boom")
        self.assertEqual(srv404.name, "GET /status/{id}/missing")

    # -- 4. trace context -------------------------------------------------------------------
    def test_traceparent_continued_malformed_ignored_unsampled_dropped(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        valid_trace, valid_parent = secrets.token_hex(16), secrets.token_hex(8)
        unsampled_trace = secrets.token_hex(16)
        malformed = {
            "upper": f"00-{DONE_WHEN_TRACE.upper()}-{DONE_WHEN_PARENT.upper()}-01",
            "zero-trace": f"00-{'0' * 32}-{DONE_WHEN_PARENT}-01",
            "zero-parent": f"00-{DONE_WHEN_TRACE}-{'0' * 16}-01",
            "short-trace": f"00-{DONE_WHEN_TRACE[:-1]}-{DONE_WHEN_PARENT}-01",
            "long-parent": f"00-{DONE_WHEN_TRACE}-{DONE_WHEN_PARENT}a-01",
            "version-ff": f"ff-{DONE_WHEN_TRACE}-{DONE_WHEN_PARENT}-01",
        }
        curls: dict[str, int] = {}
        status, curls["valid"], _ = self.curl_with_port(
            peer.url("/tc/valid"), "-H", f"traceparent: 00-{valid_trace}-{valid_parent}-01",
            "-H", "tracestate: congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        self.assertEqual(status, 200)
        status, curls["unsampled"], _ = self.curl_with_port(
            peer.url("/tc/unsampled"), "-H",
            f"traceparent: 00-{unsampled_trace}-{secrets.token_hex(8)}-00")
        self.assertEqual(status, 200)
        for name, header in malformed.items():
            status, curls[name], _ = self.curl_with_port(peer.url(f"/tc/{name}"), "-H",
                                                    f"traceparent: {header}")
            self.assertEqual(status, 200)

        def srv_for(ss, name):
            return [s for s in ss if s.pid == peer.pid and s.attrs.get("url.path") == f"/tc/{name}"]
        spans = wait_for_spans(agent, lambda ss: all(srv_for(ss, n) for n in
                                                     ["valid", *malformed]))
        # Continued: the caller's trace and span as parent, tracestate kept.
        srv = self.one(spans, "server span /tc/valid", lambda s: s in srv_for(spans, "valid"))
        self.assertEqual((srv.trace_id, srv.parent_span_id), (valid_trace, valid_parent))
        self.assertEqual(srv.attrs.get("threadline.parent.source"), "header")
        self.assertEqual(srv.raw.get("traceState"), "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        cli = self.one(spans, "curl span /tc/valid", lambda s: s.pid == curls["valid"])
        self.assertEqual(cli.trace_id, valid_trace)
        # Malformed: as if absent. curl's span starts a new trace (no parent, no link); the
        # server's span is not the header's child but curl's span's (same-node linking, the
        # next rule after the header: both ends are traced here).
        trace_ids = set()
        for name in malformed:
            srv = self.one(spans, f"server span /tc/{name}", lambda s: s in srv_for(spans, name))
            cli = self.one(spans, f"curl span /tc/{name}", lambda s: s.pid == curls[name])
            for s in (srv, cli):
                self.assert_id_shapes(s)
                self.assertNotEqual(s.trace_id, DONE_WHEN_TRACE, f"{name}: {s.brief()}")
                self.assertNotEqual(s.parent_span_id, DONE_WHEN_PARENT, f"{name}: {s.brief()}")
                self.assertEqual(s.links, [], f"{name}: {s.brief()}")
            self.assertEqual(cli.parent_span_id, "", f"{name}: {cli.brief()}")
            self.assertEqual(cli.attrs.get("threadline.parent.source"), "root",
                             f"{name}: {cli.brief()}")
            self.assertEqual(srv.attrs.get("threadline.parent.source"), "tuple",
                             f"{name}: {srv.brief()}")
            self.assertEqual((srv.trace_id, srv.parent_span_id), (cli.trace_id, cli.span_id),
                             f"{name}:\n{cli.brief()}\n{srv.brief()}")
            trace_ids.add(cli.trace_id)
        self.assertEqual(len(trace_ids), len(malformed), "new traces are not distinct")
        # Unsampled (flags 00): nothing exported for that trace, on either side; counted.
        # The later requests' spans are out, so the unsampled ones would be too by now.
        self.assertEqual(srv_for(spans, "unsampled"), [], format_spans(spans))
        self.assertEqual([s for s in spans if s.trace_id == unsampled_trace
                          or s.pid == curls["unsampled"]], [])
        stats = self.stop_agent(agent)
        self.assertEqual(stats.get("threadline_spans_dropped_total{reason=not_sampled}"), 2,
                         "\n".join(agent.stderr_lines[-40:]))

    # -- 5. thread parenting ----------------------------------------------------------------
    def test_service_calling_another_on_its_request_thread(self):
        b = self.http_server({"b.txt": b"from service B\n"})
        a = self.http_peer(env={"OTEL_SERVICE_NAME": "svc-a"})
        agent = self.start_agent(ports=(a.port, b.port))
        status, curl_pid, _ = self.curl_with_port(a.url(f"/call?url={b.url('/b.txt')}"))
        self.assertEqual(status, 200)

        def done(ss):
            return (len([s for s in ss if s.pid == a.pid]) >= 2
                    and any(s.pid == b.pid for s in ss) and any(s.pid == curl_pid for s in ss))
        spans = wait_for_spans(agent, done)
        a_srv = self.one(spans, "A's SERVER span", lambda s: s.pid == a.pid and s.is_server)
        a_cli = self.one(spans, "A's CLIENT span", lambda s: s.pid == a.pid and s.is_client)
        b_srv = self.one(spans, "B's SERVER span", lambda s: s.pid == b.pid and s.is_server)
        root = self.one(spans, "curl's CLIENT span", lambda s: s.pid == curl_pid and s.is_client)

        self.assertEqual(a_srv.service, "svc-a")
        self.assertEqual(a_srv.attrs.get("url.path"), "/call")
        self.assertEqual(a_cli.service, "svc-a")
        self.assertEqual(a_cli.trace_id, a_srv.trace_id, a_cli.brief())
        self.assertEqual(a_cli.parent_span_id, a_srv.span_id, a_cli.brief())
        self.assertEqual(a_cli.attrs.get("threadline.parent.source"), "thread")
        self.assertEqual(a_cli.attrs.get("url.path"), "/b.txt")
        self.assertEqual(a_cli.attrs.get("server.port"), b.port)
        self.assertEqual(a_cli.attrs.get("http.response.status_code"), 200)
        self.assertTrue(a_cli.attrs.get("user_agent.original", "").startswith("Python-urllib/"))
        self.assert_inside(a_cli, a_srv, cross_process=False)
        # B (untouched http.server) served it.
        self.assertEqual(b_srv.service, "http.server")
        self.assertEqual(b_srv.attrs.get("url.path"), "/b.txt")
        self.assertEqual(b_srv.attrs.get("http.response.status_code"), 200)
        self.assert_inside(b_srv, a_cli)
        # One trace end to end: curl -> A (same-node tuple) -> A's call (thread) -> B (tuple).
        self.assertEqual(root.attrs.get("threadline.parent.source"), "root")
        self.assertEqual(root.parent_span_id, "")
        chain = [root, a_srv, a_cli, b_srv]
        self.assertEqual([s.attrs.get("threadline.parent.source") for s in chain],
                         ["root", "tuple", "thread", "tuple"], format_spans(chain))
        for parent, child in zip(chain, chain[1:]):
            self.assertEqual((child.trace_id, child.parent_span_id),
                             (parent.trace_id, parent.span_id), format_spans(chain))

    # -- 6. OpenTelemetry JS SDK interop ----------------------------------------------------
    def test_otel_js_sdk_service_calling_untouched_python(self):
        peer_dir = npm_peer("otel-js", self)
        py = self.http_server({"from-node.txt": b"hello node\n"})
        node_port = free_port()
        node = PeerProcess(["node", os.path.join(peer_dir, "service.js"), str(node_port),
                            py.url("")], self, port=node_port, cwd=peer_dir,
                           env={"OTEL_SERVICE_NAME": "node-frontend"})
        agent = self.start_agent(exe=(PYTHON_EXE, "curl", "node"), ports=(node_port, py.port))
        out = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "10",
                              node.url("/from-node.txt")], capture_output=True, text=True,
                             timeout=15)
        self.assertEqual(out.stdout, "downstream 200\n", out)

        sdk: list[dict] = []
        for _ in deadline_loop(10.0, 0.1):
            sdk = [json.loads(l)["sdkSpan"] for l in node.stdout_lines if '"sdkSpan"' in l]
            if any(s["kind"] == "CLIENT" for s in sdk) and any(s["kind"] == "SERVER" for s in sdk):
                break
        sdk_client = [s for s in sdk if s["kind"] == "CLIENT"]
        sdk_server = [s for s in sdk if s["kind"] == "SERVER"]
        self.assertEqual((len(sdk_client), len(sdk_server)), (1, 1),
                         f"SDK spans: {sdk}\n{node.describe()}")
        sdk_client, sdk_server = sdk_client[0], sdk_server[0]
        self.assertEqual(sdk_client["traceId"], sdk_server["traceId"])
        self.assertEqual(sdk_client["parentSpanId"], sdk_server["spanId"])

        spans = wait_for_spans(agent, lambda ss: any(s.pid == py.pid for s in ss)
                               and len([s for s in ss if s.pid == node.pid]) >= 2)
        py_srv = self.one(spans, "the Python service's SERVER span",
                          lambda s: s.pid == py.pid and s.is_server)
        self.assertEqual(py_srv.trace_id, sdk_client["traceId"], py_srv.brief())
        self.assertEqual(py_srv.parent_span_id, sdk_client["spanId"], py_srv.brief())
        self.assertEqual(py_srv.attrs.get("threadline.parent.source"), "header")
        self.assertEqual(py_srv.attrs.get("url.path"), "/from-node.txt")
        self.assertEqual(py_srv.attrs.get("http.response.status_code"), 200)
        self.assertEqual(py_srv.service, "http.server")
        # The agent's own CLIENT span for Node's call joins the SDK's trace under the SDK's
        # CLIENT span and links to it, instead of inventing a conflicting parent.
        node_cli = self.one(spans, "the agent's CLIENT span of node",
                            lambda s: s.pid == node.pid and s.is_client)
        self.assertEqual(node_cli.trace_id, sdk_client["traceId"], node_cli.brief())
        self.assertEqual(node_cli.parent_span_id, sdk_client["spanId"], node_cli.brief())
        self.assertEqual(node_cli.attrs.get("threadline.parent.source"), "header")
        self.assertEqual([(l.get("traceId"), l.get("spanId")) for l in node_cli.links],
                         [(sdk_client["traceId"], sdk_client["spanId"])], node_cli.brief())
        self.assertNotIn(node_cli.span_id, {sdk_client["spanId"], sdk_server["spanId"]})
        node_srv = self.one(spans, "the agent's SERVER span of node",
                            lambda s: s.pid == node.pid and s.is_server)
        self.assertEqual(node_srv.attrs.get("url.path"), "/from-node.txt")
        self.assertEqual(node_srv.service, "node-frontend")
        self.assertEqual(node_cli.service, "node-frontend")
        self.assert_inside(py_srv, node_cli)

    # -- 7. resources -----------------------------------------------------------------------
    def test_resource_attributes_from_the_process_environment(self):
        checkout = self.http_server(env={
            "OTEL_SERVICE_NAME": "checkout",
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=ignored,team=payments"})
        inventory = self.http_server(env={
            "OTEL_RESOURCE_ATTRIBUTES": "service.name=inventory,deployment.environment=test"})
        agent = self.start_agent(ports=(checkout.port, inventory.port))
        for p in (checkout, inventory):
            self.assertEqual(self.curl_with_port(p.url("/"))[0], 200)
        spans = wait_for_spans(agent, lambda ss: any(s.pid == checkout.pid for s in ss)
                               and any(s.pid == inventory.pid for s in ss))
        c = self.one(spans, "checkout span", lambda s: s.pid == checkout.pid)
        i = self.one(spans, "inventory span", lambda s: s.pid == inventory.pid)
        self.assertEqual(c.resource.get("service.name"), "checkout", c.resource)
        self.assertEqual(c.resource.get("team"), "payments", c.resource)
        self.assertEqual(i.resource.get("service.name"), "inventory", i.resource)
        self.assertEqual(i.resource.get("deployment.environment"), "test", i.resource)
        for s, p in ((c, checkout), (i, inventory)):
            r = s.resource
            self.assertEqual(r.get("process.pid"), p.pid, r)
            self.assertEqual(r.get("host.name"), socket.gethostname(), r)
            self.assertEqual(r.get("telemetry.distro.name"), "threadline", r)
            self.assertEqual(r.get("process.executable.path"), os.path.realpath(PYTHON), r)
            self.assertEqual(r.get("process.executable.name"), PYTHON_EXE, r)
            self.assertIn(f"http.server {p.port}", r.get("process.command_line", ""), r)
            self.assertTrue(r.get("service.instance.id"), r)
        self.assertNotEqual(c.resource["service.instance.id"], i.resource["service.instance.id"])

    # -- 8. no secrets in the output --------------------------------------------------------
    def test_query_secrets_redacted_and_authorization_never_output(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        secret = "s3cr3t" + secrets.token_hex(8)
        auth = "Bearer authz" + secrets.token_hex(8)
        # The client takes URL and header on stdin: this test is about what the spans carry.
        out = run_python(STDIN_CLIENT, stdin=json.dumps({
            "url": peer.url(f"/search?token={secret}&page=2"),
            "headers": {"Authorization": auth}}))
        client_pid = json.loads(out.stdout)["pid"]
        spans = wait_for_spans(agent, lambda ss: any(s.pid == peer.pid for s in ss)
                               and any(s.pid == client_pid for s in ss))
        srv = self.one(spans, "server span", lambda s: s.pid == peer.pid)
        cli = self.one(spans, "client span", lambda s: s.pid == client_pid)
        for s in (srv, cli):
            self.assertEqual(s.attrs.get("url.query"), "token=REDACTED&page=2", s.brief())
            self.assertEqual(s.attrs.get("url.path"), "/search")
        self.assertEqual(cli.attrs.get("url.full"),
                         peer.url("/search?token=REDACTED&page=2"))
        self.stop_agent(agent)
        everything = "\n".join(agent.stdout_lines + agent.stderr_lines)
        self.assertNotIn(secret, everything)
        self.assertNotIn(auth.split()[1], everything)

    def test_secrets_in_a_clients_command_line_are_redacted(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        secret = "s3cr3t" + secrets.token_hex(8)
        auth = "authz" + secrets.token_hex(8)
        # Like `curl -H 'Authorization: Bearer X' 'http://host/?token=Y'`, but alive long
        # enough for the agent to read its whole command line from /proc (a client gone before
        # that is named from its exec event, whose argv stops at 255 bytes: this script's
        # source alone takes most of them).
        client = r"""
import sys, time, urllib.request
h = sys.argv[2].split(": ", 1)
urllib.request.urlopen(urllib.request.Request(sys.argv[3], headers={h[0]: h[1]}), timeout=10).read()
time.sleep(1.0)
"""
        run_python(client, "-H", f"Authorization: Bearer {auth}",
                   peer.url(f"/search?token={secret}&page=2"))
        spans = wait_for_spans(agent, lambda ss: any(s.is_client for s in ss))
        cli = self.one(spans, "the client's span", lambda s: s.is_client)
        # The command line was read, with only the secret values replaced.
        cmdline = cli.resource.get("process.command_line", "")
        self.assertIn("-H Authorization: REDACTED ", cmdline, cli.resource)
        self.assertIn("/search?token=REDACTED&page=2", cmdline, cli.resource)
        self.stop_agent(agent)
        everything = "\n".join(agent.stdout_lines)
        self.assertNotIn(secret, everything)
        self.assertNotIn(auth, everything)

    # -- 9. bad input -----------------------------------------------------------------------
    def test_garbage_and_huge_headers_give_no_span_and_no_crash(self):
        peer = self.http_peer()
        agent = self.start_agent(ports=(peer.port,))
        rss_before = agent_rss_kb(agent.pid)
        huge = b"GET /huge HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-Fill-%04d: %s\r\n" % (n, b"a" * 1000) for n in range(1024)) + b"\r\n"
        payloads = {  # name: (bytes, write size)
            "binary": (secrets.token_bytes(3000), 0),
            "tls-hello": (bytes.fromhex("160301020001000200") + secrets.token_bytes(500), 0),
            "bad-start-line": (b"GET /bad\x00line HTTP/9.9.9 junk\r\n\r\n" * 4, 0),
            "bad-header": (b"GET /bad-header HTTP/1.1\r\nHost: x\r\nno colon here\r\n"
                           b"\x01\x02\x03: \xff\r\n\r\n", 0),
            # 1 MiB of headers: in one write (the agent captures a prefix), and in 1 KiB writes
            # (every byte captured: the parser must stop at its header-block limit).
            "huge-headers-one-write": (huge, 0),
            "huge-headers-small-writes": (huge, 1024),
        }
        for name, (payload, piece) in payloads.items():
            run_python(RAW_CLIENT, str(peer.port), str(piece), stdin=payload.hex())
            self.assertIsNone(agent.proc.poll(), f"agent died after {name}\n{agent.describe()}")
        # Still working: a good request afterwards gives its spans.
        status, curl_pid, _ = self.curl_with_port(peer.url("/after-garbage"))
        self.assertEqual(status, 200)
        spans = wait_for_spans(agent, lambda ss: any(s.pid == curl_pid for s in ss)
                               and any(s.attrs.get("url.path") == "/after-garbage"
                                       and s.pid == peer.pid for s in ss))
        bad = [s for s in spans if s.attrs.get("url.path") != "/after-garbage"]
        self.assertEqual(bad, [], "spans from garbage:\n" + format_spans(bad))
        self.assertLess(agent_rss_kb(agent.pid) - rss_before, 64 * 1024, "agent memory grew")
        stats = self.stop_agent(agent)
        failures = {k: v for k, v in stats.items() if k.startswith("threadline_parse_failures_total")}
        self.assertGreater(sum(failures.values()), 0,
                           "no parse failure counted\n" + "\n".join(agent.stderr_lines[-60:]))
        self.assertGreater(
            failures.get("threadline_parse_failures_total{protocol=http1,reason=header_too_large}", 0),
            0, f"the 1 MiB header block was not counted as too large: {failures}")

    # -- 10. console output -----------------------------------------------------------------
    def test_console_prints_a_tree_with_services_and_durations(self):
        b = self.http_server({"b.txt": b"from service B\n"})
        a = self.http_peer(env={"OTEL_SERVICE_NAME": "frontend"})
        agent = self.start_agent(ports=(a.port, b.port), output="console")
        status, _, _ = self.curl_with_port(a.url(f"/call?url={b.url('/b.txt')}"))
        self.assertEqual(status, 200)
        duration = r"\d+(\.\d+)?(ns|us|µs|ms|s)\b"

        def tree_printed() -> bool:
            text = "\n".join(agent.stdout_lines)
            return ("[CLIENT] frontend" in text and "[SERVER] http.server" in text
                    and "[SERVER] frontend" in text and "[CLIENT] curl" in text)
        for _ in deadline_loop(15.0, 0.2):
            if tree_printed():
                break
        lines = agent.stdout_lines
        text = "\n".join(lines)
        self.assertTrue(tree_printed(), text + "\n" + agent.describe())
        # One trace, each call indented under its caller:
        #   trace <id> (4 spans)
        #     GET /call [CLIENT] curl 15.1ms ...
        #       GET /call [SERVER] frontend 11.3ms ...
        #         GET /b.txt [CLIENT] frontend 8.1ms ...
        #           GET /b.txt [SERVER] http.server 7.1ms ...
        markers = ["GET /call [CLIENT] curl ", "GET /call [SERVER] frontend ",
                   "GET /b.txt [CLIENT] frontend ", "GET /b.txt [SERVER] http.server "]
        first = next(i for i, l in enumerate(lines) if markers[0] in l)
        self.assertRegex(lines[first - 1], r"^trace [0-9a-f]{32} \(4 spans\)$", text)
        tree = lines[first:first + 4]
        indent = lambda l: len(l) - len(l.lstrip(" "))
        for depth, (marker, line) in enumerate(zip(markers, tree)):
            self.assertIn(marker, line, text)
            self.assertEqual(indent(line), indent(tree[0]) + 2 * depth, text)
            self.assertRegex(line, marker.replace("[", r"\[").replace("]", r"\]").replace(
                ".", r"\.") + duration, f"no duration on: {line}")
            self.assertIn("http.response.status_code=200", line)


def agent_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()

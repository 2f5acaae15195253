"""HTTPS without keys: plaintext taken from OpenSSL with uprobes, on real peers.

Each test runs a real HTTPS server (nginx and python3 link the system libssl.so.3; node carries
OpenSSL inside its own binary) with a self-signed certificate made here, fetches a path with
curl (libcurl, libssl.so.3), and asserts the trace a user would see: a SERVER span from the
server and a CLIENT span from curl, url.scheme https, the right path and status, in one trace.
curl starts after the agent and exits right after its one request; the node server starts after
the agent too (its binary is found at exec).

The events view is checked too: every DATA line of a TLS connection is plaintext from SSL_*
(no ciphertext ever shows up as data), with contiguous positions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

from e2e_util import (LOOPBACK, Agent, PeerProcess, nginx_peer, curl, format_events, format_spans,
                      free_port, main, require_root, require_tool, wait_for_spans)


def make_cert(directory: str) -> tuple[str, str]:
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def https_server(test: unittest.TestCase, cmd: list[str], port: int, cwd: str) -> PeerProcess:
    """A server started by a test (after its agent), stopped at cleanup."""
    return PeerProcess(cmd, test, port=port, cwd=cwd, ready_timeout=20)


def nginx_server(test: unittest.TestCase, tmp: str, cert: str, key: str, port: int,
                 http2: bool = False) -> PeerProcess:
    """nginx serving HTTPS (HTTP/1.1, and HTTP/2 by ALPN with `http2`) from libssl."""
    return nginx_peer(test, tmp, port, textwrap.dedent(f"""\
          server {{
            listen 127.0.0.1:{port} ssl{" http2" if http2 else ""};
            ssl_certificate {cert};
            ssl_certificate_key {key};
            location / {{ return 200 "nginx $uri\\n"; }}
            location /missing {{ return 404; }}
          }}"""))


PYTHON_SERVER = textwrap.dedent("""\
    import http.server, ssl, sys
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            code = 404 if self.path.startswith("/missing") else 200
            body = ("python " + self.path + "\\n").encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
    """)

NODE_SERVER = textwrap.dedent("""\
    const https = require('https'), fs = require('fs');
    const [port, cert, key] = process.argv.slice(2);
    https.createServer({cert: fs.readFileSync(cert), key: fs.readFileSync(key)}, (req, res) => {
      res.statusCode = req.url.startsWith('/missing') ? 404 : 200;
      res.end('node ' + req.url + '\\n');
    }).listen(+port, '127.0.0.1');
    """)



def assert_linked_https_pair(test: unittest.TestCase, agent: Agent, port: int, path: str,
                             client_pid: int, server_pid: int | None, status: int) -> None:
    """Waits for the CLIENT span of `client_pid` and a SERVER span (of `server_pid` if given)
    for one GET of `path` over HTTPS on this node, and checks what a user reads: scheme, method,
    status, the client's url.full, and the server span as the client span's child (both ends
    traced on one node: the tuple match)."""
    url_path = path.split("?")[0]

    def server_span(spans):
        return [s for s in spans if s.is_server and s.attrs.get("url.path") == url_path
                and (server_pid is None or s.pid == server_pid)]

    def client_span(spans):
        return [s for s in spans if s.is_client and s.pid == client_pid
                and s.attrs.get("url.path") == url_path]

    spans = wait_for_spans(agent, lambda sp: server_span(sp) and client_span(sp))
    server, client = server_span(spans)[0], client_span(spans)[0]
    for s in (server, client):
        test.assertEqual(s.attrs.get("url.scheme"), "https", s.brief())
        test.assertEqual(s.attrs.get("http.request.method"), "GET", s.brief())
        test.assertEqual(s.attrs.get("http.response.status_code"), status, s.brief())
    test.assertEqual(client.attrs.get("url.full"), f"https://{LOOPBACK}:{port}{path}")
    test.assertEqual(server.trace_id, client.trace_id, format_spans(spans))
    test.assertEqual(server.parent_span_id, client.span_id, format_spans(spans))

class TlsSpansTest(unittest.TestCase):
    def setUp(self) -> None:
        require_root(self)
        require_tool(self, "curl", "openssl")
        self.tmp = tempfile.mkdtemp(prefix="tl-e2e-tls-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cert, self.key = make_cert(self.tmp)
        self.port = free_port()

    def start_agent(self, output: str = "json") -> Agent:
        return Agent(["--output", output, "--port", str(self.port)], test=self)

    def assert_https_exchange(self, agent: Agent, server_pid: int | None, path: str,
                              status: int) -> None:
        r = curl(f"https://{LOOPBACK}:{self.port}{path}", "-k")
        self.assertEqual(r.stdout, str(status), f"curl: {r.stderr}")
        assert_linked_https_pair(self, agent, self.port, path, r.pid, server_pid, status)

    def test_curl_to_nginx(self) -> None:
        require_tool(self, "nginx")
        agent = self.start_agent()
        nginx = nginx_server(self, self.tmp, self.cert, self.key, self.port)
        self.assert_https_exchange(agent, None, "/x", 200)
        self.assert_https_exchange(agent, None, "/missing/y", 404)
        self.assertTrue(nginx.proc.poll() is None)

    def test_curl_to_python(self) -> None:
        agent = self.start_agent()
        script = os.path.join(self.tmp, "server.py")
        with open(script, "w") as f:
            f.write(PYTHON_SERVER)
        srv = https_server(self, [sys.executable, script, str(self.port), self.cert, self.key],
                           self.port, self.tmp)
        self.assert_https_exchange(agent, srv.pid, "/py/a?b=1", 200)

    def test_curl_to_node_started_after_the_agent(self) -> None:
        require_tool(self, "node")
        agent = self.start_agent()
        script = os.path.join(self.tmp, "server.js")
        with open(script, "w") as f:
            f.write(NODE_SERVER)
        srv = https_server(self, ["node", script, str(self.port), self.cert, self.key], self.port,
                           self.tmp)
        self.assert_https_exchange(agent, srv.pid, "/node/1", 200)
        self.assert_https_exchange(agent, srv.pid, "/missing", 404)
        self.assertTrue(any("TLS: uprobes attached to" in l and "node" in l
                            for l in agent.stderr_lines), agent.stderr_tail())

    def test_events_show_plaintext_only(self) -> None:
        agent = self.start_agent("events")
        script = os.path.join(self.tmp, "server.py")
        with open(script, "w") as f:
            f.write(PYTHON_SERVER)
        srv = https_server(self, [sys.executable, script, str(self.port), self.cert, self.key],
                           self.port, self.tmp)
        r = curl(f"https://{LOOPBACK}:{self.port}/plain", "-k")
        self.assertEqual(r.stdout, "200", r.stderr)

        def both_closed(evs):
            conns = {e.get("conn") for e in evs if e.kind == "DATA" and e.pid in (r.pid, srv.pid)}
            return len([e for e in evs if e.kind == "CLOSE" and e.get("conn") in conns]) >= 2

        self.assertTrue(agent.wait_for(both_closed), agent.describe())
        evs = [e for e in agent.events() if e.pid in (r.pid, srv.pid)]
        data = [e for e in evs if e.kind == "DATA"]
        self.assertTrue(data, format_events(evs))
        for e in data:
            self.assertIn(e.get("syscall"), ("SSL_read", "SSL_write"), format_events(evs))
        for pid, sent, received in ((r.pid, "GET /plain", "HTTP/1.1 200"),
                                    (srv.pid, "HTTP/1.1 200", "GET /plain")):
            for direction, start in (("egress", sent), ("ingress", received)):
                mine = sorted((e for e in data if e.pid == pid and e.get("dir") == direction),
                              key=lambda e: e.int("pos"))
                self.assertTrue(mine, format_events(evs))
                self.assertTrue(mine[0].data.startswith(start.encode()), format_events(evs))
                pos = 0
                for e in mine:
                    self.assertEqual(e.int("pos"), pos, format_events(evs))
                    self.assertEqual(e.int("captured"), e.int("size"))
                    pos += e.int("size")
                # The close reports the plaintext totals: no trailing gap.
                close = [e for e in evs if e.kind == "CLOSE" and e.get("conn") == mine[0].get("conn")][0]
                key = "sent" if direction == "egress" else "recv"
                self.assertEqual(close.int(key), pos, format_events(evs))


if __name__ == "__main__":
    main()

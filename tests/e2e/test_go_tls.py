"""HTTPS in Go programs: plaintext taken from crypto/tls with uprobes placed through Go's own
symbol table, on real Go peers built here with Debian's Go.

The server (tests/e2e/peers/go_https_server.go) is built stripped (-ldflags="-s -w": no ELF
symbol table, so only the pclntab can find crypto/tls), the client (go_https_client.go) is not.
Both speak HTTP/1.1 only (HTTP/2 is switched off in them: the agent parses HTTP/1.x). Each test
asserts the trace a user would see: a SERVER span from the Go server and a CLIENT span from the
client (curl or the Go client), url.scheme https, method, path and status, in one trace.

Every Go process starts after the agent, so its binary is found at exec (asynchronously: the
agent looks at the new executable on its attacher thread). A Go client that sends its request
within the first milliseconds of a binary never seen before can beat that attach: the first run
of the client binary holds its request (-wait) until the agent has logged the attach; later runs
of the same binary (same inode, probes already there) exit right after their one request.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from e2e_util import (LOOPBACK, Agent, PeerProcess, agent_metrics, agent_spans, curl,
                      format_events, format_spans, free_port, go_peer, main,
                      require_root, require_tool, wait_for_spans)
from test_tls import assert_linked_https_pair, https_server, make_cert


class GoTlsSpansTest(unittest.TestCase):
    def setUp(self) -> None:
        require_root(self)
        require_tool(self, "curl", "openssl")
        self.server_bin = go_peer(self, "go_https_server.go", "go_https_server", stripped=True)
        self.client_bin = go_peer(self, "go_https_client.go", "go_https_client")
        self.tmp = tempfile.mkdtemp(prefix="tl-e2e-go-tls-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.cert, self.key = make_cert(self.tmp)
        self.port = free_port()

    def start(self, output: str = "json") -> tuple[Agent, PeerProcess]:
        agent = Agent(["--output", output, "--port", str(self.port)], test=self)
        srv = https_server(self, [self.server_bin, f"{LOOPBACK}:{self.port}", self.cert, self.key],
                           self.port, self.tmp)
        self.wait_attached(agent, self.server_bin)
        return agent, srv

    def wait_attached(self, agent: Agent, binary: str) -> str:
        """The agent's log line saying it probed `binary` (found at exec)."""
        return agent.wait_logged("Go TLS: uprobes attached to", binary)

    def assert_pair(self, agent: Agent, server_pid: int, client_pid: int, path: str,
                    status: int) -> None:
        assert_linked_https_pair(self, agent, self.port, path, client_pid, server_pid, status)

    def run_client(self, *urls: str, held_for: Agent | None = None) -> tuple[list[str], int]:
        """Runs the Go client on `urls`: (the statuses it printed, its pid). With `held_for`,
        the client holds its first request (-wait) until that agent has logged the attach to
        the client binary."""
        argv = [self.client_bin, *(["-wait"] if held_for else []), *urls]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.addCleanup(p.kill)  # a no-op once communicate() has reaped it
        if held_for is not None:
            self.wait_attached(held_for, self.client_bin)
        out, err = p.communicate("\n" if held_for else None, timeout=30)
        self.assertEqual(p.returncode, 0, err)
        return out.split(), p.pid

    def test_curl_to_go_server(self) -> None:
        agent, srv = self.start()
        line = self.wait_attached(agent, self.server_bin)
        self.assertRegex(line, r"go1\.\d+")
        self.assertRegex(line, r"crypto/tls\.\(\*Conn\)\.Read \(entry \+ \d+ return instruction")
        for path, status in (("/go/x", 200), ("/missing/y", 404)):
            r = curl(f"https://{LOOPBACK}:{self.port}{path}", "-k")
            self.assertEqual(r.stdout, str(status), f"curl: {r.stderr}")
            self.assert_pair(agent, srv.pid, r.pid, path, status)
        self.assertTrue(srv.proc.poll() is None, "the Go server died under the probes")

    def test_go_client_to_go_server(self) -> None:
        agent, srv = self.start()
        # A client binary the agent has never seen: its first request waits for the attach.
        statuses, pid = self.run_client(f"https://{LOOPBACK}:{self.port}/go/first", held_for=agent)
        self.assertEqual(statuses, ["200"])
        self.assert_pair(agent, srv.pid, pid, "/go/first", 200)
        # Probes in place: a new process of that binary, one request, exits at once.
        statuses, pid = self.run_client(f"https://{LOOPBACK}:{self.port}/missing/again")
        self.assertEqual(statuses, ["404"])
        self.assert_pair(agent, srv.pid, pid, "/missing/again", 404)
        # Two requests on one keep-alive connection: each its own pair of spans.
        statuses, pid = self.run_client(f"https://{LOOPBACK}:{self.port}/ka/1",
                                        f"https://{LOOPBACK}:{self.port}/ka/2")
        self.assertEqual(statuses, ["200", "200"])
        self.assert_pair(agent, srv.pid, pid, "/ka/1", 200)
        self.assert_pair(agent, srv.pid, pid, "/ka/2", 200)
        self.assertTrue(srv.proc.poll() is None, "the Go server died under the probes")

    def test_events_show_go_plaintext_only(self) -> None:
        agent, srv = self.start("events")
        r = curl(f"https://{LOOPBACK}:{self.port}/plain", "-k")
        self.assertEqual(r.stdout, "200", r.stderr)

        def server_closed(evs):
            conns = {e.get("conn") for e in evs if e.kind == "DATA" and e.pid == srv.pid}
            return any(e.kind == "CLOSE" and e.get("conn") in conns for e in evs)

        self.assertTrue(agent.wait_for(server_closed), agent.describe())
        evs = [e for e in agent.events() if e.pid == srv.pid]
        data = [e for e in evs if e.kind == "DATA"]
        for e in data:  # never ciphertext: only what crypto/tls handed over
            self.assertIn(e.get("syscall"), ("go_tls_read", "go_tls_write"), format_events(evs))
        for direction, start in (("ingress", b"GET /plain HTTP/1.1"), ("egress", b"HTTP/1.1 200")):
            mine = sorted((e for e in data if e.get("dir") == direction), key=lambda e: e.int("pos"))
            self.assertTrue(mine, format_events(evs))
            self.assertTrue(mine[0].data.startswith(start), format_events(evs))
            pos = 0
            for e in mine:
                self.assertEqual(e.int("pos"), pos, format_events(evs))
                pos += e.int("size")
            close = [e for e in evs if e.kind == "CLOSE" and e.get("conn") == mine[0].get("conn")][0]
            self.assertEqual(close.int("sent" if direction == "egress" else "recv"), pos,
                             format_events(evs))

    def test_binary_already_probed_by_another_agent(self) -> None:
        """A second agent (a restart overlapping the old one) finds the same functions in a Go
        binary that already carries the first agent's uprobes, and traces it too."""
        first, srv = self.start()
        second = Agent(["--output", "json", "--port", str(self.port), "--metrics-address", "off"],
                       test=self)
        self.wait_attached(second, self.server_bin)
        self.assertFalse([l for l in second.stderr_lines if "not probed" in l and self.server_bin in l],
                         second.stderr_tail())
        r = curl(f"https://{LOOPBACK}:{self.port}/twice", "-k")
        self.assertEqual(r.stdout, "200", f"curl: {r.stderr}")
        for agent in (first, second):
            self.assert_pair(agent, srv.pid, r.pid, "/twice", 200)

    def test_unknown_go_version_is_refused_and_counted(self) -> None:
        """A Go binary whose version has no known tls.Conn layout is left alone (logged once,
        counted), never probed with guessed offsets; the program itself keeps working."""
        with open(self.server_bin, "rb") as f:
            image = bytearray(f.read())
        magic = image.find(b"\xff Go buildinf:")
        self.assertGreaterEqual(magic, 0)
        version_at = magic + 33  # 32-byte header, then a one-byte varint length
        m = re.match(rb"go1\.\d\d", bytes(image[version_at:version_at + 6]))
        self.assertIsNotNone(m, image[version_at:version_at + 16])
        image[version_at:version_at + 6] = b"go1.99"  # same length: nothing else moves
        future = os.path.join(self.tmp, "go_future_server")
        with open(future, "wb") as f:
            f.write(image)
        os.chmod(future, 0o755)

        agent = Agent(["--output", "json", "--port", str(self.port)], test=self)
        future_pids = []
        for run in range(2):  # two processes of one file: one look, one log line
            srv = https_server(self, [future, f"{LOOPBACK}:{self.port}", self.cert, self.key],
                               self.port, self.tmp)
            future_pids.append(srv.pid)
            r = curl(f"https://{LOOPBACK}:{self.port}/future", "-k")
            self.assertEqual(r.stdout, "200", f"curl: {r.stderr}")
            srv.stop()
        # Its TLS stays undecrypted: no span from it (its ciphertext is never parsed either).
        # First a marker: both servers have exited, so all they did is in the kernel's ring
        # ahead of a plain HTTP exchange on the same port; once that exchange's span is out
        # (spans leave in the order the ring is read), a span of theirs would be out too.
        marker = PeerProcess([sys.executable, "-m", "http.server", str(self.port), "--bind", LOOPBACK],
                             self, port=self.port, cwd=self.tmp)
        self.assertEqual(curl(f"http://{LOOPBACK}:{self.port}/marker").stdout, "404")
        wait_for_spans(agent, lambda ss: any(s.is_server and s.pid == marker.pid for s in ss))
        self.assertFalse([s for s in agent_spans(agent) if s.pid in future_pids or (s.is_server and s.pid != marker.pid)],
                         format_spans(agent_spans(agent)))
        marker.stop()
        rc = agent.stop()
        self.assertEqual(rc, 0, agent.describe())
        # Read after the stop: the look at an exec'd file is logged from the attacher thread.
        warnings = [l for l in agent.stderr_lines
                    if "Go TLS:" in l and future in l and "go_unknown_version" in l]
        self.assertEqual(len(warnings), 1, agent.stderr_tail())
        self.assertIn("go1.99", warnings[0])
        self.assertFalse(any("uprobes attached to" in l and future in l for l in agent.stderr_lines))
        counters = agent_metrics(agent.stderr_lines)
        self.assertEqual(counters.get("threadline_tls_files_skipped_total{reason=go_unknown_version}"),
                         1, agent.stderr_tail())


if __name__ == "__main__":
    main()

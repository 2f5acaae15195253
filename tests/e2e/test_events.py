"""The events view (--output=events) against real curl and python http.server on loopback.

The Done-when scenario of the capture milestone: a user runs the agent, fetches a page with
curl from `python3 -m http.server`, and sees both ends of the connection (OPEN, DATA in both
directions with consistent stream positions, CLOSE), and nothing of the agent itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import unittest

from e2e_util import (CONN_KINDS, Agent, Event, HttpServer, agent_bin, build_dir, curl,
                      format_events, main, require_root)


def conn_events(evs: list[Event], conn: str, kind: str | None = None) -> list[Event]:
    return [e for e in evs if e.get("conn") == conn and (kind is None or e.kind == kind)]


def data_events(evs: list[Event], conn: str, direction: str) -> list[Event]:
    return sorted((e for e in conn_events(evs, conn, "DATA") if e.get("dir") == direction),
                  key=lambda e: e.int("pos"))


def stream_bytes(evs: list[Event], conn: str, direction: str) -> int:
    """Bytes of one direction of a connection, from DATA (pos+size) and GAP (pos+len) lines."""
    end = 0
    for e in conn_events(evs, conn):
        if e.get("dir") != direction:
            continue
        if e.kind == "DATA":
            end = max(end, e.int("pos") + e.int("size"))
        elif e.kind == "GAP":
            end = max(end, e.int("pos") + e.int("len"))
    return end


def assert_stream_contiguous(test: unittest.TestCase, evs: list[Event], conn: str,
                             direction: str) -> None:
    """DATA and GAP lines of one direction cover [0, end) with no hole."""
    spans = []
    for e in conn_events(evs, conn):
        if e.get("dir") != direction:
            continue
        if e.kind == "DATA":
            spans.append((e.int("pos"), e.int("pos") + e.int("size")))
        elif e.kind == "GAP":
            spans.append((e.int("pos"), e.int("pos") + e.int("len")))
    spans.sort()
    covered = 0
    for start, end in spans:
        test.assertLessEqual(start, covered,
                             f"hole in {conn} {direction} stream at byte {covered}:\n"
                             + format_events(conn_events(evs, conn)))
        covered = max(covered, end)


def assert_data_fields(test: unittest.TestCase, e: Event) -> None:
    for key in ("pid", "tid", "comm", "conn", "dir", "pos", "size", "captured", "syscall"):
        test.assertIn(key, e.fields, f"DATA line without {key}=: {e.raw}")
    test.assertIn("data", e.fields, f"DATA line without data=: {e.raw}")
    test.assertLessEqual(e.int("captured"), e.int("size"), e.raw)
    test.assertEqual(len(e.data), min(e.int("captured"), 256),
                     f"data= holds {len(e.data)} bytes, expected min(captured, 256): {e.raw}")


def assert_conn_order(test: unittest.TestCase, evs: list[Event], conn: str) -> None:
    """In output order, a connection's OPEN comes first and its CLOSE last."""
    lines = conn_events(evs, conn)
    kinds = [e.kind for e in lines]
    test.assertEqual(kinds[0], "OPEN", f"{conn} does not start with OPEN:\n"
                     + format_events(lines))
    test.assertEqual(kinds.count("CLOSE"), 1, f"{conn} has {kinds.count('CLOSE')} CLOSE lines:\n"
                     + format_events(lines))
    test.assertEqual(kinds[-1], "CLOSE", f"{conn} does not end with CLOSE:\n"
                     + format_events(lines))


def own_named_agent_binary() -> str:
    """The agent binary under a name of this test process's own (a symlink), so the agent and
    the helpers it forks have a comm no other process has: on a shared machine other agents
    (other builds, not excluded as copies of this binary) are legitimately traced."""
    name = f"tl-ev-{os.getpid() % 10**8}"  # comm keeps 15 bytes
    folder = os.path.join(build_dir(), "e2e-peers")
    os.makedirs(folder, exist_ok=True)
    link = os.path.join(folder, name)
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.path.abspath(agent_bin()), link)
    return link


def assert_not_self(test: unittest.TestCase, agent: Agent) -> None:
    """Nothing of the agent itself (its pid, or a helper it forked: same comm) was reported."""
    comm = os.path.basename(agent.args[0])[:15]
    own = [e for e in agent.events() if e.pid == agent.pid or e.get("comm") == comm]
    test.assertEqual(own, [], "the agent reported its own activity:\n" + format_events(own))


def find_client_open(evs: list[Event], pid: int, port: int) -> Event | None:
    for e in evs:
        if (e.kind == "OPEN" and e.pid == pid and e.get("role") == "client"
                and e.remote_port() == port):
            return e
    return None


def find_server_open(evs: list[Event], pid: int, port: int,
                     peer_port: int | None) -> Event | None:
    for e in evs:
        if (e.kind == "OPEN" and e.pid == pid and e.get("role") == "server"
                and e.local_port() == port
                and (peer_port is None or e.remote_port() == peer_port)):
            return e
    return None


def exchange_seen(evs: list[Event], client_pid: int, server_pid: int, port: int) -> bool:
    """Both ends of curl -> http.server opened and closed (used to stop waiting early)."""
    c = find_client_open(evs, client_pid, port)
    if c is None:
        return False
    s = find_server_open(evs, server_pid, port, c.local_port())
    return (s is not None and bool(conn_events(evs, c.get("conn"), "CLOSE"))
            and bool(conn_events(evs, s.get("conn"), "CLOSE")))


class EventsTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def run_exchange(self, agent_args: list[str], server: HttpServer, path: str = "/"):
        agent = Agent(agent_args, self, binary=own_named_agent_binary())
        c = curl(server.url(path))
        self.assertEqual((c.returncode, c.stdout), (0, "200"), f"curl failed: {c.stderr}")
        agent.wait_for(lambda evs: exchange_seen(evs, c.pid, server.pid, server.port))
        rc = agent.stop()
        self.assertEqual(rc, 0, agent.describe())
        return agent, c

    def check_exchange(self, agent: Agent, c, server: HttpServer, response_body: bytes,
                       path: str = "/"):
        """Everything a user should see of one curl -> http.server exchange."""
        evs = agent.events()
        ctx = "\n" + agent.describe()

        copen = find_client_open(evs, c.pid, server.port)
        self.assertIsNotNone(copen, f"no OPEN role=client for curl pid {c.pid} to port "
                             f"{server.port}{ctx}")
        self.assertEqual(copen.get("comm"), "curl", copen.raw)
        self.assertEqual(copen.get("src"), "connect", copen.raw)
        cconn = copen.get("conn")
        self.assertTrue(cconn.startswith(f"{c.pid}/"), f"conn id is not pid/fd#gen: {copen.raw}")

        sopen = find_server_open(evs, server.pid, server.port, copen.local_port())
        self.assertIsNotNone(sopen, f"no OPEN role=server for http.server pid {server.pid} on "
                             f"port {server.port} from curl's port {copen.local_port()}{ctx}")
        self.assertEqual(sopen.get("src"), "accept", sopen.raw)
        self.assertEqual(sopen.remote_port(), copen.local_port())
        self.assertEqual(copen.endpoint("local")[0], sopen.endpoint("remote")[0])
        sconn = sopen.get("conn")

        # Request: curl egress == server ingress.
        creq = data_events(evs, cconn, "egress")
        sreq = data_events(evs, sconn, "ingress")
        self.assertTrue(creq, f"no egress DATA for curl's {cconn}{ctx}")
        self.assertTrue(sreq, f"no ingress DATA for the server's {sconn}{ctx}")
        self.assertEqual(creq[0].int("pos"), 0, creq[0].raw)
        self.assertTrue(creq[0].data.startswith(f"GET {path} HTTP/1.1\r\n".encode()),
                        creq[0].raw)
        self.assertEqual(sreq[0].int("pos"), 0, sreq[0].raw)
        self.assertTrue(sreq[0].data.startswith(b"GET "), sreq[0].raw)
        self.assertEqual(sreq[0].int("size"), creq[0].int("size"),
                         f"server's first ingress size != curl's first egress size:\n"
                         f"{creq[0].raw}\n{sreq[0].raw}")
        self.assertEqual(stream_bytes(evs, sconn, "ingress"), stream_bytes(evs, cconn, "egress"))

        # Response: server egress == curl ingress.
        sresp = data_events(evs, sconn, "egress")
        cresp = data_events(evs, cconn, "ingress")
        self.assertTrue(sresp, f"no egress DATA for the server's {sconn}{ctx}")
        self.assertTrue(cresp, f"no ingress DATA for curl's {cconn}{ctx}")
        self.assertEqual(sresp[0].int("pos"), 0, sresp[0].raw)
        self.assertIn(b"HTTP/1.0 200", sresp[0].data, sresp[0].raw)
        self.assertEqual(cresp[0].int("pos"), 0, cresp[0].raw)
        self.assertTrue(cresp[0].data.startswith(b"HTTP/1.0 200"), cresp[0].raw)
        resp_bytes = stream_bytes(evs, sconn, "egress")
        self.assertEqual(stream_bytes(evs, cconn, "ingress"), resp_bytes)
        self.assertGreater(resp_bytes, len(response_body))

        for conn in (cconn, sconn):
            for d in ("egress", "ingress"):
                assert_stream_contiguous(self, evs, conn, d)
                for e in data_events(evs, conn, d):
                    assert_data_fields(self, e)
            assert_conn_order(self, evs, conn)

        # CLOSE counts agree with the streams.
        cclose = conn_events(evs, cconn, "CLOSE")[0]
        sclose = conn_events(evs, sconn, "CLOSE")[0]
        self.assertEqual(cclose.int("sent"), stream_bytes(evs, cconn, "egress"), cclose.raw)
        self.assertEqual(cclose.int("recv"), stream_bytes(evs, cconn, "ingress"), cclose.raw)
        self.assertEqual(sclose.int("sent"), stream_bytes(evs, sconn, "egress"), sclose.raw)
        self.assertEqual(sclose.int("recv"), stream_bytes(evs, sconn, "ingress"), sclose.raw)
        self.assertIn(cclose.get("reason"), ("close", "process-exit"), cclose.raw)

        # Every line of either connection is attributed to the right process.
        for e in conn_events(evs, cconn):
            self.assertEqual(e.pid, c.pid, e.raw)
        for e in conn_events(evs, sconn):
            self.assertEqual(e.pid, server.pid, e.raw)
        assert_not_self(self, agent)
        return copen, sopen

    def test_curl_to_http_server_both_ends(self):
        """(a) curl -> python http.server: OPEN/DATA/CLOSE on both ends, positions agree."""
        server = HttpServer(self)
        agent, c = self.run_exchange(["--output=events"], server)
        copen, sopen = self.check_exchange(agent, c, server, HttpServer.INDEX)
        self.assertEqual(copen.get("remote"), f"127.0.0.1:{server.port}")
        self.assertEqual(sopen.get("local"), f"127.0.0.1:{server.port}")
        creq = data_events(agent.events(), copen.get("conn"), "egress")
        self.assertTrue(creq[0].data.startswith(b"GET / HTTP/1.1\r\n"), creq[0].raw)
        self.assertIn(f"Host: 127.0.0.1:{server.port}\r\n".encode(), creq[0].data, creq[0].raw)

    def test_large_response_positions(self):
        """A 300 KB response: many DATA lines, contiguous positions, byte counts agree."""
        body = bytes(range(256)) * 1200
        server = HttpServer(self, files={"big.bin": body})
        agent, c = self.run_exchange(["--output=events"], server, "/big.bin")
        self.check_exchange(agent, c, server, body, "/big.bin")

    def test_ipv6_endpoints(self):
        """curl -> http.server on [::1]: endpoints print as [::1]:PORT."""
        server = HttpServer(self, host="::1")
        agent, c = self.run_exchange(["--output=events"], server)
        copen, sopen = self.check_exchange(agent, c, server, HttpServer.INDEX)
        self.assertEqual(copen.get("remote"), f"[::1]:{server.port}", copen.raw)
        self.assertEqual(sopen.get("local"), f"[::1]:{server.port}", sopen.raw)

    def test_agent_never_shows_itself(self):
        """(e) with no filter, nothing the agent itself does is reported."""
        server = HttpServer(self)
        agent = Agent(["--output=events"], self, binary=own_named_agent_binary())
        for _ in range(3):
            curl(server.url("/"))
        agent.wait_for(lambda evs: sum(1 for e in evs if e.kind == "CLOSE") >= 6)
        self.assertEqual(agent.stop(), 0, agent.describe())
        self.assertTrue(any(e.kind in CONN_KINDS for e in agent.events()), agent.describe())
        assert_not_self(self, agent)

    def test_connection_opened_before_the_agent(self):
        """A keep-alive connection established before the agent started is picked up on its
        next I/O: OPEN src=first-io with the right tuple and role (server role found from the
        listening sockets), then the second request's bytes on both ends."""
        server = subprocess.Popen([sys.executable, "-c", KEEPALIVE_SERVER],
                                  stdout=subprocess.PIPE, text=True)
        self.addCleanup(server.kill)
        port = int(server.stdout.readline())
        client = subprocess.Popen([sys.executable, "-c", KEEPALIVE_CLIENT, str(port)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(client.kill)
        self.assertEqual(client.stdout.readline().strip(), "first 200")
        agent = Agent(["--output=events"], self)  # the connection already exists
        client.stdin.write("go\n")
        client.stdin.flush()
        self.assertEqual(client.stdout.readline().strip(), "second 200")
        agent.wait_for(lambda evs: sum(1 for e in evs if e.kind == "DATA" and
                                       e.pid in (client.pid, server.pid)) >= 4)
        self.assertEqual(agent.stop(), 0, agent.describe())
        evs = agent.events()
        ctx = "\n" + agent.describe()
        copen = [e for e in evs if e.kind == "OPEN" and e.pid == client.pid]
        sopen = [e for e in evs if e.kind == "OPEN" and e.pid == server.pid]
        self.assertEqual(len(copen), 1, ctx)
        self.assertEqual(len(sopen), 1, ctx)
        self.assertEqual(copen[0].get("src"), "first-io", copen[0].raw)
        self.assertEqual(sopen[0].get("src"), "first-io", sopen[0].raw)
        self.assertEqual(copen[0].get("role"), "client", copen[0].raw)
        self.assertEqual(sopen[0].get("role"), "server", sopen[0].raw)
        self.assertEqual(copen[0].get("remote"), f"127.0.0.1:{port}", copen[0].raw)
        self.assertEqual(sopen[0].get("local"), f"127.0.0.1:{port}", sopen[0].raw)
        self.assertEqual(copen[0].get("local"), sopen[0].get("remote"), ctx)
        creq = data_events(evs, copen[0].get("conn"), "egress")
        sreq = data_events(evs, sopen[0].get("conn"), "ingress")
        self.assertTrue(creq and creq[0].data.startswith(b"GET /second HTTP/1.1\r\n"), ctx)
        self.assertTrue(sreq and sreq[0].data.startswith(b"GET /second HTTP/1.1\r\n"), ctx)
        # Positions count from the first byte the agent saw.
        self.assertEqual(creq[0].int("pos"), 0, creq[0].raw)
        self.assertEqual(sreq[0].int("pos"), 0, sreq[0].raw)
        sresp = data_events(evs, sopen[0].get("conn"), "egress")
        self.assertTrue(sresp and sresp[0].data.startswith(b"HTTP/1.1 200"), ctx)


KEEPALIVE_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"ok " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""

KEEPALIVE_CLIENT = r"""
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
c.request("GET", "/first"); r = c.getresponse(); r.read()
print("first", r.status, flush=True)
sys.stdin.readline()
c.request("GET", "/second"); r = c.getresponse(); r.read()
print("second", r.status, flush=True)
sys.stdin.readline()
"""


if __name__ == "__main__":
    main()

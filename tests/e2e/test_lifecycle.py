"""Starting and stopping the agent: --duration, signals, the exit summary, nothing left in the
kernel afterwards, two agents at once, and traced processes that die mid-connection."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import unittest

from e2e_util import (STOP_TIMEOUT, Agent, HttpServer, curl, deadline_loop, describe_progs,
                      format_events, leaked_tl_progs, main, prog_pids, _prog_holders, require_root, tl_progs)


def owned_tl_prog_ids(pids: set[int], timeout: float = 5.0) -> set[int]:
    """ids of the tl_ programs the given processes hold (fds to the program or its links)."""
    ids: set[int] = set()
    for _ in deadline_loop(timeout, 0.2):
        holders = _prog_holders()
        ids = {p["id"] for p in tl_progs() if prog_pids(p, holders) & pids}
        if ids:
            break
    return ids


class StopTest(unittest.TestCase):
    def setUp(self):
        require_root(self)
        self.baseline = {p["id"] for p in tl_progs()}

    def assert_nothing_left(self, owned: set[int]) -> None:
        leaked = leaked_tl_progs(self.baseline, owned)
        self.assertEqual(leaked, [], "tl_ BPF programs still loaded after the agent exited:\n"
                         + describe_progs(leaked))

    def start(self, *args: str) -> tuple[Agent, set[int]]:
        agent = Agent(["--output=events", *args], self)
        owned = owned_tl_prog_ids({agent.pid})
        self.assertTrue(owned, "bpftool shows no tl_ programs held by the running agent "
                        f"(pid {agent.pid}):\n" + describe_progs(tl_progs()))
        return agent, owned

    def test_sigint_clean_stop_and_summary(self):
        """(h) SIGINT: exit 0, stats summary on stderr, no tl_ programs left."""
        server = HttpServer(self)
        agent, owned = self.start()
        curl(server.url())
        rc = agent.stop(signal.SIGINT)
        self.assertEqual(rc, 0, agent.describe())
        err = "\n".join(agent.stderr_lines)
        self.assertIn("events received", err, f"no stats summary at exit\n{agent.describe()}")
        self.assertIn("lost", err, f"no loss counts at exit\n{agent.describe()}")
        self.assert_nothing_left(owned)

    def test_sigterm_stop(self):
        """(g) SIGTERM: exit 0 in time, nothing left."""
        agent, owned = self.start()
        self.assertEqual(agent.stop(signal.SIGTERM), 0, agent.describe())
        self.assert_nothing_left(owned)

    def test_duration(self):
        """(g) --duration 3: stops by itself after about 3 s with exit code 0."""
        started = time.monotonic()
        agent, owned = self.start("--duration", "3")
        ready = time.monotonic()
        rc = agent.wait_exit(3 + STOP_TIMEOUT)
        ended = time.monotonic()
        self.assertIsNotNone(rc, f"still running {ended - ready:.1f}s after ready with "
                             f"--duration 3\n{agent.describe()}")
        self.assertEqual(rc, 0, agent.describe())
        self.assertGreaterEqual(ended - started, 2.5, "stopped well before --duration elapsed")
        self.assert_nothing_left(owned)

    def test_sigkill_leaves_nothing(self):
        """Even when killed outright, no tl_ program stays attached (links die with the fds)."""
        agent, owned = self.start()
        agent.proc.kill()
        self.assertIsNotNone(agent.wait_exit(STOP_TIMEOUT))
        self.assert_nothing_left(owned)

    def test_two_agents_at_once(self):
        """(h) two agents side by side: both trace, both stop cleanly, nothing left."""
        server = HttpServer(self)
        a = Agent(["--output=events"], self)
        b = Agent(["--output=events"], self)
        owned = owned_tl_prog_ids({a.pid}) | owned_tl_prog_ids({b.pid})
        c = curl(server.url())
        self.assertEqual(c.stdout, "200", c.stderr)
        for agent in (a, b):
            agent.wait_for(lambda evs: any(e.kind == "CLOSE" and e.pid == c.pid for e in evs))
        self.assertEqual(a.stop(), 0, a.describe())
        self.assertEqual(b.stop(), 0, b.describe())
        for agent in (a, b):
            evs = agent.events()
            self.assertTrue(any(e.kind == "OPEN" and e.pid == c.pid for e in evs),
                            f"agent {agent.pid} missed curl\n{agent.describe()}")
            self.assertTrue(any(e.kind == "DATA" and e.pid == c.pid for e in evs),
                            f"agent {agent.pid} missed curl's data\n{agent.describe()}")
            # Neither reports itself nor the other agent.
            agents = {a.pid, b.pid}
            mine = [e for e in evs if e.pid in agents]
            self.assertEqual(mine, [], format_events(mine))
        self.assertTrue(owned, "no tl_ programs seen while the agents ran")
        self.assert_nothing_left(owned)


CLIENT_DIES = r"""
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")   # half a request
os._exit(0)                                            # no close(): the kernel tears it down
"""


class ProcessExitTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def test_client_exits_mid_connection(self):
        """(i) a client that dies mid-request: EXIT line, its connection gets a CLOSE, and the
        agent keeps tracing."""
        server = HttpServer(self)
        agent = Agent(["--output=events"], self)
        p = subprocess.Popen([sys.executable, "-c", CLIENT_DIES, str(server.port)],
                             stdin=subprocess.DEVNULL)
        self.assertEqual(p.wait(timeout=20), 0)
        pid = p.pid

        def client_conn(evs):
            for e in evs:
                if e.kind == "OPEN" and e.pid == pid and e.get("role") == "client":
                    return e.get("conn")
            return None

        def closed(evs):
            conn = client_conn(evs)
            return (conn is not None and any(e.kind == "EXIT" and e.pid == pid for e in evs)
                    and any(e.kind == "CLOSE" and e.get("conn") == conn for e in evs))

        agent.wait_for(closed)
        self.assertIsNone(agent.proc.poll(), f"agent died\n{agent.describe()}")

        # Still tracing afterwards.
        c = curl(server.url())
        self.assertEqual(c.stdout, "200", c.stderr)
        agent.wait_for(lambda evs: any(e.kind == "CLOSE" and e.pid == c.pid for e in evs))
        self.assertEqual(agent.stop(), 0, agent.describe())

        evs = agent.events()
        ctx = "\n" + agent.describe()
        self.assertTrue(any(e.kind == "EXEC" and e.pid == pid for e in evs),
                        f"no EXEC line for the client pid {pid}{ctx}")
        exits = [e for e in evs if e.kind == "EXIT" and e.pid == pid]
        self.assertTrue(exits, f"no EXIT line for the client pid {pid}{ctx}")
        conn = client_conn(evs)
        self.assertIsNotNone(conn, f"no OPEN role=client for pid {pid}{ctx}")
        req = [e for e in evs if e.kind == "DATA" and e.get("conn") == conn
               and e.get("dir") == "egress"]
        self.assertTrue(req and req[0].data.startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
                        f"half request not captured{ctx}")
        closes = [e for e in evs if e.kind == "CLOSE" and e.get("conn") == conn]
        self.assertEqual(len(closes), 1, f"expected one CLOSE for {conn}{ctx}")
        self.assertIn(closes[0].get("reason"), ("process-exit", "close"), closes[0].raw)
        self.assertEqual(closes[0].int("sent"), req[0].int("size"), closes[0].raw)
        self.assertTrue(any(e.kind == "OPEN" and e.pid == c.pid for e in evs),
                        f"curl after the dead client not traced{ctx}")


if __name__ == "__main__":
    main()

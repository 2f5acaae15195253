"""The agent's command line: --probe, selection (--pid, --exe, --port), output options."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import unittest
import urllib.request

from e2e_util import (CONN_KINDS, Agent, Event, HttpServer, agent_bin, curl, deadline_loop,
                      format_events, free_port, lockdown_mode, main, parse_event,
                      require_agent_binary, require_root, run_agent_once, tl_progs)

PROBE_KINDS = ("syscall tracepoint", "tp_btf", "raw tracepoint", "uprobe", "uretprobe",
               "kprobe", "fentry", "sk_msg", "sockops", "ring buffer", "bpf_probe_write_user",
               "tcp header option", "uprobe session")
# The base hooks: the agent cannot work without them, so on any supported kernel they are there.
REQUIRED_KINDS = ("syscall tracepoint", "ring buffer")


def kernel_config_has(option: str) -> bool | None:
    """True/False from /proc/config.gz; None when the config is not readable."""
    import gzip
    try:
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    except OSError:
        return None
    if re.search(rf"^{option}=[ym]$", text, re.M):
        return True
    return False


def conn_lines(evs: list[Event]) -> list[Event]:
    return [e for e in evs if e.kind in CONN_KINDS]


def opens_by_conn(evs: list[Event]) -> dict[str, Event]:
    return {e.get("conn"): e for e in evs if e.kind == "OPEN"}


class ProbeTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def probe_line(self, out: str, kind: str) -> str | None:
        # The kind's own row: the kind name first on the line (after table decoration).
        for line in out.splitlines():
            if re.match(rf"^[\s|*-]*{re.escape(kind)}(?![\w-])", line, re.I):
                return line
        return None

    def test_probe_report(self):
        """(f) --probe prints every probe kind as works/unavailable and exits 0."""
        before = {p["id"] for p in tl_progs()}
        r = run_agent_once(["--probe"])
        ctx = f"\n--- stdout ---\n{r.stdout}\n--- stderr ---\n{r.stderr[-3000:]}"
        self.assertEqual(r.returncode, 0, ctx)
        rows = {}
        for kind in PROBE_KINDS:
            line = self.probe_line(r.stdout, kind)
            self.assertIsNotNone(line, f"--probe has no row for '{kind}'{ctx}")
            m = re.search(r"\b(works|unavailable)\b", line[len(kind):], re.I)
            self.assertIsNotNone(m, f"row for '{kind}' does not say works/unavailable: {line!r}")
            rows[kind] = m.group(1).lower()
        for kind in REQUIRED_KINDS:
            self.assertEqual(rows[kind], "works", f"base hook '{kind}' unavailable{ctx}")
        if kernel_config_has("CONFIG_KPROBES") is False or not os.path.exists(
                "/sys/kernel/tracing/kprobe_events"):
            self.assertEqual(rows["kprobe"], "unavailable",
                             f"kernel built without CONFIG_KPROBES, yet kprobe=yes{ctx}")
        if lockdown_mode() in ("integrity", "confidentiality"):
            self.assertEqual(rows["bpf_probe_write_user"], "unavailable",
                             f"lockdown={lockdown_mode()} forbids bpf_probe_write_user{ctx}")
        self.assertRegex(r.stdout, re.compile(r"hook", re.I),
                         f"--probe does not report the hook choices{ctx}")
        # Whatever the optional kinds say, the base path must be enough to run.
        self.assertIn("the agent can run on this kernel", r.stdout, ctx)
        self.assertRegex(r.stdout, r"socket syscalls\s+syscall tracepoints", ctx)
        # The probe programs are gone once --probe returns.
        left = [p for p in tl_progs() if p["id"] not in before and not p.get("pids")]
        self.assertEqual(left, [], f"--probe left BPF programs loaded: {left}")


class SelectionTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def test_pid_selects_one_server(self):
        """(b) --pid: only the chosen http.server's connections appear, not curl's or the other
        server's."""
        chosen, other = HttpServer(self), HttpServer(self)
        agent = Agent(["--output=events", "--pid", str(chosen.pid)], self)
        c1 = curl(chosen.url())
        c2 = curl(other.url())
        self.assertEqual((c1.stdout, c2.stdout), ("200", "200"), c1.stderr + c2.stderr)
        agent.wait_for(lambda evs: any(e.kind == "CLOSE" and e.pid == chosen.pid for e in evs))
        self.assertEqual(agent.stop(), 0, agent.describe())
        evs = agent.events()
        ctx = "\n" + agent.describe()

        stray = [e for e in conn_lines(evs) if e.pid != chosen.pid]
        self.assertEqual(stray, [], f"--pid {chosen.pid} but other pids reported:\n"
                         + format_events(stray))
        opens = [e for e in evs if e.kind == "OPEN" and e.get("role") == "server"
                 and e.local_port() == chosen.port]
        self.assertTrue(opens, f"no server OPEN for the chosen pid {chosen.pid}{ctx}")
        conn = opens[0].get("conn")
        self.assertTrue(any(e.kind == "DATA" and e.get("conn") == conn and e.get("dir") == "ingress"
                            and e.data.startswith(b"GET / HTTP/1.1") for e in evs), ctx)
        self.assertTrue(any(e.kind == "CLOSE" and e.get("conn") == conn for e in evs), ctx)
        other_port = [e for e in evs if e.kind == "OPEN"
                      and other.port in (e.local_port(), e.remote_port())]
        self.assertEqual(other_port, [], format_events(other_port))

    def test_exe_selects_curl(self):
        """(c) --exe '*curl*': only curl's side of the exchange is reported."""
        server = HttpServer(self)
        agent = Agent(["--output=events", "--exe", "*curl*"], self)
        c = curl(server.url())
        self.assertEqual(c.stdout, "200", c.stderr)
        agent.wait_for(lambda evs: any(e.kind == "CLOSE" and e.pid == c.pid for e in evs))
        self.assertEqual(agent.stop(), 0, agent.describe())
        evs = agent.events()
        ctx = "\n" + agent.describe()

        stray = [e for e in conn_lines(evs) if e.get("comm") != "curl"]
        self.assertEqual(stray, [], "--exe '*curl*' but other programs reported:\n"
                         + format_events(stray))
        mine = [e for e in evs if e.pid == c.pid]
        opens = [e for e in mine if e.kind == "OPEN" and e.get("role") == "client"
                 and e.remote_port() == server.port]
        self.assertTrue(opens, f"no OPEN role=client for curl pid {c.pid}{ctx}")
        conn = opens[0].get("conn")
        self.assertTrue(any(e.kind == "DATA" and e.get("conn") == conn and e.get("dir") == "egress"
                            and e.int("pos") == 0 and e.data.startswith(b"GET / HTTP/1.1")
                            for e in mine), f"curl's request not captured{ctx}")
        self.assertTrue(any(e.kind == "CLOSE" and e.get("conn") == conn for e in mine), ctx)

    def test_port_selects_connections(self):
        """(d) --port P: only connections with local or remote port P, both ends of them."""
        chosen, other = HttpServer(self), HttpServer(self)
        agent = Agent(["--output=events", "--port", str(chosen.port)], self)
        c1 = curl(chosen.url())
        c2 = curl(other.url())
        self.assertEqual((c1.stdout, c2.stdout), ("200", "200"), c1.stderr + c2.stderr)
        agent.wait_for(lambda evs: any(e.kind == "CLOSE" and e.pid == chosen.pid for e in evs)
                       and any(e.kind == "CLOSE" and e.pid == c1.pid for e in evs))
        self.assertEqual(agent.stop(), 0, agent.describe())
        evs = agent.events()
        ctx = "\n" + agent.describe()

        opens = opens_by_conn(evs)
        for conn, e in opens.items():
            self.assertIn(chosen.port, (e.local_port(), e.remote_port()),
                          f"--port {chosen.port} but reported: {e.raw}")
        orphans = [e for e in conn_lines(evs) if e.get("conn") not in opens]
        self.assertEqual(orphans, [], "lines for connections that had no OPEN:\n"
                         + format_events(orphans))
        self.assertTrue(any(e.get("role") == "client" and e.pid == c1.pid
                            for e in opens.values()), f"curl's end not reported{ctx}")
        self.assertTrue(any(e.get("role") == "server" and e.pid == chosen.pid
                            for e in opens.values()), f"the server's end not reported{ctx}")
        self.assertFalse(any(e.pid in (c2.pid, other.pid) for e in conn_lines(evs)), ctx)


class OutputOptionsTest(unittest.TestCase):
    def test_unknown_flag_fails(self):
        """A mistyped flag or output kind is an error, not silently ignored."""
        require_agent_binary(self)
        for args in (["--no-such-flag"], ["--output=bogus"]):
            r = subprocess.run([agent_bin(), *args], stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=20)
            self.assertNotEqual(r.returncode, 0, f"{args} accepted: {r.stdout}{r.stderr}")
            self.assertTrue(r.stderr.strip(), f"{args} rejected without a message")

    def test_output_none(self):
        """--output=none prints nothing, yet runs the whole pipeline: the request it saw is in
        its span counter and the RED histogram of /metrics."""
        require_root(self)
        server = HttpServer(self)
        mport = free_port()
        agent = Agent(["--output=none", "--pid", str(server.pid), "--metrics-address",
                       f"127.0.0.1:{mport}"], self)
        c = curl(server.url())
        self.assertEqual(c.stdout, "200", c.stderr)
        red = 'http_server_request_duration_seconds_count{service_name="http.server"'
        created = 'threadline_spans_created_total{kind="server"}'
        seen: dict[str, float] = {}
        for _ in deadline_loop(15, 0.2):
            seen = scrape_sums(mport, (red, created))
            if seen[red] >= 1 and seen[created] >= 1:
                break
        self.assertEqual(seen, {red: 1, created: 1}, "the request was not seen\n" + agent.describe())
        self.assertEqual(agent.stop(), 0, agent.describe())
        self.assertEqual(agent.stdout_lines, [], agent.describe())

    def test_output_file(self):
        """--output-file PATH: the event lines go to the file."""
        require_root(self)
        server = HttpServer(self)
        with tempfile.TemporaryDirectory(prefix="tl-e2e-out-") as d:
            path = os.path.join(d, "events.txt")
            agent = Agent(["--output=events", "--output-file", path], self)
            c = curl(server.url())
            self.assertEqual(c.stdout, "200", c.stderr)
            agent.wait_for(lambda _: _file_has_close(path, c.pid))
            self.assertEqual(agent.stop(), 0, agent.describe())
            with open(path, errors="replace") as f:
                evs = [e for e in map(parse_event, f) if e is not None]
        self.assertTrue(any(e.kind == "OPEN" and e.pid == c.pid for e in evs),
                        f"no OPEN for curl in {path}: " + format_events(evs))

    def test_capture_bytes(self):
        """--capture-bytes 32: at most 32 payload bytes per DATA line, full size still counted."""
        require_root(self)
        server = HttpServer(self)
        agent = Agent(["--output=events", "--capture-bytes", "32", "--exe", "*curl*"], self)
        c = curl(server.url())
        self.assertEqual(c.stdout, "200", c.stderr)
        agent.wait_for(lambda evs: any(e.kind == "CLOSE" and e.pid == c.pid for e in evs))
        self.assertEqual(agent.stop(), 0, agent.describe())
        data = [e for e in agent.events("DATA") if e.pid == c.pid]
        self.assertTrue(data, agent.describe())
        for e in data:
            self.assertLessEqual(e.int("captured"), 32, e.raw)
            self.assertEqual(len(e.data), e.int("captured"), e.raw)
        req = [e for e in data if e.get("dir") == "egress" and e.int("pos") == 0]
        self.assertTrue(req, agent.describe())
        self.assertGreater(req[0].int("size"), 32, req[0].raw)
        self.assertEqual(req[0].data, b"GET / HTTP/1.1\r\nHost: 127.0.0.1:"[:32], req[0].raw)


def scrape_sums(port: int, prefixes: tuple[str, ...]) -> dict[str, float]:
    """For each prefix, the sum of the /metrics series whose line starts with it."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return {p: sum(float(l.rsplit(" ", 1)[1]) for l in lines if l.startswith(p)) for p in prefixes}


def _file_has_close(path: str, pid: int) -> bool:
    try:
        with open(path, errors="replace") as f:
            return any(e is not None and e.kind == "CLOSE" and e.pid == pid
                       for e in map(parse_event, f))
    except OSError:
        return False


if __name__ == "__main__":
    main()

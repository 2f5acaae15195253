#!/usr/bin/env python3
"""The agent's CPU budget (--cpu-budget) end to end: the built agent, real eBPF, nginx, wrk.

A small budget (0.02 cores) and a load it cannot trace whole, to an nginx that only this agent
traces (--pid), in two shapes: wrk opening a new connection per request (Connection: close),
shed when connections are new; and wrk on 32 keep-alive connections that all predate shedding,
shed at their request boundaries (and resumed at a later one). Asserted:
  - the shed fraction on /metrics goes up, with a log line saying why;
  - the agent's CPU (its /proc/PID/stat, measured here, not its own report) comes back near the
    budget while the load goes on (without shedding it is several times over);
  - every request is accounted for: SERVER spans + connections shed in the kernel cover what
    wrk completed (one request per connection), and the bytes shed connections moved are counted;
  - every span is whole (method, path, status 200, not an error): shedding is by connection,
    never a stream cut in the middle;
  - once the load stops, the fraction comes back to 0 by itself, and new connections are traced
    again.
Needs root (fails under CI=true without it), nginx and wrk.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))

from e2e_util import (Agent, PeerProcess, deadline_loop, format_spans, free_port,  # noqa: E402
                      main, nginx_peer, nginx_pids, parse_otlp_json_line, require_root, require_tool)

BUDGET = 0.02       # cores
LOAD_S = 20         # seconds of wrk
# A 4 MiB ring: what the agent has not read yet when shedding starts is a backlog it still has to
# process (at whatever CPU it gets); with the default 16 MiB that takes longer than this test.
RING_MB = 4
CLK_TCK = os.sysconf("SC_CLK_TCK")
KA_CONNS = 8      # the test's own keep-alive connections (shed and resumed)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text: str, name: str, labels: str = "") -> int:
    total = 0
    for m in re.finditer(rf"^{re.escape(name)}(\{{.*\}})? (\d+)$", text, re.M):
        if labels in (m.group(1) or ""):
            total += int(m.group(2))
    return total


def agent_cores(test: unittest.TestCase, samples: list, a: float, b: float) -> float:
    """The agent's CPU in cores between load times a and b, from sample_during's samples."""
    pts = [s for s in samples if a <= s[0] <= b]
    test.assertGreaterEqual(len(pts), 2, samples)
    return (pts[-1][2] - pts[0][2]) / (pts[-1][0] - pts[0][0])


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of pid, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class CpuBudgetTest(unittest.TestCase):
    def setUp(self):
        require_root(self)
        require_tool(self, "nginx", "wrk")
        self.tmp = tempfile.mkdtemp(prefix=f"tl-budget-{os.getpid()}-")
        self.addCleanup(shutil.rmtree, self.tmp, True)  # after the peers' cleanups (LIFO)

    def nginx(self) -> tuple[int, set[int]]:
        port = free_port()
        # keepalive_requests: nginx would otherwise close a keep-alive connection every 1000
        # requests, and wrk's reconnections would be shed as new ones.
        p = nginx_peer(self, self.tmp, port, textwrap.dedent(f"""\
              server {{
                listen 127.0.0.1:{port};
                keepalive_requests 100000000;
                location / {{ return 200 "ok $uri\\n"; }}
              }}"""), worker_connections=512)
        for _ in deadline_loop(5, 0.1):  # the master may not have forked its worker yet
            pids = nginx_pids(p)
            if len(pids) > 1:
                break
        self.assertGreater(len(pids), 1, "nginx has no worker")
        return port, pids

    def sample_during(self, wrk: subprocess.Popen, agent: Agent, mport: int, each=None):
        """Every 0.5 s while wrk runs: (t, shed permille, the agent's CPU seconds from /proc, its
        own millicores); `each` runs at every sample. Returns the samples, wrk's output, the
        requests it completed, when the load started (monotonic) and when it stopped (load
        time, s)."""
        t0 = time.monotonic()
        samples = []
        while wrk.poll() is None:
            text = metrics(mport)
            samples.append((time.monotonic() - t0, metric(text, "threadline_load_shed_permille"),
                            cpu_seconds(agent.pid), metric(text, "threadline_agent_cpu_millicores")))
            if each is not None:
                each()
            time.sleep(0.5)
        out = wrk.communicate(timeout=10)[0]
        m = re.search(r"(\d+) requests in", out)
        self.assertIsNotNone(m, out)
        return samples, out, int(m.group(1)), t0, time.monotonic() - t0

    def test_load_over_budget_is_shed_by_connection_and_recovers(self):
        port, nginx_pids = self.nginx()
        mport = free_port()
        spans_file = os.path.join(self.tmp, "spans.jsonl")  # a file: a pipe the test reads could block the agent
        args = ["--output=json", "--output-file", spans_file, "--metrics-address", f"127.0.0.1:{mport}",
                "--ui-address", "off", "--ring-buffer-mb", str(RING_MB), "--cpu-budget", str(BUDGET)]
        for pid in sorted(nginx_pids):
            args += ["--pid", str(pid)]
        agent = Agent(args, self)
        self.assertIn(f"cpu budget: {BUDGET:g} cores", "\n".join(agent.stderr_lines), agent.describe())
        text = metrics(mport)
        self.assertEqual(metric(text, "threadline_cpu_budget_millicores"), round(BUDGET * 1000), text)
        self.assertEqual(metric(text, "threadline_load_shed_permille"), 0, text)

        # The load: wrk on its own, a new connection per request.
        wrk = subprocess.Popen(["wrk", "-t1", "-c8", f"-d{LOAD_S}s", "-H", "Connection: close",
                                f"http://127.0.0.1:{port}/budget/load"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: wrk.poll() is None and wrk.kill())
        samples, out, requests, t0, t_stop = self.sample_during(wrk, agent, mport)

        def usage(a: float, b: float) -> float:
            return agent_cores(self, samples, a, b)

        trace = " ".join(f"{t:.1f}s:{p}‰/{mc}m" for t, p, _, mc in samples)
        peak = max(p for _, p, _, _ in samples)
        self.assertGreater(peak, 0, f"never shed; samples {trace}\n{agent.describe()}")
        err = "\n".join(agent.stderr_lines)
        self.assertRegex(err, r"cpu budget: shedding \d+\.\d% of connections \(was 0\.0%\): "
                              r"(over CPU budget|ring buffer full)")
        # Near the budget once the controller has had its few seconds: the last 6 s of load.
        settled = usage(t_stop - 7, t_stop - 1)
        first = usage(0, 2.5)
        print(f"\nload: {requests} requests in {LOAD_S}s; agent CPU first 2.5 s {first:.3f} cores, "
              f"last 6 s {settled:.3f} cores (budget {BUDGET}); peak shed {peak}‰\n"
              f"samples (time: shed/agent's own millicores): {trace}", file=sys.stderr)
        self.assertLess(settled, 1.6 * BUDGET, f"agent CPU {settled:.3f} cores while shedding; {trace}\n"
                        + "\n".join(l for l in metrics(mport).splitlines() if l.startswith("threadline_")))

        # Every request accounted for: a whole SERVER span, or a connection shed in the kernel.
        spans, text = [], ""
        for _ in deadline_loop(20, 0.5):
            text = metrics(mport)
            red = metric(text, "http_server_request_duration_seconds_count")
            # A connection traced when new but shed at its first request (the fraction rose in
            # between) counts as an established one.
            shed = (metric(text, "threadline_load_shed_connections_total")
                    + metric(text, "threadline_load_shed_established_total"))
            # Lost events count too (as in the assertion below): without them a run that lost
            # any waited the whole 20 s.
            if red + shed + metric(text, "threadline_kernel_events_lost_total") >= requests:
                break
        with open(spans_file) as f:
            spans = [s for line in f for s in parse_otlp_json_line(line) if s.is_server]
        shed = (metric(text, "threadline_load_shed_connections_total")
                + metric(text, "threadline_load_shed_established_total"))
        # Events the ring had no room for before shedding caught up: each may have cost one
        # traced request its span (counted by the agent, not shed).
        lost = metric(text, "threadline_kernel_events_lost_total")
        print(f"accounting: {len(spans)} spans (RED count "
              f"{metric(text, 'http_server_request_duration_seconds_count')}) + {shed} shed connections "
              f"+ {lost} lost events; {requests} requests completed", file=sys.stderr)
        self.assertGreater(shed, 0, text)
        self.assertGreater(metric(text, "threadline_load_shed_bytes_total"), 0, text)
        # wrk counts completed requests only: up to its 8 connections in flight when it stopped
        # may have been accepted (traced or shed) without one.
        self.assertGreaterEqual(len(spans) + shed + lost, requests, f"{len(spans)} spans + {shed} shed + {lost} lost")
        self.assertLessEqual(len(spans) + shed, requests + 8, f"{len(spans)} spans + {shed} shed")
        self.assertGreater(len(spans), 0)
        broken = [s for s in spans if s.pid not in nginx_pids or s.attrs.get("http.request.method") != "GET"
                  or s.attrs.get("url.path") != "/budget/load"
                  or s.attrs.get("http.response.status_code") != 200 or s.is_error]
        self.assertEqual(broken, [], format_spans(broken))

        # Load gone: back to 0 by itself, then new connections are traced again.
        t_quiet = t0 + t_stop
        accounted = time.monotonic() - t_quiet  # the wait above, before this one starts
        for _ in deadline_loop(30, 0.5):
            if metric(metrics(mport), "threadline_load_shed_permille") == 0:
                break
        recovery = time.monotonic() - t_quiet
        text = metrics(mport)
        self.assertEqual(metric(text, "threadline_load_shed_permille"), 0,
                         f"still shedding 30 s after the load\n{agent.describe()}")
        print(f"shed fraction back to 0 within {recovery:.1f} s of the load's end (seen after the "
              f"accounting, which took {accounted:.1f} s)", file=sys.stderr)
        self.assertRegex("\n".join(agent.stderr_lines),
                         r"cpu budget: shedding 0\.0% of connections \(was \d+\.\d%\): under CPU budget")
        before = metric(text, "http_server_request_duration_seconds_count")
        shed_before = metric(text, "threadline_load_shed_connections_total")
        for i in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/budget/after/{i}", timeout=5) as r:
                self.assertEqual(r.status, 200)
        for _ in deadline_loop(10, 0.25):
            text = metrics(mport)
            if metric(text, "http_server_request_duration_seconds_count") >= before + 20:
                break
        self.assertEqual(metric(text, "http_server_request_duration_seconds_count"), before + 20, text)
        self.assertEqual(metric(text, "threadline_load_shed_connections_total"), shed_before, text)


    def test_keep_alive_load_over_budget_is_shed_at_request_boundaries_and_resumes(self):
        port, nginx_pids = self.nginx()
        mport = free_port()
        spans_file = os.path.join(self.tmp, "spans.jsonl")
        args = ["--output=json", "--output-file", spans_file, "--metrics-address", f"127.0.0.1:{mport}",
                "--ui-address", "off", "--ring-buffer-mb", str(RING_MB), "--cpu-budget", str(BUDGET)]
        for pid in sorted(nginx_pids):
            args += ["--pid", str(pid)]
        agent = Agent(args, self)

        # Keep-alive connections of our own that outlive the load: opened and traced before it,
        # used all through it (so they cross request boundaries while shedding), used again
        # after it. Requests on them carry their own path, apart from wrk's.
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=5) for _ in range(KA_CONNS)]
        for c in conns:
            self.addCleanup(c.close)
        ours = {"n": 0}

        def ask(c: http.client.HTTPConnection, path: str):
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)

        for i, c in enumerate(conns):
            ask(c, f"/budget/ka/{i}")
        ours["n"] += len(conns)

        # The agent's own CPU with nothing traced, for the record: on a busy machine it is not
        # the ~2 millicores of a quiet one (every exec on the machine is an event to it).
        idle_cpu, idle_t = cpu_seconds(agent.pid), time.monotonic()
        time.sleep(2)
        idle = (cpu_seconds(agent.pid) - idle_cpu) / (time.monotonic() - idle_t)

        # The load: wrk's keep-alive connections, opened once, before anything is shed.
        wrk = subprocess.Popen(["wrk", "-t1", "-c32", f"-d{LOAD_S}s", f"http://127.0.0.1:{port}/budget/keepalive"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(lambda: wrk.poll() is None and wrk.kill())
        def our_requests() -> None:
            for i, c in enumerate(conns):
                ask(c, f"/budget/ka/{i}")
            ours["n"] += len(conns)

        samples, out, requests, _, t_stop = self.sample_during(wrk, agent, mport, our_requests)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)

        def usage(a: float, b: float) -> float:
            return agent_cores(self, samples, a, b)

        trace = " ".join(f"{t:.1f}s:{p}‰/{mc}m" for t, p, _, mc in samples)
        peak = max(p for _, p, _, _ in samples)
        self.assertGreater(peak, 0, f"never shed; samples {trace}\n{agent.describe()}")
        settled = usage(t_stop - 7, t_stop - 1)
        first = usage(0, 2.5)
        text = metrics(mport)
        established = metric(text, "threadline_load_shed_established_total")
        print(f"\nkeep-alive load: {requests} requests in {LOAD_S}s ({m.group(1) if m else '?'} req/s); agent "
              f"CPU first 2.5 s {first:.3f} cores, last 6 s {settled:.3f} cores (budget {BUDGET}); peak "
              f"shed {peak}‰; established connections shed {established}, new shed "
              f"{metric(text, 'threadline_load_shed_connections_total')}; agent CPU idle before the load "
              f"{idle:.3f} cores\n"
              f"samples (time: shed/agent's own millicores): {trace}", file=sys.stderr)
        self.assertGreater(established, 0, text)
        self.assertRegex("\n".join(agent.stderr_lines),
                         r"cpu budget: at a request boundary, \d+ established connection\(s\) shed")
        self.assertLess(settled, 1.6 * BUDGET, f"agent CPU {settled:.3f} cores while shedding; {trace}\n"
                        + "\n".join(l for l in text.splitlines() if l.startswith("threadline_")))

        # Every request accounted for: a whole SERVER span, or a request shed in the kernel
        # (counted at the request boundary of a shed connection), or an event the ring lost.
        total = requests + ours["n"]
        for _ in deadline_loop(20, 0.5):
            text = metrics(mport)
            if (metric(text, "http_server_request_duration_seconds_count")
                    + metric(text, "threadline_load_shed_requests_total")
                    + metric(text, "threadline_kernel_events_lost_total") >= total):
                break
        with open(spans_file) as f:
            spans = [s for line in f for s in parse_otlp_json_line(line) if s.is_server]
        shed_requests = metric(text, "threadline_load_shed_requests_total")
        lost = metric(text, "threadline_kernel_events_lost_total")
        print(f"accounting: {len(spans)} spans + {shed_requests} shed requests + {lost} lost events; "
              f"{total} requests completed", file=sys.stderr)
        self.assertGreater(shed_requests, 0, text)
        self.assertGreater(metric(text, "threadline_load_shed_bytes_total"), 0, text)
        self.assertGreaterEqual(len(spans) + shed_requests + lost, total,
                                f"{len(spans)} spans + {shed_requests} shed + {lost} lost")
        # wrk's 32 connections may each have had one request in flight when it stopped.
        self.assertLessEqual(len(spans) + shed_requests, total + 32, f"{len(spans)} spans + {shed_requests} shed")
        self.assertGreater(len(spans), 0)
        # Whole: a connection is only ever ended for userspace where a response ended.
        broken = [s for s in spans if s.pid not in nginx_pids or s.attrs.get("http.request.method") != "GET"
                  or not re.fullmatch(r"/budget/(keepalive|ka/\d+)", str(s.attrs.get("url.path")))
                  or s.attrs.get("http.response.status_code") != 200 or s.is_error]
        self.assertEqual(broken, [], format_spans(broken))

        # Load gone: back to 0 by itself; our connections that were shed are captured again at
        # their next request, each request traced whole.
        for _ in deadline_loop(30, 0.5):
            if metric(metrics(mport), "threadline_load_shed_permille") == 0:
                break
        text = metrics(mport)
        self.assertEqual(metric(text, "threadline_load_shed_permille"), 0,
                         f"still shedding 30 s after the load\n{agent.describe()}")
        resumed_before = metric(text, "threadline_load_shed_resumed_total")
        before = metric(text, "http_server_request_duration_seconds_count")
        for r in range(3):
            for i, c in enumerate(conns):
                ask(c, f"/budget/ka-after/{i}/{r}")
        after = 3 * len(conns)
        # The shed counters on /metrics are refreshed once a second.
        for _ in deadline_loop(10, 0.25):
            text = metrics(mport)
            if (metric(text, "http_server_request_duration_seconds_count") >= before + after
                    and metric(text, "threadline_load_shed_resumed_total") > resumed_before):
                break
        resumed = metric(text, "threadline_load_shed_resumed_total")
        print(f"after the load: {after} requests on our {len(conns)} keep-alive connections; connections "
              f"resumed {resumed} ({resumed - resumed_before} since the fraction came back to 0)", file=sys.stderr)
        self.assertEqual(metric(text, "http_server_request_duration_seconds_count"), before + after, text)
        # Our connections made requests while the fraction was high: nearly all were shed then.
        self.assertGreater(resumed, resumed_before, text)
        with open(spans_file) as f:
            later = [s for line in f for s in parse_otlp_json_line(line)
                     if s.is_server and str(s.attrs.get("url.path", "")).startswith("/budget/ka-after/")]
        self.assertEqual(sorted(s.attrs.get("url.path") for s in later),
                         sorted(f"/budget/ka-after/{i}/{r}" for r in range(3) for i in range(len(conns))),
                         format_spans(later))
        self.assertTrue(all(s.attrs.get("http.response.status_code") == 200 and not s.is_error for s in later),
                        format_spans(later))


if __name__ == "__main__":
    main()

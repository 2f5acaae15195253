#!/usr/bin/env python3
"""Head sampling (sampling.ratio) end to end: the built agent, real eBPF, a real Python server.

  - Ratio 0.5, injection off: 200 requests to a keep-alive Python server; about half of the
    SERVER spans are exported (binomial bounds), every exported root's trace id satisfies the
    rule (recomputed here: the trace id's 56 rightmost bits >= round((1 - ratio) * 2^56)),
    exported + threadline_spans_dropped_total{reason="not_sampled"} == requests, and the RED
    histogram counts every request.
  - Ratio 0.5, injection on: the server calls a downstream service on each request's thread;
    the kernel starts the root and writes traceparent: the flag the downstream receives is the
    rule's decision on that trace id, and exactly the sampled traces are exported (SERVER and
    CLIENT span).
  - Ratio 0: no span at all, and the RED histogram still counts every request.

Only the server is traced (--pid); the client and the downstream service are not.
Needs root (fails under CI=true without it).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import sys
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))

from e2e_util import (Agent, PeerProcess, agent_spans, deadline_loop, format_spans,  # noqa: E402
                      free_port, main, require_root)

HERE = os.path.dirname(os.path.abspath(__file__))
HTTP_PEER = os.path.join(HERE, "peers", "http_peer.py")
PYTHON = sys.executable

# The downstream service: prints the traceparent values of each request as one JSON line.
ECHO_SERVER = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        print(json.dumps({"path": self.path, "traceparent": self.headers.get_all("traceparent") or []}), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def threshold(ratio: float) -> int:
    """T = round((1 - ratio) * 2^56), as agent/spans/sampler.cpp computes it."""
    return (1 << 56) - round(ratio * (1 << 56))


def rule_keeps(trace_id: str, ratio: float) -> bool:
    """The trace id's 56 rightmost bits (its last 14 hex digits) >= T."""
    return int(trace_id[-14:], 16) >= threshold(ratio)


def binomial_bounds(n: int, p: float, sigmas: float = 5.0) -> tuple[int, int]:
    sd = (n * p * (1 - p)) ** 0.5
    return int(n * p - sigmas * sd), int(n * p + sigmas * sd + 1)


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric_sum(text: str, name: str, labels: str = "") -> int:
    """Sum of the samples `name{...labels...}` (every series when labels is empty)."""
    total = 0
    for m in re.finditer(rf"^{re.escape(name)}(\{{.*\}})? (\d+)$", text, re.M):  # values may hold braces
        if labels in (m.group(1) or ""):
            total += int(m.group(2))
    return total


class SamplingTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def start(self, ratio: float, inject: str) -> tuple[Agent, PeerProcess, int]:
        port = free_port()
        server = PeerProcess([PYTHON, HTTP_PEER, str(port)], self, port=port)
        mport = free_port()
        agent = Agent(["--output=json", "--metrics-address", f"127.0.0.1:{mport}", "--inject", inject,
                       "--sampling-ratio", str(ratio), "--pid", str(server.pid)], self)
        err = "\n".join(agent.stderr_lines)
        self.assertIn(f"sampling: parent-based, ratio {ratio:g} for new traces", err, agent.describe())
        self.assertNotIn("not applied yet", err)
        if inject == "on":
            self.assertIn("traceparent injection ON", err, agent.describe())
        return agent, server, mport

    def send(self, port: int, paths: list[str]) -> None:
        """One keep-alive connection from this (untraced) process."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        for p in paths:
            conn.request("GET", p)
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200, p)
        conn.close()

    def wait_counted(self, agent: Agent, mport: int, requests: int, spans_per_request: int) -> tuple[str, list]:
        """Until the RED histogram has every request and every span is exported or dropped."""
        text, spans = "", []
        for _ in deadline_loop(20, 0.25):
            text = metrics(mport)
            spans = agent_spans(agent)
            red = metric_sum(text, "http_server_request_duration_seconds_count")
            dropped = metric_sum(text, "threadline_spans_dropped_total", 'reason="not_sampled"')
            if red >= requests and len(spans) + dropped >= requests * spans_per_request:
                break
        return text, spans

    def test_ratio_half_keeps_about_half_by_the_rule_and_red_counts_all(self):
        n = 200
        agent, server, mport = self.start(0.5, inject="off")
        self.send(server.port, [f"/r/{i}" for i in range(n)])
        text, spans = self.wait_counted(agent, mport, n, 1)
        mine = [s for s in spans if s.pid == server.pid and s.is_server]
        self.assertEqual(len(mine), len(spans), format_spans(spans))
        lo, hi = binomial_bounds(n, 0.5)
        self.assertTrue(lo <= len(mine) <= hi, f"{len(mine)} of {n} kept, expected {lo}..{hi}")
        for s in mine:
            self.assertEqual(s.parent_span_id, "", s.brief())
            self.assertEqual(s.attrs.get("threadline.parent.source"), "root", s.brief())
            self.assertTrue(rule_keeps(s.trace_id, 0.5), f"exported against the rule: {s.brief()}")
        dropped = metric_sum(text, "threadline_spans_dropped_total", 'reason="not_sampled"')
        self.assertEqual(len(mine) + dropped, n, text)
        self.assertEqual(metric_sum(text, "http_server_request_duration_seconds_count"), n, text)
        self.assertEqual(len({s.attrs.get("url.path") for s in mine}), len(mine))

    def test_ratio_half_with_injection_downstream_flag_is_the_rules(self):
        n = 100
        echo_port = free_port()
        echo = PeerProcess([PYTHON, "-c", ECHO_SERVER, str(echo_port)], self, port=echo_port)
        agent, server, mport = self.start(0.5, inject="on")
        target = f"http://127.0.0.1:{echo_port}/leaf"
        self.send(server.port, [f"/call?url={target}%3Fi%3D{i}" for i in range(n)])
        seen: list[dict] = []
        for _ in deadline_loop(10, 0.1):
            seen = [json.loads(l) for l in echo.stdout_lines if l.startswith("{")]
            if len(seen) >= n:
                break
        self.assertEqual(len(seen), n, echo.describe())
        decided: dict[str, bool] = {}
        for s in seen:
            self.assertEqual(len(s["traceparent"]), 1, s)
            m = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])", s["traceparent"][0])
            self.assertIsNotNone(m, s)
            trace_id, flags = m.group(1), m.group(3)
            self.assertEqual(flags == "01", rule_keeps(trace_id, 0.5),
                             f"{s['traceparent'][0]}: flag is not the rule's decision")
            decided[trace_id] = flags == "01"
        kept = {t for t, k in decided.items() if k}
        lo, hi = binomial_bounds(n, 0.5)
        self.assertTrue(lo <= len(kept) <= hi, f"{len(kept)} of {n} kept, expected {lo}..{hi}")

        # Two spans per request (SERVER, and the CLIENT call made on its thread): exported for
        # exactly the sampled traces, dropped for the others.
        text, spans = self.wait_counted(agent, mport, n, 2)
        srv = [s for s in spans if s.pid == server.pid and s.is_server]
        cli = [s for s in spans if s.pid == server.pid and s.is_client]
        self.assertEqual(len(srv) + len(cli), len(spans), format_spans(spans))
        self.assertEqual({s.trace_id for s in srv}, kept, format_spans(srv))
        self.assertEqual({s.trace_id for s in cli}, kept, format_spans(cli))
        self.assertEqual(len(srv), len(kept))
        self.assertEqual(len(cli), len(kept))
        for s in srv:
            self.assertEqual(s.parent_span_id, "", s.brief())
        for s in cli:
            self.assertIs(s.attrs.get("threadline.traceparent.injected"), True, s.brief())
        dropped = metric_sum(text, "threadline_spans_dropped_total", 'reason="not_sampled"')
        self.assertEqual(dropped, 2 * (n - len(kept)), text)
        self.assertEqual(metric_sum(text, "http_server_request_duration_seconds_count"), n, text)
        self.assertEqual(metric_sum(text, "http_client_request_duration_seconds_count"), n, text)

    def test_ratio_zero_exports_nothing_and_red_counts_every_request(self):
        n = 50
        agent, server, mport = self.start(0.0, inject="off")
        self.send(server.port, [f"/z/{i}" for i in range(n)])
        text, spans = self.wait_counted(agent, mport, n, 1)
        self.assertEqual(spans, [], format_spans(spans))
        self.assertEqual(metric_sum(text, "http_server_request_duration_seconds_count"), n, text)
        self.assertEqual(metric_sum(text, "threadline_spans_dropped_total", 'reason="not_sampled"'), n, text)


if __name__ == "__main__":
    main()

"""The built agent exporting real spans over OTLP into a real third-party receiver
(@elastic/mockotlpserver from npm, behind tests/e2e/otlp_receiver.js), the way the issue's
"done when" reads: curl -> python3 http.server with OTEL_EXPORTER_OTLP_ENDPOINT set, over gRPC and
over HTTP/protobuf; a receiver that is down for a while and then up loses nothing that fit in the
queue; and /metrics shows the agent's own counters and the RED histograms while it runs.

Needs root (BPF) and node/npm. With CI=true a missing piece fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import sys
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import e2e_util  # noqa: E402
from e2e_util import Agent, HttpServer, curl, free_port, require_root  # noqa: E402
from test_otlp_export import Receiver, ReceiverTestCase, parse_metrics  # noqa: E402


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse_metrics(r.read().decode())


def metric(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k.startswith(prefix))


def wait_metric(test: unittest.TestCase, port: int, prefix: str, minimum: float,
                timeout: float = 15.0) -> dict[str, float]:
    """Scrapes /metrics until the series starting with `prefix` sum to at least `minimum`;
    returns that scrape. Fails the test on timeout."""
    values: dict[str, float] = {}
    for _ in e2e_util.deadline_loop(timeout, 0.2):
        values = scrape(port)
        if metric(values, prefix) >= minimum:
            break
    test.assertGreaterEqual(metric(values, prefix), minimum, values)
    return values


class AgentOtlpTest(ReceiverTestCase):
    def setUp(self):
        require_root(self)

    def start_agent(self, endpoint: str, protocol: str, metrics_port: int, *extra: str) -> Agent:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
               "OTEL_BSP_SCHEDULE_DELAY": "200"}
        return Agent(["--exe", "*python*", "--exe", "curl", "--metrics-address",
                      f"127.0.0.1:{metrics_port}", *extra], self, env=env)

    def exchange(self, server: HttpServer, path: str, traceparent: str) -> None:
        c = curl(server.url(path), "-H", f"traceparent: {traceparent}")
        self.assertEqual(c.stdout, "404", c.stderr)

    def check_spans(self, receiver: Receiver, trace_id: str, parent: str, server: HttpServer) -> None:
        spans = receiver.wait_for(lambda e: e["event"] == "span" and e["trace_id"] == trace_id, 2, timeout=30)
        self.assertEqual(len(spans), 2, receiver.spans())
        by_kind = {s["kind"]: s for s in spans}
        self.assertEqual(set(by_kind), {2, 3}, spans)
        srv, cli = by_kind[2], by_kind[3]
        self.assertEqual(srv["parent_span_id"], parent)
        self.assertEqual(cli["parent_span_id"], parent)  # curl sent the header: the app's own span
        self.assertEqual(srv["name"], "GET /items/{id}")
        self.assertEqual(srv["attributes"]["http.request.method"], "GET")
        self.assertEqual(srv["attributes"]["http.response.status_code"], {"int": "404"})
        self.assertEqual(srv["attributes"]["url.path"], "/items/42")
        self.assertEqual(srv["attributes"]["threadline.parent.source"], "header")
        self.assertEqual(srv["resource"]["process.pid"], {"int": str(server.pid)})
        self.assertEqual(srv["resource"]["telemetry.distro.name"], "threadline")
        self.assertEqual(srv["scope"]["name"], "threadline")
        # The server span inside curl's, as far as the capture can order two processes
        # (e2e_util.nesting_problem).
        self.assertIsNone(e2e_util.nesting_problem((int(srv["start"]), int(srv["end"])),
                                                   (int(cli["start"]), int(cli["end"])), cross_process=True),
                          spans)
        self.assertGreater(int(srv["end"]), int(srv["start"]))
        now = time.time_ns()
        self.assertLess(abs(now - int(srv["start"])), 120 * 10**9, "timestamps are not wall clock")

    def run_protocol(self, protocol: str) -> None:
        receiver = Receiver(self.modules)
        self.addCleanup(receiver.stop)
        server = HttpServer(self)
        port = receiver.grpc_port if protocol == "grpc" else receiver.http_port
        mport = free_port()
        agent = self.start_agent(f"http://127.0.0.1:{port}", protocol, mport)
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        parent = "00f067aa0ba902b7"
        self.exchange(server, "/items/42", f"00-{trace_id}-{parent}-01")
        self.check_spans(receiver, trace_id, parent, server)
        # The receiver decodes before the exporter hears back: poll for the counter.
        values = wait_metric(self, mport, "threadline_spans_exported_total", 2)
        self.assertGreaterEqual(metric(values, 'threadline_kernel_events_received_total{type="data"}'), 4)
        self.assertGreaterEqual(
            metric(values, 'http_server_request_duration_seconds_count{service_name="http.server"'), 1, values)
        self.assertEqual(values.get('threadline_probe_kind_available{kind="syscall tracepoint"}'), 1.0)
        self.assertEqual(agent.stop(), 0, agent.describe())
        self.assertIn("OTLP exporter stopped", agent.stderr_tail(10))

    def test_grpc(self):
        self.run_protocol("grpc")

    def test_http_protobuf(self):
        self.run_protocol("http/protobuf")

    def test_receiver_down_then_up_loses_nothing_that_fit(self):
        grpc_port, http_port = free_port(), free_port()
        server = HttpServer(self)
        mport = free_port()
        agent = self.start_agent(f"http://127.0.0.1:{http_port}", "http/protobuf", mport)
        traces = [f"{i:032x}" for i in range(0xabc0, 0xabc5)]
        for t in traces:  # the receiver is not there yet
            self.exchange(server, "/items/42", f"00-{t}-00f067aa0ba902b7-01")
        wait_metric(self, mport, 'threadline_export_requests_total{result="retryable_error"}', 1)
        receiver = Receiver(self.modules, grpc_port=grpc_port, http_port=http_port)
        self.addCleanup(receiver.stop)
        for t in traces:
            got = receiver.wait_for(lambda e, t=t: e["event"] == "span" and e["trace_id"] == t, 2, timeout=45)
            self.assertEqual(len(got), 2, f"trace {t} not delivered after the receiver came up")
        values = scrape(mport)
        self.assertEqual(metric(values, "threadline_spans_dropped_total{reason=\"queue_full\""), 0, values)
        self.assertEqual(agent.stop(), 0, agent.describe())

    def test_receiver_stopped_mid_run_loses_nothing_that_fit(self):
        """The issue's outage: spans flow, the receiver stops (here 12 s, the mechanism is the
        same for 30 s: a batch retries for up to OTEL_BSP_EXPORT_TIMEOUT, 300 s by default),
        traffic continues, the receiver comes back on the same port: every span arrives."""
        grpc_port, http_port = free_port(), free_port()
        receiver = Receiver(self.modules, grpc_port=grpc_port, http_port=http_port)
        server = HttpServer(self)
        mport = free_port()
        agent = self.start_agent(f"http://127.0.0.1:{grpc_port}", "grpc", mport)
        self.exchange(server, "/items/42", "00-0000000000000000000000000000beef-00f067aa0ba902b7-01")
        self.assertEqual(len(receiver.wait_for(
            lambda e: e["event"] == "span" and e["trace_id"].endswith("beef"), 2, timeout=30)), 2)
        receiver.stop()
        during = [f"{i:032x}" for i in range(0xdead0, 0xdead4)]
        for t in during:
            self.exchange(server, "/items/42", f"00-{t}-00f067aa0ba902b7-01")
            time.sleep(1)
        time.sleep(8)  # the outage lasts 12 s in all
        wait_metric(self, mport, 'threadline_export_requests_total{result="retryable_error"}', 1)
        receiver = Receiver(self.modules, grpc_port=grpc_port, http_port=http_port)
        self.addCleanup(receiver.stop)
        for t in during:
            got = receiver.wait_for(lambda e, t=t: e["event"] == "span" and e["trace_id"] == t, 2, timeout=60)
            self.assertEqual(len(got), 2, f"trace {t} lost in the outage")
        values = scrape(mport)
        lost = sum(metric(values, f'threadline_spans_dropped_total{{reason="{r}"}}')
                   for r in ("queue_full", "retries_exhausted", "export_failed"))
        self.assertEqual(lost, 0, values)
        self.assertEqual(agent.stop(), 0, agent.describe())


if __name__ == "__main__":
    e2e_util.main()

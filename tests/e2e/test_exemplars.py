"""Exemplars: a latency bucket links to a trace that was really exported.

A python3 http.server is traced by the agent, which exports over OTLP/HTTP into the real
third-party receiver of test_otlp_export.py (@elastic/mockotlpserver) and serves /metrics. A real
Prometheus server (Debian's `prometheus`, exemplar storage on) scrapes the agent every second the
way Prometheus does by default, i.e. asking for OpenMetrics first. We assert what a user would:

- Prometheus' own OpenMetrics parser takes the scrape (target up, no error, series stored with
  OpenMetrics' canonical le="1.0" and the counter metadata under its family name without
  _total), so the exposition is valid OpenMetrics, not only text that looks like it;
- the exemplars Prometheus stored for http_server_request_duration_seconds carry trace ids and
  span ids of SERVER spans the receiver got, with their durations as values and their end times
  as timestamps; requests whose traceparent said "not sampled" (the last one among them, so a
  rule that took every span would show it) are never exemplars;
- the RED histogram still counts every request, sampled or not;
- the plain text format asked for by a client that does not want OpenMetrics has no exemplar.

Needs root (BPF), node/npm (receiver) and prometheus (scripts/deps.sh --with-test-peers). With
CI=true a missing piece fails the test; elsewhere it skips.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import e2e_util  # noqa: E402
from e2e_util import Agent, HttpServer, curl, free_port, require_root  # noqa: E402
from prom_server import PrometheusServer, require_prometheus  # noqa: E402
from test_otlp_export import Receiver, ReceiverTestCase  # noqa: E402

SERVER_DURATION = "http_server_request_duration_seconds"


def fetch(url: str, accept: str | None) -> tuple[str, str]:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


class ExemplarTest(ReceiverTestCase):
    def setUp(self):
        require_root(self)
        require_prometheus(self)

    def test_exemplars_are_exported_spans_and_prometheus_parses_openmetrics(self):
        receiver = Receiver(self.modules)
        self.addCleanup(receiver.stop)
        server = HttpServer(self)
        mport = free_port()
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.http_port}",
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_BSP_SCHEDULE_DELAY": "200"}
        agent = Agent(["--pid", str(server.pid), "--metrics-address", f"127.0.0.1:{mport}"], self, env=env)
        prom = PrometheusServer(self, [f"127.0.0.1:{mport}"])
        prom.wait_target_up()

        # Sampled and unsampled requests (the traceparent's flag decides, parent-based), spread
        # over a few scrapes so that several exemplars get stored; the last one is unsampled.
        sampled, unsampled = [], []
        for i in range(12):
            keep = i % 3 != 2
            trace = f"{0xe8e0000 + i:032x}"
            (sampled if keep else unsampled).append(trace)
            c = curl(server.url("/"), "-H", f"traceparent: 00-{trace}-00f067aa0ba902b7-{'01' if keep else '00'}")
            self.assertEqual(c.stdout, "200", c.stderr)
            if i % 3 == 2:
                time.sleep(1.2)
        got = receiver.wait_for(lambda e: e["event"] == "span" and e["kind"] == 2 and e["trace_id"] in sampled,
                                len(sampled), timeout=30)
        self.assertEqual(len(got), len(sampled), receiver.spans())
        exported = {s["trace_id"]: s for s in got}

        # Prometheus has scraped every request (the histogram counts all, sampled or not).
        count_expr = f'sum({SERVER_DURATION}_count{{service_name="http.server"}})'
        for _ in e2e_util.deadline_loop(20, 0.5):
            if prom.value(count_expr) == len(sampled) + len(unsampled):
                break
        self.assertEqual(prom.value(count_expr), len(sampled) + len(unsampled), prom.query(count_expr))
        target = prom.wait_target_up(scrapes=2)
        self.assertEqual(target["lastError"], "")

        # Stored through the OpenMetrics parser: canonical le, counter metadata by family name.
        self.assertIsNotNone(prom.value(f'sum({SERVER_DURATION}_bucket{{service_name="http.server",le="1.0"}})'),
                             "no le=\"1.0\" bucket: Prometheus did not scrape OpenMetrics")
        self.assertIsNone(prom.value(f'sum({SERVER_DURATION}_bucket{{le="1"}})'))
        meta = prom.metadata("threadline_spans_exported")
        self.assertTrue(meta and meta[0]["type"] == "counter", meta)
        for _ in e2e_util.deadline_loop(10, 0.5):
            if (prom.value("sum(threadline_spans_exported_total)") or 0) >= len(sampled):
                break
        self.assertGreaterEqual(prom.value("sum(threadline_spans_exported_total)") or 0, len(sampled))

        results = prom.exemplars(f'{SERVER_DURATION}_bucket{{service_name="http.server"}}')
        exemplars = [e for series in results for e in series["exemplars"]]
        self.assertTrue(exemplars, f"no exemplar stored: {results}\n{prom.log_tail()}")
        for e in exemplars:
            trace_id, span_id = e["labels"].get("trace_id"), e["labels"].get("span_id")
            self.assertNotIn(trace_id, unsampled, f"an unsampled span is an exemplar: {e}")
            self.assertIn(trace_id, exported, f"exemplar of a trace the receiver never got: {e}")
            span = exported[trace_id]
            self.assertEqual(span_id, span["span_id"], e)
            duration_s = (int(span["end"]) - int(span["start"])) / 1e9
            self.assertAlmostEqual(float(e["value"]), duration_s, delta=1e-6, msg=e)
            self.assertAlmostEqual(float(e["timestamp"]), int(span["end"]) / 1e9, delta=0.002, msg=e)
        print(f"exemplars stored by Prometheus: {len(exemplars)}, traces "
              f"{sorted({e['labels']['trace_id'][-3:] for e in exemplars})} of sampled "
              f"{[t[-3:] for t in sampled]}", file=sys.stderr)

        # A client that wants the plain text gets it, without exemplars.
        ctype, text = fetch(f"http://127.0.0.1:{mport}/metrics", None)
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        self.assertNotIn(" # {", text)
        self.assertNotIn("# EOF", text)
        ctype, om = fetch(f"http://127.0.0.1:{mport}/metrics", "application/openmetrics-text")
        self.assertTrue(ctype.startswith("application/openmetrics-text; version=1.0.0"), ctype)
        self.assertTrue(om.endswith("# EOF\n"))
        self.assertIn(" # {trace_id=", om)
        self.assertEqual(agent.stop(), 0, agent.describe())


if __name__ == "__main__":
    e2e_util.main()

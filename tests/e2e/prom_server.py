"""A real Prometheus server (Debian's `prometheus` package) scraping the agent, for e2e tests
that check what Prometheus itself makes of /metrics: its OpenMetrics parser, its exemplar
storage, its HTTP API.

    prom = PrometheusServer(test, targets=["127.0.0.1:9464"])   # scrapes every second
    prom.wait_target_up()                                     # health "up", no lastError
    prom.query("sum(threadline_spans_exported_total)")
    prom.exemplars("http_server_request_duration_seconds_bucket")

Data lives in a temporary directory removed at cleanup; the server (an e2e_util.PeerProcess)
listens on a free loopback port and is stopped by the test's cleanup.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import e2e_util


def require_prometheus(test: unittest.TestCase) -> None:
    e2e_util.require_tool(test, "prometheus")


class PrometheusServer:
    def __init__(self, test: unittest.TestCase, targets: list[str], scrape_interval: str = "1s",
                 features: tuple[str, ...] = ("exemplar-storage",)):
        self.dir = tempfile.mkdtemp(prefix="tl-e2e-prom-")
        test.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.port = e2e_util.free_port()
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            # JSON is YAML: no yaml module needed.
            json.dump({"global": {"scrape_interval": scrape_interval, "scrape_timeout": scrape_interval,
                                  "evaluation_interval": scrape_interval},
                       "scrape_configs": [{"job_name": "threadline",
                                           "static_configs": [{"targets": targets}]}]}, f)
        args = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.dir}/data",
                f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"]
        if features:
            args.append("--enable-feature=" + ",".join(features))
        self.proc = e2e_util.PeerProcess(args, test, port=self.port, ready_timeout=30)
        for _ in e2e_util.deadline_loop(30, 0.2):
            try:
                with urllib.request.urlopen(self.url("/-/ready"), timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
        raise AssertionError(f"prometheus did not become ready: {self.log_tail()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def log_tail(self) -> str:
        return self.proc.describe()

    def api(self, path: str, **params: str) -> dict:
        url = self.url(path) + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise AssertionError(f"{path}: {body}")
        return body["data"]

    def targets(self) -> list[dict]:
        return self.api("/api/v1/targets")["activeTargets"]

    def wait_target_up(self, scrapes: int = 1, timeout: float = 30) -> dict:
        """Waits until every target was scraped `scrapes` times successfully (health "up", no
        lastError); returns the first target. Fails with Prometheus' error otherwise."""
        targets: list[dict] = []
        seen: dict[str, set[str]] = {}
        for _ in e2e_util.deadline_loop(timeout, 0.25):
            targets = self.targets()
            for t in targets:
                if t["health"] == "up" and not t["lastError"]:
                    seen.setdefault(t["scrapeUrl"], set()).add(t["lastScrape"])
            if targets and all(len(seen.get(t["scrapeUrl"], ())) >= scrapes for t in targets):
                return targets[0]
        raise AssertionError(f"targets not up: {json.dumps(targets, indent=1)}\n{self.log_tail()}")

    def query(self, expr: str) -> list[dict]:
        return self.api("/api/v1/query", query=expr)["result"]

    def value(self, expr: str) -> float | None:
        """The single value of an instant query, None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError(f"{expr}: {len(result)} series: {result}")
        return float(result[0]["value"][1])

    def exemplars(self, expr: str, since_s: float = 600) -> list[dict]:
        now = time.time()
        return self.api("/api/v1/query_exemplars", query=expr, start=f"{now - since_s:.3f}", end=f"{now + 60:.3f}")

    def metadata(self, metric: str) -> list[dict]:
        return self.api("/api/v1/metadata", metric=metric).get(metric, [])

    def stop(self) -> None:
        self.proc.stop()

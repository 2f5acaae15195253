"""OTLP export against a real third-party receiver (@elastic/mockotlpserver, from npm).

tests/tools/otlp_send pushes synthetic traces (a SERVER root and a CLIENT child each, ids it
derives from a run id) through BatchSpanExporter with the OTEL_* environment; otlp_receiver.js
runs mockotlpserver behind a small front that can answer 503 / UNAVAILABLE for a while. We
assert what the receiver decoded: ids, parents, kinds, names, attributes, resource, scope,
timestamps, status; gzip on and off; grpc and http/protobuf; a receiver that is down at first;
a flaky receiver; and the exporter's own counters.

Needs node and npm (scripts/deps.sh --with-test-peers). The receiver is installed once into
<build>/npm-peers. With CI=true a missing piece fails the test; elsewhere it skips.
No root needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import e2e_util  # noqa: E402

MOCKOTLPSERVER = "@elastic/mockotlpserver@0.10.0"
RUN_ID = "7e57da7a"
RECEIVER_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otlp_receiver.js")


def otlp_send_bin() -> str:
    return os.environ.get("OTLP_SEND_BIN") or os.path.join(e2e_util.build_dir(), "tests", "tools", "otlp_send")


def npm_dir() -> str:
    return os.path.join(e2e_util.build_dir(), "npm-peers")


def unavailable(reason: str) -> None:
    """e2e_util.give_up for setUpClass (no test instance there)."""
    if e2e_util.IN_CI:
        raise AssertionError(f"CI=true: {reason}; this test must not skip in CI")
    raise unittest.SkipTest(reason)


def ensure_receiver_installed() -> str:
    """Installs mockotlpserver into <build>/npm-peers once; returns its node_modules."""
    modules = os.path.join(npm_dir(), "node_modules")
    pkg = os.path.join(modules, "@elastic", "mockotlpserver", "package.json")
    wanted = MOCKOTLPSERVER.rsplit("@", 1)[1]
    try:
        with open(pkg) as f:
            if json.load(f).get("version") == wanted:
                return modules
    except (OSError, ValueError):
        pass
    os.makedirs(npm_dir(), exist_ok=True)
    proc = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--no-save", "--prefix", npm_dir(), MOCKOTLPSERVER],
        capture_output=True, text=True, timeout=240)
    if proc.returncode != 0 or not os.path.exists(pkg):
        raise RuntimeError(f"npm install {MOCKOTLPSERVER} failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    return modules


class ReceiverTestCase(unittest.TestCase):
    """A test class that needs the receiver: installed once per class into `cls.modules`."""

    @classmethod
    def setUpClass(cls):
        try:
            cls.modules = ensure_receiver_installed()
        except Exception as e:  # noqa: BLE001 - any setup failure is the reason
            unavailable(f"cannot install the OTLP receiver: {e}")


class Receiver:
    """otlp_receiver.js in the background; its JSON lines collected by a thread."""

    def __init__(self, modules: str, grpc_port: int = 0, http_port: int = 0, fail: int = 0):
        env = dict(os.environ, NODE_PATH=modules)
        opts = json.dumps({"grpcPort": grpc_port, "httpPort": http_port, "fail": fail})
        self.proc = subprocess.Popen(["node", RECEIVER_JS, opts], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        ready = self.wait_for(lambda e: e["event"] == "listening", 1, timeout=30)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            err = self.proc.stderr.read()  # before stop() closes it
            self.stop()
            raise RuntimeError(f"otlp_receiver.js did not start: {err[-2000:]}")
        self.grpc_port = ready[0]["grpc"]
        self.http_port = ready[0]["http"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)

    def wait_for(self, pred, count: int, timeout: float = 15.0) -> list[dict]:
        found: list[dict] = []
        for _ in e2e_util.deadline_loop(timeout):
            with self.lock:
                found = [e for e in self.events if pred(e)]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                break
        return found

    def spans(self) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["event"] == "span"]

    def requests(self, transport: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["event"] == "request" and e["transport"] == transport]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def parse_metrics(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


class Sender:
    """tests/tools/otlp_send in the background, its log (stderr) readable while it runs."""

    def __init__(self, env_extra: dict[str, str], traces: int, interval_ms: int = 0,
                 shutdown_ms: int = 10000):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_EXPORTER_OTLP_", "OTEL_BSP_"))}
        env.update(env_extra)
        self.proc = subprocess.Popen(
            [otlp_send_bin(), "--traces", str(traces), "--interval-ms", str(interval_ms),
             "--shutdown-ms", str(shutdown_ms), "--run-id", RUN_ID],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.lock = threading.Lock()
        self.pumps = [threading.Thread(target=self._pump, args=(s, sink), daemon=True)
                      for s, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))]
        for t in self.pumps:
            t.start()

    def _pump(self, stream, sink: list[str]) -> None:
        for line in stream:
            with self.lock:
                sink.append(line)

    def wait_log(self, text: str, timeout: float) -> bool:
        """True once a line of the sender's log contains `text`."""
        for _ in e2e_util.deadline_loop(timeout, 0.02):
            with self.lock:
                if any(text in line for line in self.stderr):
                    return True
            if self.proc.poll() is not None:
                break
        with self.lock:
            return any(text in line for line in self.stderr)

    def result(self, timeout: float = 90) -> tuple[list[str], dict[str, float], str]:
        """Waits for the sender to finish: (its "sent" lines, its final metrics, its log)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"otlp_send still running after {timeout:.0f}s")
        for t in self.pumps:
            t.join(timeout=10)
        out, err = "".join(self.stdout), "".join(self.stderr)
        if rc != 0:
            raise AssertionError(f"otlp_send failed rc={rc}: {err[-3000:]}")
        sent = [line for line in out.splitlines() if line.startswith("sent ")]
        metrics_text = out.split("# metrics\n", 1)[1] if "# metrics\n" in out else ""
        return sent, parse_metrics(metrics_text), err


def run_sender(env_extra: dict[str, str], traces: int, interval_ms: int = 0,
               shutdown_ms: int = 10000, timeout: float = 90) -> tuple[list[str], dict[str, float], str]:
    return Sender(env_extra, traces, interval_ms, shutdown_ms).result(timeout)


def trace_id(i: int) -> str:
    return f"{RUN_ID}00000000{i:016x}"


def span_id(tag: int, i: int) -> str:
    return f"{tag:02x}{i:014x}"


def dropped(metrics: dict[str, float], reason: str) -> float:
    return metrics.get(f'threadline_spans_dropped_total{{reason="{reason}"}}', 0)


def requests_total(metrics: dict[str, float], result: str) -> float:
    return metrics.get(f'threadline_export_requests_total{{result="{result}"}}', 0)


class OtlpExportTest(unittest.TestCase):
    modules = ""

    @classmethod
    def setUpClass(cls) -> None:
        if not os.path.isfile(otlp_send_bin()):
            raise AssertionError(f"otlp_send not built at {otlp_send_bin()} (build: scripts/build.sh)")
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                unavailable(f"{tool} not installed (scripts/deps.sh --with-test-peers)")
        try:
            cls.modules = ensure_receiver_installed()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            unavailable(f"cannot install {MOCKOTLPSERVER}: {e}")

    def start_receiver(self, **kw) -> Receiver:
        r = Receiver(self.modules, **kw)
        self.addCleanup(r.stop)
        return r

    @staticmethod
    def endpoint_env(protocol: str, r_or_port, gzip: bool = False) -> dict[str, str]:
        if protocol == "grpc":
            port = r_or_port if isinstance(r_or_port, int) else r_or_port.grpc_port
        else:
            port = r_or_port if isinstance(r_or_port, int) else r_or_port.http_port
        env = {
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip" if gzip else "none",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=s3cr%3Dt,Authorization=Bearer%20tok",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "8",
        }
        return env

    # ---- every field, both protocols, gzip on and off ----------------------------------------

    def check_full_export(self, protocol: str, gzip: bool) -> None:
        r = self.start_receiver()
        traces = 6
        sent, metrics, stderr = run_sender(self.endpoint_env(protocol, r, gzip), traces)
        self.assertEqual(len(sent), 2 * traces)
        got = r.wait_for(lambda e: e["event"] == "span", 2 * traces)
        self.assertEqual(len(got), 2 * traces, f"receiver got {len(got)} spans; sender log:\n{stderr}")
        by_id = {s["span_id"]: s for s in got}
        self.assertEqual(len(by_id), 2 * traces, "duplicate spans")
        base = 1700000000000000000
        for i in range(traces):
            root = by_id[span_id(0x10, i)]
            child = by_id[span_id(0x20, i)]
            self.assertEqual(root["trace_id"], trace_id(i))
            self.assertEqual(child["trace_id"], trace_id(i))
            self.assertEqual(root["parent_span_id"], "")
            self.assertEqual(child["parent_span_id"], span_id(0x10, i))
            self.assertEqual((root["name"], root["kind"]), ("GET /items/{id}", 2))
            self.assertEqual((child["name"], child["kind"]), ("SELECT items", 3))
            self.assertEqual(root["start"], str(base + i * 1000000))
            self.assertEqual(root["end"], str(base + i * 1000000 + 5000000))
            self.assertEqual(child["start"], str(base + i * 1000000 + 1000000))
            self.assertEqual(child["end"], str(base + i * 1000000 + 3000000))
            self.assertEqual(root["flags"], 0x101)  # sampled | context-has-is-remote
            self.assertEqual(root["attributes"], {
                "http.request.method": "GET", "http.response.status_code": {"int": "200"},
                "tl.index": {"int": str(i)}, "tl.ratio": {"double": 0.5}, "tl.sampled": True})
            self.assertEqual(child["attributes"], {"db.system": "postgresql", "tl.index": {"int": str(i)}})
            self.assertEqual((root["status_code"], child["status_code"], child["status_message"]), (0, 2, "timeout"))
            for s in (root, child):
                self.assertEqual(s["resource"], {"service.name": "otlp-send-e2e", "process.pid": {"int": "4242"},
                                                 "host.name": "e2e-host"})
                self.assertEqual(s["scope"], {"name": "threadline", "version": "0.1.0"})

        # The receiver reports a request after its spans (the HTTP front emits it once the mock
        # answered), so wait for as many requests as the exporter counted as delivered.
        transport = protocol if protocol == "grpc" else "http"
        delivered = int(requests_total(metrics, "success"))
        self.assertGreater(delivered, 0)
        reqs = r.wait_for(lambda e: e["event"] == "request" and e["transport"] == transport, delivered)
        for q in reqs:
            self.assertTrue(q["user_agent"].startswith("threadline/0.1.0"), q)
            if protocol == "grpc":
                self.assertEqual(q["api_key"], "s3cr=t")
            else:
                self.assertEqual(q["path"], "/v1/traces")
                self.assertEqual(q["content_type"], "application/x-protobuf")
                self.assertEqual(q["authorization"], "Bearer tok")
                self.assertEqual(q["encoding"], "gzip" if gzip else "")
                self.assertEqual(q["gzip_magic"], gzip)
        self.assertEqual(metrics["threadline_spans_exported_total"], 2 * traces)
        self.assertEqual(requests_total(metrics, "success"), len(reqs))
        self.assertEqual(requests_total(metrics, "retryable_error"), 0)
        self.assertEqual(metrics["threadline_export_latency_seconds_count"], len(reqs))
        self.assertEqual(sum(dropped(metrics, x) for x in ("queue_full", "export_failed", "retries_exhausted",
                                                         "shutdown")), 0)

    def test_grpc(self) -> None:
        self.check_full_export("grpc", gzip=False)

    def test_grpc_gzip(self) -> None:
        self.check_full_export("grpc", gzip=True)

    def test_http_protobuf(self) -> None:
        self.check_full_export("http/protobuf", gzip=False)

    def test_http_protobuf_gzip(self) -> None:
        self.check_full_export("http/protobuf", gzip=True)

    # ---- receiver down at the start, then up --------------------------------------------------

    def check_down_then_up(self, protocol: str) -> None:
        port = e2e_util.free_port()
        env = self.endpoint_env(protocol, port)
        env["OTEL_BSP_EXPORT_TIMEOUT"] = "800"  # a batch gives up quickly while nobody listens
        env["OTEL_EXPORTER_OTLP_TIMEOUT"] = "500"
        traces = 80  # 8 s of traces, one every 100 ms
        sender = Sender(env, traces, interval_ms=100, shutdown_ms=8000)
        self.addCleanup(lambda: sender.proc.poll() is None and sender.proc.kill())
        # The receiver comes up once the exporter has given up on a batch for want of one (its
        # log says so), not after a guessed time: the premise of "lost > 0" below.
        self.assertTrue(sender.wait_log("OTLP export: dropped a batch", timeout=30),
                        "the exporter never gave up on a batch while nobody listened:\n" + "".join(sender.stderr))
        if protocol == "grpc":
            r = self.start_receiver(grpc_port=port)
        else:
            r = self.start_receiver(http_port=port)
        _, metrics, stderr = sender.result(timeout=120)
        got = r.wait_for(lambda e: e["event"] == "span", 2 * 20, timeout=10)
        indices = {int(s["trace_id"][-16:], 16) for s in r.spans()}
        exported = metrics["threadline_spans_exported_total"]
        lost = dropped(metrics, "retries_exhausted") + dropped(metrics, "shutdown") + dropped(metrics, "queue_full")
        self.assertGreater(lost, 0, f"nothing was dropped while the receiver was down:\n{stderr}")
        self.assertEqual(exported + lost, 2 * traces, metrics)
        # At least once: a request that timed out on our side may still have been delivered
        # (then counted as failed, and retried or dropped), so the receiver can hold more than
        # `exported`, never more than exported + lost, and never fewer than exported.
        unique = {(s["trace_id"], s["span_id"]) for s in r.spans()}
        self.assertGreaterEqual(len(unique), exported)
        self.assertLessEqual(len(unique), exported + lost)
        # Everything sent well after the receiver came up (at ~1 s, once the first batch was
        # dropped; gRPC reconnects within its 2 s backoff cap) got there.
        self.assertTrue(set(range(60, traces)) <= indices, f"missing late traces; got {sorted(indices)}")
        self.assertGreater(len(got), 0)
        self.assertGreater(requests_total(metrics, "retryable_error"), 0)

    def test_grpc_receiver_down_then_up(self) -> None:
        self.check_down_then_up("grpc")

    def test_http_receiver_down_then_up(self) -> None:
        self.check_down_then_up("http/protobuf")

    # ---- a receiver answering 503 / UNAVAILABLE for a while -----------------------------------

    def check_flaky(self, protocol: str) -> None:
        r = self.start_receiver(fail=3)
        traces = 5
        start = time.monotonic()
        _, metrics, stderr = run_sender(self.endpoint_env(protocol, r), traces)
        got = r.wait_for(lambda e: e["event"] == "span", 2 * traces)
        self.assertEqual(len(got), 2 * traces, stderr)
        self.assertEqual({s["span_id"] for s in got},
                         {span_id(t, i) for t in (0x10, 0x20) for i in range(traces)})
        reqs = r.requests("grpc" if protocol == "grpc" else "http")
        failed = [q for q in reqs if q["status"] != (0 if protocol == "grpc" else 200)]
        self.assertEqual(len(failed), 3)
        self.assertEqual(requests_total(metrics, "retryable_error"), 3)
        self.assertEqual(metrics["threadline_spans_exported_total"], 2 * traces)
        self.assertEqual(dropped(metrics, "retries_exhausted"), 0)
        if protocol != "grpc":
            # Retry-After: 1 on each 503: three waits of a second at least.
            self.assertGreaterEqual(time.monotonic() - start, 3.0)

    def test_grpc_unavailable_then_ok(self) -> None:
        self.check_flaky("grpc")

    def test_http_503_then_ok(self) -> None:
        self.check_flaky("http/protobuf")


if __name__ == "__main__":
    e2e_util.main()

"""Health endpoints of the running agent: /healthz (liveness), /readyz (readiness: 503 with the
reason until the BPF programs are attached and the ring consumer runs, then 200), and
/capabilities (the capability report as JSON, matching what this kernel really allows)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import urllib.error
import urllib.request
import unittest

from e2e_util import Agent, deadline_loop, lockdown_mode, main, require_root

METRICS_LINE = re.compile(r"metrics endpoint: http://(127\.0\.0\.1:\d+)/metrics")


def get(url: str) -> tuple[int, str, str]:
    """(status, body, content type); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type", "")


class HealthEndpointsTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def start_agent(self, *extra: str) -> tuple[Agent, str]:
        agent = Agent(["--output=none", "--metrics-address", "127.0.0.1:0", *extra], self, wait_ready=False)
        for _ in deadline_loop(60, 0.01):
            for line in agent.stderr_lines:
                m = METRICS_LINE.search(line)
                if m:
                    return agent, "http://" + m.group(1)
            if agent.proc.poll() is not None:
                break
        self.fail(f"no metrics endpoint line\n{agent.describe()}")

    def test_readiness_follows_startup(self):
        """503 with a reason while starting, then 200.

        The agent is held in its start-up, not raced: --output-file names a FIFO, which the
        agent opens once its metrics endpoint is up and before it loads its BPF programs, and
        that open() blocks until the test opens the other end."""
        tmp = tempfile.mkdtemp(prefix="tl-e2e-health-")
        self.addCleanup(shutil.rmtree, tmp, True)
        fifo = os.path.join(tmp, "out.fifo")
        os.mkfifo(fifo)
        agent, base = self.start_agent("--output-file", fifo)
        status, body, _ = get(base + "/readyz")
        self.assertEqual(status, 503, f"ready while held before loading BPF (does the agent still open "
                                      f"its output after starting the endpoint?): {body}\n{agent.describe()}")
        self.assertRegex(body, r"^starting: loading and attaching BPF programs", "a not-ready answer must say why")
        status, body, _ = get(base + "/healthz")
        self.assertEqual(status, 200, "starting counts as alive: " + body)

        def drain() -> None:
            with open(fifo, "rb") as f:  # lets the agent's open() return; read until it closes
                while f.read(65536):
                    pass
        threading.Thread(target=drain, daemon=True).start()
        not_ready = []
        for _ in deadline_loop(60, 0.02):
            status, body, _ = get(base + "/readyz")
            if status == 200:
                break
            not_ready.append((status, body))
        self.assertEqual(status, 200, f"/readyz never 200: {not_ready[-3:]}\n{agent.describe()}")
        for st, b in not_ready:
            self.assertEqual(st, 503, b)
            self.assertRegex(b, r"^starting: ", "a not-ready answer must say why")
        self.assertRegex(body, r"^ready: \d+ BPF hooks attached, ring consumer running, tracing all processes\n$")
        agent.wait_ready()
        status, body, _ = get(base + "/healthz")
        self.assertEqual(status, 200, body)
        self.assertTrue(body.startswith("alive"), body)
        status, body, _ = get(base + "/metrics")
        self.assertEqual(status, 200)
        self.assertIn("threadline_probe_kind_available", body)
        status, body, _ = get(base + "/nope")
        self.assertEqual(status, 404)
        self.assertIn("/readyz", body)
        self.assertEqual(agent.stop(), 0, agent.describe())

    def test_capabilities_json_matches_the_kernel(self):
        agent, base = self.start_agent()
        agent.wait_ready()
        status, body, ctype = get(base + "/capabilities")
        self.assertEqual(status, 200, body)
        self.assertEqual(ctype, "application/json")
        caps = json.loads(body)
        self.assertEqual(caps["kernel_release"], os.uname().release)
        self.assertEqual(caps["btf"], os.path.exists("/sys/kernel/btf/vmlinux"))
        lockdown = lockdown_mode()
        if lockdown is not None:
            self.assertEqual(caps["lockdown"], lockdown)
        self.assertTrue(caps["can_run"])
        probes = {p["kind"]: p for p in caps["probes"]}
        for kind in ("syscall tracepoint", "ring buffer", "uprobe", "kprobe", "fentry", "sk_msg"):
            self.assertIn(kind, probes)
        self.assertTrue(probes["syscall tracepoint"]["works"])
        self.assertTrue(probes["ring buffer"]["works"])
        hooks = {h["hook"]: h for h in caps["hooks"]}
        self.assertTrue(hooks["socket syscalls"]["active"])
        self.assertEqual(hooks["socket syscalls"]["chosen"], "syscall tracepoints")
        self.assertIsInstance(caps["limitations"], list)
        # This machine: no kprobes compiled in -> reported as a note, not a limitation.
        if not os.path.exists("/sys/kernel/tracing/kprobe_events"):
            self.assertFalse(probes["kprobe"]["works"])
            self.assertTrue(any(n.startswith("kprobe unavailable") for n in caps["notes"]), caps["notes"])
            self.assertFalse(any("kprobe" in x for x in caps["limitations"]), caps["limitations"])
        # A limitation is listed for every degraded hook without a working mechanism.
        for h in caps["hooks"]:
            if h["degraded"] and not h["active"]:
                self.assertTrue(any(x.startswith(h["hook"] + ":") for x in caps["limitations"]), h)
        self.assertEqual(agent.stop(), 0, agent.describe())


if __name__ == "__main__":
    main()

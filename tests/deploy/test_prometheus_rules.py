"""deploy/prometheus: threadline's recording rules, alerts and ingestion SLO, as a plain rules
file and as the PrometheusRule of deploy/overlays/prometheus-operator.

- `promtool check rules` accepts the file, and `promtool test rules` runs its unit tests
  (synthetic series: every alert fires where its fault is, only there, and not below its
  threshold or before its `for`);
- the alerts are the ones the issue asks for, each with a runbook line in deploy/README.md and an
  annotation pointing there; every metric the rules read is one the agent exposes (named in
  docs/metrics.md's reference table);
- the overlay's PrometheusRule is what deploy/prometheus/make-prometheusrule.sh makes of the file
  (committed output up to date), and the rendered object (kubectl kustomize) is well formed:
  kubernetes-models has no schema for the Prometheus Operator's kinds, so its structure is checked
  here, and its spec.groups, written back out as a rules file, passes promtool check and the same
  unit tests; the PodMonitor selects the DaemonSet's pods on their metrics port; everything else
  in the overlay is ../otlp-collector unchanged.

Needs promtool (Debian `prometheus`), kubectl and node (as test_manifests.py). No root. With
CI=true a missing tool fails the test; elsewhere it skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_util import REPO, main, require_tool  # noqa: E402
from test_manifests import DEPLOY, parse_yaml, rendered, run  # noqa: E402

RULES_DIR = os.path.join(DEPLOY, "prometheus")
RULES = os.path.join(RULES_DIR, "threadline-rules.yaml")
RULE_TESTS = ("threadline-rules_test.yaml", "threadline-rules_days_test.yaml")
GENERATOR = os.path.join(RULES_DIR, "make-prometheusrule.sh")
OVERLAY = "prometheus-operator"
GENERATED = os.path.join(DEPLOY, "overlays", OVERLAY, "prometheusrule.yaml")

# What issue #20 asks to be alerted on, by alert name.
ALERTS = {
    "ThreadlineTracingSilent",            # no spans exported for 5 min while requests are seen
    "ThreadlineExportFailing",            # export failure rate above 5%
    "ThreadlinePropagationFailing",       # propagation failure above 1% where links are expected
    "ThreadlineExportQueueNearlyFull",    # queue above 90%
    "ThreadlineKernelEventsLost",         # kernel event loss
    "ThreadlineAgentRestarted",           # agent restarts
    "ThreadlineTailKeepDecidingEarly",    # tail keep bounds deciding before traces complete
    "ThreadlineAgentDown",                # (and an agent that cannot be scraped at all)
    "ThreadlineIngestionBudgetBurnFast",  # multi-window burn rate, 99.5% over 30 days: page
    "ThreadlineIngestionBudgetBurnSlow",  # ... ticket
}
RULE_KEYS = {"record", "alert", "expr", "for", "labels", "annotations"}


def promtool(test: unittest.TestCase, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess:
    require_tool(test, "promtool", hint="scripts/deps.sh --with-test-peers installs prometheus")
    return run(["promtool", *args], cwd=cwd, timeout=300)


def load_yaml_file(test: unittest.TestCase, path: str) -> dict:
    with open(path) as f:
        docs = parse_yaml(test, f.read())
    test.assertEqual(len(docs), 1, path)
    return docs[0]


class PrometheusRulesTest(unittest.TestCase):
    def test_promtool_check_and_unit_tests(self):
        p = promtool(self, "check", "rules", RULES)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)
        p = promtool(self, "test", "rules", *RULE_TESTS, cwd=RULES_DIR)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.count("SUCCESS"), len(RULE_TESTS), p.stdout)

    def test_unit_tests_can_fail(self):
        """A threshold moved in a copy of the rules makes the unit tests fail."""
        with open(RULES) as f:
            text = f.read()
        broken = text.replace("threadline:export_queue:saturation > 0.9", "threadline:export_queue:saturation > 0.95")
        self.assertNotEqual(broken, text)
        with tempfile.TemporaryDirectory(prefix="tl-rules-") as d:
            with open(os.path.join(d, "threadline-rules.yaml"), "w") as f:
                f.write(broken)
            for t in RULE_TESTS:
                shutil.copy(os.path.join(RULES_DIR, t), d)
            p = promtool(self, "test", "rules", *RULE_TESTS, cwd=d)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("ThreadlineExportQueueNearlyFull", p.stdout + p.stderr)

    def test_alerts_have_runbooks_and_read_real_metrics(self):
        rules = load_yaml_file(self, RULES)
        self.assertEqual(set(rules), {"groups"})
        alerts = {}
        exprs = []
        for group in rules["groups"]:
            for rule in group["rules"]:
                self.assertTrue(set(rule) <= RULE_KEYS, rule)
                exprs.append(rule["expr"])
                if "alert" in rule:
                    alerts[rule["alert"]] = rule
        self.assertEqual(set(alerts), ALERTS)
        with open(os.path.join(DEPLOY, "README.md")) as f:
            readme = f.read()
        for name, rule in alerts.items():
            with self.subTest(alert=name):
                self.assertIn(rule["labels"]["severity"], {"page", "ticket", "critical", "warning"})
                self.assertEqual(rule["annotations"]["runbook"], f"deploy/README.md, Alerts and SLOs: {name}")
                self.assertTrue(rule["annotations"]["summary"])
                self.assertTrue(re.search(rf"(?m)^\| `{name}` \|.*\|.*\|$", readme), f"no runbook line for {name}")
        # Every threadline_* metric the rules read is in the metrics reference.
        with open(os.path.join(REPO, "docs", "metrics.md")) as f:
            reference = f.read()
        # (Recorded series, `level:name:operations`, are the rules' own.)
        used = {m for e in exprs for m in re.findall(r"(?<![:\w])(threadline_[a-z0-9_]+)(?![:\w])", e)}
        self.assertGreaterEqual(len(used), 10, used)
        for metric in sorted(used):
            self.assertTrue(re.search(rf"(?m)^\| `{metric}`", reference), f"{metric} not in docs/metrics.md")

    def test_generated_prometheusrule_is_up_to_date(self):
        p = run(["sh", GENERATOR])
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(GENERATED) as f:
            self.assertEqual(f.read(), p.stdout,
                             "deploy/overlays/prometheus-operator/prometheusrule.yaml is stale: run "
                             "deploy/prometheus/make-prometheusrule.sh > it")

    def test_rendered_prometheusrule_is_the_rules_file(self):
        """The object kustomize renders: a well-formed PrometheusRule in the agent's namespace whose
        spec is the rules file, and which passes promtool (check and the unit tests) by itself."""
        r = rendered(self, OVERLAY)
        rule = r.one("PrometheusRule")
        self.assertEqual(rule["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(set(rule), {"apiVersion", "kind", "metadata", "spec"})
        self.assertEqual(rule["metadata"]["name"], "threadline")
        self.assertEqual(rule["metadata"]["namespace"], r.daemonset["metadata"]["namespace"])
        self.assertEqual(rule["metadata"]["labels"]["app.kubernetes.io/name"], "threadline")
        self.assertEqual(set(rule["spec"]), {"groups"})
        self.assertEqual(rule["spec"], load_yaml_file(self, RULES))
        for group in rule["spec"]["groups"]:
            self.assertEqual(set(group) - {"interval"}, {"name", "rules"}, group.get("name"))
            for x in group["rules"]:
                self.assertEqual(len({"record", "alert"} & set(x)), 1, x)
                self.assertIsInstance(x["expr"], str)
                for key in ("labels", "annotations"):
                    self.assertTrue(all(isinstance(v, str) for v in x.get(key, {}).values()), x)
        with tempfile.TemporaryDirectory(prefix="tl-promrule-") as d:
            with open(os.path.join(d, "threadline-rules.yaml"), "w") as f:
                json.dump(rule["spec"], f)  # JSON is YAML
            for t in RULE_TESTS:
                shutil.copy(os.path.join(RULES_DIR, t), d)
            p = promtool(self, "check", "rules", "threadline-rules.yaml", cwd=d)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            p = promtool(self, "test", "rules", *RULE_TESTS, cwd=d)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    def test_podmonitor_scrapes_the_agents(self):
        r = rendered(self, OVERLAY)
        pm = r.one("PodMonitor")
        self.assertEqual(pm["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(set(pm), {"apiVersion", "kind", "metadata", "spec"})
        self.assertEqual(pm["metadata"]["namespace"], r.daemonset["metadata"]["namespace"])
        self.assertEqual(set(pm["spec"]), {"selector", "podMetricsEndpoints"})
        selector = pm["spec"]["selector"]["matchLabels"]
        pod_labels = r.daemonset["spec"]["template"]["metadata"]["labels"]
        self.assertTrue(selector.items() <= pod_labels.items(), (selector, pod_labels))
        (endpoint,) = pm["spec"]["podMetricsEndpoints"]
        self.assertEqual(set(endpoint), {"port", "path", "interval"})
        ports = {p["name"] for p in r.container["ports"]}
        self.assertIn(endpoint["port"], ports)
        self.assertEqual(endpoint["path"], "/metrics")
        self.assertRegex(endpoint["interval"], r"^\d+[smh]$")
        # The alert on unscrapeable agents matches the job name the Operator gives this PodMonitor.
        job = f'{pm["metadata"]["namespace"]}/{pm["metadata"]["name"]}'
        self.assertRegex(job, r".*threadline.*")

    def test_rest_of_the_overlay_is_otlp_collector(self):
        ours = [d for d in rendered(self, OVERLAY).docs if d["kind"] not in {"PodMonitor", "PrometheusRule"}]
        self.assertEqual(ours, rendered(self, "otlp-collector").docs)


if __name__ == "__main__":
    main()

"""deploy/: the kustomize base and overlays render, validate against the Kubernetes schemas, lint
clean, and say what we mean (least privilege, mounts, probes, read-only RBAC, a config file the
agent's own loader accepts); the Dockerfile is checked offline (no Docker daemon here): every
COPY source exists, those sources are enough to configure the build, and the runtime package
list is exactly the packages of the libraries the agent links.

Needs: kubectl (kustomize is built in), yamllint, node + npm (kubernetes-models and yaml are
installed from tests/e2e/peers/k8s-validate), the built agent (THREADLINE_BIN), cmake, dpkg.
No root. With CI=true a missing tool fails the test; elsewhere it skips.
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
from e2e_util import REPO, agent_bin, main, npm_peer, require_agent_binary, require_tool  # noqa: E402

DEPLOY = os.path.join(REPO, "deploy")
OVERLAYS = ("privileged", "otlp-collector", "tls-capture", "production-example", "prometheus-operator")
TARGETS = {"base": os.path.join(DEPLOY, "base"),
           **{o: os.path.join(DEPLOY, "overlays", o) for o in OVERLAYS}}
EXAMPLE = "production-example"  # the usual values set, to copy (ProductionExampleTest)
# Custom resources of the Prometheus Operator: kubernetes-models has no schema for them, so
# tests/deploy/test_prometheus_rules.py checks their structure itself.
OPERATOR_KINDS = {"prometheus-operator": ["PodMonitor", "PrometheusRule"]}

# What the base DaemonSet's container must have, exactly: each capability's reason is in
# deploy/base/daemonset.yaml and deploy/README.md ("Capabilities").
LEAST_CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "NET_ADMIN", "SYS_RESOURCE"}
# mountPath -> (hostPath, readOnly)
HOST_MOUNTS = {
    "/host/proc": ("/proc", True),
    "/sys/kernel/tracing": ("/sys/kernel/tracing", True),
    "/sys/kernel/security": ("/sys/kernel/security", True),
    "/sys/fs/cgroup": ("/sys/fs/cgroup", False),
}
READ_VERBS = {"get", "list", "watch"}
# Libraries every Debian image already has (Essential/required packages).
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1"}
RUNTIME_EXTRAS = {"ca-certificates"}  # not linked, documented in the Dockerfile


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def kustomize(test: unittest.TestCase, target: str) -> str:
    require_tool(test, "kubectl", hint="kubectl v1.32 has kustomize built in")
    # No kubeconfig: kubectl must not go looking for a cluster (it would try localhost:8080).
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = "/dev/null"
    p = run(["kubectl", "kustomize", target], env=env)
    test.assertEqual(p.returncode, 0, f"kubectl kustomize {target} failed:\n{p.stderr}")
    return p.stdout


_PEER_DIR: str | None = None


def peer_dir(test: unittest.TestCase) -> str:
    global _PEER_DIR
    if _PEER_DIR is None:
        _PEER_DIR = npm_peer("k8s-validate", test)
    return _PEER_DIR


def parse_yaml(test: unittest.TestCase, text: str) -> list[dict]:
    """Every document of `text` as JSON-compatible objects, parsed by the `yaml` npm package."""
    d = peer_dir(test)
    script = ("const YAML=require('yaml');let s='';process.stdin.on('data',c=>s+=c).on('end',()=>{"
              "const docs=YAML.parseAllDocuments(s);for(const d of docs){if(d.errors.length){"
              "console.error(d.errors.map(String).join('; '));process.exit(1)}}"
              "console.log(JSON.stringify(docs.map(d=>d.toJSON()).filter(x=>x!==null)))})")
    p = run(["node", "-e", script], input=text, cwd=d)
    test.assertEqual(p.returncode, 0, f"YAML does not parse: {p.stderr}")
    return json.loads(p.stdout)


class Rendered:
    def __init__(self, test: unittest.TestCase, name: str):
        self.name = name
        self.text = kustomize(test, TARGETS[name])
        self.docs = parse_yaml(test, self.text)

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str) -> dict:
        found = self.of_kind(kind)
        assert len(found) == 1, f"{self.name}: {len(found)} {kind} objects"
        return found[0]

    @property
    def daemonset(self) -> dict:
        return self.one("DaemonSet")

    @property
    def pod(self) -> dict:
        return self.daemonset["spec"]["template"]["spec"]

    @property
    def container(self) -> dict:
        cs = self.pod["containers"]
        assert len(cs) == 1, cs
        return cs[0]

    def config_text(self) -> str:
        vol = next(v for v in self.pod["volumes"] if v["name"] == "config")
        cm_name = vol["configMap"]["name"]
        cm = next(c for c in self.of_kind("ConfigMap") if c["metadata"]["name"] == cm_name)
        return cm["data"]["config.yaml"]


_RENDERED: dict[str, Rendered] = {}


def rendered(test: unittest.TestCase, name: str) -> Rendered:
    if name not in _RENDERED:
        _RENDERED[name] = Rendered(test, name)
    return _RENDERED[name]


def print_config(test: unittest.TestCase, r: Rendered) -> tuple[subprocess.CompletedProcess, str]:
    """`threadline --print-config --config <r's config.yaml>` with the environment r's pod gives
    the agent: the container's literal `env` values, NODE_NAME from the downward API (node-a) and a
    cluster's KUBERNETES_SERVICE_*; Secret references are left out (no Secret exists here).
    Returns the process and the config file's path (it is named in the sources printed)."""
    require_agent_binary(test)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "THREADLINE_", "KUBERNETES_"))}
    env.update({"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"})
    for e in r.container.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            env[e["name"]] = "node-a"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(r.config_text())
        f.flush()
        return run([agent_bin(), "--print-config", "--config", f.name], env=env, timeout=30), f.name


class ManifestTest(unittest.TestCase):
    def test_every_overlay_is_checked(self):
        """A new directory under deploy/overlays is rendered, validated and linted like the rest."""
        on_disk = {d for d in os.listdir(os.path.join(DEPLOY, "overlays"))
                   if os.path.isfile(os.path.join(DEPLOY, "overlays", d, "kustomization.yaml"))}
        self.assertEqual(on_disk, set(OVERLAYS))

    def test_render_and_schema_validate(self):
        """Each kustomization renders offline and every object validates against the schemas."""
        d = peer_dir(self)
        for name in TARGETS:
            with self.subTest(target=name):
                r = rendered(self, name)
                kinds = sorted(x["kind"] for x in r.docs)
                custom = OPERATOR_KINDS.get(name, [])
                self.assertEqual(kinds, sorted(["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
                                                "Namespace", "ServiceAccount", *custom]), name)
                builtin = [x for x in r.docs if x["kind"] not in custom]
                with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                    f.write("\n---\n".join(json.dumps(x) for x in builtin))  # JSON is YAML
                    f.flush()
                    p = run(["node", os.path.join(d, "validate.js"), f.name], cwd=d)
                results = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
                bad = [x for x in results if not x.get("ok")]
                self.assertEqual(bad, [], f"{name}: schema errors\n{p.stderr}")
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                self.assertEqual(len(results), len(builtin))

    def test_validator_rejects_a_broken_daemonset(self):
        """The schema check can fail: a string where a boolean belongs is reported."""
        d = peer_dir(self)
        text = rendered(self, "base").text.replace("privileged: false", 'privileged: "no"')
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(text)
            f.flush()
            p = run(["node", os.path.join(d, "validate.js"), f.name], cwd=d)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("privileged must be boolean", p.stdout)

    def test_yamllint(self):
        """Sources lint clean (strict, deploy/.yamllint.yaml); rendered output has no syntax or
        duplicate-key errors."""
        require_tool(self, "yamllint", hint="scripts/deps.sh --with-test-peers installs yamllint")
        p = run(["yamllint", "--strict", "-c", os.path.join(DEPLOY, ".yamllint.yaml"), DEPLOY])
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        for name in TARGETS:
            with self.subTest(target=name), tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(rendered(self, name).text)
                f.flush()
                p = run(["yamllint", "-d", "{extends: relaxed, rules: {line-length: disable}}", f.name])
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        # And yamllint can fail: a duplicate key.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("a: 1\na: 2\n")
            f.flush()
            self.assertNotEqual(run(["yamllint", "-d", "relaxed", f.name]).returncode, 0)

    def test_base_is_least_privilege(self):
        """hostPID, not privileged, no escalation, read-only root, capabilities exactly the set."""
        r = rendered(self, "base")
        self.assertIs(r.pod.get("hostPID"), True)
        self.assertFalse(r.pod.get("hostNetwork", False))
        sc = r.container["securityContext"]
        self.assertIs(sc["privileged"], False)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(set(sc["capabilities"]["add"]), LEAST_CAPS)
        self.assertEqual(len(sc["capabilities"]["add"]), len(LEAST_CAPS), "a capability listed twice")
        self.assertNotIn("SYS_ADMIN", sc["capabilities"]["add"])
        self.assertEqual(sc["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertEqual(set(sc), {"privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                                   "runAsUser", "runAsNonRoot", "capabilities", "seccompProfile",
                                   "appArmorProfile"}, "unexpected securityContext keys (a typo?)")
        # Nothing privileged at the pod level either.
        self.assertNotIn("securityContext", r.pod, "pod-level securityContext not expected")
        # Every capability has its reason next to it in the source.
        with open(os.path.join(DEPLOY, "base", "daemonset.yaml")) as f:
            source = f.read()
        for cap in LEAST_CAPS:
            self.assertRegex(source, rf"- {cap}\s+# \w", f"{cap} has no comment saying why")

    def test_privileged_overlay_is_the_opt_in(self):
        """Only the privileged overlay is privileged and adds SYS_ADMIN; the rest is the base."""
        base, priv = rendered(self, "base"), rendered(self, "privileged")
        sc = priv.container["securityContext"]
        self.assertIs(sc["privileged"], True)
        self.assertIn("SYS_ADMIN", sc["capabilities"]["add"])
        self.assertTrue(LEAST_CAPS <= set(sc["capabilities"]["add"]))
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        strip = lambda c: {k: v for k, v in c.items() if k != "securityContext"}  # noqa: E731
        self.assertEqual(strip(priv.container), strip(base.container))
        self.assertEqual(priv.pod["volumes"], base.pod["volumes"])
        for name in TARGETS.keys() - {"privileged"}:
            self.assertIs(rendered(self, name).container["securityContext"]["privileged"], False, name)

    def test_tls_capture_overlay_adds_only_sys_admin(self):
        """TLS uprobes need SYS_ADMIN on 6.18 (measured): that overlay adds exactly it."""
        base, tls = rendered(self, "base"), rendered(self, "tls-capture")
        b, t = base.container["securityContext"], tls.container["securityContext"]
        self.assertEqual(set(t["capabilities"]["add"]) - set(b["capabilities"]["add"]), {"SYS_ADMIN"})
        strip = lambda sc: {**sc, "capabilities": None}  # noqa: E731
        self.assertEqual(strip(t), strip(b))
        self.assertIs(t["privileged"], False)

    def test_mounts(self):
        """Host paths mounted where the agent looks, read-only except the cgroup root; the
        config's proc_root is the /proc mount."""
        for name in TARGETS:
            with self.subTest(target=name):
                r = rendered(self, name)
                volumes = {v["name"]: v for v in r.pod["volumes"]}
                mounts = {m["mountPath"]: m for m in r.container["volumeMounts"]}
                for path, (host, ro) in HOST_MOUNTS.items():
                    self.assertIn(path, mounts, f"{path} not mounted")
                    vol = volumes[mounts[path]["name"]]
                    self.assertEqual(vol.get("hostPath", {}).get("path"), host, path)
                    self.assertEqual(bool(mounts[path].get("readOnly", False)), ro, path)
                self.assertTrue(mounts["/etc/threadline"].get("readOnly"))
                self.assertIn("configMap", volumes[mounts["/etc/threadline"]["name"]])
                self.assertIn("emptyDir", volumes[mounts["/tmp"]["name"]])
                self.assertEqual(r.container["args"], ["--config", "/etc/threadline/config.yaml"])
                self.assertRegex(r.config_text(), r"(?m)^proc_root: /host/proc$")

    def test_scheduling_probes_resources(self):
        r = rendered(self, "base")
        ds, pod, c = r.daemonset, r.pod, r.container
        self.assertEqual(ds["spec"]["updateStrategy"]["type"], "RollingUpdate")
        self.assertEqual(pod["priorityClassName"], "system-node-critical")
        self.assertIn({"operator": "Exists"}, pod["tolerations"])
        self.assertEqual(ds["spec"]["selector"]["matchLabels"].items() - ds["spec"]["template"]["metadata"]["labels"].items(), set())
        port = next(p for p in c["ports"] if p["name"] == "metrics")
        self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
        # The agent must listen where the kubelet probes: the pod IP, on the named port.
        self.assertRegex(r.config_text(), rf"(?m)^  address: 0\.0\.0\.0:{port['containerPort']}$")
        for kind in ("requests", "limits"):
            self.assertEqual(set(c["resources"][kind]), {"cpu", "memory"}, kind)
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")

    def test_rbac_is_read_only_and_bound(self):
        r = rendered(self, "base")
        role = r.one("ClusterRole")
        granted: dict[tuple[str, str], set[str]] = {}
        for rule in role["rules"]:
            self.assertTrue(set(rule["verbs"]) <= READ_VERBS, f"write verb in {rule}")
            self.assertNotIn("*", rule["resources"])
            for g in rule["apiGroups"]:
                for res in rule["resources"]:
                    granted[(g, res)] = set(rule["verbs"])
        # Exactly what agent/discovery/k8s_* reads (least privilege): list+watch of pods
        # (k8s_watcher), GET of ReplicaSets and Jobs (owner chain in k8s_metadata).
        self.assertEqual(granted, {("", "pods"): READ_VERBS, ("apps", "replicasets"): {"get"},
                                   ("batch", "jobs"): {"get"}})
        self.assertNotIn(("", "secrets"), granted)
        binding = r.one("ClusterRoleBinding")
        sa = r.one("ServiceAccount")
        self.assertEqual(binding["roleRef"]["name"], role["metadata"]["name"])
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                                "namespace": sa["metadata"]["namespace"]}])
        self.assertEqual(r.pod["serviceAccountName"], sa["metadata"]["name"])
        self.assertEqual(r.daemonset["metadata"]["namespace"], r.one("Namespace")["metadata"]["name"])

    def test_configmap_loads_with_the_agent(self):
        """The agent's own loader accepts each rendered config (threadline --print-config), with
        the container's environment as the pod sets it."""
        require_agent_binary(self)
        for name in TARGETS:
            with self.subTest(target=name):
                p, path = print_config(self, rendered(self, name))
                self.assertEqual(p.returncode, 0, f"{name}: {p.stderr}")
                out = p.stdout
                self.assertRegex(out, rf'(?m)^proc_root: "/host/proc"  # file {re.escape(path)}:\d+$')
                self.assertRegex(out, r'(?m)^  address: "0\.0\.0\.0:9464"  # file ')
                self.assertRegex(out, r'(?m)^  node_name: "node-a"  # env NODE_NAME$')
                self.assertRegex(out, r'(?m)^  enabled: "auto"  # file .*; resolved: on$')
                self.assertRegex(out, r'(?m)^  api_server: "https://10\.96\.0\.1:443"  # default')
                if name == "otlp-collector":
                    self.assertRegex(out, r'(?m)^  output: "otlp"  # file ')
                    self.assertRegex(out, r'(?m)^    endpoint: "http://otel-collector\.observability\.svc'
                                          r'\.cluster\.local:4317"  # file ')
                    self.assertRegex(out, r'(?m)^    protocol: "grpc"  # file ')
        # The check can fail: a typo in the file is an error naming the key.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(rendered(self, "base").config_text().replace("proc_root:", "procroot:"))
            f.flush()
            p = run([agent_bin(), "--print-config", "--config", f.name], timeout=30)
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn("unknown key procroot (did you mean proc_root?)", p.stderr)

    def test_web_view_stays_on_the_pods_loopback(self):
        """Trace data never listens on a pod IP: in every target the agent's resolved ui.address
        is a loopback address (reached with kubectl port-forward) or off, and no container port,
        Service or probe points at it."""
        for name in TARGETS:
            with self.subTest(target=name):
                r = rendered(self, name)
                p, _ = print_config(self, r)
                self.assertEqual(p.returncode, 0, f"{name}: {p.stderr}")
                m = re.search(r'(?m)^ui:\n  address: "([^"]+)"  # (.*)$', p.stdout)
                self.assertIsNotNone(m, p.stdout)
                address = m.group(1)
                self.assertTrue(address == "off" or address.startswith("127.") or address.startswith("[::1]:"),
                                f"{name}: ui.address {address} ({m.group(2)}) is not loopback-only")
                port = address.rsplit(":", 1)[-1] if address != "off" else None
                for c in r.pod["containers"]:
                    self.assertNotIn(port, {str(x.get("containerPort")) for x in c.get("ports", [])}, c["name"])
                self.assertEqual([d for d in r.docs if d.get("kind") == "Service"], [], "no Service exposes the agent")

    def test_otlp_overlay_headers_from_an_optional_secret(self):
        for name in ("otlp-collector", EXAMPLE):
            with self.subTest(target=name):
                env = {e["name"]: e for e in rendered(self, name).container["env"]}
                ref = env["OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
                self.assertEqual(ref, {"name": "threadline-otlp", "key": "headers", "optional": True})


# ---------------------------------------------------------------------------------------------
# overlays/production-example: the usual values (issue #7), each set the kustomize way on top of
# overlays/otlp-collector. Each one must reach the rendered objects, and nothing else may change.
# ---------------------------------------------------------------------------------------------

EXAMPLE_IMAGE = "registry.example.com/observability/threadline:0.1.0"
EXAMPLE_RESOURCES = {"requests": {"cpu": "200m", "memory": "384Mi"}, "limits": {"cpu": "2", "memory": "1536Mi"}}
EXAMPLE_TOLERATIONS = [
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "dedicated", "operator": "Equal", "value": "shop", "effect": "NoSchedule"},
]
EXAMPLE_NODE_SELECTOR = {"kubernetes.io/os": "linux", "tracing.example.com/enabled": "true"}
EXAMPLE_ENV = {"THREADLINE_SAMPLING_RATIO": "0.1"}
EXAMPLE_POD_LABELS = {"monitoring.example.com/scrape": "true"}
EXAMPLE_POD_ANNOTATIONS = {"prometheus.io/scrape": "true", "prometheus.io/port": "9464",
                           "prometheus.io/path": "/metrics"}
EXAMPLE_ENDPOINT = "http://otel-gateway.observability.svc.cluster.local:4317"


def without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


class ProductionExampleTest(unittest.TestCase):
    def test_usual_values_reach_the_daemonset(self):
        """Image, resources, tolerations, nodeSelector, extra env, pod labels and annotations are
        the overlay's; the rest of the DaemonSet is ../otlp-collector's."""
        ex, otlp = rendered(self, EXAMPLE), rendered(self, "otlp-collector")
        c, pod, tmpl = ex.container, ex.pod, ex.daemonset["spec"]["template"]
        self.assertEqual(c["image"], EXAMPLE_IMAGE)
        self.assertEqual(c["resources"], EXAMPLE_RESOURCES)
        # The list replaces the base's `operator: Exists` (strategic merge: no merge key).
        self.assertEqual(pod["tolerations"], EXAMPLE_TOLERATIONS)
        self.assertEqual(pod["nodeSelector"], EXAMPLE_NODE_SELECTOR)
        env = {e["name"]: e for e in c["env"]}
        for name, value in EXAMPLE_ENV.items():
            self.assertEqual(env[name], {"name": name, "value": value})
        # Merged by name: NODE_NAME (base) and OTEL_EXPORTER_OTLP_HEADERS (otlp-collector) stay as
        # they were, and nothing sets the endpoint over config.yaml's.
        by_name = lambda es: sorted(es, key=lambda e: e["name"])  # noqa: E731
        self.assertEqual(by_name(e for e in c["env"] if e["name"] not in EXAMPLE_ENV), by_name(otlp.container["env"]))
        self.assertFalse({"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"} & env.keys())
        otlp_tmpl = otlp.daemonset["spec"]["template"]
        self.assertEqual(tmpl["metadata"]["labels"], {**otlp_tmpl["metadata"]["labels"], **EXAMPLE_POD_LABELS})
        self.assertEqual(tmpl["metadata"]["annotations"],
                         {**otlp_tmpl["metadata"]["annotations"], **EXAMPLE_POD_ANNOTATIONS})
        port = next(p for p in c["ports"] if p["name"] == "metrics")["containerPort"]
        self.assertEqual(tmpl["metadata"]["annotations"]["prometheus.io/port"], str(port))
        # The selector is immutable on a live DaemonSet: the overlay must not touch it.
        self.assertEqual(ex.daemonset["spec"]["selector"], otlp.daemonset["spec"]["selector"])
        self.assertEqual(ex.daemonset["metadata"], otlp.daemonset["metadata"])
        self.assertEqual(without(c, "image", "resources", "env"), without(otlp.container, "image", "resources", "env"))
        # The pod spec differs in the ConfigMap's generated name (a hash of config.yaml) only.
        self.assertEqual(ex.one("ConfigMap")["metadata"]["name"], next(
            v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"])
        unhashed = lambda p: {**without(p, "containers", "tolerations", "nodeSelector"), "volumes": [  # noqa: E731
            without(v, "configMap") if v["name"] == "config" else v for v in p["volumes"]]}
        self.assertEqual(unhashed(pod), unhashed(otlp.pod))
        self.assertEqual(without(ex.daemonset["spec"], "template"), without(otlp.daemonset["spec"], "template"))
        others = lambda r: [d for d in r.docs if d["kind"] not in ("DaemonSet", "ConfigMap")]  # noqa: E731
        self.assertEqual(others(ex), others(otlp))

    def test_security_context_is_the_bases(self):
        """The example keeps least privilege: the same capability set, read-only root, not
        privileged, no escalation."""
        sc = rendered(self, EXAMPLE).container["securityContext"]
        self.assertEqual(sc, rendered(self, "base").container["securityContext"])
        self.assertIs(sc["privileged"], False)
        self.assertIs(sc["allowPrivilegeEscalation"], False)
        self.assertIs(sc["readOnlyRootFilesystem"], True)
        self.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.assertEqual(sorted(sc["capabilities"]["add"]), sorted(LEAST_CAPS))
        self.assertIs(rendered(self, EXAMPLE).pod["hostPID"], True)
        self.assertNotIn("securityContext", rendered(self, EXAMPLE).pod)

    def test_config_as_the_agent_reads_it(self):
        """config.yaml replaces ../otlp-collector's; the agent, with the container's environment,
        reports the endpoint and the namespace/label selection from the file and the sampling
        ratio from the env."""
        ex = rendered(self, EXAMPLE)
        self.assertEqual(len(ex.of_kind("ConfigMap")), 1)
        p, path = print_config(self, ex)
        self.assertEqual(p.returncode, 0, p.stderr)
        out, src = p.stdout, rf"# file {re.escape(path)}:\d+$"
        self.assertRegex(out, rf'(?m)^  output: "otlp"  {src}')
        self.assertRegex(out, rf'(?m)^    endpoint: "{re.escape(EXAMPLE_ENDPOINT)}"  {src}')
        self.assertRegex(out, rf'(?m)^    protocol: "grpc"  {src}')
        self.assertRegex(out, rf'(?m)^  namespaces: \["shop", "payments-\*"\]  {src}')
        self.assertRegex(out, rf'(?m)^  labels: \{{"app\.kubernetes\.io/part-of": "shop"\}}  {src}')
        self.assertRegex(out, r'(?m)^  ratio: "0\.1"  # env THREADLINE_SAMPLING_RATIO$')
        self.assertRegex(out, r'(?m)^  enabled: "auto"  # file .*; resolved: on$')
        self.assertRegex(out, r'(?m)^  address: "0\.0\.0\.0:9464"  # file ')


# ---------------------------------------------------------------------------------------------
# Dockerfile (validated offline: there is no Docker daemon on our machines)
# ---------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str, int]]:
    """(instruction, arguments, stage index) with line continuations joined, comments dropped."""
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        lines = f.read().splitlines()
    out, buf, stage = [], "", -1
    for line in lines:
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.strip().partition(" ")
        if instr.upper() == "FROM":
            stage += 1
        out.append((instr.upper(), args.strip(), stage))
        buf = ""
    return out


def runtime_apt_packages() -> set[str]:
    """The packages the runtime stage's `apt-get install` names (the image's only package list;
    tests/deploy/test_image_runtime.py builds its root filesystem from it)."""
    runtime_run = " ".join(a for i, a, s in dockerfile_instructions() if i == "RUN" and s == 1)
    m = re.search(r"apt-get install (.*?)&&", runtime_run)
    if m is None:
        raise AssertionError(f"no apt-get install ... && in the runtime stage: {runtime_run}")
    return {w for w in m.group(1).split() if not w.startswith("-")}


class DockerfileTest(unittest.TestCase):
    def test_stages(self):
        ins = dockerfile_instructions()
        froms = [a for i, a, _ in ins if i == "FROM"]
        self.assertEqual(len(froms), 2, froms)
        args = {a.split("=")[0]: a.split("=", 1)[1] for i, a, _ in ins if i == "ARG" and "=" in a}
        self.assertEqual(args.get("DEBIAN_IMAGE"), "debian:12")
        self.assertEqual(froms[0], "${DEBIAN_IMAGE} AS builder")
        self.assertEqual(froms[1], "${DEBIAN_IMAGE}")
        builder_runs = " ".join(a for i, a, s in ins if i == "RUN" and s == 0)
        self.assertIn("scripts/build.sh", builder_runs)
        self.assertIn("scripts/deps.sh", builder_runs)
        runtime = [(i, a) for i, a, s in ins if s == 1]
        copies = [a for i, a in runtime if i == "COPY"]
        self.assertEqual(copies, ["--from=builder /threadline /usr/bin/threadline"],
                         "the runtime stage takes only the agent binary from the builder")
        self.assertIn(("ENTRYPOINT", '["/usr/bin/threadline"]'), runtime)

    def test_copy_sources_exist_and_suffice_to_configure(self):
        """Every COPY source of the builder exists in the repository, and a tree made of only
        those sources configures (cmake) with tests off, as the image build does."""
        require_tool(self, "cmake", hint="scripts/deps.sh installs cmake")
        sources = []
        for i, a, s in dockerfile_instructions():
            if i != "COPY" or a.startswith("--from"):
                continue
            *srcs, _dest = a.split()
            sources += srcs
        self.assertTrue(sources)
        for src in sources:
            self.assertTrue(os.path.exists(os.path.join(REPO, src)), f"COPY source {src} missing")
        with tempfile.TemporaryDirectory(prefix="tl-docker-ctx-") as ctx:
            for src in sources:
                s = os.path.join(REPO, src.rstrip("/"))
                d = os.path.join(ctx, src.rstrip("/"))
                if os.path.isdir(s):
                    shutil.copytree(s, d, ignore=shutil.ignore_patterns("__pycache__", "node_modules"))
                else:
                    shutil.copy2(s, d)
            p = run(["cmake", "-S", ctx, "-B", os.path.join(ctx, "build"), "-G", "Ninja",
                     "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DTHREADLINE_BUILD_TESTS=OFF"], timeout=300)
            self.assertEqual(p.returncode, 0, f"configure from the COPY'd sources failed:\n{p.stdout[-3000:]}"
                                              f"\n{p.stderr[-3000:]}")

    def test_runtime_packages_match_the_binary(self):
        """apt-get install in the runtime stage == the Debian packages of the agent's NEEDED
        libraries (minus what every Debian image has), plus ca-certificates."""
        require_agent_binary(self)
        require_tool(self, "readelf", hint="binutils")
        require_tool(self, "dpkg", hint="Debian")
        listed = runtime_apt_packages()
        needed_sonames = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                                    run(["readelf", "-d", agent_bin()]).stdout)
        self.assertTrue(needed_sonames)
        ldd = run(["ldd", agent_bin()]).stdout
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
        packages = set()
        for soname in needed_sonames:
            self.assertIn(soname, paths, f"ldd does not resolve {soname}:\n{ldd}")
            real = os.path.realpath(paths[soname])
            p = run(["dpkg", "-S", real])
            if p.returncode != 0:  # /lib vs /usr/lib (merged /usr): ask for the other spelling
                alt = real.replace("/usr/lib/", "/lib/", 1) if real.startswith("/usr/lib/") else "/usr" + real
                p = run(["dpkg", "-S", alt])
            self.assertEqual(p.returncode, 0, f"no package owns {real}")
            packages.add(p.stdout.split(":")[0])
        expected = (packages - BASE_IMAGE_PACKAGES) | RUNTIME_EXTRAS
        self.assertEqual(listed, expected,
                         f"missing in the Dockerfile: {sorted(expected - listed)}; "
                         f"not needed: {sorted(listed - expected)}")

    def test_dockerignore_keeps_build_trees_out(self):
        with open(os.path.join(DEPLOY, "Dockerfile.dockerignore")) as f:
            patterns = {line.strip() for line in f if line.strip() and not line.startswith("#")}
        self.assertTrue({"build", "build-*", ".git"} <= patterns, patterns)


if __name__ == "__main__":
    main()

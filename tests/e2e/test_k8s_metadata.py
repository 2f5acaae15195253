"""Kubernetes metadata end to end, on this machine (no cluster): a real traced server is moved
into a cgroup v2 directory shaped like a containerd pod's,

  <cgroup2>/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/
      cri-containerd-<64 hex>.scope

and the agent runs with Kubernetes metadata on, its API server being a local replay of
recorded answers (tests/tools/k8s_replay_server.py, tests/fixtures/k8s/pod_list.json has a
pod whose container has that id, owned by ReplicaSet checkout-7c9f8b6d5 of Deployment
checkout). The server's spans must carry container.id, the pod, namespace, container and
workload, and service.name = the Deployment's name; the client (curl, outside any container)
must carry none of it.

Selection by namespace and labels (--namespace, --label) is checked the same way, with the
whole machine in view (no --exe/--port): only the servers in cgroups of matching pods make
spans, a pod the watch adds later is traced once its event arrives, and a pod relabelled out of
the selection stops being traced.

Needs root (cgroup directories, BPF). In CI it fails rather than skips.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from e2e_util import (LOOPBACK, Agent, PeerProcess, agent_metrics, agent_spans, curl, deadline_loop,
                      format_spans, free_port, give_up, main, require_root, run_agent_once,
                      wait_for_spans)

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
FIXTURES = os.path.join(TESTS, "fixtures", "k8s")
REPLAY = os.path.join(TESTS, "tools", "k8s_replay_server.py")
PYTHON = sys.executable
PYTHON_EXE = os.path.basename(os.path.realpath(PYTHON))

NODE = "worker-1"
# The checkout pod of pod_list.json and its first container.
POD_UID = "3f1c6a2e-8b4d-4e1a-9c7f-2d5e8a1b4c60"
POD_NAME = "checkout-7c9f8b6d5-x2x9k"
CONTAINER_ID = "c7761e58969f7edd498186641b2021e8477e1bcd230de4cf3435242da4a40d14"


def cgroup2_mount() -> str | None:
    """Where the unified (v2) hierarchy is mounted: /sys/fs/cgroup on v2-only hosts,
    /sys/fs/cgroup/unified on hybrid ones (this machine)."""
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "cgroup2":
                return parts[1]
    return None


class PodCgroup:
    """The containerd/systemd-driver cgroup of one container, created for the test and removed
    after it (processes in it are moved back to the root first)."""

    def __init__(self, test: unittest.TestCase, root: str, pod_uid: str, container_id: str):
        self.root = root
        self.dirs = [
            os.path.join(root, "kubepods.slice"),
            os.path.join(root, "kubepods.slice", "kubepods-besteffort.slice"),
            os.path.join(root, "kubepods.slice", "kubepods-besteffort.slice",
                         f"kubepods-besteffort-pod{pod_uid.replace('-', '_')}.slice"),
        ]
        self.dirs.append(os.path.join(self.dirs[-1], f"cri-containerd-{container_id}.scope"))
        self.created: list[str] = []
        test.addCleanup(self.remove)
        for d in self.dirs:
            if not os.path.isdir(d):
                os.mkdir(d)
                self.created.append(d)
        self.leaf = self.dirs[-1]

    def add(self, pid: int) -> None:
        # A v2 cgroup with no controllers enabled below its parent takes processes anywhere;
        # a leaf (ours) always may.
        with open(os.path.join(self.leaf, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def remove(self) -> None:
        for d in reversed(self.dirs):
            procs = os.path.join(d, "cgroup.procs")
            try:
                with open(procs) as f:
                    pids = [p for p in f.read().split() if p]
                for p in pids:
                    with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                        f.write(p)
            except OSError:
                pass
        for d in reversed(self.created):
            for _ in deadline_loop(5.0, 0.1):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    continue  # a process still exiting


class ReplayServer:
    def __init__(self, test: unittest.TestCase, scenario: str, fixtures: str = FIXTURES):
        self.log = tempfile.NamedTemporaryFile(prefix="tl-k8s-requests-", suffix=".jsonl", delete=False).name
        test.addCleanup(os.unlink, self.log)
        self.proc = subprocess.Popen(
            [PYTHON, REPLAY, "--scenario", os.path.join(fixtures, scenario), "--fixtures", fixtures,
             "--log", self.log], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        test.addCleanup(self.stop)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            raise AssertionError(f"replay server did not start: {line!r} {self.proc.stderr.read()}")
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}"

    def requests(self) -> list[dict]:
        with open(self.log) as f:
            return [json.loads(l) for l in f if l.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        for s in (self.proc.stdout, self.proc.stderr):
            s.close()


class KubernetesMetadataTest(unittest.TestCase):
    def setUp(self):
        require_root(self)
        self.cgroup_root = cgroup2_mount()
        if not self.cgroup_root:
            give_up(self, "no cgroup v2 hierarchy mounted")

    def test_pod_in_containerd_cgroup_gets_pod_namespace_and_workload(self):
        api = ReplayServer(self, "scenario_watch.json")
        pod = PodCgroup(self, self.cgroup_root, POD_UID, CONTAINER_ID)

        www = tempfile.mkdtemp(prefix="tl-e2e-www-")
        self.addCleanup(shutil.rmtree, www, True)
        port = free_port()
        server = PeerProcess([PYTHON, "-m", "http.server", str(port), "--bind", LOOPBACK], self,
                             port=port, cwd=www)
        pod.add(server.pid)
        with open(f"/proc/{server.pid}/cgroup") as f:
            cgroup_text = f.read()
        self.assertIn(f"cri-containerd-{CONTAINER_ID}.scope", cgroup_text)

        agent = Agent(["--output=json", "--exe", PYTHON_EXE, "--exe", "curl", "--port", str(port),
                       "--kubernetes", "on", "--node-name", NODE, "--stats-interval", "1"],
                      self, env={"THREADLINE_KUBERNETES_API_SERVER": api.url})
        # The pod list arrives in the background; wait for it so the first span is complete
        # (the upgrade of a span built before it is covered by the unit tests).
        for _ in deadline_loop(20.0, 0.1):
            if any("pods on node worker-1" in l for l in agent.stderr_lines):
                break
        else:
            self.fail(f"the agent never listed the pods of {NODE}\n{agent.describe()}")

        client = curl(f"http://{LOOPBACK}:{port}/")
        self.assertEqual(client.stdout, "200", client.stderr)

        spans = wait_for_spans(agent, lambda ss: any(s.is_server and s.pid == server.pid for s in ss)
                               and any(s.is_client and s.pid == client.pid for s in ss))
        srv = next(s for s in spans if s.is_server and s.pid == server.pid)
        r = srv.resource
        want = {
            "container.id": CONTAINER_ID,
            "k8s.pod.name": POD_NAME,
            "k8s.pod.uid": POD_UID,
            "k8s.namespace.name": "shop",
            "k8s.container.name": "checkout",
            "k8s.node.name": NODE,
            "k8s.replicaset.name": "checkout-7c9f8b6d5",
            "k8s.deployment.name": "checkout",
            "service.name": "checkout",
        }
        got = {k: r.get(k) for k in want}
        self.assertEqual(got, want, f"server span resource: {r}\n{format_spans(spans)}")
        # The process attributes are still those of the real process.
        self.assertEqual(r.get("process.pid"), server.pid)

        # curl runs outside any container: no container or pod attributes.
        cli = next(s for s in spans if s.is_client and s.pid == client.pid)
        self.assertNotIn("container.id", cli.resource, cli.resource)
        self.assertNotIn("k8s.pod.name", cli.resource, cli.resource)

        # The agent asked for this node's pods only, and resolved the ReplicaSet's owner.
        reqs = api.requests()
        lists = [q for q in reqs if q["path"] == "/api/v1/pods" and "watch" not in q["query"]]
        self.assertTrue(lists)
        self.assertEqual(lists[0]["query"].get("fieldSelector"), f"spec.nodeName={NODE}")
        self.assertIn("/apis/apps/v1/namespaces/shop/replicasets/checkout-7c9f8b6d5",
                      [q["path"] for q in reqs])

        self.assertEqual(agent.stop(), 0, agent.describe())
        metrics = agent_metrics(agent.stderr_lines)
        self.assertEqual(metrics.get("threadline_k8s_metadata_misses_total", 0), 0, agent.stderr_tail())


# The container id of redis-0 (pod_list.json: namespace shop, app=redis), and the uid and
# container id of a pod the selection test adds through the watch.
REDIS_ID = "34fb46c847bb9df96e5205a39d382f648a6e8dce1e014cd85b4ca6a88d88ed03"
LATE_UID = "5b6c7d8e-9f01-4a2b-8c3d-4e5f60718293"
LATE_ID = "aa11bb22cc33dd44ee55ff6600778899aabbccddeeff00112233445566778899"


class PodSelectionTest(unittest.TestCase):
    """--namespace shop --label app=checkout, on a node whose API is replayed and whose pods'
    containers are cgroups created here, each holding a real Python HTTP server."""

    def setUp(self):
        require_root(self)
        self.cgroup_root = cgroup2_mount()
        if not self.cgroup_root:
            give_up(self, "no cgroup v2 hierarchy mounted")
        self.www = tempfile.mkdtemp(prefix="tl-e2e-www-")
        self.addCleanup(shutil.rmtree, self.www, True)

    def fixtures(self) -> tuple[str, dict, str]:
        """A fixtures directory with the recorded pod list and a watch stream the test appends
        to; returns it, the pod list, and the stream's path."""
        d = tempfile.mkdtemp(prefix="tl-k8s-fixtures-")
        self.addCleanup(shutil.rmtree, d, True)
        for name in os.listdir(FIXTURES):
            shutil.copy(os.path.join(FIXTURES, name), d)
        with open(os.path.join(FIXTURES, "scenario_watch.json")) as f:
            scenario = json.load(f)
        scenario["watch"] = [{"status": 200, "stream": "live.jsonl", "end": "follow"}]
        with open(os.path.join(d, "scenario_live.json"), "w") as f:
            json.dump(scenario, f)
        stream = os.path.join(d, "live.jsonl")
        open(stream, "w").close()
        with open(os.path.join(FIXTURES, "pod_list.json")) as f:
            pods = json.load(f)
        return d, pods, stream

    def server_in(self, pod_uid: str | None, container_id: str | None) -> PeerProcess:
        port = free_port()
        server = PeerProcess([PYTHON, "-m", "http.server", str(port), "--bind", LOOPBACK], self,
                             port=port, cwd=self.www)
        if pod_uid:
            PodCgroup(self, self.cgroup_root, pod_uid, container_id).add(server.pid)
        return server

    def test_namespace_and_label_select_containers_and_follow_the_watch(self):
        fixtures, pod_list, stream = self.fixtures()
        by_name = {p["metadata"]["name"]: p for p in pod_list["items"]}
        exporter = by_name["node-exporter-7xk4p"]
        exporter_id = exporter["status"]["containerStatuses"][0]["containerID"].split("://")[1]
        api = ReplayServer(self, "scenario_live.json", fixtures)

        checkout = self.server_in(POD_UID, CONTAINER_ID)                      # shop, app=checkout
        redis = self.server_in(by_name["redis-0"]["metadata"]["uid"], REDIS_ID)  # shop, app=redis
        monitoring = self.server_in(exporter["metadata"]["uid"], exporter_id)  # monitoring
        host = self.server_in(None, None)                                     # no pod at all
        late = self.server_in(LATE_UID, LATE_ID)                              # not in the API yet

        agent = Agent(["--output=json", "--namespace", "shop", "--label", "app=checkout",
                       "--kubernetes", "on", "--node-name", NODE, "--stats-interval", "1"],
                      self, env={"THREADLINE_KUBERNETES_API_SERVER": api.url})

        seen_lines = 0

        def wait_selected(n: int, what: str) -> None:
            """Waits for a selection change logged after the previous one."""
            nonlocal seen_lines
            pattern = f"{n} container cgroups selected"
            for _ in deadline_loop(20.0, 0.1):
                lines = agent.stderr_lines
                for i in range(seen_lines, len(lines)):
                    if pattern in lines[i]:
                        seen_lines = i + 1
                        return
                if agent.proc.poll() is not None:
                    break
            self.fail(f"{what}: no '{pattern}' in the agent's log\n{agent.describe()}")

        wait_selected(1, "the checkout container's cgroup (the only matching one) is selected")
        for server in (checkout, redis, monitoring, host, late):
            r = curl(server.url())
            self.assertEqual(r.stdout, "200", r.stderr)
        spans = wait_for_spans(agent, lambda ss: any(s.is_server and s.pid == checkout.pid for s in ss))
        srv = next(s for s in spans if s.is_server and s.pid == checkout.pid)
        self.assertEqual(srv.resource.get("k8s.namespace.name"), "shop")
        self.assertEqual(srv.resource.get("k8s.deployment.name"), "checkout")

        # The pod added by the watch: selected when its event arrives, traced from then on.
        late_pod = {
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "late-0", "namespace": "shop", "uid": LATE_UID,
                         "resourceVersion": "2001", "labels": {"app": "checkout"}},
            "spec": {"nodeName": NODE, "containers": [{"name": "late"}]},
            "status": {"phase": "Running",
                       "containerStatuses": [{"name": "late", "containerID": f"containerd://{LATE_ID}"}]},
        }
        with open(stream, "a") as f:
            f.write(json.dumps({"type": "ADDED", "object": late_pod}) + "\n")
        wait_selected(2, "the pod added by the watch is selected")
        r = curl(late.url())
        self.assertEqual(r.stdout, "200", r.stderr)
        wait_for_spans(agent, lambda ss: any(s.is_server and s.pid == late.pid for s in ss))

        # The checkout pod relabelled out of the selection: its container is no longer traced.
        relabelled = json.loads(json.dumps(by_name[POD_NAME]))
        relabelled["metadata"]["labels"]["app"] = "checkout-old"
        relabelled["metadata"]["resourceVersion"] = "2002"
        with open(stream, "a") as f:
            f.write(json.dumps({"type": "MODIFIED", "object": relabelled}) + "\n")
        wait_selected(1, "the relabelled pod leaves the selection")
        for server in (checkout, late):
            r = curl(server.url())
            self.assertEqual(r.stdout, "200", r.stderr)
        # The late server's second span comes after the checkout request was handled.
        spans = wait_for_spans(
            agent, lambda ss: sum(1 for s in ss if s.is_server and s.pid == late.pid) >= 2)
        self.assertEqual(agent.stop(), 0, agent.describe())
        spans = agent_spans(agent)

        by_pid: dict[int, int] = {}
        for s in spans:
            by_pid[s.pid] = by_pid.get(s.pid, 0) + 1
        self.assertEqual(sum(1 for s in spans if s.pid == checkout.pid), 1,
                         f"checkout traced only before it was relabelled\n{format_spans(spans)}")
        for name, server in (("redis (app=redis)", redis), ("node-exporter (namespace monitoring)", monitoring),
                             ("a host process", host)):
            self.assertFalse([s for s in spans if s.pid == server.pid],
                             f"{name} must not be traced\n{format_spans(spans)}")
        # Only the two selected servers made spans: curl runs on the host, outside every pod.
        self.assertEqual(set(by_pid), {checkout.pid, late.pid}, format_spans(spans))
        metrics = agent_metrics(agent.stderr_lines)
        self.assertEqual(metrics.get("threadline_selection_cgroups"), 1, agent.stderr_tail())
        self.assertEqual(metrics.get("threadline_selection_cgroup_errors_total", 0), 0, agent.stderr_tail())

    def test_selection_without_kubernetes_is_refused(self):
        r = run_agent_once(["--output=json", "--namespace", "shop", "--kubernetes", "off"])
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assertIn("needs Kubernetes metadata", r.stderr)


if __name__ == "__main__":
    main()

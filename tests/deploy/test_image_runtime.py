"""The container image's runtime stage, run the way the DaemonSet runs it, without a container
engine (there is no Docker daemon on our machines and no registry to pull debian:12 from).

1. The image: a Debian 12 root filesystem made by mmdebstrap (--variant=minbase, what debian:12
   is made of) from the host's Debian mirror, with exactly the packages deploy/Dockerfile's
   runtime stage installs (parsed from the Dockerfile), cached under
   /var/cache/threadline-rootfs/<hash of packages, suite and sources> (THREADLINE_ROOTFS_CACHE),
   plus a layer with the agent stripped as the builder strips it (`strip --strip-debug`).
2. The pod: tests/deploy/pod_sandbox.sh mounts the layers as a read-only overlay root in a new
   mount namespace, with /proc of the host pid namespace (hostPID), a read-only /sys, the
   rendered DaemonSet's volumes (hostPath binds, the ConfigMap, the emptyDir), and runs the
   container's entrypoint + args + env as uid 0 with exactly the capabilities of
   securityContext.capabilities.add (capsh; no_new_privs for allowPrivilegeEscalation: false),
   in a network namespace of its own (no hostNetwork) reached from the host over a veth pair,
   like a pod IP.
3. What a user checks: every library resolves inside the image (ldd there), /readyz turns 200 on
   the pod IP at the port the readiness probe names, /capabilities is JSON, a curl to a
   python3 http.server on the host becomes a span in the pod's log (the base config's console
   output), the otlp-collector overlay exports it to a real OTLP receiver (the one
   tests/e2e/test_otlp_export.py uses) with the headers from its Secret, the base logs why TLS
   capture is off while the tls-capture overlay's SYS_ADMIN turns an HTTPS request into a span,
   and SIGTERM ends the agent cleanly.

Needs root (mounts, namespaces, BPF), mmdebstrap and capsh (scripts/deps.sh --with-test-peers),
kubectl, node/npm, the Debian mirror for the first build. With CI=true a missing piece fails
the test; elsewhere it skips with the reason.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import e2e_util  # noqa: E402
from e2e_util import (LOOPBACK, HttpServer, PeerProcess, agent_bin, curl, deadline_loop,  # noqa: E402
                      free_port, give_up, main, require_root)
from test_manifests import Rendered, dockerfile_instructions, rendered, runtime_apt_packages  # noqa: E402
from test_otlp_export import Receiver, ensure_receiver_installed  # noqa: E402
from test_tls import PYTHON_SERVER, make_cert  # noqa: E402

SANDBOX = os.path.join(HERE, "pod_sandbox.sh")
SUITE = "bookworm"  # debian:12
SUITES = (SUITE, f"{SUITE}-updates", f"{SUITE}-security")  # what debian:12's sources list
DEFAULT_SOURCES = [f"deb http://deb.debian.org/debian {SUITE} main",
                   f"deb http://deb.debian.org/debian {SUITE}-updates main",
                   f"deb http://deb.debian.org/debian-security {SUITE}-security main"]
CACHE_ROOT = os.environ.get("THREADLINE_ROOTFS_CACHE", "/var/cache/threadline-rootfs")
BUILD_TIMEOUT = 1200.0   # mmdebstrap: about 110 s here, the download is most of it
READY_TIMEOUT = 60.0     # the readiness probe's 200 after the pod starts
SPAN_TIMEOUT = 20.0
NODE_NAME = socket.gethostname()


def unavailable(reason: str) -> None:
    """give_up for setUpClass (no test instance there): fail under CI=true, else skip."""
    if e2e_util.IN_CI:
        raise AssertionError(f"CI=true: {reason}; this test must not skip in CI")
    raise unittest.SkipTest(reason)


def run(argv: list[str], timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


# ---------------------------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------------------------

def host_debian_sources() -> list[str]:
    """One-line `deb URI SUITE main` entries for Debian 12 from the host's enabled apt sources
    (sources.list and sources.list.d/*.list, *.sources), in their order; the deb.debian.org
    defaults when there are none. Other repositories of the host (node, cloud SDKs) stay out."""
    entries: list[tuple[str, str]] = []
    paths = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]
    for path in paths:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb":
                entries += [(words[1], words[2])] if "main" in words[3:] else []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            stanzas = re.split(r"\n\s*\n", f.read())
        for stanza in stanzas:
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if fields.get("enabled", "yes").lower() == "no" or "deb" not in fields.get("types", "").split():
                continue
            if "main" not in fields.get("components", "").split():
                continue
            entries += [(uri, suite) for uri in fields.get("uris", "").split()
                        for suite in fields.get("suites", "").split()]
    lines = []
    for uri, suite in entries:
        line = f"deb {uri.rstrip('/')} {suite} main"
        if suite in SUITES and line not in lines:
            lines.append(line)
    return lines or DEFAULT_SOURCES


def dir_bytes(path: str) -> int:
    """Apparent size of a tree (what `docker images` counts, uncompressed)."""
    out = run(["du", "-s", "-x", "--apparent-size", "--block-size=1", path], timeout=120).stdout
    return int(out.split()[0])


def image_rootfs() -> tuple[str, dict]:
    """The runtime stage's filesystem below the COPY of the binary: built once per package list
    and mirror, then reused. Returns (root directory, its build record)."""
    packages = sorted(runtime_apt_packages())
    sources = host_debian_sources()
    recipe = {"suite": SUITE, "variant": "minbase", "packages": packages, "sources": sources}
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
    os.makedirs(CACHE_ROOT, exist_ok=True)
    entry = os.path.join(CACHE_ROOT, key)
    record_path = os.path.join(entry, "image.json")
    with open(os.path.join(CACHE_ROOT, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; later runs wait and reuse it
        if os.path.exists(record_path):
            with open(record_path) as f:
                return os.path.join(entry, "root"), {**json.load(f), "cached": True}
        staging = f"{entry}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        argv = ["nice", "mmdebstrap", "--mode=root", "--variant=minbase", "--format=directory",
                "--include=" + ",".join(packages), SUITE, os.path.join(staging, "root"), *sources]
        started = time.monotonic()
        try:
            p = run(argv, timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"mmdebstrap did not finish within {BUILD_TIMEOUT:.0f} s")
        seconds = time.monotonic() - started
        if p.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"mmdebstrap failed (rc {p.returncode}) from {sources}:\n{p.stderr[-3000:]}")
        record = {**recipe, "build_seconds": round(seconds, 1),
                  "bytes": dir_bytes(os.path.join(staging, "root")),
                  "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "mmdebstrap": " ".join(argv[1:]).replace(staging, entry)}
        with open(os.path.join(staging, "image.json"), "w") as f:
            json.dump(record, f, indent=1)
        os.rename(staging, entry)
        # Older entries (ours: a hash named directory with an image.json) belong to package
        # lists the Dockerfile no longer has.
        for old in os.listdir(CACHE_ROOT):
            path = os.path.join(CACHE_ROOT, old)
            if old != key and re.fullmatch(r"[0-9a-f]{16}", old) and os.path.exists(os.path.join(path, "image.json")):
                shutil.rmtree(path, ignore_errors=True)
        return os.path.join(entry, "root"), {**record, "cached": False}


def binary_layer(directory: str) -> str:
    """The COPY --from=builder layer: the agent stripped as the builder stage strips it."""
    builder = " ".join(a for i, a, s in dockerfile_instructions() if i == "RUN" and s == 0)
    m = re.search(r"strip (--strip-debug) -o (\S+) build/threadline", builder)
    assert m, f"the builder no longer strips with --strip-debug -o ...: {builder}"
    copy = [a for i, a, s in dockerfile_instructions() if i == "COPY" and s == 1]
    assert copy == [f"--from=builder {m.group(2)} /usr/bin/threadline"], copy
    layer = os.path.join(directory, "layer")
    os.makedirs(os.path.join(layer, "usr", "bin"))
    p = run(["strip", m.group(1), "-o", os.path.join(layer, "usr", "bin", "threadline"), agent_bin()])
    assert p.returncode == 0, p.stderr
    return layer


def entrypoint() -> list[str]:
    found = [json.loads(a) for i, a, s in dockerfile_instructions() if i == "ENTRYPOINT" and s == 1]
    assert len(found) == 1, found
    return found[0]


# ---------------------------------------------------------------------------------------------
# The pod
# ---------------------------------------------------------------------------------------------

def capability_mask(names: set[str]) -> int:
    mask = 0
    for name in names:
        out = run(["capsh", f"--explain={name}"]).stdout
        m = re.search(r"\((\d+)\)", out)
        assert m, f"capsh does not know {name}: {out}"
        mask |= 1 << int(m.group(1))
    return mask


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


class PodNetwork:
    """A network namespace with eth0 at the pod IP, a veth pair to the host (the node's side
    has the gateway address). Removed at cleanup, after the pod's processes are gone."""

    _count = 0

    def __init__(self, test: unittest.TestCase):
        PodNetwork._count += 1
        tag = f"{os.getpid() % 100000}{PodNetwork._count}"
        self.name, self.host_if = f"tl-pod-{tag}", f"tlh{tag}"[:15]
        # A /30 of 10.244.0.0/16 (flannel's default pod network) that no interface here uses.
        used = run(["ip", "-4", "-o", "addr"]).stdout
        subnet = next(f"10.244.{n}" for n in [*range(os.getpid() % 200, 256), *range(256)]
                      if f" 10.244.{n}." not in used)
        self.gateway, self.pod_ip, prefix = f"{subnet}.1", f"{subnet}.2", "/30"
        steps = [["ip", "netns", "add", self.name],
                 ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.name],
                 ["ip", "addr", "add", self.gateway + prefix, "dev", self.host_if],
                 ["ip", "link", "set", self.host_if, "up"],
                 ["ip", "-n", self.name, "addr", "add", self.pod_ip + prefix, "dev", "eth0"],
                 ["ip", "-n", self.name, "link", "set", "eth0", "up"],
                 ["ip", "-n", self.name, "link", "set", "lo", "up"],
                 ["ip", "-n", self.name, "route", "add", "default", "via", self.gateway]]
        test.addCleanup(self.remove)
        for step in steps:
            p = run(step)
            test.assertEqual(p.returncode, 0, f"{' '.join(step)}: {p.stderr}")

    def remove(self) -> None:
        run(["ip", "link", "del", self.host_if])
        run(["ip", "netns", "del", self.name])


class TcpRelay:
    """Connections to gateway:port are passed on to 127.0.0.1:target, the way a Service's
    cluster IP leads to a collector: the test's receiver listens on loopback only, which a
    pod cannot reach."""

    def __init__(self, test: unittest.TestCase, host: str, target: int):
        self.target = target
        self.server = socket.create_server((host, 0))
        self.port = self.server.getsockname()[1]
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()
        test.addCleanup(self.stop)

    def _accept(self) -> None:
        while not self.stopped:
            try:
                client, _ = self.server.accept()
                upstream = socket.create_connection((LOOPBACK, self.target), timeout=10)
            except OSError:
                continue
            upstream.settimeout(None)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped = True
        self.server.close()


class Pod:
    """One pod of the rendered DaemonSet on this node, its container run by pod_sandbox.sh from
    the image's layers. `secrets`: (name, key) -> value for secretKeyRef; `extra_env`: what the
    test adds to the container's environment (a collector address)."""

    def __init__(self, test: unittest.TestCase, manifest: Rendered, layers: list[str], work: str,
                 secrets: dict[tuple[str, str], str] | None = None,
                 extra_env: dict[str, str] | None = None, network: PodNetwork | None = None,
                 argv: list[str] | None = None, wait_ready: bool = True):
        self.test, self.manifest = test, manifest
        c = manifest.container
        self.work = tempfile.mkdtemp(prefix="pod-", dir=work)
        sc = c["securityContext"]
        test.assertEqual(sc.get("runAsUser"), 0)
        test.assertFalse(sc.get("privileged"), "a privileged container is not reproduced here")
        test.assertEqual(sc["capabilities"]["drop"], ["ALL"])
        self.wanted_caps = {"cap_" + x.lower() for x in sc["capabilities"]["add"]}
        # A capability the test process lacks cannot be handed on (this machine's bounding set
        # has no CAP_SYS_RESOURCE); the agent runs with the rest and the test says so.
        have = int(proc_status(os.getpid())["CapBnd"], 16)
        self.caps = {x for x in self.wanted_caps if capability_mask({x}) & have}
        self.missing_caps = self.wanted_caps - self.caps
        if self.missing_caps:
            print(f"[{manifest.name}] not grantable from this process: {sorted(self.missing_caps)}",
                  file=sys.stderr)

        cmd = [*self._volumes(), *self._env(secrets or {}, extra_env or {}),
               "--caps", ",".join(sorted(self.caps))]
        for layer in layers:
            cmd += ["--layer", layer]
        program = argv or (c.get("command") or entrypoint()) + c.get("args", [])
        sandbox = ["unshare", "--mount", "--propagation", "private", "--", SANDBOX,
                   "--work", self.work, *cmd, "--", *program]
        self.network = network
        if network is not None:
            sandbox = ["nsenter", f"--net=/run/netns/{network.name}", *sandbox]
        self.proc = PeerProcess(sandbox, test)
        self.pid = self.proc.pid  # nsenter, unshare, the script and capsh each exec the next
        port = next(p for p in c["ports"] if p["name"] == c["readinessProbe"]["httpGet"]["port"])
        self.port = port["containerPort"]
        if wait_ready:
            self.wait_ready()

    def _volumes(self) -> list[str]:
        c, pod = self.manifest.container, self.manifest.pod
        volumes = {v["name"]: v for v in pod["volumes"]}
        out = []
        for m in c["volumeMounts"]:
            vol = volumes[m["name"]]
            mode = "ro" if m.get("readOnly") else "rw"
            if "hostPath" in vol:
                out += ["--bind", f"{vol['hostPath']['path']}:{m['mountPath']}:{mode}"]
            elif "configMap" in vol:
                cm = next(x for x in self.manifest.of_kind("ConfigMap")
                          if x["metadata"]["name"] == vol["configMap"]["name"])
                d = os.path.join(self.work, "volumes", m["name"])
                os.makedirs(d)
                for k, v in cm["data"].items():
                    with open(os.path.join(d, k), "w") as f:
                        f.write(v)
                out += ["--bind", f"{d}:{m['mountPath']}:{mode}"]
            elif "emptyDir" in vol:
                self.test.assertEqual(vol["emptyDir"].get("medium"), "Memory", "only tmpfs emptyDirs here")
                size = vol["emptyDir"].get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
                out += ["--tmpfs", f"{m['mountPath']}:{size}"]
            else:
                self.test.fail(f"volume kind not reproduced by this test: {vol}")
        return out

    def _env(self, secrets: dict[tuple[str, str], str], extra: dict[str, str]) -> list[str]:
        out = []
        for e in self.manifest.container.get("env", []):
            if "value" in e:
                value = e["value"]
            elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
                value = NODE_NAME
            elif "secretKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["secretKeyRef"]
                if (ref["name"], ref["key"]) not in secrets:
                    self.test.assertTrue(ref.get("optional"), f"required secret {ref} not given")
                    continue
                value = secrets[(ref["name"], ref["key"])]
            else:
                self.test.fail(f"env source not reproduced by this test: {e}")
            out += ["--env", f"{e['name']}={value}"]
        for k, v in extra.items():
            out += ["--env", f"{k}={v}"]
        return out

    # -- what a user (or the kubelet) sees --------------------------------------------------
    def url(self, path: str) -> str:
        assert self.network is not None
        return f"http://{self.network.pod_ip}:{self.port}{path}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=3) as r:
                return r.status, r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def wait_ready(self) -> None:
        """Polls the readiness probe's path on the pod IP, as the kubelet does."""
        path = self.manifest.container["readinessProbe"]["httpGet"]["path"]
        last = "no answer"
        for _ in deadline_loop(READY_TIMEOUT, 0.25):
            if self.proc.proc.poll() is not None:
                break
            try:
                code, body = self.get(path)
                if code == 200:
                    return
                last = f"{code} {body.strip()}"
            except OSError as e:
                last = str(e)
        raise AssertionError(f"{path} on {self.url(path)} not 200 within {READY_TIMEOUT:.0f}s "
                             f"(last: {last})\n{self.describe()}")

    def log(self) -> list[str]:
        """The container log: stdout and stderr lines."""
        return self.proc.stdout_lines + self.proc.stderr_lines

    def describe(self) -> str:
        return self.proc.describe()

    def stop(self) -> int | None:
        """SIGTERM, like the kubelet (terminationGracePeriodSeconds: 30); the exit code."""
        self.proc.proc.terminate()
        try:
            return self.proc.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            return None


CONSOLE_SPAN_RE = re.compile(r"^\s+(?P<name>.+?) \[(?P<kind>[A-Z]+)\] (?P<service>\S+) \S+ (?P<status>[A-Z]+)"
                             r"(?P<rest>.*)$")


def console_spans(lines: list[str]) -> list[dict]:
    """Spans of the console output (`exporters.output: console`, the base config): one line per
    span, `  GET /x [SERVER] http.server 1.2ms UNSET http.response.status_code=200 url.path=/x`."""
    out = []
    for line in lines:
        m = CONSOLE_SPAN_RE.match(line)
        if m:
            attrs = dict(re.findall(r"(\S+?)=(\S+)", m.group("rest")))
            out.append({"name": m.group("name"), "kind": m.group("kind"), "service": m.group("service"),
                        "status": m.group("status"), **attrs})
    return out


def wait_console_span(pod: Pod, pred, timeout: float = SPAN_TIMEOUT) -> list[dict]:
    for _ in deadline_loop(timeout, 0.2):
        found = [s for s in console_spans(pod.proc.stdout_lines) if pred(s)]
        if found:
            return found
    raise AssertionError(f"span not in the pod's log within {timeout:.0f}s\n{pod.describe()}")


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

class ImageRuntimeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            unavailable("needs root: mounts, namespaces and BPF (run: sudo scripts/test.sh)")
        for tool in ("mmdebstrap", "capsh", "nsenter", "unshare", "ip", "strip", "curl", "openssl"):
            if shutil.which(tool) is None:
                unavailable(f"{tool} not installed (scripts/deps.sh --with-test-peers)")
        if not os.access(agent_bin(), os.X_OK):
            raise AssertionError(f"agent binary not found at {agent_bin()} (scripts/build.sh)")
        try:
            cls.rootfs, cls.record = image_rootfs()
        except (RuntimeError, OSError) as e:
            unavailable(f"cannot build the image's root filesystem: {e}")
        cls.work = tempfile.mkdtemp(prefix="tl-image-")
        cls.layers = [binary_layer(cls.work), cls.rootfs]
        r = cls.record
        print(f"\nimage rootfs {'(cached) ' if r['cached'] else ''}{os.path.dirname(cls.rootfs)}: "
              f"{r['bytes'] / 2**20:.0f} MiB, built in {r['build_seconds']} s on {r['built']}; "
              f"binary layer {dir_bytes(cls.layers[0]) / 2**20:.1f} MiB", file=sys.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.work, ignore_errors=True)

    def setUp(self):
        require_root(self)
        self.token = f"{os.getpid()}-{time.monotonic_ns() % 10**6}"

    def pod(self, name: str, **kw) -> Pod:
        return Pod(self, rendered(self, name), self.layers, self.work, network=PodNetwork(self), **kw)

    def assert_container_security(self, pod: Pod) -> None:
        """The running agent really has what the securityContext says (not more)."""
        st = proc_status(pod.pid)
        mask = capability_mask(pod.caps)
        for field in ("CapPrm", "CapEff", "CapBnd"):
            self.assertEqual(int(st[field], 16), mask, f"{field}: {st[field]} vs {sorted(pod.caps)}")
        self.assertEqual(int(st["CapInh"], 16), 0)
        self.assertEqual(int(st["CapAmb"], 16), 0)
        self.assertEqual(st["NoNewPrivs"].strip(), "1")  # allowPrivilegeEscalation: false
        self.assertEqual(st["Uid"].split()[:2], ["0", "0"])
        # Seen from the host's mount namespace: the image's /usr/bin/threadline, chroot there.
        self.assertEqual(os.readlink(f"/proc/{pod.pid}/exe"), os.path.join(pod.work, "rootfs/usr/bin/threadline"))
        self.assertEqual(os.readlink(f"/proc/{pod.pid}/root"), os.path.join(pod.work, "rootfs"))
        with open(f"/proc/{pod.pid}/mountinfo") as f:
            root = next(line.split() for line in f if line.split()[4] == "/")
        self.assertIn("ro", root[5].split(","), root)   # readOnlyRootFilesystem
        self.assertIn("overlay", root, root)
        self.assertNotEqual(os.readlink(f"/proc/{pod.pid}/ns/net"), os.readlink("/proc/self/ns/net"))
        self.assertEqual(os.readlink(f"/proc/{pod.pid}/ns/pid"), os.readlink("/proc/self/ns/pid"))  # hostPID

    def assert_stops_cleanly(self, pod: Pod) -> None:
        rc = pod.stop()
        self.assertEqual(rc, 0, f"agent exit code after SIGTERM: {rc}\n{pod.describe()}")
        text = "\n".join(pod.log())
        self.assertNotIn("Read-only file system", text)

    def test_libraries_resolve_inside_the_image(self):
        """ldd, run inside the image, finds every library the agent links (no "not found")."""
        m = rendered(self, "base")
        pod = Pod(self, m, self.layers, self.work, argv=["/usr/bin/ldd", "/usr/bin/threadline"],
                  wait_ready=False)
        self.assertEqual(pod.proc.proc.wait(timeout=60), 0, pod.describe())
        pod.proc.stop()
        out = "\n".join(pod.proc.stdout_lines)
        self.assertNotIn("not found", out)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", run(["readelf", "-d", agent_bin()]).stdout)
        resolved = dict(re.findall(r"^\s*(\S+) => (\S+)", out, re.M))
        for soname in needed:
            self.assertIn(soname, resolved, out)

    def test_base_pod(self):
        """The base DaemonSet: ready on the pod IP, the capability report, an HTTP exchange on
        the node as a span in the pod's log, HTTPS not decrypted and the log says why."""
        pod = self.pod("base")
        self.assert_container_security(pod)
        self.assertEqual(pod.get("/healthz")[0], 200)
        code, body = pod.get("/capabilities")
        self.assertEqual(code, 200, body)
        report = json.loads(body)
        self.assertTrue(report["can_run"], report)
        self.assertEqual(report["tracefs_root"], "/sys/kernel/tracing")
        self.assertTrue(any(x.startswith("TLS libraries") for x in report["limitations"]), report["limitations"])

        # HTTPS first: without SYS_ADMIN no uprobe, so it must not become a span ...
        tls_path = f"/tls-{self.token}"
        https = self.https_server()
        r = curl(f"https://{LOOPBACK}:{https.port}{tls_path}", "-k")
        self.assertEqual(r.stdout, "200", r.stderr)
        # ... while plain HTTP on the node does (both ends: curl and http.server, one trace).
        name = f"img-{self.token}.txt"
        server = HttpServer(self, files={name: b"hello from the node\n"})
        r = curl(server.url(f"/{name}"))
        self.assertEqual(r.stdout, "200", r.stderr)
        spans = wait_console_span(pod, lambda s: s.get("url.path") == f"/{name}" and s["kind"] == "SERVER")
        self.assertEqual(spans[0]["service"], "http.server")
        self.assertEqual(spans[0].get("http.response.status_code"), "200")
        wait_console_span(pod, lambda s: s.get("url.path") == f"/{name}" and s["kind"] == "CLIENT")
        log = "\n".join(pod.proc.stderr_lines)
        # Every way of attaching the TLS probes is listed with its reason: uprobe sessions first
        # where the kernel has them (6.13+), then uprobe + uretprobe pairs; without SYS_ADMIN all
        # are refused.
        self.assertRegex(log, r"hook 'TLS libraries \(OpenSSL\)': not traced: TLS connections carry ciphertext only "
                              r"\((uprobe session: uprobe: attach failed: EACCES[^|]*\| )?"
                              r"uprobe \+ uretprobe: uprobe: attach failed: EACCES")
        # No span of the HTTPS exchange: checked once the output is complete. The plain exchange
        # came after it, so its spans (out above) show that the agent has read past the HTTPS
        # one; the console holds a trace until it has been quiet for a while, and the clean stop
        # prints whatever it still holds.
        self.assert_stops_cleanly(pod)
        self.assertEqual([s for s in console_spans(pod.proc.stdout_lines) if s.get("url.path") == tls_path], [],
                         pod.describe())

    def test_tls_capture_pod(self):
        """The tls-capture overlay (+SYS_ADMIN): an HTTPS request on the node becomes a span."""
        pod = self.pod("tls-capture")
        self.assertIn("cap_sys_admin", pod.caps)
        self.assert_container_security(pod)
        code, body = pod.get("/capabilities")
        self.assertEqual(code, 200, body)
        self.assertFalse([x for x in json.loads(body)["limitations"] if x.startswith("TLS libraries")], body)
        https = self.https_server()
        path = f"/tls-{self.token}"
        r = curl(f"https://{LOOPBACK}:{https.port}{path}", "-k")
        self.assertEqual(r.stdout, "200", r.stderr)
        spans = wait_console_span(pod, lambda s: s.get("url.path") == path and s["kind"] == "SERVER")
        self.assertEqual(spans[0].get("http.response.status_code"), "200")
        wait_console_span(pod, lambda s: s.get("url.path") == path and s["kind"] == "CLIENT")
        self.assertNotIn("TLS: could not attach", "\n".join(pod.proc.stderr_lines))
        self.assert_stops_cleanly(pod)

    def test_otlp_collector_pod(self):
        """The otlp-collector overlay exports over OTLP/gRPC to a real receiver (endpoint from
        OTEL_EXPORTER_OTLP_ENDPOINT, which overrides the file), with the Secret's headers."""
        try:
            modules = ensure_receiver_installed()
        except Exception as e:  # noqa: BLE001 - any install failure is the reason
            give_up(self, f"cannot install the OTLP receiver: {e}")
        receiver = Receiver(modules)
        self.addCleanup(receiver.stop)
        network = PodNetwork(self)
        relay = TcpRelay(self, network.gateway, receiver.grpc_port)
        secret = f"x-api-key=image-test-{self.token}"
        pod = Pod(self, rendered(self, "otlp-collector"), self.layers, self.work, network=network,
                  secrets={("threadline-otlp", "headers"): secret},
                  extra_env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{network.gateway}:{relay.port}"})
        self.assert_container_security(pod)
        name = f"otlp-{self.token}.txt"
        server = HttpServer(self, files={name: b"exported\n"})
        r = curl(server.url(f"/{name}"))
        self.assertEqual(r.stdout, "200", r.stderr)
        spans = receiver.wait_for(lambda e: e["event"] == "span" and e["attributes"].get("url.path") == f"/{name}",
                                  2, timeout=30)
        self.assertEqual(sorted(s["kind"] for s in spans), [2, 3], f"{receiver.spans()[-10:]}\n{pod.describe()}")
        srv = next(s for s in spans if s["kind"] == 2)
        self.assertEqual(srv["resource"].get("process.pid"), {"int": str(server.pid)})
        self.assertEqual(srv["attributes"]["http.response.status_code"], {"int": "200"})
        # The front reports a request once the mock has answered it, after its spans: wait.
        grpc = receiver.wait_for(lambda e: e["event"] == "request" and e["transport"] == "grpc", 1, timeout=10)
        self.assertTrue(grpc and all(x["api_key"] == secret.split("=", 1)[1] for x in grpc), grpc)
        self.assertEqual(receiver.requests("http"), [])  # the overlay's protocol: grpc
        self.assert_stops_cleanly(pod)

    def https_server(self) -> PeerProcess:
        tmp = tempfile.mkdtemp(prefix="tls-", dir=self.work)
        cert, key = make_cert(tmp)
        script = os.path.join(tmp, "server.py")
        with open(script, "w") as f:
            f.write(PYTHON_SERVER)
        port = free_port()
        return PeerProcess([sys.executable, script, str(port), cert, key], self, port=port, cwd=tmp)


if __name__ == "__main__":
    main()

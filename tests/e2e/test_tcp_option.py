#!/usr/bin/env python3
"""Trace context in a TCP header option end to end (issue 14): the built agent on DEFAULTS (no
--inject, no --context-propagation), real eBPF (sockops header-option callbacks) in this kernel,
untouched services in three languages on simulated hosts (network namespaces joined by veth
pairs), one agent per host, each tracing only its host's service.

  - Python -> Node -> Go over HTTP: one trace, three SERVER and two CLIENT spans, parents right,
    the hops between hosts linked by `tcp_option`; each agent counted only its own service's
    options (written by the sender's, read by the receiver's).
  - The same chain over HTTPS (certificates made here): one trace, which header injection can
    never give.
  - One keep-alive connection, 1000 requests, pipelining and 300 KB bodies: every request's
    context arrives with exactly that request, and every byte arrives as sent.
  - A receiver no agent traces: the connection works, bytes identical, nothing counted as an
    error by the sender's agent.
  - Same node, one agent tracing both ends: the option and the tuple rule agree.
  - The HTTP chain with Python calling a Service-like virtual address that its host DNATs to
    Node (as kube-proxy does): the option survives the rewrite.

Needs root (fails under CI=true without it), ip and nsenter (iproute2, util-linux), openssl,
curl, node, go (golang-go), nft (nftables).
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

sys.path.insert(0, os.path.dirname(__file__))

from e2e_util import (REPO, Agent, PeerProcess, SpanRecord, agent_spans, deadline_loop,  # noqa: E402
                      format_spans, free_port, go_peer, main, peer_alias, require_root,
                      require_tool, wait_for_spans)
from topology import Namespaces, run, wait_listening  # noqa: E402

PEERS = os.path.join(REPO, "tests", "e2e", "peers")
GO_LEAF = "tlopt-go-leaf"  # the built Go service's file name (and so its service.name)
PYTHON_EXE = peer_alias("tlopt-python3", os.path.realpath(sys.executable))
PYCLIENT_EXE = peer_alias("tlopt-pyclient", os.path.realpath(sys.executable))
PYSERVER_EXE = peer_alias("tlopt-pyserver", os.path.realpath(sys.executable))
NODE_EXE = peer_alias("tlopt-node", os.path.realpath(shutil.which("node") or "/usr/bin/node"))


def counts(text: str, metric: str) -> dict[str, int]:
    """`metric{result="x"} N` lines of a /metrics text, by result."""
    out = {}
    for line in text.splitlines():
        m = re.match(metric + r'\{result="([a-z_]+)"\} (\d+)', line)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


class HostAgent:
    """An agent started in one simulated host's network (nsenter --net: the host's /sys stays,
    so the cgroup v2 root and tracefs are where the agent looks), tracing one executable, its
    /metrics on that host's loopback."""

    def __init__(self, test: unittest.TestCase, ns: Namespaces, host: str, exe: str, *args: str):
        self.ns, self.host = ns, host
        self.mport = free_port()
        self.agent = Agent(["--output=json", "--metrics-address", f"127.0.0.1:{self.mport}",
                            "--exe", exe, *args], test, prefix=ns.enter_argv(host))
        err = "\n".join(self.agent.stderr_lines)
        test.assertIn("context in TCP header option ON", err, self.agent.describe())

    def get(self, path: str) -> str:
        return run(*self.ns.exec_argv(self.host, ["curl", "-sS", "--max-time", "5",
                                                  f"http://127.0.0.1:{self.mport}{path}"])).stdout

    def metrics(self) -> str:
        return self.get("/metrics")

    def options(self) -> dict[str, int]:
        return counts(self.metrics(), "threadline_tcp_option_total")

    def contexts(self) -> dict[str, int]:
        return counts(self.metrics(), "threadline_tcp_option_contexts_total")

    def settled(self, ready, timeout: float = 15.0) -> tuple[dict[str, int], dict[str, int]]:
        """The option and context counters once ready(options, contexts) holds (the agent
        publishes kernel counters once a second)."""
        opts, ctxs = {}, {}
        for _ in deadline_loop(timeout, 0.3):
            text = self.metrics()
            opts = counts(text, "threadline_tcp_option_total")
            ctxs = counts(text, "threadline_tcp_option_contexts_total")
            if ready(opts, ctxs):
                break
        return opts, ctxs


class Certificates:
    """A CA and one server certificate it signs for `ips`, made with the openssl CLI."""

    def __init__(self, test: unittest.TestCase, ips: list[str]):
        require_tool(test, "openssl")
        self.dir = tempfile.mkdtemp(prefix="tlopt-certs-")
        test.addCleanup(shutil.rmtree, self.dir, True)
        d = lambda name: os.path.join(self.dir, name)  # noqa: E731
        self.ca, self.cert, self.key = d("ca.crt"), d("server.crt"), d("server.key")
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", d("ca.key"),
            "-out", self.ca, "-days", "2", "-subj", "/CN=threadline test CA")
        run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key, "-out",
            d("server.csr"), "-subj", "/CN=threadline test services")
        with open(d("san.ext"), "w") as f:
            f.write("subjectAltName=" + ",".join(f"IP:{ip}" for ip in ips) + "\n")
        run("openssl", "x509", "-req", "-in", d("server.csr"), "-CA", self.ca, "-CAkey", d("ca.key"),
            "-CAcreateserial", "-out", self.cert, "-days", "2", "-extfile", d("san.ext"))


class TcpOptionTest(unittest.TestCase):
    def setUp(self):
        require_root(self)
        require_tool(self, "nsenter", hint="util-linux")
        require_tool(self, "curl")

    # -- the Python -> Node -> Go chain ------------------------------------------------------

    def run_chain(self, tls: bool, service_nat: bool = False) -> None:
        go_leaf = go_peer(self, "chain_leaf.go", GO_LEAF)
        if service_nat:
            require_tool(self, "nft", hint="nftables")
        ns = Namespaces(self, prefix="tlopt", octet=78)
        scheme = "https" if tls else "http"
        env, leaf_args = {}, []
        if tls:
            certs = Certificates(self, [ns.addr["b_left"], ns.addr["c"], "127.0.0.1"])
            env = {"CHAIN_TLS_CERT": certs.cert, "CHAIN_TLS_KEY": certs.key,
                   "SSL_CERT_FILE": certs.ca, "NODE_EXTRA_CA_CERTS": certs.ca}
            leaf_args = [certs.cert, certs.key]
        hosts = {x: HostAgent(self, ns, x, exe)
                 for x, exe in (("a", "tlopt-python3"), ("b", "tlopt-node"), ("c", GO_LEAF))}
        p_py, p_node, p_go = 18520, 18521, 18522
        go = PeerProcess(ns.exec_argv("c", [go_leaf, str(p_go), *leaf_args]), self)
        wait_listening(go)
        if tls:  # Go's TLS is probed asynchronously after the exec: requests before it are unseen
            hosts["c"].agent.wait_logged("Go TLS: uprobes attached to", GO_LEAF)
        node = PeerProcess(ns.exec_argv("b", [NODE_EXE, os.path.join(PEERS, "chain_service.js"), str(p_node),
                                              f"{scheme}://{ns.addr['c']}:{p_go}"]), self, env=env)
        wait_listening(node)
        upstream = f"{scheme}://{ns.addr['b_left']}:{p_node}"
        if service_nat:
            # What kube-proxy does for a Service: the caller connects to a virtual address that
            # no host has, and the caller's node rewrites the destination (DNAT, conntrack).
            vip = ns.addr["a"].rsplit(".", 1)[0] + ".100"
            for rule in ("add table ip tlopt_svc",
                         "add chain ip tlopt_svc out { type nat hook output priority -100 ; }",
                         f"add rule ip tlopt_svc out ip daddr {vip} tcp dport 80 "
                         f"dnat to {ns.addr['b_left']}:{p_node}"):
                run(*ns.exec_argv("a", ["nft", rule]))
            upstream = f"{scheme}://{vip}:80"
        py = PeerProcess(ns.exec_argv("a", [PYTHON_EXE, os.path.join(PEERS, "chain_service.py"), str(p_py),
                                            upstream]), self, env=env)
        wait_listening(py)
        curl = ["curl", "-sS", "--max-time", "10"] + (["--cacert", env["SSL_CERT_FILE"]] if tls else [])
        out = run(*ns.exec_argv("a", [*curl, f"{scheme}://127.0.0.1:{p_py}/chain/{scheme}"]))
        leaf = json.loads(out.stdout)
        self.assertEqual(leaf["path"], f"/chain/{scheme}", leaf)

        def complete(spans: list[SpanRecord]) -> bool:
            roots = [s for s in spans if s.is_server and s.pid == py.pid]
            return bool(roots) and sum(s.trace_id == roots[0].trace_id for s in spans) >= 5
        spans: list[SpanRecord] = []
        for _ in deadline_loop(20, 0.2):
            spans = [s for h in hosts.values() for s in agent_spans(h.agent)]
            if complete(spans):
                break
        root = next((s for s in spans if s.is_server and s.pid == py.pid), None)
        self.assertIsNotNone(root, format_spans(spans))
        if not complete(spans):
            self.fail("the chain's spans did not show up\n" + format_spans(spans) + "\n" +
                      "\n".join(f"{x}: {h.options()} {h.contexts()}" for x, h in hosts.items()))
        mine = [s for s in spans if s.trace_id == root.trace_id]

        def one(pred, what) -> SpanRecord:
            found = [s for s in mine if pred(s)]
            self.assertEqual(len(found), 1, f"{what}: {len(found)} spans\n{format_spans(spans)}")
            return found[0]
        chain = {
            "py_srv": one(lambda s: s.is_server and s.pid == py.pid, "python SERVER"),
            "py_cli": one(lambda s: s.is_client and s.pid == py.pid, "python CLIENT"),
            "node_srv": one(lambda s: s.is_server and s.pid == node.pid, "node SERVER"),
            "node_cli": one(lambda s: s.is_client and s.pid == node.pid, "node CLIENT"),
            "go_srv": one(lambda s: s.is_server and s.service == GO_LEAF, "go SERVER"),
        }
        self.assertEqual(len(mine), 5, format_spans(mine))
        self.assertEqual(chain["py_srv"].parent_span_id, "", chain["py_srv"].brief())
        for child, parent in (("py_cli", "py_srv"), ("node_srv", "py_cli"), ("node_cli", "node_srv"),
                              ("go_srv", "node_cli")):
            self.assertEqual(chain[child].parent_span_id, chain[parent].span_id,
                             f"{chain[child].brief()}\n  should be the child of\n{chain[parent].brief()}")
        src = {k: v.attrs.get("threadline.parent.source") for k, v in chain.items()}
        self.assertEqual(src, {"py_srv": "root", "py_cli": "thread", "node_srv": "tcp_option",
                               "node_cli": "thread", "go_srv": "tcp_option"}, format_spans(mine))
        for k in ("py_cli", "node_cli"):
            self.assertIs(chain[k].attrs.get("threadline.tcp_option.sent"), True, chain[k].brief())
        for k in ("py_srv", "node_srv", "go_srv"):
            self.assertEqual(chain[k].attrs.get("url.scheme"), scheme, chain[k].brief())
        # Nothing in the bytes: this kernel's FIONREAD defect keeps header injection off.
        self.assertEqual(leaf["traceparent"], [], "no header was injected: the option carried it")

        # Each agent acted only for its own service: the sender's agent wrote, the receiver's read.
        a, _ = hosts["a"].settled(lambda o, c: o.get("written", 0) >= 1)
        b, b_ctx = hosts["b"].settled(lambda o, c: o.get("read", 0) >= 1 and o.get("written", 0) >= 1
                                      and c.get("matched", 0) >= 1)
        c, c_ctx = hosts["c"].settled(lambda o, c: o.get("read", 0) >= 1 and c.get("matched", 0) >= 1)
        sys.stderr.write(f"\n  counters ({scheme}): a={a}\n  b={b} {b_ctx}\n  c={c} {c_ctx}\n")
        self.assertEqual((a.get("written"), a.get("read")), (1, 0), a)
        self.assertEqual((b.get("written"), b.get("read"), b_ctx.get("matched")), (1, 1, 1), (b, b_ctx))
        self.assertEqual((c.get("armed"), c.get("written"), c.get("read"), c_ctx.get("matched")),
                         (0, 0, 1, 1), (c, c_ctx))
        for h in (a, b, c):
            for bad in ("skipped_no_room", "unwritten", "malformed", "skipped_other_writer", "dropped_too_many_unread"):
                self.assertEqual(h.get(bad, 0), 0, (bad, h))
        # What is in use is reported: /capabilities and /metrics.
        caps = json.loads(hosts["a"].get("/capabilities"))
        choice = [c for c in caps["hooks"] if c["hook"] == "context in TCP header option"]
        self.assertEqual([(c["chosen"], c["active"]) for c in choice], [("sockops header option", True)], caps)
        text = hosts["a"].metrics()
        self.assertIn("threadline_tcp_option_enabled 1", text)
        self.assertIn('threadline_hook_choice{hook="context in TCP header option",chosen="sockops header option"} 1',
                      text)

    def test_chain_python_node_go_on_three_hosts(self):
        self.run_chain(tls=False)

    def test_chain_python_node_go_over_https_on_three_hosts(self):
        self.run_chain(tls=True)

    def test_chain_through_a_service_address_rewritten_by_nat(self):
        # Python calls Node at a Service-like virtual address DNATed on Python's host: the
        # option rides on the rewritten segment and Node's agent still reads it.
        self.run_chain(tls=False, service_nat=True)

    # -- one keep-alive connection under load -------------------------------------------------

    def test_keep_alive_1000_requests_pipelined_and_300kb_bodies(self):
        ns = Namespaces(self, prefix="tlopk", octet=79)
        sender = HostAgent(self, ns, "a", "tlopt-pyclient")
        receiver = HostAgent(self, ns, "b", "tlopt-pyserver")
        port = 18530
        server = PeerProcess(ns.exec_argv("b", [PYSERVER_EXE, "-c", DIGEST_SERVER, str(port)]), self)
        wait_listening(server)
        n = 1000
        client = subprocess.run(ns.exec_argv("a", [PYCLIENT_EXE, "-c", LOAD_CLIENT, ns.addr["b_left"],
                                                   str(port), str(n)]),
                                capture_output=True, text=True, timeout=240)
        self.assertEqual(client.returncode, 0, client.stderr[-3000:])
        summary = json.loads(client.stdout.strip().splitlines()[-1])
        self.assertEqual(summary["bad"], [], "the server received other bytes than were sent")
        self.assertEqual(summary["sent"], n)
        sys.stderr.write(f"\n  load: {summary}\n")

        def paths(agent: Agent, server_side: bool) -> dict[str, SpanRecord]:
            return {s.attrs.get("url.path"): s for s in agent_spans(agent)
                    if s.is_server == server_side and str(s.attrs.get("url.path", "")).startswith("/r/")}
        for _ in deadline_loop(30, 0.5):
            if len(paths(sender.agent, False)) >= n and len(paths(receiver.agent, True)) >= n:
                break
        clients, servers = paths(sender.agent, False), paths(receiver.agent, True)
        self.assertEqual(len(clients), n, f"client spans: {len(clients)}")
        self.assertEqual(len(servers), n, f"server spans: {len(servers)}")
        wrong = []
        for path, cli in clients.items():
            srv = servers[path]
            if ((srv.trace_id, srv.parent_span_id) != (cli.trace_id, cli.span_id) or
                    srv.attrs.get("threadline.parent.source") != "tcp_option"):
                wrong.append(f"{path}: client {cli.brief()}\n    server {srv.brief()}")
        self.assertEqual(wrong[:5], [], f"{len(wrong)} of {n} requests got another context")

        a, _ = sender.settled(lambda o, c: o.get("written", 0) >= n)
        b, b_ctx = receiver.settled(lambda o, c: o.get("read", 0) >= n and c.get("matched", 0) >= n)
        sys.stderr.write(f"  counters: sender={a}\n  receiver={b} {b_ctx}\n")
        self.assertEqual((a.get("request_starts"), a.get("written")), (n, n), a)
        self.assertEqual((b.get("read"), b_ctx.get("matched"), b_ctx.get("unmatched", 0)), (n, n, 0), (b, b_ctx))
        for bad in ("skipped_no_room", "skipped_shared_segment", "unwritten", "skipped_too_many_in_flight",
                    "dropped_too_many_unread"):
            self.assertEqual(a.get(bad, 0), 0, (bad, a))

    # -- a receiver without threadline ----------------------------------------------------------

    def test_receiver_without_an_agent_gets_identical_bytes_and_nothing_is_an_error(self):
        ns = Namespaces(self, prefix="tlopu", octet=80)
        sender = HostAgent(self, ns, "a", "tlopt-pyclient")
        port = 18540
        # tlopt-pyserver: no agent traces it; the kernel's TCP ignores the unknown option.
        server = PeerProcess(ns.exec_argv("b", [PYSERVER_EXE, "-c", DIGEST_SERVER, str(port)]), self)
        wait_listening(server)
        n = 60
        client = subprocess.run(ns.exec_argv("a", [PYCLIENT_EXE, "-c", LOAD_CLIENT, ns.addr["b_left"],
                                                   str(port), str(n)]),
                                capture_output=True, text=True, timeout=120)
        self.assertEqual(client.returncode, 0, client.stderr[-3000:])
        summary = json.loads(client.stdout.strip().splitlines()[-1])
        self.assertEqual((summary["sent"], summary["bad"]), (n, []))
        a, _ = sender.settled(lambda o, c: o.get("written", 0) >= n)
        sys.stderr.write(f"\n  counters: sender={a}\n")
        self.assertEqual((a.get("request_starts"), a.get("written"), a.get("read", 0)), (n, n, 0), a)
        for bad in ("skipped_no_room", "skipped_shared_segment", "unwritten", "malformed", "dropped_too_many_unread"):
            self.assertEqual(a.get(bad, 0), 0, (bad, a))
        sender.agent.stop()
        self.assertFalse([l for l in sender.agent.stderr_lines if " error " in l],
                         sender.agent.describe())

    # -- switched off ------------------------------------------------------------------------

    def test_left_out_by_configuration_says_so_and_arms_nothing(self):
        mport = free_port()
        agent = Agent(["--output=json", "--metrics-address", f"127.0.0.1:{mport}",
                       "--context-propagation", "headers", "--exe", "tlopt-pyclient"], self)
        err = "\n".join(agent.stderr_lines)
        self.assertIn("context in TCP header option off: left out by configuration", err, agent.describe())
        caps = json.loads(run("curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{mport}/capabilities").stdout)
        choice = [c for c in caps["hooks"] if c["hook"] == "context in TCP header option"]
        self.assertEqual([(c["chosen"], c["active"]) for c in choice], [("off", False)], caps)
        self.assertIn("left out by configuration", choice[0]["reason"])
        text = run("curl", "-sS", "--max-time", "5", f"http://127.0.0.1:{mport}/metrics").stdout
        self.assertIn("threadline_tcp_option_enabled 0", text)
        self.assertNotIn("threadline_tcp_option_total", text, "no option program loaded")

    # -- one node, both ends traced -------------------------------------------------------------

    def test_same_node_option_and_tuple_agree(self):
        mport = free_port()
        agent = Agent(["--output=json", "--metrics-address", f"127.0.0.1:{mport}",
                       "--exe", "tlopt-pyclient", "--exe", "tlopt-pyserver"], self)
        port = free_port()
        server = PeerProcess([PYSERVER_EXE, "-c", DIGEST_SERVER, str(port)], self, port=port)
        client = subprocess.run([PYCLIENT_EXE, "-c", LOAD_CLIENT, "127.0.0.1", str(port), "20"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(client.returncode, 0, client.stderr[-3000:])
        spans = wait_for_spans(agent, lambda ss: sum(s.is_server and s.pid == server.pid for s in ss) >= 20)
        clients = {s.attrs.get("url.path"): s for s in spans if s.is_client}
        servers = [s for s in spans if s.is_server and s.pid == server.pid]
        self.assertEqual(len(servers), 20, format_spans(spans))
        for srv in servers:
            cli = clients.get(srv.attrs.get("url.path"))
            self.assertIsNotNone(cli, srv.brief())
            self.assertEqual((srv.trace_id, srv.parent_span_id), (cli.trace_id, cli.span_id),
                             f"\n{cli.brief()}\n{srv.brief()}")
            # The option is the first rule that names the parent; the tuple rule agrees with it.
            self.assertEqual(srv.attrs.get("threadline.parent.source"), "tcp_option", srv.brief())


# One keep-alive connection at a time: each request's head and Content-Length body are read, and
# answered with the SHA-256 of the body (the client checks every byte arrived as sent).
DIGEST_SERVER = r"""
import hashlib, json, socket, sys, threading
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1]))); ls.listen(16)
print(json.dumps({"listening": int(sys.argv[1])}), flush=True)
def serve(c):
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(262144)
            if not d:
                c.close(); return
            buf += d
        head, _, buf = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(buf) < length:
            d = c.recv(262144)
            if not d:
                c.close(); return
            buf += d
        body, buf = buf[:length], buf[length:]
        digest = hashlib.sha256(head + b"\r\n\r\n" + body).hexdigest().encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(digest), digest))
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# One keep-alive connection (TCP_NODELAY), N requests: every 10th with a 300 KB body, bursts of
# three pipelined requests (three writes, then three responses), the rest one at a time. Each
# response must be the SHA-256 of exactly the bytes sent for that request.
LOAD_CLIENT = r"""
import hashlib, json, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
pending, bad, sent, buf = [], [], 0, b""
def request(i):
    body = bytes((i * 7 + k) % 251 for k in range(300 * 1024)) if i % 10 == 9 else b"x" * (i % 50)
    head = b"POST /r/%d HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % (i, len(body))
    return head + body
def read_response():
    global buf
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            sys.exit("closed")
        buf += d
    head, _, buf = buf.partition(b"\r\n\r\n")
    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
    while len(buf) < length:
        buf += s.recv(65536)
    body, buf = buf[:length], buf[length:]
    return body
i = 0
while i < n:
    burst = 3 if i % 10 < 3 and i + 3 <= n else 1
    reqs = [request(i + k) for k in range(burst)]
    for r in reqs:
        s.sendall(r)
    for k, r in enumerate(reqs):
        if read_response() != hashlib.sha256(r).hexdigest().encode():
            bad.append(i + k)
    sent += burst
    i += burst
print(json.dumps({"sent": sent, "bad": bad}))
"""


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""bench/overhead: what the agent costs the applications it traces, in one run.

For each scenario (an application under load) and each configuration of the agent, in the
same run and interleaved:

  off       no agent
  bpf       the capture programs attached and the ring drained, nothing else (bench/bpf_only)
  pipeline  the agent with --output none: kernel + decode + connections + HTTP parsing + spans,
            no output
  full      the agent as deployed: spans exported over OTLP/HTTP (protobuf, batched) into a
            local receiver that accepts and discards them (started by this script, on the load
            generator's CPU)
  base      (with --baseline-agent) the full mode with another build's agent, for a same-run
            A/B of two builds

it measures: max requests/s (wrk), p50/p99 latency at a fixed rate (hey -q), application CPU
per request (/proc/<pid>/stat of the server's processes, which includes the time the BPF
programs run in the server's syscalls), agent CPU per request and RSS (/proc/<agent>/status
VmHWM), and kernel events lost (the agent's "final stats" line). Each measurement is repeated
(--repeats, default 3); the table shows the median and the spread (min-max).

CPU placement (2-core machine): the server on CPU 0, the load generator and the agent on CPU 1.
The server's core then carries only what tracing adds to the server itself (the BPF programs
run in its syscalls); the agent's userspace work competes with the load generator, as it would
compete with other work on a node. Change with --server-cpu/--load-cpu/--agent-cpu.

--defaults: the agent as a new user runs it on a node: no --pid (every process traced, the load
generator and the receiver too), the agent not pinned to a CPU, its default settings (trace
store and web view on). Server and load generator stay pinned so that runs compare.

The receiver of the full mode is one single-threaded non-blocking loop that reads each export
request and answers a canned 200 without parsing the body (no thread per request, no HTTP
library): its CPU seconds are printed at the end ("sink: ..."), so that `full` is the agent's cost.

Run as root from the repository root:  sudo python3 bench/overhead.py [--quick] [--markdown]
It installs nginx, wrk, hey and openssl with scripts/deps.sh --with-bench (idempotent).
Exit status: 0 ok, 1 failure, 77 prerequisites missing (skip; under CI=true that is 1).
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
from ci_mode import in_ci  # noqa: E402  (CI=true, 1, yes or on)
SKIP = 77
CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ["off", "bpf", "pipeline", "full"]
# "base": the full mode with another build's agent (--baseline-agent), interleaved with the
# others, so that two builds are compared within one run on the same machine (two separate runs
# of this script differ by more than most changes: `off` runs of one scenario varied by up to
# 30% between runs 36 minutes apart on 2026-12-07).
MODE_HELP = {
    "base": "the full mode with the --baseline-agent binary (another build, for A/B)",
    "off": "no agent",
    "bpf": "capture programs + ring drained, no userspace work (bench/bpf_only)",
    "pipeline": "agent --output none (parse + spans, no output)",
    "full": "agent --output otlp (OTLP/HTTP protobuf export into a local discarding receiver)",
}


class Prerequisite(Exception):
    """Something the benchmark needs is missing (skip, or fail under CI)."""


# ---- Scenarios --------------------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    server: str            # "nginx" or "python"
    url: str
    conn_close: bool       # a new connection per request
    wrk_connections: int
    rate: int              # fixed rate for the latency run, requests/s
    hey_workers: int
    note: str = ""


def scenarios(ports):
    http = f"http://127.0.0.1:{ports['http']}/"
    https = f"https://127.0.0.1:{ports['https']}/"
    py = f"http://127.0.0.1:{ports['python']}/"
    return [
        Scenario("nginx-keepalive", "nginx", http, False, 32, 2000, 10),
        Scenario("nginx-close", "nginx", http, True, 32, 1000, 10,
                 "new connection per request (Connection: close)"),
        # bpf (bench/bpf_only) attaches no TLS uprobes: it shows the socket programs only; the
        # pipeline and full modes include the uprobes on libssl and make https spans.
        Scenario("nginx-https", "nginx", https, False, 32, 2000, 10,
                 "TLS uprobes on libssl in pipeline/full (not in bpf)"),
        Scenario("python-threads", "python", py, True, 16, 200, 4,
                 "python3 ThreadingHTTPServer, a thread per request (Connection: close)"),
    ]


# ---- The agent configurations -----------------------------------------------------------------

def full_agent_args(args):
    """Arguments of the "full agent" configuration: OTLP/HTTP export into the local sink
    (OtlpSink). --full-agent-args overrides this without editing the script."""
    if args.full_agent_args:
        return shlex.split(args.full_agent_args)
    return ["--output", "otlp", "--otlp-endpoint", f"http://127.0.0.1:{args.sink_port}",
            "--otlp-protocol", "http/protobuf"]


# An OTLP/HTTP receiver that accepts every export and discards it, counting requests and bytes
# (printed on SIGTERM). One thread, one selectors loop, no HTTP library: it finds the end of the
# headers and Content-Length, skips that many bytes, and writes a canned response. The agent
# batches spans (hundreds per request), so a few dozen requests per second arrive: its cost is
# a fraction of a percent of a core, and it is printed (CPU seconds) when it stops.
SINK_CODE = r"""
import os, selectors, signal, socket, sys
counts = {"requests": 0, "bytes": 0}
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
      b"Content-Length: 0\r\n\r\n")
sel = selectors.DefaultSelector()
lst = socket.socket()
lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lst.bind(("127.0.0.1", int(sys.argv[1])))
lst.listen(64)
lst.setblocking(False)
sel.register(lst, selectors.EVENT_READ, None)
state = {}  # socket -> [header bytes so far, body bytes still to skip]
def on_data(c):
    try:
        data = c.recv(1 << 20)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        data = b""
    if not data:
        sel.unregister(c); c.close(); state.pop(c, None); return
    st = state[c]
    while data:
        if st[1] > 0:
            take = min(st[1], len(data)); st[1] -= take; data = data[take:]
            if st[1] == 0:
                counts["requests"] += 1; c.sendall(OK)
            continue
        st[0] += data; data = b""
        end = st[0].find(b"\r\n\r\n")
        if end < 0:
            return
        head, rest = st[0][:end].lower(), st[0][end + 4:]
        st[0] = b""
        n = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                n = int(line.split(b":", 1)[1])
        counts["bytes"] += n
        if n == 0:
            counts["requests"] += 1; c.sendall(OK)
        st[1] = n
        data = rest
def stop(*_):
    t = os.times()
    print(f"sink: {counts['requests']} export requests, {counts['bytes']} bytes, "
          f"{t.user + t.system:.2f} s CPU", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("sink ready", flush=True)
while True:
    for key, _ in sel.select():
        if key.fileobj is lst:
            try:
                c, _ = lst.accept()
            except (BlockingIOError, InterruptedError):
                continue
            c.setblocking(False)
            state[c] = [b"", 0]
            sel.register(c, selectors.EVENT_READ, None)
        else:
            on_data(key.fileobj)
"""


class OtlpSink:
    def __init__(self, port, cpu):
        self.proc = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", SINK_CODE,
                                      str(port)], stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "sink ready":
            raise RuntimeError("the OTLP sink did not start")

    def stop(self):
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out = ""
        return out.strip()


def agent_command(args, mode, server_pids):
    pin = [] if args.defaults else ["taskset", "-c", str(args.agent_cpu)]
    if mode == "bpf":
        sel = [] if args.trace_all else [a for p in server_pids for a in ("--pid", str(p))]
        return pin + [args.bpf_only] + sel
    sel = [] if args.trace_all else ["--pid", str(server_pids[0])]  # descendants included
    out = ["--output", "none"] if mode == "pipeline" else full_agent_args(args)
    binary = args.baseline_agent if mode == "base" else args.agent
    # The CPU budget (default 0.5 cores) would shed part of the very load being measured: these
    # tables are the cost of tracing all of it.
    return pin + [binary] + sel + out + ["--cpu-budget", "off"]


class Agent:
    """An agent (or bpf_only) process: started, waited for, measured, stopped."""

    def __init__(self, cmd, tmp):
        self.cmd = cmd
        self.log_path = os.path.join(tmp, "agent.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=self.log)

    def wait_ready(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited ({self.proc.returncode}): {self.tail()}")
            with open(self.log_path) as f:
                if "threadline ready" in f.read():
                    return
            time.sleep(0.1)
        # Never leave it attached: it would tax every later measurement.
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(f"agent not ready after {timeout}s: {self.tail()}")

    def memory_kib(self):
        st = read_status(self.proc.pid)
        return st.get("VmHWM", 0), st.get("VmRSS", 0)

    def cpu_ticks(self):
        return cpu_ticks([self.proc.pid])

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        with open(self.log_path) as f:
            text = f.read()
        m = re.search(r"final stats: events received (\d+), lost (\d+) \(([^)]*)\)", text)
        if not m:
            raise RuntimeError(f"no final stats from the agent: {text[-2000:]}")
        return int(m.group(1)), int(m.group(2)), m.group(3)

    def tail(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-1500:]


# ---- /proc --------------------------------------------------------------------------------------

def read_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if v.strip().endswith("kB"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def cpu_ticks(pids):
    """utime + stime of the processes (all their threads), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14, 15)
        except OSError:
            pass
    return total


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(d))
    return sorted(out)


# ---- Servers ------------------------------------------------------------------------------------

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
user root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  server {{
    listen 127.0.0.1:{http};
    listen 127.0.0.1:{https} ssl;
    ssl_certificate {tmp}/cert.pem;
    ssl_certificate_key {tmp}/key.pem;
    location / {{ root {tmp}/www; }}
  }}
}}
"""

PYTHON_SERVER = """
import http.server, sys
BODY = b"x" * 612
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)
    def log_message(self, *args):
        pass
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Server:
    def __init__(self, kind, tmp, ports, cpu):
        self.kind = kind
        pin = ["taskset", "-c", str(cpu)]
        if kind == "nginx":
            for d in ("www", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.makedirs(os.path.join(tmp, d), exist_ok=True)
            with open(os.path.join(tmp, "www", "index.html"), "w") as f:
                f.write("x" * 612)  # the size of nginx's default page
            if not os.path.exists(os.path.join(tmp, "cert.pem")):
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                "-keyout", f"{tmp}/key.pem", "-out", f"{tmp}/cert.pem",
                                "-days", "2", "-subj", "/CN=127.0.0.1",
                                "-addext", "subjectAltName=IP:127.0.0.1"],
                               check=True, capture_output=True)
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(tmp=tmp, http=ports["http"], https=ports["https"]))
            self.proc = subprocess.Popen(pin + ["nginx", "-c", conf, "-p", tmp],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(ports["http"])
            wait_port(ports["https"])
        else:
            script = os.path.join(tmp, "server.py")
            with open(script, "w") as f:
                f.write(PYTHON_SERVER)
            python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
            self.proc = subprocess.Popen(pin + [python, script, str(ports["python"])],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_port(ports["python"])

    def pids(self):
        # taskset execs the server, so proc.pid is the server (nginx master / python).
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT if self.kind == "nginx" else signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- Load generators ----------------------------------------------------------------------------

def run_wrk(args, sc, duration):
    cmd = ["taskset", "-c", str(args.load_cpu), "wrk", "-t1", f"-c{sc.wrk_connections}",
           f"-d{duration}s", "--timeout", "5s"]
    if sc.conn_close:
        cmd += ["-H", "Connection: close"]
    out = subprocess.run(cmd + [sc.url], capture_output=True, text=True, timeout=duration + 30)
    text = out.stdout + out.stderr
    m_req = re.search(r"(\d+) requests in", text)
    m_rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if out.returncode != 0 or not m_req or not m_rps:
        raise RuntimeError(f"wrk failed: {text[-1000:]}")
    errors = 0
    m_err = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m_err:
        connect, read, write, timeout = (int(x) for x in m_err.groups())
        # With Connection: close wrk counts every close by the server as a read error.
        errors += connect + write + timeout + (0 if sc.conn_close else read)
    m_non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m_non2xx:
        errors += int(m_non2xx.group(1))
    return int(m_req.group(1)), float(m_rps.group(1)), errors


def run_hey(args, sc, duration):
    per_worker = max(1, round(sc.rate / sc.hey_workers))
    cmd = ["taskset", "-c", str(args.load_cpu), "hey", "-z", f"{duration}s",
           "-c", str(sc.hey_workers), "-q", str(per_worker)]
    if sc.conn_close:
        cmd.append("-disable-keepalive")
    out = subprocess.run(cmd + [sc.url], capture_output=True, text=True, timeout=duration + 30)
    text = out.stdout + out.stderr

    def pct(p):
        m = re.search(rf"\s{p}% in ([\d.]+) secs", text)
        return float(m.group(1)) * 1e6 if m else None

    p50, p99 = pct(50), pct(99)
    if out.returncode != 0 or p50 is None or p99 is None:
        raise RuntimeError(f"hey failed: {text[-1000:]}")
    m_rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    return p50, p99, float(m_rps.group(1)) if m_rps else 0.0


# ---- One measurement ----------------------------------------------------------------------------

@dataclass
class Sample:
    rps: float
    requests: int
    wrk_errors: int
    p50_us: float
    p99_us: float
    rate_achieved: float
    app_cpu_us_per_req: float
    agent_cpu_us_per_req: float = 0.0
    agent_hwm_mib: float = 0.0
    agent_rss_mib: float = 0.0
    events: int = 0
    lost: int = 0
    lost_detail: str = ""


def settle_cpu(get_ticks, max_wait=3.0):
    """Waits until a process stops burning CPU (the agent draining what the load left)."""
    prev = get_ticks()
    deadline = time.time() + max_wait
    while time.time() < deadline:
        time.sleep(0.2)
        now = get_ticks()
        if now == prev:
            return now
        prev = now
    return prev


def measure(args, sc, server, mode, tmp):
    pids = server.pids()
    agent = None
    if mode != "off":
        agent = Agent(agent_command(args, mode, pids), tmp)
        agent.wait_ready()
        time.sleep(0.3)
    try:
        app0 = cpu_ticks(pids)
        ag0 = agent.cpu_ticks() if agent else 0
        requests, rps, errors = run_wrk(args, sc, args.duration)
        app1 = cpu_ticks(pids)
        ag1 = settle_cpu(agent.cpu_ticks) if agent else 0
        p50, p99, achieved = run_hey(args, sc, args.latency_duration)
        s = Sample(rps=rps, requests=requests, wrk_errors=errors, p50_us=p50, p99_us=p99,
                   rate_achieved=achieved,
                   app_cpu_us_per_req=(app1 - app0) / CLK_TCK * 1e6 / max(1, requests))
        if agent:
            s.agent_cpu_us_per_req = (ag1 - ag0) / CLK_TCK * 1e6 / max(1, requests)
            hwm, rss = agent.memory_kib()
            s.agent_hwm_mib, s.agent_rss_mib = hwm / 1024, rss / 1024
    finally:
        if agent:
            stats = agent.stop()
    if agent:
        s.events, s.lost, s.lost_detail = stats
    return s


# ---- Report -------------------------------------------------------------------------------------

def machine_header():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    virt = []
    with open("/proc/cpuinfo") as f:
        if " hypervisor" in f.read():
            virt.append("VM")
    try:
        dm = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=5).stdout
        m = re.search(r"Hypervisor detected: (\S+)", dm)
        if m:
            virt.append(f"hypervisor {m.group(1)}")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cmdline") as f:
            if "firecracker" in f.read():
                virt.append("Firecracker microVM")
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem_gib:.1f} GiB RAM, Linux {platform.release()}, "
            f"{', '.join(virt) or 'bare metal?'}")


def other_tracers(own_pid):
    """Other threadline agents running now: their programs tax every syscall we measure."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == own_pid:
            continue
        try:
            with open(f"/proc/{d}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm in ("threadline", "bpf_only", "probes_bench"):
            found.append(f"{comm}[{d}]")
    return found


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs, fmt):
    if not xs:
        return "-"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(med(xs))} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def build_rows(results, scenario_list, modes):
    rows = []
    for sc in scenario_list:
        base = results.get((sc.name, "off"), [])
        for mode in modes:
            samples = results.get((sc.name, mode), [])
            if not samples:
                continue
            n = min(len(samples), len(base))
            ratios = [samples[i].rps / base[i].rps for i in range(n) if base[i].rps] if mode != "off" else []
            d50 = [samples[i].p50_us - base[i].p50_us for i in range(n)] if mode != "off" else []
            d99 = [samples[i].p99_us - base[i].p99_us for i in range(n)] if mode != "off" else []
            rows.append({
                "scenario": sc.name,
                "mode": mode,
                "req/s": spread([s.rps for s in samples], "{:.0f}"),
                "ratio": spread(ratios, "{:.3f}") if ratios else "1",
                "p50 us": spread([s.p50_us for s in samples], "{:.0f}"),
                "p50 delta": spread(d50, "{:+.0f}") if d50 else "-",
                "p99 us": spread([s.p99_us for s in samples], "{:.0f}"),
                "p99 delta": spread(d99, "{:+.0f}") if d99 else "-",
                "app CPU us/req": spread([s.app_cpu_us_per_req for s in samples], "{:.1f}"),
                "agent CPU us/req": spread([s.agent_cpu_us_per_req for s in samples], "{:.1f}")
                if mode != "off" else "-",
                "agent RSS MiB (peak)": spread([s.agent_hwm_mib for s in samples], "{:.0f}")
                if mode != "off" else "-",
                "events lost": f"{sum(s.lost for s in samples)} of {sum(s.events + s.lost for s in samples)}"
                if mode != "off" else "-",
            })
    return rows


def print_ab(results, scenario_list):
    """This build's full mode against the baseline build's, repeat by repeat (each pair ran in
    the same repeat, minutes apart at most)."""
    print("\nA/B, this build's full mode against --baseline-agent's (per repeat; >1 = this build faster):")
    for sc in scenario_list:
        full, base = results.get((sc.name, "full"), []), results.get((sc.name, "base"), [])
        n = min(len(full), len(base))
        if not n:
            continue
        rps = [full[i].rps / base[i].rps for i in range(n) if base[i].rps]
        cpu = [full[i].agent_cpu_us_per_req - base[i].agent_cpu_us_per_req for i in range(n)]
        app = [full[i].app_cpu_us_per_req - base[i].app_cpu_us_per_req for i in range(n)]
        print(f"  {sc.name:16s} req/s {' '.join(f'{r:.3f}' for r in rps)} (median {spread(rps, '{:.3f}')}); "
              f"agent CPU us/req {' '.join(f'{c:+.1f}' for c in cpu)}; "
              f"app CPU us/req {' '.join(f'{c:+.1f}' for c in app)}")


def format_table(rows, markdown):
    if not rows:
        return ""
    cols = list(rows[0].keys())
    if markdown:
        out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
        return "\n".join(out)
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    out = ["  ".join(c.ljust(widths[c]) for c in cols)]
    out.append("  ".join("-" * widths[c] for c in cols))
    out += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(out)


# ---- Main ---------------------------------------------------------------------------------------

def ensure_prerequisites(args):
    if os.geteuid() != 0:
        raise Prerequisite("needs root (BPF, nginx as root)")
    binaries = [(args.agent, "--agent"), (args.bpf_only, "--bpf-only")]
    if args.baseline_agent:
        binaries.append((args.baseline_agent, "--baseline-agent"))
    for binary, flag in binaries:
        if not os.access(binary, os.X_OK):
            raise Prerequisite(f"{binary} not built (ninja -C build threadline bpf_only, or pass {flag})")
    if not args.no_deps:
        r = subprocess.run([os.path.join(REPO, "scripts", "deps.sh"), "--with-bench"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise Prerequisite(f"scripts/deps.sh --with-bench failed: {r.stderr[-800:]}")
    for tool in ("nginx", "wrk", "hey", "openssl", "taskset"):
        if not shutil.which(tool):
            raise Prerequisite(f"{tool} not installed (scripts/deps.sh --with-bench)")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default=os.path.join(REPO, "build", "threadline"))
    p.add_argument("--baseline-agent",
                   help="another build's agent: adds the mode 'base' (its full mode) to the run, "
                        "interleaved with the others, for a same-run A/B of two builds")
    p.add_argument("--bpf-only", default=os.path.join(REPO, "build", "bench", "bpf_only"))
    p.add_argument("--repeats", type=int, default=3, help="measurements per scenario and mode")
    p.add_argument("--duration", type=float, default=6, help="seconds of wrk per measurement")
    p.add_argument("--latency-duration", type=float, default=4,
                   help="seconds of fixed-rate load (hey) per measurement")
    p.add_argument("--scenarios", default="all",
                   help="comma-separated: nginx-keepalive,nginx-close,nginx-https,python-threads")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--load-cpu", type=int, default=1)
    p.add_argument("--agent-cpu", type=int, default=1)
    p.add_argument("--trace-all", action="store_true",
                   help="trace every process (the load generator too), not only the server")
    p.add_argument("--defaults", action="store_true",
                   help="the agent as a user runs it: every process traced (no --pid), agent not "
                        "pinned, default settings (implies --trace-all)")
    p.add_argument("--full-agent-args", default="",
                   help="agent arguments of the 'full' mode instead of the built-in ones")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke: 1 repeat of 1-second runs; checks that it runs and measures")
    p.add_argument("--markdown", action="store_true", help="also print the table as markdown")
    p.add_argument("--json-out", help="write every sample as JSON here")
    p.add_argument("--no-deps", action="store_true", help="do not run scripts/deps.sh")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.duration, args.latency_duration = 1, 1, 1
    if args.defaults:
        args.trace_all = True
    args.duration = max(1, int(args.duration))
    args.latency_duration = max(1, int(args.latency_duration))
    return args


def main(argv):
    args = parse_args(argv)
    ci = in_ci()
    try:
        ensure_prerequisites(args)
    except Prerequisite as e:
        print(f"overhead: {e}", file=sys.stderr)
        if ci:
            return 1
        print("overhead: skipped (in CI mode, CI=true, that is a failure)", file=sys.stderr)
        return SKIP

    modes = [m for m in args.modes.split(",") if m]
    if "off" not in modes:
        modes.insert(0, "off")
    if args.baseline_agent and "base" not in modes:
        modes.append("base")
    if "base" in modes and not args.baseline_agent:
        print("overhead: mode 'base' needs --baseline-agent", file=sys.stderr)
        return 1
    unknown = [m for m in modes if m not in MODE_HELP]
    if unknown:
        print(f"overhead: unknown mode(s) {','.join(unknown)}", file=sys.stderr)
        return 1
    ports = {"http": free_port(), "https": free_port(), "python": free_port()}
    args.sink_port = free_port()
    all_sc = scenarios(ports)
    wanted = None if args.scenarios == "all" else set(args.scenarios.split(","))
    scenario_list = [s for s in all_sc if wanted is None or s.name in wanted]

    started = time.time()
    print(f"threadline overhead benchmark  {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print(f"machine: {machine_header()}")
    print(f"load average at start: {loadavg()}")
    others = other_tracers(os.getpid())
    if others:
        print(f"WARNING: other tracers attached during the run (they slow every syscall): {' '.join(others)}")
    agent_at = "agent not pinned (defaults)" if args.defaults else f"agent on CPU {args.agent_cpu}"
    print(f"placement: server on CPU {args.server_cpu}, load generator on CPU {args.load_cpu}, "
          f"{agent_at}; traced: {'all processes' if args.trace_all else 'the server only (--pid)'}")
    print(f"runs: {args.repeats} repeats x (wrk {args.duration}s max throughput + hey "
          f"{args.latency_duration}s fixed rate) per scenario and mode, modes interleaved; "
          "hey reports latency in 0.1 ms steps")
    for m in modes:
        text = MODE_HELP[m]
        if m in ("full", "base") and args.full_agent_args:
            text = "agent " + args.full_agent_args
        if m == "base":
            text += f": {args.baseline_agent}"
        print(f"  {m:9s} {text}")
    sys.stdout.flush()

    results = {}
    failures = []
    exporting = "full" in modes or "base" in modes
    sink = OtlpSink(args.sink_port, args.load_cpu) if exporting and not args.full_agent_args else None
    tmp = tempfile.mkdtemp(prefix="tl-bench-")
    os.chmod(tmp, 0o755)
    try:
        for sc in scenario_list:
            print(f"\n== {sc.name}: {sc.url}  wrk -c{sc.wrk_connections}; fixed rate {sc.rate}/s"
                  f"{'; ' + sc.note if sc.note else ''}", flush=True)
            server = Server(sc.server, tmp, ports, args.server_cpu)
            try:
                run_wrk(args, sc, 1)  # warm-up
                for rep in range(args.repeats):
                    order = modes[rep % len(modes):] + modes[:rep % len(modes)]
                    for mode in order:
                        try:
                            s = measure(args, sc, server, mode, tmp)
                        except (RuntimeError, subprocess.SubprocessError) as e:
                            failures.append(f"{sc.name}/{mode}: {e}")
                            print(f"  [{rep + 1}] {mode:9s} FAILED: {e}", flush=True)
                            continue
                        results.setdefault((sc.name, mode), []).append(s)
                        print(f"  [{rep + 1}] {mode:9s} {s.rps:9.0f} req/s  p50 {s.p50_us:7.0f} us  "
                              f"p99 {s.p99_us:7.0f} us  app {s.app_cpu_us_per_req:6.1f} us/req  "
                              f"agent {s.agent_cpu_us_per_req:6.1f} us/req  "
                              f"rss {s.agent_hwm_mib:5.1f} MiB  events {s.events} lost {s.lost}"
                              f"{'  wrk errors ' + str(s.wrk_errors) if s.wrk_errors else ''}",
                              flush=True)
            finally:
                server.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        sink_report = sink.stop() if sink else ""
        if sink_report:
            print(sink_report)

    rows = build_rows(results, scenario_list, modes)
    print(f"\nload average at end: {loadavg()}; took {time.time() - started:.0f}s")
    others = other_tracers(os.getpid())
    if others:
        print(f"WARNING: other tracers attached at the end of the run: {' '.join(others)}")
    print("median [min-max] over repeats; ratio = req/s with / without the agent (same repeat);"
          " deltas vs off at the fixed rate")
    print(format_table(rows, markdown=False))
    if args.markdown:
        print()
        print(format_table(rows, markdown=True))
    if "base" in modes and "full" in modes:
        print_ab(results, scenario_list)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({f"{k[0]}/{k[1]}": [s.__dict__ for s in v] for k, v in results.items()}, f, indent=1)

    # "It ran and produced numbers": every scenario x mode measured, throughput > 0, and the
    # agent really saw the traffic.
    for sc in scenario_list:
        for mode in modes:
            samples = results.get((sc.name, mode), [])
            if not samples:
                failures.append(f"{sc.name}/{mode}: no measurement")
            elif any(s.rps <= 0 for s in samples):
                failures.append(f"{sc.name}/{mode}: zero throughput")
            elif mode != "off" and any(s.events == 0 for s in samples):
                failures.append(f"{sc.name}/{mode}: the agent received no events")
    # The full mode really exported: the agent flushes its queue when stopped, so every run of
    # it reaches the receiver.
    if sink and any(samples for (_, mode), samples in results.items() if mode in ("full", "base")):
        m = re.search(r"sink: (\d+) export requests", sink_report)
        if not m or int(m.group(1)) == 0:
            failures.append(f"full: the OTLP receiver got no export request ({sink_report or 'no report'})")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Shared helpers for threadline's end-to-end tests.

The tests run the built agent (THREADLINE_BIN, else <repo>/build/threadline) against real
programs on 127.0.0.1 and assert what a user would see on its stdout. Python 3.11 stdlib only.

Every wait here is bounded in time. Tests that need root or BPF call require_root(), tests that
need a program or package require_tool() or give_up(): in CI mode (CI=true, 1, yes or on) they
fail, otherwise they skip with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from dataclasses import dataclass, field
from typing import Callable, Iterable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from ci_mode import in_ci  # noqa: E402

REPO = os.environ.get("THREADLINE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
IN_CI = in_ci()  # CI=true, 1, yes or on (tests/support/ci_mode.py)
LOOPBACK = "127.0.0.1"

READY_MARKER = "threadline ready"
READY_TIMEOUT = 60.0     # loading and attaching every probe
STOP_TIMEOUT = 10.0      # SIGINT/SIGTERM to exit
EVENT_TIMEOUT = 10.0     # an expected event line to show up


def agent_bin() -> str:
    return os.environ.get("THREADLINE_BIN") or os.path.join(REPO, "build", "threadline")


def require_root(test: unittest.TestCase) -> None:
    """Fails (CI) or skips (elsewhere) a test that needs root/BPF when not root."""
    if os.geteuid() != 0:
        reason = "needs root to load BPF programs (run scripts/test.sh as root)"
        if IN_CI:
            test.fail(f"CI=true: {reason}; tests that need root must not skip in CI")
        test.skipTest(reason)
    require_agent_binary(test)


def require_agent_binary(test: unittest.TestCase) -> None:
    path = agent_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        test.fail(f"agent binary not found at {path} (build it: scripts/build.sh)")


def give_up(test: unittest.TestCase, reason: str) -> None:
    """Fails (CI=true) or skips (elsewhere) a test that lacks something it needs."""
    if IN_CI:
        test.fail(f"CI=true: {reason}")
    test.skipTest(reason)


def require_tool(test: unittest.TestCase, *names: str, hint: str = "scripts/deps.sh --with-test-peers") -> None:
    """give_up unless every program in `names` is on PATH."""
    for name in names:
        if shutil.which(name) is None:
            give_up(test, f"{name} not installed ({hint})")


def lockdown_mode() -> str | None:
    """The kernel lockdown mode ("none", "integrity", "confidentiality"); None when unknown."""
    try:
        with open("/sys/kernel/security/lockdown") as f:
            m = re.search(r"\[(\w+)\]", f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def deadline_loop(timeout: float, interval: float = 0.05) -> Iterable[float]:
    """Yields the remaining time until `timeout` seconds have passed, sleeping in between."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        yield left
        time.sleep(min(interval, max(left, 0)))


# ---------------------------------------------------------------------------------------------
# Event lines
# ---------------------------------------------------------------------------------------------

_LINE_RE = re.compile(r"^(\d\d:\d\d:\d\d\.\d{6})\s+([A-Z]+)\s*(.*)$")
_FIELD_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')
_ESCAPES = {"n": 0x0A, "r": 0x0D, "t": 0x09, "0": 0x00, "\\": 0x5C, '"': 0x22, "'": 0x27,
            "a": 0x07, "b": 0x08, "f": 0x0C, "v": 0x0B, "e": 0x1B}


def c_unescape(s: str) -> bytes:
    """Decodes a C-escaped string body (no surrounding quotes) into bytes."""
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c != "\\" or i + 1 >= len(s):
            out += c.encode("utf-8", "surrogateescape")
            i += 1
            continue
        n = s[i + 1]
        if n in "xX" and re.match(r"[0-9a-fA-F]{1,2}", s[i + 2:i + 4]):
            h = re.match(r"[0-9a-fA-F]{1,2}", s[i + 2:i + 4]).group(0)
            out.append(int(h, 16))
            i += 2 + len(h)
        elif n in "01234567":
            o = re.match(r"[0-7]{1,3}", s[i + 1:i + 4]).group(0)
            out.append(int(o, 8) & 0xFF)
            i += 1 + len(o)
        elif n in _ESCAPES:
            out.append(_ESCAPES[n])
            i += 2
        else:
            out += n.encode()
            i += 2
    return bytes(out)


def split_endpoint(ep: str) -> tuple[str, int]:
    """'127.0.0.1:8000' -> ('127.0.0.1', 8000); '[::1]:8000' -> ('::1', 8000)."""
    host, _, port = ep.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


@dataclass
class Event:
    raw: str
    ts: str
    kind: str
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.fields.get(key, default)

    def int(self, key: str) -> int:
        return int(self.fields[key])

    @property
    def pid(self) -> int | None:
        v = self.fields.get("pid")
        return int(v) if v is not None and v.lstrip("-").isdigit() else None

    @property
    def data(self) -> bytes:
        return c_unescape(self.fields.get("data", ""))

    def endpoint(self, key: str) -> tuple[str, int]:
        return split_endpoint(self.fields[key])

    def local_port(self) -> int | None:
        return self.endpoint("local")[1] if "local" in self.fields else None

    def remote_port(self) -> int | None:
        return self.endpoint("remote")[1] if "remote" in self.fields else None


def parse_event(line: str) -> Event | None:
    m = _LINE_RE.match(line.rstrip("\n"))
    if not m:
        return None
    fields = {}
    for fm in _FIELD_RE.finditer(m.group(3)):
        v = fm.group(2)
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            v = v[1:-1]
        fields[fm.group(1)] = v
    return Event(raw=line.rstrip("\n"), ts=m.group(1), kind=m.group(2), fields=fields)


def conn_key(ev: Event) -> str | None:
    return ev.get("conn")


# ---------------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------------

class _CollectedProcess:
    """A child process started with its environment less OTEL_* (a developer's shell settings
    must not rename services or redirect exports in tests) plus `env`, its stdout and stderr
    collected line by line by two threads, readable while it runs."""

    def _spawn(self, argv: list[str], env: dict[str, str] | None, cwd: str | None = None) -> None:
        self._lock = threading.Lock()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        self.proc = subprocess.Popen(argv, cwd=cwd, env={**base_env, **(env or {})},
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, errors="replace",
                                     bufsize=1)
        self.pid = self.proc.pid
        self._threads = [threading.Thread(target=self._pump, args=(s, sink, s is self.proc.stderr),
                                          daemon=True)
                         for s, sink in ((self.proc.stdout, self._stdout),
                                         (self.proc.stderr, self._stderr))]
        for t in self._threads:
            t.start()

    def _on_stderr_line(self, line: str) -> None:
        """Called for every stderr line as it arrives (on the pump thread)."""

    def _pump(self, stream, sink: list[str], is_stderr: bool) -> None:
        for line in stream:
            with self._lock:
                sink.append(line.rstrip("\n"))
            if is_stderr:
                self._on_stderr_line(line)

    def _join_pumps(self) -> None:
        for t in self._threads:
            t.join(timeout=5)

    @property
    def stdout_lines(self) -> list[str]:
        with self._lock:
            return list(self._stdout)

    @property
    def stderr_lines(self) -> list[str]:
        with self._lock:
            return list(self._stderr)


class Agent(_CollectedProcess):
    """The threadline binary as a subprocess, its stdout and stderr collected by threads."""

    def __init__(self, args: list[str], test: unittest.TestCase | None = None,
                 wait_ready: bool = True, ready_timeout: float = READY_TIMEOUT,
                 env: dict[str, str] | None = None, binary: str | None = None,
                 prefix: list[str] | None = None):
        # prefix: a command that execs the agent (e.g. nsenter into a network namespace).
        self.args = [*(prefix or []), binary or agent_bin(), *args]
        self._ready = threading.Event()
        self.returncode: int | None = None
        self._spawn(self.args, env)
        if test is not None:
            test.addCleanup(self.kill)
        if wait_ready:
            self.wait_ready(ready_timeout)

    def _on_stderr_line(self, line: str) -> None:
        if READY_MARKER in line:
            self._ready.set()

    # -- state ------------------------------------------------------------------------------

    def events(self, kind: str | None = None) -> list[Event]:
        evs = [e for e in (parse_event(l) for l in self.stdout_lines) if e is not None]
        return [e for e in evs if kind is None or e.kind == kind]

    def stderr_tail(self, n: int = 40) -> str:
        return "\n".join(self.stderr_lines[-n:])

    def describe(self) -> str:
        return (f"agent {' '.join(self.args)} (pid {self.pid}, rc {self.proc.poll()})\n"
                f"--- stderr (tail) ---\n{self.stderr_tail()}\n"
                f"--- stdout: {len(self.stdout_lines)} lines (tail) ---\n"
                + "\n".join(self.stdout_lines[-30:]))

    # -- waiting ----------------------------------------------------------------------------
    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        for _ in deadline_loop(timeout, 0.05):
            if self._ready.is_set():
                return
            if self.proc.poll() is not None:
                self._join_pumps()
                if self._ready.is_set():
                    return
                raise AssertionError(f"agent exited before '{READY_MARKER}'\n{self.describe()}")
        if not self._ready.is_set():
            self.kill()
            raise AssertionError(f"no '{READY_MARKER}' on stderr within {timeout:.0f}s\n"
                                 f"{self.describe()}")

    def wait_for(self, pred: Callable[[list[Event]], bool],
                 timeout: float = EVENT_TIMEOUT) -> bool:
        """Polls the parsed events until pred(events) is true; False on timeout or exit."""
        for _ in deadline_loop(timeout, 0.1):
            if pred(self.events()):
                return True
            if self.proc.poll() is not None:
                break
        return pred(self.events())

    def wait_logged(self, *parts: str, timeout: float = 20.0) -> str:
        """The first stderr line containing every one of `parts` (e.g. a probe attach that the
        agent does asynchronously after an exec); AssertionError when none shows in time."""
        for _ in deadline_loop(timeout, 0.05):
            for line in self.stderr_lines:
                if all(p in line for p in parts):
                    return line
        raise AssertionError(f"no stderr line with {parts} within {timeout:.0f}s\n{self.describe()}")

    def wait_exit(self, timeout: float) -> int | None:
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join_pumps()
        return self.returncode

    # -- stopping ---------------------------------------------------------------------------
    def stop(self, sig: int = signal.SIGINT, timeout: float = STOP_TIMEOUT) -> int:
        """Sends `sig` and waits; fails the test when the agent does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
            raise AssertionError(f"agent did not exit within {timeout:.0f}s of "
                                 f"{signal.Signals(sig).name}\n{self.describe()}")
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._join_pumps()
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass


def run_agent_once(args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs the agent to completion (e.g. --probe) with a time limit."""
    return subprocess.run([agent_bin(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, errors="replace", timeout=timeout)


# ---------------------------------------------------------------------------------------------
# Peers on loopback
# ---------------------------------------------------------------------------------------------

_PORTS_GIVEN: set[int] = set()


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing is bound to now, and never one this process was given before: the kernel
    can hand the same free port to consecutive binds, and two servers told to listen on one
    port make the second fail while a wait for "something accepts" still passes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port


def wait_accepting(host: str, port: int, timeout: float = 10.0) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in deadline_loop(timeout, 0.05):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect((host, port))
                return
        except OSError:
            pass
    raise AssertionError(f"nothing accepting on {host}:{port} after {timeout:.0f}s")


_TCP_LISTEN = "0A"


def port_connections_held(port: int) -> list[str]:
    """TCP connections to or from `port` in this network namespace (IPv4 and IPv6) that a process
    still holds open: any state but LISTEN, with a socket inode (once its owner has closed it, a
    socket that is still finishing its handshake keeps only kernel state: inode 0)."""
    held = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] == _TCP_LISTEN or fields[9] == "0":
                continue
            local, remote = (int(x.rsplit(":", 1)[1], 16) for x in fields[1:3])
            if port in (local, remote):
                held.append(f"{fields[1]} -> {fields[2]} state {fields[3]} inode {fields[9]}")
    return held


def wait_port_connections_closed(port: int, timeout: float = 10.0) -> None:
    """Waits until every connection on `port` has been closed by the processes at both ends.
    The agent reports a close at the close() syscall's entry, so from then on every close event
    is in the kernel's ring ahead of anything that happens next."""
    held: list[str] = []
    for _ in deadline_loop(timeout, 0.02):
        held = port_connections_held(port)
        if not held:
            return
    raise AssertionError(f"connections on port {port} still open after {timeout:.0f}s: {held}")


class HttpServer:
    """`python3 -m http.server PORT --bind HOST` serving a temp dir with index.html and extras."""

    INDEX = b"<html><body>threadline e2e</body></html>\n"

    def __init__(self, test: unittest.TestCase | None = None, host: str = LOOPBACK,
                 files: dict[str, bytes] | None = None):
        self.host = host
        self.port = free_port(host)
        self.dir = tempfile.mkdtemp(prefix="tl-e2e-www-")
        with open(os.path.join(self.dir, "index.html"), "wb") as f:
            f.write(self.INDEX)
        for name, body in (files or {}).items():
            with open(os.path.join(self.dir, name), "wb") as f:
                f.write(body)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(self.port), "--bind", host],
            cwd=self.dir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid
        if test is not None:
            test.addCleanup(self.stop)
        try:
            wait_accepting(host, self.port)
        except AssertionError:
            self.stop()
            raise

    def url(self, path: str = "/") -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{h}:{self.port}{path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class CurlResult:
    pid: int
    returncode: int
    stdout: str
    stderr: str


def curl(url: str, *extra: str, timeout: float = 15.0) -> CurlResult:
    """Runs curl once (no proxy, bounded time); returns its pid and output."""
    cmd = ["curl", "-sS", "--noproxy", "*", "--max-time", "10", "-o", "/dev/null",
           "-w", "%{http_code}", *extra, url]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return CurlResult(pid=p.pid, returncode=p.returncode, stdout=out, stderr=err)


# ---------------------------------------------------------------------------------------------
# BPF programs left in the kernel
# ---------------------------------------------------------------------------------------------

TL_PROG_PREFIX = "tl_"


def bpf_progs() -> list[dict]:
    """`bpftool prog show -j`: id, name, and (when bpftool can tell) the pids holding each."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    return json.loads(out or "[]")


def tl_progs() -> list[dict]:
    return [p for p in bpf_progs() if str(p.get("name", "")).startswith(TL_PROG_PREFIX)]


def _prog_holders() -> dict[int, set[int]]:
    """prog id -> pids holding an fd to it (a program fd or a link fd), read from
    /proc/<pid>/fdinfo. bpftool only fills in "pids" when it was built with its own BPF
    iterator skeleton, which Debian's is not, so we ask procfs directly."""
    holders: dict[int, set[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fdinfo = f"/proc/{entry}/fdinfo"
        try:
            names = os.listdir(fdinfo)
        except OSError:
            continue
        for name in names:
            try:
                with open(f"{fdinfo}/{name}") as f:
                    text = f.read()
            except OSError:
                continue
            for m in re.finditer(r"^prog_id:\s*(\d+)", text, re.M):
                holders.setdefault(int(m.group(1)), set()).add(int(entry))
    return holders


def prog_pids(p: dict, holders: dict[int, set[int]] | None = None) -> set[int]:
    """Pids holding program p: bpftool's own field when present, else procfs fdinfo."""
    pids = {int(x["pid"]) for x in p.get("pids", []) if "pid" in x}
    if pids:
        return pids
    if holders is None:
        holders = _prog_holders()
    return set(holders.get(int(p["id"]), set()))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def leaked_tl_progs(baseline_ids: set[int], owned_ids: set[int],
                    timeout: float = 30.0) -> list[dict]:
    """tl_ programs still loaded after our agents exited.

    A leak is a program the agents held while running (owned_ids), or a tl_ program that is
    new since the baseline and that no live process holds (e.g. attached to a cgroup and
    orphaned). Programs held by other live processes belong to agents other tests run.
    The kernel frees programs a moment after the last reference goes, and an agent that
    stopped leaves its hooks' teardown to its tl-detach child (seconds on a loaded machine: RCU
    grace periods one after the other): poll for a while.
    """
    leaked: list[dict] = []
    for _ in deadline_loop(timeout, 0.2):
        leaked = []
        holders = _prog_holders()
        for p in tl_progs():
            pid_set = prog_pids(p, holders)
            if p["id"] in owned_ids:
                leaked.append(p)
            elif p["id"] not in baseline_ids and not any(pid_alive(x) for x in pid_set):
                leaked.append(p)
        if not leaked:
            return []
    return leaked


def describe_progs(progs: list[dict]) -> str:
    holders = _prog_holders()
    return "\n".join(f"  id={p.get('id')} type={p.get('type')} name={p.get('name')} "
                     f"pids={sorted(prog_pids(p, holders))}" for p in progs)


# ---------------------------------------------------------------------------------------------
# Assertions
# ---------------------------------------------------------------------------------------------

def format_events(evs: list[Event], limit: int = 40) -> str:
    lines = [e.raw for e in evs[-limit:]]
    more = f"... ({len(evs) - limit} earlier lines not shown)\n" if len(evs) > limit else ""
    return more + "\n".join(lines)


CONN_KINDS = ("OPEN", "DATA", "GAP", "CLOSE")



# ---------------------------------------------------------------------------------------------
# Spans (--output=json: one OTLP JSON ExportTraceServiceRequest per line)
# ---------------------------------------------------------------------------------------------

SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
STATUS_ERROR = 2
SPAN_TIMEOUT = 15.0      # a span to show up (the JSON sink writes at least once a second)


def otlp_value(v: dict):
    """An OTLP JSON AnyValue as a Python value (intValue arrives as a string)."""
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [otlp_value(x) for x in v["arrayValue"].get("values", [])]
    if "kvlistValue" in v:
        return otlp_attributes(v["kvlistValue"].get("values", []))
    if "bytesValue" in v:
        return v["bytesValue"]
    return None


def otlp_attributes(kvs: list[dict] | None) -> dict:
    return {kv["key"]: otlp_value(kv.get("value", {})) for kv in (kvs or [])}


@dataclass
class SpanRecord:
    """One exported span, flattened with its resource's attributes."""
    trace_id: str
    span_id: str
    parent_span_id: str      # "" for a root
    name: str
    kind: int
    start_ns: int
    end_ns: int
    attrs: dict
    resource: dict
    status_code: int         # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[dict]
    links: list[dict]
    raw: dict

    @property
    def service(self) -> str | None:
        return self.resource.get("service.name")

    @property
    def pid(self) -> int | None:
        return self.resource.get("process.pid")

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    @property
    def is_server(self) -> bool:
        return self.kind == SPAN_KIND_SERVER

    @property
    def is_client(self) -> bool:
        return self.kind == SPAN_KIND_CLIENT

    @property
    def is_error(self) -> bool:
        return self.status_code == STATUS_ERROR

    def brief(self) -> str:
        kind = {SPAN_KIND_SERVER: "SERVER", SPAN_KIND_CLIENT: "CLIENT"}.get(self.kind, self.kind)
        return (f"{kind} {self.name!r} svc={self.service} pid={self.pid} trace={self.trace_id} "
                f"span={self.span_id} parent={self.parent_span_id or '-'} "
                f"status={self.status_code} dur={self.duration_ns}ns "
                f"path={self.attrs.get('url.path')} code={self.attrs.get('http.response.status_code')} "
                f"src={self.attrs.get('threadline.parent.source')}")


def parse_otlp_json_line(line: str) -> list[SpanRecord]:
    """The spans of one ExportTraceServiceRequest line; [] for a line that is not one."""
    line = line.strip()
    if not line.startswith("{"):
        return []
    try:
        req = json.loads(line)
    except ValueError:
        return []
    out = []
    for rs in req.get("resourceSpans", []):
        resource = otlp_attributes(rs.get("resource", {}).get("attributes"))
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                status = s.get("status") or {}
                out.append(SpanRecord(
                    trace_id=s.get("traceId", ""), span_id=s.get("spanId", ""),
                    parent_span_id=s.get("parentSpanId", "") or "", name=s.get("name", ""),
                    kind=int(s.get("kind", 0)), start_ns=int(s.get("startTimeUnixNano", 0)),
                    end_ns=int(s.get("endTimeUnixNano", 0)),
                    attrs=otlp_attributes(s.get("attributes")), resource=resource,
                    status_code=int(status.get("code", 0)),
                    status_message=status.get("message", ""),
                    events=s.get("events", []), links=s.get("links", []), raw=s))
    return out


def agent_spans(agent: Agent) -> list[SpanRecord]:
    """Every span the agent has written to stdout so far (--output=json)."""
    return [s for line in agent.stdout_lines for s in parse_otlp_json_line(line)]


def wait_for_spans(agent: Agent, pred: Callable[[list[SpanRecord]], bool],
                   timeout: float = SPAN_TIMEOUT) -> list[SpanRecord]:
    """Polls the agent's spans until pred(spans) is true; returns them. Fails the test with
    what was seen on timeout or when the agent exits."""
    for _ in deadline_loop(timeout, 0.2):
        spans = agent_spans(agent)
        if pred(spans):
            return spans
        if agent.proc.poll() is not None:
            break
    spans = agent_spans(agent)
    if pred(spans):
        return spans
    raise AssertionError(f"the expected spans did not show up within {timeout:.0f}s; "
                         f"{len(spans)} spans seen:\n{format_spans(spans)}\n{agent.describe()}")


# Nesting of a child span inside its parent. Span times are syscall timestamps taken in the
# kernel (boot clock, one epoch offset per agent): a SERVER span starts at the exit of the read
# that returned the request's first byte and ends at the exit of the write that sent the
# response's last byte; a CLIENT span starts at the entry of the write that sent the request and
# ends at the exit of the read that returned the response's last byte.
#   Same process, one unit of work (a handler's own outgoing call): the calls happen one after
#   the other, so the child lies inside the parent exactly.
#   Across processes (a SERVER span inside the CLIENT span that called it):
#   - start: the server's read cannot return bytes before the client's write entered: exact.
#   - end: the client's read can return as soon as the server's write has queued the last byte,
#     before that write exits (which is when the server span ends). The difference is the rest
#     of the server's write syscall, which is shorter than the server span itself (the write
#     starts after the request was read): that is the bound the capture gives. Measured on the
#     reference VM (2 vCPUs, loaded with two busy loops, 600 curl -> http.server exchanges):
#     server end - client end at most +1.3 us, 99th percentile -5.5 us. The slack allowed is the
#     server span's own duration, capped at CROSS_PROCESS_END_SLACK_NS (1500x the measured
#     worst case; a late end by more than that is a timing bug, not scheduling).
CROSS_PROCESS_END_SLACK_NS = 2_000_000


def nesting_problem(child: tuple[int, int], parent: tuple[int, int], cross_process: bool) -> str | None:
    """None when the child's (start_ns, end_ns) lies inside the parent's as the capture can
    know it (see CROSS_PROCESS_END_SLACK_NS), else what is wrong."""
    (c_start, c_end), (p_start, p_end) = child, parent
    if c_start < p_start:
        return f"child starts {p_start - c_start} ns before its parent"
    slack = min(c_end - c_start, CROSS_PROCESS_END_SLACK_NS) if cross_process else 0
    if c_end > p_end + slack:
        return (f"child ends {c_end - p_end} ns after its parent (allowed: {slack} ns"
                + (", the child span's duration capped at CROSS_PROCESS_END_SLACK_NS)" if cross_process else ")"))
    return None


def span_nesting_problem(child: SpanRecord, parent: SpanRecord, cross_process: bool) -> str | None:
    return nesting_problem((child.start_ns, child.end_ns), (parent.start_ns, parent.end_ns), cross_process)


def format_spans(spans: list[SpanRecord], limit: int = 40) -> str:
    more = f"... ({len(spans) - limit} earlier spans not shown)\n" if len(spans) > limit else ""
    return more + "\n".join("  " + s.brief() for s in spans[-limit:])


_METRIC_RE = re.compile(r"^\s+([a-z_][a-z0-9_]*)(\{[^}]*\})?\s+(\d+)\s*$")


def agent_metrics(lines: list[str]) -> dict[str, int]:
    """The counters the agent logs on stderr ("  name{label=value} N" lines of its stats),
    keyed 'name' or 'name{label=value}'; later lines (the final stats) win."""
    out: dict[str, int] = {}
    for line in lines:
        m = _METRIC_RE.match(line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = int(m.group(3))
    return out



# ---------------------------------------------------------------------------------------------
# Long-running peers (servers) with their output, and npm-installed peers
# ---------------------------------------------------------------------------------------------

class PeerProcess(_CollectedProcess):
    """A program run for a test (usually a server on 127.0.0.1:port), its stdout and stderr
    collected line by line, stopped (SIGTERM, then SIGKILL) at cleanup. `env` is added to the
    test's environment (less its OTEL_* variables); with `port`, waits until something accepts
    there."""

    def __init__(self, argv: list[str], test: unittest.TestCase | None = None,
                 port: int | None = None, env: dict[str, str] | None = None,
                 cwd: str | None = None, ready_timeout: float = 15.0):
        self.argv = argv
        self.port = port
        self._spawn(argv, env, cwd)
        if test is not None:
            test.addCleanup(self.stop)
        if port is not None:
            try:
                for _ in deadline_loop(ready_timeout, 0.05):
                    if self.proc.poll() is not None:
                        break
                    try:
                        wait_accepting(LOOPBACK, port, timeout=0.2)
                        return
                    except AssertionError:
                        pass
                raise AssertionError(f"{' '.join(argv)} is not accepting on port {port}\n"
                                     f"{self.describe()}")
            except AssertionError:
                self.stop()
                raise

    def url(self, path: str = "/") -> str:
        return f"http://{LOOPBACK}:{self.port}{path}"

    def describe(self) -> str:
        return (f"peer {' '.join(self.argv)} (pid {self.pid}, rc {self.proc.poll()})\n"
                "--- stdout (tail) ---\n" + "\n".join(self.stdout_lines[-20:]) +
                "\n--- stderr (tail) ---\n" + "\n".join(self.stderr_lines[-20:]))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._join_pumps()
        for s in (self.proc.stdout, self.proc.stderr):
            try:
                s.close()
            except Exception:
                pass


def nginx_peer(test: unittest.TestCase, directory: str, port: int, http: str,
               worker_connections: int = 64, ready_timeout: float = 20.0) -> PeerProcess:
    """nginx (one master, one worker, as root) run from `directory` for a test, stopped at
    cleanup: its pid file, error log and temporary paths are kept in `directory` (nothing of the
    system's), and `http` is the inside of the `http {}` block (servers, upstreams) after
    `access_log off`. Returns once it accepts on `port`."""
    for d in ("logs", "tmp"):
        os.makedirs(os.path.join(directory, d), exist_ok=True)
    temp_paths = "\n".join(f"  {kind}_temp_path {directory}/tmp/{kind};"
                            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\n"
                f"pid {directory}/nginx.pid;\nerror_log {directory}/logs/error.log warn;\n"
                f"events {{ worker_connections {worker_connections}; }}\n"
                f"http {{\n  access_log off;\n{temp_paths}\n{http}\n}}\n")
    return PeerProcess(["nginx", "-p", directory, "-c", conf], test, port=port, cwd=directory,
                       ready_timeout=ready_timeout)


def nginx_pids(nginx: PeerProcess) -> set[int]:
    """The master's pid and its workers' (the master's children)."""
    pids = {nginx.pid}
    try:
        with open(f"/proc/{nginx.pid}/task/{nginx.pid}/children") as f:
            pids |= {int(x) for x in f.read().split()}
    except OSError:
        pass
    return pids


def build_dir() -> str:
    """The build tree: THREADLINE_BUILD_DIR, else the folder holding the agent binary."""
    return os.environ.get("THREADLINE_BUILD_DIR") or os.path.dirname(os.path.abspath(agent_bin()))


def peer_alias(name: str, target: str) -> str:
    """A symlink <build>/e2e-peers/<name> -> target. Peers run through it have their own comm,
    so an agent selects exactly them (--exe <name>), never other python3/node processes of
    the machine."""
    out_dir = os.path.join(build_dir(), "e2e-peers")
    os.makedirs(out_dir, exist_ok=True)
    link = os.path.join(out_dir, name)
    if not (os.path.islink(link) and os.readlink(link) == target):
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(target, link)
    return link


def npm_peer(name: str, test: unittest.TestCase, timeout: float = 180.0) -> str:
    """Installs the npm peer tests/e2e/peers/<name> (its package.json, exact versions) into
    <build>/npm-peers/<name> and returns that folder. Idempotent: nothing is fetched when every
    dependency in node_modules already has the pinned version. The peer's other files (*.js)
    are copied next to node_modules so that `require` finds the packages. A missing node/npm
    or a failed install fails the test under CI=true and skips it elsewhere."""
    src = os.path.join(REPO, "tests", "e2e", "peers", name)
    dest = os.path.join(build_dir(), "npm-peers", name)
    with open(os.path.join(src, "package.json")) as f:
        pinned = json.load(f).get("dependencies", {})

    require_tool(test, "node", "npm", hint="scripts/deps.sh --with-test-peers installs nodejs")
    node_version = subprocess.run(["node", "--version"], capture_output=True, text=True,
                                  timeout=30).stdout.strip()
    m = re.match(r"v(\d+)\.", node_version)
    if not m or int(m.group(1)) < 20:
        give_up(test, f"node {node_version or '?'}: the npm peers are pinned for Node 20 or later")

    def installed_matches() -> bool:
        for pkg, version in pinned.items():
            try:
                with open(os.path.join(dest, "node_modules", pkg, "package.json")) as f:
                    if json.load(f).get("version") != version:
                        return False
            except (OSError, ValueError):
                return False
        return True

    os.makedirs(dest, exist_ok=True)
    for entry in os.listdir(src):
        if os.path.isfile(os.path.join(src, entry)):
            shutil.copyfile(os.path.join(src, entry), os.path.join(dest, entry))
    if not installed_matches():
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--no-package-lock",
                            "--loglevel=error"], cwd=dest, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0 or not installed_matches():
            give_up(test, f"npm install in {dest} failed (rc {p.returncode}):\n{p.stdout[-2000:]}"
                    f"\n{p.stderr[-2000:]}")
    return dest


GO_DEBIAN_GOPATH = "/usr/share/gocode"  # Debian's golang-*-dev source packages


def go_peer(test: unittest.TestCase, source: str, out: str, stripped: bool = False,
            debian_packages: tuple[tuple[str, str], ...] = ()) -> str:
    """Builds the Go program tests/e2e/peers/<source> offline (Debian's Go, no module proxy)
    into <build>/go-peers/<out> and returns the binary; kept while it is newer than the source.
    `stripped`: -ldflags="-s -w" (no ELF symbol table). `debian_packages`: (import path, Debian
    package) pairs it imports besides the standard library, built in GOPATH mode from Debian's
    sources. A missing go or package fails the test under CI=true and skips it elsewhere."""
    require_tool(test, "go", hint="scripts/deps.sh --with-test-peers installs golang-go")
    for import_path, package in debian_packages:
        if not os.path.isdir(os.path.join(GO_DEBIAN_GOPATH, "src", import_path)):
            give_up(test, f"Go package {import_path} not installed "
                               f"(scripts/deps.sh --with-test-peers installs {package})")
    src = os.path.join(REPO, "tests", "e2e", "peers", source)
    out_dir = os.path.join(build_dir(), "go-peers")
    os.makedirs(out_dir, exist_ok=True)
    dest = os.path.join(out_dir, out)
    if os.path.exists(dest) and os.path.getmtime(dest) >= os.path.getmtime(src):
        return dest
    env = {**os.environ, "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0"}
    if debian_packages:
        env["GOPATH"] = GO_DEBIAN_GOPATH
    env.setdefault("GOCACHE", os.path.join(out_dir, "gocache"))
    cmd = ["go", "build", "-o", dest, *(["-ldflags=-s -w"] if stripped else []), src]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        test.fail(f"go build {source} failed:\n{p.stderr[-3000:]}")
    return dest


SKIP_RETURN_CODE = 77  # ctest's SKIP_RETURN_CODE for the e2e and deploy tests (tests/CMakeLists.txt)


def main() -> None:
    """Runs the file's tests (unittest, verbose) and exits so that ctest tells a skip from a pass:
    1 when a test failed, SKIP_RETURN_CODE when no test ran to the end (all skipped, setUpClass
    skips included), 0 otherwise. Some skipped among passes: still 0, but the skips are listed at
    the end of the output (ctest keeps it in Testing/Temporary/LastTest.log, and prints it with
    --output-on-failure / -V)."""
    result = unittest.main(verbosity=2, exit=False).result
    sys.exit(exit_code(result))


def exit_code(result: unittest.TestResult) -> int:
    if not result.wasSuccessful():
        return 1
    # A skip raised in setUpClass is recorded against a holder, not a test, and the class's
    # tests are then not counted in testsRun at all.
    skipped_tests = sum(1 for test, _ in result.skipped if isinstance(test, unittest.TestCase))
    completed = result.testsRun - skipped_tests
    if result.skipped:
        print(f"\nSKIPPED: {len(result.skipped)} (of {result.testsRun} run, {completed} completed):",
              file=sys.stderr)
        for test, reason in result.skipped:
            print(f"  {test}: {reason}", file=sys.stderr)
    if completed == 0:
        if not result.skipped:
            print("no test ran: a file that tests nothing proves nothing", file=sys.stderr)
            return 1
        return SKIP_RETURN_CODE
    return 0

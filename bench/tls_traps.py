#!/usr/bin/env python3
"""bench/tls_traps: how many TLS uprobe hits (traps) one HTTPS request costs nginx, by counting.

Starts nginx (HTTPS, one worker, the setup of bench/overhead.py), the agent on its defaults
(every process traced), and a Go HTTPS client (tests/e2e/peers/go_https_client.go: Go's
crypto/tls has its own probe programs, so the client adds nothing to the OpenSSL programs'
counts) that sends N keep-alive requests on one connection. The kernel counts every run of each
program (BPF_ENABLE_STATS, held for the duration of the script); the script prints, per OpenSSL
program of the agent's capture object, runs and ns inside the program per request. Each uprobe
run is one trap of the traced process (an int3, or a return through the uretprobe trampoline).

Counts do not depend on the machine's load, but any other process on the machine that calls
libssl during the window adds runs: the script measures an idle window of the same length first
and subtracts it (printed as "idle").

Run as root from the repository root:  sudo python3 bench/tls_traps.py [--requests 500]
"""

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import overhead  # noqa: E402  (nginx setup, free_port)

PROGRAMS = ["tl_ssl_write_enter", "tl_ssl_write_ex_enter", "tl_ssl_read_enter",
            "tl_ssl_read_ex_enter", "tl_ssl_return", "tl_ssl_session"]
# The socket syscall programs nginx's keep-alive requests run (shown too: they carry the
# ciphertext under the OpenSSL calls, or the plaintext with --scheme http). Their counts include
# every other process's reads and writes on the machine (the idle column).
SYSCALL_PROGRAMS = ["tl_exit_read", "tl_enter_write", "tl_exit_write", "tl_exit_recvfrom",
                    "tl_enter_writev", "tl_exit_writev"]


def enable_stats():
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): counting stays on while the returned fd is open."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = ctypes.create_string_buffer(16)  # union bpf_attr { __u32 type; } enable_stats
    fd = libc.syscall(321, 32, attr, 16)  # __NR_bpf, BPF_ENABLE_STATS
    if fd < 0:
        raise OSError(ctypes.get_errno(), "BPF_ENABLE_STATS")
    return fd


def prog_ids(pid):
    """Ids of the BPF programs process `pid` holds an fd of (its /proc/<pid>/fdinfo)."""
    ids = set()
    fdinfo = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(fdinfo):
        try:
            with open(os.path.join(fdinfo, fd)) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        ids.add(int(line.split()[1]))
        except OSError:
            pass
    return ids


def counters(agent_pid):
    """run_cnt and run_time_ns of the agent's OpenSSL programs (other agents on the machine
    load programs of the same names)."""
    mine_ids = prog_ids(agent_pid)
    out = subprocess.run(["bpftool", "-j", "prog", "show"], check=True, capture_output=True,
                         text=True).stdout
    mine = {}
    for p in json.loads(out):
        if p.get("name") in PROGRAMS + SYSCALL_PROGRAMS and p.get("id") in mine_ids:
            mine[p["name"]] = (p.get("run_cnt", 0), p.get("run_time_ns", 0))
    return mine


def delta(a, b):
    return {k: (b[k][0] - a.get(k, (0, 0))[0], b[k][1] - a.get(k, (0, 0))[1]) for k in b}


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agent", default=os.path.join(REPO, "build", "threadline"))
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--agent-args", default="--output none")
    p.add_argument("--client", choices=["go", "curl"], default="go",
                   help="curl: a client on the same libssl, whose own probe hits add to the counts "
                   "(as wrk's do in bench/overhead.py)")
    p.add_argument("--scheme", choices=["https", "http"], default="https",
                   help="http: the same requests in plaintext, for comparison")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="tl-traps-") as tmp:
        client = os.path.join(tmp, "go_https_client")
        subprocess.run(["go", "build", "-o", client,
                        os.path.join(REPO, "tests", "e2e", "peers", "go_https_client.go")],
                       check=True, env=dict(os.environ, GOCACHE=os.path.join(tmp, "gocache"),
                                            GOFLAGS="-mod=mod", GO111MODULE="off"))
        ports = {"http": overhead.free_port(), "https": overhead.free_port()}
        server = overhead.Server("nginx", tmp, ports, 0)
        stats_fd = enable_stats()
        agent = subprocess.Popen([args.agent] + args.agent_args.split(),
                                 stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "agent.log"), "w"))
        try:
            deadline = time.time() + 30
            # The return program is held once the attacher has put the uprobes on libssl.
            while time.time() < deadline and not {"tl_ssl_return", "tl_ssl_session"} & set(counters(agent.pid)):
                time.sleep(0.2)
            time.sleep(2)  # the agent's start-up scan is done
            urls = [f"{args.scheme}://127.0.0.1:{ports[args.scheme]}/"] * args.requests
            # The idle window: as long as the client's run, nothing sent.
            t0 = time.time()
            before = counters(agent.pid)
            if args.client == "go":
                subprocess.run([client] + urls, check=True, stdout=subprocess.DEVNULL)
            else:  # one connection for all (curl reuses it for URLs of one host)
                subprocess.run(["curl", "-sk", "-o", "/dev/null"] + urls, check=True)
            busy = delta(before, counters(agent.pid))
            took = time.time() - t0
            before = counters(agent.pid)
            time.sleep(took)
            idle = delta(before, counters(agent.pid))
        finally:
            agent.terminate()
            agent.wait(timeout=30)
            os.close(stats_fd)
            server.stop()
        n = args.requests
        total = 0.0
        print(f"{n} keep-alive {args.scheme} requests to nginx ({args.client} client), {took:.2f} s; per request:")
        print(f"{'program':24} {'runs':>8} {'ns inside':>10} {'idle runs':>10}")
        for name in PROGRAMS + SYSCALL_PROGRAMS:
            if name not in busy:
                continue
            runs = (busy[name][0] - idle.get(name, (0, 0))[0]) / n
            ns = busy[name][1] / max(busy[name][0], 1)
            if name in PROGRAMS:
                total += runs
            print(f"{name:24} {runs:8.2f} {ns:10.0f} {idle.get(name, (0, 0))[0]:10d}")
            print(f"RESULT {{\"bench\":\"tls_traps\",\"program\":\"{name}\",\"runs_per_request\":{runs:.3f},"
                  f"\"ns_per_run\":{ns:.0f}}}")
        print(f"{'all uprobe runs':24} {total:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Simulated hosts for e2e tests: network namespaces joined by veth pairs and programs started
in them.

Used by test_inject.py and test_tcp_option.py. Names carry a prefix and the test process's pid,
addresses a per-test second octet, so tests running side by side never meet; everything is
removed at cleanup whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import unittest

from e2e_util import PeerProcess, deadline_loop, require_tool


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed (rc {p.returncode}): {p.stderr.strip()}")
    return p


class Namespaces:
    """Three network namespaces a - b - c joined by two veth pairs, like three hosts on two
    links: a=10.<o>.<n>.1 <-> b=10.<o>.<n>.2 and b=10.<o>.<n+1>.1 <-> c=10.<o>.<n+1>.2 (o: the
    caller's octet). Names are <prefix>-<pid>-<x>; removed at cleanup whatever happened."""

    def __init__(self, test: unittest.TestCase, prefix: str = "tlinj", octet: int = 77):
        require_tool(test, "ip", hint="iproute2, for network namespaces")
        tag = f"{os.getpid() % 100000}"
        self.names = {x: f"{prefix}-{tag}-{x}" for x in "abc"}
        net = 1 + os.getpid() % 120
        self.addr = {"a": f"10.{octet}.{2 * net}.1", "b_left": f"10.{octet}.{2 * net}.2",
                     "b_right": f"10.{octet}.{2 * net + 1}.1", "c": f"10.{octet}.{2 * net + 1}.2"}
        test.addCleanup(self.remove)
        for ns in self.names.values():
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        self._link(f"{prefix}{tag}ab", f"{prefix}{tag}ba", "a", "b", self.addr["a"], self.addr["b_left"])
        self._link(f"{prefix}{tag}bc", f"{prefix}{tag}cb", "b", "c", self.addr["b_right"], self.addr["c"])

    def _link(self, left: str, right: str, x: str, y: str, ax: str, ay: str) -> None:
        run("ip", "link", "add", left, "type", "veth", "peer", "name", right)
        run("ip", "link", "set", left, "netns", self.names[x])
        run("ip", "link", "set", right, "netns", self.names[y])
        run("ip", "-n", self.names[x], "addr", "add", f"{ax}/24", "dev", left)
        run("ip", "-n", self.names[y], "addr", "add", f"{ay}/24", "dev", right)
        run("ip", "-n", self.names[x], "link", "set", left, "up")
        run("ip", "-n", self.names[y], "link", "set", right, "up")

    def exec_argv(self, x: str, argv: list[str]) -> list[str]:
        """argv run in namespace x (`ip netns exec` execs it: the pid is the program's)."""
        return ["ip", "netns", "exec", self.names[x], *argv]

    def enter_argv(self, x: str) -> list[str]:
        """A prefix that runs a program in namespace x's network only (nsenter --net), keeping
        the host's /sys mounts (`ip netns exec` remounts /sys, hiding the cgroup v2 hierarchy
        and tracefs an agent needs)."""
        return ["nsenter", f"--net=/run/netns/{self.names[x]}", "--"]

    def remove(self) -> None:
        for ns in self.names.values():
            run("ip", "netns", "del", ns, check=False)  # takes its veth ends with it


def wait_listening(peer: PeerProcess, timeout: float = 15.0) -> None:
    for _ in deadline_loop(timeout, 0.05):
        if any('"listening"' in l for l in peer.stdout_lines):
            return
        if peer.proc.poll() is not None:
            break
    raise AssertionError(f"peer did not start listening\n{peer.describe()}")

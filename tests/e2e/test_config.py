"""The agent's configuration as a user meets it: --print-config (no privileges needed), a YAML
file (--config or THREADLINE_CONFIG) whose values really reach the kernel capture, the one
precedence (flags > environment > file > defaults) in the real binary, and errors for unknown
keys and bad values before anything is loaded."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import unittest

from e2e_util import (Agent, HttpServer, agent_bin, curl, format_events, main, require_agent_binary,
                      require_root)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "THREADLINE_CONFIG", "THREADLINE_SELECTION", "THREADLINE_LIMITS",
                                "THREADLINE_EXPORTERS", "KUBERNETES_", "NODE_NAME"))}
    env.update(extra)
    return env


def write_config(test: unittest.TestCase, text: str) -> str:
    d = tempfile.mkdtemp(prefix="tl-e2e-config-")
    test.addCleanup(shutil.rmtree, d, True)
    path = os.path.join(d, "config.yaml")
    with open(path, "w") as f:
        f.write(text)
    os.chmod(d, 0o755)
    os.chmod(path, 0o644)
    return path


class PrintConfigTest(unittest.TestCase):
    def setUp(self):
        require_agent_binary(self)

    def test_print_config_unprivileged_with_sources(self):
        """As user nobody: exits 0 and shows each value with where it came from."""
        path = write_config(self, "limits:\n  capture_bytes: 1024\n  ring_buffer_mb: 8\nlog_level: warn\n")
        argv = [agent_bin(), "--print-config", "--config", path, "--capture-bytes", "2048"]
        if os.geteuid() == 0 and shutil.which("setpriv"):
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", *argv]
        # The binary must be reachable for nobody: every directory above the build tree searchable.
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           env=clean_env(THREADLINE_LIMITS_RING_BUFFER_MB="32"))
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn('  capture_bytes: "2048"  # flag --capture-bytes\n', out)
        self.assertIn('  ring_buffer_mb: "32"  # env THREADLINE_LIMITS_RING_BUFFER_MB\n', out)
        self.assertIn(f'log_level: "warn"  # file {path}:4\n', out)
        self.assertIn('  max_connections: "65536"  # default\n', out)
        self.assertRegex(out, r"(?m)^# Precedence: flags > environment")
        # Every line is a comment, a section or key: "value"  # source.
        for line in out.splitlines():
            self.assertRegex(line, r'^(#.*|\s*[a-z_]+:|\s*[a-z_]+: (".*"|\[.*\]|\{.*\})  # .+)$', line)

    def test_unknown_key_and_bad_value_fail_before_loading(self):
        for text, expected in (("selection:\n  exes: [nginx]\n", "unknown key selection.exes (did you mean selection.exe?)"),
                               ("limits:\n  capture_bytes: 3000\n", "limits.capture_bytes: \"3000\" is not a power of two"),
                               ("tls: maybe\n", "tls: \"maybe\" is not on or off")):
            path = write_config(self, text)
            r = subprocess.run([agent_bin(), "--config", path], capture_output=True, text=True, timeout=30,
                               env=clean_env())
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn(expected, r.stderr)
            self.assertIn(path, r.stderr)
            self.assertNotIn("threadline ready", r.stderr)


class ConfigFileAppliedTest(unittest.TestCase):
    def setUp(self):
        require_root(self)

    def test_file_values_reach_the_capture_and_flags_win(self):
        """THREADLINE_CONFIG names a file that selects a port and a 64-byte capture; the flag
        --output=events beats the file's output: json."""
        server, other = HttpServer(self), HttpServer(self)
        path = write_config(self, f"exporters:\n  output: json\nselection:\n  ports: [{server.port}]\n"
                                  "limits:\n  capture_bytes: 64\nmetrics:\n  address: off\n")
        agent = Agent(["--output=events"], self, env={"THREADLINE_CONFIG": path})
        self.assertEqual(curl(server.url("/" + "x" * 200)).stdout, "404")
        self.assertEqual(curl(other.url()).stdout, "200")
        def ports_of(evs, conn):
            o = next((e for e in evs if e.kind == "OPEN" and e.get("conn") == conn), None)
            return (o.local_port(), o.remote_port()) if o else ()

        ok = agent.wait_for(lambda evs: any(e.kind == "DATA" and server.port in ports_of(evs, e.get("conn"))
                                            for e in evs))
        self.assertTrue(ok, agent.describe())
        self.assertEqual(agent.stop(), 0, agent.describe())
        evs = agent.events()
        data = [e for e in evs if e.kind == "DATA"]
        self.assertTrue(data, agent.describe())
        for e in data:
            self.assertLessEqual(e.int("captured"), 64, e.raw)
            self.assertIn(server.port, ports_of(evs, e.get("conn")), e.raw)
        big = [e for e in data if e.int("size") > 64]
        self.assertTrue(big, "the 200-byte request should be truncated to 64:\n" + format_events(data))
        self.assertFalse(any(re.match(r"^\{", line) for line in agent.stdout_lines), "json output leaked")
        self.assertFalse(any("metrics endpoint" in line for line in agent.stderr_lines), "metrics: off ignored")


if __name__ == "__main__":
    main()

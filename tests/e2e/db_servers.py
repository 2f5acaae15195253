"""Real database servers from Debian for the e2e tests, each in a temporary directory of its own
on a free port of 127.0.0.1 (parallel-safe), stopped and removed at the test's cleanup.

    pg = Postgres(test)                 # PostgreSQL 15: initdb + pg_ctl as user postgres
    pg = Postgres(test, tls=True)       # ... with ssl=on and a self-signed certificate
    r = Redis(test)                     # redis-server --port N --save ''
    m = MariaDb(test)                   # mariadb-install-db + mariadbd, user root without password

A missing server fails the test under CI=true and skips it elsewhere (e2e_util.give_up).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import unittest

from e2e_util import LOOPBACK, PeerProcess, free_port, give_up, require_tool, wait_accepting

# Clients with the Debian Python modules (python3-psycopg2, python3-redis): Debian's python3,
# whatever python3 runs the tests.
DEBIAN_PYTHON = "/usr/bin/python3"


def require_debian_python(test: unittest.TestCase, *modules: str) -> str:
    """The Python that has the Debian client modules; give_up when one is missing."""
    if not os.path.exists(DEBIAN_PYTHON):
        give_up(test, f"{DEBIAN_PYTHON} not found (scripts/deps.sh --with-test-peers)")
    for m in modules:
        p = subprocess.run([DEBIAN_PYTHON, "-c", f"import {m}"], capture_output=True, timeout=30)
        if p.returncode != 0:
            give_up(test, f"python module {m} missing (Debian python3-{m}; scripts/deps.sh --with-test-peers)")
    return DEBIAN_PYTHON


def self_signed_certificate(test: unittest.TestCase, directory: str, owner=None) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key (0600), in `directory`, owned by `owner` (a pwd
    entry) when given."""
    require_tool(test, "openssl")
    cert, key = os.path.join(directory, "server.crt"), os.path.join(directory, "server.key")
    _run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
          "-days", "1", "-subj", "/CN=127.0.0.1"])
    if owner is not None:
        for f in (cert, key):
            os.chown(f, owner.pw_uid, owner.pw_gid)
    os.chmod(key, 0o600)
    return cert, key


def _run(cmd: list[str], timeout: float = 60.0, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed (rc {p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return p


class Postgres:
    """PostgreSQL 15 as user postgres, trust authentication, database `postgres`."""

    def __init__(self, test: unittest.TestCase, tls: bool = False, cleanup=None):
        """`cleanup` registers the stop (default: test.addCleanup)."""
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not bins:
            give_up(test, "PostgreSQL server not installed (Debian postgresql; scripts/deps.sh --with-test-peers)")
        require_tool(test, "psql", "runuser")
        self.bin = os.path.dirname(bins[-1])
        self.port = free_port()
        self.host = LOOPBACK
        self.dir = tempfile.mkdtemp(prefix="tl-e2e-pg-")
        self.data = os.path.join(self.dir, "data")
        self._started = False
        (cleanup or test.addCleanup)(self.stop)
        user = pwd.getpwnam("postgres")
        os.chown(self.dir, user.pw_uid, user.pw_gid)
        _run(["runuser", "-u", "postgres", "--", f"{self.bin}/initdb", "-D", self.data, "-A", "trust",
              "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"])
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses={self.host} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        if tls:
            cert, key = self_signed_certificate(test, self.dir, user)
            options += f" -c ssl=on -c ssl_cert_file={cert} -c ssl_key_file={key}"
        _run(["runuser", "-u", "postgres", "--", f"{self.bin}/pg_ctl", "-D", self.data, "-o", options,
              "-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start"], timeout=90)
        self._started = True
        wait_accepting(self.host, self.port)

    def dsn(self, **extra: str) -> str:
        parts = {"host": self.host, "port": str(self.port), "user": "postgres", "dbname": "postgres",
                 "sslmode": "disable", **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def psql(self, *commands: str, sslmode: str = "disable", check: bool = True,
             stdin: str | None = None) -> subprocess.CompletedProcess:
        """psql -c each command, in order, on one connection."""
        argv = ["psql", self.dsn(sslmode=sslmode), "-X", "-q", "-v", "ON_ERROR_STOP=0"]
        for c in commands:
            argv += ["-c", c]
        p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"psql failed (rc {p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def stop(self) -> None:
        if self._started:
            subprocess.run(["runuser", "-u", "postgres", "--", f"{self.bin}/pg_ctl", "-D", self.data,
                            "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
            self._started = False
        shutil.rmtree(self.dir, ignore_errors=True)



class Redis:
    """redis-server 7 without persistence, in a temp dir of its own; TLS on a second port
    (`tls_port`, a self-signed certificate, no client certificates)."""

    def __init__(self, test: unittest.TestCase, cleanup=None):
        require_tool(test, "redis-server", "redis-cli")
        self.host = LOOPBACK
        self.port = free_port()
        self.tls_port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tl-e2e-redis-")
        (cleanup or test.addCleanup)(self.stop)
        cert, key = self_signed_certificate(test, self.dir)
        self.server = PeerProcess(["redis-server", "--port", str(self.port), "--bind", self.host, "--save", "",
                                   "--appendonly", "no", "--dir", self.dir, "--tls-port", str(self.tls_port),
                                   "--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "no"],
                                  port=self.port)

    def cli(self, *args: str, tls: bool = False) -> list[str]:
        """redis-cli's argv for this server (its TLS port when asked)."""
        if tls:
            return ["redis-cli", "-h", self.host, "-p", str(self.tls_port), "--tls", "--insecure", *args]
        return ["redis-cli", "-h", self.host, "-p", str(self.port), *args]

    def stop(self) -> None:
        if getattr(self, "server", None) is not None:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDb:
    """MariaDB 10.11 (mysql-server is not in Debian) as root, user root without a password, no
    binary log, a small buffer pool, in a temp dir of its own; TLS offered (a self-signed
    certificate), taken by clients that ask (`cli(tls=True)`)."""

    def __init__(self, test: unittest.TestCase, cleanup=None):
        require_tool(test, "mariadb-install-db", "mariadbd", "mariadb")
        self.host = LOOPBACK
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tl-e2e-mariadb-")
        self.server = None
        (cleanup or test.addCleanup)(self.stop)
        data = os.path.join(self.dir, "data")
        cert, key = self_signed_certificate(test, self.dir)
        _run(["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}",
              "--auth-root-authentication-method=normal", "--skip-test-db"], timeout=120)
        self.server = PeerProcess(["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
                                   f"--socket={os.path.join(self.dir, 'sock')}", f"--port={self.port}",
                                   f"--bind-address={self.host}", f"--pid-file={os.path.join(self.dir, 'pid')}",
                                   "--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve",
                                   f"--ssl-cert={cert}", f"--ssl-key={key}"],
                                  port=self.port, ready_timeout=60)

    def cli(self, *args: str, tls: bool = False) -> list[str]:
        """The mariadb command line client's argv for this server (TLS only when asked)."""
        ssl = ["--ssl", "--ssl-verify-server-cert=0"] if tls else ["--ssl=0"]
        return ["mariadb", "-h", self.host, "-P", str(self.port), "-u", "root", *ssl, *args]

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

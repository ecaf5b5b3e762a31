"""A throwaway PostgreSQL server for tests: initdb in a temp dir, postgres on a free loopback port.

Uses the server binaries on PATH or Debian's /usr/lib/postgresql/<version>/bin. PostgreSQL refuses
to run as root, so as root it runs as the `postgres` (or `nobody`) user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from serve_apps.embedded.local_cluster import free_port


def server_bin_dir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _unprivileged_user() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class TemporaryPostgres:
    def __init__(self, bin_dir: Path):
        # Directly under /tmp: the server's user must be able to reach it (pytest's tmp dirs are 0700 root).
        self.root, self.bin = Path(tempfile.mkdtemp(prefix="tsfm-pg-")), bin_dir
        self.port = free_port()
        self.user = _unprivileged_user()
        self.proc: subprocess.Popen | None = None

    def _cmd(self, *args: str) -> list[str]:
        return (["runuser", "-u", self.user, "--"] if self.user else []) + list(args)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/tsfm"

    def start(self, timeout: float = 60) -> "TemporaryPostgres":
        if self.user:
            shutil.chown(self.root, self.user)
        data = self.root / "data"
        subprocess.run(self._cmd(str(self.bin / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                 "-E", "UTF8"), check=True, capture_output=True)
        self.proc = subprocess.Popen(
            self._cmd(str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.root),
                      "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            stdout=open(self.root / "postgres.log", "w"), stderr=subprocess.STDOUT)
        admin = sa.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
                                 isolation_level="AUTOCOMMIT")
        deadline = time.time() + timeout
        while True:
            try:
                with admin.connect() as conn:
                    conn.exec_driver_sql("CREATE DATABASE tsfm")
                break
            except sa.exc.OperationalError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError((self.root / "postgres.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        admin.dispose()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: PostgreSQL's "smart" shutdown
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

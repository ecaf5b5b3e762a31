"""Runs the real server (`python -m serve_apps`, the README command) as a subprocess on a free
port: used by the tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from serve_apps.embedded.local_cluster import free_port, wait_until_serving

REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    def __init__(self, home: Path, env: dict | None = None, num_cpus: int = 2):
        self.num_cpus = num_cpus
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "server.log"
        self.env = {**os.environ, "TSFM_HOME": str(home), "RAY_AUTH_MODE": "disabled",
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> "ServerProcess":
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serve_apps", "--port", str(self.port), "--num-cpus", str(self.num_cpus)],
            cwd=REPO, env=self.env, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_serving(self.url + "/health", self.proc, self.log, timeout, "the server")
        except TimeoutError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

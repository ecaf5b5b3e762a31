"""A local multi-node Ray cluster (head + worker node, separate raylets) and `ray job submit`
of the finetuning entry point onto it, exactly as operators run it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import seasonal_series
from serve_apps.local_server import free_port
from tsfm_core.checkpoint import load_model, read_config
from tsfm_core.datasets import write_series

RAY = str(Path(sys.executable).with_name("ray"))


def _node_ports() -> list[str]:
    # Every port explicit, so this cluster never collides with another Ray instance on the machine.
    return ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port())]


class LocalCluster:
    def __init__(self, tmp: Path):
        self.tmp, self.procs = tmp, []
        self.gcs, self.dashboard = free_port(), free_port()
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
        self.env.pop("RAY_ADDRESS", None)

    def _start(self, args: list[str], log: str) -> None:
        proc = subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args, *_node_ports()],
                                env=self.env, stdout=open(self.tmp / log, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)

    def start(self) -> "LocalCluster":
        # Its own temp dir, so `ray start` does not point other tests' "auto" lookups at this cluster.
        self._start(["--head", "--temp-dir", f"/tmp/tsfm-rc-{self.gcs}", "--port", str(self.gcs), "--num-cpus", "1", "--dashboard-host", "127.0.0.1",
                     "--dashboard-port", str(self.dashboard), "--ray-client-server-port", str(free_port()),
                     "--include-dashboard", "true"], "head.log")
        self._wait(lambda: self._nodes() >= 1, "head")
        self._start(["--address", f"127.0.0.1:{self.gcs}", "--num-cpus", "2", "--resources", '{"worker_node": 1}'],
                    "worker.log")
        self._wait(lambda: self._nodes() >= 2, "worker node")
        return self

    def _nodes(self) -> int:
        import httpx

        try:
            r = httpx.get(f"http://127.0.0.1:{self.dashboard}/nodes?view=summary", timeout=5)
            return len(r.json()["data"]["summary"]) if r.status_code == 200 else 0
        except Exception:
            return 0

    def _wait(self, ready, what: str, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if ready():
                return
            if any(p.poll() is not None for p in self.procs):
                break
            time.sleep(2)
        logs = "\n".join((self.tmp / f).read_text()[-2000:] for f in ("head.log", "worker.log") if (self.tmp / f).exists())
        raise RuntimeError(f"{what} did not come up:\n{logs}")

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("ray-cluster")).start()
    yield c
    c.stop()


def test_ray_job_submit_runs_finetune_on_the_worker_node(cluster, tmp_path):
    data = write_series({f"s{i}": seasonal_series(200, seed=i) for i in range(4)}, tmp_path / "series.parquet")
    out = tmp_path / "job-model"
    proc = subprocess.run(
        [RAY, "job", "submit", "--address", f"http://127.0.0.1:{cluster.dashboard}", "--",
         sys.executable, "-m", "train_jobs.finetune", "--data", str(data), "--output", str(out), "--steps", "6",
         "--depth", "3", "--num-workers", "2", "--checkpoint-every", "3", "--storage-path", str(tmp_path / "runs")],
        env=cluster.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "succeeded" in proc.stdout.lower()
    config = read_config(out)
    assert config["finetune"]["depth"] == 3 and config["training"]["num_workers"] == 2
    assert [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 7))
    load_model(out)

"""A local multi-node Ray cluster on one machine: the embedded head (local_cluster.LocalCluster)
plus worker nodes with raylets of their own, as `cluster/start_local.sh` builds it but on free ports.
The tests use it for `ray job submit` onto a worker node, the autoscaling benchmark to show Serve
replicas spreading over nodes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from serve_apps.embedded.local_cluster import RAY, LocalCluster, cluster_env, free_port, node_port_args


class MultiNodeCluster:
    def __init__(self, tmp: Path, workers: int = 1, cpus_per_worker: int = 2, head_cpus: int = 1):
        self.head = LocalCluster(f"/tmp/tsfm-rc-{free_port()}", num_cpus=head_cpus, log_path=str(tmp / "head.log"))
        self.tmp, self.n_workers, self.cpus_per_worker = tmp, workers, cpus_per_worker
        self.workers: list[subprocess.Popen] = []
        self.env = cluster_env(self.head.dashboard_url)

    @property
    def dashboard(self) -> str:
        return self.head.dashboard_url

    def start(self, timeout: float = 180) -> "MultiNodeCluster":
        self.head.start()
        for i in range(self.n_workers):
            log = self.tmp / f"worker-{i}.log"
            self.workers.append(subprocess.Popen(
                [RAY, "start", "--block", "--disable-usage-stats", "--address", self.head.address, "--num-cpus",
                 str(self.cpus_per_worker), "--resources", f'{{"worker_node": 1, "worker_node_{i}": 1}}',
                 *node_port_args()],
                env=self.env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.time() + timeout
        while self.nodes() < 1 + self.n_workers:
            dead = [w for w in self.workers if w.poll() is not None]
            if time.time() > deadline or dead:
                logs = "\n".join((self.tmp / f"worker-{i}.log").read_text()[-2000:] for i in range(self.n_workers))
                self.stop()
                raise RuntimeError(f"worker nodes did not join:\n{logs}")
            time.sleep(2)
        return self

    def nodes(self) -> int:
        try:
            r = httpx.get(f"{self.dashboard}/nodes?view=summary", timeout=5)
            return len(r.json()["data"]["summary"]) if r.status_code == 200 else 0
        except (httpx.HTTPError, ValueError, KeyError):
            return 0

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
                worker.wait(timeout=30)
        self.head.stop()

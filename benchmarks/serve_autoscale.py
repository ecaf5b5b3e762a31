"""Serve autoscaling shown on a local multi-node cluster: replicas rise under load and fall after it.

    python benchmarks/serve_autoscale.py            # 2 worker nodes, ~4 minutes, writes JSON

Starts a head and two worker nodes (serve_apps.embedded.multi_node, the same layout as
cluster/start_local.sh but on free ports), deploys the app with short downscale delays, then
1. small requests (W1) from 128 concurrent clients: the Ingress (target 64 ongoing) scales out;
2. bulk requests (300 series x 512 points, past TSFM_BULK_POINTS) from 8 clients: the ModelServer
   (target 2 ongoing) scales out;
3. idle: both scale back to their minimum.
Replica counts (serve.status()) are sampled every second. Results: benchmarks/results/serve_autoscale.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import ray
from ray import serve
from serve_load import WORKLOADS, run_level, tsfm_body  # the script beside this one

from serve_apps.app import build_app
from serve_apps.embedded.local_cluster import free_port
from serve_apps.embedded.multi_node import MultiNodeCluster
from serve_apps.replica.metrics import replica_counts


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[dict] = []
        self.phase = "warm-up"
        self.stopped = threading.Event()

    def run(self) -> None:
        start = time.time()
        while not self.stopped.is_set():
            self.samples.append({"t": round(time.time() - start, 1), "phase": self.phase, **replica_counts()})
            time.sleep(1)


def peak(samples: list[dict], phase: str, deployment: str) -> int:
    return max((s.get(deployment, 0) for s in samples if s["phase"] == phase), default=0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="worker nodes beside the head")
    p.add_argument("--load-seconds", type=float, default=45)
    p.add_argument("--idle-seconds", type=float, default=75)
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/serve_autoscale.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = MultiNodeCluster(Path(tmp), workers=args.workers, cpus_per_worker=2).start()
        sampler = Sampler()
        try:
            ray.init(address=cluster.head.address)
            port = free_port()
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            serve.run(build_app({"home": tmp, "ingress_max_replicas": 3, "max_replicas": 3,
                                 "ingress_downscale_delay_s": 15, "model_server_downscale_delay_s": 15}),
                      name="tsfm", route_prefix="/")
            url = f"http://127.0.0.1:{port}"
            small, bulk = tsfm_body(**WORKLOADS["W1"]), tsfm_body(series=300, context=512, horizon=24)
            httpx.post(url + "/v1/forecast", json=small, timeout=120).raise_for_status()
            sampler.start()
            sampler.phase = "small load"
            small_row = asyncio.run(run_level(url, "/v1/forecast", small, 128, 10**6, args.load_seconds))
            sampler.phase = "bulk load"
            bulk_row = asyncio.run(run_level(url, "/v1/forecast", bulk, 8, 10**6, args.load_seconds, timeout_s=120))
            sampler.phase = "idle"
            time.sleep(args.idle_seconds)
        finally:
            sampler.stopped.set()
            serve.shutdown()
            ray.shutdown()
            cluster.stop()
    samples = sampler.samples
    report = {
        "cluster": {"nodes": 1 + args.workers, "worker_cpus": 2, "head_cpus": 1},
        "small_load": small_row, "bulk_load": bulk_row,
        "ingress": {"peak_small_load": peak(samples, "small load", "Ingress"),
                    "end_of_idle": samples[-1].get("Ingress") if samples else None},
        "model_server": {"peak_bulk_load": peak(samples, "bulk load", "ModelServer"),
                         "end_of_idle": samples[-1].get("ModelServer") if samples else None},
        "samples": samples,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "samples"}, indent=2))


if __name__ == "__main__":
    main()

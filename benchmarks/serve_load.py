"""Serving latency and throughput of /v1/forecast on a real server, with and without request batching.

    python benchmarks/serve_load.py                      # starts its own servers, writes JSON
    python benchmarks/serve_load.py --url http://host:8000 --concurrency 32

For each configuration: sequential latency (p50/p95) of one-series requests, then throughput and
latency at a fixed concurrency. Results go to benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import platform
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from serve_apps.embedded.local_server import ServerProcess


def _body(rng: np.random.Generator, context: int, horizon: int, n_series: int) -> dict:
    t = np.arange(context)
    inputs = [{"target": (50 + 10 * np.sin(2 * np.pi * t / 24 + i) + rng.normal(0, 1, context)).round(3)[:, None].tolist()}
              for i in range(n_series)]
    return {"model": "tsfm-base", "inputs": inputs,
            "parameters": {"prediction_length": horizon, "quantile_levels": [0.1, 0.5, 0.9]}}


def _percentiles(latencies: list[float]) -> dict:
    ms = np.asarray(latencies) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "mean_ms": round(float(ms.mean()), 1)}


def measure(url: str, requests: int, concurrency: int, context: int, horizon: int, n_series: int) -> dict:
    rng = np.random.default_rng(0)
    body = _body(rng, context, horizon, n_series)
    with httpx.Client(base_url=url, timeout=120) as client:
        for _ in range(3):  # warm-up: model load, first batch
            client.post("/v1/forecast", json=body).raise_for_status()

        def one(_: int) -> float:
            start = time.perf_counter()
            client.post("/v1/forecast", json=body).raise_for_status()
            return time.perf_counter() - start

        sequential = [one(i) for i in range(min(requests, 50))]
        stats_before = client.get("/v1/stats").json()
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            concurrent_lat = list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - start
        stats_after = client.get("/v1/stats").json()
    batches = stats_after["batches_run"] - stats_before["batches_run"]
    return {
        "sequential": _percentiles(sequential),
        "concurrent": {**_percentiles(concurrent_lat), "concurrency": concurrency, "requests": requests,
                       "requests_per_s": round(requests / elapsed, 1),
                       "series_per_s": round(requests * n_series / elapsed, 1),
                       "mean_requests_per_model_pass": round(requests / max(batches, 1), 2)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="benchmark a running server instead of starting ones")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--horizon", type=int, default=24)
    p.add_argument("--series-per-request", type=int, default=1)
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = p.parse_args()
    shape = dict(requests=args.requests, concurrency=args.concurrency, context=args.context,
                 horizon=args.horizon, n_series=args.series_per_request)
    report = {"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
              "workload": shape, "results": {}}
    if args.url:
        report["results"]["server"] = measure(args.url, **shape)
    else:
        for label, batch in (("batching_off", "1"), ("batching_on", "32")):
            with tempfile.TemporaryDirectory() as home:
                server = ServerProcess(Path(home), env={"TSFM_MAX_BATCH_SIZE": batch, "TSFM_MAX_REPLICAS": "1"}).start()
                try:
                    report["results"][label] = measure(server.url, **shape)
                finally:
                    server.stop()
            print(label, json.dumps(report["results"][label]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

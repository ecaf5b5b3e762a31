"""Serving throughput and latency under load: the real server (Ray Serve) next to a bare FastAPI
process running the same app and model code (benchmarks/bare_server.py); the ratio is the figure.

    python benchmarks/serve_load.py                       # both servers, every workload, writes JSON
    python benchmarks/serve_load.py --quick               # c1/c16/c64 only, fewer requests
    python benchmarks/serve_load.py --url http://host:8000 --targets serve
    python benchmarks/serve_load.py --targets serve,serve_bulk_inline --workloads W1 --levels 16 --bulk-series 2000
        # the HTTP bulk lane on and off (TSFM_BULK_BODY_BYTES=0), mixed run included

Workloads: W1 = 1 series x 256 points, h=24, 3 quantiles; W2 = 16 series x 512 points, h=64. Each
runs on /v1/forecast (TSFM.ai) and /v2/forecast (Nixtla) at concurrency 1/16/64/256 with an async
client (a bounded number of requests and seconds per level), recording req/s, p50/p95/p99, status
codes and the Serve replica counts. A mixed run measures W1 at c16 while bulk requests (10^4
series) are in flight. Results: benchmarks/results/serve_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import httpx
import numpy as np

from serve_apps.embedded.local_cluster import free_port, wait_until_serving
from serve_apps.embedded.local_server import REPO, ServerProcess

WORKLOADS = {"W1": dict(series=1, context=256, horizon=24), "W2": dict(series=16, context=512, horizon=64)}


def tsfm_body(series: int, context: int, horizon: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(context)
    inputs = [{"target": (50 + 10 * np.sin(2 * np.pi * t / 24 + i) + rng.normal(0, 1, context)).round(3)[:, None].tolist()}
              for i in range(series)]
    return {"model": "tsfm-base", "inputs": inputs,
            "parameters": {"prediction_length": horizon, "quantile_levels": [0.1, 0.5, 0.9]}}


def nixtla_body(series: int, context: int, horizon: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    t = np.arange(context)
    y = np.concatenate([50 + 10 * np.sin(2 * np.pi * t / 24 + i) + rng.normal(0, 1, context) for i in range(series)])
    return {"series": {"y": y.round(3).tolist(), "sizes": [context] * series}, "model": "timegpt-1", "h": horizon,
            "freq": "h", "level": [80]}


BODIES = {"/v1/forecast": tsfm_body, "/v2/forecast": nixtla_body}
# The real server's variants: Ray Serve's Python proxy (the default), and its HAProxy ingress; the
# *_bulk_inline ones parse big bodies in the ingress instead of handing them to the ModelServer.
SERVE_TARGETS = {"serve": {"TSFM_INGRESS_MAX_REPLICAS": "2"},
                 "serve_haproxy": {"TSFM_INGRESS_MAX_REPLICAS": "2", "TSFM_SERVE_INGRESS": "haproxy"}}
SERVE_TARGETS.update({f"{name}_bulk_inline": {**env, "TSFM_BULK_BODY_BYTES": "0"} for name, env in list(SERVE_TARGETS.items())})


def _percentile_ms(latencies: list[float], q: float) -> float | None:
    return round(float(np.percentile(np.asarray(latencies) * 1000, q)), 1) if latencies else None


async def run_level(url: str, path: str, body: dict, concurrency: int, requests: int, max_seconds: float,
                    timeout_s: float = 60) -> dict:
    """`concurrency` clients send `body` until `requests` were sent or `max_seconds` passed.

    The load generator is aiohttp, not httpx: httpx's connection pool cost the client 5-8 ms of CPU
    per request at 64 connections (0.2 ms with aiohttp), which on a 2-core machine took that CPU
    from the server under test and made throughput fall with concurrency on every server."""
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    codes: Counter = Counter()
    sent = 0
    deadline = time.perf_counter() + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                     headers={"content-type": "application/json"}) as client:
        async def worker() -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                start = time.perf_counter()
                try:
                    async with client.post(path, data=payload) as response:
                        await response.read()
                        status = response.status
                except asyncio.TimeoutError:
                    status = "timeout"
                except aiohttp.ClientError as exc:
                    status = type(exc).__name__
                codes[status] += 1
                if status == 200:
                    latencies.append(time.perf_counter() - start)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": sum(codes.values()), "seconds": round(elapsed, 2),
            "ok_per_s": round(codes[200] / elapsed, 1), "p50_ms": _percentile_ms(latencies, 50),
            "p95_ms": _percentile_ms(latencies, 95), "p99_ms": _percentile_ms(latencies, 99),
            "status": {str(k): v for k, v in sorted(codes.items(), key=str)}}


def stats(url: str) -> dict:
    try:
        return httpx.get(url + "/v1/stats", timeout=30).json()
    except (httpx.HTTPError, ValueError):
        return {}


def measure(urls: dict[str, str], levels: list[int], requests: int, max_seconds: float,
            workloads: list[str]) -> dict:
    """{target: {"<path> <workload>": [row per level]}}. Targets take turns level by level, so
    a change in the machine's load during the run (it is shared) hits every target alike."""
    out: dict = {target: {} for target in urls}
    for path, make in BODIES.items():
        for name in workloads:
            body = make(**WORKLOADS[name])
            for url in urls.values():
                httpx.post(url + path, json=body, timeout=120).raise_for_status()  # warm-up: model load
            for c in levels:
                for target, url in urls.items():
                    before = stats(url)
                    row = asyncio.run(run_level(url, path, body, c, requests, max_seconds))
                    after = stats(url)
                    passes = after.get("batches_run", 0) - before.get("batches_run", 0)
                    batched = after.get("requests_batched", 0) - before.get("requests_batched", 0)
                    row["requests_per_model_pass"] = round(batched / passes, 2) if passes else None
                    row["replicas"] = after.get("replicas")
                    out[target].setdefault(f"{path} {name}", []).append(row)
                    print(target, path, name, json.dumps(row), flush=True)
    return out


def mixed(url: str, requests: int, max_seconds: float, bulk_series: int) -> dict:
    """W1 at c16 alone, then with bulk requests in flight the whole time."""
    small = tsfm_body(**WORKLOADS["W1"])
    bulk = tsfm_body(series=bulk_series, context=256, horizon=24)
    alone = asyncio.run(run_level(url, "/v1/forecast", small, 16, requests, max_seconds))

    async def together() -> tuple[dict, dict]:
        bulk_task = asyncio.ensure_future(run_level(url, "/v1/forecast", bulk, 2, 10_000, max_seconds, timeout_s=300))
        await asyncio.sleep(1.0)  # let the bulk requests get going
        small_row = await run_level(url, "/v1/forecast", small, 16, requests, max_seconds)
        return small_row, await bulk_task
    with_bulk, bulk_row = asyncio.run(together())
    ratio = (with_bulk["p95_ms"] / alone["p95_ms"]) if alone["p95_ms"] and with_bulk["p95_ms"] else None
    return {"W1_c16_alone": alone, "W1_c16_with_bulk": with_bulk, "bulk": bulk_row, "bulk_series": bulk_series,
            "p95_ratio": round(ratio, 2) if ratio else None}


class BareServer:
    """benchmarks/bare_server.py as a subprocess on a free port."""

    def __init__(self, home: Path):
        self.home, self.port = home, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "BareServer":
        log = self.home / "bare.log"
        self.proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "bare_server.py"), "--port",
                                      str(self.port), "--home", str(self.home)], cwd=REPO,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)
        wait_until_serving(self.url + "/health", self.proc, log, 120, "the bare server")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def inprocess(levels: list[int], workloads: list[str], seconds: float, device: str) -> dict:
    """The ceiling: c concurrent requests as one `forecast_many` call in this process (no HTTP, no
    JSON), the same model and device; one torch thread on a CPU, as in a Serve replica."""
    import torch

    from tsfm_core.checkpoint import load_model
    from tsfm_core.predict import Forecaster, ForecastRequest
    from tsfm_core.series import Series
    torch.set_num_threads(1)
    forecaster = Forecaster(load_model(device=device).eval(), device=device)
    out = {}
    for name in workloads:
        shape = WORKLOADS[name]
        t = np.arange(shape["context"])
        rows = []
        for c in levels:
            requests = [ForecastRequest([Series(values=(50 + 10 * np.sin(2 * np.pi * t / 24 + i + k))[:, None]
                                                .astype(np.float32)) for k in range(shape["series"])],
                                        shape["horizon"], [0.1, 0.5, 0.9]) for i in range(c)]
            forecaster.forecast_many(requests)  # warm-up
            passes, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                forecaster.forecast_many(requests)
                passes += 1
            elapsed = time.perf_counter() - started
            rows.append({"concurrency": c, "req_per_s": round(passes * c / elapsed, 1),
                         "ms_per_pass": round(1000 * elapsed / passes, 1)})
            print("inprocess", name, json.dumps(rows[-1]), flush=True)
        out[name] = rows
    return out


def ratios(serve: dict, bare: dict) -> dict:
    """Serve / bare for each workload and level: throughput ratio and p50 ratio."""
    out = {}
    for key, rows in serve.items():
        for s, b in zip(rows, bare.get(key, [])):
            label = f"{key} c{s['concurrency']}"
            out[label] = {"throughput_ratio": round(s["ok_per_s"] / b["ok_per_s"], 2) if b["ok_per_s"] else None,
                          "p50_ratio": round(s["p50_ms"] / b["p50_ms"], 2) if s["p50_ms"] and b["p50_ms"] else None}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="benchmark a running server instead of starting one")
    p.add_argument("--targets", default="serve,bare", help="servers to start, any of: bare, serve, serve_haproxy")
    p.add_argument("--levels", default="1,16,64,256")
    p.add_argument("--requests", type=int, default=1500, help="most requests per level")
    p.add_argument("--max-seconds", type=float, default=20, help="most seconds per level")
    p.add_argument("--bulk-series", type=int, default=10_000)
    p.add_argument("--workloads", default="W1,W2", help="which of W1, W2 to run")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the real server's embedded Ray cluster")
    p.add_argument("--inprocess", action="store_true", help="also the in-process batched ceiling")
    p.add_argument("--device", default="cpu", help="device of the in-process ceiling")
    p.add_argument("--quick", action="store_true", help="levels 1,16,64, 300 requests, 8 s a level")
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = p.parse_args()
    if args.quick:
        args.levels, args.requests, args.max_seconds = "1,16,64", 300, 8
    levels = [int(c) for c in args.levels.split(",")]
    workloads = args.workloads.split(",")
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
              "workloads": WORKLOADS, "levels": levels, "requests_per_level": args.requests,
              "max_seconds_per_level": args.max_seconds, "results": {}}
    targets = [t for t in args.targets.split(",") if t]
    if args.url:
        report["results"].update(measure({"serve": args.url}, levels, args.requests, args.max_seconds, workloads))
        report["results"]["mixed"] = mixed(args.url, args.requests, args.max_seconds, args.bulk_series)
    else:
        with contextlib.ExitStack() as stack:
            urls = {}
            for target in targets:  # all up at once: idle servers cost little, and levels interleave
                home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                server = (BareServer(home) if target == "bare" else
                          ServerProcess(home, env=SERVE_TARGETS[target], num_cpus=args.num_cpus))
                stack.callback(server.stop)
                urls[target] = server.start().url
            report["results"].update(measure(urls, levels, args.requests, args.max_seconds, workloads))
            for target in targets:
                if target != "bare":
                    report["results"][f"mixed {target}"] = mixed(urls[target], args.requests, args.max_seconds,
                                                                 args.bulk_series)
        for target in targets:
            if target != "bare" and "bare" in report["results"]:
                report["results"][f"{target}_over_bare"] = ratios(report["results"][target],
                                                                  report["results"]["bare"])
    if args.inprocess:
        report["results"]["inprocess"] = inprocess(levels, workloads, min(args.max_seconds, 5), args.device)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

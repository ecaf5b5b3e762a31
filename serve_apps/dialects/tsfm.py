"""TSFM.ai-style `/v1/forecast`: canonical {model, inputs, parameters} requests and batch requests."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from serve_apps.dialects.numbers import (
    Number,
    OptionalValue,
    PositiveCount,
    Value,
    check_finite_forecast,
    parse_timestamp,
)
from serve_apps.errors import ApiError, invalid
from serve_apps.models.registry import public_id
from tsfm_core.predict import ForecastRequest, ForecastResult
from tsfm_core.series import Series
from tsfm_core.simulate import sample_forecast

MAX_SEED = 2**63 - 1
# With `num_samples`, the model is also asked for these levels: a model without quantile heads of
# its own (statistical, `auto`) then still gives sample_forecast a whole distribution to draw from,
# whatever `quantile_levels` the client wants back.
SAMPLE_LEVELS = {0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99}


class SeriesInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    target: list[list[OptionalValue]]
    start: str | None = None
    past_covariates: dict[str, list[OptionalValue]] = Field(default_factory=dict)
    future_covariates: dict[str, list[Value]] = Field(default_factory=dict)
    static_covariates: dict[str, Value] = Field(default_factory=dict)
    metadata: Any = None

    @field_validator("target", mode="before")
    @classmethod
    def _two_dimensional(cls, v: Any) -> Any:
        if isinstance(v, list) and v and not all(isinstance(row, list) for row in v):
            raise ValueError("target must be 2-D [time][channels]; wrap univariate values as [[v1], [v2], ...]")
        return v

    @field_validator("target")
    @classmethod
    def _rectangular(cls, v: list[list[float | None]]) -> list[list[float | None]]:
        if not v:
            raise ValueError("target must contain at least one time step")
        width = len(v[0])
        if width == 0:
            raise ValueError("target rows must have at least one channel")
        for i, row in enumerate(v):
            if len(row) != width:
                raise ValueError(f"target row {i} has {len(row)} channels, row 0 has {width}")
        if all(x is None for row in v for x in row):
            raise ValueError("target has no observed values (all null)")
        return v


class ForecastParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prediction_length: PositiveCount
    frequency: str | None = None
    quantile_levels: list[Number] = Field(default_factory=lambda: [0.1, 0.5, 0.9], min_length=1, max_length=99)
    num_samples: PositiveCount | None = Field(default=None, le=1000)
    context_length: PositiveCount | None = None
    sensitivity: Number | None = None
    temperature: Number | None = None
    top_p: Number | None = None
    # Our extension (the seed has none): fixes the `samples` drawn; without it they differ per request.
    seed: Annotated[StrictInt, Field(ge=0, le=MAX_SEED)] | None = None

    @field_validator("quantile_levels")
    @classmethod
    def _levels(cls, v: list[float]) -> list[float]:
        if any(not 0 < q < 1 for q in v):
            raise ValueError("quantile levels must be strictly between 0 and 1")
        if any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("quantile levels must be in strictly ascending order")
        return v

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            pd.tseries.frequencies.to_offset(v)
        except (ValueError, TypeError):
            raise ValueError(f"{v!r} is not a pandas offset alias (e.g. D, h, 15min, W, MS, QS)") from None
        return v


class ForecastBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    inputs: list[SeriesInput] = Field(min_length=1)
    parameters: ForecastParameters
    metadata: Any = None


def parse_forecast(body: Any) -> ForecastBody:
    """Raises pydantic.ValidationError (locations relative to the body)."""
    return ForecastBody.model_validate(body)


def _parse_start(value: str, loc: list, periods: int, freq: str | None) -> pd.Timestamp:
    """The series' start; with a frequency, its last forecast step must be a valid date too."""
    try:
        start = parse_timestamp(value)
    except ValueError as exc:
        raise invalid(loc, str(exc)) from None
    if freq is not None:
        try:  # e.g. 2262-04-10 daily: the forecast's dates would run past pandas' last date
            pd.date_range(start, periods=periods, freq=freq)
        except (ValueError, OverflowError):
            raise invalid(loc, f"the forecast's dates from {value!r} at frequency {freq!r} run past "
                               f"{pd.Timestamp.max.date()}, the last supported date") from None
    return start


def _as_array(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def to_request(body: ForecastBody, loc: list, max_points: int, max_horizon: int) -> ForecastRequest:
    """Cross-field checks (each error names its field) and conversion to the internal request."""
    params = body.parameters
    h = params.prediction_length
    if h > max_horizon:
        raise invalid(loc + ["parameters", "prediction_length"], f"must be <= {max_horizon}", "less_than_equal")
    for name in ("temperature", "top_p"):
        if getattr(params, name) is not None:
            raise invalid(loc + ["parameters", name], f"INVALID_ARGUMENT: model {body.model!r} does not support {name}")
    points = sum(len(s.target) * len(s.target[0]) for s in body.inputs)
    if points > max_points:
        raise ApiError(413, loc + ["inputs"], f"request has {points} points; the limit is {max_points}", "too_large")
    series = []
    for i, s in enumerate(body.inputs):
        here = loc + ["inputs", i]
        values = np.array(s.target, dtype=np.float32)  # numpy reads None as NaN (a missing value)
        t = len(values)
        for name, cov in s.past_covariates.items():
            if len(cov) != t:
                raise invalid(here + ["past_covariates", name], f"has {len(cov)} values; target has {t} time steps")
        for name, cov in s.future_covariates.items():
            if len(cov) < h:
                raise invalid(here + ["future_covariates", name], f"has {len(cov)} values; prediction_length is {h}")
            if name not in s.past_covariates:
                raise invalid(here + ["future_covariates", name],
                              "a future covariate needs its history in past_covariates to be used")
        # Covariates known in both the past and the future drive the regression.
        names = [n for n in s.future_covariates if n in s.past_covariates]
        past = np.stack([_as_array(s.past_covariates[n]) for n in names], axis=1) if names else None
        future = np.stack([np.asarray(s.future_covariates[n][:h], dtype=np.float64) for n in names], axis=1) if names else None
        start = (_parse_start(s.start, here + ["start"], t + h, params.frequency)
                 if s.start is not None else None)
        series.append(Series(values=values, start=start, freq=params.frequency, past_covariates=past,
                             future_covariates=future, covariate_names=names,
                             static_covariates=dict(s.static_covariates), metadata=s.metadata))
    levels = sorted(set(params.quantile_levels) | {0.5} | (SAMPLE_LEVELS if params.num_samples else set()))
    return ForecastRequest(series=series, horizon=h, levels=levels, context_length=params.context_length)


def _iso(ts: pd.Timestamp) -> str:
    text = ts.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def sample_seeds(seed: int | None, n_series: int) -> list:
    """One independent stream per series: spawned from the request's `seed` (reproducible), or fresh
    entropy per request when it has none."""
    if seed is None:
        return [None] * n_series
    return np.random.SeedSequence(seed).spawn(n_series)


def build_response(body: ForecastBody, request: ForecastRequest, results: list[ForecastResult],
                   served_by: str, started: float, max_context: int, loc: list | None = None) -> dict:
    """The 200 body; `loc` is where this request sits in the HTTP body (a batch item's place)."""
    params = body.parameters
    wanted = params.quantile_levels
    h = params.prediction_length
    outputs = []
    for i, r in enumerate(results):
        check_finite_forecast(r, (loc or ["body"]) + ["inputs", i])
    seeds = sample_seeds(params.seed, len(results)) if params.num_samples else None
    for k, (s, r) in enumerate(zip(request.series, results)):
        index = {q: i for i, q in enumerate(r.levels)}
        out: dict[str, Any] = {
            "mean": r.median.round(6).tolist(),
            "quantile_predictions": [{"level": q, "values": r.quantiles[index[q]].round(6).tolist()} for q in wanted],
        }
        if params.num_samples:
            # Paths from the whole predictive distribution, coherent over time (tsfm_core.simulate).
            out["samples"] = sample_forecast(r, params.num_samples, seeds[k]).round(6).tolist()
        if r.model is not None:  # who answered this series, where that is not simply `served_model`
            out["served_model"] = r.model
        stamps = s.future_timestamps(h)
        if stamps is not None:
            out["timestamps"] = [_iso(t) for t in stamps]
        if r.truncated_from is not None:
            out["truncated_from"] = r.truncated_from
        out["metadata"] = s.metadata
        outputs.append(out)
    input_points = sum(s.length for s in request.series)
    input_tokens = sum(s.length * s.n_channels + (0 if s.past_covariates is None else s.past_covariates.size)
                       for s in request.series)
    output_tokens = sum(h * s.n_channels * len(wanted) for s in request.series)
    response: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "object": "forecast",
        "created": int(time.time()),
        "model": body.model,
        "served_model": public_id(served_by),
        "provider": "tsfm-cluster",
        "horizon": h,
        "prediction_length": h,
        "quantile_levels": wanted,
        "input_points": input_points,
        "outputs": outputs,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens},
    }
    truncated = [r.truncated_from for r in results if r.truncated_from is not None]
    if truncated:
        response["truncated_from"] = max(truncated)
        response["max_context_length"] = min(params.context_length or max_context, max_context)
    response["latency_ms"] = round((time.time() - started) * 1000, 2)
    if body.metadata is not None:
        response["metadata"] = body.metadata
    return response


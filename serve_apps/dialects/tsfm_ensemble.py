"""TSFM.ai-style ensemble routing: `/v1/forecast/ensemble` and `model: "auto"` on `/v1/forecast`.

The seed names the feature ("ensemble selection performs an internal backtest"; a series too short
to score is a validation error) but not its fields, so these are ours, documented in
docs/api/forecast.md: the canonical forecast body plus

- `models`: candidate catalog or finetuned model names (default: tsfm-base, AutoETS, AutoTheta);
- `scoring_metric`: MASE (default), sMAPE, WQL or MAE, computed on the backtest windows;
- `top_n` (alias `max_models`): how many of the best candidates each series keeps (1 = selection);
- `weighting`: `equal` (default) or `inverse_score` (weighting by the backtest score);
- `n_windows`: backtest windows per series (default 1), `calibrate`: conformal band rescaling.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import AliasChoices, Field, field_validator

from serve_apps.dialects.numbers import PositiveCount
from serve_apps.dialects.tsfm import ForecastBody
from serve_apps.errors import invalid
from serve_apps.models.catalog import (
    AUTO_ID,
    CATALOG,
    ENSEMBLE,
    STATISTICAL,
    ModelEntry,
)
from serve_apps.models.registry import public_id
from serve_apps.replica.calls import EnsembleCall
from tsfm_core.checkpoint import BASE_MODEL_ID
from tsfm_core.ensemble import SCORING_METRICS, EnsembleConfig, EnsembleForecast
from tsfm_core.predict import ForecastRequest

DEFAULT = EnsembleConfig()
_METRICS = {m.lower(): m for m in SCORING_METRICS}
_BY_STATISTICAL = {e.statistical: e for e in CATALOG.entries.values() if e.kind == STATISTICAL}
MAX_CANDIDATES = 8
MAX_WINDOWS = 5


class EnsembleBody(ForecastBody):
    model: str = Field(AUTO_ID, min_length=1)
    models: list[str] | None = Field(None, min_length=1, max_length=MAX_CANDIDATES,
                                     validation_alias=AliasChoices("models", "candidate_models"))
    scoring_metric: str = DEFAULT.scoring_metric
    top_n: PositiveCount | None = Field(None, validation_alias=AliasChoices("top_n", "max_models"))
    weighting: Literal["equal", "inverse_score"] = DEFAULT.weighting
    n_windows: PositiveCount = Field(DEFAULT.n_windows, le=MAX_WINDOWS)
    calibrate: bool = DEFAULT.calibrate

    @field_validator("scoring_metric")
    @classmethod
    def _metric(cls, v: str) -> str:
        if v.lower() not in _METRICS:
            raise ValueError(f"scoring_metric must be one of {', '.join(SCORING_METRICS)}")
        return _METRICS[v.lower()]


def parse_ensemble(payload: Any) -> EnsembleBody:
    """Raises pydantic.ValidationError (locations relative to the body)."""
    return EnsembleBody.model_validate(payload)


def default_candidates() -> list[str]:
    """`auto`'s candidates by their public names: tsfm-base and EnsembleConfig's statistical models."""
    return [BASE_MODEL_ID] + [_BY_STATISTICAL[name].id for name in DEFAULT.statistical]


def candidates(body: EnsembleBody | ForecastBody, resolve, loc: list) -> tuple[tuple[str, ...], tuple[str, ...], dict]:
    """The body's candidates -> (transformer ids to load, statsforecast names, name shown for each).

    `resolve(name, loc)` is the resolver's (ownership and readiness checked). Two names answered by
    the same model (a third-party alias served by tsfm-base) count once."""
    names = getattr(body, "models", None) or default_candidates()
    transformers: list[str] = []
    statistical: list[str] = []
    shown: dict[str, str] = {}  # internal key (model id / statsforecast name) -> public name
    for i, name in enumerate(names):
        here = loc + ["models", i]
        resolved = resolve(name, here)
        if resolved.kind == ENSEMBLE:
            raise invalid(here, f"{name!r} is an ensemble; candidates are single models")
        entry: ModelEntry | None = CATALOG.entries.get(resolved.id)
        if resolved.kind == STATISTICAL:
            key = entry.statistical
            if key not in statistical:
                statistical.append(key)
        else:
            key = resolved.id
            if key not in transformers:
                transformers.append(key)
        shown.setdefault(key, entry.id if entry is not None else public_id(resolved.id))
    return tuple(transformers), tuple(statistical), shown


def check_lengths(body: ForecastBody, config: EnsembleConfig, loc: list) -> None:
    """The seed's validation error: every series must hold `n_windows * prediction_length` points
    to backtest plus `min_context` before them (observed, from its first observed value, within
    `context_length`); a series with future covariates is refused (the ensemble takes none)."""
    h = body.parameters.prediction_length
    need = config.n_windows * h + config.min_context
    cap = body.parameters.context_length
    for i, s in enumerate(body.inputs):
        here = loc + ["inputs", i]
        if s.future_covariates:
            raise invalid(here + ["future_covariates"], "the ensemble does not take covariates; send the target only")
        target = np.array([[np.nan if x is None else x for x in row] for row in s.target], dtype=np.float64)
        if cap is not None:
            target = target[-cap:]
        observed = np.isfinite(target)
        first = np.where(observed.any(axis=0), observed.argmax(axis=0), len(target))
        usable = int(len(target) - first.max())
        if usable < need:
            raise invalid(here + ["target"],
                          f"series {i} is too short to score the ensemble: it has {usable} usable points; a backtest of "
                          f"{config.n_windows} window(s) of prediction_length {h} needs at least {need} "
                          f"({config.n_windows} x {h} + {config.min_context})")


def to_call(body: ForecastBody, request: ForecastRequest, resolve, loc: list) -> tuple[EnsembleCall, dict]:
    """A validated body and its converted request -> the EnsembleCall and the public name of each
    candidate key (what the response shows)."""
    transformers, statistical, shown = candidates(body, resolve, loc)
    if isinstance(body, EnsembleBody):
        config = EnsembleConfig(statistical=statistical, scoring_metric=body.scoring_metric,
                                top_n=body.top_n or (len(transformers) + len(statistical)),
                                weighting=body.weighting, n_windows=body.n_windows, calibrate=body.calibrate)
    else:  # model "auto" on /v1/forecast: the measured defaults
        config = EnsembleConfig(statistical=statistical)
    check_lengths(body, config, loc)
    return EnsembleCall(request=request, config=config, transformers=transformers), shown


def _score(x: float) -> float | None:
    return round(x, 6) if np.isfinite(x) else None


def annotate(response: dict, out: EnsembleForecast, call: EnsembleCall, shown: dict) -> dict:
    """Adds what the ensemble did to a forecast response: per output (and channel) each candidate's
    backtest score and the weights of the models used; overall, the configuration, the models used
    (on how many series channels, with their mean weight and mean score) and the calibration."""
    config = call.config
    used: dict[str, list[tuple[float, float]]] = {}
    for output, selections in zip(response["outputs"], out.selections):
        output["ensemble"] = [{"scores": {shown[m]: _score(v) for m, v in sel.scores.items()},
                               "weights": {shown[m]: round(w, 6) for m, w in sel.weights.items()}}
                              for sel in selections]
        for sel in selections:
            for m, w in sel.weights.items():
                used.setdefault(m, []).append((w, sel.scores[m]))
    models_used = []
    for m, pairs in sorted(used.items(), key=lambda kv: -len(kv[1])):
        scores = np.array([s for _, s in pairs], dtype=np.float64)
        models_used.append({"model": shown[m], "series": len(pairs),
                            "mean_weight": round(float(np.mean([w for w, _ in pairs])), 6),
                            "mean_score": _score(float(np.nanmean(scores))) if np.isfinite(scores).any() else None})
    response["ensemble"] = {
        "candidates": [shown[m] for m in (*call.transformers, *config.statistical)],
        "scoring_metric": config.scoring_metric, "top_n": config.top_n, "weighting": config.weighting,
        "n_windows": config.n_windows, "models_used": models_used,
        "calibration": {str(q): round(s, 6) for q, s in sorted(out.calibration.items())},
    }
    return response

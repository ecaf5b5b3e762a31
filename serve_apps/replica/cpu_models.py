"""The models a replica runs on CPU beside the transformer: statistical models and the `auto` ensemble.

Both are fitted per series at request time (no weights), so they are built, not loaded, and they
do not share the transformer's batcher: a minute of AutoARIMA must not hold up the next model
pass. replica.engine runs them in worker threads (statistical fits over many series fork
`n_jobs` processes: tsfm_core.statistical.forecast_units).
"""

from __future__ import annotations

from contextlib import contextmanager

from serve_apps.models.catalog import ENSEMBLE, STATISTICAL, ModelEntry
from serve_apps.replica.calls import RequestRejected
from tsfm_core.backtest import WindowError
from tsfm_core.checkpoint import BASE_MODEL_ID
from tsfm_core.conformal_statistical import ConformalStatistical
from tsfm_core.ensemble import EnsembleConfig, EnsembleForecast, ensemble_forecast
from tsfm_core.predict import Forecaster, ForecastRequest, ForecastResult
from tsfm_core.series import Series
from tsfm_core.statistical import StatisticalInputError


@contextmanager
def rejected_inputs():
    """The statistical and ensemble code's input errors are the request's doing: RequestRejected."""
    try:
        yield
    except (WindowError, StatisticalInputError) as exc:
        raise RequestRejected(str(exc)) from None


def ensemble_series(request: ForecastRequest) -> list[Series]:
    """The request's series as the ensemble takes them: the last `context_length` points, no covariates
    (RequestRejected when a series has any: the ensemble's candidates are scored without them)."""
    out = []
    for i, s in enumerate(request.series):
        if s.past_covariates is not None or s.future_covariates is not None:
            raise RequestRejected(f"series {i}: the `auto` ensemble does not take covariates")
        values = s.values if request.context_length is None else s.values[-request.context_length :]
        out.append(Series(values=values, freq=s.freq))
    return out


def run_ensemble(request: ForecastRequest, transformers: dict[str, Forecaster], config: EnsembleConfig,
                 n_jobs: int | None) -> EnsembleForecast:
    """One request through tsfm_core.ensemble (blocking: run it in a worker thread)."""
    with rejected_inputs():
        return ensemble_forecast(ensemble_series(request), request.horizon, request.levels, transformers, config,
                                 n_jobs=n_jobs)


class EnsembleForecaster:
    """`auto` with its default configuration behind the Forecaster interface, for callers that
    want forecasts only (the Nixtla dialect, the engine's plain forecast path)."""

    def __init__(self, base: Forecaster, n_jobs: int | None, config: EnsembleConfig = EnsembleConfig()):
        self.base, self.n_jobs, self.config = base, n_jobs, config

    @property
    def max_context(self) -> int:
        return self.base.max_context

    def forecast_many(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        return [run_ensemble(r, {BASE_MODEL_ID: self.base}, self.config, self.n_jobs).results for r in requests]


class CheckedStatistical(ConformalStatistical):
    """A served statistical model: conformally calibrated intervals (tsfm_core.conformal_statistical;
    raw ones where a series is too short to backtest) and input errors as RequestRejected (422s)."""

    def forecast_many(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        with rejected_inputs():
            return super().forecast_many(requests)


def build_cpu_model(entry: ModelEntry, base: Forecaster | None, n_jobs: int | None):
    """A catalog entry of kind statistical or ensemble -> its forecaster (`base`: tsfm-base, for `auto`)."""
    if entry.kind == STATISTICAL:
        return CheckedStatistical(entry.statistical, n_jobs=n_jobs)
    if entry.kind == ENSEMBLE:
        return EnsembleForecaster(base, n_jobs)
    raise ValueError(f"{entry.id} is not a CPU model (kind {entry.kind})")

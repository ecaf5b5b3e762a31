"""Statistical models (statsforecast) behind the transformer's forecasting interface.

`StatisticalForecaster(name).forecast(series, horizon, levels)` takes the `Series` the transformer
path takes and returns the same `ForecastResult`s, so a server can treat every catalog model alike.
Quantiles come from each model's prediction intervals (the central interval of level
100*|2q-1| gives q and 1-q; conformal intervals for the intermittent-demand models, which have
none of their own). Series are independent jobs spread over CPU processes.

Robustness, per series: missing values are interpolated (leading ones dropped, trailing ones held),
and a model that fails or answers non-finite numbers (too short a history, a constant series, a
failed optimisation) is replaced by a seasonal naive forecast with random-walk intervals; the
result's `model` names whoever answered, so a fallback is never silent.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tsfm_core.predict import ForecastRequest, ForecastResult, _plan_series
from tsfm_core.quantiles import validate_levels
from tsfm_core.seasonality import season_length as season_from_freq
from tsfm_core.series import Series

STATISTICAL_MODELS = ("SeasonalNaive", "AutoETS", "AutoTheta", "AutoARIMA", "CrostonOptimized", "ADIDA")
FALLBACK = "SeasonalNaive(fallback)"
_INTERMITTENT = ("CrostonOptimized", "ADIDA")
_NORMAL = NormalDist()


class StatisticalInputError(ValueError):
    """A series no statistical model can forecast (no observed value at all)."""

    def __init__(self, series: int, msg: str):
        super().__init__(msg)
        self.series = series


@dataclass(frozen=True)
class UnitForecast:
    """One univariate context's forecasts: rows of `values[1 + L, H]` are the mean, then the
    quantiles at the requested levels; `backtests[k]` has the same layout for cutoff k."""

    values: np.ndarray
    backtests: tuple[np.ndarray, ...]
    model: str


def clean_history(y: np.ndarray) -> np.ndarray:
    """[T] with NaNs -> [T'] finite: leading NaNs dropped, interior ones interpolated linearly,
    trailing ones held at the last observation (the forecast origin must stay where it is)."""
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    if not ok.any():
        raise ValueError("the series has no observed (finite) value")
    y = y[int(np.argmax(ok)) :]
    ok = np.isfinite(y)
    if not ok.all():
        idx = np.arange(len(y))
        y = np.interp(idx, idx[ok], y[ok])  # np.interp holds the last value past the end
    return y


def _make_model(name: str, season: int, horizon: int, n: int):
    from statsforecast import models
    from statsforecast.utils import ConformalIntervals

    if name == "SeasonalNaive":
        return models.SeasonalNaive(season_length=season)
    if name == "AutoETS":
        return models.AutoETS(season_length=season)
    if name == "AutoTheta":
        return models.AutoTheta(season_length=season)
    if name == "AutoARIMA":
        return models.AutoARIMA(season_length=season)
    if name in _INTERMITTENT:
        # No intervals of their own: conformal ones from as many h-step windows as the history allows.
        windows = max(2, min(5, (n - 1) // horizon))
        return getattr(models, name)(prediction_intervals=ConformalIntervals(h=horizon, n_windows=windows))
    raise ValueError(f"unknown statistical model {name!r}; expected one of {', '.join(STATISTICAL_MODELS)}")


class LeanETSSearch:
    """AutoETS without the models that have both a trend and a season: the two restricted searches
    "ZZN" (every error and trend, no season) and "ZNZ" (every error and season, no trend), the one
    with the lower AICc kept, as AutoETS itself chooses. With a 12-point season that is 9 of its 15
    models and about a third of its CPU time (the trend+season models carry the most parameters);
    on every 4th M3 monthly series it cost 9.7 instead of 29.3 CPU-s for a MASE of 0.859 instead of
    0.845 alone (docs/benchmarks.md). Quacks like a fitted statsforecast model (`fit`, `predict`,
    `model_`), so `specification` re-estimates whichever model won."""

    specs = ("ZZN", "ZNZ")

    def __init__(self, season: int):
        self.season = season
        self.best = None

    def fit(self, y: np.ndarray) -> "LeanETSSearch":
        from statsforecast import models

        fits = []
        for spec in self.specs:
            try:
                fits.append(models.AutoETS(season_length=self.season, model=spec).fit(y=y))
            except Exception:  # noqa: BLE001 - e.g. no admissible model in one half; the other may fit
                continue
        if not fits:
            raise ValueError("no ETS model could be fitted")
        self.best = min(fits, key=lambda f: f.model_["aicc"])
        return self

    def predict(self, h: int, level=None) -> dict:
        return self.best.predict(h=h, level=level)

    @property
    def model_(self) -> dict:
        return self.best.model_


def _percent(q: float) -> float:
    return round(abs(2 * q - 1) * 100, 6)


def _as_rows(out: dict, levels: list[float], horizon: int) -> np.ndarray:
    """statsforecast's {'mean', 'lo-80', 'hi-80', ...} -> [1 + L, H] (mean, then quantiles)."""
    bands = {}
    for key, values in out.items():
        if key.startswith(("lo-", "hi-")):
            bands[(key[:2], round(float(key[3:]), 6))] = values
    rows = [out["mean"]]
    for q in levels:
        pct = _percent(q)
        rows.append(out["mean"] if pct == 0 else bands[("lo" if q < 0.5 else "hi", pct)])
    block = np.asarray(rows, dtype=np.float64)[:, :horizon]
    block[1:] = np.sort(block[1:], axis=0)  # interval edges of nested levels never cross
    return block


def seasonal_naive(y: np.ndarray, season: int, horizon: int, levels: list[float]) -> np.ndarray:
    """The fallback that always answers: [T>=1] -> [1 + L, H]. Repeats the last season (the last
    value when the history is shorter than one), with random-walk intervals that widen with the
    number of seasons ahead; a constant series gets a zero-width band."""
    m = season if len(y) >= season else 1
    steps = np.arange(horizon)
    point = y[len(y) - m + steps % m]
    diffs = y[m:] - y[:-m]
    sigma = float(np.std(diffs)) if len(diffs) > 1 else 0.0
    spread = sigma * np.sqrt(steps // m + 1)
    rows = [point] + [point + _NORMAL.inv_cdf(q) * spread for q in levels]
    return np.asarray(rows, dtype=np.float64)


def specification(name: str, fitted, season: int, horizon: int):
    """The model an Auto* search settled on, as a constructor `n -> model` that re-estimates only
    its parameters (ETS components, Theta variant, ARIMA orders); other models are rebuilt as they
    are. A backtest that reuses the specification costs a fraction of a new search (about 1/30
    for AutoETS) while its parameters still see nothing past the window's cutoff."""
    from statsforecast import models

    state = getattr(fitted, "model_", None) or {}
    if name == "AutoETS" and "components" in state:
        error, trend, seasonal, damped = state["components"][:4]
        return lambda n: models.AutoETS(season_length=season, model=error + trend + seasonal, damped=damped == "D")
    if name == "AutoTheta" and "modeltype" in state:
        return lambda n: models.AutoTheta(season_length=season, model=state["modeltype"])
    if name == "AutoARIMA" and "arma" in state:
        p, q, big_p, big_q, m, d, big_d = (int(v) for v in state["arma"])
        coef = state.get("coef", {})
        return lambda n: models.ARIMA(order=(p, d, q), season_length=m, seasonal_order=(big_p, big_d, big_q),
                                      include_mean="intercept" in coef, include_drift="drift" in coef)
    return lambda n: _make_model(name, season, horizon, n)


def forecast_unit(name: str, y: np.ndarray, season: int, horizon: int, levels: list[float],
                  cutoffs: tuple[int, ...] = (), lean_ets_from: int | None = None) -> UnitForecast:
    """One cleaned 1-D history -> its forecast and, for each cutoff, a backtest forecast of the
    `horizon` points after it. The forecast is the model's full fit on the whole history; each
    backtest re-estimates the parameters of the specification that fit chose (`specification`)
    on the history before its cutoff, falling back to a full search, then to seasonal naive."""
    levels_pct = sorted({_percent(q) for q in levels} - {0.0})

    def attempt(make, prefix: np.ndarray):
        """(the model's [1 + L, H] block, the fitted model), or None when it fails or answers
        non-finite numbers; a constant or one-point history is left to the exact fallback."""
        if len(prefix) < 2 or np.ptp(prefix) == 0:
            return None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = make(len(prefix)).fit(y=prefix)
                block = _as_rows(model.predict(h=horizon, level=levels_pct), levels, horizon)
            return (block, model) if np.isfinite(block).all() else None
        except Exception:  # noqa: BLE001 - statsforecast raises bare Exceptions for short or degenerate data
            return None

    def search(n: int):
        if name == "AutoETS" and lean_ets_from is not None and season >= lean_ets_from:
            return LeanETSSearch(season)
        return _make_model(name, season, horizon, n)

    full = attempt(search, y)
    final, model = (full[0], name) if full else (seasonal_naive(y, season, horizon, levels), FALLBACK)
    respecified = specification(name, full[1], season, horizon) if full else search
    backtests = []
    for c in cutoffs:
        past = attempt(respecified, y[:c]) or (attempt(search, y[:c]) if full else None)
        backtests.append(past[0] if past else seasonal_naive(y[:c], season, horizon, levels))
    if name in _INTERMITTENT and (y >= 0).all():
        # Demand is never negative; conformal bands around a small rate would say otherwise.
        final = np.maximum(final, 0.0)
        backtests = [np.maximum(b, 0.0) for b in backtests]
    return UnitForecast(final, tuple(backtests), model)


def _forecast_chunk(args: tuple) -> list[UnitForecast]:
    """[(model name, history, season, cutoffs)] -> their UnitForecasts, in order."""
    jobs, horizon, levels, lean_ets_from = args
    with _shared_decompositions():
        return [forecast_unit(name, y, season, horizon, levels, cutoffs, lean_ets_from)
                for name, y, season, cutoffs in jobs]


@contextmanager
def _shared_decompositions(size: int = 8):
    """Within the block, statsforecast's ETS and Theta reuse a classical seasonal decomposition of
    the very same history instead of recomputing it (statsmodels + pandas, about a quarter of an
    AutoETS search: every seasonal candidate of the search decomposes the same series again).
    The result is identical; only repeated calls are skipped. Restored on exit."""
    from statsforecast import ets, theta

    saved = {module: module.seasonal_decompose for module in (ets, theta)}
    original = saved[ets]
    cache: OrderedDict = OrderedDict()

    def decompose(x, model="additive", period=None, **kwargs):
        if kwargs:
            return original(x, model=model, period=period, **kwargs)
        x = np.asarray(x)
        key = (x.tobytes(), x.dtype.str, model, period)
        if key not in cache:
            cache[key] = original(x, model=model, period=period)
            if len(cache) > size:
                cache.popitem(last=False)
        return cache[key]

    for module in saved:
        module.seasonal_decompose = decompose
    try:
        yield
    finally:
        for module, function in saved.items():
            module.seasonal_decompose = function


def forecast_models(names: list[str], jobs: list[tuple[np.ndarray, int, tuple[int, ...]]], horizon: int,
                    levels: list[float], n_jobs: int | None = None,
                    lean_ets_from: int | None = None) -> dict[str, list[UnitForecast]]:
    """Many (history, season, cutoffs) jobs through each of several models, all (model, job) pairs
    spread over one pool of `n_jobs` processes (default: every CPU) -> per model, one UnitForecast
    per job. One pool for every model: each pool start forks and each worker of a fresh pool would
    otherwise import statsforecast again (seconds of CPU each). Small batches stay in this process.
    With `lean_ets_from`, AutoETS on seasons at least that long is a `LeanETSSearch`."""
    unknown = [n for n in names if n not in STATISTICAL_MODELS]
    if unknown:
        raise ValueError(f"unknown statistical model(s) {unknown}; expected some of {', '.join(STATISTICAL_MODELS)}")
    import statsforecast.models  # noqa: F401 - imported once here, inherited by the forked workers

    n_jobs = n_jobs or os.cpu_count() or 1
    pairs = [(name, y, season, cutoffs) for name in names for y, season, cutoffs in jobs]
    costly = [p for p in pairs if p[0] != "SeasonalNaive"]
    if n_jobs == 1 or len(costly) < 4 * n_jobs:
        done = _forecast_chunk((pairs, horizon, levels, lean_ets_from))
    else:
        # Eight chunks per worker balance long and short series and costly and cheap models (the
        # last chunk to finish leaves the other workers idle); fork shares the loaded libraries.
        size = -(-len(pairs) // (8 * n_jobs))
        chunks = [(pairs[i : i + size], horizon, levels, lean_ets_from) for i in range(0, len(pairs), size)]
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
        with ProcessPoolExecutor(max_workers=n_jobs, mp_context=context) as pool:
            done = [u for part in pool.map(_forecast_chunk, chunks) for u in part]
    return {name: done[k * len(jobs) : (k + 1) * len(jobs)] for k, name in enumerate(names)}


def forecast_units(name: str, jobs: list[tuple[np.ndarray, int, tuple[int, ...]]], horizon: int,
                   levels: list[float], n_jobs: int | None = None) -> list[UnitForecast]:
    """Many (history, season, cutoffs) jobs through one model (see `forecast_models`)."""
    return forecast_models([name], jobs, horizon, levels, n_jobs)[name]


class StatisticalForecaster:
    """A statsforecast model with the transformer `Forecaster`'s `forecast` / `forecast_many`.

    The season length comes from each series' `freq` (1 without one) unless fixed here. Covariates
    are handled as the transformer handles them: a ridge regression on the past is removed before
    the model sees the series and its prediction added back over the horizon.
    """

    def __init__(self, name: str, season_length: int | None = None, n_jobs: int | None = None):
        if name not in STATISTICAL_MODELS:
            raise ValueError(f"unknown statistical model {name!r}; expected one of {', '.join(STATISTICAL_MODELS)}")
        self.name = name
        self.season_length = season_length
        self.n_jobs = n_jobs

    def season_of(self, s: Series) -> int:
        return self.season_length or season_from_freq(s.freq)

    def forecast(self, series: list[Series], horizon: int, levels: list[float] | None = None,
                 context_length: int | None = None) -> list[ForecastResult]:
        return self.forecast_many([ForecastRequest(series, horizon, levels, context_length)])[0]

    def forecast_many(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        """Requests with one horizon each -> per request, one `ForecastResult` per series
        (`median[H, C]` = the model's point forecast, `quantiles[L, H, C]`, `mean[H, C]`)."""
        out = []
        for req in requests:
            if req.horizon < 1:
                raise ValueError("horizon must be >= 1")
            levels = list(req.levels) if req.levels else [0.5]
            validate_levels(levels)
            contexts: list[np.ndarray] = []
            plans = [_plan_series(s, req.horizon, min(req.context_length or s.length, s.length), contexts)
                     for s in req.series]
            seasons = [self.season_of(s) for s, p in zip(req.series, plans) for _ in range(p.rows.stop - p.rows.start)]
            jobs = []
            for k, (y, season) in enumerate(zip(contexts, seasons)):
                try:
                    jobs.append((clean_history(y), season, ()))
                except ValueError as exc:
                    owner = next(i for i, p in enumerate(plans) if p.rows.start <= k < p.rows.stop)
                    raise StatisticalInputError(owner, f"series {owner}: {exc}") from None
            units = self._forecast_units(jobs, req.horizon, levels)
            out.append([_result(units[p.rows], p.offsets, levels, p) for p in plans])
        return out

    def _forecast_units(self, jobs: list[tuple[np.ndarray, int, tuple[int, ...]]], horizon: int,
                        levels: list[float]) -> list[UnitForecast]:
        """Cleaned (history, season, no cutoffs) jobs -> one UnitForecast each: the model's own
        intervals. tsfm_core.conformal_statistical overrides it to calibrate them."""
        return forecast_units(self.name, jobs, horizon, levels, self.n_jobs)


def _result(units: list[UnitForecast], offsets: np.ndarray, levels: list[float], plan) -> ForecastResult:
    """Channel forecasts [1 + L, H] each + covariate offsets [C, H] -> one ForecastResult."""
    block = np.stack([u.values for u in units]) + offsets[:, None, :]  # [C, 1 + L, H]
    models = sorted({u.model for u in units})
    return ForecastResult(
        median=block[:, 0, :].T.copy(),
        quantiles=np.transpose(block[:, 1:, :], (1, 2, 0)).copy(),
        levels=levels,
        truncated_from=plan.length if plan.truncated else None,
        covariate_weights=plan.weights,
        covariate_contributions=(None if plan.contributions is None else np.transpose(plan.contributions, (1, 0, 2))),
        mean=block[:, 0, :].T.copy(),
        model="+".join(models),
    )

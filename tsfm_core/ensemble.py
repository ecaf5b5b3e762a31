"""`auto`: pick and weight forecasting models per series by how they did on its own recent past.

Every candidate (the transformer(s) and statistical models) forecasts the last `n_windows` windows
of `horizon` points of each series from what came before them, and the series' future, in one
batched pass per model. Each series then keeps its `top_n` candidates by the backtest score,
weighted equally or by inverse score, and their forecasts are averaged quantile by quantile.
Optionally the ensemble's bands are recalibrated (split conformal, one factor per quantile level)
on the same backtest, so an 80% band covers about 80% of what the backtest saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tsfm_core import metrics
from tsfm_core.backtest import Window, WindowError, cross_validation_windows
from tsfm_core.predict import Forecaster, ForecastRequest, ForecastResult
from tsfm_core.quantiles import validate_levels
from tsfm_core.seasonality import season_length as season_from_freq
from tsfm_core.series import Series
from tsfm_core.statistical import STATISTICAL_MODELS, clean_history, forecast_models

SCORING_METRICS = ("MASE", "sMAPE", "WQL", "MAE")
SCORING_LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # WQL and calibration read these


@dataclass(frozen=True)
class EnsembleConfig:
    # Measured on M3 (benchmarks/results/leaderboard_m3.md): the transformer with AutoETS and AutoTheta,
    # equally weighted, beats each alone; one backtest window per series is too noisy a judge for
    # per-series selection to help there, so by default top_n keeps all three.
    statistical: tuple[str, ...] = ("AutoETS", "AutoTheta")
    scoring_metric: str = "MASE"
    top_n: int = 3  # the `max_models` of the wire formats
    weighting: str = "equal"  # or "inverse_score"
    n_windows: int = 1
    min_context: int = 3  # points a backtest window's forecast must see
    calibrate: bool = True
    min_calibration_points: int = 200  # fewer backtest points than this: the bands are left as they are
    # AutoETS on seasons this long or longer leaves out the trend+season models (statistical.LeanETSSearch):
    # a 12-point season's search costs a third as much, which brings `auto` on M3 monthly (1,428 series)
    # under a minute on 2 cores; None: the full search everywhere. Quarterly and yearly data are untouched.
    lean_ets_from: int | None = 12

    def __post_init__(self) -> None:
        unknown = [m for m in self.statistical if m not in STATISTICAL_MODELS]
        if unknown:
            raise ValueError(f"unknown statistical model(s) {unknown}; expected some of {list(STATISTICAL_MODELS)}")
        if self.scoring_metric not in SCORING_METRICS:
            raise ValueError(f"scoring_metric must be one of {list(SCORING_METRICS)}, got {self.scoring_metric!r}")
        if self.weighting not in ("equal", "inverse_score"):
            raise ValueError(f"weighting must be 'equal' or 'inverse_score', got {self.weighting!r}")
        if self.top_n < 1 or self.n_windows < 1:
            raise ValueError("top_n and n_windows must be >= 1")
        if self.lean_ets_from is not None and self.lean_ets_from < 2:
            raise ValueError("lean_ets_from must be None or >= 2")


@dataclass(frozen=True)
class Selection:
    """One series channel: every candidate's backtest score (NaN: it could not be scored) and the
    weights of the models the forecast averages (they sum to 1)."""

    scores: dict[str, float]
    weights: dict[str, float]


@dataclass
class EnsembleForecast:
    results: list[ForecastResult]  # one per series, as any forecaster returns them
    selections: list[list[Selection]]  # [series][channel]
    calibration: dict[float, float] = field(default_factory=dict)  # level -> band scale applied


@dataclass
class _Candidate:
    """One model's forecasts for every unit: `final[U, 1 + L, H]`, `backtest[U, W, 1 + L, H]`
    (row 0 the point forecast, then quantiles at `levels`)."""

    final: np.ndarray
    backtest: np.ndarray


def ensemble_forecast(series: list[Series], horizon: int, levels: list[float] | None = None,
                      transformers: dict[str, Forecaster] | None = None, config: EnsembleConfig = EnsembleConfig(),
                      season_length: int | None = None, n_jobs: int | None = None) -> EnsembleForecast:
    """Series (any channels, no covariates) -> the per-series ensemble forecast and what it chose.

    Raises `WindowError` (with the series index) when a series is too short to backtest:
    `n_windows * horizon + min_context` points are needed.
    """
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    levels = list(levels) if levels else [0.5]
    validate_levels(levels)
    all_levels = sorted(set(SCORING_LEVELS) | set(levels))
    units, owners, seasons = [], [], []
    for i, s in enumerate(series):
        if s.past_covariates is not None or s.future_covariates is not None:
            raise ValueError(f"series {i}: the auto ensemble does not take covariates")
        for c in range(s.n_channels):
            try:
                y = clean_history(s.values[:, c])
            except ValueError as exc:
                raise WindowError(i, f"series {i}: {exc}") from None
            need = config.n_windows * horizon + config.min_context
            if len(y) < need:
                raise WindowError(i, f"series {i} has {len(y)} observed points; a backtest of {config.n_windows} "
                                     f"window(s) of horizon {horizon} needs at least {need}")
            units.append(y)
            owners.append((i, c))
            seasons.append(season_length or season_from_freq(s.freq))
    windows = cross_validation_windows([len(y) for y in units], horizon, config.n_windows, horizon)
    candidates = {name: _transformer_pass(f, units, windows, horizon, all_levels, config.n_windows)
                  for name, f in (transformers or {}).items()}
    candidates.update(_statistical_passes(config.statistical, units, seasons, windows, horizon, all_levels, config,
                                          n_jobs))
    if not candidates:
        raise ValueError("the ensemble has no candidate models")

    names = list(candidates)
    actual = np.stack([[y[w.cutoff : w.cutoff + horizon] for w in windows[u * config.n_windows : (u + 1) * config.n_windows]]
                       for u, y in enumerate(units)])  # [U, W, H]
    scores = np.array([[_score(config.scoring_metric, units[u], seasons[u], windows[u * config.n_windows].cutoff,
                               actual[u], candidates[m].backtest[u], all_levels) for m in names]
                       for u in range(len(units))])  # [U, M]
    weights = select_weights(scores, config.top_n, config.weighting)  # [U, M]
    final = np.einsum("um,umlh->ulh", weights, np.stack([candidates[m].final for m in names], axis=1))
    calibration = {}
    if config.calibrate:
        past = np.einsum("um,umwlh->uwlh", weights, np.stack([candidates[m].backtest for m in names], axis=1))
        calibration = conformal_scales(past, actual, all_levels, config.min_calibration_points)
        final = apply_scales(final, all_levels, calibration)
    keep = [1 + all_levels.index(q) for q in levels]
    return _assemble(series, owners, final, keep, 1 + all_levels.index(0.5), levels, names, scores, weights,
                     calibration)


def select_weights(scores: np.ndarray, top_n: int, weighting: str) -> np.ndarray:
    """Backtest scores [U, M] (lower is better, NaN: unscored) -> weights [U, M], each row summing
    to 1 over its `top_n` best models. A row with no finite score weights every model equally."""
    weights = np.zeros_like(scores, dtype=np.float64)
    for u, row in enumerate(scores):
        finite = np.flatnonzero(np.isfinite(row))
        if len(finite) == 0:
            weights[u] = 1.0 / len(row)
            continue
        best = finite[np.argsort(row[finite], kind="stable")[:top_n]]
        if weighting == "inverse_score":
            # The floor keeps a perfect backtest (score 0) from taking every weight on one window's luck.
            w = 1.0 / np.maximum(row[best], 1e-3 * max(float(np.max(row[best])), 1e-12))
        else:
            w = np.ones(len(best))
        weights[u, best] = w / w.sum()
    return weights


def conformal_scales(backtest: np.ndarray, actual: np.ndarray, levels: list[float], min_points: int) -> dict[float, float]:
    """Backtest forecasts [U, W, 1 + L, H] and actuals [U, W, H] -> per level q, the factor s such
    that `point + s * (quantile_q - point)` sits at the empirical q-quantile of what happened
    (split conformal on the normalised residual). Levels with fewer than `min_points` usable
    points (the median; zero-width bands) are left out: no scale is applied to them."""
    point = backtest[:, :, 0, :]
    scales = {}
    for k, q in enumerate(levels):
        if q == 0.5:
            continue
        spread = backtest[:, :, 1 + k, :] - point
        ok = np.isfinite(actual) & (np.abs(spread) > 1e-12 * (np.abs(point) + 1))
        if ok.sum() < min_points:
            continue
        r = (actual[ok] - point[ok]) / spread[ok]  # <= s  <=>  below the scaled quantile (spread > 0)
        # Below the median the spread is negative, so "actual below the band" is r >= s.
        scales[q] = float(np.quantile(r, q if q > 0.5 else 1 - q))
    return scales


def apply_scales(blocks: np.ndarray, levels: list[float], scales: dict[float, float]) -> np.ndarray:
    """[..., 1 + L, H] -> the same with each level's distance to the point forecast scaled, then
    re-sorted so that no two levels cross."""
    out = blocks.copy()
    for k, q in enumerate(levels):
        if q in scales:
            out[..., 1 + k, :] = blocks[..., 0, :] + max(scales[q], 0.0) * (blocks[..., 1 + k, :] - blocks[..., 0, :])
    out[..., 1:, :] = np.sort(out[..., 1:, :], axis=-2)
    return out


def _score(metric: str, y: np.ndarray, season: int, first_cutoff: int, actual: np.ndarray,
           backtest: np.ndarray, levels: list[float]) -> float:
    """One unit, one model: actual [W, H], backtest [W, 1 + L, H] -> its score (lower is better)."""
    point = backtest[:, 0, :]
    if metric == "MAE":
        return metrics.mae(actual, point)
    if metric == "sMAPE":
        return metrics.smape(actual, point)
    if metric == "WQL":
        return metrics.wql(list(actual), list(backtest[:, 1:, :]), levels)
    value = metrics.mase(y[:first_cutoff], actual, point, season)
    # A constant history has no naive error to scale by; the ranking is the MAE's either way.
    return value if np.isfinite(value) else metrics.mae(actual, point)


def _transformer_pass(forecaster: Forecaster, units: list[np.ndarray], windows: list[Window], horizon: int,
                      levels: list[float], n_windows: int) -> _Candidate:
    """Backtest windows and futures of every unit in one batched model call."""
    contexts = [Series(units[w.series][max(0, w.cutoff - forecaster.max_context) : w.cutoff]) for w in windows]
    past, future = forecaster.forecast_many([ForecastRequest(contexts, horizon, levels),
                                             ForecastRequest([Series(y) for y in units], horizon, levels)])

    def rows(r: ForecastResult) -> np.ndarray:
        return np.concatenate([r.median[None, :, 0], r.quantiles[:, :, 0]], axis=0)

    backtest = np.stack([rows(r) for r in past]).reshape(len(units), n_windows, 1 + len(levels), horizon)
    return _Candidate(np.stack([rows(r) for r in future]), backtest)


def _statistical_passes(names: tuple[str, ...], units: list[np.ndarray], seasons: list[int], windows: list[Window],
                        horizon: int, levels: list[float], config: EnsembleConfig,
                        n_jobs: int | None) -> dict[str, _Candidate]:
    """Every statistical candidate's backtests and futures of every unit, in one pool of processes."""
    if not names:
        return {}
    cutoffs = [tuple(w.cutoff for w in windows[u * config.n_windows : (u + 1) * config.n_windows])
               for u in range(len(units))]
    out = forecast_models(list(names), [(y, m, c) for y, m, c in zip(units, seasons, cutoffs)], horizon, levels, n_jobs,
                          config.lean_ets_from)
    return {name: _Candidate(np.stack([u.values for u in fc]), np.stack([np.stack(u.backtests) for u in fc]))
            for name, fc in out.items()}


def _assemble(series: list[Series], owners: list[tuple[int, int]], final: np.ndarray, keep: list[int],
              median_row: int, levels: list[float], names: list[str], scores: np.ndarray, weights: np.ndarray,
              calibration: dict[float, float]) -> EnsembleForecast:
    """Units back into series: final [U, 1 + L_all, H] -> ForecastResult per series ([H, C] layout)."""
    results, selections = [], []
    rows_of: list[list[int]] = [[] for _ in series]
    for u, (owner, _) in enumerate(owners):
        rows_of[owner].append(u)
    for i, s in enumerate(series):
        rows = rows_of[i]
        block = final[rows]  # [C, 1 + L_all, H]
        chosen = [Selection(scores={m: float(scores[u, k]) for k, m in enumerate(names)},
                            weights={m: float(weights[u, k]) for k, m in enumerate(names) if weights[u, k] > 0})
                  for u in rows]
        used = sorted({m for sel in chosen for m in sel.weights})
        results.append(ForecastResult(
            median=block[:, median_row, :].T.copy(),
            quantiles=np.transpose(block[:, keep, :], (1, 2, 0)).copy(),
            levels=levels,
            mean=block[:, 0, :].T.copy(),
            model="auto(" + "+".join(used) + ")",
        ))
        selections.append(chosen)
    return EnsembleForecast(results, selections, calibration)


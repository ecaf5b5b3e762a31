"""Statistical models with calibrated intervals: split conformal from a backtest on each series' last window.

statsforecast's own intervals assume the fitted model is the true one, so they are too narrow on
real data (80% bands of AutoETS / AutoTheta cover about 75% / 72% of M3 monthly). Here every
series is also forecast from all but its last `horizon` points (the model specification its full
fit chose, parameters re-estimated: tsfm_core.statistical.forecast_unit), and each quantile
level's distance to the point forecast is scaled by one factor pooled over the request's series,
the same calibration (and code) as the `auto` ensemble's (tsfm_core.ensemble.conformal_scales).
Pooled because one window per series is too few points for a per-series quantile; the residuals
are divided by each series' own band width first, so every series keeps its own scale.

Series too short to backtest keep their raw intervals, and so does every series when the
request's backtest has fewer than `min_calibration_points` points; `ForecastResult.model` says
which ("AutoETS+conformal" vs "AutoETS"). Point forecasts never change.
"""

from __future__ import annotations

import numpy as np

from tsfm_core.ensemble import EnsembleConfig, apply_scales, conformal_scales
from tsfm_core.statistical import StatisticalForecaster, UnitForecast, forecast_units

CONFORMAL_SUFFIX = "+conformal"  # appended to `model` where the bands were calibrated; also the leaderboard's name


class ConformalStatistical(StatisticalForecaster):
    """A StatisticalForecaster whose quantiles are conformally calibrated (see the module doc)."""

    def __init__(self, name: str, season_length: int | None = None, n_jobs: int | None = None,
                 min_context: int = EnsembleConfig.min_context,
                 min_calibration_points: int = EnsembleConfig.min_calibration_points):
        super().__init__(name, season_length, n_jobs)
        self.min_context = min_context
        self.min_calibration_points = min_calibration_points

    def _forecast_units(self, jobs: list[tuple[np.ndarray, int, tuple[int, ...]]], horizon: int,
                        levels: list[float]) -> list[UnitForecast]:
        # One backtest window per series that leaves the model at least `min_context` points to see.
        with_cutoffs = [(y, season, (len(y) - horizon,) if len(y) >= horizon + self.min_context else ())
                        for y, season, _ in jobs]
        units = forecast_units(self.name, with_cutoffs, horizon, levels, self.n_jobs)
        return calibrate_units(units, [y for y, _, _ in jobs], horizon, levels, self.min_calibration_points)


def calibrate_units(units: list[UnitForecast], histories: list[np.ndarray], horizon: int, levels: list[float],
                    min_points: int) -> list[UnitForecast]:
    """UnitForecasts ([1 + L, H] blocks, at most one backtest each, on the last `horizon` points of
    its history [T]) -> the same with the bands of every backtested unit scaled by the pooled
    per-level factors; units without a backtest, or all of them when too few points back the
    factors, are returned as they are."""
    backed = [k for k, u in enumerate(units) if u.backtests]
    if not backed:
        return units
    backtest = np.stack([units[k].backtests[0] for k in backed])[:, None]  # [B, 1, 1 + L, H]
    actual = np.stack([histories[k][-horizon:] for k in backed])[:, None]  # [B, 1, H]
    scales = conformal_scales(backtest, actual, levels, min_points)
    if not scales:
        return units
    out = list(units)
    for k in backed:
        values = apply_scales(units[k].values, levels, scales)
        if units[k].model.startswith(("CrostonOptimized", "ADIDA")) and (histories[k] >= 0).all():
            values = np.maximum(values, 0.0)  # demand is never negative, however wide the band
        out[k] = UnitForecast(values, units[k].backtests, units[k].model + CONFORMAL_SUFFIX)
    return out

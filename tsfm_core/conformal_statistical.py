"""Statistical models with calibrated intervals: split conformal from a backtest on each series' last window.

statsforecast's own intervals assume the fitted model is the true one, so they are too narrow on
real data (80% bands of AutoETS / AutoTheta cover about 75% / 72% of M3 monthly). Here every
series is also forecast from all but its last `horizon` points (the model specification its full
fit chose, parameters re-estimated: tsfm_core.statistical.forecast_unit), and each quantile
level's distance to the point forecast is scaled by one factor pooled over the request's series,
the same calibration (and code) as the `auto` ensemble's (tsfm_core.ensemble.conformal_scales).
Pooled because one window per series is too few points for a per-series quantile.

Before pooling, each series' band is put on its own error scale: the band keeps the model's shape
over the horizon, but its mean width is set to the series' in-sample seasonal-naive MAE (MASE's
denominator). The model's band width is a poor measure of how wrong the model is on that series
(CrostonOptimized's and ADIDA's on M3 monthly least of all); with residuals divided by raw band
widths the calibrated 80% bands of M3 monthly covered 0.766 (Croston, ADIDA) to 0.827 (AutoETS),
on this scale 0.795 to 0.813 (benchmarks/results/leaderboard_m3_monthly_conformal.md).

Series too short to backtest keep their raw intervals, and so does every series when the
request's backtest has fewer than `min_calibration_points` points; `ForecastResult.model` says
which ("AutoETS+conformal" vs "AutoETS"). Point forecasts never change.
"""

from __future__ import annotations

import numpy as np

from tsfm_core.ensemble import EnsembleConfig, apply_scales, conformal_scales
from tsfm_core.metrics import naive_scale
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
        return calibrate_units(units, [y for y, _, _ in jobs], [season for _, season, _ in jobs], horizon, levels,
                               self.min_calibration_points)


def on_scale(block: np.ndarray, scale: float) -> np.ndarray:
    """A [1 + L, H] block with each level's band (its distance to the point forecast, row 0) set to
    a mean width of `scale` over the horizon, its shape kept; zero-width bands, and every band when
    the scale is unknown (NaN: a constant history), stay as they are."""
    out = block.copy()
    if not np.isfinite(scale):
        return out
    for k in range(1, block.shape[0]):
        spread = block[k] - block[0]
        width = float(np.mean(np.abs(spread)))
        if width > 1e-12 * (float(np.mean(np.abs(block[0]))) + 1):
            out[k] = block[0] + spread * (scale / width)
    return out


def calibrate_units(units: list[UnitForecast], histories: list[np.ndarray], seasons: list[int], horizon: int,
                    levels: list[float], min_points: int) -> list[UnitForecast]:
    """UnitForecasts ([1 + L, H] blocks, at most one backtest each, on the last `horizon` points of
    its history [T] with season `seasons[k]`) -> the same with the bands of every backtested unit
    put on its series' scale (`on_scale`) and scaled by the pooled per-level factors; units without
    a backtest, or all of them when too few points back the factors, are returned as they are."""
    backed = [k for k, u in enumerate(units) if u.backtests]
    if not backed:
        return units
    # The backtest saw the history before its window, so its scale is that part's; a unit with
    # either scale unknown (a constant history) keeps its raw bands in both.
    scale = {k: (naive_scale(histories[k][:-horizon], seasons[k]), naive_scale(histories[k], seasons[k]))
             for k in backed}
    scale = {k: pair if np.isfinite(pair).all() else (np.nan, np.nan) for k, pair in scale.items()}
    backtest = np.stack([on_scale(units[k].backtests[0], scale[k][0]) for k in backed])[:, None]  # [B, 1, 1 + L, H]
    actual = np.stack([histories[k][-horizon:] for k in backed])[:, None]  # [B, 1, H]
    scales = conformal_scales(backtest, actual, levels, min_points)
    if not scales:
        return units
    out = list(units)
    for k in backed:
        values = on_scale(units[k].values, scale[k][1])
        for i, q in enumerate(levels):
            if q not in scales:  # not calibrated (too few usable points): its raw band, not a rescaled one
                values[1 + i] = units[k].values[1 + i]
        values = apply_scales(values, levels, scales)
        if units[k].model.startswith(("CrostonOptimized", "ADIDA")) and (histories[k] >= 0).all():
            values = np.maximum(values, 0.0)  # demand is never negative, however wide the band
        out[k] = UnitForecast(values, units[k].backtests, units[k].model + CONFORMAL_SUFFIX)
    return out

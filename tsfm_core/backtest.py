"""Forecasts from many cutoffs of observed series: cross-validation, in-sample (historical)
forecasts and anomaly detection all compare what the model would have said with what happened.

A `Window` is one forecast origin; every window becomes one context row of a model pass, so a
whole backtest is a single batched forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from tsfm_core.predict import ForecastRequest, ForecastResult
from tsfm_core.quantiles import level_bounds
from tsfm_core.series import Series


@dataclass(frozen=True)
class Window:
    series: int  # index of the series
    cutoff: int  # the forecast sees values[:cutoff]
    length: int  # forecast steps kept, starting at position `cutoff`


class WindowError(ValueError):
    def __init__(self, series: int, msg: str):
        super().__init__(msg)
        self.series = series


def cross_validation_windows(sizes: list[int], h: int, n_windows: int, step_size: int) -> list[Window]:
    """`n_windows` origins per series, `step_size` apart, the last one ending at the series' end."""
    windows = []
    for i, n in enumerate(sizes):
        first = n - h - step_size * (n_windows - 1)
        if first < 1:
            raise WindowError(i, f"series {i} has {n} points; h={h}, n_windows={n_windows}, step_size={step_size} "
                                 f"need at least {h + step_size * (n_windows - 1) + 1}")
        windows += [Window(i, first + k * step_size, h) for k in range(n_windows)]
    return windows


def tail_windows(sizes: list[int], spans: list[int], h: int, step_size: int) -> list[Window]:
    """Covers the last `spans[i]` points of each series (0: none) with origins `step_size` apart;
    each keeps at most min(h, step_size) steps, so every covered point is forecast once, from the
    latest origin. The first point of a series has no context and can never be covered."""
    windows = []
    for i, (n, span) in enumerate(zip(sizes, spans)):
        if not 0 <= span < n:
            raise WindowError(i, f"series {i} has {n} points; at most {n - 1} of them can be forecast")
        keep = min(h, step_size)
        windows += [Window(i, c, min(keep, n - c)) for c in range(n - span, n, step_size)]
    return windows


def in_sample_spans(sizes: list[int], warmup: int) -> list[int]:
    """Points of each series that get an in-sample forecast: all but the first `warmup`, or all
    but the first half of a series shorter than 2 * warmup."""
    return [n - min(warmup, max(1, n // 2)) if n > 1 else 0 for n in sizes]


def by_rank(windows: list[Window]) -> list[list[int]]:
    """Window indexes grouped by their rank within their series (first origins, second origins, ...):
    what a per-window refit finetunes once for."""
    ranks: dict[int, int] = {}
    groups: list[list[int]] = []
    for k in sorted(range(len(windows)), key=lambda k: (windows[k].series, windows[k].cutoff)):
        rank = ranks.get(windows[k].series, 0)
        ranks[windows[k].series] = rank + 1
        if rank == len(groups):
            groups.append([])
        groups[rank].append(k)
    return groups


def training_prefixes(series: list[np.ndarray], windows: list[Window]) -> list[np.ndarray]:
    """What a finetune before these windows may see: each series up to its earliest origin among them."""
    first: dict[int, int] = {}
    for w in windows:
        first[w.series] = min(first.get(w.series, w.cutoff), w.cutoff)
    return [series[i][:cut] for i, cut in sorted(first.items())]


def window_request(series: list[np.ndarray], windows: list[Window], levels: list[float],
                   max_context: int) -> ForecastRequest:
    """One request with a context row per window (cut to what the model reads, so long series
    with many windows do not copy their whole history per window)."""
    contexts = [Series(values=series[w.series][max(0, w.cutoff - max_context) : w.cutoff]) for w in windows]
    return ForecastRequest(series=contexts, horizon=max(w.length for w in windows), levels=levels)


@dataclass
class Backtest:
    """Window forecasts laid out as rows: `positions[r]` is the row's index inside its series."""

    series: np.ndarray  # [R] series index of each row
    positions: np.ndarray  # [R]
    median: np.ndarray  # [R]
    quantiles: np.ndarray  # [L, R] at the request's levels

    def sizes(self, n_series: int) -> list[int]:
        return np.bincount(self.series, minlength=n_series).tolist()

    def actual(self, values: list[np.ndarray]) -> np.ndarray:
        return np.array([values[s][p] for s, p in zip(self.series, self.positions)], dtype=np.float64)


def collect(windows: list[Window], results: list[ForecastResult], n_levels: int) -> Backtest:
    """Flattens per-window results, series-major and in time order within a series."""
    order = sorted(range(len(windows)), key=lambda k: (windows[k].series, windows[k].cutoff))
    series, positions = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    median, quantiles = [np.zeros(0)], [np.zeros((n_levels, 0))]
    for k in order:
        w, r = windows[k], results[k]
        series.append(np.full(w.length, w.series))
        positions.append(np.arange(w.cutoff, w.cutoff + w.length))
        median.append(r.median[: w.length, 0])
        quantiles.append(r.quantiles[:, : w.length, 0])
    return Backtest(np.concatenate(series), np.concatenate(positions), np.concatenate(median),
                    np.concatenate(quantiles, axis=1))


def anomaly_scores(actual: np.ndarray, median: np.ndarray, lo: np.ndarray, hi: np.ndarray, level: float) -> np.ndarray:
    """Standardized residuals: the central `level`% interval read as +-z_level predictive sigmas,
    so |score| > z_level is (for a symmetric interval) the same as falling outside it. NaN -> 0."""
    z = NormalDist().inv_cdf(level_bounds(level)[1])
    sigma = np.maximum((hi - lo) / (2 * z), 1e-8 * (np.abs(median) + 1))
    return np.nan_to_num((actual - median) / sigma, nan=0.0)


def outside(actual: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Observed points outside their interval (missing observations are never anomalies)."""
    with np.errstate(invalid="ignore"):
        return (actual < lo) | (actual > hi)


def chi2_quantile(p: float, dof: int) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile, which spares a SciPy dependency
    for one number: within 3% of the exact value for p <= 0.999 (1.2% from dof 5 on)."""
    z = NormalDist().inv_cdf(p)
    c = 2 / (9 * dof)
    return dof * max(1 - c + z * np.sqrt(c), 0.0) ** 3

"""Sample paths from quantile forecasts.

Each step's marginal is the model's quantile function (on a fine grid of levels); the steps of a
path are tied by a Gaussian copula with AR(1) correlation `rho`, estimated per series from the
model's own backtest errors there: how much an error at one step carries into the next.
"""

from __future__ import annotations

import numpy as np
import torch

from tsfm_core.backtest import anomaly_scores
from tsfm_core.predict import ForecastResult
from tsfm_core.quantiles import interpolate

# 0.1% .. 99.9%: fine enough that linear interpolation between levels is smooth.
DEFAULT_GRID = [0.001, 0.005] + [round(0.01 * i, 2) for i in range(1, 100)] + [0.995, 0.999]
# Used when a series is too short to backtest: forecast errors of neighbouring steps are
# typically strongly correlated (errors accumulate along a path).
DEFAULT_RHO = 0.8


def error_correlation(actual: np.ndarray, median: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                      level: float) -> float | None:
    """Lag-1 correlation of standardized errors pooled over backtest windows ([W, H] each), in
    [0, 0.99]; None with fewer than 8 observed pairs."""
    scores = anomaly_scores(actual, median, lo, hi, level)
    observed = ~np.isnan(actual)
    pairs = (observed[:, :-1] & observed[:, 1:]).ravel()
    a, b = scores[:, :-1].ravel()[pairs], scores[:, 1:].ravel()[pairs]
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    if pairs.sum() < 8 or denominator == 0:
        return None
    return float(np.clip((a * b).sum() / denominator, 0.0, 0.99))


def sample_paths(levels: list[float], values: np.ndarray, rho: float, n_paths: int,
                 rng: np.random.Generator) -> np.ndarray:
    """values [L, H]: the quantile function at `levels` (increasing) per step -> paths [n_paths, H].
    Beyond the outermost levels a draw takes the outermost value."""
    horizon = values.shape[1]
    eps = rng.standard_normal((n_paths, horizon))
    z = np.empty_like(eps)
    z[:, 0] = eps[:, 0]
    scale = np.sqrt(1 - rho * rho)
    for t in range(1, horizon):
        z[:, t] = rho * z[:, t - 1] + scale * eps[:, t]
    u = torch.special.ndtr(torch.from_numpy(z)).numpy()
    sorted_values = np.sort(values, axis=0)
    return np.stack([np.interp(u[:, t], levels, sorted_values[:, t]) for t in range(horizon)], axis=1)


def sample_forecast(result: ForecastResult, n_paths: int, seed: int | None = None,
                    rho: float = DEFAULT_RHO) -> np.ndarray:
    """Sample paths [n_paths, H, C] from a forecast's whole predictive distribution.

    Uses the model's own quantile heads when the result carries them (else its requested levels),
    extended to DEFAULT_GRID by normal-score interpolation so draws reach past the outermost
    levels instead of piling up at them; steps are tied by the AR(1) copula of `sample_paths`, so
    a path is coherent over time. `seed=None` draws fresh randomness on every call.
    """
    if result.trained is not None and result.trained_levels is not None:
        levels, values = tuple(result.trained_levels), result.trained
    else:
        levels, values = tuple(result.levels), result.quantiles
    rng = np.random.default_rng(seed)
    if len(levels) < 2:  # a single level carries no spread to draw from
        return np.repeat(values[:1], n_paths, axis=0)
    order = np.argsort(levels)
    levels, values = tuple(levels[i] for i in order), values[order]
    dense = interpolate(np.transpose(values, (2, 0, 1)), levels, DEFAULT_GRID)  # [C, G, H]
    return np.stack([sample_paths(DEFAULT_GRID, dense[c], rho, n_paths, rng) for c in range(dense.shape[0])], axis=-1)

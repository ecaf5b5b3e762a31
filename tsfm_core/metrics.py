"""Forecast accuracy metrics, NaN-aware, for evaluation and training reports."""

from __future__ import annotations

import numpy as np


def mae(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.nanmean(np.abs(y - yhat)))


def rmse(y: np.ndarray, yhat: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean((y - yhat) ** 2)))


def smape(y: np.ndarray, yhat: np.ndarray) -> float:
    """Symmetric MAPE in percent (0-200), the M3/M4 definition."""
    denom = np.abs(y) + np.abs(yhat)
    ratio = np.where(denom > 0, 2 * np.abs(y - yhat) / np.where(denom > 0, denom, 1), 0.0)
    return float(100 * np.nanmean(ratio))


def naive_scale(y_train: np.ndarray, season: int = 1) -> float:
    """The in-sample seasonal-naive MAE (MASE's denominator); lag 1 for histories of a season or
    less. NaN when it is not a positive finite number (a constant history)."""
    y_train = np.asarray(y_train, dtype=np.float64)
    m = season if len(y_train) > season else 1
    scale = float(np.nanmean(np.abs(y_train[m:] - y_train[:-m]))) if len(y_train) > m else float("nan")
    return scale if np.isfinite(scale) and scale > 0 else float("nan")


def mase(y_train: np.ndarray, y: np.ndarray, yhat: np.ndarray, season: int = 1) -> float:
    """MAE scaled by the in-sample seasonal-naive MAE; falls back to lag 1 for short histories."""
    return mae(y, yhat) / naive_scale(y_train, season)


def quantile_loss(y: np.ndarray, q_pred: np.ndarray, levels: list[float]) -> np.ndarray:
    """Pinball loss per level, summed over time: q_pred [L, H], y [H] -> [L]."""
    diff = y[None, :] - q_pred
    q = np.asarray(levels)[:, None]
    return np.nansum(np.maximum(q * diff, (q - 1) * diff), axis=1)


def wql(ys: list[np.ndarray], q_preds: list[np.ndarray], levels: list[float]) -> float:
    """Weighted quantile loss over a dataset (a CRPS approximation): 2*sum pinball / sum |y|, mean over levels."""
    total = sum(quantile_loss(y, q, levels) for y, q in zip(ys, q_preds))
    scale = sum(np.nansum(np.abs(y)) for y in ys)
    return float(np.mean(2 * np.asarray(total) / scale))


def coverage(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.nanmean((y >= lo) & (y <= hi)))

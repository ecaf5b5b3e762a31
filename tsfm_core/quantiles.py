"""Quantile levels the model was not trained on, by interpolation in normal-score space.

Interpolating linearly in z = Phi^-1(q) is exact for Gaussian predictive distributions and gives a
sensible tail extrapolation (e.g. q=0.025 from the trained 0.1..0.9 heads), where linear
interpolation in q would have nothing to extrapolate with.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

_NORMAL = NormalDist()


def level_bounds(level: float) -> tuple[float, float]:
    """Central `level`% interval -> its (lower, upper) quantile levels."""
    return 0.5 - level / 200, 0.5 + level / 200


def validate_levels(levels: list[float]) -> None:
    for q in levels:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level {q} must be strictly between 0 and 1")


def interpolate(values: np.ndarray, trained: tuple[float, ...], levels: list[float]) -> np.ndarray:
    """values [..., Q_trained, H] sorted along Q -> [..., len(levels), H]."""
    validate_levels(levels)
    z_trained = np.array([_NORMAL.inv_cdf(q) for q in trained])
    out = []
    for q in levels:
        z = _NORMAL.inv_cdf(q)
        # Segment [i, i+1] that brackets z, clamped to the outermost segment for extrapolation.
        i = int(np.clip(np.searchsorted(z_trained, z) - 1, 0, len(trained) - 2))
        w = (z - z_trained[i]) / (z_trained[i + 1] - z_trained[i])
        out.append(values[..., i, :] * (1 - w) + values[..., i + 1, :] * w)
    return np.stack(out, axis=-2)


def interpolation_matrix(trained: tuple[float, ...], levels: list[float]) -> np.ndarray:
    """[Q_trained, L] weights W with values_at_levels = W.T @ trained_values: `interpolate` as a
    matrix, for applying it to tensors (the rollout does this on the model's device)."""
    eye = np.eye(len(trained))[:, :, None]  # each trained level alone, as a one-step forecast
    return interpolate(eye, trained, levels)[:, :, 0]


def midpoint_levels(n: int) -> list[float]:
    """n equally likely levels (i + 0.5) / n: points that represent a distribution with equal weight."""
    return [(i + 0.5) / n for i in range(n)]

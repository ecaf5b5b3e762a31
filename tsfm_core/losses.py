"""Training losses, all masked by missing targets.

`default` is the pinball (quantile) loss over every quantile head: robust to outliers and it keeps
the whole distribution calibrated. The point losses (mae, mse, rmse, mape, smape, poisson) score the
median head and add the pinball term so the other quantiles stay calibrated while the median is
pulled towards the chosen point objective. mape/smape/poisson are computed in original units, where
they are defined; the others in scaled units so every series weighs the same.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LOSSES = ("default", "mae", "mse", "rmse", "mape", "smape", "poisson")
EPS = 1e-6


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def pinball(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, quantiles: torch.Tensor) -> torch.Tensor:
    """pred [..., Q, H], target/mask [..., H]; mean over observed points and quantiles, x2 so q=.5 equals MAE."""
    diff = target.unsqueeze(-2) - pred
    q = quantiles.view(*([1] * (pred.dim() - 2)), -1, 1)
    loss = torch.maximum(q * diff, (q - 1) * diff)
    return 2 * _masked_mean(loss.mean(dim=-2), mask)


def point_loss(name: str, median: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """median/target/mask are scaled [B, ..., H]; loc/scale [B, 1] map them back to original units."""
    if name == "mae":
        return _masked_mean((median - target).abs(), mask)
    if name == "mse":
        return _masked_mean((median - target) ** 2, mask)
    if name == "rmse":
        return _masked_mean((median - target) ** 2, mask).add(EPS).sqrt()
    shape = (-1,) + (1,) * (median.dim() - 1)
    loc, scale = loc.reshape(shape), scale.reshape(shape)
    pred_raw, target_raw = median * scale + loc, target * scale + loc
    if name == "mape":
        # Denominator floored at the series' scale so near-zero actuals don't explode the loss.
        denom = torch.maximum(target_raw.abs(), scale)
        return _masked_mean((pred_raw - target_raw).abs() / denom, mask)
    if name == "smape":
        denom = (pred_raw.abs() + target_raw.abs()).clamp(min=EPS)
        return _masked_mean(2 * (pred_raw - target_raw).abs() / denom, mask)
    if name == "poisson":
        rate = pred_raw.clamp(min=EPS)
        nll = rate - target_raw.clamp(min=0) * torch.log(rate)
        # Subtract the loss at the optimum (rate = target) and rescale: a deviance per unit of scale.
        best = target_raw.clamp(min=EPS)
        nll_best = best - target_raw.clamp(min=0) * torch.log(best)
        return _masked_mean((nll - nll_best) / scale, mask)
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")


def forecast_loss(name: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                  quantiles: torch.Tensor, median_index: int, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """pred [B, N, Q, H] (scaled), target/mask [B, N, H]."""
    quantile_term = pinball(pred, target, mask, quantiles)
    if name == "default":
        return quantile_term
    median = pred[..., median_index, :]
    return point_loss(name, median, target, mask, loc, scale) + quantile_term


def get_loss(name: str) -> Callable[..., torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
    return lambda *args, **kw: forecast_loss(name, *args, **kw)

"""Scaling and patching: turns raw contexts into the model's (values, mask) patches and back.

Scaling is per series and robust: location is the median of the observed context and scale the
mean absolute deviation around it, so a few outliers neither shift nor blow up the scale. Constant
and all-missing contexts fall back to a scale of 1 instead of dividing by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# Scaled values beyond this are clipped: they are outliers the model has never seen and would
# only destabilise attention.
SCALED_CLIP = 50.0
MIN_SCALE = 1e-6
# The largest |value| the model accepts in a context or covariate. The scaler sums deviations and
# the inverse multiplies by up to SCALED_CLIP scales, in float32 (max 3.4e38): a context of 4,096
# values within 1e30 stays finite through both. Servers refuse larger values before they get here.
MAX_ABS_INPUT = 1e30


@dataclass
class Scaler:
    loc: torch.Tensor  # [B, 1]
    scale: torch.Tensor  # [B, 1]

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.loc) / self.scale).clamp(-SCALED_CLIP, SCALED_CLIP)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse transform; accepts any trailing shape after the batch axis."""
        shape = (-1,) + (1,) * (y.dim() - 1)
        return y * self.scale.reshape(shape) + self.loc.reshape(shape)


def fit_scaler(context: torch.Tensor) -> Scaler:
    """Robust per-row location/scale of a NaN-padded [B, T] context."""
    observed = ~torch.isnan(context)
    loc = torch.nanmedian(context, dim=1, keepdim=True).values
    loc = torch.where(torch.isnan(loc), torch.zeros_like(loc), loc)
    dev = torch.where(observed, (context - loc).abs(), torch.zeros_like(context))
    count = observed.sum(dim=1, keepdim=True).clamp(min=1)
    scale = dev.sum(dim=1, keepdim=True) / count
    # A constant series has zero deviation: fall back to its magnitude, then to 1.
    magnitude = loc.abs() * 0.1
    scale = torch.where(scale > MIN_SCALE, scale, magnitude)
    scale = torch.where(scale > MIN_SCALE, scale, torch.ones_like(scale))
    return Scaler(loc=loc, scale=scale)


def left_pad(contexts: list[np.ndarray], length: int) -> torch.Tensor:
    """Stacks 1-D contexts into [B, length], keeping the most recent points, NaN on the left."""
    out = np.full((len(contexts), length), np.nan, dtype=np.float32)
    for i, c in enumerate(contexts):
        c = np.asarray(c, dtype=np.float32)[-length:]
        if len(c):
            out[i, length - len(c) :] = c
    return torch.from_numpy(out)


def patchify(scaled: torch.Tensor, patch_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] scaled values (NaN = missing) -> values [B, N, P] with NaN zeroed, mask [B, N, P].

    T is left-padded with NaN to a multiple of `patch_len` so the last patch ends at the last point.
    """
    batch, length = scaled.shape
    pad = (-length) % patch_len
    if pad:
        scaled = torch.cat([scaled.new_full((batch, pad), float("nan")), scaled], dim=1)
    patches = scaled.reshape(batch, -1, patch_len)
    mask = (~torch.isnan(patches)).to(scaled.dtype)
    return torch.nan_to_num(patches, nan=0.0), mask

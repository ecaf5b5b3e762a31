"""TimesFM 2.5 checkpoints through the official `timesfm` package (3.x, its PyTorch backend).

The directory is what `TimesFM_2p5_200M_torch.save_pretrained` / the Hugging Face snapshot of
google/timesfm-2.5-200m-pytorch holds: model.safetensors (+ a config.json of loader flags only).
The architecture is the package's fixed 200M definition, so the weights are loaded with the
package's own `load_checkpoint` (no hub call, no torch.compile: it is slow to warm on CPU).
TimesFM 2.0 and 1.0 checkpoints need the 1.x package and are not supported.

Decoding uses the flags Google recommends for 2.5 (normalised inputs, the continuous quantile head,
flip invariance, no quantile crossing, non-negative output for non-negative inputs); the continuous
head covers `output_quantile_len` steps (1024), so longer horizons use the per-patch quantile heads.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np

from tsfm_core.third_party.base import MissingExtra, ModelDescription, ThirdPartyForecaster
from tsfm_core.third_party.checkpoint_info import TIMESFM_CONTEXT, describe_checkpoint

EXTRA = "timesfm"
FAMILY = "timesfm-2.5"
WEIGHTS = "model.safetensors"
# Parameter-name prefix that tells a TimesFM 2.5 state dict from other safetensors files.
STATE_PREFIX = "stacked_xf."


def _import():
    try:
        import timesfm
        from timesfm import configs
        from timesfm.timesfm_2p5 import timesfm_2p5_torch
    except ImportError as exc:
        raise MissingExtra("TimesFM", EXTRA, exc) from exc
    return timesfm, configs, timesfm_2p5_torch


def is_timesfm_dir(model_dir: str | Path) -> bool:
    """True when `model_dir/model.safetensors` holds a TimesFM 2.5 state dict (reads names only)."""
    path = Path(model_dir) / WEIGHTS
    if not path.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        names = f.keys()  # safe_open is not iterable itself
    return any(k.startswith(STATE_PREFIX) for k in names)


class TimesFMForecaster(ThirdPartyForecaster):
    """A loaded TimesFM 2.5 checkpoint. `context_length` (a multiple of the input patch, at most
    16384 minus the horizon) bounds what the model reads; every series is padded to it, so a longer
    one costs every request more."""

    family = FAMILY

    def __init__(self, model_dir: str | Path, device: str = "cpu", context_length: int = TIMESFM_CONTEXT):
        _, self._configs, t25 = _import()
        import torch

        self._torch = torch
        self.model_dir = Path(model_dir)
        self.wrapper = t25.TimesFM_2p5_200M_torch(torch_compile=False)
        self.module = self.wrapper.model
        self.wrapper.load_checkpoint(str(self.model_dir / WEIGHTS), torch_compile=False)
        self.module.device = torch.device(device)  # the package picks cuda:0 whenever it sees one
        self.module.to(self.module.device)
        patch = self.module.p
        self._context = max(patch, math.ceil(context_length / patch) * patch)
        self._compiled_for: tuple[int, bool, int] | None = None
        # compile() swaps the wrapper's decode function: one forecast at a time per loaded model.
        self._lock = threading.Lock()

    @property
    def max_context(self) -> int:
        return self._context

    @property
    def trained_levels(self) -> tuple[float, ...]:
        return tuple(float(q) for q in self.module.config.quantiles)

    def describe(self) -> ModelDescription:
        return describe_checkpoint(self.model_dir, FAMILY, self._context)

    def pass_key(self, horizon: int) -> object:
        # Within the continuous quantile head's reach, a longer decode leaves the first steps as they are.
        return math.ceil(horizon / self.module.o) * self.module.o <= self.module.os

    def _compile(self, horizon: int, batch: int) -> None:
        """(Re)builds the package's decoder for horizons up to `horizon` (rounded to output patches)
        and `batch` series a pass. Cheap (no torch.compile): a closure over the flags."""
        max_horizon = math.ceil(horizon / self.module.o) * self.module.o
        continuous = max_horizon <= self.module.os
        key = (max_horizon, continuous, batch)
        if self._compiled_for == key:
            return
        self.wrapper.compile(self._configs.ForecastConfig(
            max_context=self._context, max_horizon=max_horizon, per_core_batch_size=batch,
            normalize_inputs=True, use_continuous_quantile_head=continuous, force_flip_invariance=True,
            infer_is_positive=True, fix_quantile_crossing=True))
        self._compiled_for = key

    def predict_trained(self, contexts: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
        """1-D contexts -> (quantiles [B, 9, horizon] at 0.1..0.9, mean [B, horizon])."""
        if self._context + horizon > self.module.config.context_limit:
            raise ValueError(f"TimesFM reads at most {self.module.config.context_limit} steps: context "
                             f"{self._context} + horizon {horizon} is too long")
        inputs = [_finite_history(np.asarray(c, dtype=np.float64)) for c in contexts]
        with self._lock, self._torch.no_grad():
            # The package pads the list to a whole number of batches: a batch no larger than the
            # request keeps 3 series from costing a pass over 256.
            self._compile(horizon, min(self.batch_size, len(inputs)))
            # forecast() pads its list argument in place up to the batch size: hand it a copy.
            _, full = self.wrapper.forecast(horizon, list(inputs))  # [B, H, 1 + Q]: mean, then quantiles
        quantiles = np.sort(np.transpose(full[..., 1:], (0, 2, 1)), axis=1)
        return quantiles.astype(np.float64), full[..., 0].astype(np.float64)


def _finite_history(y: np.ndarray) -> np.ndarray:
    """The package strips leading NaNs and interpolates inner ones, but an all-NaN or empty
    context would reach the model as NaN: such a series is read as a single zero instead."""
    return y if np.isfinite(y).any() else np.zeros(1)

"""Training windows: random (context, future) slices of series, as model-ready tensors.

Each position of the patched context is trained to predict the `output_patch_len` steps after it
(decoder-only training), so one window gives N training targets. Contexts are drawn with random
lengths, many of them short, because real users send short series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tsfm_core.model import ModelConfig
from tsfm_core.tokenizer import fit_scaler, patchify


@dataclass
class TrainingBatch:
    patches: torch.Tensor  # [B, N, P]
    mask: torch.Tensor  # [B, N, P]
    target: torch.Tensor  # [B, N, H] scaled, NaN zeroed
    target_mask: torch.Tensor  # [B, N, H]
    loc: torch.Tensor  # [B, 1]
    scale: torch.Tensor  # [B, 1]

    @property
    def n_points(self) -> int:
        """Observed points the batch trains on: its contexts plus the targets after them (the last
        position's target is the only one reaching past the context)."""
        return int(self.mask.sum().item() + self.target_mask[:, -1].sum().item())

    def to(self, device: torch.device | str) -> "TrainingBatch":
        return TrainingBatch(*(getattr(self, f).to(device) for f in self.__dataclass_fields__))


SHORT_PATCHES = 8


def _context_cap(rng: np.random.Generator, cfg: ModelConfig, longest: int) -> int:
    """Half the batches hold short contexts (up to 8 patches) and are cut to that width, which
    trains short-history behaviour and saves the compute of padding them to max_context. No batch
    is wider than the longest context the series allow (`longest` points, rounded up to a patch):
    padding is masked from attention, so it would only cost time (inference pads the same way)."""
    short = SHORT_PATCHES * cfg.patch_len
    cap = short if short < cfg.max_context and rng.random() < 0.5 else cfg.max_context
    return min(cap, max(cfg.patch_len, -(-longest // cfg.patch_len) * cfg.patch_len))


def sample_batch(series: list[np.ndarray], batch_size: int, cfg: ModelConfig, rng: np.random.Generator,
                 min_future: int = 1) -> TrainingBatch:
    """Draws `batch_size` windows from 1-D float arrays (NaN = missing)."""
    usable = [s for s in series if len(s) > min_future]
    if not usable:
        raise ValueError(f"no series has more than {min_future} points to train on")
    longest = max(len(s) for s in usable) - min_future
    horizon, context_cap = cfg.output_patch_len, _context_cap(rng, cfg, longest)
    contexts = np.full((batch_size, context_cap + horizon), np.nan, dtype=np.float32)
    for row in range(batch_size):
        s = usable[int(rng.integers(len(usable)))]
        # The cut leaves at least min_future points after the context.
        cut = int(rng.integers(1, len(s) - min_future + 1))
        ctx_len = max(1, min(int(rng.integers(cfg.patch_len, context_cap + 1)), cut))
        window = s[cut - ctx_len : cut + horizon]
        contexts[row, context_cap - ctx_len : context_cap - ctx_len + len(window)] = window
    full = torch.from_numpy(contexts)
    scaler = fit_scaler(full[:, :context_cap])
    scaled = scaler.transform(full)
    patches, mask = patchify(scaled[:, :context_cap], cfg.patch_len)
    future = scaled[:, cfg.patch_len :].unfold(1, horizon, cfg.patch_len)[:, : patches.shape[1]]
    target_mask = (~torch.isnan(future)).float()
    # Positions whose own patch is padding carry no information: they are not trained.
    target_mask = target_mask * (mask.sum(-1, keepdim=True) > 0).float()
    return TrainingBatch(patches, mask, torch.nan_to_num(future, nan=0.0), target_mask,
                         scaler.loc, scaler.scale)

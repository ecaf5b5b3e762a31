"""Validation data for fine-tuning: which windows are held out, and how a model scores on them.

A fine-tune is judged on windows it never trained on: the caller's own validation series, or by
default the last window(s) of each training series (training then sees only the data before
them). Every window is scored in one forward pass: the model's first output patch from the end of
the window's context, so the validation horizon is at most `output_patch_len`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tsfm_core.losses import get_loss
from tsfm_core.model import ModelConfig, PatchTransformer
from tsfm_core.tokenizer import fit_scaler, left_pad, patchify

# A held-out window shorter than this says too little to choose weights by.
MIN_VALIDATION_HORIZON = 4
# Scoring more windows than this adds cost but little certainty about which weights to keep.
MAX_WINDOWS = 512


@dataclass
class Window:
    """One forecast origin: predict `future [h]` from `context [T]` (1-D, NaN = missing)."""

    context: np.ndarray
    future: np.ndarray


@dataclass
class ValidationScores:
    loss: float  # the fine-tune's own loss (cfg.loss), scaled units, mean over observed points
    mase: float  # mean over windows of MAE / in-context lag-1 naive MAE (the median head)

    def to_dict(self) -> dict:
        return {"loss": self.loss, "mase": self.mase}


def window_horizon(length: int, horizon: int, n_windows: int) -> int:
    """The horizon a series of `length` points can give: at most `horizon`, and small enough that
    the data left for training is at least twice what is held out. 0: too short to hold out."""
    h = min(horizon, length // (n_windows + 2))
    return h if h >= MIN_VALIDATION_HORIZON else 0


def holdout_split(series: list[np.ndarray], horizon: int, n_windows: int = 1) -> tuple[list[np.ndarray], list[Window]]:
    """Splits training series [T_i] into what training may see and the last `n_windows` windows.

    Series too short to spare a window train whole. Window k of a series forecasts the k-th last
    block of h points; its context holds the blocks before it (held out from training but not
    from the context, as at forecast time).
    """
    train, windows = [], []
    for s in series:
        s = np.asarray(s, dtype=np.float32)
        h = window_horizon(len(s), horizon, n_windows)
        if h == 0:
            train.append(s)
            continue
        cut = len(s) - n_windows * h
        train.append(s[:cut])
        windows += _observed([Window(s[:end], s[end : end + h]) for end in range(cut, len(s), h)])
    return train, windows


def validation_windows(validation: dict[str, np.ndarray], training: dict[str, np.ndarray], horizon: int,
                       n_windows: int = 1) -> list[Window]:
    """Windows from the caller's validation series, keyed by series id.

    A validation series whose id is also a training series continues it: its points are forecast
    (in blocks of at most `horizon`) from the training series plus the validation points before
    them. Any other validation series is scored on its own last `n_windows` windows.
    """
    windows: list[Window] = []
    for uid, values in validation.items():
        values = np.asarray(values, dtype=np.float32)
        if uid in training:
            full = np.concatenate([np.asarray(training[uid], dtype=np.float32), values])
            start = len(full) - len(values)
            windows += [Window(full[:end], full[end : end + horizon]) for end in range(start, len(full), horizon)]
        else:
            windows += holdout_split([values], horizon, n_windows)[1]
    return _observed(windows)


def split_for_validation(series: list[np.ndarray] | dict[str, np.ndarray], horizon: int, n_windows: int,
                         validation: dict[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], list[Window]]:
    """(series training may see, validation windows): the caller's validation series when given
    (training keeps every point), else the last `n_windows` windows of each series (0: none)."""
    named = series if isinstance(series, dict) else {}  # without ids nothing can be continued
    train = list(series.values()) if isinstance(series, dict) else list(series)
    if validation:
        windows = validation_windows(validation, named, horizon, max(1, n_windows))
    elif n_windows > 0:
        train, windows = holdout_split(train, horizon, n_windows)
    else:
        windows = []
    return train, _evenly(windows, MAX_WINDOWS)


def _evenly(windows: list[Window], cap: int) -> list[Window]:
    """At most `cap` windows spread over the list, so evaluating stays a fraction of a step's cost
    on large collections (deterministic: the same data gives the same validation set)."""
    if len(windows) <= cap:
        return windows
    return [windows[i] for i in np.linspace(0, len(windows) - 1, cap).round().astype(int)]


def _observed(windows: list[Window]) -> list[Window]:
    """Drops windows with nothing to score or nothing to forecast from."""
    return [w for w in windows if np.isfinite(w.future).any() and np.isfinite(w.context).any()]


@dataclass
class ValidationBatch:
    """Every window as model-ready tensors (B windows, H = longest window horizon)."""

    patches: torch.Tensor  # [B, N, P] scaled contexts
    mask: torch.Tensor  # [B, N, P]
    target: torch.Tensor  # [B, 1, H] scaled futures, NaN zeroed
    target_mask: torch.Tensor  # [B, 1, H]
    loc: torch.Tensor  # [B, 1]
    scale: torch.Tensor  # [B, 1]
    future: np.ndarray  # [B, H] original units, NaN past each window's horizon
    naive_mae: np.ndarray  # [B] MASE denominators

    def __len__(self) -> int:
        return len(self.future)


def build_batch(windows: list[Window], cfg: ModelConfig) -> ValidationBatch:
    """Scales and patches the windows exactly as `Forecaster` does for a one-patch horizon."""
    if not windows:
        raise ValueError("no validation windows")
    horizon = max(len(w.future) for w in windows)
    if horizon > cfg.output_patch_len:
        raise ValueError(f"validation horizon {horizon} exceeds the model's output patch ({cfg.output_patch_len})")
    contexts = [w.context[-cfg.max_context :] for w in windows]
    width = -(-max(len(c) for c in contexts) // cfg.patch_len) * cfg.patch_len
    raw = left_pad(contexts, width)
    scaler = fit_scaler(raw)
    patches, mask = patchify(scaler.transform(raw), cfg.patch_len)
    future = np.full((len(windows), horizon), np.nan, dtype=np.float32)
    for i, w in enumerate(windows):
        future[i, : len(w.future)] = w.future
    scaled_future = scaler.transform(torch.from_numpy(future))
    target_mask = (~torch.isnan(scaled_future)).float()
    naive = np.array([_naive_mae(c) for c in contexts])
    return ValidationBatch(patches, mask, torch.nan_to_num(scaled_future, nan=0.0)[:, None],
                           target_mask[:, None], scaler.loc, scaler.scale, future, naive)


def _naive_mae(context: np.ndarray) -> float:
    """In-context lag-1 naive MAE; a flat or too-short context falls back to its mean magnitude
    so MASE stays finite (the comparison base vs finetuned is what matters, not the unit)."""
    diffs = np.abs(np.diff(context.astype(np.float64)))
    scale = np.nanmean(diffs) if np.isfinite(diffs).any() else np.nan
    if not np.isfinite(scale) or scale <= 0:
        scale = np.nanmean(np.abs(context)) if np.isfinite(context).any() else 1.0
    return float(scale) if np.isfinite(scale) and scale > 0 else 1.0


@torch.no_grad()
def score(model: PatchTransformer, batch: ValidationBatch, loss_name: str) -> ValidationScores:
    """The model's loss and MASE on every window; leaves the model in eval mode."""
    model.eval()
    cfg = model.config
    device = next(model.parameters()).device
    horizon = batch.future.shape[1]
    pred = model(batch.patches.to(device), batch.mask.to(device))[:, -1:, :, :horizon]  # [B, 1, Q, H]
    quantiles = torch.tensor(cfg.quantiles, device=device)
    loss = get_loss(loss_name)(pred, batch.target.to(device), batch.target_mask.to(device), quantiles,
                               cfg.median_index, batch.loc.to(device), batch.scale.to(device))
    # Sorted like Forecaster's output, so the median scored is the median served.
    median = pred[:, 0].sort(dim=1).values[:, cfg.median_index].cpu()
    median = (median * batch.scale + batch.loc).numpy()
    abs_err = np.abs(median - batch.future)
    per_window = np.nanmean(abs_err, axis=1) / batch.naive_mae
    return ValidationScores(loss=float(loss.item()), mase=float(np.mean(per_window)))

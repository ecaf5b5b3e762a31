"""Chronos, Chronos-Bolt and Chronos-2 checkpoints through the official `chronos-forecasting` package.

The directory is what `save_pretrained` / a Hugging Face snapshot holds (config.json +
model.safetensors); `BaseChronosPipeline.from_pretrained` picks the pipeline class the config
names. Forecasts come from the pipeline's own `predict` (its long-horizon heuristic included), so
what we serve is what the package computes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from tsfm_core.third_party.base import MissingExtra, ModelDescription, ThirdPartyForecaster
from tsfm_core.third_party.checkpoint_info import SAMPLED_LEVELS, describe_checkpoint

EXTRA = "chronos"
# The pipeline class a config names -> our family name.
PIPELINE_FAMILIES = {"ChronosPipeline": "chronos", "ChronosBoltPipeline": "chronos-bolt",
                     "Chronos2Pipeline": "chronos-2"}


def _import():
    try:
        import chronos
        import torch
    except ImportError as exc:
        raise MissingExtra("Chronos", EXTRA, exc) from exc
    return chronos, torch


class ChronosForecaster(ThirdPartyForecaster):
    """One loaded Chronos-family pipeline; `family` is "chronos", "chronos-bolt" or "chronos-2"."""

    def __init__(self, model_dir: str | Path, device: str = "cpu", seed: int = 0):
        chronos, torch = _import()
        self._torch = torch
        self.model_dir = Path(model_dir)
        self.device = device
        self.seed = seed  # the original Chronos samples: a fixed seed keeps its answers reproducible
        self.pipeline = chronos.BaseChronosPipeline.from_pretrained(
            str(self.model_dir), device_map=device, dtype=torch.float32)
        self.family = PIPELINE_FAMILIES.get(type(self.pipeline).__name__)
        if self.family is None:
            raise ValueError(f"{model_dir}: unsupported Chronos pipeline {type(self.pipeline).__name__}")
        self.pipeline.inner_model.eval()

    @property
    def max_context(self) -> int:
        return int(self.pipeline.model_context_length)

    @property
    def trained_levels(self) -> tuple[float, ...]:
        if self.family == "chronos":
            return SAMPLED_LEVELS
        return tuple(float(q) for q in self.pipeline.quantiles)

    def describe(self) -> ModelDescription:
        return describe_checkpoint(self.model_dir, self.family)

    def predict_trained(self, contexts: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
        """1-D contexts -> (quantiles [B, Q, horizon] at `trained_levels`, mean [B, horizon] or None)."""
        torch = self._torch
        quantiles, means = [], []
        with warnings.catch_warnings(), torch.no_grad():
            # The package warns whenever horizon > max_horizon; describe() says so once instead.
            warnings.simplefilter("ignore", UserWarning)
            for i in range(0, len(contexts), self.batch_size):
                chunk = [torch.as_tensor(np.asarray(c, dtype=np.float32)) for c in contexts[i : i + self.batch_size]]
                q, m = self._predict_chunk(chunk, horizon)
                quantiles.append(q)
                means.append(m)
        mean = None if means[0] is None else np.concatenate(means)
        return np.sort(np.concatenate(quantiles), axis=1), mean

    def _predict_chunk(self, chunk: list, horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
        """<= batch_size 1-D tensors -> ([b, Q, horizon], [b, horizon] or None)."""
        torch = self._torch
        if self.family == "chronos-bolt":
            return self.pipeline.predict(chunk, prediction_length=horizon).numpy(), None
        if self.family == "chronos-2":
            # Each 1-D tensor is its own univariate task; cross_learning stays off so a series'
            # forecast does not depend on the others in its batch.
            out = self.pipeline.predict(chunk, prediction_length=horizon, batch_size=self.batch_size)
            return torch.cat(out, dim=0).numpy(), None  # each [1, Q, H]
        # The original Chronos: quantiles and mean of sampled paths, reproducible under a fixed seed
        # (fork_rng leaves the process's global generator as it was).
        with torch.random.fork_rng(devices=[] if self.device == "cpu" else None):
            torch.manual_seed(self.seed)
            q, mean = self.pipeline.predict_quantiles(chunk, prediction_length=horizon,
                                                      quantile_levels=list(SAMPLED_LEVELS))
        return q.permute(0, 2, 1).numpy(), mean.numpy()  # [b, H, Q] -> [b, Q, H]

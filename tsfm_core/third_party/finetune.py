"""Full fine-tuning of Chronos-Bolt and Chronos-2 checkpoints, from the same `FinetuneConfig` as ours.

Chronos-2 trains through the package's own `Chronos2Pipeline.fit`. Chronos-Bolt has no fit in the
package, but its model computes its own training loss (the quantile loss it was pretrained with)
when given a target, so a plain AdamW loop over random (context, next `prediction_length`) windows
trains it as its authors did. Only `steps`, `learning_rate`, `batch_size` and `seed` apply: every
weight is trained (no depth, LoRA, loss choice or validation split; the original Chronos and
TimesFM are not finetunable here). The result saves as a checkpoint `tsfm_core.third_party.load` reads.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tsfm_core.finetune import FinetuneConfig, NonFiniteTraining
from tsfm_core.third_party.chronos import ChronosForecaster

FINETUNABLE = ("chronos-bolt", "chronos-2")
FINETUNE_FILE = "tsfm_finetune.json"


def finetuned_copy(forecaster: ChronosForecaster, series: list[np.ndarray],
                   cfg: FinetuneConfig) -> tuple[ChronosForecaster, int]:
    """A tuned copy of `forecaster` (which is left as it was) and the points it trained on.
    `series`: 1-D histories (NaN = missing)."""
    family = getattr(forecaster, "family", None)
    if family not in FINETUNABLE:
        raise ValueError(f"fine-tuning is supported for {', '.join(FINETUNABLE)} checkpoints, not {family}")
    if cfg.lora is not None:
        raise ValueError("LoRA fine-tuning is not supported for third-party checkpoints (full fine-tuning only)")
    histories = [np.asarray(y, dtype=np.float32) for y in series if np.isfinite(y).sum() >= 2]
    if not histories:
        raise ValueError("fine-tuning needs a series with at least two observed values")
    tuned = copy.copy(forecaster)  # shares nothing mutable below: the pipeline is replaced
    if cfg.steps == 0:  # nothing moves (as for our own model); the copy serves the same weights
        return tuned, 0
    if family == "chronos-bolt":
        tuned.pipeline = type(forecaster.pipeline)(model=_train_bolt(forecaster, histories, cfg))
    else:
        tuned.pipeline = _fit_chronos2(forecaster, histories, cfg)
    tuned.pipeline.inner_model.eval()
    return tuned, int(sum(len(y) for y in histories))


def save(forecaster: ChronosForecaster, directory: str | Path, base_model: str | None = None,
         cfg: FinetuneConfig | None = None, metadata: dict | None = None) -> Path:
    """Writes the (tuned) checkpoint whole, as the package saves one (config.json +
    model.safetensors: it loads without its base), and beside it `FINETUNE_FILE` saying what it
    was tuned from and how (the package's config.json is left as the package wrote it)."""
    directory = Path(directory)
    forecaster.pipeline.inner_model.save_pretrained(directory)
    record = {"kind": "finetuned", "family": forecaster.family, "base_model": base_model,
              "finetune": None if cfg is None else cfg.to_dict(), **(metadata or {})}
    (directory / FINETUNE_FILE).write_text(json.dumps(record, indent=2))
    return directory


def _windows(histories: list[np.ndarray], context: int, horizon: int, batch: int, rng: np.random.Generator):
    """`batch` random (context [<= context], target [horizon]) pairs: a series, then a cutoff with
    at least one point on each side; targets past the end are NaN (the loss masks them)."""
    contexts, targets = [], []
    for k in rng.integers(len(histories), size=batch):
        y = histories[k]
        t = int(rng.integers(1, len(y)))
        contexts.append(y[max(0, t - context) : t])
        target = np.full(horizon, np.nan, dtype=np.float32)
        future = y[t : t + horizon]
        target[: len(future)] = future
        targets.append(target)
    return contexts, np.stack(targets)


def _train_bolt(forecaster: ChronosForecaster, histories: list[np.ndarray], cfg: FinetuneConfig):
    """A trained deep copy of the Chronos-Bolt model: `cfg.steps` AdamW steps on its own loss."""
    torch = forecaster._torch
    from chronos.utils import left_pad_and_stack_1D

    model = copy.deepcopy(forecaster.pipeline.model).train()
    settings = model.chronos_config
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate)
    rng = np.random.default_rng(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)  # dropout
        for _ in range(cfg.steps):
            contexts, targets = _windows(histories, settings.context_length, settings.prediction_length,
                                         cfg.batch_size, rng)
            context = left_pad_and_stack_1D([torch.from_numpy(c) for c in contexts]).to(model.device)
            loss = model(context=context, target=torch.from_numpy(targets).to(model.device)).loss
            if not torch.isfinite(loss):
                # The serving layer answers this 422 (the request's data or settings), as for our own model.
                raise NonFiniteTraining("Chronos-Bolt fine-tuning produced a non-finite loss")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def _fit_chronos2(forecaster: ChronosForecaster, histories: list[np.ndarray], cfg: FinetuneConfig):
    """The package's `Chronos2Pipeline.fit` (full mode); its checkpoint goes to a temporary directory
    (`save` writes the one we keep), predicting one output patch per window."""
    pipeline = forecaster.pipeline
    with tempfile.TemporaryDirectory() as scratch, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline.fit(
            histories, prediction_length=pipeline.model_output_patch_size, num_steps=cfg.steps,
            learning_rate=cfg.learning_rate, batch_size=cfg.batch_size, output_dir=scratch, min_past=1,
            remove_printer_callback=True, seed=cfg.seed, logging_strategy="no", disable_tqdm=True)

"""What to train (depth 1-5 or LoRA), the one train step every trainer shares, and a validated fine-tune."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from tsfm_core.losses import LOSSES, get_loss
from tsfm_core.model import PatchTransformer
from tsfm_core.model_selection import Agree, EarlyStopper, ValidationTracker, trainable_state  # noqa: F401 (re-exported)
from tsfm_core.validation import build_batch, split_for_validation
from tsfm_core.windows import TrainingBatch, sample_batch

# Documented hyperparameter bounds (the dialects answer a 422 beyond them): past these a LoRA
# update or an AdamW step is large enough to push weights to inf in a few steps.
MAX_LORA_ALPHA = 1024
MAX_LEARNING_RATE = 0.1


class NonFiniteTraining(RuntimeError):
    """The loss or the trained weights went inf/NaN: the run fails instead of saving a model of nulls."""


LORA_TARGETS = {
    "QV": ("q_proj", "v_proj"),
    "QKVO": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "QKVO_FFN": ("q_proj", "k_proj", "v_proj", "o_proj", "ffn.up", "ffn.down"),
}


@dataclass
class LoraConfig:
    rank: int = 8
    alpha: float = 16.0
    targets: str = "QV"

    def __post_init__(self) -> None:
        if self.targets not in LORA_TARGETS:
            raise ValueError(f"LoRA targets must be one of {sorted(LORA_TARGETS)}")
        if self.rank < 1:
            raise ValueError("LoRA rank must be >= 1")
        if not (math.isfinite(self.alpha) and 0 < self.alpha <= MAX_LORA_ALPHA):
            raise ValueError(f"LoRA alpha must be in (0, {MAX_LORA_ALPHA}]")


@dataclass
class FinetuneConfig:
    steps: int = 10
    depth: int = 1
    loss: str = "default"
    learning_rate: float = 1e-3
    batch_size: int = 32
    lora: LoraConfig | None = None
    seed: int = 0
    # Early stopping after `patience` evaluations without the watched loss improving by
    # `threshold`: the validation loss, or the training loss when there is no validation data.
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    eval_every: int | None = None  # steps between evaluations; None: steps // 10, at least 1, at most 10
    # Validation: the last `validation_windows` windows of `validation_horizon` points (default: the
    # model's output patch) of each series are held out unless the caller gives validation series.
    # 0 restores the old behaviour: train on everything and keep the last weights.
    validation_windows: int = 1
    validation_horizon: int | None = None
    # Fine-tuned weights replace the base only when their validation loss is this fraction lower.
    min_validation_gain: float = 0.01
    # The kept weights lie this fraction of the way from the base to the best on validation (when
    # that still beats the base there; model_selection.ValidationTracker.finish). 1: the best as is.
    weight_blend: float = 0.5
    # After validation picked a step k > 0, train again from the base on every point (the held-out
    # windows too) for k steps and keep that: validation then chooses whether and how long to train.
    refit: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraConfig(**self.lora)
        if not 1 <= self.depth <= 5:
            raise ValueError("finetune depth must be in 1..5")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}")
        if self.steps < 0:
            raise ValueError("steps must be >= 0")
        # 0 is allowed (nothing moves; tests of early stopping use it); the dialects ask for > 0.
        if not (math.isfinite(self.learning_rate) and 0 <= self.learning_rate <= MAX_LEARNING_RATE):
            raise ValueError(f"learning rate must be in [0, {MAX_LEARNING_RATE}]")
        if self.validation_windows < 0:
            raise ValueError("validation_windows must be >= 0")
        if not 0 <= self.min_validation_gain < 1:
            raise ValueError("min_validation_gain must be in [0, 1)")
        if not 0 < self.weight_blend <= 1:
            raise ValueError("weight_blend must be in (0, 1]")
        if self.eval_every is not None and self.eval_every < 1:
            raise ValueError("eval_every must be >= 1")

    @property
    def evaluation_interval(self) -> int:
        """Short runs are evaluated often so their best step can be found; long ones every 10 steps."""
        return self.eval_every or max(1, min(10, self.steps // 10))

    def to_dict(self) -> dict:
        return asdict(self)


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / rank) * B(A(x)); base frozen, B starts at zero so training starts at the base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        a = torch.randn(rank, base.in_features, generator=generator) / math.sqrt(base.in_features)
        self.lora_A = nn.Parameter(a)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling


def apply_lora(model: PatchTransformer, cfg: LoraConfig, seed: int = 0) -> None:
    """Wraps the targeted linear layers of every block in place and freezes everything else.

    A's initialisation comes from `seed`, not the global RNG, so a run's seed fixes it."""
    generator = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks:
        for path in LORA_TARGETS[cfg.targets]:
            owner_path, _, attr = path.rpartition(".")
            owner = block.attn if not owner_path else block.get_submodule(owner_path)
            setattr(owner, attr, LoRALinear(getattr(owner, attr), cfg.rank, cfg.alpha, generator))


def select_depth(model: PatchTransformer, depth: int) -> None:
    """1: output head; 2: + last quarter of blocks; 3: + last half; 4: all blocks; 5: everything."""
    n_layers = len(model.blocks)
    unfrozen_blocks = {1: 0, 2: math.ceil(n_layers / 4), 3: math.ceil(n_layers / 2), 4: n_layers, 5: n_layers}[depth]
    for p in model.parameters():
        p.requires_grad_(depth == 5)
    trainable: list[nn.Module] = [model.head, model.final_norm]
    trainable += list(model.blocks[n_layers - unfrozen_blocks :]) if unfrozen_blocks else []
    for module in trainable:
        for p in module.parameters():
            p.requires_grad_(True)


def prepare_for_finetune(model: PatchTransformer, cfg: FinetuneConfig) -> None:
    if cfg.lora is not None:
        apply_lora(model, cfg.lora, seed=cfg.seed)
    else:
        select_depth(model, cfg.depth)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: TrainingBatch, loss_name: str,
               autocast_dtype: torch.dtype | None = None) -> float:
    """One optimizer step; `model` may be wrapped (DistributedDataParallel) so gradients are all-reduced.

    `autocast_dtype` (e.g. torch.bfloat16 on a GPU) runs the forward in mixed precision; the loss
    is always computed in float32 because the pinball terms of small errors underflow in bf16.

    Raises NonFiniteTraining when the loss or a trained weight is no longer finite. It is checked
    here, the step every trainer shares (the in-replica finetune and the Ray Train loop), and after
    the update: weights are all-reduced, so every worker sees the same verdict and none waits on
    a collective the others left. A checkpoint saved after a step that returned is sound.
    """
    model.train()
    cfg = getattr(model, "module", model).config
    with torch.autocast(device_type=batch.patches.device.type, dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
        pred = model(batch.patches, batch.mask)
    pred = pred.float()
    quantiles = torch.tensor(cfg.quantiles, device=pred.device)
    loss = get_loss(loss_name)(pred, batch.target, batch.target_mask, quantiles, cfg.median_index,
                                batch.loc, batch.scale)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    value = float(loss.item())
    if not math.isfinite(value):
        raise NonFiniteTraining(f"training loss is {value}; lower the learning rate or lora_alpha, "
                                "or rescale the data")
    check_finite_weights(model)
    return value


def make_optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def check_finite_weights(model: nn.Module) -> None:
    """Raises NonFiniteTraining if any trained tensor holds inf/NaN (frozen ones cannot change)."""
    for name, p in model.named_parameters():
        if p.requires_grad and not torch.isfinite(p).all():
            raise NonFiniteTraining(f"trained weight {name} is not finite; "
                                    "lower the learning rate or lora_alpha, or rescale the data")


@dataclass
class StepRecord:
    step: int
    loss: float
    points: int  # observed points the step trained on (inputs and targets)
    valid_loss: float | None = None  # set at evaluations when there is validation data
    valid_mase: float | None = None


def run_finetune(model: PatchTransformer, series: list[np.ndarray], cfg: FinetuneConfig,
                 start_step: int = 0, optimizer: torch.optim.Optimizer | None = None,
                 device: str = "cpu", tracker: ValidationTracker | None = None) -> Iterator[StepRecord]:
    """Trains in place (already prepared with `prepare_for_finetune`), yielding after every step.

    With a `tracker`, the model is scored on validation before step 0 (unless resumed), at every
    evaluation and at the last step, and early stopping watches the validation loss; the caller
    restores the tracker's best weights. Without one, early stopping watches the training loss.
    Callers checkpoint or report between steps; the generator stops at `cfg.steps` or early stop.
    Raises NonFiniteTraining when a step's loss or the trained weights stop being finite, so no
    caller (the in-replica finetune, the Ray Train job) can save and mark ready a broken model.
    """
    optimizer = optimizer or make_optimizer(model, cfg.learning_rate)
    rng = np.random.default_rng(cfg.seed + start_step)
    stopper = EarlyStopper(cfg.early_stopping_patience, cfg.early_stopping_threshold)
    if tracker is not None and tracker.base is None:
        tracker.evaluate(model, 0)
    interval = cfg.evaluation_interval
    window_losses: list[float] = []
    for step in range(start_step + 1, cfg.steps + 1):
        batch = sample_batch(series, cfg.batch_size, model.config, rng).to(device)
        record = StepRecord(step=step, loss=train_step(model, optimizer, batch, cfg.loss), points=batch.n_points)
        window_losses.append(record.loss)
        stop = False
        if tracker is not None and (step % interval == 0 or step == cfg.steps):
            stop = tracker.evaluate(model, step)
            record.valid_loss, record.valid_mase = tracker.history[-1]["valid_loss"], tracker.history[-1]["valid_mase"]
        elif tracker is None and step % interval == 0:
            stop = stopper.should_stop(float(np.mean(window_losses)))
            window_losses = []
        yield record
        if stop:
            return


@dataclass
class FinetuneResult:
    model: PatchTransformer  # eval mode; the kept weights (best on validation, or the last)
    points: int  # observed points seen in training, summed over steps
    history: list[StepRecord]
    validation: dict | None  # ValidationTracker.summary(), or why there was none


def validation_tracker(model: PatchTransformer, series: list[np.ndarray] | dict[str, np.ndarray], cfg: FinetuneConfig,
                       validation: dict[str, np.ndarray] | None = None,
                       agree: Agree | None = None) -> tuple[list[np.ndarray], ValidationTracker | None, dict | None]:
    """(series training may see, the tracker or None, a note when validation is off).

    `series`/`validation` keyed by id let validation series continue training series of the same id.
    """
    horizon = min(cfg.validation_horizon or model.config.output_patch_len, model.config.output_patch_len)
    train, windows = split_for_validation(series, horizon, cfg.validation_windows, validation)
    if not windows:
        reason = "disabled" if cfg.validation_windows == 0 and not validation else "no series long enough to hold out"
        return train, None, {"windows": 0, "reason": reason}
    batch = build_batch(windows, model.config)
    return train, ValidationTracker(batch, cfg.loss, cfg.early_stopping_patience, cfg.early_stopping_threshold,
                                    agree, cfg.min_validation_gain, cfg.weight_blend), None


def finetune(model: PatchTransformer, series: list[np.ndarray] | dict[str, np.ndarray], cfg: FinetuneConfig,
             validation: dict[str, np.ndarray] | None = None, device: str = "cpu") -> FinetuneResult:
    """A finetuned copy of `model` (the original stays untouched), validated as `cfg` says."""
    tuned = copy.deepcopy(model)
    prepare_for_finetune(tuned, cfg)
    train, tracker, note = validation_tracker(tuned, series, cfg, validation)
    history = list(run_finetune(tuned, train, cfg, device=device, tracker=tracker))
    if tracker is None:
        return FinetuneResult(tuned.eval(), sum(r.points for r in history), history, note)
    if not cfg.refit:
        tracker.finish(tuned)
    summary = tracker.summary()
    points = sum(r.points for r in history)
    if cfg.refit and tracker.best_step > 0 and validation is None:
        # Same seed and step count on all the data: the recent points the split held out are often
        # the most informative ones. Its validation scores would be in-sample, so none are claimed.
        refit_cfg = replace(cfg, steps=tracker.best_step, validation_windows=0, early_stopping_patience=None)
        tuned = copy.deepcopy(model)
        prepare_for_finetune(tuned, refit_cfg)
        everything = list(series.values()) if isinstance(series, dict) else list(series)
        refit_history = list(run_finetune(tuned, everything, refit_cfg, device=device))
        points += sum(r.points for r in refit_history)
        summary["refit_steps"] = tracker.best_step
    else:
        tracker.restore_best(tuned)
    return FinetuneResult(tuned.eval(), points, history, summary)


def finetuned_copy(model: PatchTransformer, series: list[np.ndarray], cfg: FinetuneConfig) -> tuple[PatchTransformer, int]:
    """A finetuned copy of `model` and the points it trained on (see `finetune` for the report)."""
    result = finetune(model, series, cfg)
    return result.model, result.points

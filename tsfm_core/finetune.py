"""What to train (depth 1-5 or LoRA) and the one train step every trainer shares."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from tsfm_core.losses import LOSSES, get_loss
from tsfm_core.model import PatchTransformer
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
    # Early stopping on the training loss (evaluated every `eval_every` steps); None disables it.
    early_stopping_patience: int | None = None
    early_stopping_threshold: float = 0.0
    eval_every: int = 10

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

    def to_dict(self) -> dict:
        return asdict(self)


class LoRALinear(nn.Module):
    """y = base(x) + (alpha / rank) * B(A(x)); base frozen, B starts at zero so training starts at the base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling


def apply_lora(model: PatchTransformer, cfg: LoraConfig) -> None:
    """Wraps the targeted linear layers of every block in place and freezes everything else."""
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks:
        for path in LORA_TARGETS[cfg.targets]:
            owner_path, _, attr = path.rpartition(".")
            owner = block.attn if not owner_path else block.get_submodule(owner_path)
            setattr(owner, attr, LoRALinear(getattr(owner, attr), cfg.rank, cfg.alpha))


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
        apply_lora(model, cfg.lora)
    else:
        select_depth(model, cfg.depth)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a finetuned checkpoint stores: only what was trained."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k in names}


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
    points: int


class EarlyStopper:
    """Stops when the running loss fails to improve by `threshold` for `patience` evaluations."""

    def __init__(self, patience: int | None, threshold: float):
        self.patience, self.threshold = patience, threshold
        self.best, self.bad = math.inf, 0

    def should_stop(self, loss: float) -> bool:
        if self.patience is None:
            return False
        if loss < self.best - self.threshold:
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


def run_finetune(model: PatchTransformer, series: list[np.ndarray], cfg: FinetuneConfig,
                 start_step: int = 0, optimizer: torch.optim.Optimizer | None = None,
                 device: str = "cpu") -> Iterator[StepRecord]:
    """Trains in place (already prepared with `prepare_for_finetune`), yielding after every step.

    Callers checkpoint or report between steps; the generator stops at `cfg.steps` or early stop.
    Raises NonFiniteTraining when a step's loss or the trained weights stop being finite, so no
    caller (the in-replica finetune, the Ray Train job) can save and mark ready a broken model.
    """
    optimizer = optimizer or make_optimizer(model, cfg.learning_rate)
    rng = np.random.default_rng(cfg.seed + start_step)
    stopper = EarlyStopper(cfg.early_stopping_patience, cfg.early_stopping_threshold)
    window_losses: list[float] = []
    for step in range(start_step + 1, cfg.steps + 1):
        batch = sample_batch(series, cfg.batch_size, model.config, rng).to(device)
        loss = train_step(model, optimizer, batch, cfg.loss)
        window_losses.append(loss)
        yield StepRecord(step=step, loss=loss, points=batch.n_points)
        if step % cfg.eval_every == 0:
            if stopper.should_stop(float(np.mean(window_losses))):
                return
            window_losses = []


def finetuned_copy(model: PatchTransformer, series: list[np.ndarray], cfg: FinetuneConfig) -> tuple[PatchTransformer, int]:
    """A finetuned copy of `model` (the original stays untouched) and the points it trained on."""
    tuned = copy.deepcopy(model)
    prepare_for_finetune(tuned, cfg)
    points = sum(record.points for record in run_finetune(tuned, series, cfg))
    tuned.eval()
    return tuned, points

"""The per-worker training loop shared by pretraining and finetuning, run by Ray Train's TorchTrainer.

A worker builds its model, resumes from `ray.train.get_checkpoint()` when Ray Train restarts it
after a failure, trains with the shared `tsfm_core` train step on its shard of the data, and
reports its steps' metrics in groups about one Ray Train poll apart (see report_pacing) and a
checkpoint (trainable tensors + optimizer + step) with the first report `checkpoint_every` steps
after the previous one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray.train
import ray.train.torch
import torch

from train_jobs.report_pacing import ReportPacer, poll_interval_s, reduce_over_workers
from train_jobs.spec import PretrainSpec, TrainingSpec
from train_jobs.tracking import Tracking, open_tracking
from tsfm_core.checkpoint import load_model
from tsfm_core.datasets import read_table, table_to_series
from tsfm_core.finetune import (
    EarlyStopper,
    FinetuneConfig,
    make_optimizer,
    prepare_for_finetune,
    train_step,
    validation_tracker,
)
from tsfm_core.model import SIZES, ModelConfig, PatchTransformer, init_weights
from tsfm_core.model_selection import ValidationTracker
from tsfm_core.synthetic import generate_pool
from tsfm_core.windows import sample_batch

STATE_FILE = "train_state.pt"


def _unwrap(model: torch.nn.Module) -> PatchTransformer:
    return model.module if hasattr(model, "module") else model


@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of a run gets: the spec, where its data and base are, how it runs."""

    spec: TrainingSpec | PretrainSpec
    base_model_dir: str | None = None  # finetuning: the weights it starts from
    data_path: str | None = None  # finetuning: the series table
    validation_path: str | None = None  # finetuning: the caller's validation series, if any
    threads_per_worker: int = 1
    report_interval_s: float | None = None
    inject_failure_at_step: int | None = None
    model_dir: str | None = None  # finetuning: where the driver writes the kept model (tracking records it)

    @property
    def finetune(self) -> FinetuneConfig | None:
        return self.spec.finetune if isinstance(self.spec, TrainingSpec) else None


def _build_model(cfg: WorkerConfig) -> PatchTransformer:
    spec = cfg.spec
    if isinstance(spec, PretrainSpec):
        model = PatchTransformer(ModelConfig.from_dict({**SIZES[spec.size].to_dict(), **spec.model}))
        init_weights(model, seed=spec.seed)
        return model
    if spec.finetune.refit:
        raise ValueError("refit is only implemented by tsfm_core.finetune.finetune, not by the Ray Train loop")
    model = load_model(cfg.base_model_dir)
    prepare_for_finetune(model, spec.finetune)
    return model


def _worker_data(cfg: WorkerConfig, rank: int, world: int, model: PatchTransformer,
                 device: torch.device) -> tuple[list[np.ndarray], ValidationTracker | None, dict | None]:
    """(this worker's training series, the validation tracker, a note when there is none)."""
    spec = cfg.spec
    if isinstance(spec, PretrainSpec):
        real = [np.asarray(s, dtype=np.float32) for s in spec.real_series]
        pool = generate_pool(spec.pool_size // world, seed=spec.seed * 1000 + rank, real=real)
        return pool + real, None, None
    # Every worker splits all the series the same way (and scores all validation windows), then
    # trains on its shard; the mean over workers keeps their stop/keep decisions identical.
    named = table_to_series(read_table(cfg.data_path))
    validation = table_to_series(read_table(cfg.validation_path)) if cfg.validation_path else None
    series, tracker, note = validation_tracker(model, named, spec.finetune, validation,
                                               agree=lambda v: reduce_over_workers(v, world, device, "mean"))
    # Shard by series when there are enough; otherwise every worker samples all (different seeds).
    return (series[rank::world] if len(series) >= world else series), tracker, note


def _lr_at(step: int, spec: TrainingSpec | PretrainSpec) -> float:
    """Linear warmup then cosine decay to 10% (pretraining); constant for finetuning."""
    base = spec.learning_rate
    if not isinstance(spec, PretrainSpec):
        return base
    if step < spec.warmup_steps:
        return base * (step + 1) / spec.warmup_steps
    progress = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def _save_state(directory: Path, model: PatchTransformer, optimizer, step: int, history: list[dict],
                tracker: ValidationTracker | None) -> None:
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items() if k in trainable}
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "step": step, "history": history,
                "selection": tracker.state_dict() if tracker else None}, directory / STATE_FILE)


def train_loop_per_worker(cfg: WorkerConfig) -> None:
    torch.set_num_threads(max(1, cfg.threads_per_worker))
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    spec, finetune = cfg.spec, cfg.finetune
    model = _build_model(cfg)
    optimizer = make_optimizer(model, spec.learning_rate)
    start_step, history, state = 0, [], {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        start_step, history = state["step"], state["history"]
    model = ray.train.torch.prepare_model(model)
    device = ray.train.torch.get_device()
    series, tracker, validation_note = _worker_data(cfg, rank, world, _unwrap(model), device)
    # Experiment tracking (W&B, MLflow) from rank 0 only; a no-op unless the spec asks for it.
    tracking = open_tracking(spec, ctx.get_experiment_name(), cfg.model_dir) if rank == 0 else Tracking([])
    if tracker is not None and state.get("selection"):
        tracker.load_state_dict(state["selection"])
    elif tracker is not None:
        tracker.evaluate(_unwrap(model), 0)  # the base's scores, before any step
        tracking.log(0, tracker.history[-1])
    rng = np.random.default_rng(spec.seed * 7919 + rank * 104729 + start_step)
    loss_name = finetune.loss if finetune else "default"
    every = spec.checkpoint_every
    fail_at = cfg.inject_failure_at_step
    stopper = EarlyStopper(finetune.early_stopping_patience, finetune.early_stopping_threshold) if finetune else None
    interval = finetune.evaluation_interval if finetune else 0
    recent: list[float] = []
    pacer = ReportPacer(start_step, world, device, cfg.report_interval_s)
    last_checkpoint = start_step
    pending: list[dict] = []
    for step in range(start_step + 1, spec.steps + 1):
        if fail_at is not None and step == fail_at and checkpoint is None:
            # Fault injection for tests and drills: die like a killed worker, without cleanup. The
            # pause lets Ray Train's controller poll the checkpoints already reported, so the drill
            # exercises resuming rather than a crash-right-after-save race.
            time.sleep(2.5 * poll_interval_s())
            os._exit(1)
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step - 1, spec)
        began = time.perf_counter()
        batch = sample_batch(series, spec.batch_size, _unwrap(model).config, rng).to(device)
        loss = train_step(model, optimizer, batch, loss_name)
        pacer.step_took(time.perf_counter() - began)
        points = int(reduce_over_workers(batch.n_points, world, device, "sum"))  # exact trained_tokens
        record = {"step": step, "loss": loss, "points": points, "resumed_from": start_step}
        history.append(record)
        pending.append(record)
        recent.append(loss)
        last = step == spec.steps
        if tracker and (step % interval == 0 or last):
            # Validation decides: early stopping watches its loss, the best weights are kept.
            last = tracker.evaluate(_unwrap(model), step) or last
            record.update({k: v for k, v in tracker.history[-1].items() if k != "step"})
            record["early_stopped"] = last and step < spec.steps
        elif stopper and not tracker and step % interval == 0:
            # Every worker takes the same decision (mean loss over workers), so report counts match.
            last = last or stopper.should_stop(reduce_over_workers(float(np.mean(recent)), world, device, "mean"))
            record["early_stopped"] = last and step < spec.steps
            recent = []
        if last and finetune:
            # What the model kept and how it compares with its base, for the job and the model's record.
            if tracker:
                tracker.finish(_unwrap(model))
            record["validation"] = tracker.summary() if tracker else validation_note
        tracking.log(step, record)
        if last:
            tracking.finish(record)
        if not (last or pacer.due(step)):
            continue
        # Checkpoints ride on the paced reports (an extra report would wait a poll of its own):
        # the first report at least `checkpoint_every` steps after the last checkpoint saves one.
        checkpoint_now = last or step - last_checkpoint >= every
        metrics = {**record, "records": pending}
        pending = []
        if checkpoint_now:
            last_checkpoint = step
            tracking.flush()
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = None
                if rank == 0:
                    _save_state(Path(tmp), _unwrap(model), optimizer, step, history, tracker)
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=ckpt)
        else:
            ray.train.report(metrics)
        if last:
            break
        pacer.reported(step)


def load_history(checkpoint_dir: str | Path) -> list[dict]:
    state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=False)
    return state["history"]


def load_trained_model(cfg: WorkerConfig, checkpoint_dir: str | Path) -> PatchTransformer:
    """Rebuilds the kept model from a run's last checkpoint (trainable tensors over the start
    point): the best weights on validation when the run validated, else the last ones."""
    model = _build_model(cfg)
    state = torch.load(Path(checkpoint_dir) / STATE_FILE, map_location="cpu", weights_only=False)
    selection = state.get("selection")
    model.load_state_dict(selection["best_state"] if selection else state["model"], strict=False)
    return model.eval()


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2))

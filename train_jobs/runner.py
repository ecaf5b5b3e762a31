"""Runs `loop.train_loop_per_worker` under a TorchTrainer and returns the trained model."""

from __future__ import annotations

import os
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from tsfm_core.model import PatchTransformer
from train_jobs.loop import load_history, load_trained_model, train_loop_per_worker

DEFAULT_STORAGE = Path(os.environ.get("TSFM_HOME", Path.home() / ".tsfm")) / "ray_train"


def init_ray() -> None:
    """Joins the cluster this process was submitted to (`ray job submit` sets RAY_ADDRESS; so can you,
    e.g. RAY_ADDRESS=auto), else starts a private local instance."""
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=True)


def fit(cfg: dict, *, name: str, num_workers: int = 1, use_gpu: bool = False, cpus_per_worker: int = 1,
        storage_path: str | None = None, max_failures: int = 3) -> tuple[PatchTransformer, list[dict]]:
    storage = storage_path or str(DEFAULT_STORAGE)
    Path(storage).mkdir(parents=True, exist_ok=True) if "://" not in storage else None
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus_per_worker}),
        run_config=RunConfig(
            name=name,
            storage_path=storage,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {name} produced no checkpoint")
    with result.checkpoint.as_directory() as d:
        return load_trained_model(cfg, d), load_history(d)

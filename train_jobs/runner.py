"""Runs `loop.train_loop_per_worker` under a TorchTrainer and returns the trained model."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchTrainer

from train_jobs.loop import WorkerConfig, load_history, load_trained_model, train_loop_per_worker
from tsfm_core.model import PatchTransformer

DEFAULT_STORAGE = Path(os.environ.get("TSFM_HOME", Path.home() / ".tsfm")) / "ray_train"


def init_ray() -> None:
    """Joins the cluster this process was submitted to (`ray job submit` sets RAY_ADDRESS; so can you,
    e.g. RAY_ADDRESS=auto), else starts a private local instance."""
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or "local", log_to_driver=True)


EXIT_STOPPED = 143  # as if stopped by SIGTERM


def exit_when_present(stop_file: Path, poll_s: float = 1.0) -> None:
    """Ends this driver once `stop_file` exists. Ray ends the actors a driver owns when it exits,
    so the run's controller and workers go with it and free their CPUs."""

    def watch() -> None:
        while not stop_file.exists():
            time.sleep(poll_s)
        print(f"stop file {stop_file} found: stopping", flush=True)
        os._exit(EXIT_STOPPED)  # fit() blocks the main thread; nothing of the run is worth keeping

    threading.Thread(target=watch, name="stop-file-watch", daemon=True).start()


class ProgressFile(UserCallback):
    """Appends every rank-0 report (and the checkpoint it came with) to a JSON-lines file, so a
    process outside the run (the server's job manager) can follow it while it trains."""

    def __init__(self, path: str):
        self.path = path

    def after_report(self, run_context, metrics, checkpoint) -> None:
        records = (metrics[0] if metrics else {}).get("records", [])
        lines = []
        at = time.time()  # one time per report: the job manager measures the step rate between reports
        for i, record in enumerate(records):
            is_last = i == len(records) - 1
            lines.append(json.dumps({**record, "time": at,
                                     "checkpoint": checkpoint.path if checkpoint is not None and is_last else None}))
        with open(self.path, "a") as f:
            f.write("".join(line + "\n" for line in lines))


def fit(cfg: WorkerConfig, *, name: str, num_workers: int = 1, use_gpu: bool = False, cpus_per_worker: int = 1,
        storage_path: str | None = None, max_failures: int = 3,
        progress_file: str | None = None) -> tuple[PatchTransformer, list[dict]]:
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
            callbacks=[ProgressFile(progress_file)] if progress_file else None,
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"training run {name} produced no checkpoint")
    with result.checkpoint.as_directory() as d:
        return load_trained_model(cfg, d), load_history(d)

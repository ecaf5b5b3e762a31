"""Experiment tracking of a fine-tune: its hyperparameters, per-step training loss, validation at
each evaluation and the base-vs-final summary, logged to Weights & Biases and/or MLflow.

The Ray Train worker of rank 0 logs (as Ray Train's own guides do it), so a run is followed live;
the loop's hooks are `open_tracking`, `Tracking.log` and `Tracking.finish`. `wandb` and `mlflow`
are imported here, and only when a run asks for them (`pip install 'tsfm-cluster[tracking]'`).

Policy: tracking never fails training. A backend that cannot start or raises is switched off for
the rest of the run; the message (with any api key masked) goes to stderr, the job's log, and into
the step's record as `tracking_warning`, which reaches metrics.jsonl and the job's events. The
other backend carries on.

A worker restarted from a checkpoint reopens the same runs: the W&B id and the MLflow tag
`tsfm.run` both derive from the Ray Train run name. MLflow skips the steps it already has; W&B
online drops steps below the run's current one itself; W&B offline writes a second offline-run
directory with the same id, which `wandb sync` appends to the same run.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import asdict
from typing import Protocol

from train_jobs.spec import (
    REDACTED,
    MlflowTarget,
    TrackingConfig,
    TrainingSpec,
    WandbTarget,
)

# A step record's keys (see loop.py) -> the metric names both backends log.
STEP_METRICS = {"loss": "train_loss", "points": "train_points", "valid_loss": "valid_loss", "valid_mase": "valid_mase",
                "best_step": "best_step"}
RUN_TAG = "tsfm.run"  # MLflow: the Ray Train run name, to find the run again after a restart
MODEL_DIR_TAG = "tsfm.model_dir"  # MLflow: where the kept model is written
FLUSH_EVERY_S = 5.0  # MLflow: buffered metrics are sent at least this often (one call, not one per step)


class Backend(Protocol):
    name: str

    def log(self, step: int, metrics: dict[str, float]) -> None: ...

    def flush(self) -> None: ...

    def finish(self, summary: dict[str, float | int | bool | str]) -> None: ...


def hyperparameters(spec: TrainingSpec) -> dict[str, str | int | float | bool | None]:
    """The spec's hyperparameters, flat ('lora.rank'), as both backends take a run's config."""
    flat: dict = {"base_model": spec.base_model, "checkpoint_every": spec.checkpoint_every, "epochs": spec.epochs}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        else:
            flat[prefix[:-1]] = value

    walk("", asdict(spec.finetune))
    return flat


def step_metrics(record: dict) -> dict[str, float]:
    """The numeric metrics of one loop record (validation keys only at evaluation steps)."""
    return {name: float(record[key]) for key, name in STEP_METRICS.items()
            if isinstance(record.get(key), (int, float)) and not isinstance(record.get(key), bool)}


def final_summary(record: dict) -> dict[str, float | int | bool | str]:
    """Base vs kept model on validation, from the last record's `validation` (model_selection.summary)."""
    summary: dict = {"final_train_loss": record["loss"], "steps_completed": record["step"],
                     "early_stopped": bool(record.get("early_stopped", False))}
    validation = record.get("validation")
    if isinstance(validation, dict) and "base" in validation:
        for side, prefix in (("base", "base"), ("finetuned", "final")):
            summary.update({f"{prefix}_valid_{k}": v for k, v in validation[side].items()})
        summary.update({k: validation[k] for k in ("selected_step", "improved", "worse_than_base", "windows", "mase_ratio")
                        if k in validation})
    elif isinstance(validation, dict):  # why there was no validation
        summary["validation"] = str(validation.get("reason", "none"))
    return summary


def run_id(run_name: str) -> str:
    """A W&B run id from the Ray Train run name: the same on every restart of the run."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", run_name)[-64:]


class WandbBackend:
    name = "wandb"

    def __init__(self, target: WandbTarget, tracking: TrackingConfig, run_name: str, config: dict):
        import wandb

        online = tracking.online
        if tracking.directory:
            os.makedirs(tracking.directory, exist_ok=True)
        # The key goes into this run's settings only (wandb.login would write it to ~/.netrc);
        # offline runs never need it.
        settings = wandb.Settings(silent=True, console="off", api_key=target.api_key if online else None)
        self.run = wandb.init(project=target.project, entity=target.entity, name=target.name or run_name,
                              tags=list(target.tags) or None, config=config, id=run_id(run_name), resume="allow",
                              mode="online" if online else "offline", dir=tracking.directory, settings=settings,
                              reinit="create_new")

    def log(self, step: int, metrics: dict[str, float]) -> None:
        # W&B drops steps below its current one itself (a restarted worker repeats a few).
        self.run.log(metrics, step=step)

    def flush(self) -> None:
        pass  # wandb-core, its own process, writes every step as it comes

    def finish(self, summary: dict) -> None:
        self.run.summary.update(summary)
        self.run.finish()


class MlflowBackend:
    name = "mlflow"

    def __init__(self, target: MlflowTarget, uri: str, run_name: str, params: dict, model_dir: str | None):
        if uri.startswith("file:") or "://" not in uri:
            # MLflow 3 keeps the file store working but in maintenance mode, behind this switch; it is
            # the zero-setup default (a server or sqlite store is one setting away, docs/operations.md).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow import MlflowClient
        from mlflow.entities import Param

        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(target.experiment)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(target.experiment)
        key = run_id(run_name)  # quote-free, so it can sit in the filter string
        found = self.client.search_runs([experiment_id], filter_string=f"tags.`{RUN_TAG}` = '{key}'", max_results=1)
        self.logged_to = 0  # steps up to here are in the run already (a restarted worker repeats some)
        if found:
            self.run_id = found[0].info.run_id
            self.logged_to = max((m.step for m in self.client.get_metric_history(self.run_id, "train_loss")), default=0)
        else:
            tags = {**dict(target.tags), RUN_TAG: key, **({MODEL_DIR_TAG: model_dir} if model_dir else {})}
            self.run_id = self.client.create_run(experiment_id, run_name=target.run_name or run_name,
                                                 tags=tags).info.run_id
            self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.pending: list = []
        self.flushed_at = time.monotonic()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if step <= self.logged_to and step > 0:
            return
        now_ms = int(time.time() * 1000)
        self.pending += [Metric(k, v, now_ms, step) for k, v in metrics.items()]
        if time.monotonic() - self.flushed_at >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        # log_batch takes at most 1000 metrics per call.
        for i in range(0, len(self.pending), 1000):
            self.client.log_batch(self.run_id, metrics=self.pending[i : i + 1000])
        self.pending, self.flushed_at = [], time.monotonic()

    def finish(self, summary: dict) -> None:
        self.flush()
        for k, v in summary.items():  # numbers as metrics, flags and notes as tags
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.client.log_metric(self.run_id, f"summary.{k}", float(v))
            else:
                self.client.set_tag(self.run_id, f"summary.{k}", str(v))
        self.client.set_terminated(self.run_id)


class Tracking:
    """The backends of one run; every call is guarded so a tracker never stops training."""

    def __init__(self, backends: list[Backend], secrets: tuple[str, ...] = (), warnings: list[str] | None = None):
        self.backends, self.secrets = backends, secrets
        self.warnings = warnings or []  # not yet attached to a record

    def _guarded(self, backend: Backend, call) -> None:
        try:
            call()
        except Exception as e:  # noqa: BLE001 - any tracker failure is reported, never raised
            self.backends.remove(backend)
            self._warn(f"{backend.name} tracking stopped: {type(e).__name__}: {e}")

    def _warn(self, message: str) -> None:
        for secret in self.secrets:
            message = message.replace(secret, REDACTED)
        print(f"WARNING: {message}; training continues", file=sys.stderr, flush=True)
        self.warnings.append(message)

    def log(self, step: int, record: dict) -> None:
        """Logs `record`'s metrics at `step`. Warnings so far ride on the next training step's record
        (one with a `loss`; the base's step-0 scores are not one) as `tracking_warning`."""
        metrics = step_metrics(record)
        for backend in list(self.backends):
            self._guarded(backend, lambda b=backend: b.log(step, metrics))
        if self.warnings and "loss" in record:
            record["tracking_warning"] = "; ".join(self.warnings)
            self.warnings = []

    def flush(self) -> None:
        """Sends what backends buffer, at each checkpoint: a worker restarted from that checkpoint
        then finds every step up to it logged, and logs the steps after it again."""
        for backend in list(self.backends):
            self._guarded(backend, backend.flush)

    def finish(self, record: dict) -> None:
        """Closes the runs with the base-vs-final summary from the last record."""
        summary = final_summary(record)
        for backend in list(self.backends):
            self._guarded(backend, lambda b=backend: b.finish(summary))
        if self.warnings:
            record["tracking_warning"] = "; ".join(self.warnings)
            self.warnings = []


def open_tracking(spec: TrainingSpec | object, run_name: str, model_dir: str | None = None) -> Tracking:
    """The run's tracking: none unless `spec` is a TrainingSpec whose tracking is enabled.

    `run_name`: the Ray Train run name (stable across restarts); `model_dir`: where the kept model goes."""
    if not isinstance(spec, TrainingSpec) or not spec.tracking.enabled:
        return Tracking([])
    config = spec.tracking
    secrets = (config.wandb.api_key,) if config.wandb and config.wandb.api_key else ()
    tracking = Tracking([], secrets)
    params = hyperparameters(spec)
    openers = []
    if config.wandb is not None:
        openers.append(("wandb", lambda: WandbBackend(config.wandb, config, run_name, params)))
    if config.mlflow is not None:
        uri = config.mlflow_tracking_uri
        openers.append(("mlflow", lambda: MlflowBackend(config.mlflow, uri, run_name, params, model_dir) if uri else
                        _fail("no MLflow tracking URI (TSFM_MLFLOW_TRACKING_URI or --mlflow-tracking-uri)")))
    for name, opener in openers:
        try:
            tracking.backends.append(opener())
        except Exception as e:  # noqa: BLE001 - e.g. the package is not installed: train without it
            tracking._warn(f"{name} tracking not started: {type(e).__name__}: {e}")
    return tracking


def _fail(message: str):
    raise RuntimeError(message)

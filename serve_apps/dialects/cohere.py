"""Cohere-style finetuned models: /v1/finetuning/finetuned-models[/{id}[/events|/training-step-metrics]].

A Cohere finetuned model is a registry model plus the job that trains it; `settings.dataset_id`
names a file uploaded through /v1/files. Statuses map from the shared life cycle.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from serve_apps.dialects.numbers import Number, PositiveCount, ValidationHorizon
from serve_apps.errors import ApiError, invalid
from serve_apps.finetuning.store import EventRecord, JobRecord, JobStatus
from serve_apps.models.registry import ModelRecord, ModelStatus
from train_jobs.spec import TrackingConfig, TrainingSpec, WandbTarget
from tsfm_core.finetune import (
    MAX_LEARNING_RATE,
    MAX_LORA_ALPHA,
    FinetuneConfig,
    LoraConfig,
)

LORA_TARGETS = {"LORA_TARGET_MODULES_QV": "QV", "LORA_TARGET_MODULES_QKVO": "QKVO",
                "LORA_TARGET_MODULES_QKVO_FFN": "QKVO_FFN", "LORA_TARGET_MODULES_UNSPECIFIED": None}
# The seed's life cycle (STATUS_*) from ours. Emitted: QUEUED, FINETUNING, READY, FAILED (a
# cancelled job too: Cohere has no cancelled state), DELETED, and UNSPECIFIED for anything else.
# Never emitted: PAUSED (a job cannot be paused, only cancelled), DEPLOYING_API (a model is
# servable the moment its job succeeds: every replica loads it on first use) and
# TEMPORARILY_OFFLINE (a ready model is always loadable from its artifacts).
MODEL_STATUS = {ModelStatus.QUEUED: "STATUS_QUEUED", ModelStatus.FINETUNING: "STATUS_FINETUNING",
                ModelStatus.READY: "STATUS_READY", ModelStatus.FAILED: "STATUS_FAILED",
                ModelStatus.CANCELLED: "STATUS_FAILED", ModelStatus.DELETED: "STATUS_DELETED",
                # Trained but refused as worse than its base (TSFM_REFUSE_WORSE_FINETUNES): not usable.
                ModelStatus.REJECTED: "STATUS_FAILED"}
JOB_STATUS = {JobStatus.VALIDATING_FILES: "STATUS_QUEUED", JobStatus.QUEUED: "STATUS_QUEUED",
              JobStatus.RUNNING: "STATUS_FINETUNING", JobStatus.SUCCEEDED: "STATUS_READY",
              JobStatus.FAILED: "STATUS_FAILED", JobStatus.CANCELLED: "STATUS_FAILED"}
UNSPECIFIED = "STATUS_UNSPECIFIED"


def model_status(status: ModelStatus) -> str:
    return MODEL_STATUS.get(status, UNSPECIFIED)


def job_status(status: str) -> str:
    """A status event's job status (a JobStatus value) in the seed's terms."""
    try:
        return JOB_STATUS.get(JobStatus(status), UNSPECIFIED)
    except ValueError:
        return UNSPECIFIED


class BaseModelSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str | None = None
    version: str | None = None
    base_type: str = "BASE_TYPE_UNSPECIFIED"
    strategy: str | None = None


class CohereHyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    train_epochs: PositiveCount | None = Field(default=None, le=100)
    learning_rate: Number | None = Field(default=None, gt=0, le=MAX_LEARNING_RATE)
    train_batch_size: PositiveCount | None = Field(default=None, le=1024)
    early_stopping_patience: PositiveCount | None = Field(default=None, le=10_000)
    early_stopping_threshold: Number | None = Field(default=None, ge=0)
    lora_rank: PositiveCount | None = Field(default=None, le=256)
    lora_alpha: PositiveCount | None = Field(default=None, le=MAX_LORA_ALPHA)
    lora_target_modules: Literal["LORA_TARGET_MODULES_QKVO", "LORA_TARGET_MODULES_QV", "LORA_TARGET_MODULES_QKVO_FFN",
                                 "LORA_TARGET_MODULES_UNSPECIFIED"] | None = None
    # tsfm-cluster extension, as in the OpenAI dialect (numbers.ValidationHorizon).
    validation_horizon: ValidationHorizon | None = None


class WandbSettings(BaseModel):
    """Cohere's `settings.wandb`. Its api_key is used only when the operator lets runs sync online,
    and is never returned, logged or shown in events (see train_jobs.tracking)."""

    model_config = ConfigDict(extra="ignore")

    project: str = Field(min_length=1, max_length=128)
    api_key: SecretStr = Field(min_length=1, max_length=256)  # masked in reprs and dumps
    entity: str | None = Field(default=None, max_length=128)

    def target(self) -> WandbTarget:
        return WandbTarget(project=self.project, entity=self.entity, api_key=self.api_key.get_secret_value())


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    base_model: BaseModelSettings
    dataset_id: str = Field(min_length=1)
    hyperparameters: CohereHyperparameters | None = None
    multi_label: bool | None = None
    wandb: WandbSettings | None = None


class FinetunedModelBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=128)
    settings: Settings
    creator_id: str | None = None


# Cohere's hyperparameters have no depth: it follows the dataset's size in training windows (see
# finetune_depth). Depths 4-5 are never chosen: on the finetune_value benchmark (validated runs)
# they were worse than the base on the holdout in geometric mean, per series and per group alike.
DEPTH_BY_WINDOWS = ((128, 3), (32, 2), (0, 1))


def finetune_depth(n_windows: int) -> int:
    """The depth a Cohere fine-tune (without LoRA) trains at, from its dataset's windows: the head
    alone on a few dozen windows (more trainable weights would fit noise: on the benchmark, one
    series of 3-22 windows lost at depth 3), the last quarter of blocks from 32 windows, the last
    half from 128 (groups of about 16-85 windows were best at depth 3; the threshold leans shallow)."""
    return next(depth for least, depth in DEPTH_BY_WINDOWS if n_windows >= least)


def training_spec(body: FinetunedModelBody, base_model: str, n_windows: int, max_steps: int) -> TrainingSpec:
    """Epochs -> optimizer steps; explicit epochs that need more than `max_steps` are a 422, never
    silently shortened (only the default of 3 epochs is fitted into the limit). LoRA when a rank or
    target modules are given, else a depth from the data (finetune_depth); the default loss."""
    h = body.settings.hyperparameters or CohereHyperparameters()
    batch = h.train_batch_size or 32
    epochs = h.train_epochs or 3
    steps = epochs * max(1, -(-n_windows // batch))
    if steps > max_steps:
        if h.train_epochs is not None:
            raise invalid(["body", "settings", "hyperparameters", "train_epochs"],
                          f"{epochs} epochs of this dataset take {steps} steps; the limit is {max_steps}")
        steps = max_steps
    targets = LORA_TARGETS[h.lora_target_modules or "LORA_TARGET_MODULES_UNSPECIFIED"]
    lora_rank = h.lora_rank or (8 if targets else None)
    lora = LoraConfig(rank=lora_rank, alpha=float(h.lora_alpha or 16), targets=targets or "QV") if lora_rank else None
    finetune = FinetuneConfig(steps=steps, depth=1 if lora else finetune_depth(n_windows), loss="default",
                              learning_rate=h.learning_rate or 1e-3, batch_size=batch, lora=lora, seed=0,
                              early_stopping_patience=h.early_stopping_patience,
                              early_stopping_threshold=h.early_stopping_threshold or 0.0,
                              validation_horizon=h.validation_horizon)
    wandb = body.settings.wandb
    return TrainingSpec(base_model=base_model, finetune=finetune, checkpoint_every=max(1, min(50, steps // 4)),
                        epochs=epochs, tracking=TrackingConfig(wandb=wandb.target() if wandb else None))


# ---- PATCH: which settings change, and when they may ---------------------------------------------
# Read-only in the seed (multi_label, base_model.version) or deprecated (strategy): never compared.
READ_ONLY = {("multi_label",), ("base_model", "version"), ("base_model", "strategy")}


def stored_settings(body: FinetunedModelBody, base_name: str) -> dict:
    """The settings as a model records them (`cohere_settings`): wandb (its API key) is never stored."""
    settings = body.settings.model_dump(mode="json", exclude={"wandb"})
    settings["base_model"]["name"] = base_name
    return settings


def _leaves(settings: dict) -> dict[tuple, object]:
    hyper = settings.get("hyperparameters") or {}
    out = {("hyperparameters", k): hyper.get(k) for k in CohereHyperparameters.model_fields}
    out.update({("base_model", k): v for k, v in (settings.get("base_model") or {}).items()})
    out.update({(k,): v for k, v in settings.items() if k not in ("hyperparameters", "base_model", "wandb")})
    return {k: v for k, v in out.items() if k not in READ_ONLY}


def settings_changes(current: dict, wanted: dict) -> list[list[str]]:
    """The settings fields `wanted` changes, as body locations (["settings", "hyperparameters",
    "learning_rate"], ...). A missing hyperparameters object is all hyperparameters unset."""
    now, then = _leaves(current), _leaves(wanted)
    return [["settings", *key] for key in sorted(set(now) | set(then), key=str) if now.get(key) != then.get(key)]


def settings_editable(job: JobRecord | None) -> bool:
    """Settings may change while the model's Cohere job is queued and not yet submitted to Ray:
    the submitted run was made from them."""
    return job is not None and job.source == "cohere" and job.status == JobStatus.QUEUED and job.submission_id is None


def settings_fixed(changes: list[list[str]], record: ModelRecord, job: JobRecord | None) -> ApiError:
    """The 409 for a settings change that comes too late, naming the (first) field."""
    if job is None or job.source != "cohere":
        why = "it was not trained by a Cohere-style fine-tune"
    elif job.status == JobStatus.QUEUED:
        why = "its training run has been submitted to the cluster"
    else:
        why = f"training has started (it is {model_status(record.status)})"
    names = ", ".join(".".join(c) for c in changes)
    return ApiError(409, ["body", *changes[0]], f"{names} can no longer change: {why}; only name can. "
                    "Create a new finetuned model to train with other settings", "invalid_state")


def _iso(ts: float | None) -> str | None:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).isoformat() if ts else None


def model_view(record: ModelRecord, job: JobRecord | None) -> dict:
    settings = record.params.get("cohere_settings") or {
        "base_model": {"name": record.public_base_model_id, "base_type": "BASE_TYPE_UNSPECIFIED"},
        "dataset_id": job.training_file if job else "",
        "hyperparameters": {"train_epochs": None, "learning_rate": None},
    }
    return {
        "id": record.public_id,
        "name": record.params.get("name", record.public_id),
        "creator_id": record.created_by,
        "organization_id": record.organization,
        "settings": settings,
        "status": model_status(record.status),
        "created_at": _iso(record.created_at),
        "updated_at": _iso(record.updated_at),
        "completed_at": _iso(job.finished_at) if job else _iso(record.created_at),
        "last_used": None,
    }


def status_event_view(e: EventRecord, user_id: str) -> dict:
    return {"user_id": user_id, "status": job_status((e.data or {}).get("status", "")), "created_at": _iso(e.created_at)}


# A metrics event's keys -> the names in a step's `metrics` map. `loss` is the training loss (as
# before); the validation scores appear at the steps the run evaluated (finetuning.progress).
STEP_METRICS = {"train_loss": "loss", "valid_loss": "valid_loss", "valid_mase": "valid_mase"}


def step_metric_view(e: EventRecord) -> dict:
    """A metrics event as a step of training-step-metrics; a non-finite score (a MASE whose scale is
    0) is left out rather than sent as a NaN that JSON cannot carry."""
    metrics = {name: float(e.data[key]) for key, name in STEP_METRICS.items()
               if e.data.get(key) is not None and math.isfinite(e.data[key])}
    return {"created_at": _iso(e.created_at), "step_number": e.data["step"], "metrics": metrics}


def token_page(items: list, page_size: int | None, page_token: str | None) -> tuple[list, str | None]:
    """Manual pagination by offset tokens, as the Cohere API does it with next_page_token."""
    if page_token and not (page_token.isascii() and page_token.isdigit()):
        # str.isdigit accepts '²' and other Unicode digits that int() rejects.
        raise invalid(["query", "page_token"], "must be a next_page_token from a previous page")
    start = int(page_token) if page_token else 0
    size = page_size or 50
    chunk = items[start : start + size]
    return chunk, (str(start + size) if start + size < len(items) else None)

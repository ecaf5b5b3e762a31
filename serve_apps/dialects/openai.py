"""OpenAI-style files and fine-tuning jobs: /v1/files, /v1/fine_tuning/jobs[/{id}[/cancel|/events|/checkpoints]].

`integrations` log the run to Weights & Biases (`wandb`, as OpenAI's) or MLflow (`mlflow`, our
extension); see train_jobs.tracking. Time-series specifics ride in `hyperparameters` next to OpenAI's own keys (n_epochs, batch_size,
learning_rate_multiplier): `finetune_depth`, `finetune_loss`, `steps`, `lora_rank`, `lora_alpha`,
`lora_target_modules`. One epoch is one pass over the file's windows of `output_patch_len` points.

`fine_tuned_model` is OpenAI's `ft:<base>:<org>:<suffix>:<id>` (models.ft_names); `result_files`
holds the id of the step-metrics CSV a succeeded job leaves (finetuning.results);
`estimated_finish` is predicted from the measured step rate while the job runs. `validation` (an
extra field) is the base-vs-finetuned verdict of a succeeded job (finetuning.verdict).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_apps.dialects.numbers import Number, PositiveCount, ValidationHorizon
from serve_apps.dialects.types import Depth, LoraTargets, Loss
from serve_apps.errors import invalid
from serve_apps.finetuning.store import EventRecord, JobRecord, JobStatus
from serve_apps.models.ft_names import MAX_SUFFIX, SUFFIX_PATTERN, fine_tuned_model_name
from serve_apps.models.registry import public_id
from serve_apps.storage.files import FileRecord
from train_jobs.spec import MlflowTarget, TrackingConfig, TrainingSpec, WandbTarget
from tsfm_core.finetune import (
    MAX_LEARNING_RATE,
    MAX_LORA_ALPHA,
    FinetuneConfig,
    LoraConfig,
)

AUTO_EPOCHS, AUTO_BATCH, BASE_LR = 3, 32, 1e-3
MAX_LR_MULTIPLIER = MAX_LEARNING_RATE / BASE_LR
Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_epochs: Annotated[PositiveCount, Field(le=100)] | Auto = "auto"
    batch_size: Annotated[PositiveCount, Field(le=1024)] | Auto = "auto"
    learning_rate_multiplier: Annotated[Number, Field(gt=0, le=MAX_LR_MULTIPLIER)] | Auto = "auto"
    steps: PositiveCount | None = None  # <= the server's max_job_steps, checked in training_spec
    finetune_depth: Depth = 1
    finetune_loss: Loss = "default"
    lora_rank: PositiveCount | None = Field(default=None, le=256)
    lora_alpha: Number = Field(default=16.0, gt=0, le=MAX_LORA_ALPHA)
    lora_target_modules: LoraTargets = "QV"
    # The horizon the model will forecast at: validation windows of that length (docs/benchmarks.md,
    # "Does fine-tuning help?": better kept models than the default 32-step window at every depth).
    validation_horizon: ValidationHorizon | None = None


class SupervisedMethod(BaseModel):
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class Method(BaseModel):
    type: Literal["supervised"] = "supervised"
    supervised: SupervisedMethod | None = None


class WandbIntegration(BaseModel):
    """OpenAI's W&B integration. The key is the operator's (WANDB_API_KEY): a body carries none."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(min_length=1, max_length=128)
    name: str | None = Field(default=None, max_length=128)
    entity: str | None = Field(default=None, max_length=128)
    tags: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=64)


class MlflowIntegration(BaseModel):
    """Our extension: log the run to the server's MLflow tracking store (its operator sets where)."""

    model_config = ConfigDict(extra="forbid")

    experiment_name: str = Field(default="tsfm-finetune", min_length=1, max_length=256)
    run_name: str | None = Field(default=None, max_length=256)
    tags: dict[str, str] = Field(default_factory=dict, max_length=64)


class Integration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["wandb", "mlflow"]
    wandb: WandbIntegration | None = None
    mlflow: MlflowIntegration | None = None


def tracking_config(integrations: list[Integration] | None) -> TrackingConfig:
    """The job's TrackingConfig from its `integrations` (at most one of each type)."""
    wandb = mlflow = None
    for i, integration in enumerate(integrations or []):
        loc = ["body", "integrations", i]
        target = getattr(integration, integration.type)
        if target is None:
            raise invalid(loc + [integration.type], f"a {integration.type!r} integration needs its "
                          f"{integration.type!r} object", "missing")
        if (wandb if integration.type == "wandb" else mlflow) is not None:
            raise invalid(loc + ["type"], f"only one {integration.type!r} integration per job")
        if integration.type == "wandb":
            wandb = WandbTarget(project=target.project, name=target.name, entity=target.entity, tags=tuple(target.tags))
        else:
            mlflow = MlflowTarget(experiment=target.experiment_name, run_name=target.run_name, tags=target.tags)
    return TrackingConfig(wandb=wandb, mlflow=mlflow)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    # Part of the model's name (models.ft_names): up to 64 letters, digits, '.', '_' or '-'.
    suffix: str | None = Field(default=None, max_length=MAX_SUFFIX, pattern=SUFFIX_PATTERN)
    seed: int | None = Field(default=None, ge=0)
    metadata: dict[str, str] | None = None
    integrations: list[Integration] | None = None

    def resolved_hyperparameters(self) -> Hyperparameters:
        if self.method and self.method.supervised:
            return self.method.supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()

    def hyperparameters_loc(self) -> list:
        """Where the hyperparameters that apply were sent (errors name the field there)."""
        if self.method and self.method.supervised:
            return ["body", "method", "supervised", "hyperparameters"]
        return ["body", "hyperparameters"]


def training_spec(h: Hyperparameters, file: FileRecord, base_model: str, seed: int, output_patch_len: int,
                  max_steps: int, loc: list | None = None) -> TrainingSpec:
    """Resolves 'auto' values and turns epochs into optimizer steps.

    Steps the client asked for (`steps`, or explicit `n_epochs`) beyond `max_steps` are a 422 naming
    the field, never silently shortened; only an 'auto' epoch count is fitted into the limit.
    """
    loc = loc or ["body", "hyperparameters"]
    batch = AUTO_BATCH if h.batch_size == "auto" else h.batch_size
    epochs = AUTO_EPOCHS if h.n_epochs == "auto" else h.n_epochs
    multiplier = 1.0 if h.learning_rate_multiplier == "auto" else h.learning_rate_multiplier
    windows = max(file.n_series, file.n_points // output_patch_len)
    steps = h.steps or epochs * max(1, math.ceil(windows / batch))
    if steps > max_steps:
        if h.steps is not None or h.n_epochs != "auto":
            field = "steps" if h.steps is not None else "n_epochs"
            raise invalid(loc + [field], f"asks for {steps} optimizer steps; the limit is {max_steps}",
                          "less_than_equal")
        steps = max_steps
    lora = LoraConfig(rank=h.lora_rank, alpha=h.lora_alpha, targets=h.lora_target_modules) if h.lora_rank else None
    finetune = FinetuneConfig(steps=steps, depth=h.finetune_depth, loss=h.finetune_loss,
                              learning_rate=BASE_LR * multiplier, batch_size=batch, lora=lora, seed=seed,
                              validation_horizon=h.validation_horizon)
    return TrainingSpec(base_model=base_model, finetune=finetune, checkpoint_every=max(1, min(50, steps // 4)),
                        epochs=epochs)


def file_view(f: FileRecord) -> dict:
    return {"id": f.id, "object": "file", "bytes": f.bytes, "created_at": int(f.created_at), "filename": f.filename,
            "purpose": f.purpose, "status": "processed", "status_details": None, "expires_at": None}


def job_model_name(job: JobRecord) -> str:
    """The OpenAI-style name of the model `job` produces (the registry record's `fine_tuned_model`)."""
    return fine_tuned_model_name(public_id(job.base_model_id), job.organization, job.request.get("suffix"),
                                 public_id(job.model_id))


def job_view(job: JobRecord) -> dict:
    spec, ft = job.spec, job.spec.finetune
    running = job.status == JobStatus.RUNNING
    method = {"n_epochs": spec.epochs, "batch_size": ft.batch_size, "learning_rate_multiplier": ft.learning_rate / BASE_LR}
    return {
        "id": job.id,
        "object": "fine_tuning.job",
        "created_at": int(job.created_at),
        "error": job.error,
        "fine_tuned_model": job_model_name(job) if job.status == JobStatus.SUCCEEDED else None,
        "finished_at": int(job.finished_at) if job.finished_at else None,
        "hyperparameters": {**method, "steps": ft.steps, "finetune_depth": ft.depth, "finetune_loss": ft.loss,
                            "lora_rank": ft.lora.rank if ft.lora else None,
                            "validation_horizon": ft.validation_horizon},
        "model": job.model,
        "organization_id": job.organization,
        "result_files": job.result_files or [],
        "seed": ft.seed,
        "status": job.status,
        "trained_tokens": job.trained_tokens if job.status == JobStatus.SUCCEEDED else None,
        "training_file": job.training_file,
        "validation_file": job.validation_file,
        "integrations": job.request.get("integrations"),
        "metadata": job.request.get("metadata"),
        "suffix": job.request.get("suffix"),
        "method": {"type": "supervised", "supervised": {"hyperparameters": method}},
        "estimated_finish": int(job.estimated_finish) if running and job.estimated_finish else None,
        "user_provided_suffix": job.request.get("suffix"),
        "validation": job.validation,
    }


def event_view(e: EventRecord) -> dict:
    return {"id": e.id, "object": "fine_tuning.job.event", "created_at": int(e.created_at), "level": e.level,
            "message": e.message, "data": e.data or {}, "type": "metrics" if e.type == "metrics" else "message"}


def checkpoint_view(job: JobRecord, e: EventRecord) -> dict:
    step = e.data["step"]
    return {"id": f"ftckpt-{e.id.removeprefix('ftevent-')}", "object": "fine_tuning.job.checkpoint",
            "created_at": int(e.created_at), "fine_tuned_model_checkpoint": f"{job_model_name(job)}:ckpt-step-{step}",
            "fine_tuning_job_id": job.id, "step_number": step,
            "metrics": {"step": step, "train_loss": e.data.get("train_loss"),
                        **{k: e.data[k] for k in ("valid_loss", "valid_mase") if k in e.data}}}


def page(items: list[dict], after: str | None, limit: int) -> dict[str, Any]:
    """OpenAI cursor page: items after the one whose id is `after`, `has_more` for auto-iteration."""
    if after:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

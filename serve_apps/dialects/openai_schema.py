"""Response bodies of the OpenAI-style routes: /v1/files, /v1/fine_tuning/jobs, /v1/models.

The fields the openai SDK declares (types/file_object.py, types/fine_tuning/*.py) plus the
time-series hyperparameters this server adds."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from serve_apps.dialects.schema import Out

JobState = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]


class FileObject(Out):
    id: str
    object: Literal["file"]
    bytes: int = Field(ge=0)
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None
    expires_at: int | None


class FileList(Out):
    object: Literal["list"]
    data: list[FileObject]
    has_more: bool


class FileDeleted(Out):
    id: str
    object: Literal["file"]
    deleted: bool


class JobError(Out):
    code: str
    message: str
    param: str | None


class JobHyperparameters(Out):
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    steps: int | None = None
    finetune_depth: int | None = None
    finetune_loss: str | None = None
    lora_rank: int | None = None
    validation_horizon: int | None = None


class SupervisedView(Out):
    hyperparameters: JobHyperparameters


class MethodView(Out):
    type: Literal["supervised"]
    supervised: SupervisedView | None = None


class FineTuningJob(Out):
    id: str
    object: Literal["fine_tuning.job"]
    created_at: int
    error: JobError | None
    fine_tuned_model: str | None
    finished_at: int | None
    hyperparameters: JobHyperparameters
    model: str
    organization_id: str
    result_files: list[str]
    seed: int
    status: JobState
    trained_tokens: int | None
    training_file: str
    validation_file: str | None
    integrations: list[dict[str, Any]] | None
    metadata: dict[str, str] | None
    suffix: str | None
    method: MethodView
    estimated_finish: int | None = Field(description="Unix seconds the job is predicted to finish at, from the "
                                         "measured step rate; null before its first steps and once it finished")
    user_provided_suffix: str | None
    validation: dict[str, Any] | None = Field(
        default=None, description="tsfm-cluster extra, set when the job succeeded: base-vs-finetuned validation "
        "scores. outcome: improved | no_improvement (base weights kept) | worse | not_validated; base and "
        "finetuned: {loss, mase}; selected_step (0: the base); blend (the kept weights lie this fraction of the "
        "way from the base to that step's; null: that step's as is); windows; worse_than_base; message")


class JobList(Out):
    object: Literal["list"]
    data: list[FineTuningJob]
    has_more: bool


class JobEvent(Out):
    id: str
    object: Literal["fine_tuning.job.event"]
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any]
    type: Literal["message", "metrics"]


class JobEventList(Out):
    object: Literal["list"]
    data: list[JobEvent]
    has_more: bool


class CheckpointMetrics(Out):
    step: int
    train_loss: float | None
    valid_loss: float | None = None  # when the checkpoint's step was an evaluation
    valid_mase: float | None = None


class JobCheckpoint(Out):
    id: str
    object: Literal["fine_tuning.job.checkpoint"]
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: CheckpointMetrics


class JobCheckpointList(Out):
    object: Literal["list"]
    data: list[JobCheckpoint]
    has_more: bool


class Model(Out):
    """A base model (with its aliases) or one of the caller's finetuned models."""

    id: str
    object: Literal["model"]
    owned_by: str
    kind: Literal["base", "finetuned"]
    aliases: list[str] | None = None
    max_context_length: int | None = None
    base_model: str | None = None
    created: int | None = None
    status: str | None = Field(default=None, description="finetuned: queued | finetuning | ready | rejected (worse "
                               "than its base and not promoted: TSFM_REFUSE_WORSE_FINETUNES) | failed | cancelled")
    fine_tuned_model: str | None = Field(default=None, description="finetuned: its OpenAI-style name "
                                         "ft:<base>:<org>:<suffix>:<id>, usable wherever its id is")
    validation: dict[str, Any] | None = Field(default=None, description="finetuned: the base-vs-finetuned "
                                              "validation verdict (as the job's `validation`) and `promoted`")


class ModelList(Out):
    object: Literal["list"]
    data: list[Model]

"""Response bodies of the Cohere-style finetuned-model routes, as cohere's FinetunedModel and list types read them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from serve_apps.dialects.schema import Out


class BaseModelView(Out):
    name: str | None = None
    version: str | None = None
    base_type: str
    strategy: str | None = None


class HyperparametersView(Out):
    train_epochs: int | None = None
    learning_rate: float | None = None
    train_batch_size: int | None = None
    early_stopping_patience: int | None = None
    early_stopping_threshold: float | None = None
    lora_rank: int | None = None
    lora_alpha: int | None = None
    lora_target_modules: str | None = None
    validation_horizon: int | None = None


class SettingsView(Out):
    base_model: BaseModelView
    dataset_id: str
    hyperparameters: HyperparametersView | None = None
    multi_label: bool | None = None


class FinetunedModel(Out):
    id: str
    name: str
    creator_id: str
    organization_id: str
    settings: SettingsView
    status: str = Field(description="STATUS_QUEUED | STATUS_FINETUNING | STATUS_READY | STATUS_FAILED | STATUS_DELETED")
    created_at: str | None
    updated_at: str | None
    completed_at: str | None
    last_used: str | None


class FinetunedModelResponse(Out):
    finetuned_model: FinetunedModel


class FinetunedModelList(Out):
    finetuned_models: list[FinetunedModel]
    next_page_token: str | None
    total_size: int


class Deleted(BaseModel):
    """Always `{}`: the cohere SDK needs a JSON body on every 2xx."""

    model_config = ConfigDict(extra="forbid")


class StatusEvent(Out):
    user_id: str
    status: str
    created_at: str | None


class EventList(Out):
    events: list[StatusEvent]
    next_page_token: str | None
    total_size: int


class StepMetric(Out):
    created_at: str | None
    step_number: int
    metrics: dict[str, float | None]


class StepMetricList(Out):
    next_page_token: str | None
    step_metrics: list[StepMetric]

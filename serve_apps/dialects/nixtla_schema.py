"""Request and response bodies of the Nixtla TimeGPT routes, as the nixtla SDK reads them
(see shared/reference/client-sdks.md): forecast, cross_validation, the anomaly detectors, finetune,
simulate, model_params, the model lists and the async job API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_apps.dialects.schema import Out
from serve_apps.errors import Issue

Intervals = dict[str, list[float]]  # "lo-{level}" / "hi-{level}", spelled as the request sent the level


class ModelParamsBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = "timegpt-1"
    freq: str | None = None


class JobOptions(BaseModel):
    timeout_seconds: float | None = Field(default=None, gt=0)


class ModelShape(Out):
    input_size: int
    horizon: int


class ModelParams(Out):
    detail: ModelShape


class ApiKeyValid(Out):
    detail: str
    organization: str


class ModelName(Out):
    name: str


class ModelNames(Out):
    models: list[ModelName]


class ForecastResponse(Out):
    mean: list[float] = Field(description="n_series*h values, series-major")
    intervals: Intervals | None
    weights_x: list[float] | None
    feature_contributions: list[list[float]] | None = Field(None, description="one list per X row, then base_value")


class CrossValidationResponse(Out):
    idxs: list[int]
    sizes: list[int]
    mean: list[float]
    intervals: Intervals | None
    feature_contributions: list[list[float]] | None = None


class AnomalyDetectionResponse(Out):
    sizes: list[int]
    mean: list[float]
    intervals: Intervals
    anomaly: list[bool]
    anomaly_score: list[float]
    weights_x: list[float] | None


class OnlineAnomalyDetectionResponse(Out):
    idxs: list[int]
    sizes: list[int]
    mean: list[float]
    intervals: Intervals
    anomaly: list[bool]
    anomaly_score: list[float]
    accumulated_anomaly_score: list[float] | None = None


class FinetuneResponse(Out):
    finetuned_model_id: str
    input_tokens: int
    output_tokens: int
    finetune_tokens: int


class SimulateResponse(Out):
    samples: list[float] = Field(description="[n_paths][n_series][h], flattened")
    sizes: list[int]
    n_paths: int
    h: int
    coupled: bool
    error_correlation: list[float]


TaskResult = (ForecastResponse | CrossValidationResponse | OnlineAnomalyDetectionResponse | AnomalyDetectionResponse
              | FinetuneResponse | SimulateResponse)
AsyncState = Literal["pending", "running", "succeeded", "failed", "cancelled"]


class AsyncSubmitted(Out):
    job_id: str
    status: AsyncState


class AsyncJobError(Out):
    status: int
    detail: list[Issue]


class AsyncJob(Out):
    job_id: str
    task: str
    status: AsyncState
    created_at: float
    started_at: float | None
    finished_at: float | None
    attempts: int
    result: TaskResult | None
    error: AsyncJobError | None


class FinetunedModel(Out):
    id: str
    created_at: str
    created_by: str
    base_model_id: str
    model: str
    freq: str
    steps: int
    depth: int
    loss: str
    status: str
    source: str
    # Ours (the SDK keeps extra fields): base vs finetuned on validation (serve_apps.finetuning.verdict).
    validation: dict | None = None


class FinetunedModels(Out):
    finetuned_models: list[FinetunedModel]

"""Request and response bodies of the TSFM.ai-style routes: /v1/forecast (single and batch), /v1/stats, /health.

The single request is tsfm.ForecastBody; a batch wraps several in `requests` and answers each on
its own (`ok` and `result`, or `ok: false` and `error`), so one bad item fails only itself."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from serve_apps.dialects.schema import Out
from serve_apps.dialects.tsfm import ForecastBody
from serve_apps.errors import Issue


class BatchForecastBody(BaseModel):
    """Documents the batch form; items are validated one by one (tsfm.parse_forecast). Nothing but
    `requests` is allowed beside them (the route answers 422), so no body fits both forms."""

    model_config = ConfigDict(extra="forbid")

    requests: list[ForecastBody] = Field(min_length=1)


ForecastRequestBody = ForecastBody | BatchForecastBody


class QuantilePrediction(Out):
    level: float
    values: list[list[float]] = Field(description="[prediction_length][channels]")


class ForecastOutput(Out):
    mean: list[list[float]] = Field(description="[prediction_length][channels]")
    quantile_predictions: list[QuantilePrediction]
    samples: list[list[list[float]]] | None = Field(None, description="[num_samples][prediction_length][channels]")
    timestamps: list[str] | None = None
    truncated_from: int | None = None
    metadata: Any = None


class Usage(Out):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class ForecastResponse(Out):
    id: str
    object: Literal["forecast"]
    created: int
    model: str
    served_model: str
    provider: str
    horizon: int
    prediction_length: int
    quantile_levels: list[float]
    input_points: int
    outputs: list[ForecastOutput]
    usage: Usage
    truncated_from: int | None = None
    max_context_length: int | None = None
    latency_ms: float
    metadata: Any = None


class BatchItemError(Out):
    error: str
    code: str
    status: int
    endpoint: str
    detail: list[Issue]


class BatchItem(Out):
    ok: bool
    result: ForecastResponse | None = None
    error: BatchItemError | None = None


class BatchForecastResponse(Out):
    object: Literal["list"]
    data: list[BatchItem]


class Health(Out):
    status: Literal["ok"]


class Stats(Out):
    """Batching counters over both lanes (totals, then per lane), running replicas per deployment,
    and each Ray node's Prometheus endpoint."""

    batches_run: int
    requests_batched: int
    local: dict | None = None
    bulk: dict | None = None
    replicas: dict[str, int] = {}
    metrics_endpoints: list[str] = []

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


class ChannelEnsemble(Out):
    """One channel of one series under ensemble routing: each candidate's backtest score (null: it
    could not be scored) and the weights of the models its forecast averages (they sum to 1)."""

    scores: dict[str, float | None]
    weights: dict[str, float]


class ForecastOutput(Out):
    mean: list[list[float]] = Field(description="[prediction_length][channels]")
    quantile_predictions: list[QuantilePrediction]
    samples: list[list[list[float]]] | None = Field(
        None, description="[num_samples][prediction_length][channels]: paths from the whole predictive "
                          "distribution, coherent over time; reproducible with parameters.seed")
    timestamps: list[str] | None = None
    truncated_from: int | None = None
    served_model: str | None = Field(None, description="who answered this series where that is not simply the "
                                                       "response's served_model (statistical fallbacks, ensembles)")
    ensemble: list[ChannelEnsemble] | None = Field(None, description="per channel, under ensemble routing")
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
    ensemble: "EnsembleSummary | None" = None


class ModelUsed(Out):
    model: str
    series: int = Field(description="series channels whose forecast uses this model")
    mean_weight: float
    mean_score: float | None


class EnsembleSummary(Out):
    candidates: list[str]
    scoring_metric: str
    top_n: int
    weighting: str
    n_windows: int
    models_used: list[ModelUsed]
    calibration: dict[str, float] = Field(description="quantile level -> the conformal scale applied to its band")


class EnsembleForecastResponse(ForecastResponse):
    ensemble: EnsembleSummary


class ModelCard(Out):
    """A catalog model as it really is (models.catalog.card)."""

    id: str
    object: Literal["model"]
    owned_by: str
    kind: Literal["base"]
    model_type: Literal["transformer", "statistical", "ensemble", "third_party"]
    family: str
    description: str
    aliases: list[str]
    parameters: int | None = Field(description="null: fitted per series at request time")
    context_length: int | None = Field(description="null: the whole history")
    max_context_length: int | None
    max_horizon: int
    native_horizon: int | None = Field(description="steps one model pass predicts; longer horizons roll out")
    quantiles: bool
    quantile_levels: list[float] | None = Field(description="the model's own quantile heads; null: any level")
    past_covariates: bool
    future_covariates: bool
    static_covariates: bool
    multivariate: bool = Field(description="channels modelled jointly (false: each channel on its own)")
    temperature: bool
    top_p: bool
    samples: bool
    served_by: str | None = Field(description="the model that answers this name on this server; null: rejected")
    available: bool
    # Only on a third-party card whose checkpoint is installed (the figures above are then its own).
    weights: Literal["installed"] | None = Field(None, description="the name's own checkpoint is installed here")
    package: str | None = Field(None, description="the official package (and version) that loads that checkpoint")


class CatalogList(Out):
    object: Literal["list"]
    data: list[ModelCard]


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
ForecastResponse.model_rebuild()

"""The calls the ingress makes to the ModelServer deployment: their typed payloads and the client
that makes them (the one place the deployment handle is used)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from ray.serve.handle import DeploymentHandle

from serve_apps.errors import ApiError
from tsfm_core.finetune import FinetuneConfig, NonFiniteTraining
from tsfm_core.predict import ForecastRequest, ForecastResult


@dataclass
class ForecastCall:
    request: ForecastRequest
    # Nixtla's `finetune_steps` inside a forecast call: a short finetune in the replica, then forecast.
    finetune: FinetuneConfig | None = None
    # What that finetune trains on, when not the request's own series (backtests: the data before
    # each series' first window).
    finetune_series: list | None = None


@dataclass
class FinetuneCall:
    series: list  # 1-D float arrays
    config: FinetuneConfig
    output_dir: str
    metadata: dict


@contextmanager
def training_errors():
    """A finetune that diverged (NonFiniteTraining in the replica, wrapped in Ray's RayTaskError)
    is the request's doing (its data or settings), so it is a 422, not a 500."""
    try:
        yield
    except Exception as exc:
        cause = exc if isinstance(exc, NonFiniteTraining) else getattr(exc, "cause", None)
        if isinstance(cause, NonFiniteTraining):
            raise ApiError(422, ["body"], f"fine-tuning diverged: {cause}", "non_finite_training") from None
        raise


class ModelClient:
    """Calls the ModelServer replicas, routed by model id (`multiplexed_model_id`)."""

    def __init__(self, handle: DeploymentHandle):
        self.handle = handle

    async def forecast(self, model_id: str, call: ForecastCall) -> list[ForecastResult]:
        with training_errors():
            return await self.handle.options(multiplexed_model_id=model_id).forecast.remote(call)

    async def finetune(self, base_id: str, call: FinetuneCall) -> int:
        """Trains `call` on a copy of `base_id` in a replica; returns the points it trained on."""
        with training_errors():
            return await self.handle.options(multiplexed_model_id=base_id).finetune.remote(call)

    async def stats(self) -> dict:
        return await self.handle.stats.remote()

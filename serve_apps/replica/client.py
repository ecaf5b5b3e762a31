"""How the routes reach models: the one place that picks a lane and uses the deployment handle.

Small forecasts run in this process's engine (no extra hop, batched with every other small request
the replica is serving). Bulk forecasts (more than `bulk_points` input points, or a finetune inside
the call) and named fine-tunes go to the ModelServer deployment: other processes, with their own
queue, so a 10^5-series request cannot stall the small ones.
"""

from __future__ import annotations

from ray.serve.handle import DeploymentHandle

from serve_apps.replica.calls import EnsembleCall, FinetuneCall, ForecastCall, training_errors
from serve_apps.replica.engine import ModelEngine
from serve_apps.replica.metrics import ServingMetrics
from tsfm_core.ensemble import EnsembleForecast
from tsfm_core.predict import ForecastResult


class ModelClient:
    def __init__(self, local: ModelEngine | None, remote: DeploymentHandle | None, bulk_points: int,
                 metrics: ServingMetrics | None = None):
        if local is None and remote is None:
            raise ValueError("a ModelClient needs a local engine, a ModelServer handle, or both")
        self.local, self.remote, self.bulk_points = local, remote, bulk_points
        self.metrics = metrics or ServingMetrics.disabled()

    def _bulk(self, call: ForecastCall) -> bool:
        if self.remote is None:
            return False
        return self.local is None or call.finetune is not None or call.points > self.bulk_points

    async def forecast(self, model_id: str, call: ForecastCall) -> list[ForecastResult]:
        bulk = self._bulk(call)
        self.metrics.forecast_call(model_id, "bulk" if bulk else "local", len(call.request.series), call.points)
        with training_errors():  # an in-call finetune that diverged is the request's doing: 422
            if bulk:
                return await self.remote.options(multiplexed_model_id=model_id).forecast.remote(call)
            return await self.local.forecast(model_id, call)

    async def ensemble(self, call: EnsembleCall) -> EnsembleForecast:
        """A backtest-driven ensemble; a bulk one (by input points) runs in the ModelServer."""
        bulk = self.remote is not None and (self.local is None or call.points > self.bulk_points)
        self.metrics.forecast_call("auto", "bulk" if bulk else "local", len(call.request.series), call.points)
        with training_errors():  # a series too short to backtest is the request's doing: 422
            if bulk:
                return await self.remote.ensemble.remote(call)
            return await self.local.ensemble(call)

    async def finetune(self, base_id: str, call: FinetuneCall) -> int:
        """Trains `call` on a copy of `base_id`; returns the points it trained on."""
        with training_errors():
            if self.remote is not None:
                return await self.remote.options(multiplexed_model_id=base_id).finetune.remote(call)
            return await self.local.finetune(base_id, call)

    async def stats(self) -> dict:
        out = {"local": self.local.stats() if self.local else None,
               "bulk": await self.remote.stats.remote() if self.remote else None}
        # Totals under the names the benchmarks have always read.
        lanes = [lane for lane in out.values() if lane]
        out["batches_run"] = sum(lane["batches_run"] for lane in lanes)
        out["requests_batched"] = sum(lane["requests_batched"] for lane in lanes)
        return out

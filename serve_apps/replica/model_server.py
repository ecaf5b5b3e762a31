"""ModelServer: the Ray Serve deployment for bulk forecasts and fine-tunes (on CPUs the ingress
replicas run small forecasts themselves, see replica/client.py; with a GPU it runs every forecast).

Finetuned models are multiplexed (`@serve.multiplexed` reports each replica's loaded ids, so Serve
routes a model's requests to a replica that has it); the ModelEngine does the loading, batching and
shedding, the same as in the ingress. Requests with big bodies reach it whole, as raw HTTP
(`http`, see http/bulk_lane.py): it runs the same app as the ingress over its own engine.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_apps.http.api import create_api
from serve_apps.http.bulk_lane import RawRequest, RawResponse, answer
from serve_apps.models.registry import Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.replica.calls import EnsembleCall, FinetuneCall, ForecastCall
from serve_apps.replica.engine import ModelEngine, torch_device
from serve_apps.replica.metrics import ServingMetrics
from serve_apps.services import Services
from serve_apps.settings import Settings
from tsfm_core.ensemble import EnsembleForecast
from tsfm_core.predict import Forecaster, ForecastResult


class ModelServer:
    def __init__(self, settings: dict, job_manager: DeploymentHandle | None = None):
        self.settings = Settings.from_dict(settings)
        self.job_manager = job_manager
        self._api: FastAPI | None = None  # built on the first bulk HTTP request
        resolver = ModelResolver(Registry(self.settings.database_url, self.settings.artifact_dir),
                                 third_party_aliases=self.settings.third_party_aliases,
                                 third_party_dir=self.settings.third_party_dir)
        self.engine = ModelEngine(resolver.model_dir, torch_device(self.settings.use_gpu),
                                  max_batch_series=self.settings.max_batch_series,
                                  max_pending=(self.settings.max_pending if self.settings.model_server_only
                                               else self.settings.bulk_max_pending), metrics=ServingMetrics(),
                                  stats_n_jobs=self.settings.stats_n_jobs,
                                  stats_concurrency=self.settings.stats_concurrency,
                                  max_wait_s=self.settings.max_queue_wait_s)

    @serve.multiplexed(max_num_models_per_replica=8)
    async def get_model(self, model_id: str) -> Forecaster:
        return await self.engine.model(model_id)

    async def forecast(self, call: ForecastCall) -> list[ForecastResult]:
        model_id = serve.get_multiplexed_model_id()
        await self.get_model(model_id)  # registers the id for Serve's model-aware routing
        return await self.engine.forecast(model_id, call)

    async def ensemble(self, call: EnsembleCall) -> EnsembleForecast:
        return await self.engine.ensemble(call)

    async def finetune(self, call: FinetuneCall) -> int:
        base_id = serve.get_multiplexed_model_id()
        await self.get_model(base_id)
        return await self.engine.finetune(base_id, call)

    async def stats(self) -> dict:
        return self.engine.stats()

    async def http(self, request: RawRequest) -> RawResponse:
        """A whole HTTP request the ingress passed on because of its body's size."""
        if self._api is None:
            self._api = create_api(Services.build(self.settings, job_manager=self.job_manager, start_runner=False,
                                                  engine=self.engine, metrics=self.engine.metrics))
        return await answer(self._api, request)

"""The real FastAPI app in-process, without Ray: the routes, middleware, stores and dialects are the
server's own; only the ModelServer deployment is replaced by `InProcessModels`, which runs the same
tsfm_core code the replica runs (load_model, Forecaster.forecast_many, finetuned_copy) in this
process. Lets hypothesis push hundreds of bodies through the whole HTTP path in seconds."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI

from serve_apps.finetuning.service import FinetuningService
from serve_apps.finetuning.store import JobStore
from serve_apps.http.api import create_api
from serve_apps.models.registry import Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.nixtla.async_runner import AsyncJobRunner
from serve_apps.nixtla.async_store import AsyncJobStore
from serve_apps.nixtla.tasks import NixtlaTasks
from serve_apps.replica.calls import FinetuneCall, ForecastCall, training_errors
from serve_apps.services import BaseShape, Services
from serve_apps.settings import Settings
from serve_apps.storage.files import FileStore
from tsfm_core.checkpoint import load_model, save_finetuned
from tsfm_core.finetune import finetuned_copy
from tsfm_core.predict import Forecaster, ForecastResult


class InProcessModels:
    """ModelClient's interface, answered by the model code in this process (as ModelServer does)."""

    def __init__(self, resolver: ModelResolver):
        self.resolver = resolver
        self._models: dict[str, Forecaster] = {}

    def _forecaster(self, model_id: str) -> Forecaster:
        if model_id not in self._models:
            self._models[model_id] = Forecaster(load_model(self.resolver.model_dir(model_id), self.resolver.model_dir))
        return self._models[model_id]

    def _forecast(self, model_id: str, call: ForecastCall) -> list[ForecastResult]:
        forecaster = self._forecaster(model_id)
        if call.finetune is not None:
            channels = call.finetune_series or [s.values[:, c] for s in call.request.series for c in range(s.n_channels)]
            tuned, _ = finetuned_copy(forecaster.model, channels, call.finetune)
            return Forecaster(tuned).forecast_many([call.request])[0]
        return forecaster.forecast_many([call.request])[0]

    async def forecast(self, model_id: str, call: ForecastCall) -> list[ForecastResult]:
        with training_errors():
            return await asyncio.to_thread(self._forecast, model_id, call)

    async def finetune(self, base_id: str, call: FinetuneCall) -> int:
        def run() -> int:
            tuned, points = finetuned_copy(self._forecaster(base_id).model, call.series, call.config)
            save_finetuned(tuned, call.output_dir, base_id, self.resolver.model_dir(base_id), call.config, call.metadata)
            return points
        with training_errors():
            return await asyncio.to_thread(run)

    async def stats(self) -> dict:
        return {"device": "cpu", "in_process": True}


def build_api(home: Path, api_keys: str = "", **settings) -> FastAPI:
    """The app over a fresh SQLite home; no job manager (fine-tuning jobs are not submitted)."""
    settings = Settings(home=str(home), api_keys=api_keys, **settings)
    registry = Registry(settings.database_url, settings.artifact_dir)
    resolver = ModelResolver(registry)
    jobs = JobStore(settings.database_url)
    base = BaseShape.bundled()
    models = InProcessModels(resolver)
    nixtla = NixtlaTasks(settings, registry, resolver, models, base.max_context, base.output_patch_len)
    async_jobs = AsyncJobStore(settings.database_url, settings.artifact_dir)
    services = Services(settings=settings, keys=settings.api_key_map(), base=base, registry=registry,
                        resolver=resolver, files=FileStore(settings.database_url, settings.artifact_dir), jobs=jobs,
                        models=models, finetuning=FinetuningService(settings, registry, jobs, resolver, None),
                        nixtla=nixtla, async_jobs=async_jobs,
                        async_runner=AsyncJobRunner(async_jobs, nixtla, settings.async_jobs_per_replica))
    return create_api(services)

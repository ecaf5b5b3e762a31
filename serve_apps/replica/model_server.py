"""ModelServer: the Ray Serve deployment that holds models and runs inference and short finetunes.

The base model loads once per replica; finetuned models are multiplexed (`@serve.multiplexed`,
LRU per replica, requests routed by model id) and concurrent forecast calls are coalesced into
one model pass with `@serve.batch`. Model work runs in a thread so the replica keeps accepting.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

import torch
from ray import serve

from serve_apps.models.registry import Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.replica.calls import FinetuneCall, ForecastCall
from serve_apps.settings import Settings
from tsfm_core.checkpoint import load_model, save_finetuned
from tsfm_core.finetune import finetuned_copy
from tsfm_core.predict import Forecaster, ForecastResult

log = logging.getLogger("ray.serve")


class ModelServer:
    def __init__(self, settings: dict):
        self.settings = Settings.from_dict(settings)
        self.resolver = ModelResolver(Registry(self.settings.database_url, self.settings.artifact_dir))
        self.device = "cuda" if self.settings.use_gpu and torch.cuda.is_available() else "cpu"
        # Per-replica options that the deployment config decides.
        self.forecast_batch.set_max_batch_size(self.settings.max_batch_size)
        self.forecast_batch.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)
        self.batches_run = 0
        self.requests_batched = 0

    @serve.multiplexed(max_num_models_per_replica=8)
    async def get_model(self, model_id: str) -> Forecaster:
        directory = self.resolver.model_dir(model_id)
        model = await asyncio.to_thread(load_model, directory, self.resolver.model_dir, self.device)
        log.info("loaded model %s from %s", model_id, directory)
        return Forecaster(model, device=self.device)

    async def forecast(self, call: ForecastCall) -> list[ForecastResult]:
        model_id = serve.get_multiplexed_model_id()
        forecaster = await self.get_model(model_id)
        if call.finetune is not None:
            channels = call.finetune_series or [s.values[:, c] for s in call.request.series for c in range(s.n_channels)]
            tuned, _ = await asyncio.to_thread(finetuned_copy, forecaster.model, channels, call.finetune)
            results = await asyncio.to_thread(Forecaster(tuned, device=self.device).forecast_many, [call.request])
            return results[0]
        return await self.forecast_batch((model_id, call))

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def forecast_batch(self, items: list[tuple[str, ForecastCall]]) -> list[list[ForecastResult]]:
        """Coalesces concurrent requests: one model pass per model id present in the batch."""
        self.batches_run += 1
        self.requests_batched += len(items)
        by_model: dict[str, list[int]] = defaultdict(list)
        for i, (model_id, _) in enumerate(items):
            by_model[model_id].append(i)
        results: list = [None] * len(items)
        for model_id, indexes in by_model.items():
            forecaster = await self.get_model(model_id)
            outs = await asyncio.to_thread(forecaster.forecast_many, [items[i][1].request for i in indexes])
            for i, out in zip(indexes, outs):
                results[i] = out
        return results

    async def finetune(self, call: FinetuneCall) -> int:
        """Trains a finetuned copy of the multiplexed model and writes its checkpoint; returns points seen."""
        base_id = serve.get_multiplexed_model_id()
        forecaster = await self.get_model(base_id)
        tuned, points = await asyncio.to_thread(finetuned_copy, forecaster.model, call.series, call.config)
        await asyncio.to_thread(save_finetuned, tuned, call.output_dir, base_id,
                                self.resolver.model_dir(base_id), call.config, call.metadata)
        return points

    async def stats(self) -> dict:
        return {"batches_run": self.batches_run, "requests_batched": self.requests_batched, "device": self.device}

"""The services one ingress replica holds, built once by the Ingress and handed to every route."""

from __future__ import annotations

from dataclasses import dataclass

from serve_apps.finetuning.service import FinetuningService
from serve_apps.finetuning.store import JobStore
from serve_apps.models.catalog import CATALOG
from serve_apps.models.registry import Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.nixtla.async_runner import AsyncJobRunner
from serve_apps.nixtla.async_store import AsyncJobStore
from serve_apps.nixtla.cluster_finetune import ClusterFinetune
from serve_apps.nixtla.tasks import NixtlaTasks
from serve_apps.replica.client import ModelClient
from serve_apps.replica.engine import ModelEngine, torch_device
from serve_apps.replica.metrics import ServingMetrics
from serve_apps.settings import Settings
from serve_apps.storage.files import FileStore
from tsfm_core.checkpoint import BASE_MODEL_ID, read_config


@dataclass(frozen=True)
class BaseShape:
    """What clients are told of the bundled base model's input and output sizes."""

    max_context: int
    output_patch_len: int

    @classmethod
    def bundled(cls) -> "BaseShape":
        model = read_config(CATALOG.entries[BASE_MODEL_ID].path)["model"]
        return cls(model["max_context"], model["output_patch_len"])


@dataclass
class Services:
    settings: Settings
    keys: dict[str, str]  # API key -> organization
    base: BaseShape
    registry: Registry
    resolver: ModelResolver
    files: FileStore
    jobs: JobStore
    models: ModelClient
    metrics: ServingMetrics
    finetuning: FinetuningService
    nixtla: NixtlaTasks
    async_jobs: AsyncJobStore
    async_runner: AsyncJobRunner

    @classmethod
    def build(cls, settings: Settings, model_server=None, job_manager=None, metrics: ServingMetrics | None = None,
              start_runner: bool = True, engine: ModelEngine | None = None) -> "Services":
        """Connects the stores and wires the services; starts this replica's async job runner.

        `model_server` (a ModelServer handle) takes bulk forecasts and fine-tunes; `job_manager` (a
        JobManager handle) runs named fine-tuning jobs. Without them (a bare process) everything runs
        here and named fine-tuning jobs are not available. `engine`: run this replica's forecasts in
        an engine it already has (the ModelServer's, when it answers bulk HTTP requests)."""
        metrics = metrics or ServingMetrics()
        registry = Registry(settings.database_url, settings.artifact_dir)
        resolver = ModelResolver(registry, third_party_aliases=settings.third_party_aliases,
                                 third_party_dir=settings.third_party_dir)
        # Small forecasts run here and skip a hop, unless the ModelServer must run them all (a GPU).
        local = engine
        if local is None and not (settings.model_server_only and model_server is not None):
            local = ModelEngine(resolver.model_dir, torch_device(settings.use_gpu),
                                max_batch_series=settings.max_batch_series, max_pending=settings.max_pending,
                                metrics=metrics, stats_n_jobs=settings.stats_n_jobs,
                                stats_concurrency=settings.stats_concurrency, max_wait_s=settings.max_queue_wait_s)
        models = ModelClient(local, model_server, settings.bulk_points, metrics)
        jobs = JobStore(settings.database_url)
        base = BaseShape.bundled()
        finetuning = FinetuningService(settings, registry, jobs, resolver, job_manager)
        nixtla = NixtlaTasks(settings, registry, resolver, models, base.max_context, base.output_patch_len,
                             ClusterFinetune(settings, finetuning, resolver, base.output_patch_len))
        async_jobs = AsyncJobStore(settings.database_url, settings.artifact_dir)
        runner = AsyncJobRunner(async_jobs, nixtla, settings.async_jobs_per_replica)
        if start_runner:  # needs the running event loop (a Serve replica's constructor has one)
            runner.start()
        return cls(settings=settings, keys=settings.api_key_map(), base=base, registry=registry, resolver=resolver,
                   files=FileStore(settings.database_url, settings.artifact_dir), jobs=jobs, models=models,
                   finetuning=finetuning, nixtla=nixtla,
                   async_jobs=async_jobs, async_runner=runner, metrics=metrics)

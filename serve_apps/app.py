"""Serve application builder: `serve run serve_apps.app:build_app` or a Serve config file's import_path."""

from __future__ import annotations

from ray import serve
from ray.serve import Application

from serve_apps.finetuning.manager import JobManager
from serve_apps.ingress import Ingress
from serve_apps.replica.model_server import ModelServer
from serve_apps.settings import Settings


def build_app(args: dict | None = None) -> Application:
    """`args` override Settings fields (database_url, artifact_dir, use_gpu, min/max_replicas, ...)."""
    settings = Settings.from_dict(args)
    # On CPUs the bulk lane: few heavy requests at a time per replica, a short queue, then 503. When
    # it runs every forecast (Settings.model_server_only), it takes as many requests as its engine
    # batches and sheds; 8 at a time left the GPU passes at 1.7 requests each (H200 figures).
    ongoing, queued, target = (settings.max_pending, settings.max_pending, settings.ingress_target_ongoing) \
        if settings.model_server_only else (8, 64, 2)
    model_server = serve.deployment(
        ModelServer,
        name="ModelServer",
        ray_actor_options={"num_cpus": settings.model_server_cpus, "num_gpus": 1 if settings.use_gpu else 0},
        max_ongoing_requests=ongoing,
        max_queued_requests=queued,
        graceful_shutdown_timeout_s=settings.drain_timeout_s,
        autoscaling_config={
            "min_replicas": settings.min_replicas,
            "max_replicas": settings.max_replicas,
            "target_ongoing_requests": target,
            "upscale_delay_s": 10,
            "downscale_delay_s": settings.model_server_downscale_delay_s,
        },
    )
    # One replica: it owns the reconcile loop for every job (state lives in the database).
    job_manager = serve.deployment(JobManager, name="JobManager", num_replicas=1,
                                   ray_actor_options={"num_cpus": 0}).bind(settings.to_dict())
    # Serve hands the ingress far more requests than its autoscaling target, so batches fill and the
    # engine (not a proxy queue) decides when to shed; the autoscaler adds replicas past the target.
    ingress = serve.deployment(
        Ingress,
        name="Ingress",
        ray_actor_options={"num_cpus": 0.25},
        max_ongoing_requests=settings.ingress_max_ongoing,
        max_queued_requests=settings.ingress_max_ongoing,
        # A replica the autoscaler removes finishes what it holds first: Serve's default 20 s
        # killed Ingress replicas waiting on 40 s bulk forecasts (500s in serve_autoscale.py).
        graceful_shutdown_timeout_s=settings.drain_timeout_s,
        autoscaling_config={
            "min_replicas": settings.ingress_min_replicas,
            "max_replicas": settings.ingress_max_replicas,
            "target_ongoing_requests": settings.ingress_target_ongoing,
            "upscale_delay_s": 5,
            "downscale_delay_s": settings.ingress_downscale_delay_s,
        },
    )
    return ingress.bind(model_server.bind(settings.to_dict(), job_manager), job_manager, settings.to_dict())

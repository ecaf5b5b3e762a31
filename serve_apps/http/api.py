"""The FastAPI application: error handlers, body middleware and one router per public API.

`create_api(services)` is all the HTTP surface there is; the Serve ingress builds it in each replica,
and it runs the same under a plain uvicorn process (what the serving benchmark compares against).
"""

from __future__ import annotations

from fastapi import FastAPI

from serve_apps.errors import install_error_handlers
from serve_apps.http import cohere_routes, nixtla_routes, openai_routes, tsfm_routes
from serve_apps.http.bulk_lane import BulkForwarder
from serve_apps.http.guards import CallerGate, JsonGuard
from serve_apps.http.middleware import BodyMiddleware
from serve_apps.http.observe import MetricsMiddleware, install_overload_handler
from serve_apps.http.openapi import install_openapi
from serve_apps.limits import (
    DEFAULT_RATE_PER_MINUTE,
    RateLimiter,
    install_limit_handler,
)
from serve_apps.replica.metrics import ServingMetrics
from serve_apps.services import Services
from serve_apps.settings import Settings

ROUTERS = (tsfm_routes.router, nixtla_routes.router, openai_routes.router, cohere_routes.router)


def create_api(services: Services) -> FastAPI:
    app = FastAPI(title="tsfm-cluster", version="0.1.0",
                  description="Self-hosted time-series foundation model serving and finetuning.")
    app.state.services = services
    install_error_handlers(app, ROUTERS)
    install_openapi(app)
    install_overload_handler(app)
    install_limit_handler(app)
    # Starlette runs the last added outermost: [bulk forwarding] -> metrics -> gate (auth, rate) ->
    # size/decoding -> JSON checks.
    app.add_middleware(JsonGuard)
    app.add_middleware(BodyMiddleware, max_bytes=services.settings.max_body_bytes)
    settings = services.settings
    app.add_middleware(CallerGate, keys=services.keys,
                       limiter=RateLimiter(settings.limit(settings.rate_limit_per_minute, DEFAULT_RATE_PER_MINUTE)))
    app.add_middleware(MetricsMiddleware, metrics=services.metrics)  # sees every answer given here
    if services.models.remote is not None and settings.bulk_body_bytes > 0:
        # Outermost: a big body goes to the ModelServer before anything here reads it (its app
        # checks, meters and answers the request).
        app.add_middleware(BulkForwarder, lane=services.models.remote, min_bytes=settings.bulk_body_bytes,
                           max_bytes=settings.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    return app


def standalone_api(settings: Settings) -> FastAPI:
    """The whole app in one process without Ray Serve: forecasts, Nixtla tasks and in-call finetunes
    run in this process's engine; named fine-tuning jobs need the JobManager and are not available.
    The async job runner starts with the server's event loop."""
    services = Services.build(settings, metrics=ServingMetrics.disabled(), start_runner=False)
    app = create_api(services)
    app.router.on_startup.append(services.async_runner.start)
    return app

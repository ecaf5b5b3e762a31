"""The FastAPI application: error handlers, body middleware and one router per public API.

`create_api(services)` is all the HTTP surface there is; the Serve ingress builds it in each replica,
and it runs the same under a plain uvicorn process (what the serving benchmark compares against).
"""

from __future__ import annotations

from fastapi import FastAPI

from serve_apps.errors import install_error_handlers
from serve_apps.http import cohere_routes, nixtla_routes, openai_routes, tsfm_routes
from serve_apps.http.middleware import BodyMiddleware
from serve_apps.http.openapi import install_openapi
from serve_apps.services import Services

ROUTERS = (tsfm_routes.router, nixtla_routes.router, openai_routes.router, cohere_routes.router)


def create_api(services: Services) -> FastAPI:
    app = FastAPI(title="tsfm-cluster", version="0.1.0",
                  description="Self-hosted time-series foundation model serving and finetuning.")
    app.state.services = services
    install_error_handlers(app, ROUTERS)
    install_openapi(app)
    app.add_middleware(BodyMiddleware, max_bytes=services.settings.max_body_bytes)
    for router in ROUTERS:
        app.include_router(router)
    return app

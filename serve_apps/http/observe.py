"""Per-request metrics (route, dialect, status, latency) and the 503 answer of an overloaded engine."""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve_apps.errors import render, shape_of
from serve_apps.replica.engine import Overloaded
from serve_apps.replica.metrics import ServingMetrics

# Longest prefix first: which public API a path belongs to.
DIALECTS = (("/v1/finetuning", "cohere"), ("/v1/fine_tuning", "openai"), ("/v1/files", "openai"),
            ("/v1/models", "openai"), ("/v1/forecast", "tsfm"), ("/api/models", "tsfm"), ("/v2", "nixtla"), ("/model_params", "nixtla"),
            ("/validate_api_key", "nixtla"))


def dialect_of(path: str) -> str:
    return next((name for prefix, name in DIALECTS if path.startswith(prefix)), "service")


class MetricsMiddleware:
    """Pure ASGI (no per-request task or body copy): times each request and records its status."""

    def __init__(self, app, metrics: ServingMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.metrics.enabled:
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def send_and_watch(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.request(template, dialect_of(scope["path"]), status, time.perf_counter() - started)


def install_overload_handler(app: FastAPI) -> None:
    @app.exception_handler(Overloaded)
    async def _overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        # In the error shape of the route's dialect, like every other error it answers.
        return render(shape_of(request.scope), 503, [{"loc": [], "msg": str(exc), "type": "overloaded"}],
                      headers={"Retry-After": str(exc.retry_after_s)})

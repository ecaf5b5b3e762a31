"""The Serve ingress deployment: builds this replica's services and the HTTP app that routes to them.

Routes live in `serve_apps/http/` (one router per public API), the work in the services they call.
Small forecasts run in this replica's own engine; bulk ones and fine-tunes go to the ModelServer.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_apps.http.api import create_api
from serve_apps.services import Services
from serve_apps.settings import Settings


@serve.ingress()
class Ingress:
    def __init__(self, model_server: DeploymentHandle, job_manager: DeploymentHandle, settings: dict):
        self.services = Services.build(Settings.from_dict(settings), model_server, job_manager)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self.services)

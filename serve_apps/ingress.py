"""The HTTP front door: one FastAPI app serving every wire dialect, deployed as a Serve ingress.

Routes validate and convert bodies with their dialect module, resolve model names through the
catalog and registry, and hand internal jobs to the ModelServer deployment.
"""


import asyncio
import time
from typing import Any

import sqlalchemy as sa
from fastapi import Body, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_apps.auth import Caller, authenticate
from serve_apps.catalog import CATALOG
from serve_apps.dialects import nixtla, tsfm
from serve_apps.errors import ApiError, install_error_handlers, invalid, not_found
from serve_apps.jobs import FinetuneJob, ForecastJob
from serve_apps.middleware import BodyMiddleware
from serve_apps.registry import ModelNotFound, Registry, new_model_id
from serve_apps.settings import Settings
from tsfm_core.checkpoint import read_config

app = FastAPI(title="tsfm-cluster", version="0.1.0",
              description="Self-hosted time-series foundation model serving and finetuning.")
install_error_handlers(app)
app.add_middleware(BodyMiddleware, max_bytes=Settings().max_body_bytes)

ERROR_CODES = {401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 422: "INVALID_ARGUMENT"}


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
@serve.ingress(app)
class Ingress:
    def __init__(self, model_server: DeploymentHandle, settings: dict):
        self.settings = Settings.from_dict(settings)
        self.registry = Registry(self.settings.database_url, self.settings.artifact_dir)
        self.model_server = model_server
        self.keys = self.settings.api_key_map()
        self.max_context = read_config(CATALOG.entries["tsfm-base"].path)["model"]["max_context"]
        self.output_patch_len = read_config(CATALOG.entries["tsfm-base"].path)["model"]["output_patch_len"]

    # ---- shared helpers -------------------------------------------------------------------------
    def caller(self, request: Request) -> Caller:
        return authenticate(request, self.keys)

    def resolve(self, name: str, caller: Caller, loc: list) -> str:
        """A client-facing model name -> the id the ModelServer multiplexes on."""
        entry = CATALOG.lookup(name)
        if entry is not None:
            return entry.id
        try:
            return self.registry.get(name, caller.organization).id
        except ModelNotFound:
            raise not_found(loc, f"model {name!r}") from None

    async def run_forecast(self, model_id: str, job: ForecastJob):
        return await self.model_server.options(multiplexed_model_id=model_id).forecast.remote(job)

    # ---- service -----------------------------------------------------------------------------------
    @app.get("/health")
    async def health(self) -> dict:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def list_models(self, request: Request) -> dict:
        caller = self.caller(request)
        data = [{"id": e.id, "object": "model", "owned_by": "tsfm-cluster", "aliases": list(e.aliases),
                 "kind": "base", "max_context_length": self.max_context} for e in CATALOG.entries.values()]
        data += [{"id": r.id, "object": "model", "owned_by": r.organization, "kind": "finetuned",
                  "base_model": r.base_model_id, "created": int(r.created_at), "status": r.status}
                 for r in self.registry.list(caller.organization)]
        return {"object": "list", "data": data}

    # ---- TSFM.ai /v1/forecast -----------------------------------------------------------------------
    @app.post("/v1/forecast")
    async def forecast(self, request: Request, payload: dict = Body(...)) -> Any:
        caller = self.caller(request)
        if "requests" in payload:
            items = payload["requests"]
            if not isinstance(items, list) or not items:
                raise invalid(["body", "requests"], "requests must be a non-empty list of forecast requests")
            results = await asyncio.gather(*(self._batch_item(item, i, caller) for i, item in enumerate(items)))
            return {"object": "list", "data": list(results)}
        try:
            return await self._forecast_one(payload, ["body"], caller)
        except ValidationError as exc:
            return JSONResponse(status_code=422, content={"detail": tsfm.validation_detail(exc, ["body"])})

    async def _forecast_one(self, payload: Any, loc: list, caller: Caller) -> dict:
        started = time.time()
        body = tsfm.parse_forecast(payload)
        model_id = self.resolve(body.model, caller, loc + ["model"])
        request = tsfm.to_request(body, loc, self.settings.max_points, self.settings.max_prediction_length)
        results = await self.run_forecast(model_id, ForecastJob(request=request))
        return tsfm.build_response(body, request, results, model_id, started, self.max_context)

    async def _batch_item(self, item: Any, index: int, caller: Caller) -> dict:
        loc = ["body", "requests", index]
        try:
            return {"ok": True, "result": await self._forecast_one(item, loc, caller)}
        except ValidationError as exc:
            detail = tsfm.validation_detail(exc, loc)
            status = 422
        except ApiError as exc:
            detail, status = exc.detail(), exc.status
        return {"ok": False, "error": {"error": detail[0]["msg"], "code": ERROR_CODES.get(status, "INVALID_ARGUMENT"),
                                       "status": status, "endpoint": "/v1/forecast", "detail": detail}}

    # ---- Nixtla /v2 and /model_params ---------------------------------------------------------------
    @app.get("/model_params")
    async def model_params(self, request: Request, model: str = Query("timegpt-1"), freq: str | None = Query(None)) -> dict:
        self.resolve(model, self.caller(request), ["query", "model"])
        return {"detail": {"input_size": self.max_context, "horizon": self.output_patch_len}}

    @app.post("/model_params")
    async def model_params_post(self, request: Request, payload: dict = Body(default={})) -> dict:
        model = payload.get("model") or "timegpt-1"
        self.resolve(str(model), self.caller(request), ["body", "model"])
        return {"detail": {"input_size": self.max_context, "horizon": self.output_patch_len}}

    @app.get("/validate_api_key")
    async def validate_api_key(self, request: Request) -> dict:
        caller = self.caller(request)
        return {"detail": "API key is valid", "organization": caller.organization}

    @app.get("/v2/models")
    async def nixtla_models(self, request: Request) -> dict:
        self.caller(request)
        return {"models": [{"name": n} for n in CATALOG.names()]}

    @app.post("/v2/forecast")
    async def nixtla_forecast(self, request: Request, body: nixtla.NixtlaForecastBody) -> dict:
        caller = self.caller(request)
        if body.finetuned_model_id:
            model_id = self.resolve(body.finetuned_model_id, caller, ["body", "finetuned_model_id"])
        else:
            model_id = self.resolve(body.model, caller, ["body", "model"])
        forecast_request = nixtla.to_forecast_request(body, self.settings.max_prediction_length)
        finetune = nixtla.forecast_finetune(body, self.settings.max_sync_finetune_steps)
        results = await self.run_forecast(model_id, ForecastJob(request=forecast_request, finetune=finetune))
        return nixtla.forecast_response(body, results)

    @app.post("/v2/finetune")
    async def nixtla_finetune(self, request: Request, body: nixtla.NixtlaFinetuneBody) -> dict:
        caller = self.caller(request)
        if body.finetuned_model_id:
            parent = self.resolve(body.finetuned_model_id, caller, ["body", "finetuned_model_id"])
        else:
            parent = self.resolve(body.model, caller, ["body", "model"])
        config = nixtla.finetune_config(body, self.settings.max_sync_finetune_steps)
        model_id = body.output_model_id or new_model_id()
        if CATALOG.lookup(model_id) is not None:
            raise invalid(["body", "output_model_id"], f"{model_id!r} is the name of a base model")
        try:
            self.registry.add(model_id=model_id, organization=caller.organization, base_model_id=parent,
                              source="nixtla", created_by=caller.key_hint, freq=body.freq,
                              steps=config.steps, depth=config.depth, loss=config.loss, finetune_tokens=0,
                              params={"requested_model": body.model}, status="finetuning")
        except sa.exc.IntegrityError:
            raise invalid(["body", "output_model_id"], f"a model with id {model_id!r} already exists") from None
        series = nixtla.split_series(body.series)
        job = FinetuneJob(base_model_id=parent, series=series, config=config,
                          output_dir=str(self.registry.artifact_path_for(model_id)), metadata={"id": model_id})
        try:
            points = await self.model_server.options(multiplexed_model_id=parent).finetune.remote(job)
        except BaseException:
            self.registry.discard(model_id)
            raise
        self.registry.set_status(model_id, "ready", finetune_tokens=points)
        return {"input_tokens": len(body.series.y), "output_tokens": 0, "finetune_tokens": points,
                "finetuned_model_id": model_id}

    @app.get("/v2/finetuned_models")
    async def nixtla_finetuned_models(self, request: Request) -> dict:
        caller = self.caller(request)
        return {"finetuned_models": [nixtla.finetuned_model_view(r) for r in self.registry.list(caller.organization)]}

    @app.get("/v2/finetuned_models/{model_id}")
    async def nixtla_finetuned_model(self, model_id: str, request: Request) -> dict:
        caller = self.caller(request)
        try:
            return nixtla.finetuned_model_view(self.registry.get(model_id, caller.organization))
        except ModelNotFound:
            raise not_found(["path", "model_id"], f"finetuned model {model_id!r}") from None

    @app.delete("/v2/finetuned_models/{model_id}", status_code=204)
    async def nixtla_delete_finetuned_model(self, model_id: str, request: Request) -> Response:
        caller = self.caller(request)
        try:
            self.registry.delete(model_id, caller.organization)
        except ModelNotFound:
            raise not_found(["path", "model_id"], f"finetuned model {model_id!r}") from None
        return Response(status_code=204)

    @app.get("/v1/stats")
    async def stats(self, request: Request) -> dict:
        self.caller(request)
        return await self.model_server.stats.remote()

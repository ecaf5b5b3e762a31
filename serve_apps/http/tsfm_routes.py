"""TSFM.ai-style forecasting (`/v1/forecast`, single and batch), health and stats (errors in the detail shape)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import ValidationError

from serve_apps.auth import Caller
from serve_apps.dialects import tsfm
from serve_apps.dialects import tsfm_schema as schema
from serve_apps.dialects.schema import RESPONSE
from serve_apps.errors import ApiError, error_responses, invalid, invalid_body, validation_detail
from serve_apps.http.dependencies import caller, services
from serve_apps.http.openapi import parsed_body
from serve_apps.replica.calls import ForecastCall
from serve_apps.services import Services

router = APIRouter()

ERROR_CODES = {401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 422: "INVALID_ARGUMENT"}


@router.get("/health", response_model=schema.Health, **RESPONSE)
async def health() -> dict:
    return {"status": "ok"}


@router.get("/v1/stats", response_model=schema.Stats, responses=error_responses("detail", 401, 429), **RESPONSE)
async def stats(_: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return await svc.models.stats()


@router.post("/v1/forecast", response_model=schema.ForecastResponse | schema.BatchForecastResponse,
             responses=error_responses("detail", 400, 401, 404, 409, 413, 415, 422, 429, 503),
             openapi_extra=parsed_body(schema.ForecastRequestBody, "One forecast request, or a batch of them in `requests`"),
             **RESPONSE)
async def forecast(payload: dict = Body(...), who: Caller = Depends(caller), svc: Services = Depends(services)) -> Any:
    if "requests" in payload:
        for key in payload:
            if key != "requests":
                raise invalid(["body", key], "a batch body holds only `requests`; put this in each request",
                              "extra_forbidden")
        items = payload["requests"]
        if not isinstance(items, list) or not items:
            raise invalid(["body", "requests"], "requests must be a non-empty list of forecast requests")
        results = await asyncio.gather(*(_batch_item(svc, item, i, who) for i, item in enumerate(items)))
        return {"object": "list", "data": list(results)}
    try:
        return await _forecast_one(svc, payload, ["body"], who)
    except ValidationError as exc:
        return invalid_body(exc)


async def _forecast_one(svc: Services, payload: Any, loc: list, who: Caller) -> dict:
    started = time.time()
    body = tsfm.parse_forecast(payload)
    model_id = svc.resolver.resolve(body.model, who.organization, loc + ["model"]).id
    request = tsfm.to_request(body, loc, svc.settings.max_points, svc.settings.max_prediction_length)
    results = await svc.models.forecast(model_id, ForecastCall(request=request))
    return tsfm.build_response(body, request, results, model_id, started, svc.base.max_context)


async def _batch_item(svc: Services, item: Any, index: int, who: Caller) -> dict:
    loc = ["body", "requests", index]
    try:
        return {"ok": True, "result": await _forecast_one(svc, item, loc, who)}
    except ValidationError as exc:
        detail = validation_detail(exc, loc)
        status = 422
    except ApiError as exc:
        detail, status = exc.detail(), exc.status
    return {"ok": False, "error": {"error": detail[0]["msg"], "code": ERROR_CODES.get(status, "INVALID_ARGUMENT"),
                                   "status": status, "endpoint": "/v1/forecast", "detail": detail}}

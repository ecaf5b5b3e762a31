"""TSFM.ai-style forecasting (`/v1/forecast`, single and batch; `/v1/forecast/ensemble`), the model
catalog (`/api/models`), health and stats (errors in the detail shape)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError

from serve_apps.auth import Caller
from serve_apps.dialects import tsfm, tsfm_ensemble
from serve_apps.dialects import tsfm_schema as schema
from serve_apps.dialects.schema import RESPONSE
from serve_apps.errors import ApiError, error_responses, invalid, invalid_body, validation_detail
from serve_apps.http.dependencies import caller, services
from serve_apps.http.fast_json import FastJSONResponse
from serve_apps.http.openapi import parsed_body
from serve_apps.models.catalog import CATALOG, ENSEMBLE
from serve_apps.replica.calls import ForecastCall
from serve_apps.replica.metrics import metrics_endpoints, replica_counts
from serve_apps.services import Services

router = APIRouter()

ERROR_CODES = {401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 422: "INVALID_ARGUMENT"}


@router.get("/health", response_model=schema.Health, **RESPONSE)
async def health() -> dict:
    return {"status": "ok"}


@router.get("/v1/stats", response_model=schema.Stats, responses=error_responses("detail", 401, 429), **RESPONSE)
async def stats(_: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    """Batching counters of both lanes, running replicas, and each Ray node's Prometheus endpoint."""
    return {**await svc.models.stats(), "replicas": await asyncio.to_thread(replica_counts),
            "metrics_endpoints": await asyncio.to_thread(metrics_endpoints)}


# Bodies larger than this are decoded, validated and answered in a worker thread. That keeps the
# event loop turning between the GIL-holding C calls (orjson, pydantic-core) but not during them,
# so the Ingress hands such bodies to the ModelServer whole (http/bulk_lane.py); this is for where
# they are still answered: the ModelServer itself, and bodies sent without a Content-Length.
OFF_LOOP_BYTES = 256 * 1024


def _decode(raw: bytes) -> Any:
    """orjson for speed; the standard parser where orjson refuses NaN/Infinity literals, which mean
    missing values (NaN) or are answered as out-of-range values naming their field (Infinity)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


async def _maybe_off_loop(off_loop: bool, fn, *args):
    return await asyncio.to_thread(fn, *args) if off_loop else fn(*args)


async def _json_object(request: Request) -> tuple[dict, bool]:
    """The body as a JSON object, and whether it is big (then the CPU work leaves the event loop)."""
    raw = await request.body()
    big = len(raw) > OFF_LOOP_BYTES
    try:
        payload = await _maybe_off_loop(big, _decode, raw)
    except json.JSONDecodeError as exc:
        raise invalid(["body", exc.pos], f"JSON decode error: {exc.msg}", "json_invalid") from None
    if not isinstance(payload, dict):
        raise invalid(["body"], "the body must be a JSON object", "dict_type")
    return payload, big


@router.post("/v1/forecast", response_model=schema.ForecastResponse | schema.BatchForecastResponse,
             responses=error_responses("detail", 400, 401, 404, 409, 413, 415, 422, 429, 503),
             openapi_extra=parsed_body(schema.ForecastRequestBody, "One forecast request, or a batch of them in `requests`"),
             **RESPONSE)
async def forecast(request: Request, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Any:
    payload, big = await _json_object(request)
    if "requests" in payload:
        for key in payload:
            if key != "requests":
                raise invalid(["body", key], "a batch body holds only `requests`; put this in each request",
                              "extra_forbidden")
        items = payload["requests"]
        if not isinstance(items, list) or not items:
            raise invalid(["body", "requests"], "requests must be a non-empty list of forecast requests")
        results = await asyncio.gather(*(_batch_item(svc, item, i, who, big) for i, item in enumerate(items)))
        return FastJSONResponse({"object": "list", "data": list(results)})
    try:
        return FastJSONResponse(await _forecast_one(svc, payload, ["body"], who, big))
    except ValidationError as exc:
        return invalid_body(exc)


def _prepare(svc: Services, payload: Any, loc: list, parse=tsfm.parse_forecast) -> tuple[tsfm.ForecastBody, Any]:
    body = parse(payload)
    params = body.parameters
    per_step = len(params.quantile_levels) + 1 + (params.num_samples or 0)
    svc.settings.work_limits.check(
        series=len(body.inputs), points=sum(len(s.target) * len(s.target[0]) for s in body.inputs),
        output_values=sum(params.prediction_length * len(s.target[0]) * per_step for s in body.inputs),
        series_loc=loc + ["inputs"], points_loc=loc + ["inputs"],
        output_loc=loc + ["parameters", "num_samples" if params.num_samples else "prediction_length"])
    return body, tsfm.to_request(body, loc, svc.settings.max_points, svc.settings.max_prediction_length)


async def _forecast_one(svc: Services, payload: Any, loc: list, who: Caller, big: bool) -> dict:
    started = time.time()
    body, request = await _maybe_off_loop(big, _prepare, svc, payload, loc)
    resolved = svc.resolver.resolve(body.model, who.organization, loc + ["model"])
    if resolved.kind == ENSEMBLE:  # model "auto"
        return await _ensemble(svc, body, request, loc, who, big, started)
    results = await svc.models.forecast(resolved.id, ForecastCall(request=request))
    return await _maybe_off_loop(big, tsfm.build_response, body, request, results, resolved.id, started,
                                 svc.base.max_context, loc)


async def _ensemble(svc: Services, body: tsfm.ForecastBody, request: Any, loc: list, who: Caller, big: bool,
                    started: float) -> dict:
    """`auto` (and /v1/forecast/ensemble): candidates resolved and lengths checked here (422s naming
    the field), the backtests and fits in the engine, what was chosen added to the response."""
    def resolve(name: str, here: list):
        return svc.resolver.resolve(name, who.organization, here)

    call, shown = await _maybe_off_loop(big, tsfm_ensemble.to_call, body, request, resolve, loc)
    out = await svc.models.ensemble(call)
    response = await _maybe_off_loop(big, tsfm.build_response, body, request, out.results, "auto", started,
                                     svc.base.max_context, loc)
    return tsfm_ensemble.annotate(response, out, call, shown)


@router.post("/v1/forecast/ensemble", response_model=schema.EnsembleForecastResponse,
             responses=error_responses("detail", 400, 401, 404, 409, 413, 415, 422, 429, 503),
             openapi_extra=parsed_body(tsfm_ensemble.EnsembleBody, "A forecast request with ensemble routing"),
             **RESPONSE)
async def forecast_ensemble(request: Request, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Any:
    """Backtests the candidate models on the last window(s) of each series, keeps or weights the best
    per series by `scoring_metric`, and answers the combined forecast with each model's scores."""
    payload, big = await _json_object(request)
    started = time.time()
    try:
        body, forecast_request = await _maybe_off_loop(big, _prepare, svc, payload, ["body"],
                                                       tsfm_ensemble.parse_ensemble)
    except ValidationError as exc:
        return invalid_body(exc)
    resolved = svc.resolver.resolve(body.model, who.organization, ["body", "model"])
    if resolved.kind != ENSEMBLE:
        raise invalid(["body", "model"], f"this route answers model 'auto' (or no model); send {body.model!r} "
                                         "to /v1/forecast, or list it in `models` as a candidate")
    return FastJSONResponse(await _ensemble(svc, body, forecast_request, ["body"], who, big, started))


@router.get("/api/models", response_model=schema.CatalogList, responses=error_responses("detail", 401, 429),
            **RESPONSE)
async def catalog(_: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    """Every catalog model with what it really is and what answers its name here (models.catalog.card)."""
    cards = [svc.resolver.card(entry, svc.settings.max_prediction_length) for entry in CATALOG.entries.values()]
    return {"object": "list", "data": cards}


async def _batch_item(svc: Services, item: Any, index: int, who: Caller, big: bool) -> dict:
    loc = ["body", "requests", index]
    try:
        return {"ok": True, "result": await _forecast_one(svc, item, loc, who, big)}
    except ValidationError as exc:
        detail = validation_detail(exc, loc)
        status = 422
    except ApiError as exc:
        detail, status = exc.detail(), exc.status
    return {"ok": False, "error": {"error": detail[0]["msg"], "code": ERROR_CODES.get(status, "INVALID_ARGUMENT"),
                                   "status": status, "endpoint": "/v1/forecast", "detail": detail}}

"""Nixtla TimeGPT routes (`/v2/*`, `/model_params`, `/validate_api_key`): the sync tasks, the async job
API (`client.jobs.*`) and finetuned-model management. The work is in nixtla.tasks."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response
from pydantic import ValidationError

from serve_apps.auth import Caller
from serve_apps.dialects import nixtla, nixtla_backtest
from serve_apps.errors import ApiError, invalid, invalid_body, not_found
from serve_apps.http.dependencies import caller, services
from serve_apps.http.fast_json import FastJSONResponse
from serve_apps.limits import DEFAULT_CONCURRENT_JOBS, check_job_quota
from serve_apps.models.catalog import CATALOG
from serve_apps.models.registry import ModelNotFound, new_model_id
from serve_apps.nixtla import tasks
from serve_apps.nixtla.async_store import (
    AsyncJobFinished,
    AsyncJobNotFound,
    AsyncJobStatus,
)
from serve_apps.services import Services

router = APIRouter()


def _model_params(svc: Services, model: str, who: Caller, loc: list) -> dict:
    svc.resolver.resolve(model, who.organization, loc)
    return {"detail": {"input_size": svc.base.max_context, "horizon": svc.base.output_patch_len}}


@router.get("/model_params")
async def model_params(model: str = Query("timegpt-1"), freq: str | None = Query(None),
                       who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return _model_params(svc, model, who, ["query", "model"])


@router.post("/model_params")
async def model_params_post(payload: dict = Body(default={}), who: Caller = Depends(caller),
                            svc: Services = Depends(services)) -> dict:
    return _model_params(svc, str(payload.get("model") or "timegpt-1"), who, ["body", "model"])


@router.get("/validate_api_key")
async def validate_api_key(who: Caller = Depends(caller)) -> dict:
    return {"detail": "API key is valid", "organization": who.organization}


@router.get("/v2/models")
async def nixtla_models(_: Caller = Depends(caller)) -> dict:
    return {"models": [{"name": n} for n in CATALOG.names()]}


@router.post("/v2/forecast")
async def nixtla_forecast(body: nixtla.NixtlaForecastBody, who: Caller = Depends(caller),
                          svc: Services = Depends(services)) -> Any:
    return FastJSONResponse(await svc.nixtla.prepare("forecast", body, who)())


@router.post("/v2/cross_validation")
async def nixtla_cross_validation(body: nixtla_backtest.CrossValidationBody, who: Caller = Depends(caller),
                                  svc: Services = Depends(services)) -> Any:
    return FastJSONResponse(await svc.nixtla.prepare("cross_validation", body, who)())


@router.post("/v2/anomaly_detection")
async def nixtla_anomaly_detection(payload: dict = Body(...), who: Caller = Depends(caller),
                                   svc: Services = Depends(services)) -> Any:
    # The batch detector's body, or (as nixtla 1.0 sends it here) the online detector's.
    try:
        task, body = tasks.parse("anomaly_detection", payload)
    except ValidationError as exc:
        return invalid_body(exc)
    return FastJSONResponse(await svc.nixtla.prepare(task, body, who)())


@router.post("/v2/online_anomaly_detection")
async def nixtla_online_anomaly_detection(body: nixtla_backtest.OnlineAnomalyDetectionBody,
                                          who: Caller = Depends(caller), svc: Services = Depends(services)) -> Any:
    return FastJSONResponse(await svc.nixtla.prepare("online_anomaly_detection", body, who)())


@router.post("/v2/finetune")
async def nixtla_finetune(body: nixtla.NixtlaFinetuneBody, who: Caller = Depends(caller),
                          svc: Services = Depends(services)) -> Any:
    return FastJSONResponse(await svc.nixtla.prepare("finetune", body, who)())


# ---- async jobs (client.jobs.*) ------------------------------------------------------------------
@router.post("/v2/{task}/async", status_code=202)
async def nixtla_submit(task: str, payload: dict = Body(...), who: Caller = Depends(caller),
                        svc: Services = Depends(services)) -> Any:
    if task not in tasks.BODIES:
        raise not_found(["path", "task"], f"async task {task!r} (supported: {', '.join(tasks.BODIES)})")
    options = payload.pop("job_options", None) or {}
    timeout = options.get("timeout_seconds") if isinstance(options, dict) else None
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
        raise invalid(["body", "job_options", "timeout_seconds"], "must be a positive number of seconds")
    if task == "finetune" and not payload.get("output_model_id"):
        payload["output_model_id"] = new_model_id()  # fixed now, so a redone attempt makes the same model
    try:
        parsed_task, body = tasks.parse(task, payload)
    except ValidationError as exc:
        return invalid_body(exc)
    svc.nixtla.prepare(parsed_task, body, who)  # every 4xx now, not in a failed job later
    limit = svc.settings.limit(svc.settings.max_concurrent_jobs, DEFAULT_CONCURRENT_JOBS)
    await asyncio.to_thread(check_job_quota, svc.async_jobs.engine, who.organization, limit)
    record = await asyncio.to_thread(svc.async_jobs.create, who.organization, who.key_hint, task, payload, timeout)
    svc.async_runner.wake()
    return {"job_id": record.id, "status": record.status}


def _own_async_job(svc: Services, job_id: str, who: Caller):
    try:
        return svc.async_jobs.get(job_id, who.organization)
    except AsyncJobNotFound:
        raise not_found(["path", "job_id"], f"job {job_id!r}") from None


@router.get("/v2/{task}/jobs/{job_id}")
async def nixtla_job(task: str, job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    record = _own_async_job(svc, job_id, who)
    if record.task != task:
        raise not_found(["path", "job_id"], f"{task} job {job_id!r}")
    done = record.status == AsyncJobStatus.SUCCEEDED
    result = await asyncio.to_thread(svc.async_jobs.result, job_id) if done else None
    return {"job_id": record.id, "task": record.task, "status": record.status, "created_at": record.created_at,
            "started_at": record.started_at, "finished_at": record.finished_at, "attempts": record.attempts,
            "result": result, "error": record.error}


@router.post("/v2/async/jobs/{job_id}/cancel")
async def nixtla_cancel_job(job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    try:
        record = svc.async_jobs.cancel(job_id, who.organization)
    except AsyncJobNotFound:
        raise not_found(["path", "job_id"], f"job {job_id!r}") from None
    except AsyncJobFinished as exc:
        raise ApiError(409, ["path", "job_id"], f"job {job_id!r} already {exc}", "conflict") from None
    return {"job_id": record.id, "status": record.status}


# ---- finetuned models -----------------------------------------------------------------------------
@router.get("/v2/finetuned_models")
async def nixtla_finetuned_models(who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return {"finetuned_models": [nixtla.finetuned_model_view(r) for r in svc.registry.list(who.organization)]}


@router.get("/v2/finetuned_models/{model_id}")
async def nixtla_finetuned_model(model_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    try:
        return nixtla.finetuned_model_view(svc.registry.get(model_id, who.organization))
    except ModelNotFound:
        raise not_found(["path", "model_id"], f"finetuned model {model_id!r}") from None


@router.delete("/v2/finetuned_models/{model_id}", status_code=204)
async def nixtla_delete_finetuned_model(model_id: str, who: Caller = Depends(caller),
                                        svc: Services = Depends(services)) -> Response:
    await svc.finetuning.delete_model(model_id, who)
    return Response(status_code=204)

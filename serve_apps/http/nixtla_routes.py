"""Nixtla TimeGPT routes (`/v2/*`, `/model_params`, `/validate_api_key`): the sync tasks, the async job
API (`client.jobs.*`) and finetuned-model management. The work is in nixtla.tasks. Errors are in
the detail shape, which the nixtla SDK's ApiError shows whole."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError, create_model

from serve_apps.auth import Caller
from serve_apps.dialects import nixtla, nixtla_backtest
from serve_apps.dialects import nixtla_schema as schema
from serve_apps.dialects.schema import RESPONSE
from serve_apps.errors import ApiError, DetailError, error_responses, invalid, invalid_body, not_found
from serve_apps.http.dependencies import caller, services
from serve_apps.http.fast_json import FastJSONResponse
from serve_apps.http.openapi import parsed_body
from serve_apps.limits import DEFAULT_CONCURRENT_JOBS, check_job_quota
from serve_apps.models import third_party
from serve_apps.models.catalog import CATALOG, SERVED_MODEL_HEADER
from serve_apps.models.registry import ModelNotFound, new_model_id, public_id
from serve_apps.nixtla import tasks
from serve_apps.nixtla.async_store import (
    AsyncJobFinished,
    AsyncJobNotFound,
    AsyncJobStatus,
)
from serve_apps.services import Services
from tsfm_core.checkpoint import read_config

# Every route but /health authenticates (401), is rate-limited (429) and validates its parameters (422).
router = APIRouter(responses=error_responses("detail", 401, 422, 429))
NOT_FOUND = error_responses("detail", 404)
# A task: its body (400/413/415 from the body middleware), its model (404, or 409 when not ready).
TASK = error_responses("detail", 400, 404, 409, 413, 415, 503)
# A fine-tune run as a Ray Train job (nixtla.cluster_finetune): 504 when the call stopped waiting for
# it (the answer names the async API), 410 when its job was cancelled before it ended.
CLUSTER_FINETUNE = {
    410: {"model": DetailError, "description": "The fine-tuning job was cancelled before it finished"},
    504: {"model": DetailError, "description": "The fine-tune goes on as a Ray Train job; repeat the call to "
                                               "keep waiting, or use the async API it names"}}
ANOMALY_BODY = nixtla_backtest.AnomalyDetectionBody | nixtla_backtest.OnlineAnomalyDetectionBody


def _model_params(svc: Services, model: str, who: Caller, loc: list) -> dict:
    """The context the model reads and the horizon one pass predicts, as the answering model has them.
    The SDK sends at most `input_size` points per series (3x that with `level`) and warns when `h`
    exceeds `horizon`. Statistical models and `auto` fit the history they get and forecast any horizon
    in one go: the transformer's context (a bounded payload) and the server's horizon limit."""
    resolved = svc.resolver.resolve(model, who.organization, loc)
    if resolved.directory is None:
        return {"detail": {"input_size": svc.base.max_context, "horizon": svc.settings.max_prediction_length}}
    if third_party.detect_family(resolved.directory) is not None:  # a third-party checkpoint, or a finetune of one
        fields = third_party.card_fields(resolved.directory)
        return {"detail": {"input_size": fields["context_length"], "horizon": fields["native_horizon"]}}
    config = read_config(resolved.directory)["model"]
    return {"detail": {"input_size": config["max_context"], "horizon": config["output_patch_len"]}}


@router.get("/model_params", response_model=schema.ModelParams, responses=NOT_FOUND | error_responses("detail", 409),
            **RESPONSE)
async def model_params(model: str = Query("timegpt-1"), freq: str | None = Query(None),
                       who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return _model_params(svc, model, who, ["query", "model"])


@router.post("/model_params", response_model=schema.ModelParams, responses=TASK, **RESPONSE)
async def model_params_post(payload: schema.ModelParamsBody | None = Body(default=None), who: Caller = Depends(caller),
                            svc: Services = Depends(services)) -> dict:
    return _model_params(svc, (payload or schema.ModelParamsBody()).model, who, ["body", "model"])


@router.get("/validate_api_key", response_model=schema.ApiKeyValid, **RESPONSE)
async def validate_api_key(who: Caller = Depends(caller)) -> dict:
    return {"detail": "API key is valid", "organization": who.organization}


@router.get("/v2/models", response_model=schema.ModelNames, **RESPONSE)
async def nixtla_models(_: Caller = Depends(caller)) -> dict:
    return {"models": [{"name": n} for n in CATALOG.names()]}


@router.post("/v2/forecast", response_model=schema.ForecastResponse, responses=TASK | CLUSTER_FINETUNE, **RESPONSE)
async def nixtla_forecast(body: nixtla.NixtlaForecastBody, who: Caller = Depends(caller),
                          svc: Services = Depends(services)) -> Any:
    run = svc.nixtla.prepare("forecast", body, who)
    return FastJSONResponse(await run(), headers=_served(svc, body, who))


def _served(svc: Services, body: Any, who: Caller) -> dict[str, str]:
    """The TimeGPT body has no room for it: the model that answered goes in a header (resolved again:
    a dict lookup for catalog names, the resolver's ready cache for finetuned ones)."""
    return {SERVED_MODEL_HEADER: public_id(svc.nixtla.model_for(body, who))}


@router.post("/v2/cross_validation", response_model=schema.CrossValidationResponse, responses=TASK, **RESPONSE)
async def nixtla_cross_validation(body: nixtla_backtest.CrossValidationBody, who: Caller = Depends(caller),
                                  svc: Services = Depends(services)) -> Any:
    run = svc.nixtla.prepare("cross_validation", body, who)
    return FastJSONResponse(await run(), headers=_served(svc, body, who))


@router.post("/v2/anomaly_detection",
             response_model=schema.AnomalyDetectionResponse | schema.OnlineAnomalyDetectionResponse, responses=TASK,
             openapi_extra=parsed_body(ANOMALY_BODY, "The batch detector's body, or the online detector's "
                                       "(with detection_size, as nixtla's jobs.detect_anomalies sends it)"),
             **RESPONSE)
async def nixtla_anomaly_detection(payload: dict = Body(...), who: Caller = Depends(caller),
                                   svc: Services = Depends(services)) -> Any:
    # The batch detector's body, or (as nixtla 1.0 sends it here) the online detector's.
    try:
        task, body = tasks.parse("anomaly_detection", payload)
    except ValidationError as exc:
        return invalid_body(exc)
    return FastJSONResponse(await svc.nixtla.prepare(task, body, who)())


@router.post("/v2/online_anomaly_detection", response_model=schema.OnlineAnomalyDetectionResponse, responses=TASK,
             **RESPONSE)
async def nixtla_online_anomaly_detection(body: nixtla_backtest.OnlineAnomalyDetectionBody,
                                          who: Caller = Depends(caller), svc: Services = Depends(services)) -> Any:
    return FastJSONResponse(await svc.nixtla.prepare("online_anomaly_detection", body, who)())


@router.post("/v2/finetune", response_model=schema.FinetuneResponse, responses=TASK | CLUSTER_FINETUNE, **RESPONSE)
async def nixtla_finetune(body: nixtla.NixtlaFinetuneBody, who: Caller = Depends(caller),
                          svc: Services = Depends(services)) -> Any:
    return FastJSONResponse(await svc.nixtla.prepare("finetune", body, who)())


# ---- async jobs (client.jobs.*) ------------------------------------------------------------------
def _async_body(task: str, body: type[BaseModel]) -> Any:
    """The documented async body: the task's own (either detector's for anomaly_detection) plus job_options."""
    bodies = [nixtla_backtest.AnomalyDetectionBody, nixtla_backtest.OnlineAnomalyDetectionBody] \
        if task == "anomaly_detection" else [body]
    documented = [create_model(f"Async{b.__name__}", __base__=b, job_options=(schema.JobOptions | None, None))
                  for b in bodies]
    return documented[0] if len(documented) == 1 else documented[0] | documented[1]


async def _submit(task: str, payload: dict, who: Caller, svc: Services) -> Any:
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


def _submit_route(task: str):
    async def submit(payload: dict = Body(...), who: Caller = Depends(caller), svc: Services = Depends(services)) -> Any:
        return await _submit(task, payload, who, svc)
    return submit


for _task, _body in tasks.BODIES.items():
    router.add_api_route(f"/v2/{_task}/async", _submit_route(_task), methods=["POST"], status_code=202,
                         name=f"nixtla_submit_{_task}", response_model=schema.AsyncSubmitted, responses=TASK,
                         openapi_extra=parsed_body(_async_body(_task, _body)), **RESPONSE)


@router.post("/v2/{task}/async", include_in_schema=False)
async def nixtla_submit_unknown(task: str, _: Caller = Depends(caller)) -> Any:
    raise not_found(["path", "task"], f"async task {task!r} (supported: {', '.join(tasks.BODIES)})")


def _own_async_job(svc: Services, job_id: str, who: Caller):
    try:
        return svc.async_jobs.get(job_id, who.organization)
    except AsyncJobNotFound:
        raise not_found(["path", "job_id"], f"job {job_id!r}") from None


@router.get("/v2/{task}/jobs/{job_id}", response_model=schema.AsyncJob, responses=NOT_FOUND, **RESPONSE)
async def nixtla_job(job_id: str, task: str = Path(json_schema_extra={"enum": list(tasks.BODIES)}), who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    record = _own_async_job(svc, job_id, who)
    if record.task != task:
        raise not_found(["path", "job_id"], f"{task} job {job_id!r}")
    done = record.status == AsyncJobStatus.SUCCEEDED
    result = await asyncio.to_thread(svc.async_jobs.result, job_id) if done else None
    return {"job_id": record.id, "task": record.task, "status": record.status, "created_at": record.created_at,
            "started_at": record.started_at, "finished_at": record.finished_at, "attempts": record.attempts,
            "result": result, "error": record.error}


@router.post("/v2/async/jobs/{job_id}/cancel", response_model=schema.AsyncSubmitted,
             responses=NOT_FOUND | error_responses("detail", 400, 409, 413, 415), **RESPONSE)
async def nixtla_cancel_job(job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    try:
        record = svc.async_jobs.cancel(job_id, who.organization)
    except AsyncJobNotFound:
        raise not_found(["path", "job_id"], f"job {job_id!r}") from None
    except AsyncJobFinished as exc:
        raise ApiError(409, ["path", "job_id"], f"job {job_id!r} already {exc}", "conflict") from None
    return {"job_id": record.id, "status": record.status}


# ---- finetuned models -----------------------------------------------------------------------------
@router.get("/v2/finetuned_models", response_model=schema.FinetunedModels, **RESPONSE)
async def nixtla_finetuned_models(who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return {"finetuned_models": [nixtla.finetuned_model_view(r) for r in svc.registry.list(who.organization)]}


@router.get("/v2/finetuned_models/{model_id}", response_model=schema.FinetunedModel, responses=NOT_FOUND, **RESPONSE)
async def nixtla_finetuned_model(model_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    try:
        return nixtla.finetuned_model_view(svc.registry.get(model_id, who.organization))
    except ModelNotFound:
        raise not_found(["path", "model_id"], f"finetuned model {model_id!r}") from None


@router.delete("/v2/finetuned_models/{model_id}", status_code=204, response_class=Response,
               responses=NOT_FOUND | {204: {"description": "Deleted"}})
async def nixtla_delete_finetuned_model(model_id: str, who: Caller = Depends(caller),
                                        svc: Services = Depends(services)) -> Response:
    await svc.finetuning.delete_model(model_id, who)
    return Response(status_code=204)

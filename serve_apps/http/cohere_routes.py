"""Cohere-style finetuned models (`/v1/finetuning/finetuned-models`): a registry model plus its job.
Errors are in the detail shape, which the cohere SDK's ApiError carries whole as its body."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from serve_apps.auth import Caller
from serve_apps.dialects import cohere
from serve_apps.dialects import cohere_schema as schema
from serve_apps.dialects.schema import RESPONSE
from serve_apps.errors import ApiError, error_responses
from serve_apps.http.dependencies import caller, services
from serve_apps.http.openai_routes import own_file
from serve_apps.models.registry import ModelRecord
from serve_apps.services import Services

# Every route authenticates (401), is rate-limited (429) and validates its parameters (422).
router = APIRouter(responses=error_responses("detail", 401, 422, 429))
NOT_FOUND = error_responses("detail", 404)
BODY = error_responses("detail", 400, 413, 415)  # the body middleware's answers

DEFAULT_BASE = "tsfm-base"


def _view(svc: Services, record: ModelRecord) -> dict:
    return cohere.model_view(record, svc.jobs.by_model(record.id))


def _descending(order_by: str | None) -> bool:
    return bool(order_by) and order_by.strip().endswith("desc")


@router.post("/v1/finetuning/finetuned-models", response_model=schema.FinetunedModelResponse,
             responses=BODY | NOT_FOUND | error_responses("detail", 409), **RESPONSE)
async def cohere_create(body: cohere.FinetunedModelBody, who: Caller = Depends(caller),
                        svc: Services = Depends(services)) -> dict:
    base_name = body.settings.base_model.name or DEFAULT_BASE
    base = svc.resolver.resolve_trainable(base_name, who.organization, ["body", "settings", "base_model", "name"])
    file = own_file(svc, body.settings.dataset_id, who, ["body", "settings", "dataset_id"])
    windows = max(file.n_series, file.n_points // svc.base.output_patch_len)
    spec = cohere.training_spec(body, base.id, windows, svc.settings.max_job_steps)
    settings = body.settings.model_dump(mode="json", exclude={"wandb"})
    settings["base_model"]["name"] = base_name
    job = await svc.finetuning.create(who, "cohere", base_name, spec, file, None,
                                      body.model_dump(mode="json", exclude={"settings": {"wandb"}}),
                                      {"name": body.name, "cohere_settings": settings})
    return {"finetuned_model": _view(svc, svc.registry.get(job.model_id))}


@router.get("/v1/finetuning/finetuned-models", response_model=schema.FinetunedModelList, **RESPONSE)
async def cohere_list(page_size: int | None = Query(None, ge=1, le=1000), page_token: str | None = None,
                      order_by: str | None = None, who: Caller = Depends(caller),
                      svc: Services = Depends(services)) -> dict:
    records = svc.registry.list(who.organization)
    if _descending(order_by):
        records = records[::-1]
    chunk, token = cohere.token_page(records, page_size, page_token)
    return {"finetuned_models": [_view(svc, r) for r in chunk], "next_page_token": token, "total_size": len(records)}


@router.get("/v1/finetuning/finetuned-models/{model_id}", response_model=schema.FinetunedModelResponse,
            responses=NOT_FOUND, **RESPONSE)
async def cohere_get(model_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return {"finetuned_model": _view(svc, svc.resolver.own_model(model_id, who.organization, ["path", "model_id"]))}


@router.patch("/v1/finetuning/finetuned-models/{model_id}", response_model=schema.FinetunedModelResponse,
              responses=BODY | NOT_FOUND | error_responses("detail", 409), **RESPONSE)
async def cohere_update(model_id: str, body: cohere.FinetunedModelBody, who: Caller = Depends(caller),
                        svc: Services = Depends(services)) -> dict:
    record = svc.resolver.own_model(model_id, who.organization, ["path", "model_id"])
    current = record.params.get("cohere_settings")
    wanted = body.settings.model_dump(mode="json", exclude={"wandb"})
    if current is not None:
        wanted["base_model"]["name"] = wanted["base_model"]["name"] or current["base_model"]["name"]
        if wanted != current:
            raise ApiError(409, ["body", "settings"], "settings cannot change once a model has been trained or "
                           "queued; create a new finetuned model instead", "invalid_state")
    svc.registry.update_params(model_id, {"name": body.name})
    return {"finetuned_model": _view(svc, svc.registry.get(model_id))}


@router.delete("/v1/finetuning/finetuned-models/{model_id}", response_model=schema.Deleted, responses=NOT_FOUND,
               **RESPONSE)
async def cohere_delete(model_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    await svc.finetuning.delete_model(model_id, who)
    return {}


@router.get("/v1/finetuning/finetuned-models/{model_id}/events", response_model=schema.EventList, responses=NOT_FOUND,
            **RESPONSE)
async def cohere_events(model_id: str, page_size: int | None = Query(None, ge=1, le=1000),
                        page_token: str | None = None, order_by: str | None = None, who: Caller = Depends(caller),
                        svc: Services = Depends(services)) -> dict:
    record = svc.resolver.own_model(model_id, who.organization, ["path", "model_id"])
    job = svc.jobs.by_model(record.id)
    events = [cohere.status_event_view(e, record.created_by) for e in (svc.jobs.events(job.id, ("status",)) if job else [])]
    if _descending(order_by):
        events = events[::-1]
    chunk, token = cohere.token_page(events, page_size, page_token)
    return {"events": chunk, "next_page_token": token, "total_size": len(events)}


@router.get("/v1/finetuning/finetuned-models/{model_id}/training-step-metrics", response_model=schema.StepMetricList,
            responses=NOT_FOUND, **RESPONSE)
async def cohere_step_metrics(model_id: str, page_size: int | None = Query(None, ge=1, le=1000),
                              page_token: str | None = None, who: Caller = Depends(caller),
                              svc: Services = Depends(services)) -> dict:
    record = svc.resolver.own_model(model_id, who.organization, ["path", "model_id"])
    job = svc.jobs.by_model(record.id)
    metrics = [cohere.step_metric_view(e) for e in (svc.jobs.events(job.id, ("metrics",)) if job else [])]
    chunk, token = cohere.token_page(metrics, page_size, page_token)
    return {"step_metrics": chunk, "next_page_token": token}

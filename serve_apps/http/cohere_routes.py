"""Cohere-style finetuned models (`/v1/finetuning/finetuned-models`): a registry model plus its job.
Errors are in the detail shape, which the cohere SDK's ApiError carries whole as its body."""

from __future__ import annotations

import asyncio
import dataclasses

from fastapi import APIRouter, Depends, Query

from serve_apps.auth import Caller
from serve_apps.dialects import cohere
from serve_apps.dialects import cohere_schema as schema
from serve_apps.dialects.schema import RESPONSE
from serve_apps.errors import error_responses
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
    base_name, _, file, spec = _training(svc, body, who)
    job = await svc.finetuning.create(who, "cohere", base_name, spec, file, None,
                                      body.model_dump(mode="json", exclude={"settings": {"wandb"}}),
                                      {"name": body.name, "cohere_settings": cohere.stored_settings(body, base_name)})
    return {"finetuned_model": _view(svc, svc.registry.get(job.model_id))}


def _training(svc: Services, body: cohere.FinetunedModelBody, who: Caller, default_base: str = DEFAULT_BASE):
    """(base model name, its record, the dataset file, the TrainingSpec) of a body's settings."""
    base_name = body.settings.base_model.name or default_base
    base = svc.resolver.resolve_trainable(base_name, who.organization, ["body", "settings", "base_model", "name"])
    file = own_file(svc, body.settings.dataset_id, who, ["body", "settings", "dataset_id"])
    windows = max(file.n_series, file.n_points // svc.base.output_patch_len)
    return base_name, base, file, cohere.training_spec(body, base.id, windows, svc.settings.max_job_steps)


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
    """Renames at any time; changes settings (dataset, hyperparameters, base model) only while the
    model's job is queued and not yet submitted to Ray, else a 409 naming the field."""
    record = svc.resolver.own_model(model_id, who.organization, ["path", "model_id"])
    job = svc.jobs.by_model(record.id)
    current = cohere.model_view(record, job)["settings"]
    current_base = current["base_model"]["name"]
    changes = cohere.settings_changes(current, cohere.stored_settings(body, body.settings.base_model.name or current_base))
    if changes:
        if not cohere.settings_editable(job):
            raise cohere.settings_fixed(changes, record, job)
        base_name, _, file, spec = _training(svc, body, who, current_base)
        if body.settings.wandb is None:  # GET never echoes wandb: a PATCH without it keeps the job's tracking
            spec = dataclasses.replace(spec, tracking=job.spec.tracking)
        message = "Settings changed before training: " + ", ".join(".".join(c[1:]) for c in changes)
        changed = await asyncio.to_thread(
            svc.finetuning.respec, job, base_name, spec, file,
            body.model_dump(mode="json", exclude={"settings": {"wandb"}}),
            {"cohere_settings": cohere.stored_settings(body, base_name)}, message)
        if not changed:  # the job manager submitted the run meanwhile
            raise cohere.settings_fixed(changes, record, svc.jobs.get(job.id))
    svc.registry.update_params(record.id, {"name": body.name})
    return {"finetuned_model": _view(svc, svc.registry.get(record.id))}


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

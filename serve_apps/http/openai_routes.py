"""OpenAI-style files (`/v1/files`), fine-tuning jobs (`/v1/fine_tuning/jobs`) and models (`/v1/models`).

Errors on these routes are in OpenAI's shape (errors.OpenAIRoute), so the openai SDK's exceptions
carry the message and the parameter."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response

from serve_apps.auth import Caller
from serve_apps.dialects import openai
from serve_apps.dialects import openai_schema as schema
from serve_apps.dialects.schema import RESPONSE
from serve_apps.errors import OpenAIRoute, error_responses, invalid, not_found
from serve_apps.http.dependencies import caller, services
from serve_apps.models.catalog import CATALOG, BaseModelEntry
from serve_apps.models.registry import ModelNotFound, ModelRecord
from serve_apps.services import Services
from serve_apps.storage.files import FileNotFound, FileRecord, InvalidFile

# Every route authenticates (401), is rate-limited (429) and validates its parameters (422).
router = APIRouter(route_class=OpenAIRoute, responses=error_responses("openai", 401, 422, 429))
NOT_FOUND = error_responses("openai", 404)
BODY = error_responses("openai", 400, 413, 415)  # the body middleware's answers


def own_file(svc: Services, file_id: str, who: Caller, loc: list) -> FileRecord:
    try:
        return svc.files.get(file_id, who.organization)
    except FileNotFound:
        raise not_found(loc, f"file {file_id!r}") from None


def series_file(svc: Services, file_id: str, who: Caller, loc: list) -> FileRecord:
    """An upload to train or validate on (a results file the server wrote is not one)."""
    record = own_file(svc, file_id, who, loc)
    if not record.is_series:
        raise invalid(loc, f"file {file_id!r} (purpose {record.purpose!r}) is not a series file; upload one to "
                      "train on")
    return record


# ---- files ------------------------------------------------------------------------------------------
@router.post("/v1/files", response_model=schema.FileObject, responses=BODY, **RESPONSE)
async def upload_file(file: UploadFile = File(...), purpose: str = Form(...), who: Caller = Depends(caller),
                      svc: Services = Depends(services)) -> dict:
    content = await file.read()
    try:
        record = await asyncio.to_thread(svc.files.create, who.organization, file.filename or "upload.csv", purpose,
                                         content)
    except InvalidFile as exc:
        raise invalid(["body", "file"], str(exc)) from None
    return openai.file_view(record)


@router.get("/v1/files", response_model=schema.FileList, **RESPONSE)
async def list_files(purpose: str | None = None, after: str | None = None,
                     limit: int = Query(10000, ge=1, le=10000), order: str = Query("desc", pattern="^(asc|desc)$"),
                     who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    items = [openai.file_view(f) for f in svc.files.list(who.organization, purpose)]
    return openai.page(items if order == "asc" else items[::-1], after, limit)


@router.get("/v1/files/{file_id}", response_model=schema.FileObject, responses=NOT_FOUND, **RESPONSE)
async def get_file(file_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return openai.file_view(own_file(svc, file_id, who, ["path", "file_id"]))


@router.get("/v1/files/{file_id}/content", response_class=Response, responses={
    **NOT_FOUND, 200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                       "description": "The file as uploaded"}})
async def get_file_content(file_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    record = own_file(svc, file_id, who, ["path", "file_id"])
    return Response(content=record.raw_path.read_bytes(), media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}", response_model=schema.FileDeleted, responses=NOT_FOUND, **RESPONSE)
async def delete_file(file_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    own_file(svc, file_id, who, ["path", "file_id"])
    svc.files.delete(file_id, who.organization)
    return {"id": file_id, "object": "file", "deleted": True}


# ---- fine-tuning jobs ---------------------------------------------------------------------------------
@router.post("/v1/fine_tuning/jobs", response_model=schema.FineTuningJob,
             responses={**BODY, **NOT_FOUND, **error_responses("openai", 409)}, **RESPONSE)
async def create_job(body: openai.JobCreate, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    base = svc.resolver.resolve_trainable(body.model, who.organization, ["body", "model"])
    file = series_file(svc, body.training_file, who, ["body", "training_file"])
    validation = series_file(svc, body.validation_file, who, ["body", "validation_file"]) if body.validation_file else None
    spec = openai.training_spec(body.resolved_hyperparameters(), file, base.id, body.seed or 0,
                                svc.base.output_patch_len, svc.settings.max_job_steps, body.hyperparameters_loc())
    spec = replace(spec, tracking=openai.tracking_config(body.integrations))
    # The suffix is part of the model's name (registry: ModelRecord.fine_tuned_model).
    job = await svc.finetuning.create(who, "openai", body.model, spec, file, validation,
                                      body.model_dump(mode="json"), {"suffix": body.suffix})
    return openai.job_view(job)


@router.get("/v1/fine_tuning/jobs", response_model=schema.JobList, **RESPONSE)
async def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=1000), who: Caller = Depends(caller),
                    svc: Services = Depends(services)) -> dict:
    return openai.page([openai.job_view(j) for j in svc.jobs.list(who.organization)], after, limit)


@router.get("/v1/fine_tuning/jobs/{job_id}", response_model=schema.FineTuningJob, responses=NOT_FOUND, **RESPONSE)
async def get_job(job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return openai.job_view(svc.finetuning.own_job(job_id, who))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel", response_model=schema.FineTuningJob,
             responses={**BODY, **NOT_FOUND, **error_responses("openai", 409)}, **RESPONSE)
async def cancel_job(job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return openai.job_view(await svc.finetuning.cancel(job_id, who))


@router.get("/v1/fine_tuning/jobs/{job_id}/events", response_model=schema.JobEventList, responses=NOT_FOUND, **RESPONSE)
async def job_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=1000),
                     who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    job = svc.finetuning.own_job(job_id, who)
    events = [openai.event_view(e) for e in reversed(svc.jobs.events(job.id))]  # newest first
    return openai.page(events, after, limit)


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints", response_model=schema.JobCheckpointList, responses=NOT_FOUND,
            **RESPONSE)
async def job_checkpoints(job_id: str, after: str | None = None, limit: int = Query(10, ge=1, le=1000),
                          who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    job = svc.finetuning.own_job(job_id, who)
    checkpoints = [openai.checkpoint_view(job, e) for e in reversed(svc.jobs.events(job.id, ("checkpoint",)))]
    return openai.page(checkpoints, after, limit)


# ---- models (base models, their aliases, the caller's finetuned models) ------------------------------
def _base_view(svc: Services, e: BaseModelEntry) -> dict:
    """The catalog's honest card (models.catalog.card): family, parameters, context, horizon, quantiles,
    covariates, multivariate, temperature/top_p, and what answers the name on this server."""
    return svc.resolver.card(e, svc.settings.max_prediction_length)


def _finetuned_view(r: ModelRecord) -> dict:
    """Models made by OpenAI-style jobs go by their `ft:...` name, as OpenAI lists them; others by id."""
    return {"id": r.name, "object": "model",
            "owned_by": r.organization, "kind": "finetuned", "base_model": r.public_base_model_id,
            "created": int(r.created_at), "status": r.status, "fine_tuned_model": r.fine_tuned_model,
            "validation": r.params.get("validation")}


@router.get("/v1/models", response_model=schema.ModelList, **RESPONSE)
async def list_models(who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    data = [_base_view(svc, e) for e in CATALOG.entries.values()]
    data += [_finetuned_view(r) for r in svc.registry.list(who.organization)]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}", response_model=schema.Model, responses=NOT_FOUND, **RESPONSE)
async def retrieve_model(model_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    """A base model by id or alias (answered under its own id), or one of the caller's finetuned models."""
    entry = CATALOG.lookup(model_id)
    if entry is not None:
        return _base_view(svc, entry)
    try:
        return _finetuned_view(svc.registry.get(model_id, who.organization))
    except ModelNotFound:
        raise not_found(["path", "model_id"], f"model {model_id!r}") from None

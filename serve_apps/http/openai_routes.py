"""OpenAI-style files (`/v1/files`) and fine-tuning jobs (`/v1/fine_tuning/jobs`)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile
from fastapi.responses import Response

from serve_apps.auth import Caller
from serve_apps.dialects import openai
from serve_apps.errors import invalid, not_found
from serve_apps.http.dependencies import caller, services
from serve_apps.services import Services
from serve_apps.storage.files import FileNotFound, FileRecord, InvalidFile

router = APIRouter()


def own_file(svc: Services, file_id: str, who: Caller, loc: list) -> FileRecord:
    try:
        return svc.files.get(file_id, who.organization)
    except FileNotFound:
        raise not_found(loc, f"file {file_id!r}") from None


# ---- files ------------------------------------------------------------------------------------------
@router.post("/v1/files")
async def upload_file(file: UploadFile = File(...), purpose: str = Form(...), who: Caller = Depends(caller),
                      svc: Services = Depends(services)) -> dict:
    content = await file.read()
    try:
        record = await asyncio.to_thread(svc.files.create, who.organization, file.filename or "upload.csv", purpose,
                                         content)
    except InvalidFile as exc:
        raise invalid(["body", "file"], str(exc)) from None
    return openai.file_view(record)


@router.get("/v1/files")
async def list_files(purpose: str | None = None, after: str | None = None,
                     limit: int = Query(10000, ge=1, le=10000), order: str = Query("desc", pattern="^(asc|desc)$"),
                     who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    items = [openai.file_view(f) for f in svc.files.list(who.organization, purpose)]
    return openai.page(items if order == "asc" else items[::-1], after, limit)


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return openai.file_view(own_file(svc, file_id, who, ["path", "file_id"]))


@router.get("/v1/files/{file_id}/content")
async def get_file_content(file_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> Response:
    record = own_file(svc, file_id, who, ["path", "file_id"])
    return Response(content=record.raw_path.read_bytes(), media_type="application/octet-stream")


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    own_file(svc, file_id, who, ["path", "file_id"])
    svc.files.delete(file_id, who.organization)
    return {"id": file_id, "object": "file", "deleted": True}


# ---- fine-tuning jobs ---------------------------------------------------------------------------------
@router.post("/v1/fine_tuning/jobs")
async def create_job(body: openai.JobCreate, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    base = svc.resolver.resolve(body.model, who.organization, ["body", "model"])
    file = own_file(svc, body.training_file, who, ["body", "training_file"])
    validation = own_file(svc, body.validation_file, who, ["body", "validation_file"]) if body.validation_file else None
    spec = openai.training_spec(body.resolved_hyperparameters(), file, base.id, body.seed or 0,
                                svc.base.output_patch_len, svc.settings.max_job_steps, body.hyperparameters_loc())
    job = await svc.finetuning.create(who, "openai", body.model, spec, file, validation,
                                      body.model_dump(mode="json"), {})
    return openai.job_view(job)


@router.get("/v1/fine_tuning/jobs")
async def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=1000), who: Caller = Depends(caller),
                    svc: Services = Depends(services)) -> dict:
    return openai.page([openai.job_view(j) for j in svc.jobs.list(who.organization)], after, limit)


@router.get("/v1/fine_tuning/jobs/{job_id}")
async def get_job(job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return openai.job_view(svc.finetuning.own_job(job_id, who))


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    return openai.job_view(await svc.finetuning.cancel(job_id, who))


@router.get("/v1/fine_tuning/jobs/{job_id}/events")
async def job_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=1000),
                     who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    job = svc.finetuning.own_job(job_id, who)
    events = [openai.event_view(e) for e in reversed(svc.jobs.events(job.id))]  # newest first
    return openai.page(events, after, limit)


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
async def job_checkpoints(job_id: str, after: str | None = None, limit: int = Query(10, ge=1, le=1000),
                          who: Caller = Depends(caller), svc: Services = Depends(services)) -> dict:
    job = svc.finetuning.own_job(job_id, who)
    checkpoints = [openai.checkpoint_view(job, e) for e in reversed(svc.jobs.events(job.id, ("checkpoint",)))]
    return openai.page(checkpoints, after, limit)

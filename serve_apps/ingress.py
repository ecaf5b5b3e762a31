"""The HTTP front door: one FastAPI app serving every wire dialect, deployed as a Serve ingress.

Routes validate and convert bodies with their dialect module, resolve model names through the
catalog and registry, and hand internal jobs to the ModelServer deployment.
"""


import asyncio
import shutil
import time
from typing import Any

from fastapi import Body, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_apps import nixtla_service
from serve_apps.async_jobs import AsyncJobFinished, AsyncJobNotFound, AsyncJobRecord, AsyncJobStore
from serve_apps.async_runner import AsyncJobRunner
from serve_apps.auth import Caller, authenticate
from serve_apps.catalog import CATALOG
from serve_apps.dialects import cohere, nixtla, nixtla_backtest, openai, tsfm
from serve_apps.errors import ApiError, install_error_handlers, invalid, invalid_body, not_found, validation_detail
from serve_apps.files import FileNotFound, FileRecord, FileStore, InvalidFile
from serve_apps.job_manager import job_dir
from serve_apps.job_store import ACTIVE, JobNotFound, JobRecord, JobStore
from serve_apps.jobs import ForecastJob
from serve_apps.middleware import BodyMiddleware
from serve_apps.nixtla_service import NixtlaService
from serve_apps.registry import ModelNotFound, ModelRecord, Registry, new_model_id
from serve_apps.settings import Settings
from tsfm_core.checkpoint import read_config

app = FastAPI(title="tsfm-cluster", version="0.1.0",
              description="Self-hosted time-series foundation model serving and finetuning.")
install_error_handlers(app)
app.add_middleware(BodyMiddleware, max_bytes=Settings().max_body_bytes)

ERROR_CODES = {401: "UNAUTHENTICATED", 404: "NOT_FOUND", 413: "RESOURCE_EXHAUSTED", 422: "INVALID_ARGUMENT"}


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(app)
class Ingress:
    def __init__(self, model_server: DeploymentHandle, job_manager: DeploymentHandle, settings: dict):
        self.settings = Settings.from_dict(settings)
        self.registry = Registry(self.settings.database_url, self.settings.artifact_dir)
        self.files = FileStore(self.settings.database_url, self.settings.artifact_dir)
        self.jobs = JobStore(self.settings.database_url)
        self.model_server = model_server
        self.job_manager = job_manager
        self.keys = self.settings.api_key_map()
        base = read_config(CATALOG.entries["tsfm-base"].path)["model"]
        self.max_context, self.output_patch_len = base["max_context"], base["output_patch_len"]
        self.nixtla = NixtlaService(self.settings, self.registry, model_server, self.resolve,
                                    self.max_context, self.output_patch_len)
        self.async_jobs = AsyncJobStore(self.settings.database_url, self.settings.artifact_dir)
        self.runner = AsyncJobRunner(self.async_jobs, self._execute_async, self.settings.async_jobs_per_replica)
        self.runner.start()

    # ---- shared helpers -------------------------------------------------------------------------
    def caller(self, request: Request) -> Caller:
        return authenticate(request, self.keys)

    def resolve(self, name: str, caller: Caller, loc: list) -> str:
        """A client-facing model name -> the id the ModelServer multiplexes on (ready models only)."""
        entry = CATALOG.lookup(name)
        if entry is not None:
            return entry.id
        record = self.own_model(name, caller, loc)
        if record.status != "ready":
            raise ApiError(409, loc, f"model {name!r} is not ready (status {record.status})", "not_ready")
        return record.id

    def own_model(self, model_id: str, caller: Caller, loc: list) -> ModelRecord:
        try:
            return self.registry.get(model_id, caller.organization)
        except ModelNotFound:
            raise not_found(loc, f"model {model_id!r}") from None

    def own_file(self, file_id: str, caller: Caller, loc: list) -> FileRecord:
        try:
            return self.files.get(file_id, caller.organization)
        except FileNotFound:
            raise not_found(loc, f"file {file_id!r}") from None

    def own_job(self, job_id: str, caller: Caller) -> JobRecord:
        try:
            return self.jobs.get(job_id, caller.organization)
        except JobNotFound:
            raise not_found(["path", "job_id"], f"fine-tuning job {job_id!r}") from None

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
            return invalid_body(exc)

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
            detail = validation_detail(exc, loc)
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
        return await self.nixtla.prepare("forecast", body, self.caller(request))()

    @app.post("/v2/cross_validation")
    async def nixtla_cross_validation(self, request: Request, body: nixtla_backtest.CrossValidationBody) -> dict:
        return await self.nixtla.prepare("cross_validation", body, self.caller(request))()

    @app.post("/v2/anomaly_detection")
    async def nixtla_anomaly_detection(self, request: Request, payload: dict = Body(...)) -> Any:
        # The batch detector's body, or (as nixtla 1.0 sends it here) the online detector's.
        try:
            task, body = nixtla_service.parse("anomaly_detection", payload)
        except ValidationError as exc:
            return invalid_body(exc)
        return await self.nixtla.prepare(task, body, self.caller(request))()

    @app.post("/v2/online_anomaly_detection")
    async def nixtla_online_anomaly_detection(self, request: Request,
                                              body: nixtla_backtest.OnlineAnomalyDetectionBody) -> dict:
        return await self.nixtla.prepare("online_anomaly_detection", body, self.caller(request))()

    @app.post("/v2/finetune")
    async def nixtla_finetune(self, request: Request, body: nixtla.NixtlaFinetuneBody) -> dict:
        return await self.nixtla.prepare("finetune", body, self.caller(request))()

    # ---- Nixtla async jobs (client.jobs.*) ---------------------------------------------------------
    @app.post("/v2/{task}/async", status_code=202)
    async def nixtla_submit(self, task: str, request: Request, payload: dict = Body(...)) -> Any:
        caller = self.caller(request)
        if task not in nixtla_service.BODIES:
            raise not_found(["path", "task"], f"async task {task!r} (supported: {', '.join(nixtla_service.BODIES)})")
        options = payload.pop("job_options", None) or {}
        timeout = options.get("timeout_seconds") if isinstance(options, dict) else None
        if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
            raise invalid(["body", "job_options", "timeout_seconds"], "must be a positive number of seconds")
        if task == "finetune" and not payload.get("output_model_id"):
            payload["output_model_id"] = new_model_id()  # fixed now, so a redone attempt makes the same model
        try:
            parsed_task, body = nixtla_service.parse(task, payload)
        except ValidationError as exc:
            return invalid_body(exc)
        self.nixtla.prepare(parsed_task, body, caller)  # every 4xx now, not in a failed job later
        record = await asyncio.to_thread(self.async_jobs.create, caller.organization, caller.key_hint, task,
                                         payload, timeout)
        self.runner.wake()
        return {"job_id": record.id, "status": record.status}

    async def _execute_async(self, record: AsyncJobRecord, payload: dict) -> dict:
        task, body = nixtla_service.parse(record.task, payload)
        if task == "finetune" and record.attempts > 1:
            self._discard_unfinished(body.output_model_id, record)
        caller = Caller(organization=record.organization, key_hint=record.created_by)
        return await self.nixtla.prepare(task, body, caller)()

    def _discard_unfinished(self, model_id: str, record: AsyncJobRecord) -> None:
        """An attempt that died with its server left its model 'finetuning': the redo starts over.
        The id was free when the job was accepted, so a row made since then is that attempt's."""
        try:
            model = self.registry.get(model_id, record.organization)
        except ModelNotFound:
            return
        if model.status == "finetuning" and model.created_at >= record.created_at:
            self.registry.discard(model_id)

    @app.get("/v2/{task}/jobs/{job_id}")
    async def nixtla_job(self, task: str, job_id: str, request: Request) -> dict:
        caller = self.caller(request)
        try:
            record = self.async_jobs.get(job_id, caller.organization)
        except AsyncJobNotFound:
            raise not_found(["path", "job_id"], f"job {job_id!r}") from None
        if record.task != task:
            raise not_found(["path", "job_id"], f"{task} job {job_id!r}")
        result = await asyncio.to_thread(self.async_jobs.result, job_id) if record.status == "succeeded" else None
        return {"job_id": record.id, "task": record.task, "status": record.status, "created_at": record.created_at,
                "started_at": record.started_at, "finished_at": record.finished_at, "attempts": record.attempts,
                "result": result, "error": record.error}

    @app.post("/v2/async/jobs/{job_id}/cancel")
    async def nixtla_cancel_job(self, job_id: str, request: Request) -> dict:
        caller = self.caller(request)
        try:
            record = self.async_jobs.cancel(job_id, caller.organization)
        except AsyncJobNotFound:
            raise not_found(["path", "job_id"], f"job {job_id!r}") from None
        except AsyncJobFinished as exc:
            raise ApiError(409, ["path", "job_id"], f"job {job_id!r} already {exc}", "conflict") from None
        return {"job_id": record.id, "status": record.status}

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
        await self._delete_model(model_id, self.caller(request))
        return Response(status_code=204)

    # ---- files (OpenAI-style) -------------------------------------------------------------------------
    @app.post("/v1/files")
    async def upload_file(self, request: Request, file: UploadFile = File(...), purpose: str = Form(...)) -> dict:
        caller = self.caller(request)
        content = await file.read()
        try:
            record = await asyncio.to_thread(self.files.create, caller.organization, file.filename or "upload.csv",
                                             purpose, content)
        except InvalidFile as exc:
            raise invalid(["body", "file"], str(exc)) from None
        return openai.file_view(record)

    @app.get("/v1/files")
    async def list_files(self, request: Request, purpose: str | None = None, after: str | None = None,
                         limit: int = Query(10000, ge=1, le=10000), order: str = Query("desc", pattern="^(asc|desc)$")) -> dict:
        caller = self.caller(request)
        items = [openai.file_view(f) for f in self.files.list(caller.organization, purpose)]
        return openai.page(items if order == "asc" else items[::-1], after, limit)

    @app.get("/v1/files/{file_id}")
    async def get_file(self, file_id: str, request: Request) -> dict:
        return openai.file_view(self.own_file(file_id, self.caller(request), ["path", "file_id"]))

    @app.get("/v1/files/{file_id}/content")
    async def get_file_content(self, file_id: str, request: Request) -> Response:
        record = self.own_file(file_id, self.caller(request), ["path", "file_id"])
        return Response(content=record.raw_path.read_bytes(), media_type="application/octet-stream")

    @app.delete("/v1/files/{file_id}")
    async def delete_file(self, file_id: str, request: Request) -> dict:
        caller = self.caller(request)
        self.own_file(file_id, caller, ["path", "file_id"])
        self.files.delete(file_id, caller.organization)
        return {"id": file_id, "object": "file", "deleted": True}

    # ---- fine-tuning jobs (shared by the OpenAI and Cohere dialects) --------------------------------------
    def _training_base(self, name: str, caller: Caller, loc: list) -> tuple[str, str]:
        """(registry id of the base, what train_jobs.finetune takes as --base-model)."""
        model_id = self.resolve(name, caller, loc)
        entry = CATALOG.lookup(model_id)
        return model_id, entry.id if entry else str(self.registry.model_dir(model_id))

    def _create_job(self, caller: Caller, source: str, requested_model: str, base_id: str, file: FileRecord,
                    validation_file: str | None, config: dict, request: dict, model_params: dict) -> JobRecord:
        model_id = new_model_id()
        self.registry.add(model_id=model_id, organization=caller.organization, base_model_id=base_id, source=source,
                          created_by=caller.key_hint, freq=None, steps=config["steps"], depth=config["depth"],
                          loss=config["loss"], finetune_tokens=0,
                          params={"requested_model": requested_model, **model_params}, status="queued")
        job = self.jobs.create(organization=caller.organization, source=source, model=requested_model,
                               base_model_id=base_id, model_id=model_id, training_file=file.id,
                               validation_file=validation_file, config=config, request=request)
        # The job trains on its own copy: deleting the file later cannot starve a resumed run.
        directory = job_dir(self.settings, job.id)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copy(file.series_path, directory / "series.parquet")
        self.job_manager.reconcile.remote()  # submit now rather than at the next poll
        return job

    @app.post("/v1/fine_tuning/jobs")
    async def create_job(self, request: Request, body: openai.JobCreate) -> dict:
        caller = self.caller(request)
        base_id, base_arg = self._training_base(body.model, caller, ["body", "model"])
        file = self.own_file(body.training_file, caller, ["body", "training_file"])
        if body.validation_file:
            self.own_file(body.validation_file, caller, ["body", "validation_file"])
        config = openai.training_config(body.resolved_hyperparameters(), file, base_arg, body.seed or 0,
                                        self.output_patch_len, self.settings.max_job_steps)
        job = await asyncio.to_thread(self._create_job, caller, "openai", body.model, base_id, file,
                                      body.validation_file, config, body.model_dump(mode="json"), {})
        return openai.job_view(job)

    @app.get("/v1/fine_tuning/jobs")
    async def list_jobs(self, request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=1000)) -> dict:
        caller = self.caller(request)
        return openai.page([openai.job_view(j) for j in self.jobs.list(caller.organization)], after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}")
    async def get_job(self, job_id: str, request: Request) -> dict:
        return openai.job_view(self.own_job(job_id, self.caller(request)))

    @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(self, job_id: str, request: Request) -> dict:
        job = self.own_job(job_id, self.caller(request))
        if job.status not in ACTIVE or not await self.job_manager.cancel.remote(job_id):
            raise ApiError(409, ["path", "job_id"], f"job {job_id} is {self.jobs.get(job_id).status} and cannot be cancelled",
                           "invalid_state")
        return openai.job_view(self.jobs.get(job_id))

    @app.get("/v1/fine_tuning/jobs/{job_id}/events")
    async def job_events(self, job_id: str, request: Request, after: str | None = None,
                         limit: int = Query(20, ge=1, le=1000)) -> dict:
        job = self.own_job(job_id, self.caller(request))
        events = [openai.event_view(e) for e in reversed(self.jobs.events(job.id))]  # newest first
        return openai.page(events, after, limit)

    @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    async def job_checkpoints(self, job_id: str, request: Request, after: str | None = None,
                              limit: int = Query(10, ge=1, le=1000)) -> dict:
        job = self.own_job(job_id, self.caller(request))
        checkpoints = [openai.checkpoint_view(job, e) for e in reversed(self.jobs.events(job.id, ("checkpoint",)))]
        return openai.page(checkpoints, after, limit)

    # ---- Cohere-style finetuned models -------------------------------------------------------------------
    def _cohere_view(self, record: ModelRecord) -> dict:
        return cohere.model_view(record, self.jobs.by_model(record.id))

    @app.post("/v1/finetuning/finetuned-models")
    async def cohere_create(self, request: Request, body: cohere.FinetunedModelBody) -> dict:
        caller = self.caller(request)
        base_name = body.settings.base_model.name or "tsfm-base"
        base_id, base_arg = self._training_base(base_name, caller, ["body", "settings", "base_model", "name"])
        file = self.own_file(body.settings.dataset_id, caller, ["body", "settings", "dataset_id"])
        windows = max(file.n_series, file.n_points // self.output_patch_len)
        config = cohere.training_config(body, base_arg, windows, self.settings.max_job_steps)
        settings = body.settings.model_dump(mode="json", exclude={"wandb"})
        settings["base_model"]["name"] = base_name
        job = await asyncio.to_thread(self._create_job, caller, "cohere", base_name, base_id, file, None, config,
                                      body.model_dump(mode="json", exclude={"settings": {"wandb"}}),
                                      {"name": body.name, "cohere_settings": settings})
        return {"finetuned_model": self._cohere_view(self.registry.get(job.model_id))}

    @app.get("/v1/finetuning/finetuned-models")
    async def cohere_list(self, request: Request, page_size: int | None = Query(None, ge=1, le=1000),
                          page_token: str | None = None, order_by: str | None = None) -> dict:
        caller = self.caller(request)
        records = self.registry.list(caller.organization)
        if order_by and order_by.strip().endswith("desc"):
            records = records[::-1]
        chunk, token = cohere.token_page(records, page_size, page_token)
        return {"finetuned_models": [self._cohere_view(r) for r in chunk], "next_page_token": token,
                "total_size": len(records)}

    @app.get("/v1/finetuning/finetuned-models/{model_id}")
    async def cohere_get(self, model_id: str, request: Request) -> dict:
        record = self.own_model(model_id, self.caller(request), ["path", "model_id"])
        return {"finetuned_model": self._cohere_view(record)}

    @app.patch("/v1/finetuning/finetuned-models/{model_id}")
    async def cohere_update(self, model_id: str, request: Request, body: cohere.FinetunedModelBody) -> dict:
        caller = self.caller(request)
        record = self.own_model(model_id, caller, ["path", "model_id"])
        current = record.params.get("cohere_settings")
        wanted = body.settings.model_dump(mode="json", exclude={"wandb"})
        if current is not None:
            wanted["base_model"]["name"] = wanted["base_model"]["name"] or current["base_model"]["name"]
            if wanted != current:
                raise ApiError(409, ["body", "settings"], "settings cannot change once a model has been trained or "
                               "queued; create a new finetuned model instead", "invalid_state")
        self.registry.update_params(model_id, {"name": body.name})
        return {"finetuned_model": self._cohere_view(self.registry.get(model_id))}

    @app.delete("/v1/finetuning/finetuned-models/{model_id}")
    async def cohere_delete(self, model_id: str, request: Request) -> dict:
        caller = self.caller(request)
        await self._delete_model(model_id, caller)
        return {}

    async def _delete_model(self, model_id: str, caller: Caller) -> None:
        """Any dialect's delete: stops a training job first, then soft-deletes and frees artifacts."""
        self.own_model(model_id, caller, ["path", "model_id"])
        job = self.jobs.by_model(model_id)
        if job is not None and job.status in ACTIVE:
            await self.job_manager.cancel.remote(job.id)
        self.registry.delete(model_id, caller.organization)

    @app.get("/v1/finetuning/finetuned-models/{model_id}/events")
    async def cohere_events(self, model_id: str, request: Request, page_size: int | None = Query(None, ge=1, le=1000),
                            page_token: str | None = None, order_by: str | None = None) -> dict:
        caller = self.caller(request)
        record = self.own_model(model_id, caller, ["path", "model_id"])
        job = self.jobs.by_model(record.id)
        events = [cohere.status_event_view(e, record.created_by) for e in (self.jobs.events(job.id, ("status",)) if job else [])]
        if order_by and order_by.strip().endswith("desc"):
            events = events[::-1]
        chunk, token = cohere.token_page(events, page_size, page_token)
        return {"events": chunk, "next_page_token": token, "total_size": len(events)}

    @app.get("/v1/finetuning/finetuned-models/{model_id}/training-step-metrics")
    async def cohere_step_metrics(self, model_id: str, request: Request, page_size: int | None = Query(None, ge=1, le=1000),
                                  page_token: str | None = None) -> dict:
        caller = self.caller(request)
        record = self.own_model(model_id, caller, ["path", "model_id"])
        job = self.jobs.by_model(record.id)
        metrics = [cohere.step_metric_view(e) for e in (self.jobs.events(job.id, ("metrics",)) if job else [])]
        chunk, token = cohere.token_page(metrics, page_size, page_token)
        return {"step_metrics": chunk, "next_page_token": token}

    @app.get("/v1/stats")
    async def stats(self, request: Request) -> dict:
        self.caller(request)
        return await self.model_server.stats.remote()

"""Nixtla fine-tunes too long for a serving replica (more than `settings.replica_finetune_steps`
steps, in /v2/finetune or inside /v2/forecast): run as Ray Train jobs through the FinetuningService
and its JobManager, the path of the named OpenAI and Cohere jobs, while the call waits.

- A synchronous call waits up to `settings.finetune_wait_s`, then answers 504 in Nixtla's error
  shape, naming the job, the model it makes and the async API; the job goes on. 504 because the
  server is a gateway to the training cluster that did not answer in time (408 says the *client*
  was slow to send its request). The nixtla SDK retries a 504 (and its own 60 s read timeout) with
  the same body, so a call first looks for the job an identical call started (same organization,
  task and body: its fingerprint) and waits for that one: retries wait longer, never train twice.
- A call made by an async job (POST /v2/{task}/async) waits as long as that job's own timeout;
  cancelling the async job (or its timeout) cancels the Ray job too.
- A fine-tune inside a forecast keeps no model: it is deleted once the forecast is answered (one
  left behind by a timed-out call stays listed, and the 504 says how to use it).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable

from pydantic import BaseModel

from serve_apps.auth import Caller
from serve_apps.dialects import nixtla
from serve_apps.errors import ApiError, invalid
from serve_apps.finetuning.service import FinetuningService
from serve_apps.finetuning.store import JobRecord, JobStatus
from serve_apps.models.registry import (
    ModelNotFound,
    ModelStatus,
    new_model_id,
    public_id,
)
from serve_apps.models.resolver import ModelResolver
from serve_apps.replica.calls import ForecastCall
from serve_apps.settings import Settings
from train_jobs.spec import TrainingSpec
from tsfm_core.finetune import FinetuneConfig

SOURCE = "nixtla"
POLL_S = 0.5
# An identical call this long after its job succeeded still gets that job's model (a client's
# retry that came just after the run ended); later ones train anew.
REATTACH_S = 600.0

Run = Callable[[], Awaitable[dict]]


def fingerprint(task: str, body: BaseModel, organization: str) -> str:
    """Identical calls (same organization, task and validated body) share one job."""
    text = json.dumps({"organization": organization, "task": task, "body": body.model_dump(mode="json")},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def timeout_error(task: str, job: JobRecord, wait_s: float) -> ApiError:
    model = public_id(job.model_id)
    then = (f"forecast with finetuned_model_id={model!r} once GET /v2/finetuned_models/{model} shows status "
            "'ready'" if task == "forecast" else f"GET /v2/finetuned_models/{model} shows status 'ready' when it is done")
    return ApiError(504, ["body", "finetune_steps"],
                    f"the fine-tune runs as Ray Train job {job.id} and did not finish within {wait_s:g} s; it goes on: "
                    f"{then}, or send this same request again to keep waiting for it. For long fine-tunes use the "
                    f"async API: POST /v2/{task}/async, then GET /v2/{task}/jobs/{{job_id}}", "timeout")


def outcome_error(job: JobRecord) -> ApiError:
    """A job that ended without a model: failed (500, its reason) or cancelled (410: the model it
    was making was deleted or its job cancelled; not an error the SDK should retry)."""
    if job.status == JobStatus.CANCELLED:
        return ApiError(410, ["body"], f"fine-tuning job {job.id} was cancelled before it finished", "cancelled")
    reason = (job.error or {}).get("message") or "the training run failed"
    return ApiError(500, ["body"], f"fine-tuning job {job.id} failed: {reason}", "training_failed")


class ClusterFinetune:
    def __init__(self, settings: Settings, finetuning: FinetuningService, resolver: ModelResolver, output_patch_len: int):
        self.settings, self.finetuning, self.resolver = settings, finetuning, resolver
        self.output_patch_len = output_patch_len
        self.jobs, self.registry = finetuning.jobs, finetuning.registry

    def wanted(self, config: FinetuneConfig | None) -> bool:
        """Whether a fine-tune is too long for a replica and so runs as a Ray Train job."""
        return config is not None and config.steps > self.settings.replica_finetune_steps

    def owns(self, model_id: str) -> bool:
        """Whether a model is made by a job (an async redo must not discard it: it re-attaches)."""
        return self.jobs.by_model(model_id) is not None

    # ---- /v2/finetune -------------------------------------------------------------------------------
    def prepare_finetune(self, body: nixtla.NixtlaFinetuneBody, caller: Caller, parent: str, config: FinetuneConfig,
                         in_job: bool) -> Run:
        self._check_available()
        fp = fingerprint("finetune", body, caller.organization)
        attached = self.attachable(fp, caller.organization)
        model_id = None
        if attached is None:
            public = body.output_model_id or new_model_id()
            model_id = self.resolver.check_new_id(public, caller.organization, ["body", "output_model_id"])

        async def run() -> dict:
            job = attached or await self._start(caller, "finetune", fp, parent, body.model, config,
                                                nixtla.split_series(body.series), model_id, body.freq)
            job = await self._finished(job, "finetune", in_job)
            return {"input_tokens": len(body.series.y), "output_tokens": 0, "finetune_tokens": job.trained_tokens,
                    "finetuned_model_id": public_id(job.model_id)}
        return run

    # ---- finetune_steps inside /v2/forecast ---------------------------------------------------------
    def prepare_forecast(self, body: nixtla.NixtlaForecastBody, caller: Caller, parent: str, config: FinetuneConfig,
                         forecast: Callable[[str, ForecastCall], Awaitable[list]], call: ForecastCall,
                         in_job: bool) -> Run:
        self._check_available()
        fp = fingerprint("forecast", body, caller.organization)
        attached = self.attachable(fp, caller.organization)

        async def run() -> dict:
            job = attached or await self._start(caller, "forecast", fp, parent, body.model, config,
                                                nixtla.split_series(body.series), new_model_id(), body.freq)
            job = await self._finished(job, "forecast", in_job)
            results = await forecast(job.model_id, call)
            await asyncio.to_thread(self._drop, job.model_id, caller.organization)
            return nixtla.forecast_response(body, results)
        return run

    # ---- shared -------------------------------------------------------------------------------------
    def _check_available(self) -> None:
        if not self.finetuning.available:
            raise invalid(["body", "finetune_steps"], f"must be <= {self.settings.replica_finetune_steps} on this "
                          "server: it runs without a Ray cluster for longer fine-tunes")

    def attachable(self, fp: str, organization: str) -> JobRecord | None:
        """The job an identical call started: still running, or succeeded a short while ago with its
        model still there."""
        for job in self.jobs.list(organization, SOURCE):
            if job.request.get("fingerprint") != fp:
                continue
            if job.status.active:
                return job
            if job.status == JobStatus.SUCCEEDED and time.time() - (job.finished_at or 0) < REATTACH_S \
                    and self._model_status(job.model_id) == ModelStatus.READY:
                return job
        return None

    def _model_status(self, model_id: str) -> ModelStatus | None:
        try:
            return self.registry.get(model_id).status
        except ModelNotFound:
            return None

    async def _start(self, caller: Caller, task: str, fp: str, parent: str, requested_model: str,
                     config: FinetuneConfig, series: list, model_id: str, freq: str | None) -> JobRecord:
        # The passes over the data the steps amount to (every job view shows epochs; one window is an
        # output patch, as the other dialects count them).
        windows = max(len(series), sum(len(s) for s in series) // self.output_patch_len)
        epochs = max(1, round(config.steps * config.batch_size / windows))
        spec = TrainingSpec(base_model=parent, finetune=config, checkpoint_every=max(1, min(50, config.steps // 4)),
                            epochs=epochs)
        return await self.finetuning.create(caller, SOURCE, requested_model, spec, None, None,
                                            {"task": task, "fingerprint": fp, "finetune_steps": config.steps}, {},
                                            series=series, model_id=model_id, freq=freq)

    async def _finished(self, job: JobRecord, task: str, in_job: bool) -> JobRecord:
        """Waits for the job to end (an async job's caller: without a limit of its own); its record
        when it succeeded, else the error to answer."""
        wait_s = None if in_job else self.settings.finetune_wait_s
        deadline = None if wait_s is None else time.time() + wait_s
        try:
            while (job := await asyncio.to_thread(self.jobs.get, job.id)).status.active:
                if deadline is not None and time.time() >= deadline:
                    raise timeout_error(task, job, wait_s)
                await asyncio.sleep(POLL_S)
        except asyncio.CancelledError:
            if in_job:  # the async job was cancelled or timed out: its Ray job must not train on
                await self.finetuning.job_manager.cancel.remote(job.id)
            raise
        if job.status != JobStatus.SUCCEEDED:
            raise outcome_error(job)
        return job

    def _drop(self, model_id: str, organization: str) -> None:
        """A forecast's fine-tune keeps no model (as in a replica)."""
        try:
            self.registry.delete(model_id, organization)
        except ModelNotFound:  # an identical call answered first and dropped it
            pass
        self.resolver.forget(model_id)

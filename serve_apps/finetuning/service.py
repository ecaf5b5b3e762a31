"""Fine-tuning as the OpenAI- and Cohere-style routes (and Nixtla's long fine-tunes) use it: create a
job from a TrainingSpec, change a queued job's settings, cancel it, delete a model (stopping its job
first). The JobManager deployment runs the jobs."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
from ray.serve.handle import DeploymentHandle

from serve_apps.auth import Caller
from serve_apps.errors import ApiError, invalid, not_found
from serve_apps.finetuning.manager import TRAINING_DATA, VALIDATION_DATA, job_dir
from serve_apps.finetuning.store import JobNotFound, JobRecord, JobStore
from serve_apps.limits import DEFAULT_CONCURRENT_JOBS, check_job_quota
from serve_apps.models.registry import ModelStatus, Registry, new_model_id
from serve_apps.models.resolver import ModelResolver
from serve_apps.settings import Settings
from serve_apps.storage.files import FileRecord
from train_jobs.spec import TrainingSpec
from tsfm_core.datasets import write_series

# A job's training_file when its series came in the request body (Nixtla) rather than as a file.
INLINE_SERIES = "inline-series"


class FinetuningService:
    def __init__(self, settings: Settings, registry: Registry, jobs: JobStore, resolver: ModelResolver,
                 job_manager: DeploymentHandle):
        self.settings, self.registry, self.jobs, self.resolver = settings, registry, jobs, resolver
        self.job_manager = job_manager

    def own_job(self, job_id: str, caller: Caller) -> JobRecord:
        try:
            return self.jobs.get(job_id, caller.organization)
        except JobNotFound:
            raise not_found(["path", "job_id"], f"fine-tuning job {job_id!r}") from None

    @property
    def available(self) -> bool:
        """Whether this process can run Ray Train jobs (a bare process has no JobManager)."""
        return self.job_manager is not None

    async def create(self, caller: Caller, source: str, requested_model: str, spec: TrainingSpec,
                     file: FileRecord | None, validation_file: FileRecord | None, request: dict, model_params: dict,
                     *, series: list[np.ndarray] | None = None, model_id: str | None = None,
                     freq: str | None = None) -> JobRecord:
        """Registers the model it will produce (queued), stores the job, and wakes the manager. It
        trains on `file`, or on `series` sent inline (Nixtla), as the model `model_id` if given."""
        job = await asyncio.to_thread(self._create, caller, source, requested_model, spec, file, validation_file,
                                      request, model_params, series, model_id, freq)
        self.job_manager.reconcile.remote()  # submit now rather than at the next poll
        return job

    def _create(self, caller: Caller, source: str, requested_model: str, spec: TrainingSpec, file: FileRecord | None,
                validation_file: FileRecord | None, request: dict, model_params: dict,
                series: list[np.ndarray] | None = None, model_id: str | None = None,
                freq: str | None = None) -> JobRecord:
        for f in (file, validation_file):
            if f is not None and not f.is_series:  # the routes name the field; this guards every caller
                raise invalid(["body"], f"file {f.id!r} is not a series file; upload one to train on")
        check_job_quota(self.jobs.engine, caller.organization,
                        self.settings.limit(self.settings.max_concurrent_jobs, DEFAULT_CONCURRENT_JOBS))
        model_id = model_id or new_model_id()
        ft = spec.finetune
        self.registry.add(model_id=model_id, organization=caller.organization, base_model_id=spec.base_model,
                          source=source, created_by=caller.key_hint, freq=freq, steps=ft.steps, depth=ft.depth,
                          loss=ft.loss, finetune_tokens=0, params={"requested_model": requested_model, **model_params},
                          status=ModelStatus.QUEUED)
        job = self.jobs.create(organization=caller.organization, source=source, model=requested_model,
                               base_model_id=spec.base_model, model_id=model_id,
                               training_file=file.id if file else INLINE_SERIES,
                               validation_file=validation_file.id if validation_file else None, spec=spec,
                               request=request)
        # The job trains on its own copy: deleting the file later cannot starve a resumed run.
        directory = job_dir(self.settings, job.id)
        directory.mkdir(parents=True, exist_ok=True)
        if file is not None:
            shutil.copy(file.series_path, directory / TRAINING_DATA)
        else:
            write_series({f"series_{i:06d}": s for i, s in enumerate(series)}, directory / TRAINING_DATA)
        if validation_file is not None:  # the run validates on it instead of held-out windows
            shutil.copy(validation_file.series_path, directory / VALIDATION_DATA)
        return job

    def respec(self, job: JobRecord, requested_model: str, spec: TrainingSpec, file: FileRecord, request: dict,
               model_params: dict, message: str) -> bool:
        """New settings for a job not yet submitted to Ray (a Cohere PATCH): its spec, data and model
        record; False (nothing changed) once a run was submitted. The new data is staged beside the
        old and swapped in only after the job row took the change."""
        directory = job_dir(self.settings, job.id)
        staged = directory / f".{TRAINING_DATA}.{job.spec_version + 1}"
        shutil.copy(file.series_path, staged)
        if not self.jobs.respec_queued(job.id, job.spec_version, spec=spec, model=requested_model,
                                       base_model_id=spec.base_model, training_file=file.id, request=request,
                                       message=message):
            staged.unlink(missing_ok=True)
            return False
        staged.replace(directory / TRAINING_DATA)
        ft = spec.finetune
        # The job manager moves the model on only after it submitted the run made from these settings.
        self.registry.set_status(job.model_id, ModelStatus.QUEUED, base_model_id=spec.base_model, steps=ft.steps,
                                 depth=ft.depth, loss=ft.loss)
        self.registry.update_params(job.model_id, model_params)
        return True

    async def cancel(self, job_id: str, caller: Caller) -> JobRecord:
        job = self.own_job(job_id, caller)
        if not job.status.active or not await self.job_manager.cancel.remote(job_id):
            raise ApiError(409, ["path", "job_id"], f"job {job_id} is {self.jobs.get(job_id).status} and cannot be "
                           "cancelled", "invalid_state")
        return self.jobs.get(job_id)

    async def delete_model(self, model_id: str, caller: Caller) -> None:
        """Any dialect's delete: stops a training job first, then soft-deletes and frees artifacts. A
        model other live models were finetuned from is a 409: their weights sit on top of its own."""
        record = self.resolver.own_model(model_id, caller.organization, ["path", "model_id"])
        children = [child.public_id for child in self.registry.children(record.id)]
        if children:
            raise ApiError(409, ["path", "model_id"], f"model {model_id!r} is the base of finetuned models "
                           f"{', '.join(children)}; delete those first", "has_dependents")
        job = self.jobs.by_model(record.id)  # by its stored id: a client-chosen id is stored scoped
        if job is not None and job.status.active:
            await self.job_manager.cancel.remote(job.id)
        self.registry.delete(model_id, caller.organization)
        self.resolver.forget(model_id)

"""JobManager: runs fine-tuning jobs as Ray Jobs of `train_jobs.finetune` and keeps the database
in step with them.

A reconcile loop (every `poll_interval_s`) submits queued jobs through the Ray Jobs API, follows
running ones (status, the run's progress file -> metrics and checkpoint events), and finishes
them: a succeeded run's model becomes `ready` in the registry (see finish), a failed one records its error.
Jobs live in the database, so after a server restart the loop finds them again: a Ray job that is
still known to the cluster is re-attached; one the cluster no longer knows (the embedded local
cluster died with the server) is resubmitted under the same Ray Train run name, and Ray Train
resumes it from its last checkpoint.

Cancelling writes a stop file that the driver watches (it exits, and Ray ends the run's actors
with it) as well as asking Ray to stop the job: Ray's stop can race the start of the driver
(`sh -c` forks the driver after Ray has listed the processes to kill), and a cancelled run must
never keep holding the cluster's CPUs.

Several servers may share one database (or one TSFM_HOME), each with its own Ray cluster. Each
job has one owner, the manager holding its lease in the database (see store): only the owner
submits, follows and finishes it, and renews the lease every poll (and from a heartbeat task that
a slow Ray call cannot hold up). Another manager takes a job over only after the lease ran out,
which on the embedded cluster means the owner's server, its cluster and the job's driver are gone;
it then resubmits on its own cluster and Ray Train resumes from the checkpoint in the shared
storage path. A manager that finds it lost a job stops its own run of it. Submissions are
idempotent: attempt n is submitted as `{job}-{n}` only if this cluster does not know that id, and
recorded only if no one recorded attempt n first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import socket
import sys
import uuid
from dataclasses import replace
from pathlib import Path

from ray.job_submission import JobStatus as RayJobStatus
from ray.job_submission import JobSubmissionClient
from ray.util.metrics import Counter

from serve_apps.finetuning.finish import finish_succeeded
from serve_apps.finetuning.progress import complete_lines, fold
from serve_apps.finetuning.store import JobRecord, JobStatus, JobStore
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.settings import Settings
from serve_apps.storage.files import FileStore
from train_jobs.spec import FinetuneRun

log = logging.getLogger("ray.serve")


# A job's own copies of its data, in its directory (see job_dir).
TRAINING_DATA = "series.parquet"
VALIDATION_DATA = "validation.parquet"


def job_dir(settings: Settings, job_id: str) -> Path:
    return Path(settings.artifact_dir) / "jobs" / job_id


def stop_file(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "cancelled"


def driver_launch(settings: Settings) -> tuple[str, dict | None]:
    """The interpreter a job's driver runs with, and the runtime_env it is submitted with.

    On the embedded cluster the driver runs on this machine: the server's own interpreter (a server
    started as `/venv/bin/python -m serve_apps` trains with that virtualenv) and no runtime_env. On
    an external cluster (RAY_ADDRESS) the driver runs on the head node, where the server's
    interpreter path need not exist: the cluster's `python` (which must have the dependencies,
    torch and ray, as its Ray Train workers need them anyway), with the server's own training code
    shipped as py_modules so the driver and its workers run the server's version of it.
    TSFM_JOB_PYTHON names the interpreter explicitly in either case."""
    if not settings.external_cluster:
        return settings.job_python or sys.executable, None
    import train_jobs
    import tsfm_core

    modules = [str(Path(m.__file__).parent) for m in (train_jobs, tsfm_core)]
    return settings.job_python or "python", {"py_modules": modules}


def entrypoint(settings: Settings, job: JobRecord, base_model_dir: Path, output_dir: Path) -> str:
    """Writes the job's FinetuneRun beside its data and returns the command that runs it."""
    directory = job_dir(settings, job.id)
    validation = directory / VALIDATION_DATA
    # The request's tracking targets get the operator's settings here, never from the request.
    tracking = job.spec.tracking.for_run(online=settings.tracking_online, directory=str(directory),
                                         mlflow_tracking_uri=settings.mlflow_tracking_uri,
                                         mlflow_all_jobs=settings.mlflow_all_jobs)
    run = FinetuneRun(spec=replace(job.spec, tracking=tracking), data=str(directory / TRAINING_DATA), output=str(output_dir),
                      base_model_dir=str(base_model_dir), model_id=job.model_id,
                      validation_data=str(validation) if validation.exists() else None, num_workers=settings.train_workers,
                      use_gpu=settings.use_gpu, storage_path=str(Path(settings.home) / "ray_train"), name=job.id,
                      max_failures=3, progress_file=str(directory / "progress.jsonl"),
                      stop_file=str(stop_file(settings, job.id)))
    path = run.write(directory / "run.json")
    python, _ = driver_launch(settings)
    return " ".join(shlex.quote(a) for a in [python, "-m", "train_jobs.finetune", "--run", str(path)])


def owner_token() -> str:
    """Unique per JobManager instance (a restarted replica is a new owner); host and pid say where it ran."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobManager:
    def __init__(self, settings: dict):
        self.settings = Settings.from_dict(settings)
        self.jobs = JobStore(self.settings.database_url)
        self.registry = Registry(self.settings.database_url, self.settings.artifact_dir)
        self.files = FileStore(self.settings.database_url, self.settings.artifact_dir)  # results files
        # Operators see how often fine-tunes help, keep the base or are worse (finetuning.verdict);
        # counted in the deployment's actor, exported like the serving metrics.
        self._outcomes = Counter("tsfm_finetune_outcomes_total", "Succeeded fine-tuning jobs by their verdict against "
                                 "the base on validation, and whether the model was promoted.",
                                 tag_keys=("outcome", "promoted"))
        self.resolver = ModelResolver(self.registry)
        self._client: JobSubmissionClient | None = None
        self._lock = asyncio.Lock()
        self.owner = owner_token()
        # Jobs this manager holds -> the submission it made or adopted on its own cluster (or None):
        # what it stops should it find another manager took the job over.
        self._held: dict[str, str | None] = {}
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._run())
        self._heartbeat_task = loop.create_task(self._heartbeat())

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:
            self._client = JobSubmissionClient(self.settings.ray_dashboard_url)
        return self._client

    async def _run(self) -> None:
        while True:
            try:
                await self.reconcile()
            except Exception:  # a database hiccup must not end the loop
                log.exception("reconciling jobs failed")
            await asyncio.sleep(self.settings.poll_interval_s)

    async def _heartbeat(self) -> None:
        """Renews this manager's leases apart from the reconcile loop, which a slow Ray call can hold
        up: the lease must run out only when the owner is gone."""
        while True:
            await asyncio.sleep(min(self.settings.poll_interval_s, self.settings.job_lease_s / 5))
            if self._held:
                try:
                    await asyncio.to_thread(self.jobs.renew_leases, self.owner, self.settings.job_lease_s)
                except Exception:
                    log.exception("renewing job leases failed")

    async def reconcile(self) -> None:
        async with self._lock:
            jobs = await asyncio.to_thread(self.jobs.active)
            for job in jobs:
                try:
                    await asyncio.to_thread(self._reconcile_owned, job)
                except Exception:  # one bad job must not stop the others
                    log.exception("reconciling job %s failed", job.id)
            active = {job.id for job in jobs}
            self._held = {job_id: sid for job_id, sid in self._held.items() if job_id in active}
            # A run stopped while Ray was still starting it can start anyway: stop it again.
            for job in self.jobs.cancelled_since(_now() - 600):
                try:
                    await asyncio.to_thread(self._ensure_stopped, job)
                except Exception:
                    log.exception("stopping cancelled job %s failed", job.id)

    async def cancel(self, job_id: str) -> bool:
        async with self._lock:
            job = self.jobs.get(job_id)
            if not self.jobs.transition(job_id, JobStatus.CANCELLED, "Job cancelled", finished_at=_now()):
                return False
            stop_file(self.settings, job_id).touch()
            if job.submission_id:
                try:
                    await asyncio.to_thread(self.client.stop_job, job.submission_id)
                except Exception:
                    log.warning("could not stop ray job %s", job.submission_id)
            self.registry.set_status(job.model_id, ModelStatus.CANCELLED)
            return True

    def _ensure_stopped(self, job: JobRecord) -> None:
        status = self._ray_status(job.submission_id)
        if status is not None and not status.is_terminal():
            log.info("cancelled job %s still has a live Ray run; stopping it", job.id)
            self.client.stop_job(job.submission_id)

    # ---- one job ----------------------------------------------------------------------------
    def _reconcile_owned(self, job: JobRecord) -> None:
        """Acts on `job` only while this manager holds its lease (taking it if free or expired)."""
        if job.leased_to_another(self.owner, _now()) or not self.jobs.hold_lease(job.id, self.owner,
                                                                                  self.settings.job_lease_s):
            self._let_go(job)
            return
        if job.id not in self._held:
            self._held[job.id] = None
            if job.owner not in (None, self.owner):
                log.warning("job %s: taking it over from %s, whose lease expired", job.id, job.owner)
                self.jobs.add_event(job.id, "warn", "message", f"Taken over by job manager {self.owner}: the previous "
                                    f"owner {job.owner} stopped renewing its lease", {"previous_owner": job.owner})
        self._reconcile_job(self.jobs.get(job.id))

    def _let_go(self, job: JobRecord) -> None:
        """Another manager holds `job`. A run of it that this manager made must not train beside the
        new owner's: it is stopped once the new owner recorded a submission of its own (on a cluster
        shared by both servers the new owner may instead follow this very run; it is then left be)."""
        mine = self._held.get(job.id)
        if mine is None:  # nothing of ours runs
            self._held.pop(job.id, None)
            return
        if job.submission_id == mine:  # the new owner has not submitted yet (or follows ours): look again next round
            return
        del self._held[job.id]
        log.warning("job %s is now owned by %s; stopping this cluster's run %s", job.id, job.owner, mine)
        status = self._ray_status(mine)
        if status is not None and not status.is_terminal():
            self.client.stop_job(mine)

    def _submit(self, job: JobRecord) -> None:
        attempt = job.attempts + 1
        # Idempotent: a run this cluster already has under the next id (a round that submitted and
        # then failed before recording it) is adopted, not doubled; only one this manager stopped
        # (it had lost the job before recording it) is skipped for a fresh id.
        while (status := self._ray_status(f"{job.id}-{attempt}")) == RayJobStatus.STOPPED:
            attempt += 1
        submission_id = f"{job.id}-{attempt}"
        if status is None:
            output = self.registry.artifact_path_for(job.model_id)
            base_dir = self.resolver.model_dir(job.spec.base_model)
            _, runtime_env = driver_launch(self.settings)
            self.client.submit_job(entrypoint=entrypoint(self.settings, job, base_dir, output),
                                   submission_id=submission_id, runtime_env=runtime_env,
                                   metadata={"tsfm_job": job.id, "tsfm_owner": self.owner})
        message = "Submitted to Ray" if attempt == 1 else f"Resubmitted to Ray (attempt {attempt}); resuming from the last checkpoint"
        if self.jobs.record_submission(job.id, self.owner, submission_id, job.attempts, attempt, message,
                                  spec_version=job.spec_version):
            self._held[job.id] = submission_id
        else:  # the job left this manager (or was recorded by another) meanwhile: no second driver
            log.warning("job %s: submission %s was not recorded; stopping it", job.id, submission_id)
            self.client.stop_job(submission_id)

    def _ray_status(self, submission_id: str) -> RayJobStatus | None:
        try:
            return self.client.get_job_status(submission_id)
        except RuntimeError as e:
            # Only a 404 means this cluster does not know this submission (made on a cluster that
            # died, ours or a dead owner's); any other failure (a busy dashboard's 5xx) must not
            # make a second run of the same job.
            if "status code 404" in str(e):
                return None
            raise

    def _reconcile_job(self, job: JobRecord) -> None:
        if job.submission_id is None:
            self._submit(job)
            return
        status = self._ray_status(job.submission_id)
        if status is None:  # verifiably gone: this (owning) cluster does not know it
            self._submit(job)
            return
        self._held[job.id] = job.submission_id
        self._read_progress(job)
        if status == RayJobStatus.RUNNING and job.status != JobStatus.RUNNING:
            # Only a job still active moves its model on (one cancelled meanwhile keeps its status).
            if self.jobs.transition(job.id, JobStatus.RUNNING, "Fine-tuning started", started_at=_now()):
                self.registry.set_status(job.model_id, ModelStatus.FINETUNING)
        elif status == RayJobStatus.SUCCEEDED:
            self._finish_succeeded(self.jobs.get(job.id))
        elif status == RayJobStatus.FAILED:
            logs = ""
            try:
                logs = self.client.get_job_logs(job.submission_id)[-1500:]
            except Exception:
                pass
            error = {"code": "training_failed", "message": _last_error_line(logs) or "the training run failed", "param": None}
            if self.jobs.transition(job.id, JobStatus.FAILED, f"Fine-tuning failed: {error['message']}", level="error",
                                    error=error, finished_at=_now()):
                self.registry.set_status(job.model_id, ModelStatus.FAILED)
        elif status == RayJobStatus.STOPPED and job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            self.jobs.transition(job.id, JobStatus.CANCELLED, "Ray job was stopped", level="warn", finished_at=_now())
            self.registry.set_status(job.model_id, ModelStatus.CANCELLED)

    def _finish_succeeded(self, job: JobRecord) -> None:
        finished = finish_succeeded(job, self.jobs, self.registry, self.files, job_dir(self.settings, job.id),
                                    self.settings.refuse_worse_finetunes)
        if finished is not None:
            verdict, promoted = finished
            self._outcomes.inc(tags={"outcome": verdict.outcome, "promoted": str(promoted).lower()})

    def _read_progress(self, job: JobRecord) -> None:
        path = job_dir(self.settings, job.id) / "progress.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as f:
            f.seek(job.progress_offset)
            complete = complete_lines(f.read())
        if not complete:
            return
        progress, events = fold(job.progress, complete, job.spec.steps)
        self.jobs.record_progress(job.id, self.owner, job.progress, progress, events)


def _last_error_line(logs: str) -> str:
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else ""


def _now() -> float:
    import time

    return time.time()

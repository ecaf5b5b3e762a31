"""JobManager: runs fine-tuning jobs as Ray Jobs of `train_jobs.finetune` and keeps the database
in step with them.

A reconcile loop (every `poll_interval_s`) submits queued jobs through the Ray Jobs API, follows
running ones (status, the run's progress file -> metrics and checkpoint events), and finishes
them: a succeeded run's model becomes `ready` in the registry, a failed one records its error.
Jobs live in the database, so after a server restart the loop finds them again: a Ray job that is
still known to the cluster is re-attached; one the cluster no longer knows (the embedded local
cluster died with the server) is resubmitted under the same Ray Train run name, and Ray Train
resumes it from its last checkpoint.

Cancelling writes a stop file that the driver watches (it exits, and Ray ends the run's actors
with it) as well as asking Ray to stop the job: Ray's stop can race the start of the driver
(`sh -c` forks the driver after Ray has listed the processes to kill), and a cancelled run must
never keep holding the cluster's CPUs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import shutil
import sys
from pathlib import Path

from ray.job_submission import JobStatus as RayJobStatus
from ray.job_submission import JobSubmissionClient

from serve_apps.finetuning.store import JobRecord, JobStatus, JobStore
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.settings import Settings
from train_jobs.spec import FinetuneRun

log = logging.getLogger("ray.serve")


def job_dir(settings: Settings, job_id: str) -> Path:
    return Path(settings.artifact_dir) / "jobs" / job_id


def stop_file(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "cancelled"


def entrypoint(settings: Settings, job: JobRecord, base_model_dir: Path, output_dir: Path) -> str:
    """Writes the job's FinetuneRun beside its data and returns the command that runs it: the server's
    own interpreter, so a server started from a virtualenv trains with that virtualenv."""
    directory = job_dir(settings, job.id)
    run = FinetuneRun(spec=job.spec, data=str(directory / "series.parquet"), output=str(output_dir),
                      base_model_dir=str(base_model_dir), model_id=job.model_id, num_workers=settings.train_workers,
                      use_gpu=settings.use_gpu, storage_path=str(Path(settings.home) / "ray_train"), name=job.id,
                      max_failures=3, progress_file=str(directory / "progress.jsonl"),
                      stop_file=str(stop_file(settings, job.id)))
    path = run.write(directory / "run.json")
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "train_jobs.finetune", "--run", str(path)])


class JobManager:
    def __init__(self, settings: dict):
        self.settings = Settings.from_dict(settings)
        self.jobs = JobStore(self.settings.database_url)
        self.registry = Registry(self.settings.database_url, self.settings.artifact_dir)
        self.resolver = ModelResolver(self.registry)
        self._client: JobSubmissionClient | None = None
        self._lock = asyncio.Lock()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    @property
    def client(self) -> JobSubmissionClient:
        if self._client is None:
            self._client = JobSubmissionClient(self.settings.ray_dashboard_url)
        return self._client

    async def _run(self) -> None:
        while True:
            await self.reconcile()
            await asyncio.sleep(self.settings.poll_interval_s)

    async def reconcile(self) -> None:
        async with self._lock:
            for job in self.jobs.active():
                try:
                    await asyncio.to_thread(self._reconcile_job, job)
                except Exception:  # one bad job must not stop the others
                    log.exception("reconciling job %s failed", job.id)
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
        status = self._ray_status(job)
        if status is not None and not status.is_terminal():
            log.info("cancelled job %s still has a live Ray run; stopping it", job.id)
            self.client.stop_job(job.submission_id)

    # ---- one job ----------------------------------------------------------------------------
    def _submit(self, job: JobRecord) -> None:
        attempt = job.attempts + 1
        submission_id = f"{job.id}-{attempt}"
        output = self.registry.artifact_path_for(job.model_id)
        base_dir = self.resolver.model_dir(job.spec.base_model)
        self.client.submit_job(entrypoint=entrypoint(self.settings, job, base_dir, output), submission_id=submission_id,
                               metadata={"tsfm_job": job.id})
        self.jobs.update(job.id, submission_id=submission_id, attempts=attempt)
        message = "Submitted to Ray" if attempt == 1 else f"Resubmitted to Ray (attempt {attempt}); resuming from the last checkpoint"
        self.jobs.add_event(job.id, "info", "message", message, {"submission_id": submission_id})

    def _ray_status(self, job: JobRecord) -> RayJobStatus | None:
        try:
            return self.client.get_job_status(job.submission_id)
        except RuntimeError as e:
            # Only a 404 means the cluster does not know this submission (it was restarted); any
            # other failure (a busy dashboard's 5xx) must not make a second run of the same job.
            if "status code 404" in str(e):
                return None
            raise

    def _reconcile_job(self, job: JobRecord) -> None:
        if job.submission_id is None:
            self._submit(job)
            return
        status = self._ray_status(job)
        if status is None:
            self._submit(job)
            return
        self._read_progress(job)
        if status == RayJobStatus.RUNNING and job.status != JobStatus.RUNNING:
            self.jobs.transition(job.id, JobStatus.RUNNING, "Fine-tuning started", started_at=_now())
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
        output = self.registry.artifact_path_for(job.model_id)
        config_path = output / "config.json"
        if not config_path.exists():
            return  # the driver is still writing the model; next round
        summary = json.loads(config_path.read_text()).get("training", {})
        points = int(summary.get("finetune_points", job.trained_tokens))
        if self.jobs.transition(job.id, JobStatus.SUCCEEDED, f"Fine-tuning succeeded: model {job.model_id} is ready",
                                finished_at=_now(), trained_tokens=points):
            self.registry.set_status(job.model_id, ModelStatus.READY, finetune_tokens=points)
            shutil.copy(output / "metrics.jsonl", job_dir(self.settings, job.id) / "metrics.jsonl")

    def _read_progress(self, job: JobRecord) -> None:
        path = job_dir(self.settings, job.id) / "progress.jsonl"
        if not path.exists():
            return
        with open(path) as f:
            f.seek(job.progress_offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]  # a line still being written waits for the next round
        if not complete:
            return
        total = job.spec.steps
        points = job.trained_tokens
        for line in complete.splitlines():
            record = json.loads(line)
            step, loss = record.get("step"), record.get("loss")
            points += int(record.get("points", 0))
            self.jobs.add_event(job.id, "info", "metrics", f"Step {step}/{total}: training loss={loss:.4f}",
                                {"step": step, "train_loss": loss, "total_steps": total})
            if record.get("checkpoint"):
                self.jobs.add_event(job.id, "info", "checkpoint", f"Checkpoint saved at step {step}",
                                    {"step": step, "train_loss": loss, "path": record["checkpoint"]})
        self.jobs.update(job.id, progress_offset=job.progress_offset + len(complete.encode()), trained_tokens=points)


def _last_error_line(logs: str) -> str:
    lines = [line.strip() for line in logs.splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line or "error" in line:
            return line[-300:]
    return lines[-1][-300:] if lines else ""


def _now() -> float:
    import time

    return time.time()

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
from pathlib import Path

from ray.job_submission import JobStatus, JobSubmissionClient

from serve_apps.job_store import JobRecord, JobStore
from serve_apps.registry import Registry
from serve_apps.settings import Settings

log = logging.getLogger("ray.serve")


def job_dir(settings: Settings, job_id: str) -> Path:
    return Path(settings.artifact_dir) / "jobs" / job_id


def stop_file(settings: Settings, job_id: str) -> Path:
    return job_dir(settings, job_id) / "cancelled"


def entrypoint(settings: Settings, job: JobRecord, output_dir: Path) -> str:
    directory = job_dir(settings, job.id)
    cfg = job.config
    args = ["python", "-m", "train_jobs.finetune", "--data", str(directory / "series.parquet"),
            "--output", str(output_dir), "--model-id", job.model_id, "--base-model", cfg["base_model"],
            "--steps", str(cfg["steps"]), "--depth", str(cfg["depth"]), "--loss", cfg["loss"],
            "--learning-rate", str(cfg["learning_rate"]), "--batch-size", str(cfg["batch_size"]),
            "--seed", str(cfg["seed"]), "--checkpoint-every", str(cfg["checkpoint_every"]),
            "--num-workers", str(settings.train_workers), "--storage-path", str(Path(settings.home) / "ray_train"),
            "--name", job.id, "--progress-file", str(directory / "progress.jsonl"), "--max-failures", "3",
            "--stop-file", str(stop_file(settings, job.id))]
    if cfg.get("lora_rank"):
        args += ["--lora-rank", str(cfg["lora_rank"]), "--lora-alpha", str(cfg["lora_alpha"]),
                 "--lora-targets", cfg["lora_targets"]]
    if cfg.get("early_stopping_patience"):
        args += ["--early-stopping-patience", str(cfg["early_stopping_patience"]),
                 "--early-stopping-threshold", str(cfg.get("early_stopping_threshold", 0.0))]
    if settings.use_gpu:
        args.append("--use-gpu")
    return " ".join(shlex.quote(a) for a in args)


class JobManager:
    def __init__(self, settings: dict):
        self.settings = Settings.from_dict(settings)
        self.jobs = JobStore(self.settings.database_url)
        self.registry = Registry(self.settings.database_url, self.settings.artifact_dir)
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
            if not self.jobs.transition(job_id, "cancelled", "Job cancelled", finished_at=_now()):
                return False
            stop_file(self.settings, job_id).touch()
            if job.submission_id:
                try:
                    await asyncio.to_thread(self.client.stop_job, job.submission_id)
                except Exception:
                    log.warning("could not stop ray job %s", job.submission_id)
            self.registry.set_status(job.model_id, "cancelled")
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
        self.client.submit_job(entrypoint=entrypoint(self.settings, job, output), submission_id=submission_id,
                               metadata={"tsfm_job": job.id})
        self.jobs.update(job.id, submission_id=submission_id, attempts=attempt)
        message = "Submitted to Ray" if attempt == 1 else f"Resubmitted to Ray (attempt {attempt}); resuming from the last checkpoint"
        self.jobs.add_event(job.id, "info", "message", message, {"submission_id": submission_id})

    def _ray_status(self, job: JobRecord) -> JobStatus | None:
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
        if status == JobStatus.RUNNING and job.status != "running":
            self.jobs.transition(job.id, "running", "Fine-tuning started", started_at=_now())
            self.registry.set_status(job.model_id, "finetuning")
        elif status == JobStatus.SUCCEEDED:
            self._finish_succeeded(self.jobs.get(job.id))
        elif status == JobStatus.FAILED:
            logs = ""
            try:
                logs = self.client.get_job_logs(job.submission_id)[-1500:]
            except Exception:
                pass
            error = {"code": "training_failed", "message": _last_error_line(logs) or "the training run failed", "param": None}
            if self.jobs.transition(job.id, "failed", f"Fine-tuning failed: {error['message']}", level="error",
                                    error=error, finished_at=_now()):
                self.registry.set_status(job.model_id, "failed")
        elif status == JobStatus.STOPPED and job.status in ("queued", "running"):
            self.jobs.transition(job.id, "cancelled", "Ray job was stopped", level="warn", finished_at=_now())
            self.registry.set_status(job.model_id, "cancelled")

    def _finish_succeeded(self, job: JobRecord) -> None:
        output = self.registry.artifact_path_for(job.model_id)
        config_path = output / "config.json"
        if not config_path.exists():
            return  # the driver is still writing the model; next round
        summary = json.loads(config_path.read_text()).get("training", {})
        points = int(summary.get("finetune_points", job.trained_tokens))
        if self.jobs.transition(job.id, "succeeded", f"Fine-tuning succeeded: model {job.model_id} is ready",
                                finished_at=_now(), trained_tokens=points):
            self.registry.set_status(job.model_id, "ready", finetune_tokens=points)
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
        total = job.config["steps"]
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

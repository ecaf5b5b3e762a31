"""The JobManager's decisions when several servers share one database, each with its own Ray
cluster (here an in-memory Ray Jobs API per manager; the real thing runs in
tests/integration/test_job_ownership.py): one submission per job, a takeover only after the
owner's lease ran out, the old owner's run stopped, idempotent submission ids."""

import asyncio
import json
import time

import pytest
from ray.job_submission import JobStatus as RayJobStatus

from serve_apps.finetuning.manager import JobManager, job_dir
from serve_apps.finetuning.store import JobStore, jobs
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.settings import Settings
from train_jobs.spec import TrainingSpec

LIVE = (RayJobStatus.PENDING, RayJobStatus.RUNNING)


class OneClusterJobs:
    """The Ray Jobs API of one server's own cluster: it knows only what was submitted to it."""

    def __init__(self):
        self.status: dict[str, RayJobStatus] = {}
        self.submitted: list[str] = []

    def get_job_status(self, submission_id):
        if submission_id not in self.status:
            raise RuntimeError(f"Request failed with status code 404: Job {submission_id} does not exist.")
        return self.status[submission_id]

    def submit_job(self, *, entrypoint, submission_id, runtime_env=None, metadata=None):
        assert submission_id not in self.status, "submitted twice under one id"
        self.status[submission_id] = RayJobStatus.RUNNING
        self.submitted.append(submission_id)
        return submission_id

    def stop_job(self, submission_id):
        self.get_job_status(submission_id)
        self.status[submission_id] = RayJobStatus.STOPPED

    def live(self) -> list[str]:
        return [s for s, st in self.status.items() if st in LIVE]


@pytest.fixture
def settings(tmp_path):
    return {"home": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "artifact_dir": str(tmp_path / "artifacts"), "job_lease_s": 30.0, "poll_interval_s": 3600.0}


def _manager(settings) -> tuple[JobManager, OneClusterJobs]:
    """A JobManager whose loops never run (the test drives its rounds), on a cluster of its own."""
    manager = JobManager(settings)
    manager._loop_task.cancel()
    manager._heartbeat_task.cancel()
    manager._client = OneClusterJobs()
    return manager, manager._client


def _job(settings):
    Registry(settings["database_url"], settings["artifact_dir"]).add(
        model_id="ft-1", organization="acme", base_model_id="tsfm-base", source="openai", created_by="k", freq=None,
        steps=6, depth=1, loss="default", finetune_tokens=0, params={}, status=ModelStatus.QUEUED)
    job = JobStore(settings["database_url"]).create(
        organization="acme", source="openai", model="tsfm-base", base_model_id="tsfm-base", model_id="ft-1",
        training_file="file-1", validation_file=None, spec=TrainingSpec(base_model="tsfm-base"), request={})
    job_dir(Settings.from_dict(settings), job.id).mkdir(parents=True)
    return job


def _report(settings, job_id, *steps, points=10):
    path = job_dir(Settings.from_dict(settings), job_id) / "progress.jsonl"
    with open(path, "a") as f:
        for step in steps:
            f.write(json.dumps({"step": step, "loss": 0.5, "points": points, "checkpoint": None}) + "\n")


def _expire_lease(store, job_id):
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(lease_expires_at=time.time() - 1))


def test_two_managers_one_job_one_run_and_a_takeover_only_after_the_lease_ran_out(settings):
    async def scenario():
        job = _job(settings)
        (a, ca), (b, cb) = _manager(settings), _manager(settings)
        store = a.jobs
        for _ in range(3):
            await a.reconcile()
            await b.reconcile()
        assert ca.submitted == [f"{job.id}-1"] and cb.submitted == []  # b never touched a's job
        assert store.get(job.id).owner == a.owner and store.get(job.id).status == "running"
        _report(settings, job.id, 1, 2, 3, 4)
        await a.reconcile()
        await b.reconcile()
        assert store.get(job.id).recorded_step == 4

        _expire_lease(store, job.id)  # a stopped renewing (its server hangs, or died)
        await b.reconcile()
        assert cb.submitted == [f"{job.id}-2"] and store.get(job.id).owner == b.owner
        messages = [e.message for e in store.events(job.id, ("message",))]
        assert messages[-2].startswith(f"Taken over by job manager {b.owner}") and messages[-1].startswith("Resubmitted to Ray (attempt 2)")
        assert ca.live() == [f"{job.id}-1"]
        await a.reconcile()  # a comes back: the job is b's now, and a's run of it stops
        assert ca.live() == [] and cb.live() == [f"{job.id}-2"]
        await a.reconcile()
        assert ca.submitted == [f"{job.id}-1"]

        _report(settings, job.id, 3, 4, 5, 6)  # b's run resumed from a checkpoint at step 2
        await b.reconcile()
        record = store.get(job.id)
        assert [e.data["step"] for e in store.events(job.id, ("metrics",))] == [1, 2, 3, 4, 5, 6]
        assert record.trained_tokens == 60

    asyncio.run(scenario())


def test_submissions_are_idempotent_and_only_a_404_means_gone(settings):
    async def scenario():
        job = _job(settings)
        a, ca = _manager(settings)
        ca.status[f"{job.id}-1"] = RayJobStatus.RUNNING  # submitted by a round that died before recording it
        await a.reconcile()
        assert ca.submitted == [] and a.jobs.get(job.id).submission_id == f"{job.id}-1"

        ca.status.clear()  # this owner's cluster lost the run (restarted under it): verifiably gone
        await a.reconcile()
        assert ca.submitted == [f"{job.id}-2"]

        def busy(submission_id):
            raise RuntimeError("Request failed with status code 503: dashboard busy")

        ca.get_job_status = busy  # not an answer about the run: nothing is resubmitted
        await a.reconcile()
        assert ca.submitted == [f"{job.id}-2"] and a.jobs.get(job.id).attempts == 2

    asyncio.run(scenario())


def test_a_run_stopped_before_it_was_recorded_is_not_adopted(settings):
    async def scenario():
        job = _job(settings)
        a, ca = _manager(settings)
        ca.status[f"{job.id}-1"] = RayJobStatus.STOPPED
        await a.reconcile()
        assert ca.submitted == [f"{job.id}-2"] and a.jobs.get(job.id).submission_id == f"{job.id}-2"

    asyncio.run(scenario())

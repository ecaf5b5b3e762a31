"""One owner per fine-tuning job, on a real SQLite database: leases taken, renewed, refused while
live and taken over once expired; submissions and progress recorded once, by the owner only; a
resumed run's repeated steps folded into events once."""

import json
import time

import pytest
import sqlalchemy as sa

from serve_apps.finetuning.progress import Progress, complete_lines, fold
from serve_apps.finetuning.store import JobStatus, JobStore, jobs
from serve_apps.settings import Settings
from train_jobs.spec import TrainingSpec


@pytest.fixture
def store(tmp_path):
    return JobStore(f"sqlite:///{tmp_path / 'db.sqlite'}")


def _job(store, model_id="ft-1"):
    return store.create(organization="acme", source="openai", model="timegpt-1", base_model_id="tsfm-base",
                        model_id=model_id, training_file="file-1", validation_file=None,
                        spec=TrainingSpec(base_model="tsfm-base"), request={})


def _expire(store, job_id):
    with store.engine.begin() as conn:
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(lease_expires_at=time.time() - 1))


def test_a_live_lease_has_one_holder_until_it_expires(store):
    job = _job(store)
    assert store.hold_lease(job.id, "a", 30)
    assert store.hold_lease(job.id, "a", 30)  # renewing
    assert not store.hold_lease(job.id, "b", 30)  # refused while a's lease is live
    held = store.get(job.id)
    assert held.owner == "a" and held.leased_to_another("b", time.time()) and not held.leased_to_another("a", time.time())
    _expire(store, job.id)
    assert store.hold_lease(job.id, "b", 30)  # a stopped renewing: taken over
    assert not store.hold_lease(job.id, "a", 30)
    assert store.get(job.id).owner == "b"


def test_the_heartbeat_renews_only_its_own_active_leases(store):
    first, second = _job(store, "ft-1"), _job(store, "ft-2")
    assert store.hold_lease(first.id, "a", 30) and store.hold_lease(second.id, "b", 30)
    _expire(store, first.id)
    _expire(store, second.id)
    assert store.renew_leases("a", 30) == 1
    assert not store.hold_lease(first.id, "b", 30)  # renewed in time: still a's
    assert store.hold_lease(second.id, "a", 30)  # b's ran out
    store.transition(first.id, JobStatus.CANCELLED, "cancelled")
    assert store.renew_leases("a", 30) == 1  # a finished job's lease is not held on to
    assert not store.hold_lease(first.id, "a", 30)


def test_a_submission_is_recorded_once_and_only_by_the_owner(store):
    job = _job(store)
    assert store.hold_lease(job.id, "a", 30)
    assert not store.record_submission(job.id, "b", f"{job.id}-1", 0, 1, "Submitted to Ray")  # not b's job
    assert store.record_submission(job.id, "a", f"{job.id}-1", 0, 1, "Submitted to Ray")
    assert not store.record_submission(job.id, "a", f"{job.id}-1", 0, 1, "Submitted to Ray")  # attempt 1 is taken
    _expire(store, job.id)
    assert store.hold_lease(job.id, "b", 30)
    assert not store.record_submission(job.id, "a", f"{job.id}-2", 1, 2, "Resubmitted")  # a lost the job
    assert store.record_submission(job.id, "b", f"{job.id}-3", 1, 3, "Resubmitted")  # id 2 skipped (stopped)
    record = store.get(job.id)
    assert (record.submission_id, record.attempts) == (f"{job.id}-3", 3)
    assert [e.message for e in store.events(job.id, ("message",))] == ["Submitted to Ray", "Resubmitted"]


def _lines(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _step(step, checkpoint=None, points=10):
    return {"step": step, "loss": 1.0 / step, "points": points, "checkpoint": checkpoint}


def test_a_resumed_runs_repeated_steps_are_folded_once():
    first = _lines(_step(1), _step(2, "ckpt-2"), _step(3), _step(4))
    progress, events = fold(Progress(), first, total_steps=6)
    assert [(e.type, e.data["step"]) for e in events] == [("metrics", 1), ("metrics", 2), ("checkpoint", 2),
                                                          ("metrics", 3), ("metrics", 4)]
    assert progress == Progress(offset=len(first), recorded_step=4, checkpoint_step=2, trained_tokens=40)
    # Killed after step 4; resumed from the checkpoint at step 2, it reports steps 3.. again.
    resumed = _lines(_step(3, points=99), _step(4, "ckpt-4b", points=99), _step(5), _step(6, "ckpt-6"))
    progress, events = fold(progress, resumed, total_steps=6)
    assert [(e.type, e.data["step"]) for e in events] == [("checkpoint", 4), ("metrics", 5), ("metrics", 6),
                                                          ("checkpoint", 6)]
    assert progress.recorded_step == 6 and progress.trained_tokens == 60 and progress.offset == len(first) + len(resumed)


def test_a_line_still_being_written_waits():
    assert complete_lines(b'{"step": 1}\n{"st') == b'{"step": 1}\n'
    assert complete_lines(b'{"st') == b""


def test_progress_is_recorded_once_and_only_by_the_owner(store):
    job = _job(store)
    assert store.hold_lease(job.id, "a", 30)
    chunk = _lines(_step(1), _step(2, "ckpt-2"))
    new, events = fold(store.get(job.id).progress, chunk, 2)
    assert not store.record_progress(job.id, "b", store.get(job.id).progress, new, events)
    assert store.record_progress(job.id, "a", store.get(job.id).progress, new, events)
    # The same lines read again (a stale read) from the old position are refused.
    assert not store.record_progress(job.id, "a", Progress(), new, events)
    record = store.get(job.id)
    assert record.progress == new and record.trained_tokens == 20
    assert [e.data["step"] for e in store.events(job.id, ("metrics",))] == [1, 2]
    assert [e.data["path"] for e in store.events(job.id, ("checkpoint",))] == ["ckpt-2"]


def test_an_older_database_gets_the_new_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = sa.create_engine(url)
    old = sa.MetaData()
    sa.Table("jobs", old, *[sa.Column(c.name, c.type, primary_key=c.primary_key) for c in jobs.columns
                            if c.name not in ("owner", "lease_expires_at", "recorded_step", "checkpoint_step")])
    old.create_all(engine)
    store = JobStore(url)
    job = _job(store)
    assert store.hold_lease(job.id, "a", 30) and store.get(job.id).recorded_step == 0


def test_drivers_run_with_the_servers_interpreter_or_the_clusters(monkeypatch):
    import sys

    from serve_apps.finetuning.manager import driver_launch

    assert driver_launch(Settings(external_cluster=False)) == (sys.executable, None)
    python, runtime_env = driver_launch(Settings(external_cluster=True))
    assert python == "python" and [p.rsplit("/", 1)[-1] for p in runtime_env["py_modules"]] == ["train_jobs", "tsfm_core"]
    assert driver_launch(Settings(external_cluster=True, job_python="/opt/py/bin/python"))[0] == "/opt/py/bin/python"

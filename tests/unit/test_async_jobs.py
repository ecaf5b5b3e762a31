"""The async job store and runner on a real SQLite database, without Ray: claims, heartbeats,
abandonment and retries, timeouts, cancellation, outcomes."""

import asyncio
import time
from types import SimpleNamespace

import pytest

from serve_apps.errors import invalid
from serve_apps.nixtla.async_runner import AsyncJobRunner
from serve_apps.nixtla.async_store import MAX_ATTEMPTS, AsyncJobFinished, AsyncJobStore


@pytest.fixture
def store(tmp_path):
    return AsyncJobStore(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "artifacts")


def test_claims_are_exclusive_and_abandoned_jobs_come_back(store):
    job = store.create("acme", "key", "forecast", {"h": 3}, None)
    assert store.payload(job.id) == {"h": 3}
    assert store.claim(job.id, "a", stale_after_s=10)
    assert not store.claim(job.id, "b", stale_after_s=10)  # running, heartbeat fresh
    assert store.heartbeat(job.id, "a") and not store.heartbeat(job.id, "b")
    assert store.claimable(stale_after_s=10, limit=10) == []
    time.sleep(0.05)
    assert store.claimable(stale_after_s=0.01, limit=10) == [job.id]  # runner "a" went quiet
    assert store.claim(job.id, "b", stale_after_s=0.01)
    assert not store.heartbeat(job.id, "a")  # "a" learns it lost the job
    assert store.succeed(job.id, "b", {"mean": [1.0]})
    record = store.get(job.id, "acme")
    assert record.status == "succeeded" and record.attempts == 2 and store.result(job.id) == {"mean": [1.0]}
    with pytest.raises(AsyncJobFinished):
        store.cancel(job.id, "acme")


def test_a_job_that_keeps_killing_its_runner_is_failed(store):
    job = store.create("acme", "key", "forecast", {}, None)
    for attempt in range(MAX_ATTEMPTS):
        time.sleep(0.02)
        assert store.claim(job.id, f"r{attempt}", stale_after_s=0.01)
    time.sleep(0.02)
    assert store.claimable(stale_after_s=0.01, limit=10) == []
    assert store.fail_exhausted(stale_after_s=0.01) == 1
    assert store.get(job.id).status == "failed"


def _runner(store, execute):
    return AsyncJobRunner(store, SimpleNamespace(run_stored=execute), poll_s=0.05, heartbeat_s=0.05, stale_after_s=5)


async def _until(condition, timeout=10.0):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        await asyncio.sleep(0.05)


def test_runner_records_results_errors_and_timeouts(store):
    async def execute(record, payload):
        if payload["kind"] == "ok":
            return {"echo": payload["x"]}
        if payload["kind"] == "bad":
            raise invalid(["body", "h"], "must be >= 1")
        await asyncio.sleep(30)
        return {}

    ok = store.create("acme", "k", "forecast", {"kind": "ok", "x": 5}, None)
    bad = store.create("acme", "k", "forecast", {"kind": "bad"}, None)
    slow = store.create("acme", "k", "forecast", {"kind": "slow"}, 0.3)

    async def main():
        _runner(store, execute).start()
        await _until(lambda: all(store.get(j.id).status in ("succeeded", "failed") for j in (ok, bad, slow)))
    asyncio.run(main())
    assert store.get(ok.id).status == "succeeded" and store.result(ok.id) == {"echo": 5}
    assert store.get(bad.id).error == {"status": 422, "detail": [{"loc": ["body", "h"], "msg": "must be >= 1",
                                                                  "type": "value_error"}]}
    assert store.get(slow.id).status == "failed" and store.get(slow.id).error["status"] == 408


def test_runner_stops_a_cancelled_job(store):
    seen = {"started": False, "stopped": False}

    async def execute(record, payload):
        seen["started"] = True
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["stopped"] = True
            raise
        return {}

    job = store.create("acme", "k", "forecast", {}, None)

    async def main():
        runner = _runner(store, execute)
        runner.start()
        await _until(lambda: seen["started"])
        store.cancel(job.id, "acme")
        await _until(lambda: seen["stopped"] and not runner.running)
    asyncio.run(main())
    assert seen["stopped"] and store.get(job.id).status == "cancelled"

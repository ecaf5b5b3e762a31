"""Runs stored async jobs inside an ingress replica: claims them from the database, heartbeats
while they run, enforces their timeout, stops when they are cancelled and records the outcome.

Every replica runs one of these; claims are atomic, so each job runs once at a time, and a job
whose runner died is picked up again once its heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Protocol

from pydantic import ValidationError

from serve_apps.errors import ApiError, validation_detail
from serve_apps.nixtla.async_store import AsyncJobRecord, AsyncJobStore

log = logging.getLogger("ray.serve")


class StoredJobExecutor(Protocol):
    async def run_stored(self, record: AsyncJobRecord, payload: dict) -> dict:
        """Validates and runs a job from its stored body, returning the result document."""


def error_document(exc: BaseException) -> dict:
    if isinstance(exc, ApiError):
        return {"status": exc.status, "detail": exc.detail()}
    if isinstance(exc, ValidationError):
        return {"status": 422, "detail": validation_detail(exc, ["body"])}
    return {"status": 500, "detail": [{"loc": [], "msg": f"internal error: {type(exc).__name__}", "type": "internal"}]}


class AsyncJobRunner:
    def __init__(self, store: AsyncJobStore, executor: StoredJobExecutor, max_running: int = 2, poll_s: float = 1.0,
                 heartbeat_s: float = 2.0, stale_after_s: float = 15.0):
        self.store, self.executor = store, executor
        self.max_running, self.poll_s = max_running, poll_s
        self.heartbeat_s, self.stale_after_s = heartbeat_s, stale_after_s
        self.token = f"runner-{uuid.uuid4().hex[:12]}"
        self.running: dict[str, asyncio.Task] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None  # held: the event loop keeps only weak references

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def wake(self) -> None:
        """A job was just submitted here: look for work now rather than at the next poll."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self._claim_some()
            except Exception as exc:  # a database hiccup must not end the loop
                if isinstance(exc, RuntimeError) and "after shutdown" in str(exc):
                    return  # the replica is stopping (its thread pool is gone): claim nothing more
                log.exception("async job runner: claiming failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def _claim_some(self) -> None:
        await asyncio.to_thread(self.store.fail_exhausted, self.stale_after_s)
        free = self.max_running - len(self.running)
        if free <= 0:
            return
        for job_id in await asyncio.to_thread(self.store.claimable, self.stale_after_s, free):
            if job_id in self.running:
                continue
            if await asyncio.to_thread(self.store.claim, job_id, self.token, self.stale_after_s):
                task = asyncio.get_running_loop().create_task(self._supervise(job_id))
                self.running[job_id] = task
                task.add_done_callback(lambda _, j=job_id: self.running.pop(j, None))

    async def _supervise(self, job_id: str) -> None:
        record = await asyncio.to_thread(self.store.get, job_id)
        deadline = time.time() + record.timeout_s if record.timeout_s else None
        work = asyncio.ensure_future(self._work(record))
        while True:
            done, _ = await asyncio.wait({work}, timeout=self.heartbeat_s)
            if done:
                break
            if deadline is not None and time.time() > deadline:
                work.cancel()
                error = {"status": 408, "detail": [{"loc": ["body", "job_options", "timeout_seconds"],
                                                    "msg": f"the job ran longer than {record.timeout_s:g} s",
                                                    "type": "timeout"}]}
                await asyncio.to_thread(self.store.fail, job_id, self.token, error)
                return
            if not await asyncio.to_thread(self.store.heartbeat, job_id, self.token):
                work.cancel()  # cancelled by the client (or, after a stall, taken over by another runner)
                return
        try:
            result = work.result()
        except Exception as exc:
            if not isinstance(exc, (ApiError, ValidationError)):
                log.exception("async job %s failed", job_id)
            await asyncio.to_thread(self.store.fail, job_id, self.token, error_document(exc))
        else:
            await asyncio.to_thread(self.store.succeed, job_id, self.token, result)

    async def _work(self, record: AsyncJobRecord) -> dict:
        payload = await asyncio.to_thread(self.store.payload, record.id)
        return await self.executor.run_stored(record, payload)

"""Per-organization limits: a request rate and a number of concurrent jobs, each answered with a 429
and `Retry-After` so one caller cannot occupy the whole cluster.

Both are off in single-user mode (no API keys) unless set explicitly; with keys they default to
DEFAULT_RATE_PER_MINUTE and DEFAULT_CONCURRENT_JOBS (Settings / TSFM_RATE_LIMIT_PER_MINUTE,
TSFM_MAX_CONCURRENT_JOBS; 0 turns one off). The rate is kept per ingress replica (in memory): with
N replicas an organization gets up to N times the rate, which bounds it all the same. The job count
is read from the database, so it holds across replicas.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from serve_apps.errors import ApiError
from serve_apps.finetuning.store import ACTIVE, jobs
from serve_apps.nixtla.async_store import AsyncJobStatus, async_jobs

DEFAULT_RATE_PER_MINUTE = 600
DEFAULT_CONCURRENT_JOBS = 4


class RateLimited(ApiError):
    """A 429 whose answer carries `Retry-After` (seconds, rounded up)."""

    def __init__(self, loc: list, msg: str, retry_after_s: float):
        super().__init__(429, loc, msg, "rate_limited")
        self.retry_after = max(1, math.ceil(retry_after_s))


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """A token bucket per organization: `per_minute` requests a minute, bursts up to a minute's worth."""

    def __init__(self, per_minute: int, clock=time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def acquire(self, organization: str) -> None:
        """Takes one request from the organization's bucket; raises RateLimited when it is empty."""
        if not self.enabled:
            return
        rate = self.per_minute / 60.0  # tokens per second
        with self._lock:
            now = self.clock()
            b = self._buckets.setdefault(organization, _Bucket(float(self.per_minute), now))
            b.tokens = min(float(self.per_minute), b.tokens + (now - b.updated) * rate)
            b.updated = now
            if b.tokens >= 1:
                b.tokens -= 1
                return
            wait = (1 - b.tokens) / rate
        raise RateLimited(["header", "authorization"],
                          f"rate limit of {self.per_minute} requests per minute exceeded for this organization", wait)


def active_jobs(engine: sa.Engine, organization: str) -> int:
    """The organization's fine-tuning jobs and Nixtla async jobs that are queued or running."""
    active = [s.value for s in ACTIVE]
    waiting = [AsyncJobStatus.PENDING.value, AsyncJobStatus.RUNNING.value]
    with engine.connect() as conn:
        n = conn.execute(sa.select(sa.func.count()).select_from(jobs).where(
            jobs.c.organization == organization, jobs.c.status.in_(active))).scalar_one()
        m = conn.execute(sa.select(sa.func.count()).select_from(async_jobs).where(
            async_jobs.c.organization == organization, async_jobs.c.status.in_(waiting))).scalar_one()
    return int(n) + int(m)


def check_job_quota(engine: sa.Engine, organization: str, limit: int, retry_after_s: float = 30) -> None:
    """Raises RateLimited when the organization already runs `limit` jobs (0: no limit).

    Two submissions racing may both pass; the limit is a guard against hogging, not an exact count.
    """
    if limit <= 0:
        return
    running = active_jobs(engine, organization)
    if running >= limit:
        raise RateLimited(["body"], f"this organization already has {running} active jobs; the limit is {limit}. "
                                    "Wait for one to finish or cancel one", retry_after_s)


def install_limit_handler(app: FastAPI) -> None:
    """A RateLimited raised in a route (the job quota) answers like any ApiError, plus Retry-After."""

    @app.exception_handler(RateLimited)
    async def _limited(_: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(status_code=429, content={"detail": exc.detail()},
                            headers={"Retry-After": str(exc.retry_after)})

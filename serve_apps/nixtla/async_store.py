"""Nixtla async jobs (`POST /v2/{task}/async`): the request body is written to disk (fsynced) and
a row to the database before the job id is returned, so nothing accepted is lost.

Any ingress replica may run a job: it claims it (pending -> running, with its runner token) and
heartbeats while it works. A running job whose heartbeat stopped (its replica or the whole
server died) is claimable again, so it is redone from its stored body after a restart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
import zstandard

from serve_apps.storage.db import Status, Store, metadata, new_id, now


class AsyncJobStatus(Status):
    """pending -> running -> succeeded | failed | cancelled; an abandoned running job is claimable again."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


async_jobs = sa.Table(
    "async_jobs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("organization", sa.String(128), nullable=False, index=True),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("timeout_s", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("runner", sa.String(64), nullable=True),
    sa.Column("heartbeat_at", sa.Float, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)

# A job whose runner died this many times (e.g. it takes its replica down) is failed, not retried.
MAX_ATTEMPTS = 3


class AsyncJobNotFound(LookupError):
    pass


class AsyncJobFinished(RuntimeError):
    pass


@dataclass
class AsyncJobRecord:
    id: str
    organization: str
    created_by: str
    task: str
    status: AsyncJobStatus
    timeout_s: float | None
    error: dict | None
    runner: str | None
    heartbeat_at: float | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row) -> "AsyncJobRecord":
        d = dict(row._mapping)
        d["error"] = json.loads(d["error"]) if d["error"] else None
        d["status"] = AsyncJobStatus(d["status"])
        return cls(**d)


def _write(path: Path, document: dict) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(zstandard.ZstdCompressor(level=3).compress(json.dumps(document).encode()))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def _read(path: Path) -> dict:
    return json.loads(zstandard.ZstdDecompressor().decompress(path.read_bytes()))


class AsyncJobStore(Store[AsyncJobRecord]):
    table = async_jobs
    not_found = AsyncJobNotFound

    def __init__(self, database_url: str, artifact_dir: str | Path):
        super().__init__(database_url)
        self.root = Path(artifact_dir) / "async_jobs"

    def _dir(self, job_id: str) -> Path:
        return self.root / job_id

    def create(self, organization: str, created_by: str, task: str, payload: dict, timeout_s: float | None) -> AsyncJobRecord:
        job_id = new_id("job")
        self._dir(job_id).mkdir(parents=True, exist_ok=True)
        _write(self._dir(job_id) / "request.json.zst", payload)
        row = dict(id=job_id, organization=organization, created_by=created_by, task=task, status=AsyncJobStatus.PENDING,
                   timeout_s=timeout_s, error=None, runner=None, heartbeat_at=None, attempts=0,
                   created_at=now(), started_at=None, finished_at=None)
        with self.engine.begin() as conn:
            conn.execute(async_jobs.insert().values(**{**row, "status": row["status"].value}))
        return AsyncJobRecord(**row)

    def record(self, row) -> AsyncJobRecord:
        return AsyncJobRecord.from_row(row)

    def payload(self, job_id: str) -> dict:
        return _read(self._dir(job_id) / "request.json.zst")

    def result(self, job_id: str) -> dict:
        return _read(self._dir(job_id) / "result.json.zst")

    # ---- running ----------------------------------------------------------------------------------
    def _abandoned(self, stale_after_s: float):
        return sa.and_(async_jobs.c.status == AsyncJobStatus.RUNNING.value, async_jobs.c.heartbeat_at < now() - stale_after_s)

    def _claimable(self, stale_after_s: float):
        return sa.or_(async_jobs.c.status == AsyncJobStatus.PENDING.value,
                      sa.and_(self._abandoned(stale_after_s), async_jobs.c.attempts < MAX_ATTEMPTS))

    def fail_exhausted(self, stale_after_s: float) -> int:
        """Fails abandoned jobs that have used up their attempts; returns how many."""
        error = {"status": 500, "detail": [{"loc": [], "type": "internal",
                                            "msg": f"the job's runner died {MAX_ATTEMPTS} times; not retried"}]}
        with self.engine.begin() as conn:
            return conn.execute(async_jobs.update().where(self._abandoned(stale_after_s),
                                                          async_jobs.c.attempts >= MAX_ATTEMPTS)
                                .values(status=AsyncJobStatus.FAILED.value, finished_at=now(), error=json.dumps(error))).rowcount

    def claimable(self, stale_after_s: float, limit: int) -> list[str]:
        query = (sa.select(async_jobs.c.id).where(self._claimable(stale_after_s))
                 .order_by(async_jobs.c.created_at).limit(limit))
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(query)]

    def claim(self, job_id: str, runner: str, stale_after_s: float) -> bool:
        """Atomically takes a pending (or abandoned) job; False if another runner got it first."""
        t = now()
        with self.engine.begin() as conn:
            return conn.execute(
                async_jobs.update().where(async_jobs.c.id == job_id, self._claimable(stale_after_s))
                .values(status=AsyncJobStatus.RUNNING.value, runner=runner, heartbeat_at=t, started_at=t,
                        attempts=async_jobs.c.attempts + 1)).rowcount == 1

    def _update_own(self, job_id: str, runner: str, **values) -> bool:
        with self.engine.begin() as conn:
            return conn.execute(
                async_jobs.update().where(async_jobs.c.id == job_id, async_jobs.c.runner == runner,
                                          async_jobs.c.status == AsyncJobStatus.RUNNING.value).values(**values)).rowcount == 1

    def heartbeat(self, job_id: str, runner: str) -> bool:
        """False once the job is no longer this runner's to run (cancelled, or taken over)."""
        return self._update_own(job_id, runner, heartbeat_at=now())

    def succeed(self, job_id: str, runner: str, result: dict) -> bool:
        _write(self._dir(job_id) / "result.json.zst", result)
        return self._update_own(job_id, runner, status=AsyncJobStatus.SUCCEEDED.value, finished_at=now())

    def fail(self, job_id: str, runner: str, error: dict) -> bool:
        return self._update_own(job_id, runner, status=AsyncJobStatus.FAILED.value, finished_at=now(), error=json.dumps(error))

    def cancel(self, job_id: str, organization: str) -> AsyncJobRecord:
        with self.engine.begin() as conn:
            done = conn.execute(async_jobs.update().where(
                async_jobs.c.id == job_id, async_jobs.c.organization == organization,
                async_jobs.c.status.in_((AsyncJobStatus.PENDING.value, AsyncJobStatus.RUNNING.value))).values(status=AsyncJobStatus.CANCELLED.value, finished_at=now())).rowcount
        record = self.get(job_id, organization)
        if not done:
            raise AsyncJobFinished(record.status)
        return record

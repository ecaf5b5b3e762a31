"""Fine-tuning jobs and their events, in SQL: the state every dialect's job/model views read."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from serve_apps.storage.db import Status, Store, metadata, new_id, now
from train_jobs.spec import TrainingSpec


class JobStatus(Status):
    """queued -> running -> succeeded | failed | cancelled (validating_files passes synchronously at create)."""

    VALIDATING_FILES = "validating_files"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        return self in ACTIVE


ACTIVE = (JobStatus.VALIDATING_FILES, JobStatus.QUEUED, JobStatus.RUNNING)
_ACTIVE_VALUES = [s.value for s in ACTIVE]

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("organization", sa.String(128), nullable=False, index=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("model", sa.String(128), nullable=False),  # the base model name the client asked for
    sa.Column("base_model_id", sa.String(64), nullable=False),
    sa.Column("model_id", sa.String(64), nullable=False, unique=True),  # the finetuned model it produces
    sa.Column("training_file", sa.String(64), nullable=False),
    sa.Column("validation_file", sa.String(64), nullable=True),
    sa.Column("status", sa.String(32), nullable=False, index=True),
    sa.Column("config", sa.Text, nullable=False),  # the TrainingSpec, as JSON
    sa.Column("request", sa.Text, nullable=False),  # hyperparameters etc. as the client sent them
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("trained_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("submission_id", sa.String(128), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("progress_offset", sa.Integer, nullable=False, default=0),
)

events = sa.Table(
    "job_events", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # message | metrics | status | checkpoint
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data", sa.Text, nullable=True),
)


class JobNotFound(LookupError):
    pass


@dataclass
class JobRecord:
    id: str
    organization: str
    source: str
    model: str
    base_model_id: str
    model_id: str
    training_file: str
    validation_file: str | None
    status: JobStatus
    spec: TrainingSpec
    request: dict
    error: dict | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    trained_tokens: int
    submission_id: str | None
    attempts: int
    progress_offset: int

    @classmethod
    def from_row(cls, row) -> "JobRecord":
        d = dict(row._mapping)
        d["spec"] = TrainingSpec.from_json(d.pop("config"))
        d["request"] = json.loads(d["request"])
        d["error"] = json.loads(d["error"]) if d["error"] else None
        d["status"] = JobStatus(d["status"])
        return cls(**d)


@dataclass
class EventRecord:
    id: str
    job_id: str
    created_at: float
    level: str
    type: str
    message: str
    data: dict | None = field(default=None)
    seq: int = 0


class JobStore(Store[JobRecord]):
    table = jobs
    tables = (events,)
    not_found = JobNotFound

    def record(self, row) -> JobRecord:
        return JobRecord.from_row(row)

    def create(self, *, organization: str, source: str, model: str, base_model_id: str, model_id: str,
               training_file: str, validation_file: str | None, spec: TrainingSpec, request: dict) -> JobRecord:
        job_id = new_id("ftjob")
        row = dict(id=job_id, organization=organization, source=source, model=model, base_model_id=base_model_id,
                   model_id=model_id, training_file=training_file, validation_file=validation_file,
                   status=JobStatus.QUEUED.value, config=spec.to_json(), request=json.dumps(request), error=None,
                   created_at=now(), started_at=None, finished_at=None, trained_tokens=0, submission_id=None,
                   attempts=0, progress_offset=0)
        with self.engine.begin() as conn:
            conn.execute(jobs.insert().values(**row))
            self._event(conn, job_id, "info", "status", "Validated training file; job queued", {"status": JobStatus.QUEUED.value})
        return self.get(job_id)

    def by_model(self, model_id: str) -> JobRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.model_id == model_id)).first()
        return JobRecord.from_row(row) if row else None

    def list(self, organization: str, source: str | None = None) -> list[JobRecord]:
        query = sa.select(jobs).where(jobs.c.organization == organization)
        if source:
            query = query.where(jobs.c.source == source)
        return self.select(query.order_by(jobs.c.created_at.desc(), jobs.c.id))

    def cancelled_since(self, since: float) -> list[JobRecord]:
        return self.select(sa.select(jobs).where(jobs.c.status == JobStatus.CANCELLED.value,
                                                 jobs.c.finished_at >= since, jobs.c.submission_id.is_not(None)))

    def active(self) -> list[JobRecord]:
        return self.select(sa.select(jobs).where(jobs.c.status.in_(_ACTIVE_VALUES)))

    def update(self, job_id: str, **values) -> None:
        for key in ("request", "error"):
            if key in values and values[key] is not None:
                values[key] = json.dumps(values[key])
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**values))

    def transition(self, job_id: str, status: JobStatus, message: str, level: str = "info", **values) -> bool:
        """Moves an active job to `status` (recording an event); False if it already left ACTIVE."""
        if "error" in values and values["error"] is not None:
            values["error"] = json.dumps(values["error"])
        with self.engine.begin() as conn:
            done = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(_ACTIVE_VALUES))
                                .values(status=status.value, **values)).rowcount
            if done:
                self._event(conn, job_id, level, "status", message, {"status": status.value})
        return bool(done)

    def add_event(self, job_id: str, level: str, type_: str, message: str, data: dict | None = None) -> None:
        with self.engine.begin() as conn:
            self._event(conn, job_id, level, type_, message, data)

    @staticmethod
    def _event(conn, job_id: str, level: str, type_: str, message: str, data: dict | None) -> None:
        conn.execute(events.insert().values(id=new_id("ftevent"), job_id=job_id, created_at=now(), level=level,
                                            type=type_, message=message, data=json.dumps(data) if data else None))

    def events(self, job_id: str, types: tuple[str, ...] | None = None) -> list[EventRecord]:
        """Oldest first."""
        query = sa.select(events).where(events.c.job_id == job_id)
        if types:
            query = query.where(events.c.type.in_(types))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(events.c.seq)).all()
        return [EventRecord(**{**r._mapping, "data": json.loads(r.data) if r.data else None}) for r in rows]

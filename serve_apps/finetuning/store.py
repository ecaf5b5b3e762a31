"""Fine-tuning jobs and their events, in SQL: the state every dialect's job/model views read.

Each active job has one owner: the job manager holding its lease (`owner`, `lease_expires_at`).
Several servers may share one database (or one TSFM_HOME); only the lease holder submits, follows
and finishes a job, and another manager takes a job over only once its lease has expired (its
owner died). Leases are taken and renewed by conditional UPDATEs checked by rowcount, which is
atomic on SQLite and PostgreSQL alike; clocks of the servers are assumed to agree to well within
a lease.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import sqlalchemy as sa

from serve_apps.finetuning.progress import NewEvent, Progress
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
    sa.Column("recorded_step", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("checkpoint_step", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("owner", sa.String(128), nullable=True),  # the job manager holding the lease
    sa.Column("lease_expires_at", sa.Float, nullable=True),
    # Step-rate anchor and the finish it predicts (progress.step_rate).
    sa.Column("rate_step", sa.Integer, nullable=False, default=0, server_default="0"),
    sa.Column("rate_time", sa.Float, nullable=True),
    sa.Column("estimated_finish", sa.Float, nullable=True),
    # Set when it succeeds: the ids of its results files (JSON list), its base-vs-finetuned verdict (JSON).
    sa.Column("result_files", sa.Text, nullable=True),
    sa.Column("validation", sa.Text, nullable=True),
    # Bumped by each settings change made before the run was submitted (a Cohere PATCH): a
    # submission is recorded only for the version it was made from.
    sa.Column("spec_version", sa.Integer, nullable=False, default=0, server_default="0"),
)

# The event type of a finished job's base-vs-finetuned verdict (finetuning.verdict). Not "metrics":
# clients read a step and a training loss from every metrics event (OpenAI's, Cohere's step metrics).
VALIDATION_EVENT = "validation"

# Columns held as JSON text.
_JSON_COLUMNS = ("request", "error", "result_files", "validation")

events = sa.Table(
    "job_events", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(64), nullable=False, unique=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("type", sa.String(16), nullable=False),  # message | metrics | status | checkpoint | validation
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
    recorded_step: int = 0
    checkpoint_step: int = 0
    owner: str | None = None
    lease_expires_at: float | None = None
    rate_step: int = 0
    rate_time: float | None = None
    estimated_finish: float | None = None
    result_files: list[str] | None = None
    validation: dict | None = None  # finetuning.verdict.Verdict.to_dict()
    spec_version: int = 0

    @property
    def progress(self) -> Progress:
        return Progress(self.progress_offset, self.recorded_step, self.checkpoint_step, self.trained_tokens,
                        self.rate_step, self.rate_time, self.estimated_finish)

    def leased_to_another(self, owner: str, at: float) -> bool:
        """Whether another manager held a live lease on this job when the row was read."""
        return self.owner not in (None, owner) and (self.lease_expires_at or 0) >= at

    @classmethod
    def from_row(cls, row) -> "JobRecord":
        d = dict(row._mapping)
        d["spec"] = TrainingSpec.from_json(d.pop("config"))
        for key in _JSON_COLUMNS:
            d[key] = json.loads(d[key]) if d.get(key) else None
        d["request"] = d["request"] or {}
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

    def __init__(self, database_url: str):
        super().__init__(database_url)
        _add_missing_columns(self.engine, jobs)

    def record(self, row) -> JobRecord:
        return JobRecord.from_row(row)

    def create(self, *, organization: str, source: str, model: str, base_model_id: str, model_id: str,
               training_file: str, validation_file: str | None, spec: TrainingSpec, request: dict) -> JobRecord:
        job_id = new_id("ftjob")
        row = dict(id=job_id, organization=organization, source=source, model=model, base_model_id=base_model_id,
                   model_id=model_id, training_file=training_file, validation_file=validation_file,
                   status=JobStatus.QUEUED.value, config=spec.to_json(), request=json.dumps(request), error=None,
                   created_at=now(), started_at=None, finished_at=None, trained_tokens=0, submission_id=None,
                   attempts=0, progress_offset=0, spec_version=0)
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
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.id == job_id).values(**_encoded(values)))

    def transition(self, job_id: str, status: JobStatus, message: str, level: str = "info",
                   events_before: list[NewEvent] | None = None, **values) -> bool:
        """Moves an active job to `status` (recording an event, after `events_before`, in the same
        transaction); False if it already left ACTIVE."""
        with self.engine.begin() as conn:
            done = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.status.in_(_ACTIVE_VALUES))
                                .values(status=status.value, **_encoded(values))).rowcount
            if done:
                for e in events_before or []:
                    self._event(conn, job_id, e.level, e.type, e.message, e.data)
                self._event(conn, job_id, level, "status", message, {"status": status.value})
        return bool(done)

    # ---- ownership ------------------------------------------------------------------------------
    def hold_lease(self, job_id: str, owner: str, lease_s: float) -> bool:
        """Takes or renews the lease on an active job: True if `owner` holds it now (it was free, its
        own, or its holder's lease had expired), False while another owner's lease is live."""
        t = now()
        c = jobs.c
        with self.engine.begin() as conn:
            return conn.execute(jobs.update().where(
                c.id == job_id, c.status.in_(_ACTIVE_VALUES),
                sa.or_(c.owner.is_(None), c.owner == owner, c.lease_expires_at < t))
                .values(owner=owner, lease_expires_at=t + lease_s)).rowcount == 1

    def renew_leases(self, owner: str, lease_s: float) -> int:
        """Heartbeat: extends every lease `owner` still holds; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(jobs.update().where(jobs.c.owner == owner, jobs.c.status.in_(_ACTIVE_VALUES))
                                .values(lease_expires_at=now() + lease_s)).rowcount

    def record_submission(self, job_id: str, owner: str, submission_id: str, previous_attempt: int, attempt: int,
                          message: str, spec_version: int | None = None) -> bool:
        """Records the Ray submission of `attempt` if `owner` still holds the job and no other
        submission was recorded since `previous_attempt` (and, given `spec_version`, the settings
        were not changed since the run was made from them); False otherwise (the caller's run is
        then surplus and must be stopped)."""
        c = jobs.c
        same_spec = c.spec_version == spec_version if spec_version is not None else sa.true()
        with self.engine.begin() as conn:
            done = conn.execute(jobs.update().where(c.id == job_id, c.owner == owner, c.attempts == previous_attempt,
                                                    c.status.in_(_ACTIVE_VALUES), same_spec)
                                .values(submission_id=submission_id, attempts=attempt)).rowcount == 1
            if done:
                self._event(conn, job_id, "info", "message", message, {"submission_id": submission_id})
        return done

    def respec_queued(self, job_id: str, spec_version: int, *, spec: TrainingSpec, model: str, base_model_id: str,
                      training_file: str, request: dict, message: str) -> bool:
        """Replaces the settings of a job that is queued and not yet submitted to Ray (still at
        `spec_version`), with an event; False once a run was submitted (its settings are then fixed).
        A submission being made from the old settings at this moment is not recorded (see
        record_submission), so the job manager submits again from these."""
        c = jobs.c
        with self.engine.begin() as conn:
            done = conn.execute(jobs.update().where(
                c.id == job_id, c.status == JobStatus.QUEUED.value, c.submission_id.is_(None),
                c.spec_version == spec_version)
                .values(config=spec.to_json(), model=model, base_model_id=base_model_id, training_file=training_file,
                        request=json.dumps(request), spec_version=spec_version + 1)).rowcount == 1
            if done:
                self._event(conn, job_id, "info", "message", message, {"spec_version": spec_version + 1})
        return done

    def record_progress(self, job_id: str, owner: str, read_from: Progress, read_to: Progress,
                        new_events: list[NewEvent]) -> bool:
        """Moves the job's progress from `read_from` to `read_to` and adds `new_events`, in one
        transaction and only if `owner` holds the job and nobody recorded from `read_from` first:
        a step's events are added once even if two managers ever read the same lines."""
        c = jobs.c
        with self.engine.begin() as conn:
            done = conn.execute(jobs.update().where(
                c.id == job_id, c.owner == owner, c.progress_offset == read_from.offset,
                c.recorded_step == read_from.recorded_step, c.checkpoint_step == read_from.checkpoint_step)
                .values(progress_offset=read_to.offset, recorded_step=read_to.recorded_step,
                        checkpoint_step=read_to.checkpoint_step, trained_tokens=read_to.trained_tokens,
                        rate_step=read_to.rate_step, rate_time=read_to.rate_time,
                        estimated_finish=read_to.estimated_finish)).rowcount == 1
            if done:
                for e in new_events:
                    self._event(conn, job_id, e.level, e.type, e.message, e.data)
        return done

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


def _encoded(values: dict) -> dict:
    """`values` with the JSON columns' values as JSON text (None stays NULL)."""
    return {k: json.dumps(v) if k in _JSON_COLUMNS and v is not None else v for k, v in values.items()}


def _add_missing_columns(engine: sa.Engine, table: sa.Table) -> None:
    """Adds columns a database created by an older version lacks (create_all only creates tables):
    each new column is nullable or has a server default, so ADD COLUMN works on SQLite and PostgreSQL.
    Two servers starting at once may race to add the same column: the loser finds it present."""
    def present() -> set[str]:
        return {col["name"] for col in sa.inspect(engine).get_columns(table.name)}

    for col in [col for col in table.columns if col.name not in present()]:
        ddl = sa.schema.CreateColumn(col).compile(dialect=engine.dialect)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")
        except sa.exc.DBAPIError:
            if col.name not in present():
                raise

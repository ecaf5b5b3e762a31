"""One SQL database for every store (models, files, fine-tuning jobs, Nixtla async jobs): SQLite by
default, any SQLAlchemy URL (PostgreSQL in production).

The shared store pattern lives here: a store names its tables, its record type and its not-found
error; `Store` creates the tables on first use and answers `get(id, organization)`, where another
organization's row is reported exactly like a missing one. This module imports no store.
"""

from __future__ import annotations

import time
import uuid
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import sqlalchemy as sa

metadata = sa.MetaData()
_engines: dict[str, sa.Engine] = {}


def connect(url: str) -> sa.Engine:
    """A process-wide engine per URL."""
    if url in _engines:
        return _engines[url]
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        # WAL lets the ingress, the job manager and every ModelServer replica read while one writes.
        with engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        sa.event.listen(engine, "connect", lambda c, _: c.execute("PRAGMA busy_timeout=10000"))
    _engines[url] = engine
    return engine


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> float:
    return time.time()


class Status(str, Enum):
    """Base of every lifecycle's status enum: compares equal to its wire string, stored as it."""

    def __str__(self) -> str:
        return self.value

    def __hash__(self) -> int:  # Enum hashes the name; equal to its value, it must hash like it too
        return str.__hash__(self)


R = TypeVar("R")


class Store(Generic[R]):
    """A SQL store of one kind of record, each row owned by an organization."""

    table: ClassVar[sa.Table]
    tables: ClassVar[tuple[sa.Table, ...]] = ()  # further tables the store owns (e.g. events)
    not_found: ClassVar[type[LookupError]]
    soft_deleted: ClassVar[bool] = False  # rows with deleted_at set are gone for `get`

    def __init__(self, database_url: str):
        self.engine = connect(database_url)
        metadata.create_all(self.engine, tables=[self.table, *self.tables])

    def record(self, row: Any) -> R:
        raise NotImplementedError

    def get(self, record_id: str, organization: str | None = None) -> R:
        """The record; `organization` (when given) must own it, else it is reported as missing."""
        c = self.table.c
        query = sa.select(self.table).where(c.id == record_id)
        if organization is not None:
            query = query.where(c.organization == organization)
        if self.soft_deleted:
            query = query.where(c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise self.not_found(record_id)
        return self.record(row)

    def select(self, query: sa.Select) -> list[R]:
        with self.engine.connect() as conn:
            return [self.record(r) for r in conn.execute(query)]

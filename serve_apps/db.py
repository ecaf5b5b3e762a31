"""One SQL database for every store (models, files, jobs): SQLite by default, any SQLAlchemy URL."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import sqlalchemy as sa

metadata = sa.MetaData()
_engines: dict[str, sa.Engine] = {}


def connect(url: str) -> sa.Engine:
    """A process-wide engine per URL, with every table created."""
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
    from serve_apps import async_jobs, files, job_store, registry  # noqa: F401  (register their tables)

    metadata.create_all(engine)
    _engines[url] = engine
    return engine


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> float:
    return time.time()

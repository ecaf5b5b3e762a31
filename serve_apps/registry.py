"""The model registry: SQL metadata (SQLite by default, any SQLAlchemy URL such as PostgreSQL)
plus an artifact directory holding each finetuned model's checkpoint.

One id space for every dialect: a model created through Nixtla, OpenAI- or Cohere-style calls is a
row here, and every forecast route resolves ids through it. Deletion is soft in metadata
and frees the artifacts.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from serve_apps.catalog import CATALOG
from serve_apps.db import connect, metadata, new_id

models = sa.Table(
    "models", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("organization", sa.String(128), nullable=False, index=True),
    sa.Column("base_model_id", sa.String(64), nullable=False),
    sa.Column("artifact_path", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("deleted_at", sa.Float, nullable=True),
    sa.Column("freq", sa.String(32), nullable=True),
    sa.Column("steps", sa.Integer, nullable=False, default=0),
    sa.Column("depth", sa.Integer, nullable=False, default=1),
    sa.Column("loss", sa.String(16), nullable=False, default="default"),
    sa.Column("finetune_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("params", sa.Text, nullable=False, default="{}"),
)


class ModelNotFound(LookupError):
    pass


@dataclass
class ModelRecord:
    id: str
    organization: str
    base_model_id: str
    artifact_path: str
    status: str
    source: str
    created_by: str
    created_at: float
    updated_at: float
    deleted_at: float | None
    freq: str | None
    steps: int
    depth: int
    loss: str
    finetune_tokens: int
    params: dict

    @classmethod
    def from_row(cls, row) -> "ModelRecord":
        d = dict(row._mapping)
        d["params"] = json.loads(d["params"] or "{}")
        return cls(**d)


def new_model_id() -> str:
    return new_id("ft")


class Registry:
    def __init__(self, database_url: str, artifact_dir: str | Path):
        self.engine = connect(database_url)
        self.artifact_dir = Path(artifact_dir)
        self.artifact_dir.mkdir(parents=True, exist_ok=True)

    # ---- finetuned models ----------------------------------------------------------------------
    def artifact_path_for(self, model_id: str) -> Path:
        return self.artifact_dir / "models" / model_id

    def exists(self, model_id: str) -> bool:
        """True if the id is taken by any model, deleted ones included (ids are never reused)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(models.c.id).where(models.c.id == model_id)).first() is not None

    def add(self, *, model_id: str, organization: str, base_model_id: str, source: str, created_by: str,
            freq: str | None, steps: int, depth: int, loss: str, finetune_tokens: int, params: dict,
            status: str = "ready") -> ModelRecord:
        now = time.time()
        row = dict(id=model_id, organization=organization, base_model_id=base_model_id,
                   artifact_path=str(self.artifact_path_for(model_id)), status=status, source=source,
                   created_by=created_by, created_at=now, updated_at=now, deleted_at=None, freq=freq,
                   steps=steps, depth=depth, loss=loss, finetune_tokens=finetune_tokens, params=json.dumps(params))
        with self.engine.begin() as conn:
            conn.execute(models.insert().values(**row))
        return self.get(model_id, organization)

    def get(self, model_id: str, organization: str | None = None) -> ModelRecord:
        """A live model; another organization's model is reported exactly like a missing one."""
        query = sa.select(models).where(models.c.id == model_id, models.c.deleted_at.is_(None))
        if organization is not None:
            query = query.where(models.c.organization == organization)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise ModelNotFound(model_id)
        return ModelRecord.from_row(row)

    def list(self, organization: str) -> list[ModelRecord]:
        query = (sa.select(models).where(models.c.organization == organization, models.c.deleted_at.is_(None))
                 .order_by(models.c.created_at))
        with self.engine.connect() as conn:
            return [ModelRecord.from_row(r) for r in conn.execute(query)]

    def set_status(self, model_id: str, status: str, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(models.update().where(models.c.id == model_id)
                         .values(status=status, updated_at=time.time(), **values))

    def update_params(self, model_id: str, changes: dict) -> None:
        record = self.get(model_id)
        with self.engine.begin() as conn:
            conn.execute(models.update().where(models.c.id == model_id)
                         .values(params=json.dumps({**record.params, **changes}), updated_at=time.time()))

    def discard(self, model_id: str) -> None:
        """Removes a model whose creation failed (row and artifacts), so its id can be used again."""
        with self.engine.begin() as conn:
            conn.execute(models.delete().where(models.c.id == model_id))
        shutil.rmtree(self.artifact_path_for(model_id), ignore_errors=True)

    def delete(self, model_id: str, organization: str) -> None:
        record = self.get(model_id, organization)
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(models.update().where(models.c.id == model_id)
                         .values(deleted_at=now, updated_at=now, status="deleted"))
        shutil.rmtree(record.artifact_path, ignore_errors=True)

    def model_dir(self, model_id: str) -> Path:
        """Where a model's weights live: the bundled directory for base models, else its artifacts."""
        entry = CATALOG.lookup(model_id)
        if entry is not None:
            return entry.path
        return Path(self.get(model_id).artifact_path)


"""The model registry: finetuned models' SQL metadata plus an artifact directory holding each
one's checkpoint.

One id space for every dialect: a model created through Nixtla, OpenAI- or Cohere-style calls is a
row here (names are resolved by models.resolver). Deletion is soft in metadata and frees the
artifacts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from serve_apps.models.ft_names import fine_tuned_model_name, model_id_of
from serve_apps.storage.db import Status, Store, metadata, new_id

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


class ModelStatus(Status):
    """A finetuned model's life: queued -> finetuning -> ready | rejected | failed | cancelled; deleted (soft).

    `rejected`: trained, but worse than its base on validation while the operator refuses to
    promote such models (TSFM_REFUSE_WORSE_FINETUNES); it is kept for inspection, never served."""

    QUEUED = "queued"
    FINETUNING = "finetuning"
    READY = "ready"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DELETED = "deleted"


class ModelNotFound(LookupError):
    pass


@dataclass
class ModelRecord:
    id: str
    organization: str
    base_model_id: str
    artifact_path: str
    status: ModelStatus
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

    @property
    def public_id(self) -> str:
        """The id its organization knows it by (a client-chosen id is stored scoped: scoped_id)."""
        return public_id(self.id)

    @property
    def public_base_model_id(self) -> str:
        return public_id(self.base_model_id)

    @property
    def fine_tuned_model(self) -> str:
        """Its OpenAI-style name (models.ft_names), with the suffix its job was created with."""
        return fine_tuned_model_name(self.public_base_model_id, self.organization, self.params.get("suffix"),
                                     self.public_id)

    @property
    def name(self) -> str:
        """What its dialect calls it: the `ft:...` name for OpenAI-style jobs' models, else its id."""
        return self.fine_tuned_model if self.source == "openai" else self.public_id

    @classmethod
    def from_row(cls, row) -> "ModelRecord":
        d = dict(row._mapping)
        d["params"] = json.loads(d["params"] or "{}")
        d["status"] = ModelStatus(d["status"])
        return cls(**d)


def new_model_id() -> str:
    return new_id("ft")


# Public model ids (Nixtla's pattern, server-made `ft-...`) never contain it, so a scoped id cannot
# equal a public one.
SCOPE_SEPARATOR = "."


def public_id(stored_id: str) -> str:
    """A stored id as clients see it (the scope removed; base-model and server-made ids unchanged)."""
    return stored_id.partition(SCOPE_SEPARATOR)[0]


def scoped_id(model_id: str, organization: str) -> str:
    """The stored id of a client-chosen model id: unique per organization, so two organizations can
    use the same name and neither can find out (by an "already exists") what the other has used."""
    tag = hashlib.sha256(organization.encode()).hexdigest()[:12]
    return f"{model_id}{SCOPE_SEPARATOR}{tag}"


class Registry(Store[ModelRecord]):
    table = models
    not_found = ModelNotFound
    soft_deleted = True

    def __init__(self, database_url: str, artifact_dir: str | Path):
        super().__init__(database_url)
        self.artifact_dir = Path(artifact_dir)
        self.artifact_dir.mkdir(parents=True, exist_ok=True)

    # ---- finetuned models ----------------------------------------------------------------------
    def artifact_path_for(self, model_id: str) -> Path:
        return self.artifact_dir / "models" / model_id

    def _named(self, model_id: str, organization: str):
        """The condition for the organization's model called `model_id` (as made by the server or scoped)."""
        return sa.and_(models.c.organization == organization,
                       models.c.id.in_([model_id, scoped_id(model_id, organization)]))

    def exists(self, model_id: str, organization: str | None = None) -> bool:
        """True if the id is taken, deleted models included (ids are never reused): by the organization's
        own models when it is given (another's are invisible), else by any model."""
        cond = models.c.id == model_id if organization is None else self._named(model_id, organization)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(models.c.id).where(cond)).first() is not None

    def get(self, record_id: str, organization: str | None = None) -> ModelRecord:
        """By stored id; with `organization`, by the name that organization uses (public or stored)."""
        if organization is None:
            return super().get(record_id)
        named_id = model_id_of(record_id)  # an `ft:...` name: found by its id, then checked whole
        lookup = named_id or record_id
        query = sa.select(models).where(self._named(lookup, organization) | sa.and_(
            models.c.id == lookup, models.c.organization == organization), models.c.deleted_at.is_(None))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise ModelNotFound(record_id)
        record = self.record(row)
        if named_id is not None and record.fine_tuned_model != record_id:
            raise ModelNotFound(record_id)
        return record

    def add(self, *, model_id: str, organization: str, base_model_id: str, source: str, created_by: str,
            freq: str | None, steps: int, depth: int, loss: str, finetune_tokens: int, params: dict,
            status: ModelStatus = ModelStatus.READY) -> ModelRecord:
        now = time.time()
        row = dict(id=model_id, organization=organization, base_model_id=base_model_id,
                   artifact_path=str(self.artifact_path_for(model_id)), status=status.value, source=source,
                   created_by=created_by, created_at=now, updated_at=now, deleted_at=None, freq=freq,
                   steps=steps, depth=depth, loss=loss, finetune_tokens=finetune_tokens, params=json.dumps(params))
        with self.engine.begin() as conn:
            conn.execute(models.insert().values(**row))
        return self.get(model_id, organization)

    def record(self, row) -> ModelRecord:
        return ModelRecord.from_row(row)

    def list(self, organization: str) -> list[ModelRecord]:
        query = (sa.select(models).where(models.c.organization == organization, models.c.deleted_at.is_(None))
                 .order_by(models.c.created_at))
        return self.select(query)

    def children(self, model_id: str) -> list[ModelRecord]:
        """Live models finetuned on top of `model_id`: they load its weights, so it must outlive them."""
        return self.select(sa.select(models).where(models.c.base_model_id == model_id, models.c.deleted_at.is_(None)))

    def set_status(self, model_id: str, status: ModelStatus, **values) -> None:
        with self.engine.begin() as conn:
            conn.execute(models.update().where(models.c.id == model_id)
                         .values(status=status.value, updated_at=time.time(), **values))

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
            conn.execute(models.update().where(models.c.id == record.id)
                         .values(deleted_at=now, updated_at=now, status=ModelStatus.DELETED.value))
        shutil.rmtree(record.artifact_path, ignore_errors=True)

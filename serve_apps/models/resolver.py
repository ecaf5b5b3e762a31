"""The one place that maps a client-facing model name to what serves it and where its weights are.

A name is a catalog id or alias (`tsfm-base`, `timegpt-1`, ...) or a finetuned model's registry id.
Every route, the fine-tuning service, the Nixtla tasks and the ModelServer ask here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from serve_apps.errors import ApiError, invalid, not_found
from serve_apps.models.catalog import CATALOG, Catalog
from serve_apps.models.registry import (
    ModelNotFound,
    ModelRecord,
    ModelStatus,
    Registry,
    scoped_id,
)


@dataclass(frozen=True)
class ResolvedModel:
    id: str  # what the ModelServer multiplexes on: a catalog id or a registry id
    kind: str  # "base" | "finetuned"
    directory: Path  # the model directory (config.json + weights)


class ModelResolver:
    # How long a ready finetuned model is served from memory before the registry is asked again: the
    # forecast path runs no database query per request, and a delete elsewhere is seen within this.
    READY_TTL_S = 2.0

    def __init__(self, registry: Registry, catalog: Catalog = CATALOG):
        self.registry, self.catalog = registry, catalog
        self._ready: dict[tuple[str, str], tuple[float, ResolvedModel]] = {}

    def resolve(self, name: str, organization: str, loc: list) -> ResolvedModel:
        """A name the caller may forecast or train with: a base model, or one of its ready models."""
        entry = self.catalog.lookup(name)
        if entry is not None:
            return ResolvedModel(entry.id, "base", entry.path)
        cached = self._ready.get((organization, name))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        record = self.own_model(name, organization, loc)
        if record.status == ModelStatus.REJECTED:
            # Trained, but not promoted (finetuning.verdict): say why rather than just "not ready".
            reason = (record.params.get("validation") or {}).get("message", "it is worse than its base on validation")
            raise ApiError(409, loc, f"model {name!r} was not promoted by this server: {reason}", "model_rejected")
        if record.status != ModelStatus.READY:
            raise ApiError(409, loc, f"model {name!r} is not ready (status {record.status})", "not_ready")
        resolved = ResolvedModel(record.id, "finetuned", Path(record.artifact_path))
        self._ready[(organization, name)] = (time.monotonic() + self.READY_TTL_S, resolved)
        return resolved

    def forget(self, model_id: str) -> None:
        """Drops a model from the ready cache (this replica deleted it)."""
        self._ready = {key: value for key, value in self._ready.items() if key[1] != model_id}

    def own_model(self, model_id: str, organization: str, loc: list) -> ModelRecord:
        """The caller's finetuned model (any status); another organization's is reported as missing."""
        try:
            return self.registry.get(model_id, organization)
        except ModelNotFound:
            raise not_found(loc, f"model {model_id!r}") from None

    def check_new_id(self, model_id: str, organization: str, loc: list) -> str:
        """A client-chosen id for a new model must name neither a base model nor one of the caller's
        models (deleted ones included); returns the id to store it under (registry.scoped_id).

        Another organization's models are not consulted: ids are scoped per organization, so the
        answer cannot reveal which names others use.
        """
        if self.catalog.lookup(model_id) is not None:
            raise invalid(loc, f"{model_id!r} is the name of a base model")
        if self.registry.exists(model_id, organization):
            raise invalid(loc, f"a model with id {model_id!r} already exists")
        return scoped_id(model_id, organization)

    def model_dir(self, model_id: str) -> Path:
        """Where a resolved id's weights live (no ownership check: ids reach here resolved)."""
        entry = self.catalog.lookup(model_id)
        if entry is not None:
            return entry.path
        return Path(self.registry.get(model_id).artifact_path)

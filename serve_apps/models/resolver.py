"""The one place that maps a client-facing model name to what serves it and where its weights are.

A name is a catalog id or alias (`tsfm-base`, `timegpt-1`, `statsforecast/auto_ets`, `auto`,
`amazon/chronos-bolt-small`, ...) or a finetuned model's registry id. Every route, the fine-tuning
service, the Nixtla tasks and the ModelServer ask here.

Catalog names resolve the same way for the server's life, so their answers are computed once
(`_fixed`): the forecast hot path is one dict lookup for them. A third-party name is served by its
own weights when a loadable checkpoint of its family is in the third-party directory at start-up
(and the family's official package is installed), else by tsfm-base or rejected
(`third_party_aliases`); `served_model` and the catalog card (`card`) say which.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from serve_apps.errors import ApiError, invalid, not_found
from serve_apps.models.catalog import (
    CATALOG,
    ENSEMBLE,
    STATISTICAL,
    THIRD_PARTY,
    TRANSFORMER,
    Catalog,
    ModelEntry,
    card,
    third_party_weights,
)
from serve_apps.models.registry import (
    ModelNotFound,
    ModelRecord,
    ModelStatus,
    Registry,
    scoped_id,
)
from serve_apps.models import third_party
from tsfm_core.checkpoint import BASE_MODEL_ID

log = logging.getLogger("ray.serve")
# ResolvedModel.kind of each catalog kind ("base" is what callers have always seen for the transformer).
_KINDS = {TRANSFORMER: "base", STATISTICAL: STATISTICAL, ENSEMBLE: ENSEMBLE, THIRD_PARTY: THIRD_PARTY}


@dataclass(frozen=True)
class ResolvedModel:
    id: str  # what the ModelServer multiplexes on: a catalog id or a registry id
    kind: str  # "base" (the transformer) | "finetuned" | "statistical" | "ensemble" | "third_party"
    directory: Path | None  # the model directory (config.json + weights); None for statistical / ensemble


class ModelResolver:
    # How long a ready finetuned model is served from memory before the registry is asked again: the
    # forecast path runs no database query per request, and a delete elsewhere is seen within this.
    READY_TTL_S = 2.0

    def __init__(self, registry: Registry, catalog: Catalog = CATALOG, third_party_aliases: str = "base",
                 third_party_dir: str | Path | None = None):
        self.registry, self.catalog = registry, catalog
        self.third_party_aliases = third_party_aliases
        self._ready: dict[tuple[str, str], tuple[float, ResolvedModel]] = {}
        # Third-party catalog id -> its installed checkpoint's card figures (read once, from file headers).
        self._weights: dict[str, dict] = {}
        # Catalog id -> what answers it (None: rejected), by every name (lower case) of the entry.
        fixed = {e.id: self._answer(e, third_party_dir) for e in catalog.entries.values()}
        self._fixed = {name: fixed[e.id] for name, e in catalog.by_name.items()}

    def _answer(self, entry: ModelEntry, third_party_dir) -> ResolvedModel | None:
        if entry.kind != THIRD_PARTY:
            return ResolvedModel(entry.id, _KINDS[entry.kind], entry.path)
        weights = third_party_weights(entry, third_party_dir)
        if weights is not None:
            fields = third_party.card_fields(weights)
            if fields["loadable"]:
                self._weights[entry.id] = fields
                return ResolvedModel(entry.id, THIRD_PARTY, weights)
            log.warning("weights for %s are in %s but its package (%s) is not installed", entry.id, weights,
                        fields["package"])
        if self.third_party_aliases == "base":
            base = self.catalog.entries[BASE_MODEL_ID]
            return ResolvedModel(base.id, "base", base.path)
        return None

    def served_by(self, entry: ModelEntry) -> str | None:
        """The id of the model that answers a catalog entry on this server (None: its name is rejected)."""
        answer = self._fixed[entry.id.lower()]
        return None if answer is None else answer.id

    def card(self, entry: ModelEntry, max_horizon: int) -> dict:
        """The entry's catalog card (models.catalog.card) as this server answers its name."""
        served = self.served_by(entry)
        return card(entry, served, served is not None, max_horizon, self._weights.get(entry.id))

    def resolve(self, name: str, organization: str, loc: list) -> ResolvedModel:
        """A name the caller may forecast with: a catalog model, or one of its ready models."""
        fixed = self._fixed.get(name.lower(), False)
        if fixed is None:
            raise not_found(loc, f"model {name!r} (its weights are not installed on this server and "
                                 "TSFM_THIRD_PARTY_ALIASES=reject)")
        if fixed is not False:
            return fixed
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

    def resolve_trainable(self, name: str, organization: str, loc: list) -> ResolvedModel:
        """`resolve`, for a model to finetune: statistical models and `auto` have no weights to tune (422)."""
        resolved = self.resolve(name, organization, loc)
        if resolved.directory is None:
            raise invalid(loc, f"model {name!r} is a {resolved.kind} model and cannot be finetuned")
        # Jobs run train_jobs.finetune (Ray Train over our PatchTransformer); a third-party checkpoint (or a
        # finetune of one) trains in the replica instead: Nixtla's /v2/finetune or finetune_steps.
        if resolved.kind == THIRD_PARTY or third_party.detect_family(resolved.directory) is not None:
            raise invalid(loc, f"model {name!r} is served from a third-party checkpoint: fine-tuning jobs train "
                               f"tsfm-base and its finetunes only; finetune {name!r} with /v2/finetune or "
                               "finetune_steps instead")
        return resolved

    def model_dir(self, model_id: str) -> Path:
        """Where a resolved id's weights live (no ownership check: ids reach here resolved)."""
        fixed = self._fixed.get(model_id.lower(), False)
        if fixed is not False:
            if fixed is None or fixed.directory is None:
                raise ValueError(f"model {model_id!r} has no checkpoint directory on this server")
            return fixed.directory
        return Path(self.registry.get(model_id).artifact_path)

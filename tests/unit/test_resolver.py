"""The one model-name resolver: catalog aliases, registry ids, readiness, ownership, new ids."""

import pytest

from serve_apps.errors import ApiError
from serve_apps.models.catalog import CATALOG
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.models.resolver import ModelResolver
from tsfm_core.checkpoint import BASE_MODEL_DIR


@pytest.fixture
def resolver(tmp_path):
    registry = Registry(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path / "artifacts")
    for model_id, status in (("ft-ready", ModelStatus.READY), ("ft-busy", ModelStatus.FINETUNING)):
        registry.add(model_id=model_id, organization="acme", base_model_id="tsfm-base", source="nixtla",
                     created_by="k", freq=None, steps=1, depth=1, loss="default", finetune_tokens=0, params={},
                     status=status)
    return ModelResolver(registry)


@pytest.mark.parametrize("alias", ["tsfm-base", "timegpt-1", "TimeGPT-1-long-horizon", "amazon/chronos-bolt-small"])
def test_catalog_names_resolve_to_the_bundled_model_for_everyone(resolver, alias):
    resolved = resolver.resolve(alias, "anyone", ["body", "model"])
    assert (resolved.id, resolved.kind, resolved.directory) == ("tsfm-base", "base", BASE_MODEL_DIR)


def test_finetuned_ids_resolve_only_for_their_organization_and_when_ready(resolver):
    resolved = resolver.resolve("ft-ready", "acme", ["body", "model"])
    assert resolved.kind == "finetuned" and resolved.directory.name == "ft-ready"
    with pytest.raises(ApiError) as missing:
        resolver.resolve("ft-ready", "globex", ["body", "model"])
    assert missing.value.status == 404 and missing.value.loc == ["body", "model"]
    with pytest.raises(ApiError) as busy:
        resolver.resolve("ft-busy", "acme", ["body", "finetuned_model_id"])
    assert busy.value.status == 409 and "finetuning" in busy.value.msg


def test_new_ids_must_not_shadow_base_or_the_callers_models(resolver):
    resolver.check_new_id("my-model", "acme", ["body", "output_model_id"])
    for taken in (next(iter(CATALOG.entries)), "timegpt-1", "ft-ready"):
        with pytest.raises(ApiError) as err:
            resolver.check_new_id(taken, "acme", ["body", "output_model_id"])
        assert err.value.status == 422 and err.value.loc == ["body", "output_model_id"]


def test_another_organizations_ids_are_invisible_and_reusable(resolver):
    """globex may use acme's id (live or deleted): nothing tells it the id is taken elsewhere."""
    registry = resolver.registry
    registry.delete("ft-busy", "acme")
    for name in ("ft-ready", "ft-busy"):
        stored = resolver.check_new_id(name, "globex", ["body", "output_model_id"])
        registry.add(model_id=stored, organization="globex", base_model_id="tsfm-base", source="nixtla",
                     created_by="x", freq=None, steps=1, depth=1, loss="default", finetune_tokens=0, params={})
        mine = registry.get(name, "globex")
        assert mine.public_id == name and mine.organization == "globex" and mine.id != name
    assert registry.get("ft-ready", "acme").organization == "acme"  # acme's own model is untouched
    assert [r.public_id for r in registry.list("globex")] == ["ft-ready", "ft-busy"]
    with pytest.raises(ApiError):  # and now globex's own name is taken, for globex only
        resolver.check_new_id("ft-ready", "globex", ["body", "output_model_id"])


def test_model_dir_for_resolved_ids(resolver):
    assert resolver.model_dir("tsfm-base") == BASE_MODEL_DIR
    assert resolver.model_dir("ft-ready").name == "ft-ready"


def test_ready_models_are_cached_briefly(resolver):
    first = resolver.resolve("ft-ready", "acme", ["body", "model"])
    resolver.registry.delete("ft-ready", "acme")
    assert resolver.resolve("ft-ready", "acme", ["body", "model"]) == first  # within the TTL: no query
    resolver.forget("ft-ready")  # what a delete through this replica does
    with pytest.raises(ApiError) as gone:
        resolver.resolve("ft-ready", "acme", ["body", "model"])
    assert gone.value.status == 404

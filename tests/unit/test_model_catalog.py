"""The served catalog (serve_apps.models.catalog): honest entries, how names resolve (statistical,
`auto`, third-party names under both alias settings, local weights), and ensemble request checks."""

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from serve_apps.dialects import tsfm_ensemble
from serve_apps.errors import ApiError
from serve_apps.models.catalog import (
    CATALOG,
    STATISTICAL,
    THIRD_PARTY,
    card,
    count_parameters,
    third_party_weights,
)
from serve_apps.models.registry import Registry
from serve_apps.models.resolver import ModelResolver
from tsfm_core.checkpoint import BASE_MODEL_DIR, WEIGHTS_FILE
from tsfm_core.ensemble import EnsembleConfig
from tsfm_core.statistical import STATISTICAL_MODELS


@pytest.fixture
def registry(tmp_path):
    return Registry(f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "artifacts")


def test_every_statistical_model_is_a_catalog_entry_without_weights():
    entries = [e for e in CATALOG.entries.values() if e.kind == STATISTICAL]
    assert sorted(e.statistical for e in entries) == sorted(STATISTICAL_MODELS)
    assert all(e.id.startswith("statsforecast/") and e.path is None and e.parameters is None for e in entries)
    assert CATALOG.lookup("StatsForecast/Auto_ETS").statistical == "AutoETS"  # names are case-insensitive


def test_the_base_card_reports_the_checkpoint_as_it_is():
    base = card(CATALOG.lookup("timegpt-1"), "tsfm-base", True, 4096)
    config = json.loads((BASE_MODEL_DIR / "config.json").read_text())["model"]
    assert base["id"] == "tsfm-base" and base["model_type"] == "transformer"
    assert base["parameters"] == count_parameters(BASE_MODEL_DIR / WEIGHTS_FILE) > 1_000_000
    assert (base["context_length"], base["native_horizon"]) == (config["max_context"], config["output_patch_len"])
    assert base["quantile_levels"] == config["quantiles"] and base["max_horizon"] == 4096
    assert (base["temperature"], base["top_p"], base["multivariate"], base["static_covariates"]) == (False,) * 4
    ets = card(CATALOG.lookup("statsforecast/auto_ets"), "statsforecast/auto_ets", True, 4096)
    assert ets["quantile_levels"] is None and ets["context_length"] is None and ets["parameters"] is None


def test_third_party_names_follow_the_alias_setting(registry):
    lenient, strict = ModelResolver(registry), ModelResolver(registry, third_party_aliases="reject")
    name = "amazon/chronos-bolt-small"
    answered = lenient.resolve(name, "acme", ["body", "model"])
    assert (answered.id, answered.kind) == ("tsfm-base", "base")
    assert lenient.served_by(CATALOG.lookup(name)) == "tsfm-base" and strict.served_by(CATALOG.lookup(name)) is None
    with pytest.raises(ApiError) as err:
        strict.resolve(name, "acme", ["body", "model"])
    assert err.value.status == 404 and err.value.loc == ["body", "model"] and "TSFM_THIRD_PARTY_ALIASES" in err.value.msg
    # Our own names are not affected by the setting.
    assert strict.resolve("timegpt-1", "acme", ["m"]).id == "tsfm-base"
    assert strict.resolve("statsforecast/adida", "acme", ["m"]).kind == "statistical"
    assert strict.resolve("AUTO", "acme", ["m"]).kind == "ensemble"


def test_local_weights_are_found_where_the_hook_looks(tmp_path):
    def place(entry_id: str, config: dict) -> Path:
        directory = tmp_path / entry_id
        directory.mkdir(parents=True)
        (directory / "config.json").write_text(json.dumps(config))
        return directory

    bolt = CATALOG.lookup("amazon/chronos-bolt-small")
    assert bolt.kind == THIRD_PARTY and third_party_weights(bolt, tmp_path) is None
    place(bolt.id, {})  # a config.json alone is no checkpoint
    assert third_party_weights(bolt, tmp_path) is None
    # Detection reads the config the package wrote (no extra needed); the family must be the entry's.
    chronos_bolt = {"chronos_pipeline_class": "ChronosBoltPipeline", "chronos_config": {}}
    mini = place("amazon/chronos-bolt-mini", chronos_bolt)
    assert third_party_weights(CATALOG.lookup("amazon/chronos-bolt-mini"), tmp_path) == mini
    place("amazon/chronos-2", chronos_bolt)
    assert third_party_weights(CATALOG.lookup("amazon/chronos-2"), tmp_path) is None
    # No loader reads TimesFM 2.0 checkpoints: whatever sits there, the name is only an alias.
    place("google/timesfm-2.0-500m-pytorch", chronos_bolt)
    assert third_party_weights(CATALOG.lookup("google/timesfm-2.0-500m-pytorch"), tmp_path) is None
    assert third_party_weights(CATALOG.lookup("tsfm-base"), tmp_path) is None


def test_statistical_models_and_auto_cannot_be_finetuned(registry):
    resolver = ModelResolver(registry)
    with pytest.raises(ApiError) as err:
        resolver.resolve_trainable("statsforecast/auto_arima", "acme", ["body", "model"])
    assert err.value.status == 422
    assert resolver.resolve_trainable("timegpt-1", "acme", ["body", "model"]).id == "tsfm-base"
    with pytest.raises(ValueError):
        resolver.model_dir("auto")


def _body(**extra):
    series = [{"target": [[float(i % 7)] for i in range(20)]}, {"target": [[None]] * 5 + [[1.0]] * 15}]
    return {"inputs": series, "parameters": {"prediction_length": 4}, **extra}


def test_ensemble_bodies_are_validated_field_by_field():
    body = tsfm_ensemble.parse_ensemble(_body(scoring_metric="wql", max_models=2, candidate_models=["tsfm-base"]))
    assert (body.model, body.scoring_metric, body.top_n, body.models) == ("auto", "WQL", 2, ["tsfm-base"])
    for bad, field in [({"scoring_metric": "rmse"}, "scoring_metric"), ({"top_n": 0}, "top_n"),
                       ({"weighting": "softmax"}, "weighting"), ({"n_windows": 9}, "n_windows"), ({"models": []}, "models")]:
        with pytest.raises(ValidationError) as err:
            tsfm_ensemble.parse_ensemble(_body(**bad))
        assert err.value.errors()[0]["loc"][0] == field


def test_a_series_too_short_to_score_names_its_target():
    body = tsfm_ensemble.parse_ensemble(_body())
    tsfm_ensemble.check_lengths(body, EnsembleConfig(n_windows=3), ["body"])  # 15 observed >= 3 x 4 + 3
    with pytest.raises(ApiError) as err:  # the second series has 15 observed points, not 4 x 4 + 3
        tsfm_ensemble.check_lengths(body, EnsembleConfig(n_windows=4), ["body"])
    assert err.value.status == 422 and err.value.loc == ["body", "inputs", 1, "target"]
    capped = tsfm_ensemble.parse_ensemble({**_body(), "parameters": {"prediction_length": 4, "context_length": 6}})
    with pytest.raises(ApiError):
        tsfm_ensemble.check_lengths(capped, EnsembleConfig(), ["body"])


def test_candidates_resolve_to_transformers_and_statsforecast_names(registry):
    resolver = ModelResolver(registry)

    def resolve(name, loc):
        return resolver.resolve(name, "acme", loc)

    body = tsfm_ensemble.parse_ensemble(_body(models=["tsfm-base", "amazon/chronos-bolt-tiny", "statsforecast/auto_ets"]))
    transformers, statistical, shown = tsfm_ensemble.candidates(body, resolve, ["body"])
    assert transformers == ("tsfm-base",) and statistical == ("AutoETS",)  # the alias answered by tsfm-base counts once
    assert shown == {"tsfm-base": "tsfm-base", "AutoETS": "statsforecast/auto_ets"}
    with pytest.raises(ApiError) as err:
        tsfm_ensemble.candidates(tsfm_ensemble.parse_ensemble(_body(models=["tsfm-base", "auto"])), resolve, ["body"])
    assert err.value.loc == ["body", "models", 1]
    default = tsfm_ensemble.parse_ensemble(_body())
    assert tsfm_ensemble.candidates(default, resolve, ["body"])[:2] == (("tsfm-base",), EnsembleConfig().statistical)

"""A third-party name served end to end by its real (tiny, randomly initialised) checkpoint, through
the real app in-process (tests.inprocess, no Ray): the catalog card, /v1/forecast, Nixtla's
in-request `finetune_steps` and /v2/finetune, and the refusals (no weights under `reject`, a
fine-tuning job on a third-party base, a family that cannot be finetuned)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve_apps.models.catalog import SERVED_MODEL_HEADER
from tests.inprocess import build_api
from tests.third_party_checkpoints import CONTEXT, PREDICTION, bolt, chronos_t5
from tsfm_core import third_party
from tsfm_core.finetune import FinetuneConfig
from tsfm_core.series import Series

AUTH = {"authorization": "Bearer k"}
BOLT = "amazon/chronos-bolt-small"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(client, checkpoint directory, its parameter count): a tiny Chronos-Bolt under the catalog id."""
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    import torch

    root = tmp_path_factory.mktemp("third-party")
    directory = root / BOLT
    torch.manual_seed(0)
    model = bolt(directory)
    parameters = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    app = build_api(tmp_path_factory.mktemp("home"), api_keys="k=acme", rate_limit_per_minute=0,
                    third_party_dir=str(root))
    with TestClient(app) as client:
        yield client, directory, parameters


def _history(n: int = 48, seed: int = 0) -> np.ndarray:
    t = np.arange(n)
    return 20 + 4 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(seed).normal(0, 0.5, n)


def _nixtla(model: str, **fields) -> dict:
    y = np.concatenate([_history(seed=0), _history(seed=1)]).round(4).tolist()
    return {"model": model, "series": {"y": y, "sizes": [48, 48]}, "h": 5, "freq": "D", **fields}


def test_the_card_describes_the_installed_checkpoint(installed):
    client, _, parameters = installed
    one = client.get(f"/v1/models/{BOLT}", headers=AUTH).json()
    assert one["served_by"] == BOLT and one["available"] is True and one["weights"] == "installed"
    assert one["parameters"] == parameters  # the tiny checkpoint's, not the publisher's 48M
    assert one["family"] == "chronos-bolt" and one["package"].startswith("chronos-forecasting")
    assert (one["context_length"], one["native_horizon"]) == (CONTEXT, PREDICTION)
    cards = {c["id"]: c for c in client.get("/api/models", headers=AUTH).json()["data"]}
    assert cards[BOLT] == one
    # No weights installed for the others: the publisher's figures, answered by the alias setting.
    assert cards["amazon/chronos-bolt-tiny"]["served_by"] == "tsfm-base" and "weights" not in cards["amazon/chronos-bolt-tiny"]
    assert cards["google/timesfm-2.0-500m-pytorch"]["served_by"] == "tsfm-base"
    assert cards["google/timesfm-2.5-200m-pytorch"]["family"] == "timesfm-2.5"


def test_model_params_are_the_checkpoints_own(installed):
    client, directory, _ = installed
    detail = client.get("/model_params", headers=AUTH, params={"model": BOLT}).json()["detail"]
    card = client.get(f"/v1/models/{BOLT}", headers=AUTH).json()
    assert detail == {"input_size": card["context_length"], "horizon": card["native_horizon"]} == {
        "input_size": CONTEXT, "horizon": PREDICTION}


def test_v1_forecast_is_answered_by_the_checkpoint(installed):
    client, directory, _ = installed
    y = _history()
    r = client.post("/v1/forecast", headers=AUTH, json={
        "model": BOLT, "inputs": [{"target": [[v] for v in y.round(4).tolist()]}],
        "parameters": {"prediction_length": 6, "quantile_levels": [0.1, 0.5, 0.9]}})
    body = r.json()
    assert r.status_code == 200 and body["served_model"] == BOLT
    direct = third_party.load(directory).forecast([Series(y.round(4))], 6, [0.1, 0.5, 0.9])[0]
    np.testing.assert_allclose(np.ravel(body["outputs"][0]["quantile_predictions"][1]["values"]), direct.median[:, 0],
                               rtol=1e-4, atol=1e-4)


def test_nixtla_finetune_steps_tune_the_checkpoint_in_the_request(installed):
    client, _, _ = installed
    plain = client.post("/v2/forecast", headers=AUTH, json=_nixtla(BOLT))
    tuned = client.post("/v2/forecast", headers=AUTH, json=_nixtla(BOLT, finetune_steps=2))
    assert plain.status_code == tuned.status_code == 200, tuned.text
    assert tuned.headers[SERVED_MODEL_HEADER] == BOLT
    assert not np.allclose(plain.json()["mean"], tuned.json()["mean"])  # two AdamW steps moved the weights


def test_nixtla_finetune_saves_a_model_that_answers(installed):
    client, _, _ = installed
    r = client.post("/v2/finetune", headers=AUTH, json=_nixtla(BOLT, finetune_steps=2, output_model_id="bolt-ft"))
    assert r.status_code == 200, r.text
    assert r.json()["finetuned_model_id"] == "bolt-ft"
    answer = client.post("/v2/forecast", headers=AUTH, json=_nixtla(BOLT, finetuned_model_id="bolt-ft"))
    assert answer.status_code == 200 and answer.headers[SERVED_MODEL_HEADER] == "bolt-ft"
    base = client.post("/v2/forecast", headers=AUTH, json=_nixtla(BOLT)).json()
    assert np.isfinite(answer.json()["mean"]).all() and not np.allclose(base["mean"], answer.json()["mean"])
    # Named fine-tuning jobs train our PatchTransformer only: the base, and its finetune, are refused up front.
    for model in (BOLT, "bolt-ft"):
        job = client.post("/v1/fine_tuning/jobs", headers=AUTH, json={"model": model, "training_file": "file-x"})
        assert job.status_code == 422 and "third-party" in job.text and '"model"' in job.text


def test_a_name_without_weights_is_rejected_when_aliases_are_off(tmp_path):
    app = build_api(tmp_path / "home", api_keys="k=acme", rate_limit_per_minute=0,
                    third_party_dir=str(tmp_path / "empty"), third_party_aliases="reject")
    with TestClient(app) as client:
        r = client.post("/v1/forecast", headers=AUTH, json={
            "model": BOLT, "inputs": [{"target": [[v] for v in _history().round(3).tolist()]}],
            "parameters": {"prediction_length": 3}})
        assert r.status_code == 404 and BOLT in r.text and "model" in r.text
        card = client.get(f"/v1/models/{BOLT}", headers=AUTH).json()
        assert card["served_by"] is None and card["available"] is False


def test_the_engine_refuses_to_finetune_a_family_it_cannot_train(tmp_path):
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    from serve_apps.replica.calls import FinetuneCall, ForecastCall, RequestRejected
    from serve_apps.replica.engine import ModelEngine
    from tsfm_core.predict import ForecastRequest

    chronos_t5(tmp_path / "t5")  # the original, token-sampling Chronos: served, not finetunable
    engine = ModelEngine(model_dir=lambda model_id: tmp_path / "t5")
    engine._models["chronos-t5"] = third_party.load(tmp_path / "t5")
    call = FinetuneCall(series=[_history()], config=FinetuneConfig(steps=1), output_dir=str(tmp_path / "out"),
                        metadata={})
    with pytest.raises(RequestRejected) as err:
        asyncio.run(engine.finetune("chronos-t5", call))
    assert err.value.loc == ["body", "model"] and "chronos-t5" in str(err.value)
    forecast = ForecastCall(request=ForecastRequest([Series(_history())], 3), finetune=FinetuneConfig(steps=1))
    with pytest.raises(RequestRejected):
        asyncio.run(engine.forecast("chronos-t5", forecast))
    assert not (tmp_path / "out").exists()

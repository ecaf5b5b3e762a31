"""A Nixtla /v2/finetune trained inside a replica is judged like a fine-tuning job's model: its
record carries the base-vs-finetuned verdict on validation (serve_apps.finetuning.verdict), shown in
/v2/finetuned_models. Through the real app in-process (tests.inprocess, no Ray)."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.inprocess import build_api

AUTH = {"authorization": "Bearer k"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = build_api(tmp_path_factory.mktemp("verdict"), api_keys="k=acme", rate_limit_per_minute=0)
    with TestClient(app) as c:
        yield c


def test_an_in_replica_finetune_records_its_verdict(client):
    rng = np.random.default_rng(0)
    t = np.arange(120)
    y = np.concatenate([10 + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 0.3, 120) for _ in range(2)])
    r = client.post("/v2/finetune", headers=AUTH, json={
        "series": {"y": y.round(4).tolist(), "sizes": [120, 120]}, "freq": "D", "finetune_steps": 10,
        "output_model_id": "judged"})
    assert r.status_code == 200, r.text
    model = client.get("/v2/finetuned_models/judged", headers=AUTH).json()
    v = model["validation"]
    assert model["status"] == "ready" and v["promoted"] is True
    # Default selection keeps the base unless a step beats it, so it is never worse on validation.
    assert v["outcome"] in ("improved", "no_improvement") and not v["worse_than_base"], v
    assert v["windows"] == 2 and v["finetuned"]["mase"] <= v["base"]["mase"] and "validation" in v["message"]
    listed = client.get("/v2/finetuned_models", headers=AUTH).json()["finetuned_models"]
    assert [m["validation"]["outcome"] for m in listed if m["id"] == "judged"] == [v["outcome"]]

"""Statistical models, `auto`, /v1/forecast/ensemble, the catalog routes and sampled paths through the
real app in-process (tests.inprocess, no Ray). Series are short and few: the fits take well under a second."""

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serve_apps.models.catalog import CATALOG, SERVED_MODEL_HEADER
from tests.inprocess import build_api

AUTH = {"authorization": "Bearer k"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = build_api(tmp_path_factory.mktemp("models-http"), api_keys="k=acme", rate_limit_per_minute=0,
                    stats_n_jobs=1)
    with TestClient(app) as c:
        yield c


def _series(n: int = 36, seed: int = 0) -> list[float]:
    t = np.arange(n)
    noise = np.random.default_rng(seed).normal(0, 0.5, n)
    return list((20 + 4 * np.sin(2 * np.pi * t / 12) + 0.2 * t + noise).round(3))


def _inputs(k: int = 2, n: int = 36) -> list[dict]:
    return [{"target": [[v] for v in _series(n, i)], "metadata": {"i": i}} for i in range(k)]


PARAMS = {"prediction_length": 6, "frequency": "MS", "quantile_levels": [0.1, 0.5, 0.9]}


def test_the_catalog_routes_list_every_entry_honestly(client):
    cards = {c["id"]: c for c in client.get("/api/models", headers=AUTH).json()["data"]}
    assert set(cards) == set(CATALOG.entries)
    assert cards["amazon/chronos-bolt-small"]["served_by"] == "tsfm-base"  # no local weights: the default alias setting
    assert cards["amazon/chronos-bolt-small"]["parameters"] != cards["tsfm-base"]["parameters"]
    assert cards["statsforecast/auto_arima"]["model_type"] == "statistical" and cards["auto"]["served_by"] == "auto"
    listed = {m["id"]: m for m in client.get("/v1/models", headers=AUTH).json()["data"]}
    assert listed["statsforecast/auto_ets"]["family"] == "exponential-smoothing"
    one = client.get("/v1/models/statsforecast/auto_theta", headers=AUTH).json()
    assert one == cards["statsforecast/auto_theta"]
    assert client.get("/api/models").status_code == 401


def test_a_statistical_model_answers_v1_forecast(client):
    r = client.post("/v1/forecast", headers=AUTH, json={"model": "statsforecast/auto_ets", "inputs": _inputs(),
                                                        "parameters": PARAMS})
    body = r.json()
    assert r.status_code == 200 and body["served_model"] == "statsforecast/auto_ets"
    out = body["outputs"][0]
    assert out["served_model"] in ("AutoETS", "SeasonalNaive(fallback)") and len(out["mean"]) == 6
    lo, hi = (np.array(q["values"]) for q in out["quantile_predictions"][::2])
    assert (hi > lo).all()


def test_auto_on_v1_forecast_reports_the_models_and_their_scores(client):
    r = client.post("/v1/forecast", headers=AUTH, json={"model": "auto", "inputs": _inputs(), "parameters": PARAMS})
    body = r.json()
    assert r.status_code == 200 and body["served_model"] == "auto"
    assert body["ensemble"]["candidates"] == ["tsfm-base", "statsforecast/auto_ets", "statsforecast/auto_theta"]
    used = body["ensemble"]["models_used"]
    assert used and all(u["mean_score"] is None or u["mean_score"] >= 0 for u in used)
    channel = body["outputs"][1]["ensemble"][0]
    assert set(channel["scores"]) == set(body["ensemble"]["candidates"]) and abs(sum(channel["weights"].values()) - 1) < 1e-5


def test_the_ensemble_route_selects_per_series_and_rejects_short_series(client):
    r = client.post("/v1/forecast/ensemble", headers=AUTH, json={
        "inputs": _inputs(3), "parameters": PARAMS, "scoring_metric": "MAE", "top_n": 1,
        "models": ["statsforecast/seasonal_naive", "statsforecast/auto_theta"]})
    body = r.json()
    assert r.status_code == 200 and body["ensemble"]["top_n"] == 1
    for out in body["outputs"]:
        scores, weights = out["ensemble"][0]["scores"], out["ensemble"][0]["weights"]
        assert list(weights.values()) == [1.0] and next(iter(weights)) == min(scores, key=scores.get)
    short = client.post("/v1/forecast/ensemble", headers=AUTH, json={
        "inputs": _inputs(1) + [{"target": [[1.0], [2.0], [3.0]]}], "parameters": PARAMS})
    assert short.status_code == 422 and short.json()["detail"][0]["loc"] == ["body", "inputs", 1, "target"]
    other = client.post("/v1/forecast/ensemble", headers=AUTH, json={"model": "tsfm-base", "inputs": _inputs(1),
                                                                     "parameters": PARAMS})
    assert other.status_code == 422 and other.json()["detail"][0]["loc"] == ["body", "model"]


def test_nixtla_sends_auto_as_a_model_name(client):
    y = _series(40, 0) + _series(40, 1)
    r = client.post("/v2/forecast", headers=AUTH, json={"series": {"y": y, "sizes": [40, 40]}, "model": "auto",
                                                        "h": 6, "freq": "MS", "level": [80]})
    assert r.status_code == 200 and r.headers[SERVED_MODEL_HEADER] == "auto"
    assert len(r.json()["mean"]) == 12 and len(r.json()["intervals"]["hi-80"]) == 12
    alias = client.post("/v2/forecast", headers=AUTH, json={"series": {"y": y, "sizes": [40, 40]}, "h": 6,
                                                            "model": "google/timesfm-2.0-500m-pytorch"})
    assert alias.headers[SERVED_MODEL_HEADER] == "tsfm-base"


def test_samples_are_random_unless_seeded_and_span_the_distribution(client):
    def samples(model="tsfm-base", **extra):
        params = {**PARAMS, "num_samples": 200, "quantile_levels": [0.5], **extra}
        r = client.post("/v1/forecast", headers=AUTH, json={"model": model, "inputs": _inputs(1), "parameters": params})
        assert r.status_code == 200, r.text
        return np.array(r.json()["outputs"][0]["samples"])[:, :, 0]  # [samples, H]

    first, again, other = samples(seed=3), samples(seed=3), samples()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert (first.std(axis=0) > 0).all()  # one requested level no longer makes every sample identical
    theta = samples(seed=3, model="statsforecast/auto_theta")  # no quantile heads: drawn from its intervals
    assert (theta.std(axis=0) > 0).all()


def test_fine_tuning_a_statistical_model_is_refused_naming_the_model(client):
    r = client.post("/v1/fine_tuning/jobs", headers=AUTH, json={"model": "statsforecast/auto_ets", "training_file": "f"})
    assert r.status_code == 422 and r.json()["error"]["param"] == "model"


def test_model_params_answer_each_models_own_context_and_horizon(client):
    from serve_apps.settings import Settings
    from tsfm_core.checkpoint import load_model

    base = load_model().config
    assert client.get("/model_params", headers=AUTH, params={"model": "timegpt-1"}).json()["detail"] == {
        "input_size": base.max_context, "horizon": base.output_patch_len}
    # Fitted per request and forecasting any horizon directly: the SDK must not warn that h is too long.
    for name in ("statsforecast/auto_ets", "auto"):
        detail = client.post("/model_params", headers=AUTH, json={"model": name}).json()["detail"]
        assert detail == {"input_size": base.max_context, "horizon": Settings().max_prediction_length}, name

"""/v1/forecast (TSFM.ai canonical and batch requests) against the real server over HTTP."""

import concurrent.futures
import json

import numpy as np
import pytest

from tests.conftest import seasonal_series

CANONICAL = {
    "model": "google/timesfm-2.0-500m-pytorch",
    "inputs": [{
        "start": "2026-03-01T00:00:00Z",
        "target": [[110], [113], [108], [116], [119], [121]],
        "past_covariates": {"promo": [0, 1, 0, 1, 1, 0]},
        "future_covariates": {"promo": [1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]},
        "static_covariates": {"store_cluster": 2, "shelf_capacity": 1},
        "metadata": {"item_id": "sku_42"},
    }],
    "parameters": {"prediction_length": 12, "frequency": "D", "quantile_levels": [0.1, 0.5, 0.9], "context_length": 256},
    "metadata": {"surface": "docs.forecast"},
}


def _series(n=60, seed=0):
    return [[float(v)] for v in seasonal_series(n, seed=seed)]


def test_canonical_request_returns_the_documented_envelope(http):
    r = http.post("/v1/forecast", json=CANONICAL)
    assert r.status_code == 200, r.text
    body = r.json()
    for key in ("id", "object", "created", "model", "horizon", "prediction_length", "quantile_levels",
                "input_points", "outputs", "usage", "latency_ms", "metadata"):
        assert key in body
    assert body["object"] == "forecast" and body["model"] == CANONICAL["model"] and body["served_model"] == "tsfm-base"
    assert body["horizon"] == body["prediction_length"] == 12
    assert body["input_points"] == 6 and body["metadata"] == {"surface": "docs.forecast"}
    out = body["outputs"][0]
    assert out["metadata"] == {"item_id": "sku_42"}
    assert len(out["mean"]) == 12 and len(out["mean"][0]) == 1
    assert [q["level"] for q in out["quantile_predictions"]] == [0.1, 0.5, 0.9]
    lo, mid, hi = (q["values"] for q in out["quantile_predictions"])
    assert all(a[0] <= b[0] <= c[0] for a, b, c in zip(lo, mid, hi))
    assert mid == out["mean"]
    assert out["timestamps"][0] == "2026-03-07T00:00:00Z" and out["timestamps"][-1] == "2026-03-18T00:00:00Z"
    assert body["usage"]["output_tokens"] == 36
    assert body["usage"]["total_tokens"] == body["usage"]["input_tokens"] + 36
    assert "truncated_from" not in body


def test_multivariate_missing_values_samples_and_no_timestamps_without_frequency(http):
    target = [[float(i), None if i % 7 == 0 else float(2 * i)] for i in range(50)]
    r = http.post("/v1/forecast", json={"model": "tsfm-base", "inputs": [{"target": target}],
                                        "parameters": {"prediction_length": 5, "num_samples": 20,
                                                       "quantile_levels": [0.05, 0.5, 0.95]}})
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert len(out["mean"]) == 5 and len(out["mean"][0]) == 2
    assert len(out["samples"]) == 20 and len(out["samples"][0]) == 5 and len(out["samples"][0][0]) == 2
    assert "timestamps" not in out


def test_truncation_is_reported(http):
    r = http.post("/v1/forecast", json={"model": "tsfm-base", "inputs": [{"target": _series(700)}],
                                        "parameters": {"prediction_length": 3}})
    body = r.json()
    assert body["truncated_from"] == 700 and body["max_context_length"] == 512
    r = http.post("/v1/forecast", json={"model": "tsfm-base", "inputs": [{"target": _series(100)}],
                                        "parameters": {"prediction_length": 3, "context_length": 64}})
    assert r.json()["truncated_from"] == 100 and r.json()["max_context_length"] == 64


def test_batch_request_reports_each_item(http):
    r = http.post("/v1/forecast", json={"requests": [
        {"model": "amazon/chronos-bolt-small", "inputs": [{"target": [[10], [11], [12], [13], [14]], "metadata": {"item_id": "north"}}],
         "parameters": {"prediction_length": 6, "frequency": "D"}},
        {"model": "no-such-model", "inputs": [{"target": [[6], [7]]}], "parameters": {"prediction_length": 6}},
        {"model": "tsfm-base", "inputs": [{"target": [1, 2]}], "parameters": {"prediction_length": 6}},
    ]})
    assert r.status_code == 200
    data = r.json()["data"]
    assert r.json()["object"] == "list" and len(data) == 3
    assert data[0]["ok"] and data[0]["result"]["outputs"][0]["metadata"] == {"item_id": "north"}
    assert len(data[0]["result"]["outputs"][0]["mean"]) == 6
    assert not data[1]["ok"] and data[1]["error"]["code"] == "NOT_FOUND"
    assert data[1]["error"]["detail"][0]["loc"] == ["body", "requests", 1, "model"]
    assert not data[2]["ok"] and data[2]["error"]["code"] == "INVALID_ARGUMENT"
    assert data[2]["error"]["detail"][0]["loc"] == ["body", "requests", 2, "inputs", 0, "target"]


BAD_REQUESTS = [
    ({"parameters": {}}, ["body", "parameters", "prediction_length"], "missing"),
    ({"parameters": {"prediction_length": 0}}, ["body", "parameters", "prediction_length"], "greater_than_equal"),
    ({"parameters": {"prediction_length": 99999}}, ["body", "parameters", "prediction_length"], None),
    ({"parameters": {"prediction_length": 3, "quantile_levels": [0.9, 0.1]}}, ["body", "parameters", "quantile_levels"], None),
    ({"parameters": {"prediction_length": 3, "quantile_levels": [0, 0.5]}}, ["body", "parameters", "quantile_levels"], None),
    ({"parameters": {"prediction_length": 3, "frequency": "fortnightly"}}, ["body", "parameters", "frequency"], None),
    ({"parameters": {"prediction_length": 3, "temperature": 0.5}}, ["body", "parameters", "temperature"], None),
    ({"inputs": [{"target": [1, 2, 3]}]}, ["body", "inputs", 0, "target"], None),
    ({"inputs": [{"target": [[1], [2, 3]]}]}, ["body", "inputs", 0, "target"], None),
    ({"inputs": [{"target": [[None], [None]]}]}, ["body", "inputs", 0, "target"], None),
    ({"inputs": [{"target": []}]}, ["body", "inputs", 0, "target"], None),
    ({"inputs": []}, ["body", "inputs"], "too_short"),
    ({"inputs": [{"target": [[1], [2]], "past_covariates": {"p": [1]}}]}, ["body", "inputs", 0, "past_covariates", "p"], None),
    ({"inputs": [{"target": [[1], [2]], "past_covariates": {"p": [1, 2]}, "future_covariates": {"p": [1]}}]},
     ["body", "inputs", 0, "future_covariates", "p"], None),
    ({"inputs": [{"target": [[1], [2]], "future_covariates": {"q": [1, 2, 3]}}]}, ["body", "inputs", 0, "future_covariates", "q"], None),
    ({"inputs": [{"target": [[1], [2]], "start": "not a date"}], "parameters": {"prediction_length": 3, "frequency": "D"}},
     ["body", "inputs", 0, "start"], None),
    ({"model": None}, ["body", "model"], None),
]


@pytest.mark.parametrize("patch,loc,type_", BAD_REQUESTS)
def test_bad_input_is_a_422_naming_the_field(http, patch, loc, type_):
    body = {"model": "tsfm-base", "inputs": [{"target": [[1.0], [2.0], [3.0]]}], "parameters": {"prediction_length": 3}}
    body.update(patch)
    r = http.post("/v1/forecast", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"] == loc for d in detail), detail
    assert all({"loc", "msg", "type"} <= set(d) for d in detail)
    if type_:
        assert any(d["type"] == type_ for d in detail if d["loc"] == loc)


def test_unknown_model_is_a_404_naming_the_field(http):
    r = http.post("/v1/forecast", json={"model": "nope", "inputs": [{"target": [[1.0]]}], "parameters": {"prediction_length": 2}})
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["body", "model"]


def test_malformed_bodies_get_json_errors(http):
    r = http.post("/v1/forecast", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "detail" in r.json()
    r = http.post("/v1/forecast", json=[1, 2])
    assert r.status_code == 422
    r = http.post("/v1/forecast", json={"requests": []})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "requests"]


def test_oversized_requests_are_413(http):
    too_many = {"model": "tsfm-base", "inputs": [{"target": [[1.0]] * 500_000}], "parameters": {"prediction_length": 2}}
    r = http.post("/v1/forecast", json=too_many)
    assert r.status_code == 413 and r.json()["detail"]
    r = http.post("/v1/forecast", content=b"x" * (9 * 1024 * 1024), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "too_large"


def test_concurrent_requests_are_batched(http):
    before = http.get("/v1/stats").json()
    body = {"model": "tsfm-base", "inputs": [{"target": _series(200)}], "parameters": {"prediction_length": 24}}
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda _: http.post("/v1/forecast", json=body).status_code, range(32)))
    assert codes == [200] * 32
    after = http.get("/v1/stats").json()
    batches = after["batches_run"] - before["batches_run"]
    requests = after["requests_batched"] - before["requests_batched"]
    assert requests == 32
    assert batches < requests  # at least one model pass served several requests


def test_models_listing(http):
    data = http.get("/v1/models").json()["data"]
    assert any(m["id"] == "tsfm-base" and "timegpt-1" in m["aliases"] for m in data)


def test_a_big_body_is_answered_by_the_bulk_lane_like_a_small_one(http):
    # 60 series x 800 points: past the 256 KiB from which the ingress hands a whole request to the
    # ModelServer (http/bulk_lane.py), whose own engine then runs it.
    series = [_series(800, seed=i) for i in range(60)]
    body = {"model": "tsfm-base", "inputs": [{"target": s} for s in series], "parameters": {"prediction_length": 8}}
    assert len(json.dumps(body)) > 256 * 1024
    before = http.get("/v1/stats").json()["bulk"]
    r = http.post("/v1/forecast", json=body)
    assert r.status_code == 200, r.text
    after = http.get("/v1/stats").json()["bulk"]
    assert after["requests_batched"] > before["requests_batched"]
    outputs = r.json()["outputs"]
    assert len(outputs) == 60
    small = http.post("/v1/forecast", json=dict(body, inputs=[{"target": series[7]}])).json()["outputs"][0]
    assert np.allclose(outputs[7]["mean"], small["mean"], rtol=1e-4)
    # Its errors come back in the dialect's shape, naming the field, as the ingress would answer them.
    for path, big, small_body in [
        ("/v1/forecast", dict(body, parameters={"prediction_length": 0}),
         {"model": "tsfm-base", "inputs": [{"target": series[0]}], "parameters": {"prediction_length": 0}}),
        ("/v2/forecast", {"series": {"sizes": [800] * 60, "y": [v[0] for s in series for v in s]}, "h": 0},
         {"series": {"sizes": [800], "y": [v[0] for v in series[0]]}, "h": 0}),
    ]:
        assert len(json.dumps(big)) > 256 * 1024
        got, want = http.post(path, json=big), http.post(path, json=small_body)
        assert got.status_code == want.status_code == 422, (got.text, want.text)
        assert got.json() == want.json()

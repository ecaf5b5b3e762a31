"""The HTTP app in process (no Ray): work limits answer 413 naming the field, a full engine answers
503 with Retry-After, and large bodies handled off the event loop answer exactly like small ones."""

import pytest
from fastapi.testclient import TestClient

from serve_apps.http import tsfm_routes
from serve_apps.http.api import standalone_api
from serve_apps.settings import Settings
from tests.conftest import seasonal_series

TARGET = [[v] for v in seasonal_series(64).tolist()]


def _client(tmp_path, **settings) -> TestClient:
    return TestClient(standalone_api(Settings(home=str(tmp_path), **settings)))


def _tsfm(n_series=1, h=8, **parameters) -> dict:
    return {"model": "tsfm-base", "inputs": [{"target": TARGET}] * n_series,
            "parameters": {"prediction_length": h, **parameters}}


def _nixtla(n_series=1, h=8, level=None) -> dict:
    y = [v[0] for v in TARGET] * n_series
    return {"series": {"y": y, "sizes": [len(TARGET)] * n_series}, "h": h, "freq": "D", "level": level}


@pytest.mark.parametrize("path,body,loc", [
    ("/v1/forecast", _tsfm(n_series=3), ["body", "inputs"]),
    ("/v1/forecast", _tsfm(h=100, num_samples=50), ["body", "parameters", "num_samples"]),
    ("/v1/forecast", _tsfm(h=400), ["body", "parameters", "prediction_length"]),
    ("/v2/forecast", _nixtla(n_series=3), ["body", "series", "sizes"]),
    ("/v2/forecast", _nixtla(h=250, level=[80, 90]), ["body", "h"]),
])
def test_work_past_a_limit_is_a_413_naming_the_field(tmp_path, path, body, loc):
    client = _client(tmp_path, max_series=2, max_output_values=1000)
    answer = client.post(path, json=body)
    assert answer.status_code == 413, answer.text
    assert answer.json()["detail"][0]["loc"] == loc


def test_a_full_engine_sheds_with_retry_after(tmp_path):
    answer = _client(tmp_path, max_pending=0).post("/v1/forecast", json=_tsfm())
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) >= 1
    assert answer.json()["detail"][0]["type"] == "overloaded"


def test_off_loop_handling_gives_the_same_answer(tmp_path, monkeypatch):
    client = _client(tmp_path)
    inline = client.post("/v1/forecast", json=_tsfm(n_series=2)).json()
    monkeypatch.setattr(tsfm_routes, "OFF_LOOP_BYTES", 0)
    threaded = client.post("/v1/forecast", json=_tsfm(n_series=2)).json()
    assert [o["mean"] for o in threaded["outputs"]] == [o["mean"] for o in inline["outputs"]]
    bad = client.post("/v1/forecast", content=b'{"model": ', headers={"content-type": "application/json"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["type"] == "json_invalid"

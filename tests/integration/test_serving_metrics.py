"""The serving path's Prometheus metrics, read back from Ray's metrics endpoint after real requests."""

import time

import httpx

from tests.conftest import seasonal_series


def _scrape_until(endpoints: list[str], wanted: list[str], timeout: float = 90) -> str:
    """Ray's workers push metrics to the node agent every few seconds: poll until all names appear."""
    deadline, text = time.time() + timeout, ""
    while time.time() < deadline:
        text = "\n".join(httpx.get(url, timeout=10).text for url in endpoints)
        if all(name in text for name in wanted):
            return text
        time.sleep(2)
    missing = [name for name in wanted if name not in text]
    raise AssertionError(f"metrics never appeared: {missing}")


def test_requests_batches_and_errors_are_exported(http):
    body = {"model": "tsfm-base", "inputs": [{"target": [[v] for v in seasonal_series(128).tolist()]}],
            "parameters": {"prediction_length": 12}}
    for _ in range(3):
        assert http.post("/v1/forecast", json=body).status_code == 200
    assert http.post("/v1/forecast", json={**body, "model": "no-such-model"}).status_code == 404
    endpoints = http.get("/v1/stats").json()["metrics_endpoints"]
    assert endpoints, "the server reports no metrics endpoint"
    text = _scrape_until(endpoints, ["ray_tsfm_requests_total", "ray_tsfm_requests_per_model_pass_bucket",
                                     "ray_tsfm_request_latency_seconds_bucket", "ray_tsfm_model_loads_total",
                                     "ray_tsfm_model_requests_total"])
    lines = [line for line in text.splitlines() if line.startswith("ray_tsfm_requests_total{")]
    ok = [line for line in lines if 'route="/v1/forecast"' in line and 'status="200"' in line and 'dialect="tsfm"' in line]
    missing = [line for line in lines if 'route="/v1/forecast"' in line and 'status="404"' in line]
    assert ok and float(ok[0].rsplit(" ", 1)[1]) >= 3
    assert missing and float(missing[0].rsplit(" ", 1)[1]) >= 1

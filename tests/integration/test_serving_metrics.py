"""The serving path's Prometheus metrics, read back from Ray's metrics endpoint after real requests."""

import time

import httpx

from tests.conftest import seasonal_series


def _total(text: str, name: str, *labels: str) -> float:
    """Sum of a counter over every series carrying `labels` (Ray tags each worker's series apart)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(label in line for label in labels))


def _scrape_until(endpoints: list[str], wanted: list[str], done, timeout: float = 90) -> str:
    """Ray's workers push metrics to the node agent every few seconds: poll until all names appear
    and `done(text)` holds."""
    deadline, text = time.time() + timeout, ""
    while time.time() < deadline:
        text = "\n".join(httpx.get(url, timeout=10).text for url in endpoints)
        if all(name in text for name in wanted) and done(text):
            return text
        time.sleep(2)
    missing = [name for name in wanted if name not in text]
    raise AssertionError(f"metrics never complete; missing {missing}")


def test_requests_batches_and_errors_are_exported(http):
    body = {"model": "tsfm-base", "inputs": [{"target": [[v] for v in seasonal_series(128).tolist()]}],
            "parameters": {"prediction_length": 12}}
    for _ in range(3):
        assert http.post("/v1/forecast", json=body).status_code == 200
    assert http.post("/v1/forecast", json={**body, "model": "no-such-model"}).status_code == 404
    endpoints = http.get("/v1/stats").json()["metrics_endpoints"]
    assert endpoints, "the server reports no metrics endpoint"
    forecast = ('route="/v1/forecast"', 'dialect="tsfm"')
    _scrape_until(endpoints, ["ray_tsfm_requests_total", "ray_tsfm_requests_per_model_pass_bucket",
                              "ray_tsfm_request_latency_seconds_bucket", "ray_tsfm_model_loads_total",
                              "ray_tsfm_model_requests_total"],
                  lambda text: _total(text, "ray_tsfm_requests_total", *forecast, 'status="200"') >= 3
                  and _total(text, "ray_tsfm_requests_total", *forecast, 'status="404"') >= 1)

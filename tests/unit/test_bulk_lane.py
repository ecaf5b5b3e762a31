"""The ingress's hand-over of big bodies to the ModelServer (serve_apps/http/bulk_lane.py), without
Ray: a stand-in for the deployment handle runs `answer` over a second app, as the ModelServer does.
The real hop is tested against the server in tests/integration/test_server_forecast.py."""

import asyncio

import httpx
import pytest
from ray.serve.exceptions import BackPressureError

from serve_apps.http.api import standalone_api
from serve_apps.http.bulk_lane import BulkForwarder, RawRequest, answer
from serve_apps.settings import Settings
from tests.conftest import seasonal_series


class Lane:
    """What `BulkForwarder` uses of a DeploymentHandle: `lane.http.remote(request)`, awaited."""

    def __init__(self, app=None):
        self.app, self.seen = app, []
        self.http = self

    def remote(self, request: RawRequest):
        self.seen.append(request)
        if self.app is None:
            raise BackPressureError(num_queued_requests=8, max_queued_requests=8)
        return answer(self.app, request)


def _app(home):
    return standalone_api(Settings(home=str(home), api_keys="k=acme"))


@pytest.fixture(scope="module")
def lane(tmp_path_factory):
    return Lane(_app(tmp_path_factory.mktemp("back")))


@pytest.fixture(scope="module")
def fronts(tmp_path_factory, lane):
    """The ingress's app with the forwarder, in front of a working lane and of a full one."""
    out = {}
    for name, target in (("working", lane), ("full", Lane())):
        app = _app(tmp_path_factory.mktemp(f"front_{name}"))
        app.add_middleware(BulkForwarder, lane=target, min_bytes=2000, max_bytes=1_000_000)
        out[name] = app
    return out


def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t", headers={"authorization": "Bearer k"})


def _body(points: int) -> dict:
    return {"model": "tsfm-base", "inputs": [{"target": [[float(v)] for v in seasonal_series(points)]}],
            "parameters": {"prediction_length": 4}}


def test_big_bodies_are_answered_by_the_lane_small_ones_here(lane, fronts):
    async def run():
        async with _client(fronts["working"]) as client:
            # (a small invalid body: answered here without loading a model)
            small = await client.post("/v1/forecast", json={**_body(20), "parameters": {"prediction_length": 0}})
            big = await client.post("/v1/forecast?x=1", json=_body(400))
            unauthorized = await client.post("/v1/forecast", json=_body(400), headers={"authorization": "Bearer no"})
            return small, big, unauthorized

    small, big, unauthorized = asyncio.run(run())
    assert small.status_code == 422 and small.json()["detail"][0]["loc"] == ["body", "parameters", "prediction_length"]
    assert big.status_code == 200, big.text
    assert len(lane.seen) == 2 and lane.seen[0].path == "/v1/forecast" and lane.seen[0].query_string == b"x=1"
    assert len(big.json()["outputs"][0]["mean"]) == 4
    assert big.headers["content-type"] == "application/json"
    # The lane's app checks the key, as the ingress would have.
    assert unauthorized.status_code == 401 and unauthorized.json()["detail"]


@pytest.mark.parametrize("path, shape", [("/v1/forecast", "detail"), ("/v1/fine_tuning/jobs", "openai")])
def test_a_full_lane_is_503_with_retry_after_in_the_dialects_shape(fronts, path, shape):
    async def run():
        async with _client(fronts["full"]) as client:
            return await client.post(path, json=_body(400))

    r = asyncio.run(run())
    assert r.status_code == 503 and int(r.headers["retry-after"]) > 0
    assert (r.json()["error"]["code"] == "overloaded") if shape == "openai" else (r.json()["detail"][0]["type"] == "overloaded")

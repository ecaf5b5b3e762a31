"""Authentication before any body parsing on every route; JSON encoding and depth limits; per-organization
rate and job limits (429 + Retry-After). The real app in-process (tests.inprocess), no Ray."""

import json

import pytest
from fastapi.testclient import TestClient

from serve_apps.finetuning.store import JobStore
from serve_apps.http.guards import PUBLIC_PATHS, json_depth_error, json_path_at
from serve_apps.limits import RateLimited, RateLimiter, active_jobs, check_job_quota
from serve_apps.nixtla.async_store import AsyncJobStore
from tests.inprocess import build_api

KEYS = "ka=acme,kb=globex"
GOOD = {"authorization": "Bearer ka"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return build_api(tmp_path_factory.mktemp("guards"), api_keys=KEYS, rate_limit_per_minute=0)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _body_routes(app) -> list[tuple[str, str]]:
    """Every POST/PATCH/PUT operation of the API description, path parameters filled in."""
    routes = [(method.upper(), path.replace("{task}", "forecast").replace("{model_id}", "m")
               .replace("{job_id}", "j").replace("{file_id}", "f"))
              for path, ops in app.openapi()["paths"].items() for method in ops if method in ("post", "patch", "put")]
    assert len(routes) >= 9  # the issue counted 9 POST/PATCH routes answering 422s without a key
    return routes


BAD_BODIES = [b"{not json", b'{"h": "x", "series": 3}', b"[]", '{"model": "é"}'.encode("latin-1")]


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": "Basic ka"}])
def test_every_body_route_answers_401_before_looking_at_the_body(app, client, headers):
    for method, path in _body_routes(app):
        for body in BAD_BODIES:
            r = client.request(method, path, content=body, headers={**headers, "content-type": "application/json"})
            assert r.status_code == 401, (method, path, body, r.status_code, r.text)
            answer = r.json()  # in the route's dialect shape: OpenAI routes name the param
            assert (answer["error"]["param"] == "authorization" if "error" in answer
                    else answer["detail"][0]["loc"] == ["header", "authorization"])
            assert "schema" not in r.text and "series" not in r.text


def test_with_a_valid_key_the_same_bodies_are_400_or_422_naming_the_body(app, client):
    for body in BAD_BODIES:
        r = client.post("/v2/forecast", content=body, headers={**GOOD, "content-type": "application/json"})
        assert r.status_code in (400, 422) and r.json()["detail"][0]["loc"][0] == "body", r.text


def test_public_paths_stay_open(client):
    assert "/health" in PUBLIC_PATHS and client.get("/health").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_non_utf8_json_is_a_400_naming_the_body(client):
    r = client.post("/v1/forecast", content=b'{"model": "\xff"}', headers={**GOOD, "content-type": "application/json"})
    assert r.status_code == 400 and r.json()["detail"][0]["loc"] == ["body"] and "UTF-8" in r.text


@pytest.mark.parametrize("depth", [300, 2000, 100_000])
def test_deep_metadata_is_a_400_naming_the_field(client, depth):
    body = b'{"model": "tsfm-base", "inputs": [], "metadata": ' + b"[" * depth + b"]" * depth + b"}"
    r = client.post("/v1/forecast", content=body, headers={**GOOD, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["loc"][:2] == ["body", "metadata"]


def test_depth_scan_ignores_brackets_in_strings_and_finds_the_path():
    shallow = json.dumps({"a": "[[[[[[[[[[" * 20, "b": [1, [2]]}).encode()
    assert json_depth_error(shallow, limit=4) is None
    deep = json.dumps({"x": 1, "inputs": [{"t": 1}, {"metadata": {"k\\\"": [[[[1]]]]}}]}).encode()
    offset = json_depth_error(deep, limit=5)
    assert offset is not None
    assert json_path_at(deep, offset) == ["inputs", 1, "metadata", 'k\\"', 0]


def test_rate_limiter_refills_and_tells_when_to_retry():
    now = [0.0]
    limiter = RateLimiter(per_minute=2, clock=lambda: now[0])
    limiter.acquire("acme")
    limiter.acquire("acme")
    with pytest.raises(RateLimited) as err:
        limiter.acquire("acme")
    assert err.value.status == 429 and err.value.retry_after == 30
    limiter.acquire("globex")  # organizations have their own buckets
    now[0] = 30.0
    limiter.acquire("acme")
    assert not RateLimiter(0).enabled


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    app = build_api(tmp_path, api_keys=KEYS, rate_limit_per_minute=3)
    with TestClient(app, raise_server_exceptions=False) as c:
        codes = [c.get("/v2/models", headers=GOOD).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/v2/models", headers=GOOD)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.get("/v2/models", headers={"authorization": "Bearer kb"}).status_code == 200


def test_limits_default_on_with_keys_and_off_in_single_user_mode(tmp_path):
    from serve_apps.settings import Settings

    assert Settings(home=str(tmp_path), api_keys="").limit(None, 600) == 0
    assert Settings(home=str(tmp_path), api_keys="k=o").limit(None, 600) == 600
    assert Settings(home=str(tmp_path), api_keys="k=o").limit(0, 600) == 0


def test_job_quota_counts_active_jobs_of_the_organization(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    async_jobs = AsyncJobStore(url, tmp_path / "artifacts")
    JobStore(url)
    for _ in range(2):
        async_jobs.create("acme", "k", "forecast", {}, None)
    assert active_jobs(async_jobs.engine, "acme") == 2 and active_jobs(async_jobs.engine, "globex") == 0
    check_job_quota(async_jobs.engine, "acme", 3)
    check_job_quota(async_jobs.engine, "acme", 0)  # off
    with pytest.raises(RateLimited) as err:
        check_job_quota(async_jobs.engine, "acme", 2)
    assert err.value.status == 429 and err.value.retry_after >= 1


def test_async_submissions_beyond_the_job_limit_are_429(tmp_path):
    app = build_api(tmp_path, api_keys=KEYS, rate_limit_per_minute=0, max_concurrent_jobs=1)
    body = {"series": {"y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "sizes": [6]}, "h": 2}
    with TestClient(app, raise_server_exceptions=False) as c:  # the runner is not started: jobs stay pending
        assert c.post("/v2/forecast/async", json=body, headers=GOOD).status_code == 202
        r = c.post("/v2/forecast/async", json=body, headers=GOOD)
        assert r.status_code == 429 and "retry-after" in r.headers
        assert c.post("/v2/forecast/async", json=body, headers={"authorization": "Bearer kb"}).status_code == 202

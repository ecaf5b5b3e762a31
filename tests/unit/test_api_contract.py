"""The HTTP contract without Ray: each router answers errors in its dialect's shape (401, 405 with
Allow, 413 from the body middleware), and /openapi.json types every body and documents the errors."""

import pytest
from fastapi.testclient import TestClient

from serve_apps.errors import _param, openai_body
from serve_apps.http.api import standalone_api
from serve_apps.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings(home=str(tmp_path_factory.mktemp("contract")), api_keys="k=acme", max_body_bytes=1000)
    return TestClient(standalone_api(settings))


@pytest.fixture(scope="module")
def doc(client):
    return client.get("/openapi.json").json()


def test_openai_param_is_the_field_path():
    assert _param(["body", "hyperparameters", "n_epochs"]) == "hyperparameters.n_epochs"
    assert _param(["body", "requests", 2, "model"]) == "requests[2].model"
    assert _param(["path", "file_id"]) == "file_id" and _param(["body"]) is None
    two = openai_body(422, [{"loc": ["body", "model"], "msg": "required", "type": "missing"},
                            {"loc": ["body", "training_file"], "msg": "required", "type": "missing"}])
    assert two == {"error": {"message": "model: required; training_file: required", "type": "invalid_request_error",
                             "param": "model", "code": "missing"}}


@pytest.mark.parametrize("path", ["/v1/files", "/v1/fine_tuning/jobs", "/v1/models", "/v1/models/tsfm-base"])
def test_openai_routes_answer_openai_errors(client, path):
    r = client.get(path, headers={"authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert r.json() == {"error": {"message": "missing or invalid API key", "type": "invalid_request_error",
                                  "param": "authorization", "code": "unauthorized"}}


@pytest.mark.parametrize("path", ["/v1/stats", "/v2/finetuned_models", "/v1/finetuning/finetuned-models"])
def test_other_routes_keep_the_detail_shape(client, path):
    r = client.get(path)
    assert r.status_code == 401 and r.json()["detail"][0]["loc"] == ["header", "authorization"]


AUTH = {"authorization": "Bearer k"}


def test_405_allows_every_method_of_the_path(client):
    r = client.put("/v1/files/f", headers=AUTH)
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET" and r.json()["error"]["code"] == "method_not_allowed"
    r = client.put("/v2/finetuned_models/m", headers=AUTH)
    assert r.status_code == 405 and r.headers["allow"] == "DELETE, GET" and "detail" in r.json()


def test_body_middleware_answers_in_the_route_shape(client):
    big = b"x" * 2000
    r = client.post("/v1/fine_tuning/jobs", content=big, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = client.post("/v2/forecast", content=big, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"][0]["type"] == "too_large"


def _resolve(doc, schema):
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def test_every_body_is_a_typed_model(doc):
    for path, method, op in _operations(doc):
        for where, content in [("request", op.get("requestBody", {}).get("content", {}))] + [
                (code, r.get("content", {})) for code, r in op["responses"].items()]:
            schema = content.get("application/json", {}).get("schema")
            if schema is None:
                continue
            options = [_resolve(doc, s) for s in schema.get("anyOf", [schema])]
            for s in options:
                if s.get("type") == "null":
                    continue
                assert s.get("properties") or s.get("additionalProperties") is False, f"{method.upper()} {path} {where}: untyped body {s}"


def test_errors_are_documented_in_the_dialect_shape(doc):
    for path, method, op in _operations(doc):
        codes = set(op["responses"])
        if path != "/health":
            assert {"401", "429"} <= codes, f"{method} {path}: {codes}"
        if method in ("post", "patch"):
            assert {"413", "422"} <= codes, f"{method} {path}: {codes}"
        if "{" in path and not path.startswith("/v2/{task}"):
            assert "404" in codes, f"{method} {path}: {codes}"
        shape = "OpenAIError" if path.startswith(("/v1/files", "/v1/fine_tuning", "/v1/models")) else "DetailError"
        for code, response in op["responses"].items():
            if code.startswith("4"):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/" + shape), f"{method} {path} {code}: {ref}"


def test_limits_are_in_the_schema(doc):
    series = doc["components"]["schemas"]["NixtlaSeries"]["properties"]
    assert series["sizes"]["items"]["minimum"] == 1 and series["y"]["minItems"] == 1
    forecast = doc["components"]["schemas"]["NixtlaForecastBody"]["properties"]
    assert forecast["h"]["minimum"] == 1

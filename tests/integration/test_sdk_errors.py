"""Errors as each dialect's own SDK reads them, through the unmodified SDKs against the real server:
the openai SDK's exceptions carry our message, `param` (the field) and `code`; the nixtla and cohere
SDKs carry the detail body naming the field. Also `models.retrieve` and `Allow` on 405."""

import cohere
import httpx
import numpy as np
import openai
import pandas as pd
import pytest
from nixtla import NixtlaClient
from nixtla._http import ApiError as NixtlaApiError

from tests.conftest import API_KEY, OTHER_KEY


@pytest.fixture(scope="module")
def oa(server):
    return openai.OpenAI(api_key=API_KEY, base_url=server.url + "/v1", max_retries=0)


def test_openai_not_found_carries_message_param_and_code(oa):
    with pytest.raises(openai.NotFoundError) as err:
        oa.files.retrieve("file-missing")
    assert "file 'file-missing' not found" in str(err.value)
    assert err.value.param == "file_id" and err.value.code == "not_found" and err.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as err:
        oa.fine_tuning.jobs.create(model="tsfm-base", training_file="file-missing")
    assert err.value.param == "training_file" and "not found" in err.value.message
    with pytest.raises(openai.NotFoundError) as err:
        oa.fine_tuning.jobs.retrieve("ftjob-missing")
    assert err.value.param == "job_id"


def test_openai_validation_error_names_the_nested_field(oa):
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oa.fine_tuning.jobs.create(model="tsfm-base", training_file="file-x", hyperparameters={"n_epochs": 0})
    assert err.value.param.startswith("hyperparameters.n_epochs"), err.value.body
    assert err.value.code and "greater than or equal to 1" in err.value.message


def test_openai_bad_key_is_an_authentication_error(server):
    bad = openai.OpenAI(api_key="wrong", base_url=server.url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.files.list()
    assert err.value.code == "unauthorized" and err.value.param == "authorization"
    assert "invalid API key" in err.value.message


def test_models_retrieve_base_alias_finetuned_and_missing(server, oa, http):
    assert oa.models.retrieve("tsfm-base").id == "tsfm-base"
    alias = oa.models.retrieve("timegpt-1")
    assert alias.id == "tsfm-base" and "timegpt-1" in alias.aliases
    body = {"series": {"y": [float(i % 7) for i in range(64)], "sizes": [64]}, "freq": "D", "finetune_steps": 2,
            "output_model_id": "sdk-errors-ft"}
    assert http.post("/v2/finetune", json=body).status_code == 200
    mine = oa.models.retrieve("sdk-errors-ft")
    assert mine.id == "sdk-errors-ft" and mine.kind == "finetuned" and mine.owned_by == "acme"
    other = openai.OpenAI(api_key=OTHER_KEY, base_url=server.url + "/v1", max_retries=0)
    for client, model in ((other, "sdk-errors-ft"), (oa, "no-such-model")):
        with pytest.raises(openai.NotFoundError) as err:
            client.models.retrieve(model)
        assert err.value.param == "model_id" and "not found" in err.value.message


def test_nixtla_sdk_error_carries_the_field(server):
    client = NixtlaClient(api_key=API_KEY, base_url=server.url, max_retries=1)
    df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=30, freq="D"),
                       "y": np.arange(30, dtype=float)})
    with pytest.raises(NixtlaApiError) as err:
        client.forecast(df, h=3, freq="D", model="no-such-model")
    assert err.value.status_code == 404
    assert err.value.body["detail"][0]["loc"] == ["query", "model"]
    assert "no-such-model" in err.value.body["detail"][0]["msg"]


def test_cohere_sdk_error_carries_the_field(server):
    co = cohere.ClientV2(api_key=API_KEY, base_url=server.url)
    with pytest.raises(cohere.NotFoundError) as err:
        co.finetuning.get_finetuned_model("no-such-model")
    assert err.value.body["detail"][0]["loc"] == ["path", "model_id"]
    assert "not found" in err.value.body["detail"][0]["msg"]


@pytest.mark.parametrize("method,path,allowed,shape", [
    ("PUT", "/v1/files/f", "DELETE, GET", "error"),
    ("PATCH", "/v1/fine_tuning/jobs", "GET, POST", "error"),
    ("PUT", "/v1/finetuning/finetuned-models/m", "DELETE, GET, PATCH", "detail"),
    ("GET", "/v2/forecast", "POST", "detail"),
])
def test_405_names_every_allowed_method(server, method, path, allowed, shape):
    r = httpx.request(method, server.url + path, headers={"authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 405 and r.headers["allow"] == allowed
    assert shape in r.json()

"""Numbers that enter the model are finite and in range or a 422 naming the field; dates, levels,
page tokens and hyperparameters likewise; forecasts and fine-tunes that go non-finite fail clearly."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from serve_apps.dialects import cohere, nixtla, nixtla_backtest, openai, tsfm
from serve_apps.dialects.numbers import MAX_ABS_VALUE, check_finite_forecast
from serve_apps.errors import ApiError
from serve_apps.storage.files import FileRecord, InvalidFile, parse_series_file
from tsfm_core.finetune import (
    FinetuneConfig,
    LoraConfig,
    NonFiniteTraining,
    make_optimizer,
    train_step,
)
from tsfm_core.model import SIZES, PatchTransformer, init_weights
from tsfm_core.predict import ForecastResult
from tsfm_core.windows import sample_batch

OUT_OF_RANGE = [1e308, -1e308, 3e38, math.inf, -math.inf, math.nan, MAX_ABS_VALUE * 1.01]


def _tsfm(target, **params):
    return {"model": "tsfm-base", "inputs": [{"target": target}], "parameters": {"prediction_length": 3, **params}}


def _loc(err: ValidationError) -> tuple:
    return err.value.errors()[0]["loc"]


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
def test_tsfm_target_and_covariates_refuse_non_finite_or_huge_values(bad):
    with pytest.raises(ValidationError) as err:
        tsfm.parse_forecast(_tsfm([[1.0], [bad], [2.0]]))
    assert _loc(err) == ("inputs", 0, "target", 1, 0)
    body = _tsfm([[1.0], [2.0]])
    body["inputs"][0]["past_covariates"] = {"x": [1.0, bad]}
    with pytest.raises(ValidationError) as err:
        tsfm.parse_forecast(body)
    assert _loc(err) == ("inputs", 0, "past_covariates", "x", 1)


def test_large_values_within_the_bound_and_nulls_are_accepted():
    body = tsfm.parse_forecast(_tsfm([[MAX_ABS_VALUE], [None], [-MAX_ABS_VALUE]]))
    assert body.inputs[0].target[1] == [None]


@pytest.mark.parametrize("field,value", [("prediction_length", True), ("prediction_length", 2.5),
                                         ("prediction_length", "3"), ("num_samples", False)])
def test_booleans_and_non_integers_are_not_counts(field, value):
    with pytest.raises(ValidationError) as err:
        tsfm.parse_forecast(_tsfm([[1.0], [2.0]], **{field: value}))
    assert _loc(err) == ("parameters", field)


@pytest.mark.parametrize("start", ["0001-01-01", "9999-12-31", "2262-04-10", "1500-01-01T00:00:00Z", "nonsense"])
def test_start_dates_outside_pandas_range_name_the_field(start):
    body = _tsfm([[1.0], [2.0]], frequency="D")
    body["inputs"][0]["start"] = start
    with pytest.raises(ApiError) as err:
        tsfm.to_request(tsfm.parse_forecast(body), ["body"], 10_000, 100)
    assert err.value.status == 422 and err.value.loc == ["body", "inputs", 0, "start"]


def test_a_start_near_the_end_of_the_range_is_fine_when_the_forecast_fits():
    body = _tsfm([[1.0], [2.0]], frequency="D")
    body["inputs"][0]["start"] = "2262-04-01"
    request = tsfm.to_request(tsfm.parse_forecast(body), ["body"], 10_000, 100)
    assert request.series[0].future_timestamps(3)[-1].year == 2262


def _nixtla(**extra):
    return {"series": {"y": [1.0, 2.0, 3.0, 4.0], "sizes": [4]}, "h": 2, **extra}


@pytest.mark.parametrize("bad", OUT_OF_RANGE + [True, "1"])
def test_nixtla_y_refuses_bad_values(bad):
    body = _nixtla()
    body["series"]["y"][2] = bad
    with pytest.raises(ValidationError) as err:
        nixtla.NixtlaForecastBody.model_validate(body)
    assert _loc(err) == ("series", "y", 2)


@pytest.mark.parametrize("key", ["X", "X_future"])
def test_nixtla_exogenous_cells_name_the_cell(key):
    body = _nixtla()
    body["series"]["X"] = [[1.0, 2.0, 3.0, 4.0]]
    body["series"]["X_future"] = [[1.0, 2.0]]
    body["series"][key][0][1] = 1e308
    with pytest.raises(ValidationError) as err:
        nixtla.NixtlaForecastBody.model_validate(body)
    assert _loc(err) == ("series", key, 0, 1)
    body["series"][key][0][1] = "red"  # a category: valid JSON, refused by the converter naming the cell
    parsed = nixtla.NixtlaForecastBody.model_validate(body)
    with pytest.raises(ApiError) as err:
        nixtla.to_forecast_request(parsed, 100)
    assert err.value.loc == ["body", "series", key, 0, 1]


def test_nixtla_h_true_is_not_one():
    with pytest.raises(ValidationError) as err:
        nixtla.NixtlaForecastBody.model_validate(_nixtla(h=True))
    assert _loc(err) == ("h",)


@pytest.mark.parametrize("level", [99.99999999999999, 100, -1, math.inf])
def test_levels_whose_interval_leaves_zero_one_are_refused(level):
    with pytest.raises(ValidationError) as err:
        nixtla.NixtlaForecastBody.model_validate(_nixtla(level=[80, level]))
    assert _loc(err)[:2] == ("level", 1)
    with pytest.raises(ValidationError) as err:
        nixtla_backtest.AnomalyDetectionBody.model_validate({**_nixtla(), "level": level})
    assert _loc(err)[0] == "level"


def test_levels_keep_the_spelling_they_were_sent_in():
    body = nixtla.NixtlaForecastBody.model_validate(_nixtla(level=[80, 99.5]))
    assert body.level == [80, 99.5] and isinstance(body.level[0], int)


@pytest.mark.parametrize("token", ["²", "٣", "-1", "1.5", "abc"])
def test_cohere_page_tokens_must_be_ascii_offsets(token):
    with pytest.raises(ApiError) as err:
        cohere.token_page(list(range(5)), 2, token)
    assert err.value.status == 422 and err.value.loc == ["query", "page_token"]
    assert cohere.token_page(list(range(5)), 2, "2") == ([2, 3], "4")


def _file(n_points=64_000):
    return FileRecord(id="f", organization="o", filename="s.csv", purpose="fine-tune", bytes=1, created_at=0.0,
                      deleted_at=None, n_series=1, n_points=n_points, path="/tmp/x")


def test_openai_steps_beyond_the_limit_are_a_422_not_a_silent_cap():
    h = openai.Hyperparameters(steps=10**9)
    with pytest.raises(ApiError) as err:
        openai.training_spec(h, _file(), "tsfm-base", 0, 32, max_steps=20_000, loc=["body", "hyperparameters"])
    assert err.value.status == 422 and err.value.loc == ["body", "hyperparameters", "steps"]
    with pytest.raises(ApiError) as err:
        openai.training_spec(openai.Hyperparameters(n_epochs=100), _file(), "tsfm-base", 0, 32, max_steps=10)
    assert err.value.loc[-1] == "n_epochs"
    # The server's own 'auto' epochs are fitted into the limit.
    assert openai.training_spec(openai.Hyperparameters(), _file(), "tsfm-base", 0, 32, max_steps=10).steps == 10


@pytest.mark.parametrize("field,value", [("lora_alpha", 1e308), ("lora_alpha", 0), ("lora_alpha", math.inf),
                                         ("learning_rate_multiplier", 1e308), ("steps", True), ("lora_rank", 1.5)])
def test_openai_hyperparameters_have_bounds(field, value):
    with pytest.raises(ValidationError) as err:
        openai.JobCreate.model_validate({"model": "m", "training_file": "f", "hyperparameters": {field: value}})
    assert _loc(err)[:2] == ("hyperparameters", field)


@pytest.mark.parametrize("field,value", [("lora_alpha", 10**9), ("learning_rate", 1e308), ("train_epochs", True)])
def test_cohere_hyperparameters_have_bounds(field, value):
    with pytest.raises(ValidationError) as err:
        cohere.FinetunedModelBody.model_validate({"name": "m", "settings": {
            "base_model": {}, "dataset_id": "f", "hyperparameters": {field: value}}})
    assert _loc(err)[:3] == ("settings", "hyperparameters", field)


def test_core_configs_refuse_unbounded_hyperparameters():
    with pytest.raises(ValueError):
        LoraConfig(rank=4, alpha=1e308)
    with pytest.raises(ValueError):
        FinetuneConfig(learning_rate=math.nan)


@pytest.mark.parametrize("cell", ["inf", "1e308", "-3e38", "1e400"])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_uploaded_files_with_huge_values_are_refused_naming_the_column(cell, fmt):
    if fmt == "csv":
        name, content = "s.csv", f"unique_id,y\na,1\na,{cell}\na,3\n".encode()
    else:
        name, content = "s.jsonl", f'{{"unique_id": "a", "y": 1}}\n{{"unique_id": "a", "y": {cell}}}\n'.encode()
        if cell == "inf":
            content = content.replace(b"inf", b"Infinity")
    with pytest.raises(InvalidFile, match="column 'y' row 1"):
        parse_series_file(name, content)


def test_a_file_with_missing_values_is_still_fine():
    series = parse_series_file("s.csv", b"unique_id,y\na,1\na,\na,1e29\n")
    assert np.isnan(series["a"][1]) and series["a"][2] == np.float32(1e29)


def test_a_non_finite_forecast_is_an_error_naming_the_series():
    ok = ForecastResult(median=np.ones((2, 1)), quantiles=np.ones((3, 2, 1)), levels=[0.1, 0.5, 0.9])
    check_finite_forecast(ok, ["body", "inputs", 0])
    bad = ForecastResult(median=np.array([[1.0], [np.inf]]), quantiles=np.ones((3, 2, 1)), levels=[0.1, 0.5, 0.9])
    with pytest.raises(ApiError) as err:
        check_finite_forecast(bad, ["body", "inputs", 1])
    assert err.value.status == 422 and err.value.loc == ["body", "inputs", 1]


def test_a_diverging_train_step_raises_instead_of_returning():
    """An absurd learning rate (beyond what any config accepts) drives the weights to inf: the step
    that did it raises, so no trainer can checkpoint or mark the model ready."""
    model = PatchTransformer(SIZES["tiny"])
    init_weights(model, seed=0)
    series = [np.sin(np.arange(400) / 5).astype(np.float32) * 10]
    batch = sample_batch(series, 8, model.config, np.random.default_rng(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e38)
    with pytest.raises(NonFiniteTraining, match="not finite|loss is"):
        for _ in range(5):
            train_step(model, optimizer, batch, "default")
    sane = PatchTransformer(SIZES["tiny"])
    init_weights(sane, seed=0)
    assert math.isfinite(train_step(sane, make_optimizer(sane, 1e-3), batch, "default"))

"""Chronos, Chronos-Bolt and Chronos-2 checkpoints through tsfm_core.third_party.

Each test builds a tiny randomly initialised checkpoint with the package's own config and model
classes (`save_pretrained` into tmp_path) and loads it back through our loader: the forecasts are
meaningless, but every shape, level, batch and horizon path of the real checkpoints is exercised.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from tests.third_party_checkpoints import BUILDERS, CONTEXT, PREDICTION, bolt, chronos2, chronos_t5
from tsfm_core import third_party
from tsfm_core.predict import ForecastRequest
from tsfm_core.series import Series


@pytest.fixture(params=sorted(BUILDERS))
def checkpoint(request, tmp_path):
    """(family, directory, the torch model that was saved) for each Chronos family."""
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    import torch

    torch.manual_seed(0)
    model = BUILDERS[request.param](tmp_path)
    return request.param, tmp_path, model


def _series(rng):
    # Shorter than one patch, inside the context, and longer than it (truncated).
    return [Series(rng.normal(10, 2, n).cumsum()) for n in (7, 40, 100)]


def test_loads_detects_and_describes(checkpoint):
    family, directory, model = checkpoint
    assert third_party.detect_family(directory) == family
    forecaster = third_party.load(directory)
    info = forecaster.describe()
    assert info.family == family
    assert info.parameters == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    assert info.context_length == forecaster.max_context == CONTEXT
    assert info.max_horizon == PREDICTION
    assert 0.5 in info.quantiles and list(info.quantiles) == sorted(info.quantiles)
    assert info.sampling is (family == "chronos")
    assert json.dumps(info.to_dict())  # the catalog serves it as JSON
    assert third_party.describe(directory) == info  # the catalog's read, without loading the weights


@pytest.mark.parametrize("horizon", [5, PREDICTION + 3])  # one pass, and the package's long-horizon rollout
def test_forecasts_three_series(checkpoint, horizon):
    _, directory, _ = checkpoint
    forecaster = third_party.load(directory)
    levels = [0.025, 0.1, 0.5, 0.9, 0.975]  # the outer two lie outside Chronos-Bolt's trained 0.1..0.9
    results = forecaster.forecast(_series(np.random.default_rng(0)), horizon, levels)
    assert len(results) == 3
    for r in results:
        assert r.median.shape == (horizon, 1)
        assert r.quantiles.shape == (len(levels), horizon, 1)
        assert r.trained.shape == (len(forecaster.trained_levels), horizon, 1)
        assert np.isfinite(r.quantiles).all() and np.isfinite(r.median).all()
        assert (np.diff(r.quantiles, axis=0) >= -1e-9).all()  # no crossing, extrapolated levels included
        np.testing.assert_allclose(r.quantiles[2], r.median, rtol=1e-6, atol=1e-6)
    assert [r.truncated_from for r in results] == [None, None, 100]


def test_requests_share_a_pass_without_changing_answers(checkpoint):
    """forecast_many (the engine's batched call) answers each request as it would be answered alone."""
    family, directory, _ = checkpoint
    forecaster = third_party.load(directory)
    rng = np.random.default_rng(1)
    first, second = _series(rng), [Series(rng.normal(size=(30, 2)))]  # the second is bivariate
    together = forecaster.forecast_many([
        ForecastRequest(first, 4, [0.1, 0.9]),
        ForecastRequest(second, 12, [0.5]),
    ])
    assert together[1][0].median.shape == (12, 2)
    assert together[0][2].quantiles.shape == (2, 4, 1)
    if family == "chronos":  # the original samples: in a shared pass its series draw other random numbers
        return
    for answers, (series, horizon, levels) in zip(together, [(first, 4, [0.1, 0.9]), (second, 12, [0.5])]):
        for shared, alone in zip(answers, forecaster.forecast(series, horizon, levels)):
            np.testing.assert_allclose(shared.quantiles, alone.quantiles, rtol=1e-4, atol=1e-4)


def test_sampling_chronos_is_reproducible(tmp_path):
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    import torch

    torch.manual_seed(0)
    chronos_t5(tmp_path)
    forecaster = third_party.load(tmp_path)
    series = _series(np.random.default_rng(2))[1:2]
    a, b = forecaster.forecast(series, 8, [0.1, 0.9]), forecaster.forecast(series, 8, [0.1, 0.9])
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.quantiles, y.quantiles)
        assert x.mean is not None and x.mean.shape == (8, 1)


def test_covariates_are_regressed_like_our_own_model(tmp_path):
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    bolt(tmp_path)
    forecaster = third_party.load(tmp_path, family="chronos-bolt")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 1))
    series = Series(3 * x[:48, 0] + rng.normal(0, 0.1, 48), past_covariates=x[:48], future_covariates=x[48:],
                    covariate_names=["x"])
    result = forecaster.forecast([series], 12, [0.5])[0]
    assert result.covariate_weights.shape == (1, 1) and result.covariate_weights[0, 0] > 0
    assert result.covariate_contributions.shape == (12, 1, 1)


def test_refuses_what_it_cannot_load(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        third_party.load(tmp_path / "absent")
    with pytest.raises(ValueError, match="no Chronos or TimesFM"):
        third_party.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"chronos_pipeline_class": "ChronosBoltPipeline"}))
    assert third_party.detect_family(tmp_path) == "chronos-bolt"
    with pytest.raises(ValueError, match="holds a chronos-bolt checkpoint, not timesfm-2.5"):
        third_party.load(tmp_path, family="timesfm-2.5")
    monkeypatch.setitem(sys.modules, "chronos", None)  # as without the extra
    with pytest.raises(third_party.MissingExtra, match=r"tsfm-cluster\[chronos\]"):
        third_party.load(tmp_path)


def test_chronos2_reads_channels_and_covariates_itself(tmp_path):
    pytest.importorskip("chronos", reason="the `chronos` extra is not installed")
    import torch

    torch.manual_seed(0)
    chronos2(tmp_path)
    forecaster = third_party.load(tmp_path)
    assert forecaster.describe().covariates == forecaster.describe().multivariate == "native"
    rng = np.random.default_rng(4)
    x = rng.normal(size=(50, 2))
    y = rng.normal(size=(40, 2)).cumsum(axis=0)

    def series(future):
        return Series(y, past_covariates=x[:40], future_covariates=future, covariate_names=["a", "b"])

    past_only = Series(y[:, 0], past_covariates=x[:40], covariate_names=["a", "b"])
    known, changed, unknown = forecaster.forecast([series(x[40:]), series(x[40:] + 5), past_only], 10, [0.1, 0.9])
    assert known.quantiles.shape == changed.quantiles.shape == (2, 10, 2)
    assert unknown.quantiles.shape == (2, 10, 1)
    assert known.covariate_weights is None  # no regression: the model reads the covariates
    assert not np.allclose(known.median, changed.median)  # the future covariates reach the model
    assert all(np.isfinite(r.quantiles).all() and (np.diff(r.quantiles, axis=0) >= 0).all()
               for r in (known, changed, unknown))


def test_catalog_adapter_finds_installed_weights(checkpoint, tmp_path_factory):
    from serve_apps.models import third_party as catalog_adapter

    family, directory, _ = checkpoint
    root = tmp_path_factory.mktemp("models")
    (root / "amazon").mkdir()
    (root / "amazon" / "chronos-x").symlink_to(directory, target_is_directory=True)
    assert catalog_adapter.installed("amazon/chronos-x", root, family) == root / "amazon" / "chronos-x"
    assert catalog_adapter.installed("amazon/chronos-x", root, "timesfm") is None  # another family's weights
    assert catalog_adapter.installed("amazon/absent", root) is None
    card = catalog_adapter.card_fields(root / "amazon" / "chronos-x")
    assert card["family"] == family and card["loadable"] is True
    assert card["context_length"] == CONTEXT and card["native_horizon"] == PREDICTION
    forecaster = catalog_adapter.load(root / "amazon" / "chronos-x", family)
    assert forecaster.forecast([Series(np.arange(20.0))], 3, [0.5])[0].median.shape == (3, 1)

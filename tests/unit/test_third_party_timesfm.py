"""TimesFM 2.5 checkpoints through tsfm_core.third_party.

The package fixes TimesFM 2.5's architecture at 200M parameters (a class-level definition), so the
tests swap in a tiny definition of the same shape rules (patch 8, output patch 16, quantile head 32
steps, one layer of width 32) for both writing and loading the random checkpoint: everything else,
from `load_checkpoint` to the package's decode and its flags, is the package's own code.
"""

from __future__ import annotations

import numpy as np
import pytest

from tsfm_core import third_party
from tsfm_core.predict import ForecastRequest
from tsfm_core.series import Series

PATCH, OUTPUT, QUANTILE_HEAD = 8, 16, 32


@pytest.fixture
def checkpoint(tmp_path, monkeypatch):
    """(directory, the saved torch module) of a tiny random TimesFM 2.5."""
    pytest.importorskip("timesfm", reason="the `timesfm` extra is not installed")
    pytest.importorskip("torch")
    import torch
    from timesfm import configs
    from timesfm.timesfm_2p5 import timesfm_2p5_base, timesfm_2p5_torch

    width, n_outputs = 32, 10  # the mean and 9 quantiles per step
    tiny = timesfm_2p5_base.TimesFM_2p5_200M_Definition(
        input_patch_len=PATCH, output_patch_len=OUTPUT, output_quantile_len=QUANTILE_HEAD,
        tokenizer=configs.ResidualBlockConfig(2 * PATCH, width, width, True, "swish"),
        stacked_transformers=configs.StackedTransformersConfig(1, configs.TransformerConfig(
            width, width, 2, "rms", "rms", "rms", False, True, "swish", True)),
        output_projection_point=configs.ResidualBlockConfig(width, width, OUTPUT * n_outputs, False, "swish"),
        output_projection_quantiles=configs.ResidualBlockConfig(width, width, QUANTILE_HEAD * n_outputs, False,
                                                                "swish"),
    )
    monkeypatch.setattr(timesfm_2p5_torch.TimesFM_2p5_200M_torch_module, "config", tiny)
    torch.manual_seed(0)
    model = timesfm_2p5_torch.TimesFM_2p5_200M_torch(torch_compile=False)
    model.save_pretrained(tmp_path)
    return tmp_path, model.model


def _series(rng):
    return [Series(rng.normal(10, 2, n).cumsum()) for n in (7, 40, 100)]


def test_loads_detects_and_describes(checkpoint):
    directory, module = checkpoint
    assert third_party.detect_family(directory) == "timesfm-2.5"
    forecaster = third_party.load(directory, context_length=60)
    info = forecaster.describe()
    assert info.family == "timesfm-2.5" and info.package.startswith("timesfm ")
    assert info.parameters == sum(p.numel() for p in module.parameters())
    assert info.context_length == forecaster.max_context == 64  # rounded up to whole input patches
    assert info.max_horizon == OUTPUT
    assert info.quantiles == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert third_party.describe(directory).parameters == info.parameters  # read without loading the weights
    assert third_party.load_forecaster("timesfm", directory).max_context == 1024  # the catalog's family name


@pytest.mark.parametrize("horizon", [5, QUANTILE_HEAD + 8])  # past the continuous quantile head too
def test_forecasts_three_series(checkpoint, horizon):
    directory, _ = checkpoint
    forecaster = third_party.load(directory, family="timesfm-2.5", context_length=64)
    levels = [0.025, 0.1, 0.5, 0.9, 0.975]
    results = forecaster.forecast(_series(np.random.default_rng(0)), horizon, levels)
    assert len(results) == 3
    for r in results:
        assert r.median.shape == r.mean.shape == (horizon, 1)
        assert r.quantiles.shape == (len(levels), horizon, 1)
        assert np.isfinite(r.quantiles).all() and np.isfinite(r.mean).all()
        assert (np.diff(r.quantiles, axis=0) >= -1e-9).all()
    assert [r.truncated_from for r in results] == [None, None, 100]


def test_requests_share_a_pass_without_changing_answers(checkpoint):
    directory, _ = checkpoint
    forecaster = third_party.load(directory, context_length=64)
    rng = np.random.default_rng(1)
    first, second = _series(rng), [Series(rng.normal(size=(30, 2)))]
    together = forecaster.forecast_many([ForecastRequest(first, 4, [0.1, 0.9]), ForecastRequest(second, 20, [0.5])])
    alone = forecaster.forecast(second, 20, [0.5])
    assert together[1][0].median.shape == (20, 2) and together[0][1].quantiles.shape == (2, 4, 1)
    np.testing.assert_allclose(together[1][0].quantiles, alone[0].quantiles, rtol=1e-4, atol=1e-4)


def test_missing_values_and_too_long_horizons(checkpoint):
    directory, _ = checkpoint
    forecaster = third_party.load(directory, context_length=64)
    y = np.random.default_rng(2).normal(size=50)
    y[[0, 1, 20, 49]] = np.nan  # leading, inner and trailing gaps
    result = forecaster.forecast([Series(y), Series(np.full(10, np.nan))], 6, [0.1, 0.9])
    assert all(np.isfinite(r.quantiles).all() for r in result)
    with pytest.raises(ValueError, match="at most 16384"):
        forecaster.forecast([Series(y)], 16384, [0.5])

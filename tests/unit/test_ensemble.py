"""The backtest-driven `auto` ensemble (tsfm_core.ensemble): selection, weighting, calibration, errors."""

import numpy as np
import pytest

from tsfm_core.backtest import WindowError
from tsfm_core.checkpoint import BASE_MODEL_DIR, load_model
from tsfm_core.ensemble import EnsembleConfig, apply_scales, conformal_scales, ensemble_forecast, select_weights
from tsfm_core.predict import Forecaster
from tsfm_core.series import Series
from tsfm_core.statistical import StatisticalForecaster


def test_select_weights_keeps_the_top_n_per_series():
    scores = np.array([[0.5, 0.2, 0.9], [np.nan, 1.0, 3.0], [np.nan, np.nan, np.nan]])
    equal = select_weights(scores, top_n=2, weighting="equal")
    np.testing.assert_allclose(equal, [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    inverse = select_weights(scores, top_n=2, weighting="inverse_score")
    np.testing.assert_allclose(inverse[0], [2 / 7, 5 / 7, 0.0])  # 1/0.5 : 1/0.2
    np.testing.assert_allclose(inverse[1], [0.0, 0.75, 0.25])
    np.testing.assert_allclose(select_weights(scores, 1, "equal")[0], [0.0, 1.0, 0.0])


def test_conformal_scales_widen_bands_that_were_too_narrow():
    rng = np.random.default_rng(0)
    levels = [0.1, 0.5, 0.9]
    point = np.zeros((500, 1, 8))
    z = 1.2815515655446004
    band = np.stack([point - z, point, point + z], axis=2)  # a unit-sigma 80% band [U, W, L, H]
    backtest = np.concatenate([point[:, :, None], band], axis=2)
    actual = rng.normal(0, 2.0, (500, 1, 8))  # the truth has twice the spread
    scales = conformal_scales(backtest, actual, levels, min_points=200)
    assert 0.5 not in scales
    assert scales[0.1] == pytest.approx(2.0, rel=0.1) and scales[0.9] == pytest.approx(2.0, rel=0.1)
    fixed = apply_scales(backtest, levels, scales)
    inside = np.mean((actual >= fixed[:, :, 1]) & (actual <= fixed[:, :, 3]))
    assert inside == pytest.approx(0.8, abs=0.02)
    assert conformal_scales(backtest[:10], actual[:10], levels, min_points=200) == {}


def _seasonal(n, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 20 + 8 * np.sin(2 * np.pi * t / 12) + 0.1 * t + rng.normal(0, 0.3, n)


def test_a_model_that_wins_the_backtest_answers_alone_with_top_n_1():
    # An exactly repeating pattern: seasonal naive has zero backtest error and must be chosen.
    exact = np.tile([3.0, 9.0, 4.0, 12.0, 6.0, 1.0], 8)
    series = [Series(exact, freq="MS"), Series(_seasonal(60, 1), freq="MS")]
    config = EnsembleConfig(statistical=("SeasonalNaive", "AutoTheta"), top_n=1, calibrate=False)
    out = ensemble_forecast(series, 6, [0.1, 0.5, 0.9], config=config, season_length=6, n_jobs=1)
    first = out.selections[0][0]
    assert first.weights == {"SeasonalNaive": 1.0} and first.scores["SeasonalNaive"] == 0.0
    alone = StatisticalForecaster("SeasonalNaive", season_length=6, n_jobs=1).forecast(series[:1], 6, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(out.results[0].quantiles, alone[0].quantiles)
    assert out.results[0].model == "auto(SeasonalNaive)"
    assert set(out.selections[1][0].scores) == {"SeasonalNaive", "AutoTheta"}


def test_ensemble_with_the_transformer_averages_per_channel():
    forecaster = Forecaster(load_model(BASE_MODEL_DIR))
    two_channels = np.stack([_seasonal(60, 2), _seasonal(60, 3) * 10], axis=1)
    series = [Series(_seasonal(48, 4), freq="MS"), Series(two_channels, freq="MS")]
    config = EnsembleConfig(statistical=("SeasonalNaive", "AutoTheta"), top_n=2, n_windows=2)
    out = ensemble_forecast(series, 6, [0.1, 0.5, 0.9], {"tsfm-base": forecaster}, config, n_jobs=1)
    assert [len(s) for s in out.selections] == [1, 2]
    for result, selections in zip(out.results, out.selections):
        assert np.isfinite(result.quantiles).all() and (np.diff(result.quantiles, axis=0) >= 0).all()
        for sel in selections:
            assert set(sel.scores) == {"tsfm-base", "SeasonalNaive", "AutoTheta"}
            assert len(sel.weights) == 2 and sum(sel.weights.values()) == pytest.approx(1.0)
            ranked = sorted(sel.scores, key=sel.scores.get)
            assert set(sel.weights) == set(ranked[:2])
    assert out.results[1].quantiles.shape == (3, 6, 2)


def test_series_too_short_to_backtest_name_the_series():
    series = [Series(_seasonal(40, 5)), Series(np.arange(8.0))]
    with pytest.raises(WindowError) as exc:
        ensemble_forecast(series, 6, config=EnsembleConfig(statistical=("SeasonalNaive",)), n_jobs=1)
    assert exc.value.series == 1 and "needs at least 9" in str(exc.value)
    with_covariates = Series(_seasonal(40, 5), past_covariates=np.ones((40, 1)), future_covariates=np.ones((6, 1)))
    with pytest.raises(ValueError, match="covariates"):
        ensemble_forecast([with_covariates], 6, n_jobs=1)
    with pytest.raises(ValueError, match="scoring_metric"):
        EnsembleConfig(scoring_metric="R2")
    with pytest.raises(ValueError, match="lean_ets_from"):
        EnsembleConfig(lean_ets_from=1)

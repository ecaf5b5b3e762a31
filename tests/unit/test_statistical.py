"""Statistical models behind the forecaster interface (tsfm_core.statistical, tsfm_core.seasonality)."""

import warnings

import numpy as np
import pytest

from tsfm_core.predict import ForecastResult
from tsfm_core.seasonality import season_length
from tsfm_core.series import Series
from tsfm_core.statistical import (
    FALLBACK,
    StatisticalForecaster,
    StatisticalInputError,
    clean_history,
    forecast_unit,
    seasonal_naive,
)

LEVELS = [0.1, 0.5, 0.9]


def _seasonal(n=72, seed=0, period=12):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 0.2 * t + 5 * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.5, n)


@pytest.mark.parametrize("freq,expected", [("MS", 12), ("ME", 12), ("QS", 4), ("W-SUN", 52), ("D", 7), ("h", 24),
                                           ("6h", 4), ("15min", 4), ("YS", 1), ("7D", 1), (None, 1), ("nonsense", 1)])
def test_season_length_from_freq(freq, expected):
    assert season_length(freq) == expected


def test_clean_history_keeps_the_forecast_origin():
    y = clean_history(np.array([np.nan, np.nan, 1.0, np.nan, 3.0, 4.0, np.nan]))
    np.testing.assert_allclose(y, [1.0, 2.0, 3.0, 4.0, 4.0])
    with pytest.raises(ValueError):
        clean_history(np.array([np.nan, np.nan]))


def test_quantiles_are_the_models_prediction_intervals():
    from statsforecast.models import AutoETS

    y = _seasonal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = AutoETS(season_length=12).forecast(y=y, h=6, level=[80])
    [r] = StatisticalForecaster("AutoETS", n_jobs=1).forecast([Series(y, freq="MS")], 6, LEVELS)
    assert isinstance(r, ForecastResult) and r.model == "AutoETS"
    assert r.quantiles.shape == (3, 6, 1) and r.median.shape == (6, 1) and r.mean.shape == (6, 1)
    np.testing.assert_allclose(r.quantiles[0, :, 0], expected["lo-80"], rtol=1e-6)
    np.testing.assert_allclose(r.quantiles[2, :, 0], expected["hi-80"], rtol=1e-6)
    np.testing.assert_allclose(r.quantiles[1, :, 0], expected["mean"], rtol=1e-6)
    np.testing.assert_allclose(r.median, r.mean)


@pytest.mark.parametrize("name", ["SeasonalNaive", "AutoETS", "AutoTheta", "AutoARIMA", "CrostonOptimized", "ADIDA"])
def test_every_model_answers_every_kind_of_series(name):
    rng = np.random.default_rng(1)
    series = [
        Series(_seasonal(60), freq="MS"),
        Series(np.full(30, 7.0), freq="MS"),  # constant
        Series(np.array([3.0])),  # one point
        Series(np.array([np.nan, 1.0, 2.0, np.nan, 4.0, 5.0, np.nan, 6.0])),  # gaps
        Series(rng.poisson(0.3, 50).astype(float), freq="D"),  # intermittent
        Series(np.stack([_seasonal(40), _seasonal(40, seed=2)], axis=1), freq="MS"),  # two channels
    ]
    results = StatisticalForecaster(name, n_jobs=1).forecast(series, 5, [0.05, 0.5, 0.95])
    assert len(results) == len(series)
    for s, r in zip(series, results):
        assert r.quantiles.shape == (3, 5, s.n_channels)
        assert np.isfinite(r.quantiles).all() and np.isfinite(r.median).all()
        assert (np.diff(r.quantiles, axis=0) >= 0).all()
    # A constant series is forecast exactly, by the fallback that says so.
    np.testing.assert_allclose(results[1].quantiles, 7.0)
    assert results[1].model == FALLBACK and results[2].model == FALLBACK
    if name in ("CrostonOptimized", "ADIDA"):
        assert (results[4].quantiles >= 0).all()


def test_a_series_without_observations_is_a_typed_error():
    with pytest.raises(StatisticalInputError) as exc:
        StatisticalForecaster("AutoTheta", n_jobs=1).forecast([Series(_seasonal()), Series(np.full(5, np.nan))], 3)
    assert exc.value.series == 1
    with pytest.raises(ValueError):
        StatisticalForecaster("Prophet")


def test_season_length_comes_from_freq_unless_fixed():
    y = np.tile([1.0, 5.0, 2.0, 8.0], 6)
    by_freq = StatisticalForecaster("SeasonalNaive", n_jobs=1).forecast([Series(y, freq="QS")], 4)[0]
    np.testing.assert_allclose(by_freq.median[:, 0], [1.0, 5.0, 2.0, 8.0])
    fixed = StatisticalForecaster("SeasonalNaive", season_length=1, n_jobs=1).forecast([Series(y, freq="QS")], 4)[0]
    np.testing.assert_allclose(fixed.median[:, 0], 8.0)


def test_worker_processes_give_the_same_forecasts():
    series = [Series(_seasonal(48, seed=k), freq="MS") for k in range(10)]
    one = StatisticalForecaster("AutoTheta", n_jobs=1).forecast(series, 4, LEVELS)
    two = StatisticalForecaster("AutoTheta", n_jobs=2).forecast(series, 4, LEVELS)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a.quantiles, b.quantiles)


def test_backtests_reuse_the_chosen_specification_on_the_past_only():
    from statsforecast.models import AutoETS

    y = _seasonal(80)
    unit = forecast_unit("AutoETS", y, 12, 6, LEVELS, cutoffs=(68, 74))
    assert len(unit.backtests) == 2 and unit.values.shape == (4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = AutoETS(season_length=12).fit(y)
        error, trend, season, damped = full.model_["components"][:4]
        past = AutoETS(season_length=12, model=error + trend + season, damped=damped == "D").fit(y[:68])
        expected = past.predict(h=6)["mean"]
    np.testing.assert_allclose(unit.backtests[0][0], expected, rtol=1e-6)
    np.testing.assert_allclose(unit.values[0], full.predict(h=6)["mean"], rtol=1e-6)


def test_seasonal_naive_fallback_widens_with_each_season():
    block = seasonal_naive(np.tile([0.0, 10.0], 5) + np.arange(10), 2, 4, [0.1, 0.9])
    np.testing.assert_allclose(block[0], [8.0, 19.0, 8.0, 19.0])
    width = block[2] - block[1]
    assert width[0] == pytest.approx(width[1]) and width[2] == pytest.approx(width[0] * np.sqrt(2))


def test_shared_decompositions_change_no_forecast_and_skip_repeats(monkeypatch):
    # An AutoETS search decomposes the same history once per seasonal candidate; the shared cache
    # must answer exactly what statsmodels answers, call it once per distinct input, then step aside.
    from statsforecast import ets, theta

    from tsfm_core.statistical import _forecast_chunk

    y = np.abs(_seasonal(n=60, seed=3)) + 10
    plain = forecast_unit("AutoETS", y, 12, 6, LEVELS, (48,))
    theta_before = theta.seasonal_decompose
    original, calls = ets.seasonal_decompose, []
    monkeypatch.setattr(ets, "seasonal_decompose", lambda *a, **k: calls.append(k.get("model")) or original(*a, **k))
    patched = ets.seasonal_decompose
    [shared] = _forecast_chunk(([("AutoETS", y, 12, (48,))], 6, LEVELS, None))
    assert ets.seasonal_decompose is patched and theta.seasonal_decompose is theta_before  # restored on exit
    np.testing.assert_array_equal(shared.values, plain.values)
    np.testing.assert_array_equal(shared.backtests[0], plain.backtests[0])
    assert shared.model == plain.model
    # Additive and multiplicative decompositions of the full history, then the backtest's refit.
    assert 2 <= len(calls) <= 4


def test_forecast_models_in_one_pool_match_one_model_at_a_time():
    from tsfm_core.statistical import forecast_models, forecast_units

    jobs = [(_seasonal(n=40 + 2 * k, seed=k), 4, (30 + 2 * k,)) for k in range(8)]
    together = forecast_models(["AutoTheta", "SeasonalNaive"], jobs, 4, LEVELS, n_jobs=2)  # 8 costly pairs: a pool
    for name in ("AutoTheta", "SeasonalNaive"):
        alone = forecast_units(name, jobs, 4, LEVELS, n_jobs=1)
        assert [u.model for u in together[name]] == [u.model for u in alone]
        for a, b in zip(together[name], alone):
            np.testing.assert_allclose(a.values, b.values)
            np.testing.assert_allclose(a.backtests[0], b.backtests[0])
    with pytest.raises(ValueError):
        forecast_models(["AutoETS", "Prophet"], jobs, 4, LEVELS)


def test_lean_ets_search_keeps_the_better_half_and_only_for_long_seasons():
    from statsforecast.models import AutoETS

    from tsfm_core.statistical import LeanETSSearch

    y = np.abs(_seasonal(n=60, seed=5)) + 10
    lean = LeanETSSearch(12).fit(y)
    halves = [AutoETS(season_length=12, model=spec).fit(y=y).model_["aicc"] for spec in ("ZZN", "ZNZ")]
    assert lean.model_["aicc"] == min(halves)
    _, trend, seasonal = lean.model_["components"][:3]
    assert trend == "N" or seasonal == "N"  # never a trend+season model
    lean_unit = forecast_unit("AutoETS", y, 12, 6, LEVELS, (48,), lean_ets_from=12)
    np.testing.assert_allclose(lean_unit.values[0], lean.predict(h=6)["mean"])
    # A season shorter than `lean_ets_from` gets the full search, exactly as without the option.
    full = forecast_unit("AutoETS", y, 12, 6, LEVELS, (48,))
    np.testing.assert_array_equal(forecast_unit("AutoETS", y, 12, 6, LEVELS, (48,), lean_ets_from=13).values,
                                  full.values)

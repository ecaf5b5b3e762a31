"""Conformally calibrated statistical models (tsfm_core.conformal_statistical)."""

import numpy as np

from tsfm_core.conformal_statistical import (
    CONFORMAL_SUFFIX,
    ConformalStatistical,
    calibrate_units,
)
from tsfm_core.ensemble import apply_scales
from tsfm_core.series import Series
from tsfm_core.statistical import StatisticalForecaster, UnitForecast

LEVELS = [0.1, 0.5, 0.9]


def _units(n, horizon, noise, seed=0):
    """n units whose bands are +-1 around a zero point forecast, and histories whose last
    `horizon` points (the backtest's actuals) are N(0, noise)."""
    rng = np.random.default_rng(seed)
    block = np.array([np.zeros(horizon), -np.ones(horizon), np.zeros(horizon), np.ones(horizon)])
    histories = [np.concatenate([np.zeros(20), rng.normal(0, noise, horizon)]) for _ in range(n)]
    return [UnitForecast(block.copy(), (block.copy(),), "AutoETS") for _ in range(n)], histories


def test_pooled_scales_make_the_backtest_band_cover_its_level():
    units, histories = _units(40, 10, noise=3.0)
    raw_cover = np.mean([np.abs(y[-10:]) <= 1 for y in histories])
    out = calibrate_units(units, histories, [1] * len(units), 10, LEVELS, min_points=50)
    assert raw_cover < 0.5  # the raw 80% band under-covers badly
    for u, c in zip(units, out):
        np.testing.assert_array_equal(c.values[0], u.values[0])  # the point forecast is untouched
        np.testing.assert_array_equal(c.values[2], u.values[2])  # and so is the median
        assert c.model == "AutoETS" + CONFORMAL_SUFFIX and (c.values[3] - c.values[1] > 2).all()
    # Below/above the calibrated band: each at most 10% of the backtest (the empirical quantile's guarantee).
    lo, hi = out[0].values[1], out[0].values[3]
    actual = np.stack([y[-10:] for y in histories])
    assert np.mean(actual < lo) <= 0.1 + 1e-9 and np.mean(actual > hi) <= 0.1 + 1e-9
    assert np.mean((actual >= lo) & (actual <= hi)) >= 0.79


def test_too_few_points_or_no_backtest_keep_the_raw_bands():
    units, histories = _units(3, 10, noise=3.0)
    assert calibrate_units(units, histories, [1] * len(units), 10, LEVELS, min_points=50) == units  # 30 points < 50
    units[1] = UnitForecast(units[1].values, (), "AutoETS")  # too short to backtest
    out = calibrate_units(units, histories, [1] * len(units), 10, LEVELS, min_points=10)
    assert out[1] is units[1] and out[0].model.endswith(CONFORMAL_SUFFIX)
    np.testing.assert_array_equal(out[0].values, apply_scales(units[0].values, LEVELS, _scales_of(out[0], units[0])))


def _scales_of(calibrated, raw):
    return {q: float((calibrated.values[1 + k] - calibrated.values[0])[0] / (raw.values[1 + k] - raw.values[0])[0])
            for k, q in enumerate(LEVELS) if q != 0.5}


def test_a_models_bands_widen_where_the_last_window_is_noisier_than_its_fit():
    # Calm histories whose last 12 points turn volatile: the model's own 80% band, fitted on the calm
    # part, misses most of the backtest window, so the calibrated band must be wider.
    rng = np.random.default_rng(1)
    series = [Series(np.concatenate([10 + rng.normal(0, 0.2, 48), 10 + rng.normal(0, 2.0, 12)])) for _ in range(6)]
    series.append(Series(10 + rng.normal(0, 0.2, 8)))  # too short to backtest a 6-step window
    raw = StatisticalForecaster("SeasonalNaive", n_jobs=1).forecast(series, 6, LEVELS)
    cal = ConformalStatistical("SeasonalNaive", n_jobs=1, min_calibration_points=30).forecast(series, 6, LEVELS)
    for r, c in zip(raw[:6], cal[:6]):
        np.testing.assert_array_equal(c.median, r.median)
        assert c.model == r.model + CONFORMAL_SUFFIX
        assert ((c.quantiles[2] - c.quantiles[0]) > (r.quantiles[2] - r.quantiles[0])).all()
    assert cal[6].model == raw[6].model and np.array_equal(cal[6].quantiles, raw[6].quantiles)


def test_every_served_statistical_name_answers_with_calibrated_bands():
    from serve_apps.models.catalog import STATISTICAL_ENTRIES
    from serve_apps.replica.cpu_models import build_cpu_model

    for entry in STATISTICAL_ENTRIES:
        assert isinstance(build_cpu_model(entry, None, 1), ConformalStatistical)
    naive = next(e for e in STATISTICAL_ENTRIES if e.statistical == "SeasonalNaive")
    rng = np.random.default_rng(2)
    # 40 series x 6 steps = 240 backtest points: enough for the default 200-point threshold.
    series = [Series(10 + rng.normal(0, 1, 30), freq="MS") for _ in range(40)]
    results = build_cpu_model(naive, None, 1).forecast(series, 6, LEVELS)
    assert {r.model for r in results} == {"SeasonalNaive" + CONFORMAL_SUFFIX}


def test_a_models_band_width_does_not_decide_its_calibrated_width():
    # Two groups of series with the same kind of noise: one model answers +-1 bands, the other +-100.
    # Calibrated on each series' own error scale (its in-sample naive MAE), both end up about as wide,
    # and the pooled band covers about 80% of the backtest.
    rng = np.random.default_rng(3)
    histories = [rng.normal(0, 1, 40) for _ in range(60)]
    units = []
    for k in range(60):
        width = 1.0 if k % 2 else 100.0
        block = np.array([np.zeros(10), -width * np.ones(10), np.zeros(10), width * np.ones(10)])
        units.append(UnitForecast(block, (block.copy(),), "AutoETS"))
    out = calibrate_units(units, histories, [1] * 60, 10, LEVELS, min_points=50)
    narrow, wide = (np.mean([o.values[3] - o.values[1] for o in out[i::2]]) for i in (1, 0))
    assert 0.7 < narrow / wide < 1.4, (narrow, wide)
    # The final bands sit on the whole history's scale, about the backtest's here.
    actual = np.stack([y[-10:] for y in histories])
    inside = np.mean([(a >= o.values[1]) & (a <= o.values[3]) for a, o in zip(actual, out)])
    assert 0.72 < inside < 0.88, inside

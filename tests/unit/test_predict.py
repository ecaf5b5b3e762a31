import numpy as np
import pytest

from tests.conftest import seasonal_series
from tsfm_core import metrics
from tsfm_core.checkpoint import BASE_MODEL_DIR, load_model
from tsfm_core.predict import Forecaster, ForecastRequest
from tsfm_core.quantiles import interpolate
from tsfm_core.series import Series


@pytest.fixture(scope="module")
def forecaster():
    return Forecaster(load_model())


def test_bundled_base_model_ships_with_the_package():
    # Issue 9 caps the bundled weights at 50 MB so the wheel stays small.
    size = (BASE_MODEL_DIR / "model.safetensors").stat().st_size
    assert 0 < size < 50 * 1000 * 1000


def test_interpolation_is_exact_at_trained_levels_and_monotone():
    trained = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    values = np.linspace(-4, 4, 9)[:, None]  # [Q, H]
    out = interpolate(values, trained, [0.1, 0.5, 0.9])
    assert np.allclose(out[:, 0], [-4, 0, 4])
    tails = interpolate(values, trained, [0.01, 0.05, 0.25, 0.75, 0.95, 0.99])[:, 0]
    assert np.all(np.diff(tails) > 0)
    assert tails[0] < -4 and tails[-1] > 4  # extrapolated beyond the trained heads


def test_forecast_shapes_multivariate_and_long_horizon(forecaster):
    s = Series(np.stack([seasonal_series(100), seasonal_series(100, seed=1) * 3], axis=1))
    (r,) = forecaster.forecast([s], horizon=70, levels=[0.05, 0.5, 0.95])
    assert r.median.shape == (70, 2) and r.quantiles.shape == (3, 70, 2)
    assert np.all(r.quantiles[0] <= r.quantiles[1] + 1e-6) and np.all(r.quantiles[1] <= r.quantiles[2] + 1e-6)
    assert np.isfinite(r.quantiles).all()


def test_long_context_is_truncated_and_reported(forecaster):
    (r,) = forecaster.forecast([Series(seasonal_series(700))], horizon=5)
    assert r.truncated_from == 700
    (r,) = forecaster.forecast([Series(seasonal_series(100))], horizon=5, context_length=50)
    assert r.truncated_from == 100


def test_missing_values_and_constant_series(forecaster):
    x = seasonal_series(120)
    x[10:30] = np.nan
    (r,) = forecaster.forecast([Series(x)], horizon=12)
    assert np.isfinite(r.median).all()
    (c,) = forecaster.forecast([Series(np.full(60, 7.0))], horizon=12)
    assert np.allclose(c.median, 7.0, atol=0.5)


def test_base_model_beats_seasonal_naive_on_clean_seasonal_series(forecaster):
    series = [seasonal_series(132, seed=i, noise=1.0) for i in range(20)]
    train, test = [s[:-12] for s in series], [s[-12:] for s in series]
    results = forecaster.forecast([Series(s) for s in train], horizon=12)
    model = np.mean([metrics.mase(tr, te, r.median[:, 0], 12) for tr, te, r in zip(train, test, results)])
    naive = np.mean([metrics.mase(tr, te, tr[-12:], 12) for tr, te in zip(train, test)])
    assert model < naive


def test_covariates_explain_a_known_effect(forecaster):
    r = np.random.default_rng(1)
    x = r.integers(0, 2, size=(150, 1)).astype(float)
    y = 100 + 30 * x[:, 0] + r.normal(0, 0.5, 150)
    s = Series(y[:120], past_covariates=x[:120], future_covariates=x[120:])
    (res,) = forecaster.forecast([s], horizon=30)
    without = forecaster.forecast([Series(y[:120])], horizon=30)[0]
    assert metrics.mae(y[120:], res.median[:, 0]) < metrics.mae(y[120:], without.median[:, 0]) / 2
    assert res.covariate_weights.shape == (1, 1) and res.covariate_weights[0, 0] > 0


def test_forecast_many_matches_single_requests(forecaster):
    a, b = Series(seasonal_series(80)), Series(seasonal_series(200, seed=4))
    together = forecaster.forecast_many([ForecastRequest([a], 10), ForecastRequest([b], 40, [0.1, 0.9])])
    alone_a = forecaster.forecast([a], 10)[0]
    alone_b = forecaster.forecast([b], 40, [0.1, 0.9])[0]
    assert np.allclose(together[0][0].median, alone_a.median, atol=1e-4)
    assert np.allclose(together[1][0].quantiles, alone_b.quantiles, atol=1e-4)


def test_timestamps_follow_the_pandas_frequency():
    s = Series(np.arange(3.0), start="2026-03-01", freq="D")
    import pandas as pd

    s.start = pd.Timestamp("2026-03-01")
    assert [t.day for t in s.future_timestamps(2)] == [4, 5]


def _band_width(q, patch):
    """Mean 10-90% width [Q-sorted quantiles B, Q, H] over the steps of output patch `patch`."""
    return float((q[:, -1, patch * 32 : (patch + 1) * 32] - q[:, 0, patch * 32 : (patch + 1) * 32]).mean())


def test_rollout_keeps_uncertainty_past_the_first_patch(forecaster):
    rng = np.random.default_rng(0)
    noise = [10 + rng.normal(0, 1, 300) for _ in range(8)]
    walks = [10 + np.cumsum(rng.normal(0, 1, 300)) for _ in range(8)]
    q_noise, q_walk = forecaster.predict_quantiles(noise, 96), forecaster.predict_quantiles(walks, 96)
    # White noise: the band stays as wide as the first patch's (a median rollout halves it).
    assert _band_width(q_noise, 2) > 0.8 * _band_width(q_noise, 0)
    # Random walk: the band widens after the first patch (a median rollout narrows it).
    assert _band_width(q_walk, 1) > 1.1 * _band_width(q_walk, 0)
    assert np.all(np.diff(q_walk, axis=1) >= -1e-5)


def test_rollout_is_reproducible_and_leaves_the_first_patch_alone(forecaster):
    contexts = [seasonal_series(150, seed=s) for s in range(3)]
    long = forecaster.predict_quantiles(contexts, 80)
    assert np.array_equal(long, forecaster.predict_quantiles(contexts, 80))
    assert np.allclose(long[..., :32], forecaster.predict_quantiles(contexts, 32), atol=1e-5)


def test_results_carry_the_trained_quantiles(forecaster):
    (r,) = forecaster.forecast([Series(seasonal_series(100))], horizon=12, levels=[0.5])
    assert r.trained.shape == (9, 12, 1) and r.trained_levels == forecaster.model.config.quantiles
    assert np.allclose(r.trained[4], r.quantiles[0])

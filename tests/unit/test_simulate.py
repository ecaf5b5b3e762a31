"""Sample paths from quantile forecasts (tsfm_core.simulate)."""

from statistics import NormalDist

import numpy as np
import pytest

from tsfm_core import simulate


def _normal_quantiles(levels, mean, sd):
    z = np.array([NormalDist().inv_cdf(q) for q in levels])
    return mean[None, :] + z[:, None] * sd[None, :]


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.95])
def test_paths_have_the_marginals_and_the_correlation(rho):
    levels = simulate.DEFAULT_GRID
    mean, sd = np.linspace(10, 20, 12), np.linspace(1, 3, 12)
    paths = simulate.sample_paths(levels, _normal_quantiles(levels, mean, sd), rho, 20000, np.random.default_rng(0))
    assert paths.shape == (20000, 12)
    assert np.allclose(np.median(paths, axis=0), mean, atol=0.08)
    assert np.allclose(np.quantile(paths, 0.9, axis=0), mean + 1.2816 * sd, rtol=0.02)
    z = (paths - mean) / sd
    lag1 = np.mean([np.corrcoef(z[:, t], z[:, t + 1])[0, 1] for t in range(11)])
    assert lag1 == pytest.approx(rho, abs=0.03)


def test_same_generator_seed_same_paths():
    values = _normal_quantiles(simulate.DEFAULT_GRID, np.zeros(5), np.ones(5))
    a = simulate.sample_paths(simulate.DEFAULT_GRID, values, 0.5, 10, np.random.default_rng(7))
    b = simulate.sample_paths(simulate.DEFAULT_GRID, values, 0.5, 10, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_error_correlation_recovers_ar1_errors():
    rng = np.random.default_rng(1)
    errors = np.zeros((400, 16))
    errors[:, 0] = rng.standard_normal(400)
    for t in range(1, 16):
        errors[:, t] = 0.7 * errors[:, t - 1] + np.sqrt(1 - 0.49) * rng.standard_normal(400)
    z80 = 1.2816
    zeros, ones = np.zeros_like(errors), np.ones_like(errors)
    assert simulate.error_correlation(errors, zeros, -z80 * ones, z80 * ones, 80) == pytest.approx(0.7, abs=0.05)
    assert simulate.error_correlation(errors[:1, :4], zeros[:1, :4], -ones[:1, :4], ones[:1, :4], 80) is None


def _result(levels, mean, sd, trained=True):
    from tsfm_core.predict import ForecastResult

    grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    q = _normal_quantiles(levels, mean, sd)[:, :, None]
    return ForecastResult(median=mean[:, None], quantiles=q, levels=list(levels),
                          trained=_normal_quantiles(grid, mean, sd)[:, :, None] if trained else None,
                          trained_levels=grid if trained else None)


def test_samples_cover_the_whole_distribution_not_only_the_requested_band():
    mean, sd = np.linspace(0, 5, 10), np.ones(10)
    samples = simulate.sample_forecast(_result([0.1, 0.9], mean, sd), 20000, seed=0)
    assert samples.shape == (20000, 10, 1)
    outside = np.mean((samples[..., 0] < mean - 1.2816) | (samples[..., 0] > mean + 1.2816))
    assert outside == pytest.approx(0.2, abs=0.02)  # draws between 10% and 90% only would give 0
    # Only the median requested: the trained heads still give spread.
    median_only = simulate.sample_forecast(_result([0.5], mean, sd), 500, seed=0)
    assert median_only[:, 0, 0].std() == pytest.approx(1.0, abs=0.1)


def test_samples_are_coherent_over_time():
    mean, sd = np.zeros(8), np.ones(8)
    samples = simulate.sample_forecast(_result([0.5], mean, sd), 20000, seed=1, rho=0.7)[..., 0]
    lag1 = np.mean([np.corrcoef(samples[:, t], samples[:, t + 1])[0, 1] for t in range(7)])
    assert lag1 == pytest.approx(0.7, abs=0.03)


def test_samples_are_random_unless_seeded():
    result = _result([0.1, 0.5, 0.9], np.zeros(4), np.ones(4))
    assert np.array_equal(simulate.sample_forecast(result, 5, seed=3), simulate.sample_forecast(result, 5, seed=3))
    assert not np.array_equal(simulate.sample_forecast(result, 5), simulate.sample_forecast(result, 5))


def test_samples_without_trained_heads_use_the_requested_levels():
    result = _result([0.1, 0.5, 0.9], np.zeros(4), np.ones(4), trained=False)
    samples = simulate.sample_forecast(result, 20000, seed=2)[..., 0]
    assert np.quantile(samples, 0.9, axis=0) == pytest.approx(np.full(4, 1.2816), abs=0.05)

"""Pretraining generators (tsfm_core.synthetic, tsfm_core.synthetic_models): finite, the asked
length, reproducible from a seed, and different from one another."""

import numpy as np
import pytest

from tsfm_core import synthetic_models
from tsfm_core.synthetic import DEFAULT_MIX, GENERATORS, generate_pool


@pytest.mark.parametrize("name", sorted(GENERATORS))
@pytest.mark.parametrize("length", [20, 64, 700])
def test_every_generator_gives_finite_series_of_the_asked_length(name, length):
    rng = np.random.default_rng(11)
    for _ in range(15):
        x = GENERATORS[name](rng, length)
        assert x.shape == (min(length, 512),) if name == "kernel_gp" else x.shape == (length,)
        assert np.all(np.isfinite(x))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generators_are_seeded(name):
    a = GENERATORS[name](np.random.default_rng(5), 200)
    b = GENERATORS[name](np.random.default_rng(5), 200)
    c = GENERATORS[name](np.random.default_rng(6), 200)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_counts_are_non_negative_integers_and_intermittent_ones_have_zeros():
    rng = np.random.default_rng(2)
    draws = [synthetic_models.counts(rng, 300) for _ in range(60)]
    assert all(np.all(x >= 0) and np.array_equal(x, np.round(x)) for x in draws)
    assert sum(np.mean(x == 0) > 0.4 for x in draws) >= 10  # the Croston branch: mostly zeros


def test_noise_kinds_differ_in_tails():
    rng = np.random.default_rng(3)
    kurtosis = [float(np.mean(e**4)) for e in (synthetic_models.noise(rng, 4000) for _ in range(60))]
    assert all(k > 1.0 for k in kurtosis)
    assert min(kurtosis) < 3.5 and max(kurtosis) > 6  # Gaussian-like and heavy-tailed both occur


def test_ets_paths_cover_trends_and_seasons():
    rng = np.random.default_rng(4)
    paths = [synthetic_models.ets(rng, 240) for _ in range(80)]
    # Lag-12 autocorrelation of the differences: clearly seasonal paths and non-seasonal ones.
    lag12 = []
    for x in paths:
        d = np.diff(x)
        d = d - d.mean()
        lag12.append(float(np.sum(d[12:] * d[:-12]) / (np.sum(d * d) + 1e-12)))
    assert max(lag12) > 0.3 and min(lag12) < 0.1


def test_regime_switching_has_level_breaks():
    rng = np.random.default_rng(8)
    x = synthetic_models.regime_switching(rng, 1000)
    jumps = np.abs(np.diff(x))
    assert jumps.max() > 4 * np.median(jumps)


def test_pool_mixes_every_generator_reproducibly():
    a, b = generate_pool(300, seed=9), generate_pool(300, seed=9)
    assert len(a) == 300 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == np.float32 and np.all(np.isfinite(x)) and 64 <= len(x) <= 1024 for x in a)
    # Roughly as many integer-valued (count) series as the mix asks for.
    integer_share = np.mean([np.array_equal(x, np.round(x)) and x.min() >= 0 for x in a])
    expected = DEFAULT_MIX["counts"] + DEFAULT_MIX["intermittent"]
    assert expected / 3 < integer_share < expected * 3


def test_pool_follows_a_custom_mix_and_rejects_unknown_names():
    only_counts = generate_pool(40, seed=1, mix={"counts": 1.0})
    assert all(np.array_equal(x, np.round(x)) for x in only_counts)
    with pytest.raises(ValueError, match="unknown generators"):
        generate_pool(5, mix={"fourier": 1.0})

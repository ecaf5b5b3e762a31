import os

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def seasonal_series(n: int, period: int = 12, noise: float = 0.5, seed: int = 0, level: float = 50.0) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.arange(n)
    return (level + 10 * np.sin(2 * np.pi * t / period) + 0.05 * t + r.normal(0, noise, n)).astype(np.float32)

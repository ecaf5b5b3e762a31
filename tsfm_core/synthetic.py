"""Pretraining data generators: kernel-composition Gaussian processes (KernelSynth-style),
structural seasonal/trend mixes, intermittent counts, mixup of whatever pool they produce, and
the state-space / regime / multi-seasonal / count simulators of tsfm_core.synthetic_models.

Everything is drawn from a seeded numpy Generator, so a pool is reproducible from its seed.
"""

from __future__ import annotations

import numpy as np

from tsfm_core import synthetic_models

# Periods that real calendars produce (hourly/daily/weekly/monthly/quarterly data and their mixes).
PERIODS = np.array([4, 5, 6, 7, 12, 12, 12, 24, 24, 48, 52, 96, 168, 7, 12, 4, 30, 14])


# ---- kernel-composition Gaussian processes --------------------------------------------------

def _kernel(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """One random base kernel evaluated on the grid t in [0, 1]."""
    d = t[:, None] - t[None, :]
    kind = rng.choice(["rbf", "periodic", "periodic", "linear", "rq", "white"])
    n = len(t)
    if kind == "rbf":
        length = rng.choice([0.01, 0.05, 0.1, 0.3, 1.0])
        return np.exp(-0.5 * (d / length) ** 2)
    if kind == "periodic":
        period = rng.choice(PERIODS) / n
        length = rng.choice([0.5, 1.0, 2.0])
        return np.exp(-2 * np.sin(np.pi * np.abs(d) / period) ** 2 / length**2)
    if kind == "linear":
        c = rng.uniform(-0.5, 0.5)
        return (t[:, None] - c) * (t[None, :] - c)
    if kind == "rq":
        alpha, length = rng.choice([0.1, 1.0, 10.0]), rng.choice([0.05, 0.1, 0.5])
        return (1 + d**2 / (2 * alpha * length**2)) ** (-alpha)
    return np.eye(n) * rng.uniform(0.01, 0.2)


def kernel_gp(rng: np.random.Generator, length: int) -> np.ndarray:
    t = np.linspace(0, 1, length)
    k = _kernel(rng, t)
    for _ in range(int(rng.integers(0, 4))):
        other = _kernel(rng, t)
        k = k + other if rng.random() < 0.6 else k * other
    k = k + 1e-5 * np.eye(length)
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        chol = np.linalg.cholesky(k + 1e-2 * np.eye(length))
    return chol @ rng.standard_normal(length)


# ---- structural seasonal / trend mixes ------------------------------------------------------

def _seasonal(rng: np.random.Generator, t: np.ndarray, period: int) -> np.ndarray:
    harmonics = int(rng.integers(1, max(2, min(period // 2, 6)) + 1))
    out = np.zeros(len(t))
    for k in range(1, harmonics + 1):
        amp = rng.normal() / k ** rng.uniform(0.5, 2.0)
        out += amp * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi))
    return out / (np.std(out) + 1e-9)


def _ar_noise(rng: np.random.Generator, length: int) -> np.ndarray:
    phi = rng.uniform(-0.3, 0.95)
    shocks = rng.standard_t(df=rng.choice([3, 5, 30]), size=length)
    out = np.empty(length)
    acc = 0.0
    for i in range(length):
        acc = phi * acc + shocks[i]
        out[i] = acc
    return out / (np.std(out) + 1e-9)


def structural(rng: np.random.Generator, length: int) -> np.ndarray:
    t = np.arange(length, dtype=np.float64)
    trend_kind = rng.choice(["none", "linear", "damped", "piecewise", "walk"])
    if trend_kind == "linear":
        trend = rng.normal(0, 1) * t / length
    elif trend_kind == "damped":
        trend = rng.normal(0, 1) * (1 - np.exp(-t / (length * rng.uniform(0.1, 1.0))))
    elif trend_kind == "piecewise":
        knots = np.sort(rng.integers(0, length, size=int(rng.integers(1, 4))))
        trend = sum(rng.normal(0, 1) * np.maximum(t - k, 0) / length for k in knots)
    elif trend_kind == "walk":
        trend = np.cumsum(rng.normal(0, 1, length)) / np.sqrt(length)
    else:
        trend = np.zeros(length)
    trend = trend * rng.uniform(0.5, 5.0)
    season = np.zeros(length)
    for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
        period = int(rng.choice(PERIODS))
        season += rng.uniform(0.2, 2.0) * _seasonal(rng, t, period)
    noise = rng.uniform(0.02, 1.0) * _ar_noise(rng, length)
    series = trend + season + noise
    if rng.random() < 0.3:  # multiplicative: exponentiate a tamed version around a level
        series = np.exp(0.3 * series / (np.std(series) + 1e-9))
    if rng.random() < 0.1:  # level shift
        series[int(rng.integers(length)) :] += rng.normal(0, 2) * np.std(series)
    if rng.random() < 0.05:  # spikes
        idx = rng.integers(0, length, size=int(rng.integers(1, 4)))
        series[idx] += rng.normal(0, 5, size=len(idx)) * np.std(series)
    return series


def intermittent(rng: np.random.Generator, length: int) -> np.ndarray:
    t = np.arange(length)
    rate = rng.uniform(0.05, 3.0) * np.exp(0.5 * _seasonal(rng, t, int(rng.choice(PERIODS))) * rng.uniform(0, 1))
    return rng.poisson(rate).astype(np.float64)


# ---- pool --------------------------------------------------------------------------------------

def _rescale(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    """Random level and scale so the model sees every magnitude and sign."""
    x = (x - x.mean()) / (x.std() + 1e-9)
    level = rng.choice([0.0, 0.0, rng.uniform(2, 20)])
    out = (x + level) * 10 ** rng.uniform(-2, 4)
    if rng.random() < 0.5 and out.min() < 0 and level > 0:
        out = np.maximum(out, 0)
    return out


def tsmixup(rng: np.random.Generator, pool: list[np.ndarray], length: int) -> np.ndarray:
    """Convex mix of 2-3 standardised series from the pool."""
    k = int(rng.integers(2, 4))
    weights = rng.dirichlet(np.ones(k))
    mixed = np.zeros(length)
    for w in weights:
        s = pool[int(rng.integers(len(pool)))]
        s = s[-length:] if len(s) >= length else np.pad(s, (length - len(s), 0), mode="edge")
        mixed += w * (s - s.mean()) / (s.std() + 1e-9)
    return mixed


# Share of each generator in a pool. State-space (ETS/ARIMA) paths get the largest share because
# they describe the business series users send best; mixup recombines what is already pooled.
DEFAULT_MIX = {"kernel_gp": 0.14, "structural": 0.16, "ets": 0.22, "arima": 0.1, "regime": 0.08,
               "multi_seasonal": 0.1, "counts": 0.06, "intermittent": 0.02, "mixup": 0.12}
GENERATORS = {"kernel_gp": lambda rng, n: kernel_gp(rng, min(n, 512)), "structural": structural,
              "ets": synthetic_models.ets, "arima": synthetic_models.arima,
              "regime": synthetic_models.regime_switching, "multi_seasonal": synthetic_models.multi_seasonal,
              "counts": synthetic_models.counts, "intermittent": intermittent}
# Counts keep their units: rescaling would make them non-integer and lose the zeros.
UNSCALED = {"counts", "intermittent"}


def generate_pool(n_series: int, seed: int = 0, min_length: int = 64, max_length: int = 1024,
                  real: list[np.ndarray] | None = None, mix: dict[str, float] | None = None) -> list[np.ndarray]:
    """A reproducible list of float32 series of random lengths in [min_length, max_length], each
    drawn from a generator picked with the probabilities in `mix` (default DEFAULT_MIX)."""
    mix = mix or DEFAULT_MIX
    unknown = set(mix) - set(GENERATORS) - {"mixup"}
    if unknown:
        raise ValueError(f"unknown generators {sorted(unknown)}; choose from {sorted(GENERATORS) + ['mixup']}")
    names = list(mix)
    probs = np.array([mix[n] for n in names], dtype=np.float64)
    probs = probs / probs.sum()
    rng = np.random.default_rng(seed)
    pool: list[np.ndarray] = []
    for _ in range(n_series):
        length = int(rng.integers(min_length, max_length + 1))
        name = names[int(rng.choice(len(names), p=probs))]
        if name == "mixup" and len(pool) <= 10:
            name = "structural"  # nothing to mix yet
        x = tsmixup(rng, pool + list(real or []), length) if name == "mixup" else GENERATORS[name](rng, length)
        if not np.all(np.isfinite(x)):  # a rare exploding path is replaced, not passed on as NaN
            x = structural(rng, length)
            name = "structural"
        pool.append((x if name in UNSCALED else _rescale(rng, x)).astype(np.float32))
    return pool

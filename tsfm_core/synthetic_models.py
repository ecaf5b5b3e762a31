"""Pretraining series simulated from the statistical models real data is usually explained by.

Kernel GPs (tsfm_core.synthetic) give smooth, stationary-ish shapes; business and economic series
(the M-competitions, retail, tourism) are better described by exponential-smoothing state spaces,
ARIMA, regime switches, several calendar periods at once and counts. A model that has seen paths
of these learns to forecast like them. Every generator takes a seeded numpy Generator and a
length and returns float64 [length]; nothing here is random outside that Generator.
"""

from __future__ import annotations

import numpy as np

# Calendar periods and the pairs that occur together (hour-of-day x day-of-week, day-of-week x
# day-of-year, month-of-year x quarter, ...).
SEASON_PAIRS = [(24, 168), (7, 365), (12, 3), (48, 336), (7, 30), (4, 12), (24, 24 * 365), (5, 260), (12, 60)]
SINGLE_PERIODS = [4, 4, 12, 12, 12, 7, 7, 24, 52, 13, 6, 48, 96]


def noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """Unit-scale noise of a random kind: Gaussian, heavy-tailed, skewed, volatility-clustered
    (GARCH(1,1)) or with a few outliers, because real residuals are rarely Gaussian."""
    kind = rng.choice(["gauss", "student", "laplace", "skew", "garch", "outliers"])
    if kind == "student":
        e = rng.standard_t(df=rng.choice([2.5, 3, 5]), size=length)
    elif kind == "laplace":
        e = rng.laplace(size=length)
    elif kind == "skew":
        e = rng.gamma(rng.uniform(1, 4), size=length)
    elif kind == "garch":
        a = rng.uniform(0.05, 0.2)
        omega, b = 0.05, rng.uniform(0.6, 0.95 - a)  # a + b < 1: finite unconditional variance
        shocks, e, var = rng.standard_normal(length), np.empty(length), omega / (1 - a - b)
        for t in range(length):
            e[t] = np.sqrt(var) * shocks[t]
            var = omega + a * e[t] ** 2 + b * var
    else:
        e = rng.standard_normal(length)
        if kind == "outliers":
            idx = rng.integers(0, length, size=max(1, length // 100))
            e[idx] += rng.choice([-1, 1], size=len(idx)) * rng.uniform(4, 10, size=len(idx))
    return (e - e.mean()) / (e.std() + 1e-9)


def _period(rng: np.random.Generator, length: int) -> int:
    """A calendar period short enough that the series shows at least three cycles (else 1)."""
    fitting = [p for p in SINGLE_PERIODS if 3 * p <= length]
    return int(rng.choice(fitting)) if fitting else 1


def ets(rng: np.random.Generator, length: int) -> np.ndarray:
    """A path of a random ETS(error, trend, season) state space: additive or multiplicative
    errors and seasons, none / additive / damped trends, smoothing parameters across their range."""
    period = _period(rng, length) if rng.random() < 0.7 else 1
    multiplicative = rng.random() < 0.4
    trend = rng.choice(["none", "additive", "damped", "damped"])
    alpha = rng.uniform(0.05, 0.9)
    beta = rng.uniform(0.0, 0.3) * alpha
    gamma = rng.uniform(0.0, 0.4) * (1 - alpha)
    phi = rng.uniform(0.8, 0.98) if trend == "damped" else 1.0
    sigma = rng.uniform(0.01, 0.12) if multiplicative else rng.uniform(0.05, 1.0)
    level, slope = 10.0 if multiplicative else rng.normal(0, 3), rng.normal(0, 0.05 if multiplicative else 0.3)
    if trend == "none":
        slope, beta = 0.0, 0.0
    season = rng.normal(0, 1, period)
    season = season - season.mean()
    season_strength = rng.uniform(0.5, 3.0)
    if multiplicative:
        season = np.exp(0.08 * season_strength * season)
        season = season / season.mean()
    else:
        season = season_strength * season
    eps = noise(rng, length) * sigma
    out = np.empty(length)
    for t in range(length):
        s = season[t % period]
        damped = phi * slope
        if multiplicative:
            out[t] = (level + damped) * s * (1 + eps[t])
            base = level + damped
            level = max(base * (1 + alpha * eps[t]), 1e-3)  # a multiplicative level stays positive
            slope = damped + beta * base * eps[t]
            season[t % period] = s * (1 + gamma * eps[t])
        else:
            out[t] = level + damped + s + eps[t]
            level = level + damped + alpha * eps[t]
            slope = damped + beta * eps[t]
            season[t % period] = s + gamma * eps[t]
    return out


def arima(rng: np.random.Generator, length: int) -> np.ndarray:
    """A stationary ARMA(p<=2, q<=2) path integrated d in {0, 1, 2} times, with optional drift;
    AR roots are drawn outside the unit circle so the stationary part never explodes."""
    p, q, d = int(rng.integers(0, 3)), int(rng.integers(0, 3)), int(rng.choice([0, 1, 1, 1, 2]))
    roots = rng.uniform(1.1, 4.0, size=p) * rng.choice([-1, 1], size=p)
    ar = -np.poly(1 / roots)[1:] if p else np.zeros(0)  # x_t = sum ar_i x_{t-i} + e_t
    ma = rng.uniform(-0.8, 0.8, size=q)
    burn = 50
    e = noise(rng, length + burn)
    x = np.zeros(length + burn)
    for t in range(length + burn):
        acc = e[t]
        for i in range(p):
            if t - 1 - i >= 0:
                acc += ar[i] * x[t - 1 - i]
        for j in range(q):
            if t - 1 - j >= 0:
                acc += ma[j] * e[t - 1 - j]
        x[t] = acc
    x = x[burn:]
    drift = rng.normal(0, 0.2) if rng.random() < 0.5 else 0.0
    for _ in range(d):
        x = np.cumsum(x + drift / max(d, 1))
    return x


def regime_switching(rng: np.random.Generator, length: int) -> np.ndarray:
    """A Markov chain over 2-3 regimes, each with its own level, slope and noise scale, plus a few
    abrupt level shifts: the breaks (policy changes, new products, COVID) real series carry."""
    k = int(rng.integers(2, 4))
    levels, slopes = rng.normal(0, 3, k), rng.normal(0, 0.02, k) * rng.choice([0, 1], k)
    scales = rng.uniform(0.1, 1.5, k)
    stay = rng.uniform(0.95, 0.998)
    state, out, drift = 0, np.empty(length), 0.0
    e = noise(rng, length)
    for t in range(length):
        if rng.random() > stay:
            state = int(rng.integers(k))
        drift += slopes[state]
        out[t] = levels[state] + drift + scales[state] * e[t]
    for cut in rng.integers(0, length, size=int(rng.integers(0, 3))):
        out[cut:] += rng.normal(0, 3)
    if rng.random() < 0.5:  # smooth the jumps partly, as aggregation over time does
        w = int(rng.integers(2, 8))
        out = np.convolve(np.pad(out, (w - 1, 0), mode="edge"), np.ones(w) / w, mode="valid")
    return out


def multi_seasonal(rng: np.random.Generator, length: int) -> np.ndarray:
    """Two calendar periods at once (e.g. 24 and 168), amplitudes that drift over time, a damped
    or linear trend and noise."""
    t = np.arange(length, dtype=np.float64)
    fitting = [pair for pair in SEASON_PAIRS if 2 * min(pair) <= length]
    pair = fitting[int(rng.integers(len(fitting)))] if fitting else (4, 12)
    out = np.zeros(length)
    for period in pair:
        harmonics = int(rng.integers(1, max(2, min(period // 2, 5)) + 1))
        wave = sum(rng.normal() / k ** rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 6.3))
                   for k in range(1, harmonics + 1))
        modulation = 1 + rng.uniform(-0.8, 0.8) * t / length
        out += rng.uniform(0.3, 2.0) * modulation * wave / (np.std(wave) + 1e-9)
    horizon = length * rng.uniform(0.2, 2.0)
    out += rng.normal(0, 2) * (1 - np.exp(-t / horizon)) if rng.random() < 0.5 else rng.normal(0, 1) * t / length
    return out + rng.uniform(0.05, 0.8) * noise(rng, length)


def counts(rng: np.random.Generator, length: int) -> np.ndarray:
    """Count series: negative-binomial around a seasonal/trending rate (low-volume retail), or
    intermittent demand (Croston: Bernoulli occurrences times positive sizes)."""
    t = np.arange(length)
    if rng.random() < 0.5:
        occurrence = rng.uniform(0.02, 0.5)
        sizes = 1 + rng.poisson(rng.uniform(0.1, 10.0), size=length)
        return ((rng.random(length) < occurrence) * sizes).astype(np.float64)
    period = _period(rng, length)
    log_rate = np.log(rng.uniform(0.3, 50.0)) + rng.uniform(0, 0.6) * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
    log_rate += rng.normal(0, 0.6) * t / length
    rate = np.exp(log_rate)
    dispersion = rng.uniform(0.5, 20.0)  # smaller = more over-dispersed than Poisson
    return rng.negative_binomial(dispersion, dispersion / (dispersion + rate)).astype(np.float64)

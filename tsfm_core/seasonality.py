"""Season length from a pandas frequency string: what a statistical model needs to know about a
series' calendar (12 for monthly data, 7 for daily, ...)."""

from __future__ import annotations

import warnings

import pandas as pd

# By the offset's base name (pandas spells some of these with suffixes: "MS", "QE-DEC", "W-SUN").
# The cycles are the ones statistical forecasting customarily models: a year for monthly,
# quarterly and weekly data, a week for daily data, a day for hourly data.
_SEASONS = {
    "Y": 1, "A": 1, "YS": 1, "YE": 1, "AS": 1, "BY": 1, "BYS": 1, "BYE": 1,
    "Q": 4, "QS": 4, "QE": 4, "BQ": 4, "BQS": 4, "BQE": 4,
    "M": 12, "MS": 12, "ME": 12, "BM": 12, "BMS": 12, "BME": 12, "SM": 24, "SMS": 24, "SME": 24,
    "W": 52,
    "D": 7, "B": 5, "C": 5,
    "H": 24, "h": 24, "BH": 24, "bh": 24,
    "T": 60, "min": 60,
    "S": 60, "s": 60,
}


def season_length(freq: str | None, default: int = 1) -> int:
    """`freq` ("MS", "W-SUN", "15min", "h", None) -> steps per seasonal cycle (1: no seasonality).

    Multiples of a base frequency shorten the cycle ("6h" -> 4, "15min" -> 4); a multiple that does
    not divide it (e.g. "7D") has no whole-step cycle and gets 1.
    """
    if not freq:
        return default
    try:
        with warnings.catch_warnings():  # "M", "H", "T" still parse; the deprecation is not the caller's business
            warnings.simplefilter("ignore", FutureWarning)
            offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        return default
    base = offset.name.split("-")[0]
    cycle = _SEASONS.get(base, _SEASONS.get(base.upper(), default))
    n = max(1, abs(int(getattr(offset, "n", 1))))
    return cycle // n if cycle % n == 0 else 1

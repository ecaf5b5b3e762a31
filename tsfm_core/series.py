"""The one internal series type. Every wire format converts to and from this, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Series:
    """One (possibly multivariate) series: `values[T, C]`, NaN marks a missing observation.

    `past_covariates[T, K]` align with `values`; `future_covariates[H, K]` cover the horizon and
    share the column order `covariate_names`. `static_covariates` are per-series scalars.
    """

    values: np.ndarray
    start: pd.Timestamp | None = None
    freq: str | None = None
    past_covariates: np.ndarray | None = None
    future_covariates: np.ndarray | None = None
    covariate_names: list[str] = field(default_factory=list)
    static_covariates: dict[str, float] = field(default_factory=dict)
    metadata: Any = None

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float32)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(f"values must be 1-D or 2-D, got shape {values.shape}")
        self.values = values

    @property
    def length(self) -> int:
        return self.values.shape[0]

    @property
    def n_channels(self) -> int:
        return self.values.shape[1]

    def future_timestamps(self, horizon: int) -> list[pd.Timestamp] | None:
        """Timestamps of the `horizon` steps after the last observation, or None without a calendar."""
        if self.start is None or self.freq is None:
            return None
        index = pd.date_range(self.start, periods=self.length + horizon, freq=self.freq)
        return list(index[self.length :])

"""The typed payloads of model calls (forecast, fine-tune), in-process or to the ModelServer deployment."""

from __future__ import annotations

from dataclasses import dataclass

from tsfm_core.finetune import FinetuneConfig
from tsfm_core.predict import ForecastRequest


@dataclass
class ForecastCall:
    request: ForecastRequest
    # Nixtla's `finetune_steps` inside a forecast call: a short finetune in the replica, then forecast.
    finetune: FinetuneConfig | None = None
    # What that finetune trains on, when not the request's own series (backtests: the data before
    # each series' first window).
    finetune_series: list | None = None

    @property
    def points(self) -> int:
        return sum(s.length * s.n_channels for s in self.request.series)


@dataclass
class FinetuneCall:
    series: list  # 1-D float arrays
    config: FinetuneConfig
    output_dir: str
    metadata: dict


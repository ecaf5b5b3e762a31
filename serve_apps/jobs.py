"""The internal request type every dialect converts to, sent from the ingress to the ModelServer."""

from __future__ import annotations

from dataclasses import dataclass

from tsfm_core.finetune import FinetuneConfig
from tsfm_core.predict import ForecastRequest


@dataclass
class ForecastJob:
    request: ForecastRequest
    # Nixtla's `finetune_steps` inside a forecast call: a short finetune in the replica, then forecast.
    finetune: FinetuneConfig | None = None
    # What that finetune trains on, when not the request's own series (backtests: the data before
    # each series' first window).
    finetune_series: list | None = None


@dataclass
class FinetuneJob:
    series: list  # 1-D float arrays
    config: FinetuneConfig
    output_dir: str
    metadata: dict

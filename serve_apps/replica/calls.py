"""The typed payloads of model calls (forecast, fine-tune), in-process or to the ModelServer deployment."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

from serve_apps.errors import ApiError
from tsfm_core.ensemble import EnsembleConfig
from tsfm_core.finetune import FinetuneConfig, NonFiniteTraining
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
class EnsembleCall:
    """A backtest-driven ensemble (tsfm_core.ensemble) over `transformers` (resolved model ids)
    and `config.statistical`; answered with the EnsembleForecast, selections included."""

    request: ForecastRequest
    config: EnsembleConfig
    transformers: tuple[str, ...] = ()

    @property
    def points(self) -> int:
        return sum(s.length * s.n_channels for s in self.request.series)


class RequestRejected(ValueError):
    """A model cannot answer the request as it was asked (too short a series for a backtest,
    covariates for `auto`, a finetune of a statistical model): the request's doing, a 422 at
    `loc` (the field, where the engine knows it; the body otherwise)."""

    def __init__(self, msg: str, loc: list | None = None):
        super().__init__(msg)
        self.loc = loc or ["body"]

    def __reduce__(self):  # crosses Ray's process boundary with its loc
        return (RequestRejected, (str(self), self.loc))


@dataclass
class FinetuneCall:
    series: list  # 1-D float arrays
    config: FinetuneConfig
    output_dir: str
    metadata: dict


@contextmanager
def training_errors():
    """A finetune that diverged (NonFiniteTraining in the replica, wrapped in Ray's RayTaskError)
    is the request's doing (its data or settings), so it is a 422, not a 500; so is a request a
    model rejects (RequestRejected)."""
    try:
        yield
    except Exception as exc:
        # Ray raises a subclass of the replica's exception whose str() is the remote traceback; the
        # original is its `cause` (an in-process exception has none).
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, NonFiniteTraining):
            raise ApiError(422, ["body"], f"fine-tuning diverged: {cause}", "non_finite_training") from None
        if isinstance(cause, RequestRejected):
            raise ApiError(422, cause.loc, str(cause), "value_error") from None
        raise

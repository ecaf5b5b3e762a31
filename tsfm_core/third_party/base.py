"""What every third-party checkpoint shares: its catalog description and the forecasting interface.

A family module (chronos.py, timesfm.py) only answers "contexts in, the model's own quantiles out"
(`predict_trained`); this base turns that into the `forecast` / `forecast_many` the engine calls on
our own `Forecaster`, with the same `ForecastResult`s: covariates by the same ridge regression,
multivariate series channel by channel, requested levels interpolated from the model's trained
levels by `tsfm_core.quantiles.interpolate` (normal-score space, as for our own model).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass

import numpy as np

from tsfm_core.predict import ForecastRequest, ForecastResult, _plan_series
from tsfm_core.quantiles import interpolate, validate_levels
from tsfm_core.series import Series


class MissingExtra(ImportError):
    """The family's official package is not installed; the message says which extra to install."""

    def __init__(self, family: str, extra: str, cause: Exception):
        super().__init__(f"{family} checkpoints need the official package: pip install 'tsfm-cluster[{extra}]' "
                         f"({cause})")


@dataclass(frozen=True)
class ModelDescription:
    """What a catalog entry says about a loaded checkpoint (all read from the checkpoint itself).

    `max_horizon` is the horizon the model emits in one pass; longer horizons are answered by the
    package's own autoregressive heuristic (`horizon_policy` says which). `quantiles` are the levels
    the model was trained on; other requested levels are interpolated between them and extrapolated
    past the outermost ones in normal-score space (`quantile_policy`).
    """

    family: str
    package: str  # "chronos-forecasting 2.3.2": what answered, for `served_model`-style reporting
    parameters: int
    context_length: int
    max_horizon: int
    quantiles: tuple[float, ...]
    covariates: str  # "ridge": our regression on the residual; "native": the model reads them
    multivariate: str  # "per-channel" or "native"
    sampling: bool  # takes temperature / top_p (only the original, token-sampling Chronos)
    finetunable: bool
    horizon_policy: str
    quantile_policy: str = ("levels inside the trained range are interpolated, outside it extrapolated, "
                            "linearly in normal-score space")

    def to_dict(self) -> dict:
        return asdict(self)


class ThirdPartyForecaster(ABC):
    """A loaded third-party checkpoint behind our `Forecaster` interface (`forecast_many`, `max_context`)."""

    batch_size = 256

    @property
    @abstractmethod
    def max_context(self) -> int: ...

    @property
    @abstractmethod
    def trained_levels(self) -> tuple[float, ...]: ...

    @abstractmethod
    def describe(self) -> ModelDescription: ...

    @abstractmethod
    def predict_trained(self, contexts: list[np.ndarray], horizon: int) -> tuple[np.ndarray, np.ndarray | None]:
        """1-D contexts (any lengths, NaN = missing) -> (quantiles [B, Q, horizon] at `trained_levels`,
        sorted along Q; the model's mean [B, horizon], or None where its point forecast is the median)."""

    def forecast(self, series: list[Series], horizon: int, levels: list[float] | None = None,
                 context_length: int | None = None) -> list[ForecastResult]:
        return self.forecast_many([ForecastRequest(series, horizon, levels, context_length)])[0]

    def pass_key(self, horizon: int) -> object:
        """Requests whose horizons share a key share one model pass at their longest horizon, so
        the key must change wherever a longer pass would change the first `horizon` steps
        (Chronos-2 decodes all its output patches jointly; TimesFM switches quantile heads)."""
        return None

    def forecast_many(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        """Several requests in as few model passes as their horizons allow (`pass_key`), as
        `tsfm_core.predict.Forecaster.forecast_many`: per request, one `ForecastResult` per series
        (`median[H, C]`, `quantiles[L, H, C]`)."""
        groups: dict[object, list[int]] = {}
        for i, req in enumerate(requests):
            if req.horizon < 1:
                raise ValueError("horizon must be >= 1")
            validate_levels(list(req.levels or [0.5]))
            groups.setdefault(self.pass_key(req.horizon), []).append(i)
        out: list[list[ForecastResult]] = [[] for _ in requests]
        for members in groups.values():
            for i, answer in zip(members, self._one_pass([requests[i] for i in members])):
                out[i] = answer
        return out

    def _one_pass(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        """Every channel of every request through `predict_trained` once, at the longest horizon."""
        contexts: list[np.ndarray] = []
        plans = []
        for req in requests:
            cap = min(req.context_length or self.max_context, self.max_context)
            plans.append([_plan_series(s, req.horizon, cap, contexts) for s in req.series])
        longest = max((r.horizon for r in requests), default=1)
        trained, mean = self.predict_trained(contexts, longest) if contexts else (None, None)
        out = []
        for req, req_plans in zip(requests, plans):
            results = []
            for plan in req_plans:
                h = req.horizon
                results.append(self.result(
                    trained[plan.rows, :, :h] + plan.offsets[:, None, :],
                    None if mean is None else mean[plan.rows, :h] + plan.offsets,
                    req.levels, truncated_from=plan.length if plan.truncated else None,
                    covariate_weights=plan.weights,
                    covariate_contributions=(None if plan.contributions is None else
                                             np.transpose(plan.contributions[:, :h], (1, 0, 2)))))
            out.append(results)
        return out

    def result(self, block: np.ndarray, mean: np.ndarray | None, levels: list[float] | None,
               **fields) -> ForecastResult:
        """One series' forecast from the model's own quantiles `block[C, Q, H]` (at `trained_levels`)
        and mean `[C, H]` (None: the median is the point forecast); `fields` as ForecastResult's."""
        levels = list(levels) if levels else [0.5]
        trained_levels = self.trained_levels
        wanted = interpolate(block, trained_levels, levels)  # [C, L, H]
        return ForecastResult(
            median=block[:, trained_levels.index(0.5), :].T.astype(np.float64),
            quantiles=np.transpose(wanted, (1, 2, 0)).astype(np.float64),
            levels=levels,
            trained=np.transpose(block, (1, 2, 0)).astype(np.float64),
            trained_levels=trained_levels,
            mean=None if mean is None else mean.T.astype(np.float64),
            **fields,
        )

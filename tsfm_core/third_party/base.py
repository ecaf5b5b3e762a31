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

    def forecast_many(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        """Several requests in one model pass, as `tsfm_core.predict.Forecaster.forecast_many`:
        per request, one `ForecastResult` per series (`median[H, C]`, `quantiles[L, H, C]`)."""
        contexts: list[np.ndarray] = []
        plans = []
        for req in requests:
            if req.horizon < 1:
                raise ValueError("horizon must be >= 1")
            validate_levels(list(req.levels or [0.5]))
            cap = min(req.context_length or self.max_context, self.max_context)
            plans.append([_plan_series(s, req.horizon, cap, contexts) for s in req.series])
        # One pass at the longest horizon: every family's first h steps do not depend on how far
        # past h it is asked to go, so shorter requests take a prefix.
        longest = max((r.horizon for r in requests), default=1)
        trained, mean = self.predict_trained(contexts, longest) if contexts else (None, None)
        levels_trained = self.trained_levels
        median_index = levels_trained.index(0.5)
        out = []
        for req, req_plans in zip(requests, plans):
            levels = list(req.levels) if req.levels else [0.5]
            results = []
            for plan in req_plans:
                offsets = plan.offsets[:, None, :]  # [C, 1, H]
                block = trained[plan.rows, :, : req.horizon] + offsets  # [C, Q, H]
                wanted = interpolate(block, levels_trained, levels)  # [C, L, H]
                results.append(ForecastResult(
                    median=block[:, median_index, :].T.astype(np.float64),
                    quantiles=np.transpose(wanted, (1, 2, 0)).astype(np.float64),
                    levels=levels,
                    truncated_from=plan.length if plan.truncated else None,
                    covariate_weights=plan.weights,
                    covariate_contributions=(None if plan.contributions is None else
                                             np.transpose(plan.contributions[:, : req.horizon], (1, 0, 2))),
                    trained=np.transpose(block, (1, 2, 0)).astype(np.float64),
                    trained_levels=levels_trained,
                    mean=None if mean is None else (mean[plan.rows, : req.horizon] + plan.offsets).T.astype(np.float64),
                ))
            out.append(results)
        return out


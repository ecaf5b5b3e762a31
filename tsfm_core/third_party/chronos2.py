"""Chronos-2: multivariate series and covariates go to the model itself.

Chronos-2 reads a series' channels together (group attention) and its covariates as extra
variates: past-only ones from their history, known-future ones from history and horizon. So a
series with several channels or with covariates is handed to the pipeline whole, instead of
channel by channel with our ridge regression; plain univariate series take the shared path.
The pipeline wants one schema (channels, covariate names, future or not) per call: series are
grouped by it.
"""

from __future__ import annotations

import warnings

import numpy as np

from tsfm_core.predict import ForecastRequest, ForecastResult
from tsfm_core.series import Series
from tsfm_core.third_party.chronos import ChronosForecaster


def _native(s: Series) -> bool:
    return s.n_channels > 1 or (s.past_covariates is not None and s.past_covariates.shape[1] > 0)


def _covariate_names(s: Series) -> list[str]:
    k = s.past_covariates.shape[1]
    return list(s.covariate_names) if len(s.covariate_names) == k else [f"covariate_{i}" for i in range(k)]


def native_input(s: Series, horizon: int, cap: int) -> tuple[tuple, dict]:
    """A series -> (its schema, the pipeline's input dict): `target[C, T]` with the last `cap`
    steps, covariates by name (`past_covariates[T]`, `future_covariates[horizon]` when known)."""
    item: dict = {"target": s.values[-cap:].T.astype(np.float32)}
    names: tuple[str, ...] = ()
    known = False
    if s.past_covariates is not None and s.past_covariates.shape[1] > 0:
        names = tuple(_covariate_names(s))
        item["past_covariates"] = {n: s.past_covariates[-cap:, k].astype(np.float32) for k, n in enumerate(names)}
        if s.future_covariates is not None:
            if s.future_covariates.shape[0] < horizon:
                raise ValueError(f"future covariates cover {s.future_covariates.shape[0]} steps, the horizon {horizon}")
            item["future_covariates"] = {n: s.future_covariates[:horizon, k].astype(np.float32)
                                         for k, n in enumerate(names)}
            known = True
    return (s.n_channels, names, known), item


class Chronos2Forecaster(ChronosForecaster):
    """ChronosForecaster for Chronos-2 checkpoints, with native multivariate and covariate input."""

    def pass_key(self, horizon: int) -> object:
        # Chronos-2 decodes its output patches jointly: a longer pass changes the first steps.
        return horizon

    def _one_pass(self, requests: list[ForecastRequest]) -> list[list[ForecastResult]]:
        """Plain univariate series through the shared path; the others grouped by schema, one
        pipeline call per group (all requests here share one horizon: `pass_key`)."""
        plain = [ForecastRequest([s for s in r.series if not _native(s)], r.horizon, r.levels, r.context_length)
                 for r in requests]
        out: list[list] = [[None] * len(r.series) for r in requests]
        for i, (req, answers) in enumerate(zip(requests, super()._one_pass(plain))):
            for j, answer in zip([j for j, s in enumerate(req.series) if not _native(s)], answers):
                out[i][j] = answer
        groups: dict[tuple, list[tuple[int, int, dict]]] = {}
        for i, req in enumerate(requests):
            cap = min(req.context_length or self.max_context, self.max_context)
            for j, s in enumerate(req.series):
                if _native(s):
                    schema, item = native_input(s, req.horizon, cap)
                    groups.setdefault(schema, []).append((i, j, item))
        for members in groups.values():
            horizon = requests[members[0][0]].horizon
            for (i, j, _), block in zip(members, self._predict_native([m[2] for m in members], horizon)):
                req = requests[i]
                cap = min(req.context_length or self.max_context, self.max_context)
                length = req.series[j].length
                out[i][j] = self.result(block, None, req.levels, truncated_from=length if length > cap else None)
        return out

    def _predict_native(self, items: list[dict], horizon: int) -> list[np.ndarray]:
        """Pipeline input dicts of one schema -> per item, sorted quantiles [C, Q, horizon]."""
        with warnings.catch_warnings(), self._torch.no_grad():
            warnings.simplefilter("ignore", UserWarning)
            out = self.pipeline.predict(items, prediction_length=horizon, batch_size=self.batch_size)
        return [np.sort(block.numpy().astype(np.float64), axis=1) for block in out]

"""Exogenous regressors, handled outside the network so any base model supports them.

A ridge regression of the target on the covariates is fitted on the observed history; the
transformer forecasts the residual and the regression's prediction on the future covariates is
added back. With too few observations for the number of covariates the regression is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIDGE_PENALTY = 1.0


@dataclass
class RidgeFit:
    coef: np.ndarray  # [K]
    intercept: float
    mean: np.ndarray  # standardisation of the covariates
    std: np.ndarray

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """x [T, K] -> each covariate's additive effect [T, K] relative to its historical mean:
        for a linear model these are exactly its Shapley values with the history as background."""
        return (x - self.mean) / self.std * self.coef

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.contributions(x).sum(axis=1) + self.intercept


def fit_ridge(y: np.ndarray, x: np.ndarray) -> RidgeFit | None:
    """y [T] (NaN = missing), x [T, K] (NaN rows are dropped). None when there is too little data."""
    rows = ~np.isnan(y) & ~np.isnan(x).any(axis=1)
    if rows.sum() < x.shape[1] + 3:
        return None
    xs, ys = x[rows].astype(np.float64), y[rows].astype(np.float64)
    mean, std = xs.mean(axis=0), xs.std(axis=0)
    std = np.where(std > 1e-12, std, 1.0)
    z = (xs - mean) / std
    intercept = ys.mean()
    gram = z.T @ z + RIDGE_PENALTY * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, z.T @ (ys - intercept))
    return RidgeFit(coef=coef, intercept=float(intercept), mean=mean, std=std)

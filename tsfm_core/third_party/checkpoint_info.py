"""A third-party checkpoint's catalog description, read from its files without loading it.

The catalog lists models at startup and must not load 200M-parameter weights (or need the
official packages) to say what they are: the figures come from config.json and the safetensors
header. A loaded forecaster's `describe()` answers from here too, so there is one description.
"""

from __future__ import annotations

import json
import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tsfm_core.third_party.base import ModelDescription

# The original Chronos samples token paths; these are the levels we read off its samples.
SAMPLED_LEVELS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
TIMESFM_CONTEXT = 1024  # what the TimesFM loader reads by default (its `context_length` option)
_PACKAGES = {"chronos": "chronos-forecasting", "chronos-bolt": "chronos-forecasting",
             "chronos-2": "chronos-forecasting", "timesfm-2.5": "timesfm"}
_POOLED = ("past max_horizon: the package's heuristic (each trained quantile fed back as a path, "
           "the paths' forecasts pooled into quantiles)")


def stored_parameters(model_dir: str | Path) -> int:
    """Values in the directory's safetensors files (sharded ones included), from their headers only."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        total += sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")
    return total


def _package(family: str) -> str:
    name = _PACKAGES[family]
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"{name} (not installed)"


def _timesfm_shape() -> tuple[int, int, int, tuple[float, ...]]:
    """(context limit, output patch, continuous quantile head length, quantiles) of TimesFM 2.5:
    the installed package's definition, or the published 2.5 figures without it."""
    try:
        from timesfm.timesfm_2p5.timesfm_2p5_torch import TimesFM_2p5_200M_torch_module

        d = TimesFM_2p5_200M_torch_module.config
        return d.context_limit, d.output_patch_len, d.output_quantile_len, tuple(d.quantiles)
    except ImportError:
        return 16384, 128, 1024, (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def describe_checkpoint(model_dir: str | Path, family: str, context_length: int | None = None) -> ModelDescription:
    """The description of the `family` checkpoint in `model_dir` (tsfm_core.third_party.detect_family
    names it). `context_length`: what a loaded TimesFM reads (its loader option)."""
    directory = Path(model_dir)
    parameters = stored_parameters(directory)
    common = {"family": family, "package": _package(family), "parameters": parameters, "covariates": "ridge",
              "multivariate": "per-channel", "finetunable": family in ("chronos-bolt", "chronos-2")}
    if family == "timesfm-2.5":
        limit, output, head, quantiles = _timesfm_shape()
        return ModelDescription(
            **common, context_length=context_length or TIMESFM_CONTEXT, max_horizon=output, quantiles=quantiles,
            sampling=False,
            horizon_policy=(f"past max_horizon: the package's autoregressive decode on the median; intervals from "
                            f"the continuous quantile head up to {head} steps, from the per-patch heads past it; "
                            f"context + horizon at most {limit}"))
    settings = json.loads((directory / "config.json").read_text())["chronos_config"]
    if family == "chronos-bolt":
        horizon, quantiles = settings["prediction_length"], tuple(settings["quantiles"])
    elif family == "chronos-2":
        horizon = settings["output_patch_size"] * settings.get("max_output_patches", 1)
        quantiles = tuple(settings["quantiles"])
    elif family == "chronos":
        return ModelDescription(
            **common, context_length=settings["context_length"], max_horizon=settings["prediction_length"],
            quantiles=SAMPLED_LEVELS, sampling=True,
            horizon_policy=(f"quantiles and mean of {settings['num_samples']} sampled paths; past max_horizon the "
                            "package feeds each sampled path back"))
    else:
        raise ValueError(f"unknown third-party family {family!r}")
    if family == "chronos-2":  # reads channels and covariates itself (tsfm_core.third_party.chronos2)
        common.update(covariates="native", multivariate="native")
    return ModelDescription(**common, context_length=settings["context_length"], max_horizon=horizon,
                            quantiles=tuple(float(q) for q in quantiles), sampling=False, horizon_policy=_POOLED)

"""Third-party TSFM checkpoints (Chronos, Chronos-Bolt, Chronos-2, TimesFM 2.5) behind our forecasting interface.

`load(model_dir)` reads a local checkpoint directory through the family's official package (an
optional extra: `tsfm-cluster[chronos]`, `tsfm-cluster[timesfm]`) and returns a forecaster with the
`forecast` / `forecast_many` / `max_context` our own `Forecaster` has, plus `describe()` for the
catalog. Nothing here downloads: a directory without weights is an error, never a hub fetch.
"""

from __future__ import annotations

import json
from pathlib import Path

from tsfm_core.third_party.base import MissingExtra, ModelDescription, ThirdPartyForecaster
from tsfm_core.third_party.checkpoint_info import describe_checkpoint
from tsfm_core.third_party.chronos import PIPELINE_FAMILIES
from tsfm_core.third_party.timesfm import FAMILY as TIMESFM_FAMILY
from tsfm_core.third_party.timesfm import is_timesfm_dir

# Neither module imports its official package until a checkpoint is loaded: detection needs no extra.
FAMILIES = (*PIPELINE_FAMILIES.values(), TIMESFM_FAMILY)
# Coarser names callers may use (the serving catalog says "timesfm"): each means one family here.
FAMILY_ALIASES = {"timesfm": TIMESFM_FAMILY}


def detect_family(model_dir: str | Path) -> str | None:
    """The family of the checkpoint in `model_dir`, from its files alone (no extra needed), or None.

    Chronos configs name their pipeline class (`chronos_pipeline_class`; the original Chronos has
    only `chronos_config`); a TimesFM 2.5 directory is a safetensors state dict of its layers."""
    directory = Path(model_dir)
    config_path = directory / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text())
        except (OSError, ValueError):
            config = {}
        if isinstance(config, dict) and ("chronos_pipeline_class" in config or "chronos_config" in config):
            return PIPELINE_FAMILIES.get(config.get("chronos_pipeline_class", "ChronosPipeline"))
    return TIMESFM_FAMILY if is_timesfm_dir(directory) else None


def describe(model_dir: str | Path) -> ModelDescription:
    """What the checkpoint in `model_dir` is (family, parameters, context, horizon, quantiles, ...),
    from its files alone: no weights loaded, no extra needed. ValueError when it holds none."""
    family = detect_family(model_dir)
    if family is None:
        raise ValueError(f"{model_dir} holds no Chronos or TimesFM 2.5 checkpoint")
    return describe_checkpoint(model_dir, family)


def load(model_dir: str | Path, family: str | None = None, device: str = "cpu", **options) -> ThirdPartyForecaster:
    """A loaded checkpoint from `model_dir` (family detected when not given). `options` go to the
    family's forecaster (TimesFM: `context_length`; Chronos: `seed` for the sampling original).

    Raises FileNotFoundError (no directory), ValueError (not a known checkpoint, or a family that
    disagrees with the files) and MissingExtra (the official package is not installed)."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint directory at {directory}")
    found = detect_family(directory)
    if found is None:
        raise ValueError(f"{directory} holds no Chronos or TimesFM 2.5 checkpoint")
    family = FAMILY_ALIASES.get(family, family)
    if family is not None and family != found:
        raise ValueError(f"{directory} holds a {found} checkpoint, not {family}")
    if found == TIMESFM_FAMILY:
        from tsfm_core.third_party.timesfm import TimesFMForecaster

        return TimesFMForecaster(directory, device=device, **options)
    if found == "chronos-2":
        from tsfm_core.third_party.chronos2 import Chronos2Forecaster

        return Chronos2Forecaster(directory, device=device, **options)
    from tsfm_core.third_party.chronos import ChronosForecaster

    return ChronosForecaster(directory, device=device, **options)


def load_forecaster(family: str | None, model_dir: str | Path, device: str = "cpu", **options) -> ThirdPartyForecaster:
    """`load` with the family first: the call serve_apps.replica.engine makes for a catalog entry."""
    return load(model_dir, family, device, **options)


__all__ = ["FAMILIES", "MissingExtra", "ModelDescription", "ThirdPartyForecaster", "describe", "detect_family", "load",
           "load_forecaster"]

"""Every model the server can name, with what it really is: the bundled transformer, the
statistical models, the `auto` ensemble, and the third-party names clients send.

Kinds (`ModelEntry.kind`):
- `transformer`: a PatchTransformer checkpoint directory (`tsfm-base`). Its aliases are the Nixtla
  TimeGPT names the nixtla SDK sends by default (`timegpt-1`, ...): they are answered by tsfm-base
  and say so (`served_model`).
- `statistical`: a statsforecast model fitted per series at request time (`statsforecast/auto_ets`, ...).
- `ensemble`: `auto`, the backtest-driven ensemble of tsfm_core.ensemble over tsfm-base and
  statistical models.
- `third_party`: a public checkpoint's name (`amazon/chronos-bolt-small`, `google/timesfm-*`). With
  a loadable checkpoint of its family in the local model directory (`third_party_weights`) it is
  served by the loader of tsfm_core.third_party; without one the server either answers it with
  tsfm-base or rejects it, as `Settings.third_party_aliases` says (the resolver applies it). Only
  families tsfm_core.third_party loads can be served from weights: TimesFM 2.0 cannot (timesfm 2.x
  checkpoints do not load in the timesfm 3.x package), so its name follows the alias setting only.

`card()` is the honest description `/v1/models` and `/api/models` publish; with weights installed,
its figures are the checkpoint's own (`serve_apps.models.third_party.card_fields`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tsfm_core.checkpoint import (
    BASE_MODEL_DIR,
    BASE_MODEL_ID,
    CONFIG_FILE,
    WEIGHTS_FILE,
)

TRANSFORMER, STATISTICAL, ENSEMBLE, THIRD_PARTY = "transformer", "statistical", "ensemble", "third_party"
AUTO_ID = "auto"
# The response header that names the model that answered, for dialects whose bodies have no field for it.
SERVED_MODEL_HEADER = "x-served-model"
# The levels a model's own quantile heads produce; other levels are interpolated (or read from
# the statistical models' prediction intervals, which exist at any level).
DECILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class ModelEntry:
    id: str
    kind: str
    family: str
    description: str
    path: Path | None = None  # transformer checkpoint directory
    aliases: tuple[str, ...] = field(default=())
    statistical: str | None = None  # the statsforecast model (tsfm_core.statistical.STATISTICAL_MODELS)
    parameters: int | None = None  # None: fitted per series at request time (no fixed weights)
    context_length: int | None = None  # None: the whole history is used
    native_horizon: int | None = None  # steps one model pass produces; longer horizons roll out
    quantile_levels: tuple[float, ...] | None = DECILES  # None: any level, from prediction intervals
    covariates: tuple[str, ...] = ()  # which of past/future/static covariates change the forecast
    multivariate: bool = False  # channels modelled jointly (False: each channel on its own)
    owned_by: str = "tsfm-cluster"


def count_parameters(weights: Path) -> int:
    """Values stored in a safetensors file, read from its header (the weights are not loaded)."""
    with open(weights, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def _base_shape() -> tuple[int, int, int]:
    """(parameters, max_context, output_patch_len) of the bundled checkpoint."""
    model = json.loads((BASE_MODEL_DIR / CONFIG_FILE).read_text())["model"]
    return count_parameters(BASE_MODEL_DIR / WEIGHTS_FILE), model["max_context"], model["output_patch_len"]


_PARAMS, _CONTEXT, _PATCH = _base_shape()
_REGRESSION = ("past", "future")  # a covariate with history and future values enters a ridge regression

BASE = ModelEntry(
    id=BASE_MODEL_ID, kind=TRANSFORMER, family="tsfm-patch-transformer", path=BASE_MODEL_DIR,
    aliases=("timegpt-1", "timegpt-1-long-horizon", "timegpt-2", "timegpt-2.1", "timegpt-2-mini", "azureai"),
    description="Bundled decoder patch transformer pretrained by train_jobs.pretrain (synthetic + M1/Tourism). "
                "The TimeGPT names are compatibility aliases for the nixtla SDK: tsfm-base answers them.",
    parameters=_PARAMS, context_length=_CONTEXT, native_horizon=_PATCH, covariates=_REGRESSION)


def _statistical(slug: str, name: str, family: str, what: str) -> ModelEntry:
    return ModelEntry(id=f"statsforecast/{slug}", kind=STATISTICAL, family=family, statistical=name,
                      description=f"statsforecast {name}: {what} Fitted per series at request time; quantiles from its "
                                  "prediction intervals, widened by split conformal calibration on a backtest of "
                                  "each series' last window.",
                      quantile_levels=None, covariates=_REGRESSION, owned_by="statsforecast")


STATISTICAL_ENTRIES = (
    _statistical("seasonal_naive", "SeasonalNaive", "naive", "repeats the last season."),
    _statistical("auto_ets", "AutoETS", "exponential-smoothing", "ETS model chosen by AICc."),
    _statistical("auto_theta", "AutoTheta", "theta", "Theta variant chosen by in-sample MSE."),
    _statistical("auto_arima", "AutoARIMA", "arima", "ARIMA orders chosen by a stepwise search."),
    _statistical("croston_optimized", "CrostonOptimized", "intermittent-demand",
                 "Croston's method with optimised smoothing (intermittent demand); conformal intervals."),
    _statistical("adida", "ADIDA", "intermittent-demand",
                 "aggregate-disaggregate intermittent demand approach; conformal intervals."),
)

AUTO = ModelEntry(
    id=AUTO_ID, kind=ENSEMBLE, family="ensemble",
    description="Backtest-driven ensemble (tsfm_core.ensemble): tsfm-base, AutoETS and AutoTheta backtested on the "
                "last window of each series, kept per series by MASE and averaged quantile by quantile, bands "
                "recalibrated on the backtest. /v1/forecast/ensemble chooses candidates, metric and top_n.",
    parameters=_PARAMS, context_length=None, native_horizon=None, quantile_levels=None, covariates=())


def _third_party(id_: str, family: str, parameters: int, context: int, horizon: int, covariates: tuple[str, ...],
                 owner: str, loader: str | None, levels: tuple[float, ...] = DECILES,
                 multivariate: bool = False) -> ModelEntry:
    """`loader`: the official package that reads the checkpoint (None: no loader here can)."""
    served = (f"served from a local model directory through tsfm_core.third_party ({loader}) when its weights are "
              "installed" if loader else "no loader here reads its checkpoints, so the name is only ever an alias "
              "(TSFM_THIRD_PARTY_ALIASES)")
    return ModelEntry(id=id_, kind=THIRD_PARTY, family=family, parameters=parameters, context_length=context,
                      native_horizon=horizon, quantile_levels=levels, covariates=covariates, multivariate=multivariate,
                      owned_by=owner, description=f"{owner}'s public checkpoint ({family}); {served}.")


_CHRONOS2_LEVELS = (0.01, 0.05, *[round(0.05 * i, 2) for i in range(2, 19)], 0.95, 0.99)
# Figures from the publishers' model cards: parameters, maximum context, the horizon one pass
# predicts, the quantile heads, and the covariates the official package uses.
THIRD_PARTY_ENTRIES = (
    _third_party("amazon/chronos-bolt-tiny", "chronos-bolt", 9_000_000, 2048, 64, (), "amazon", "chronos"),
    _third_party("amazon/chronos-bolt-mini", "chronos-bolt", 21_000_000, 2048, 64, (), "amazon", "chronos"),
    _third_party("amazon/chronos-bolt-small", "chronos-bolt", 48_000_000, 2048, 64, (), "amazon", "chronos"),
    _third_party("amazon/chronos-bolt-base", "chronos-bolt", 205_000_000, 2048, 64, (), "amazon", "chronos"),
    _third_party("amazon/chronos-2", "chronos-2", 120_000_000, 8192, 1024, ("past", "future"), "amazon", "chronos",
                 _CHRONOS2_LEVELS, multivariate=True),
    # TimesFM 2.0's torch checkpoint is a timesfm 1.x/2.x format the installed timesfm 3.x cannot read.
    _third_party("google/timesfm-2.0-500m-pytorch", "timesfm-2.0", 500_000_000, 2048, 128,
                 ("past", "future", "static"), "google", None),
    _third_party("google/timesfm-2.5-200m-pytorch", "timesfm-2.5", 200_000_000, 16384, 1024,
                 ("past", "future", "static"), "google", "timesfm"),
)


BaseModelEntry = ModelEntry  # the earlier name (one kind of entry then)


class Catalog:
    def __init__(self, entries: list[ModelEntry]):
        self.entries = {e.id: e for e in entries}
        self.by_name = {name.lower(): e for e in entries for name in (e.id, *e.aliases)}
        # The ids that never go through the transformer batcher (replica.engine reads this set).
        self.cpu_ids = frozenset(e.id for e in entries if e.kind in (STATISTICAL, ENSEMBLE))

    def lookup(self, name: str) -> ModelEntry | None:
        return self.by_name.get(name.lower())

    def names(self) -> list[str]:
        return sorted({n for e in self.entries.values() for n in (e.id, *e.aliases)})


CATALOG = Catalog([BASE, *STATISTICAL_ENTRIES, AUTO, *THIRD_PARTY_ENTRIES])


def third_party_weights(entry: ModelEntry, root: str | Path | None) -> Path | None:
    """The entry's real weights: `<root>/<publisher>/<name>` (the entry's id as a path, e.g.
    `~/.tsfm/third_party/amazon/chronos-bolt-small`) when it holds a checkpoint of the entry's
    family that tsfm_core.third_party loads (serve_apps.models.third_party.installed), else None.
    A family no loader reads (TimesFM 2.0) never has weights here, whatever the directory holds."""
    from tsfm_core.third_party import FAMILIES  # detection needs no extra (chronos / timesfm)

    if entry.kind != THIRD_PARTY or entry.family not in FAMILIES or not root:
        return None
    from serve_apps.models.third_party import installed

    return installed(entry.id, root, entry.family)


def card(entry: ModelEntry, served_by: str, available: bool, max_horizon: int, weights: dict | None = None) -> dict:
    """The public description of a catalog entry (`/v1/models`, `/api/models`).

    `served_by`: the model that answers the name on this server now (for a third-party name
    without weights: tsfm-base, or nothing when such names are rejected); `available`: whether a
    forecast with this name is answered at all. `weights`: a third-party entry's installed
    checkpoint (serve_apps.models.third_party.card_fields): its own figures replace the
    publisher's, and the card says which package loads it."""
    levels = list(entry.quantile_levels) if entry.quantile_levels else None
    out = {
        # `kind` "base" (a catalog model, as /v1/models has always said; "finetuned" are the caller's own);
        # `model_type` what it is: transformer | statistical | ensemble | third_party.
        "id": entry.id, "object": "model", "owned_by": entry.owned_by, "kind": "base", "model_type": entry.kind,
        "family": entry.family,
        "description": entry.description, "aliases": list(entry.aliases),
        "parameters": entry.parameters, "context_length": entry.context_length,
        # Kept for clients of the earlier /v1/models field.
        "max_context_length": entry.context_length,
        "max_horizon": max_horizon, "native_horizon": entry.native_horizon,
        "quantiles": True, "quantile_levels": levels,
        "past_covariates": "past" in entry.covariates,
        "future_covariates": "future" in entry.covariates,
        "static_covariates": "static" in entry.covariates,
        "multivariate": entry.multivariate,
        "temperature": False, "top_p": False, "samples": True,
        "served_by": served_by, "available": available,
    }
    if weights is not None:
        out.update(family=weights["family"], parameters=weights["parameters"],
                   context_length=weights["context_length"], max_context_length=weights["context_length"],
                   native_horizon=weights["native_horizon"], quantile_levels=weights["quantile_levels"],
                   multivariate=weights["multivariate"], package=weights["package"], weights="installed")
    return out

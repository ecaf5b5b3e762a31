"""Where the catalog finds third-party weights and what it may say about them.

An operator places a public checkpoint under `<root>/<catalog id>` (root: `Settings`' third-party
model directory, e.g. `~/.tsfm/third_party/amazon/chronos-bolt-small/{config.json,model.safetensors}`).
`installed` says whether a loadable checkpoint of the entry's family is there; `card_fields` are
the catalog card's figures read from those files (not from the publisher's model card), and
`load` is what the engine calls. Nothing here imports chronos or timesfm: listing models needs no extra.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

from tsfm_core import third_party

# The module each family's loader imports (`find_spec` tells whether its extra is installed).
_EXTRA_MODULES = {"chronos": "chronos", "chronos-bolt": "chronos", "chronos-2": "chronos", "timesfm-2.5": "timesfm"}


def installed(entry_id: str, root: str | Path | None, family: str | None = None) -> Path | None:
    """`<root>/<entry_id>` when it holds a checkpoint (of `family`, when given: "timesfm" means
    TimesFM 2.5, the only TimesFM the loader reads), else None."""
    if not root:
        return None
    directory = Path(root) / entry_id
    found = third_party.detect_family(directory) if directory.is_dir() else None
    if found is None:
        return None
    wanted = third_party.FAMILY_ALIASES.get(family, family)
    return directory if wanted in (None, found) else None


def detect_family(directory: str | Path | None) -> str | None:
    """The third-party family of the checkpoint in `directory` (None: none there, or our own model's).
    Finetunes of third-party checkpoints are told from ours this way (they load with `load`)."""
    if directory is None or not Path(directory).is_dir():
        return None
    return third_party.detect_family(directory)


def extra_installed(family: str) -> bool:
    """Whether the official package a family's loader needs is importable here."""
    module = _EXTRA_MODULES.get(third_party.FAMILY_ALIASES.get(family, family))
    return module is not None and find_spec(module) is not None


def card_fields(directory: str | Path) -> dict:
    """The catalog card's figures for an installed checkpoint (field names as serve_apps.models.catalog.card)."""
    info = third_party.describe(directory)
    return {
        "family": info.family, "parameters": info.parameters, "context_length": info.context_length,
        "native_horizon": info.max_horizon, "quantile_levels": list(info.quantiles),
        "multivariate": info.multivariate == "native",
        # The original Chronos samples at its config's temperature / top_p; requests cannot change them.
        "temperature": False, "top_p": False, "sampled": info.sampling,
        "package": info.package, "loadable": extra_installed(info.family),
    }


def load(directory: str | Path, family: str | None = None, device: str = "cpu"):
    """The forecaster for an installed checkpoint (`forecast_many`, `max_context`, `describe()`)."""
    return third_party.load(directory, family, device)


def is_third_party(forecaster) -> bool:
    """Whether a loaded forecaster came from here (its fine-tuning goes through `finetune`)."""
    return isinstance(forecaster, third_party.ThirdPartyForecaster)


def finetunable(forecaster) -> bool:
    from tsfm_core.third_party.finetune import FINETUNABLE

    return is_third_party(forecaster) and getattr(forecaster, "family", None) in FINETUNABLE


def finetune(forecaster, series: list, config, output_dir: str | Path, base_id: str,
             metadata: dict | None = None) -> int:
    """What ModelEngine.finetune does for a third-party base: train a full copy (Chronos-Bolt,
    Chronos-2; ValueError for the others), write it to `output_dir` as a checkpoint `load` reads
    without its base, and return the points it trained on. A finetuned model's directory is then
    recognised by `tsfm_core.third_party.detect_family` like the base's."""
    from tsfm_core.third_party import finetune as tuning

    tuned, points = tuning.finetuned_copy(forecaster, series, config)
    tuning.save(tuned, output_dir, base_id, config, metadata)
    return points

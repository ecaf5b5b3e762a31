"""Never silently worse: how a finished fine-tune compares with its base, in words and numbers.

The run's `training.validation` (tsfm_core.model_selection.ValidationTracker.summary) holds the
base's and the kept weights' validation scores. The default selection never keeps weights worse
than the base (the base is a candidate), so `worse` only arises where the kept weights are not
chosen that way; whatever produced them, a worse model is said so in the job's events, its
`validation` field and the model's record, and the operator may refuse to serve it
(TSFM_REFUSE_WORSE_FINETUNES).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tsfm_core.checkpoint import CONFIG_FILE

IMPROVED = "improved"  # a trained step beat the base on validation and was kept
NO_IMPROVEMENT = "no_improvement"  # no step beat the base: the base weights were kept
WORSE = "worse"  # the kept weights score worse than the base on validation
NOT_VALIDATED = "not_validated"  # no validation windows: the last step was kept, unchecked


@dataclass(frozen=True)
class Verdict:
    outcome: str  # one of the four above
    message: str  # one sentence naming both scores, for events and errors
    base: dict | None = None  # {"loss", "mase"} of the base on the validation windows
    finetuned: dict | None = None  # the same for the kept weights
    selected_step: int | None = None  # the step kept (0: the base)
    windows: int = 0  # validation windows scored
    blend: float | None = None  # the kept weights lie this far from the base toward that step's (None: not blended)

    @property
    def worse(self) -> bool:
        return self.outcome == WORSE

    def to_dict(self) -> dict:
        return {**asdict(self), "worse_than_base": self.worse}


def _scores(s: dict) -> str:
    return f"MASE {s['mase']:.4f}, validation loss {s['loss']:.4f}"


def judge(validation: dict | None) -> Verdict:
    """The verdict on a run's validation summary (None or {"windows": 0, "reason": ...}: not validated).

    Worse means a higher validation loss or a higher MASE than the base, as the selection judges;
    the scores are compared here rather than trusting the summary's own flag."""
    if not validation or not validation.get("windows"):
        reason = (validation or {}).get("reason", "no validation data")
        return Verdict(NOT_VALIDATED, f"Not validated ({reason}): the last step's weights were kept, "
                                      "without a comparison with the base")
    base, tuned = validation["base"], validation["finetuned"]
    step, windows = int(validation.get("selected_step", 0)), int(validation["windows"])
    if tuned["loss"] > base["loss"] or tuned["mase"] > base["mase"]:
        outcome = WORSE
        message = (f"The finetuned model is worse than its base on validation ({windows} windows): "
                   f"{_scores(tuned)} against the base's {_scores(base)}")
    elif step == 0:
        outcome = NO_IMPROVEMENT
        message = (f"No improvement on validation ({windows} windows), base weights kept: no step beat the base's "
                   f"{_scores(base)}")
    else:
        outcome = IMPROVED
        blended = f", blended {validation['blend']:g} of the way from the base" if validation.get("blend") else ""
        message = (f"Improved on validation ({windows} windows) at step {step}{blended}: {_scores(tuned)} against "
                   f"the base's {_scores(base)}")
    return Verdict(outcome, message, dict(base), dict(tuned), step, windows, validation.get("blend"))


def refused(verdict: Verdict, refuse_worse: bool) -> bool:
    """Whether the model must not be promoted (served): worse than its base while the operator refuses such."""
    return refuse_worse and verdict.worse


def training_summary(model_dir: str | Path) -> dict:
    """The `training` summary a finetune wrote into its model's config (its `validation` is what
    `judge` reads); empty when there is none (a third-party checkpoint's own config)."""
    path = Path(model_dir) / CONFIG_FILE
    return json.loads(path.read_text()).get("training", {}) if path.exists() else {}

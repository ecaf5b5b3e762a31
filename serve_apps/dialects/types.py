"""Wire literals shared by the dialects, each defined once and checked against tsfm_core's own."""

from __future__ import annotations

from typing import Literal, get_args

from tsfm_core.finetune import LORA_TARGETS
from tsfm_core.losses import LOSSES

Loss = Literal["default", "mae", "mse", "rmse", "mape", "smape", "poisson"]
Depth = Literal[1, 2, 3, 4, 5]
LoraTargets = Literal["QV", "QKVO", "QKVO_FFN"]

# pydantic needs the literals spelled out; these keep them from drifting from what the core accepts.
assert set(get_args(Loss)) == set(LOSSES), "dialects.types.Loss differs from tsfm_core.losses.LOSSES"
assert set(get_args(LoraTargets)) == set(LORA_TARGETS), "dialects.types.LoraTargets differs from LORA_TARGETS"

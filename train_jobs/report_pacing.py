"""When a training worker should call `ray.train.report`.

Ray Train's controller takes one report per worker per health-check poll (every 2 s by default)
and a worker's result queue holds one, so reporting faster than that paces training at one
report per poll however fast the steps are. Steps are therefore buffered and reported about one
poll interval apart. Every rank must report at the same steps (a report is a collective), so the
step time that sets the next report is the slowest worker's, agreed at each report.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# Ray Train reads this variable for its controller's poll interval; the default mirrors its own.
# (torch is imported only where a reduction needs it, so the server can read this name cheaply.)
POLL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
MAX_STEPS_PER_REPORT = 1000  # progress still shows up on very fast runs


def poll_interval_s() -> float:
    return float(os.environ.get(POLL_INTERVAL_ENV, 2.0))


class ReportPacer:
    def __init__(self, start_step: int, world_size: int, device: torch.device, interval_s: float | None = None):
        self.interval_s = poll_interval_s() if interval_s is None else interval_s
        self.world_size, self.device = world_size, device
        self.next_step = start_step + 1  # the first step reports, which measures a step
        self._seconds = 0.0
        self._steps = 0

    def step_took(self, seconds: float) -> None:
        self._seconds += seconds
        self._steps += 1

    def due(self, step: int) -> bool:
        return step >= self.next_step

    def reported(self, step: int) -> None:
        """Called by every rank right after each report (checkpoints included)."""
        per_step = reduce_over_workers(self._seconds / max(1, self._steps), self.world_size, self.device, "max")
        steps = math.ceil(self.interval_s / per_step) if per_step > 0 else MAX_STEPS_PER_REPORT
        self.next_step = step + max(1, min(MAX_STEPS_PER_REPORT, steps))
        self._seconds, self._steps = 0.0, 0


def reduce_over_workers(value: float, world_size: int, device: torch.device, op: str) -> float:
    """The max or mean of a scalar over all workers (a collective: every rank must call it).
    The tensor lives on the training device because NCCL only reduces GPU tensors."""
    if world_size == 1:
        return value
    import torch

    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX if op == "max" else torch.distributed.ReduceOp.SUM)
    return float(t.item()) / (world_size if op == "mean" else 1)

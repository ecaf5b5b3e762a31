"""CPU priority of the bulk lane: where the ModelServer shares CPUs with the ingress replicas, its
model passes and fine-tunes yield to the small forecasts (Settings.bulk_lane_nice)."""

from __future__ import annotations

import os
from pathlib import Path


def yield_cpu(nice: int) -> None:
    """Lowers every thread of this process to `nice` (Linux nice values are per thread; threads and
    worker processes started later inherit their creator's). Errors are ignored: raising a priority
    back needs privileges, and where threads cannot be listed only the calling one changes."""
    tasks = Path("/proc/self/task")
    for tid in ([int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]):
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:
            pass

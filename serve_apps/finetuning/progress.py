"""A run's progress file folded into job events, once per step.

The driver appends every report to `progress.jsonl`; a run resumed from its last checkpoint (after a
restart, or on another server after a takeover) appends the steps after that checkpoint again. The
job row remembers the last step it recorded metrics for and the last checkpoint step, so a step's
metrics event, its checkpoint event and its points in `trained_tokens` are each counted once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Progress:
    """What a job row has recorded of its run's progress file."""

    offset: int = 0  # bytes of progress.jsonl already read
    recorded_step: int = 0  # highest step with a metrics event
    checkpoint_step: int = 0  # highest step with a checkpoint event
    trained_tokens: int = 0  # points of the recorded steps


@dataclass(frozen=True)
class NewEvent:
    level: str
    type: str
    message: str
    data: dict = field(default_factory=dict)


def complete_lines(chunk: bytes) -> bytes:
    """The part of `chunk` up to its last newline: a line still being written waits for the next read."""
    return chunk[: chunk.rfind(b"\n") + 1]


def fold(progress: Progress, complete: bytes, total_steps: int) -> tuple[Progress, list[NewEvent]]:
    """Folds whole progress lines (read from `progress.offset`) into the next Progress and the events
    of steps not yet recorded; lines of already-recorded steps (a resumed run's repeats) only move
    the offset."""
    recorded, checkpointed, tokens = progress.recorded_step, progress.checkpoint_step, progress.trained_tokens
    events: list[NewEvent] = []
    for line in complete.decode().splitlines():
        record = json.loads(line)
        step, loss = int(record["step"]), float(record["loss"])
        if step > recorded:
            recorded = step
            tokens += int(record.get("points", 0))
            data = {"step": step, "train_loss": loss, "total_steps": total_steps, **_validation_scores(record)}
            events.append(NewEvent("info", "metrics", f"Step {step}/{total_steps}: training loss={loss:.4f}", data))
            if record.get("tracking_warning"):  # a tracker failed; training went on (train_jobs.tracking)
                events.append(NewEvent("warn", "message", f"Experiment tracking: {record['tracking_warning']}"))
        if record.get("checkpoint") and step > checkpointed:
            checkpointed = step
            events.append(NewEvent("info", "checkpoint", f"Checkpoint saved at step {step}",
                                   {"step": step, "train_loss": loss, "path": record["checkpoint"]}))
    return replace(progress, offset=progress.offset + len(complete), recorded_step=recorded,
                   checkpoint_step=checkpointed, trained_tokens=tokens), events


def _validation_scores(record: dict) -> dict:
    """An evaluation step's validation scores (OpenAI's metrics events and checkpoints carry valid_loss)."""
    return {k: record[k] for k in ("valid_loss", "valid_mase") if record.get(k) is not None}

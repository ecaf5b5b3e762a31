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
    rate_step: int = 0  # the step-rate anchor: the last step of the attempt's first report...
    rate_time: float | None = None  # ...and that report's time (unix seconds)
    estimated_finish: float | None = None  # unix seconds, from the rate since the anchor


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
    rate_step, rate_time, estimate = progress.rate_step, progress.rate_time, progress.estimated_finish
    events: list[NewEvent] = []
    for line in complete.decode().splitlines():
        record = json.loads(line)
        step, loss = int(record["step"]), float(record["loss"])
        if step > recorded:
            recorded = step
            tokens += int(record.get("points", 0))
            data = {"step": step, "train_loss": loss, "total_steps": total_steps, **_validation_scores(record)}
            events.append(NewEvent("info", "metrics", f"Step {step}/{total_steps}: training loss={loss:.4f}", data))
            rate_step, rate_time, estimate = step_rate(rate_step, rate_time, estimate, record, total_steps)
            if record.get("tracking_warning"):  # a tracker failed; training went on (train_jobs.tracking)
                events.append(NewEvent("warn", "message", f"Experiment tracking: {record['tracking_warning']}"))
        if record.get("checkpoint") and step > checkpointed:
            checkpointed = step
            events.append(NewEvent("info", "checkpoint", f"Checkpoint saved at step {step}",
                                   {"step": step, "train_loss": loss, "path": record["checkpoint"],
                                    **_validation_scores(record)}))
    return replace(progress, offset=progress.offset + len(complete), recorded_step=recorded,
                   checkpoint_step=checkpointed, trained_tokens=tokens, rate_step=rate_step, rate_time=rate_time,
                   estimated_finish=estimate), events


def _validation_scores(record: dict) -> dict:
    """An evaluation step's validation scores (OpenAI's metrics events and checkpoints carry valid_loss)."""
    return {k: record[k] for k in ("valid_loss", "valid_mase") if record.get(k) is not None}


def step_rate(anchor_step: int, anchor_time: float | None, estimate: float | None, record: dict,
              total_steps: int) -> tuple[int, float | None, float | None]:
    """(anchor step, anchor time, estimated finish) after a newly recorded step `record`.

    Records of one report share its time: the anchor moves to the last step of the first report.
    A record resumed from a checkpoint past the anchor starts a new attempt, and a new anchor: the
    restart's pause says nothing about the rate of steps."""
    at, step = record.get("time"), int(record["step"])
    if at is None:
        return anchor_step, anchor_time, estimate
    if anchor_time is None or int(record.get("resumed_from", 0)) > anchor_step:
        return step, float(at), None
    if at == anchor_time:
        return step, anchor_time, estimate
    if at <= anchor_time or step <= anchor_step:
        return anchor_step, anchor_time, estimate
    seconds_per_step = (at - anchor_time) / (step - anchor_step)
    return anchor_step, anchor_time, at + max(0, total_steps - step) * seconds_per_step

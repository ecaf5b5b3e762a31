"""A finished fine-tune's per-step results as the CSV OpenAI-style clients download (`result_files`).

One row per recorded step of the run's `metrics.jsonl` (train_loop history), plus a step-0 row
holding the base model's validation scores when the run validated, so the file alone shows where
the fine-tune started and which step was kept. Cells a step has no value for (validation between
evaluations, the base's training loss) are empty.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

RESULTS_PURPOSE = "fine-tune-results"
RESULTS_FILENAME = "step_metrics.csv"
COLUMNS = ("step", "train_loss", "valid_loss", "valid_mase", "best_step", "trained_tokens")


def read_history(path: Path) -> list[dict]:
    """The run's step records (metrics.jsonl, one JSON object a line); [] when it is missing."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def results_rows(history: list[dict]) -> list[dict]:
    """Step records -> rows of COLUMNS (None for an empty cell), in step order.

    A resumed run's history holds each step once (it is rebuilt from the checkpoint), but steps are
    keyed anyway so a repeat can never give two rows. `trained_tokens` is cumulative, as the job's."""
    by_step = {int(r["step"]): r for r in history}
    rows: list[dict] = []
    first = next((r for r in by_step.values() if "base_valid_loss" in r), None)
    if first is not None:  # the base, scored before step 0
        rows.append({"step": 0, "train_loss": None, "valid_loss": first["base_valid_loss"],
                     "valid_mase": first["base_valid_mase"], "best_step": 0, "trained_tokens": 0})
    tokens = 0
    for step in sorted(by_step):
        r = by_step[step]
        tokens += int(r.get("points", 0))
        rows.append({"step": step, "train_loss": r.get("loss"), "valid_loss": r.get("valid_loss"),
                     "valid_mase": r.get("valid_mase"), "best_step": r.get("best_step"), "trained_tokens": tokens})
    return rows


def results_csv(history: list[dict]) -> bytes:
    """The CSV bytes of `results_rows(history)`, header first."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in results_rows(history):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue().encode()

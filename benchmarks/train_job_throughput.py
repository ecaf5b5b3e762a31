"""Training speed of a real `train_jobs.finetune` run under Ray Train, not of the bare model:
steps per second while training (from the run's progress-file timestamps) and wall time, for
Ray Train's default 2 s controller poll and the embedded cluster's 0.5 s, and for reporting every
step (what the report pacing avoids).

    python benchmarks/train_job_throughput.py [--steps 600] [--use-gpu]

Each configuration is one `python -m train_jobs.finetune` process on a private local Ray.
Writes benchmarks/results/train_job_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from train_jobs.report_pacing import POLL_INTERVAL_ENV
from tsfm_core.datasets import write_series
from tsfm_core.synthetic import generate_pool

REPO = Path(__file__).resolve().parent.parent


def run(data: Path, workdir: Path, steps: int, poll_s: float, report_interval_s: float | None, use_gpu: bool) -> dict:
    progress = workdir / "progress.jsonl"
    args = [sys.executable, "-m", "train_jobs.finetune", "--data", str(data), "--output", str(workdir / "model"),
            "--steps", str(steps), "--batch-size", "8", "--checkpoint-every", "50",
            "--storage-path", str(workdir / "runs"), "--progress-file", str(progress)]
    if report_interval_s is not None:
        args += ["--report-interval-s", str(report_interval_s)]
    if use_gpu:
        args.append("--use-gpu")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", POLL_INTERVAL_ENV: str(poll_s)}
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    subprocess.run(args, cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in progress.read_text().splitlines()]
    # Timestamps are taken when a report reaches the driver, so measure from the first report on.
    first, last = rows[0], rows[-1]
    train_s = last["time"] - first["time"]
    return {"steps": steps, "poll_s": poll_s, "report_interval_s": report_interval_s,
            "reports": len({round(r["time"], 2) for r in rows}), "training_s": round(train_s, 2),
            "steps_per_s": round((last["step"] - first["step"]) / train_s, 1) if train_s > 0 else None,
            "wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "train_job_throughput.json")
    args = p.parse_args()
    configs = [  # (steps, controller poll, report interval: None = paced to the poll)
        (args.steps, 2.0, None),
        (args.steps, 0.5, None),
        (20, 2.0, 0.0),  # every step reports: paced by the poll, so only a few steps
    ]
    with tempfile.TemporaryDirectory() as tmp:
        pool = generate_pool(32, seed=0)
        data = write_series({f"s{i}": np.asarray(s, dtype=np.float32) for i, s in enumerate(pool)},
                            Path(tmp) / "series.parquet")
        results = []
        for i, (steps, poll_s, interval) in enumerate(configs):
            workdir = Path(tmp) / f"run{i}"
            workdir.mkdir()
            results.append(run(data, workdir, steps, poll_s, interval, args.use_gpu))
            print(json.dumps(results[-1]), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"device": "cuda" if args.use_gpu else "cpu", "cpus": os.cpu_count(),
                                       "batch_size": 8, "depth": 1, "runs": results}, indent=2))


if __name__ == "__main__":
    main()

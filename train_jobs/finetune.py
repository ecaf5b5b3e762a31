"""Finetune a model on your series with Ray Train (TorchTrainer), at a depth (1-5) or with LoRA.

    ray job submit -- python -m train_jobs.finetune --data series.parquet --output /models/my-ft \\
        --steps 200 --depth 2 --loss mae --num-workers 2
    python -m train_jobs.finetune --data s.csv --output out --lora-rank 8 --lora-targets QKVO --use-gpu
    python -m train_jobs.finetune --run run.json     # a FinetuneRun file, as the server submits it

Data is a long table (.parquet/.csv/.jsonl) with `unique_id`, optional `ds`, and `y`. Workers
shard the series, train with the shared tsfm_core step (DistributedDataParallel across workers),
record every step's metrics (reported in groups about one Ray Train poll apart) and checkpoint
with the first report --checkpoint-every steps after the last checkpoint. A worker that dies is
restarted from the last checkpoint (--max-failures); re-running with the same --name and
--storage-path resumes an interrupted run. The result is a finetuned model directory (only the
trained tensors + a reference to the base) and `metrics.jsonl` beside it.

Every run validates (--validation-data, else the last window of each series is held out): the
base is scored before step 0, validation loss/MASE at each evaluation, early stopping watches the
validation loss, and the model kept is the best evaluation on validation (possibly the base
itself); `training.validation` in the model's config.json says how it compares with its base.

--wandb-project / --mlflow-tracking-uri (or the run file's `spec.tracking`) log the run to Weights &
Biases (offline unless --tracking-online) and/or MLflow: see train_jobs.tracking.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from train_jobs.loop import WorkerConfig
from train_jobs.runner import exit_when_present, fit, init_ray
from train_jobs.spec import FinetuneRun
from tsfm_core.checkpoint import save_finetuned


def main(argv: list[str] | None = None) -> dict:
    run = FinetuneRun.from_argv(argv, __doc__)
    if not Path(run.data).exists():
        raise SystemExit(f"--data: {run.data} does not exist")
    if run.validation_data is not None and not Path(run.validation_data).exists():
        raise SystemExit(f"--validation-data: {run.validation_data} does not exist")
    output = Path(run.output)
    model_id = run.model_id or output.name
    worker = WorkerConfig(spec=run.spec, base_model_dir=run.base_model_dir, data_path=str(Path(run.data).resolve()),
                          validation_path=str(Path(run.validation_data).resolve()) if run.validation_data else None,
                          threads_per_worker=run.cpus_per_worker, report_interval_s=run.report_interval_s,
                          inject_failure_at_step=run.inject_failure_at_step, model_dir=str(output.resolve()))
    if run.stop_file is not None:
        exit_when_present(Path(run.stop_file))
    init_ray()
    started = time.time()
    model, history = fit(worker, name=run.name or f"finetune-{model_id}-{int(started)}", num_workers=run.num_workers,
                         use_gpu=run.use_gpu, cpus_per_worker=run.cpus_per_worker, storage_path=run.storage_path,
                         max_failures=run.max_failures, progress_file=run.progress_file)
    summary = {
        "id": model_id,
        "steps_completed": history[-1]["step"] if history else 0,
        "final_loss": history[-1]["loss"] if history else None,
        "finetune_points": int(sum(h["points"] for h in history)),
        "resumed_from": max((h["resumed_from"] for h in history), default=0),
        "seconds": round(time.time() - started, 2),
        "num_workers": run.num_workers,
        # Base vs kept weights on validation (see tsfm_core.model_selection); None when not validated.
        "validation": history[-1].get("validation") if history else None,
    }
    save_finetuned(model, output, run.spec.base_model, Path(run.base_model_dir), run.spec.finetune,
                   metadata={"id": model_id, "training": summary})
    with open(output / "metrics.jsonl", "w") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

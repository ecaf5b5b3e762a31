"""Finetune a model on your series with Ray Train (TorchTrainer), at a depth (1-5) or with LoRA.

    ray job submit -- python -m train_jobs.finetune --data series.parquet --output /models/my-ft \\
        --steps 200 --depth 2 --loss mae --num-workers 2
    python -m train_jobs.finetune --data s.csv --output out --lora-rank 8 --lora-targets QKVO --use-gpu

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
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from tsfm_core.checkpoint import BASE_MODEL_DIR, BASE_MODEL_ID, read_config, save_finetuned
from tsfm_core.finetune import FinetuneConfig, LoraConfig
from tsfm_core.losses import LOSSES
from train_jobs.runner import exit_when_present, fit, init_ray


def resolve_base(name: str) -> tuple[str, Path]:
    if name == BASE_MODEL_ID:
        return BASE_MODEL_ID, BASE_MODEL_DIR
    path = Path(name)
    if not (path / "config.json").exists():
        raise SystemExit(f"--base-model: {name!r} is neither {BASE_MODEL_ID!r} nor a model directory")
    return read_config(path).get("id", path.name), path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="series table: .parquet, .csv or .jsonl")
    p.add_argument("--output", type=Path, required=True, help="directory for the finetuned model")
    p.add_argument("--model-id", default=None, help="id recorded in the model (default: output dir name)")
    p.add_argument("--base-model", default=BASE_MODEL_ID, help="bundled id or a model directory")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--depth", type=int, default=1, choices=[1, 2, 3, 4, 5])
    p.add_argument("--loss", default="default", choices=LOSSES)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lora-rank", type=int, default=None, help="train LoRA adapters instead of a depth")
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-targets", default="QV", choices=["QV", "QKVO", "QKVO_FFN"])
    p.add_argument("--early-stopping-patience", type=int, default=None)
    p.add_argument("--early-stopping-threshold", type=float, default=0.0)
    p.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: steps/10, 1..10)")
    p.add_argument("--validation-data", type=Path, default=None,
                   help="validation series (same table format); default: hold out the last window(s) of each series")
    p.add_argument("--validation-windows", type=int, default=1,
                   help="windows held out per series when no --validation-data (0: no validation, keep the last step)")
    p.add_argument("--validation-horizon", type=int, default=None,
                   help="points per validation window (default and cap: the model's output patch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--cpus-per-worker", type=int, default=1)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=25, help="least steps between checkpoints")
    p.add_argument("--report-interval-s", type=float, default=None,
                   help="seconds between metrics reports (default: Ray Train's poll interval, 2 s)")
    p.add_argument("--storage-path", default=None, help="Ray Train storage (local dir or s3://, gs://)")
    p.add_argument("--name", default=None, help="run name; re-running with the same name resumes it")
    p.add_argument("--max-failures", type=int, default=3)
    p.add_argument("--progress-file", default=None, help="append each report as a JSON line here while training")
    p.add_argument("--stop-file", type=Path, default=None,
                   help="exit (ending the run's workers) as soon as this file exists: cooperative cancel")
    p.add_argument("--inject-failure-at-step", type=int, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"--data: {args.data} does not exist")
    if args.validation_data is not None and not args.validation_data.exists():
        raise SystemExit(f"--validation-data: {args.validation_data} does not exist")
    base_id, base_dir = resolve_base(args.base_model)
    lora = LoraConfig(rank=args.lora_rank, alpha=args.lora_alpha, targets=args.lora_targets) if args.lora_rank else None
    finetune = FinetuneConfig(steps=args.steps, depth=args.depth, loss=args.loss, learning_rate=args.learning_rate,
                              batch_size=args.batch_size, lora=lora, seed=args.seed,
                              early_stopping_patience=args.early_stopping_patience,
                              early_stopping_threshold=args.early_stopping_threshold, eval_every=args.eval_every,
                              validation_windows=args.validation_windows, validation_horizon=args.validation_horizon)
    model_id = args.model_id or args.output.name
    cfg = {
        "mode": "finetune", "finetune": finetune.to_dict(), "base_model_dir": str(base_dir),
        "data_path": str(args.data.resolve()),
        "validation_path": str(args.validation_data.resolve()) if args.validation_data else None, "steps": args.steps, "batch_size": args.batch_size,
        "learning_rate": args.learning_rate, "seed": args.seed, "checkpoint_every": args.checkpoint_every,
        "report_interval_s": args.report_interval_s,
        "threads_per_worker": args.cpus_per_worker, "inject_failure_at_step": args.inject_failure_at_step,
    }
    if args.stop_file is not None:
        exit_when_present(args.stop_file)
    init_ray()
    started = time.time()
    model, history = fit(cfg, name=args.name or f"finetune-{model_id}-{int(started)}", num_workers=args.num_workers,
                         use_gpu=args.use_gpu, cpus_per_worker=args.cpus_per_worker,
                         storage_path=args.storage_path, max_failures=args.max_failures,
                         progress_file=args.progress_file)
    summary = {
        "id": model_id,
        "steps_completed": history[-1]["step"] if history else 0,
        "final_loss": history[-1]["loss"] if history else None,
        "finetune_points": int(sum(h["points"] for h in history)),
        "resumed_from": max((h["resumed_from"] for h in history), default=0),
        "seconds": round(time.time() - started, 2),
        "num_workers": args.num_workers,
        # Base vs kept weights on validation (see tsfm_core.model_selection); None when not validated.
        "validation": history[-1].get("validation") if history else None,
    }
    save_finetuned(model, args.output, base_id, base_dir, finetune, metadata={"id": model_id, "training": summary})
    with open(args.output / "metrics.jsonl", "w") as f:
        for record in history:
            f.write(json.dumps(record) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

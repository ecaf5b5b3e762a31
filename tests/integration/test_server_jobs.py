"""Files, OpenAI-style fine-tuning jobs and Cohere-style finetuned models through the unmodified
openai and cohere SDKs; one registry shared with /v1/forecast and the Nixtla routes; API keys
and per-organization isolation."""

import csv
import io
import re
import time

import cohere
import numpy as np
import openai
import pandas as pd
import pytest
from cohere.finetuning import BaseModel, FinetunedModel, Hyperparameters, Settings

from tests.conftest import API_KEY, live_drivers, seasonal_series, wait_for


def _table(n_series=3, n=120) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"unique_id": f"s{i}", "ds": np.arange(n), "y": seasonal_series(n, seed=i)})
                      for i in range(n_series)], ignore_index=True)


@pytest.fixture(scope="module")
def oa(server):
    return openai.OpenAI(api_key=API_KEY, base_url=server.url + "/v1", max_retries=0)


@pytest.fixture(scope="module")
def co(server):
    return cohere.ClientV2(api_key=API_KEY, base_url=server.url)


@pytest.fixture(scope="module")
def training_file(oa):
    buf = io.StringIO()
    _table().to_csv(buf, index=False)
    return oa.files.create(file=("train.csv", buf.getvalue().encode()), purpose="fine-tune")


def test_files_upload_list_content_delete(oa, http):
    assert oa.files.retrieve  # the SDK's own surface
    buf = io.BytesIO()
    _table(2, 50).to_parquet(buf)
    f = oa.files.create(file=("d.parquet", buf.getvalue()), purpose="fine-tune")
    assert f.id.startswith("file-") and f.status == "processed" and f.bytes == len(buf.getvalue())
    assert f.id in [x.id for x in oa.files.list()]
    assert oa.files.retrieve(f.id).filename == "d.parquet"
    assert oa.files.content(f.id).content == buf.getvalue()
    jsonl = _table(1, 30).to_json(orient="records", lines=True).encode()
    assert oa.files.create(file=("d.jsonl", jsonl), purpose="fine-tune").bytes == len(jsonl)
    deleted = oa.files.delete(f.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        oa.files.retrieve(f.id)


@pytest.mark.parametrize("name,content", [("bad.csv", b"a,b\n1,2\n"), ("bad.parquet", b"not parquet"),
                                          ("x.xlsx", b"whatever"), ("empty.csv", b"y\n\n")])
def test_invalid_files_are_422_naming_the_file(http, name, content):
    r = http.post("/v1/files", files={"file": (name, content)}, data={"purpose": "fine-tune"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == "file"  # OpenAI's error shape on /v1/files


def test_openai_job_lifecycle_and_forecast_with_the_result(oa, http, training_file):
    job = oa.fine_tuning.jobs.create(model="timegpt-1", training_file=training_file.id, seed=3,
                                     hyperparameters={"n_epochs": 2, "batch_size": 16, "validation_horizon": 8},
                                     suffix="demo")
    assert job.status == "queued" and job.object == "fine_tuning.job" and job.fine_tuned_model is None
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 16
    assert job.to_dict()["hyperparameters"]["validation_horizon"] == 8  # our extension, echoed
    done = wait_for(lambda: oa.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", done.error
    assert done.trained_tokens > 0 and done.finished_at >= done.created_at and done.estimated_finish is None
    # OpenAI's naming: ft:<base>:<org>:<suffix>:<id>; the id is what the Nixtla routes know it by.
    assert re.fullmatch(r"ft:tsfm-base:acme:demo:ft-[0-9a-f]{24}", done.fine_tuned_model), done.fine_tuned_model
    model_id = done.fine_tuned_model.rsplit(":", 1)[1]
    events = list(oa.fine_tuning.jobs.list_events(job.id))
    messages = [e.message for e in events]
    assert messages[-1].startswith("Validated") and messages[0].startswith("Fine-tuning succeeded")
    steps = [e.data["step"] for e in events if e.type == "metrics" and "train_loss" in e.data]
    assert sorted(steps) == list(range(1, max(steps) + 1))
    # Never silently worse: the verdict against the base is an event, a job field and on the model.
    verdict = done.to_dict()["validation"]
    assert verdict["outcome"] in ("improved", "no_improvement") and not verdict["worse_than_base"]
    assert verdict["finetuned"]["mase"] <= verdict["base"]["mase"]
    assert any(e.data.get("base_valid_mase") == verdict["base"]["mase"] and e.level == "info" for e in events)
    assert oa.models.retrieve(done.fine_tuned_model).to_dict()["validation"]["outcome"] == verdict["outcome"]
    # result_files: the step-metrics CSV, owned by the job's organization.
    [results_id] = done.result_files
    assert results_id in [f.id for f in oa.files.list(purpose="fine-tune-results")]
    rows = list(csv.DictReader(io.StringIO(oa.files.content(results_id).text)))
    assert list(rows[0])[:4] == ["step", "train_loss", "valid_loss", "valid_mase"]
    assert [int(r["step"]) for r in rows] == list(range(max(steps) + 1))  # step 0: the base's scores
    assert float(rows[0]["valid_mase"]) == pytest.approx(verdict["base"]["mase"])
    train_losses = {e.data["step"]: e.data["train_loss"] for e in events if e.type == "metrics" and "train_loss" in e.data}
    assert {int(r["step"]): float(r["train_loss"]) for r in rows[1:]} == pytest.approx(train_losses)
    checkpoints = list(oa.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints and checkpoints[0].fine_tuned_model_checkpoint.startswith(done.fine_tuned_model + ":ckpt-step-")
    assert job.id in [j.id for j in oa.fine_tuning.jobs.list()]
    assert oa.models.retrieve(done.fine_tuned_model).id == done.fine_tuned_model
    assert done.fine_tuned_model in [m.id for m in oa.models.list()]
    # One registry: the job's model serves /v1/forecast, /v2/forecast and shows in every listing.
    r = http.post("/v1/forecast", json={"model": done.fine_tuned_model, "inputs": [{"target": [[1.0], [2.0], [3.0]]}],
                                        "parameters": {"prediction_length": 4}})
    assert r.status_code == 200 and r.json()["served_model"] == model_id
    r = http.post("/v2/forecast", json={"series": {"y": [1.0, 2.0, 3.0], "sizes": [3]}, "h": 2, "freq": "D",
                                        "finetuned_model_id": model_id})
    assert r.status_code == 200 and len(r.json()["mean"]) == 2
    assert model_id in [m["id"] for m in http.get("/v2/finetuned_models").json()["finetuned_models"]]
    assert http.get(f"/v1/finetuning/finetuned-models/{done.fine_tuned_model}").json()["finetuned_model"]["status"] == "STATUS_READY"
    with pytest.raises(openai.ConflictError):
        oa.fine_tuning.jobs.cancel(job.id)


def test_cancel_a_running_job(oa, training_file):
    job = oa.fine_tuning.jobs.create(model="tsfm-base", training_file=training_file.id,
                                     hyperparameters={"steps": 5000, "batch_size": 8})
    cancelled = oa.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(3)
    assert oa.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert "Job cancelled" in [e.message for e in oa.fine_tuning.jobs.list_events(job.id)]
    # Its Ray run is stopped even when the cancel raced Ray starting it (no driver holds the CPUs).
    wait_for(lambda: live_drivers(job.id), lambda pids: not pids, timeout=60)


JOB_BAD = [
    ({"model": "nope"}, "model", 404),
    ({"training_file": "file-missing"}, "training_file", 404),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs", 422),
    ({"hyperparameters": {"finetune_depth": 9}}, "hyperparameters.finetune_depth", 422),
    ({"hyperparameters": {"unknown": 1}}, "hyperparameters.unknown", 422),
    ({"method": {"type": "dpo"}}, "method.type", 422),
    ({"suffix": "x" * 65}, "suffix", 422),  # OpenAI's limit
    ({"suffix": "no spaces"}, "suffix", 422),  # the name ft:<base>:<org>:<suffix>:<id> must stay parseable
]


@pytest.mark.parametrize("patch,param,status", JOB_BAD)
def test_job_validation(http, training_file, patch, param, status):
    body = {"model": "tsfm-base", "training_file": training_file.id, **patch}
    r = http.post("/v1/fine_tuning/jobs", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"].startswith(param), r.json()


def test_cohere_finetuned_model_lifecycle(co, http, training_file):
    created = co.finetuning.create_finetuned_model(request=FinetunedModel(
        name="cohere-ft", settings=Settings(
            base_model=BaseModel(base_type="BASE_TYPE_GENERATIVE"), dataset_id=training_file.id,
            hyperparameters=Hyperparameters(train_epochs=1, learning_rate=0.002, lora_rank=4, lora_alpha=8,
                                            lora_target_modules="LORA_TARGET_MODULES_QKVO_FFN"))))
    model = created.finetuned_model
    assert model.status == "STATUS_QUEUED" and model.name == "cohere-ft"
    ready = wait_for(lambda: co.finetuning.get_finetuned_model(model.id).finetuned_model,
                     lambda m: m.status in ("STATUS_READY", "STATUS_FAILED"))
    assert ready.status == "STATUS_READY"
    assert ready.settings.hyperparameters.lora_target_modules == "LORA_TARGET_MODULES_QKVO_FFN"
    listed = co.finetuning.list_finetuned_models(page_size=100)
    assert model.id in [m.id for m in listed.finetuned_models] and listed.total_size >= 1
    events = co.finetuning.list_events(model.id).events
    assert [e.status for e in events] == ["STATUS_QUEUED", "STATUS_FINETUNING", "STATUS_READY"]
    metrics = co.finetuning.list_training_step_metrics(model.id).step_metrics
    assert metrics and metrics[0].step_number == 1 and "loss" in metrics[0].metrics
    # The run validated on held-out windows: its evaluated steps carry validation scores.
    assert any({"valid_loss", "valid_mase"} <= set(m.metrics) for m in metrics)
    renamed = co.finetuning.update_finetuned_model(model.id, name="renamed", settings=ready.settings)
    assert renamed.finetuned_model.name == "renamed"
    changed = ready.settings.model_copy(update={"dataset_id": "file-other"})
    with pytest.raises(cohere.core.api_error.ApiError) as err:
        co.finetuning.update_finetuned_model(model.id, name="x", settings=changed)
    assert err.value.status_code == 409  # trained: settings are fixed, and the answer names the field
    assert err.value.body["detail"][0]["loc"] == ["body", "settings", "dataset_id"]
    r = http.post("/v1/forecast", json={"model": model.id, "inputs": [{"target": [[5.0], [6.0]]}],
                                        "parameters": {"prediction_length": 2}})
    assert r.status_code == 200
    assert co.finetuning.delete_finetuned_model(model.id) == {}
    assert http.get(f"/v2/finetuned_models/{model.id}").status_code == 404
    r = http.post("/v1/forecast", json={"model": model.id, "inputs": [{"target": [[5.0]]}], "parameters": {"prediction_length": 2}})
    assert r.status_code == 404


def test_cohere_validation(http, training_file):
    r = http.post("/v1/finetuning/finetuned-models", json={"name": "x", "settings": {"base_model": {"base_type": "BASE_TYPE_CHAT"}}})
    assert r.status_code == 422 and ["body", "settings", "dataset_id"] in [d["loc"] for d in r.json()["detail"]]
    r = http.post("/v1/finetuning/finetuned-models", json={"name": "x", "settings": {
        "base_model": {"name": "unknown-base", "base_type": "BASE_TYPE_CHAT"}, "dataset_id": training_file.id}})
    assert r.status_code == 404 and r.json()["detail"][0]["loc"] == ["body", "settings", "base_model", "name"]
    r = http.post("/v1/finetuning/finetuned-models", json={"name": "x", "settings": {
        "base_model": {"base_type": "BASE_TYPE_CHAT"}, "dataset_id": training_file.id,
        "hyperparameters": {"lora_target_modules": "ALL"}}})
    assert r.status_code == 422


def test_a_nixtla_model_is_visible_to_openai_and_cohere_views(http, co):
    r = http.post("/v2/finetune", json={"series": {"y": [float(v) for v in seasonal_series(60)], "sizes": [60]},
                                        "freq": "D", "finetune_steps": 2, "output_model_id": "cross-dialect"})
    assert r.status_code == 200
    assert co.finetuning.get_finetuned_model("cross-dialect").finetuned_model.status == "STATUS_READY"
    assert "cross-dialect" in [m["id"] for m in http.get("/v1/models").json()["data"]]
    co.finetuning.delete_finetuned_model("cross-dialect")
    assert http.get("/v2/finetuned_models/cross-dialect").status_code == 404


def test_keys_are_required_and_organizations_are_isolated(server, http, other_org, training_file):
    import httpx

    assert httpx.get(server.url + "/v1/files").status_code == 401
    bad = httpx.get(server.url + "/v1/files", headers={"authorization": "Bearer wrong"})
    assert bad.status_code == 401 and bad.json()["error"]["param"] == "authorization"
    # Another organization sees none of acme's objects, and gets 404s (not 403s) for them.
    assert other_org.get(f"/v1/files/{training_file.id}").status_code == 404
    assert other_org.get("/v1/files").json()["data"] == []
    r = other_org.post("/v1/fine_tuning/jobs", json={"model": "tsfm-base", "training_file": training_file.id})
    assert r.status_code == 404 and r.json()["error"]["param"] == "training_file"
    acme_models = [m["id"] for m in http.get("/v2/finetuned_models").json()["finetuned_models"]]
    assert acme_models, "the job tests above created models"
    for model_id in acme_models:
        assert other_org.get(f"/v1/finetuning/finetuned-models/{model_id}").status_code == 404
        assert other_org.delete(f"/v2/finetuned_models/{model_id}").status_code == 404
        r = other_org.post("/v1/forecast", json={"model": model_id, "inputs": [{"target": [[1.0]]}],
                                                 "parameters": {"prediction_length": 1}})
        assert r.status_code == 404
    assert other_org.get("/v1/fine_tuning/jobs").json()["data"] == []

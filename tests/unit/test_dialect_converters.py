"""The OpenAI- and Cohere-style converters: bodies -> TrainingSpec, records -> the SDKs' views."""

import numpy as np
import pytest
from pydantic import ValidationError

from serve_apps.dialects import cohere, openai
from serve_apps.errors import ApiError
from serve_apps.finetuning.store import JobRecord, JobStatus
from serve_apps.storage.files import FileRecord


def _file(n_series=4, n_points=640):
    return FileRecord(id="file-1", organization="acme", filename="s.csv", purpose="fine-tune", bytes=10,
                      created_at=0.0, deleted_at=None, n_series=n_series, n_points=n_points, path="/tmp/x")


def test_openai_auto_hyperparameters_become_steps_from_epochs():
    body = openai.JobCreate(model="timegpt-1", training_file="file-1")
    spec = openai.training_spec(body.resolved_hyperparameters(), _file(), "tsfm-base", 7, 32, max_steps=10_000)
    # 640 points / 32 = 20 windows, batch 32 -> 1 step per epoch, 3 epochs
    assert (spec.epochs, spec.steps, spec.batch_size, spec.seed) == (3, 3, 32, 7)
    assert spec.finetune.depth == 1 and spec.finetune.lora is None and spec.base_model == "tsfm-base"


def test_openai_method_hyperparameters_and_lora():
    body = openai.JobCreate.model_validate({
        "model": "tsfm-base", "training_file": "file-1",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5, "finetune_depth": 3,
            "finetune_loss": "mae", "lora_rank": 8, "lora_target_modules": "QKVO"}}}})
    spec = openai.training_spec(body.resolved_hyperparameters(), _file(), "tsfm-base", 0, 32, max_steps=10_000)
    ft = spec.finetune
    assert (spec.steps, ft.depth, ft.loss, ft.learning_rate) == (2 * 5, 3, "mae", 5e-4)
    assert (ft.lora.rank, ft.lora.targets) == (8, "QKVO")


def test_openai_validation_horizon_sets_the_validation_windows_length():
    body = openai.JobCreate.model_validate({"model": "tsfm-base", "training_file": "file-1",
                                            "hyperparameters": {"validation_horizon": 12}})
    spec = openai.training_spec(body.resolved_hyperparameters(), _file(), "tsfm-base", 0, 32, max_steps=10_000)
    assert spec.finetune.validation_horizon == 12
    default = openai.training_spec(openai.Hyperparameters(), _file(), "tsfm-base", 0, 32, max_steps=10_000)
    assert default.finetune.validation_horizon is None  # the model's output patch
    for bad in (3, 0, 5000, "12"):
        with pytest.raises(ValidationError) as err:
            openai.JobCreate.model_validate({"model": "m", "training_file": "f",
                                             "hyperparameters": {"validation_horizon": bad}})
        assert err.value.errors()[0]["loc"][:2] == ("hyperparameters", "validation_horizon")


def test_openai_rejects_unknown_loss_naming_the_field():
    with pytest.raises(ValidationError) as err:
        openai.JobCreate.model_validate({"model": "m", "training_file": "f",
                                         "hyperparameters": {"finetune_loss": "huber"}})
    assert err.value.errors()[0]["loc"] == ("hyperparameters", "finetune_loss")


def test_openai_job_view_reads_the_spec():
    body = openai.JobCreate(model="timegpt-1", training_file="file-1", suffix="mine")
    spec = openai.training_spec(body.resolved_hyperparameters(), _file(), "tsfm-base", 0, 32, max_steps=10_000)
    job = JobRecord(id="ftjob-1", organization="acme", source="openai", model="timegpt-1", base_model_id="tsfm-base",
                    model_id="ft-1", training_file="file-1", validation_file=None, status=JobStatus.SUCCEEDED,
                    spec=spec, request=body.model_dump(mode="json"), error=None, created_at=1.0, started_at=2.0,
                    finished_at=3.0, trained_tokens=640, submission_id=None, attempts=1, progress_offset=0)
    view = openai.job_view(job)
    assert view["status"] == "succeeded" and view["trained_tokens"] == 640
    assert view["fine_tuned_model"] == "ft:tsfm-base:acme:mine:ft-1"  # OpenAI's ft:<base>:<org>:<suffix>:<id>
    assert view["hyperparameters"]["n_epochs"] == 3 and view["hyperparameters"]["learning_rate_multiplier"] == 1.0
    assert view["method"]["supervised"]["hyperparameters"]["batch_size"] == 32 and view["suffix"] == "mine"


def test_cohere_settings_become_a_spec():
    body = cohere.FinetunedModelBody.model_validate({
        "name": "m", "settings": {"base_model": {"base_type": "BASE_TYPE_CHAT"}, "dataset_id": "file-1",
                                  "hyperparameters": {"train_epochs": 2, "train_batch_size": 8, "learning_rate": 0.01,
                                                      "early_stopping_patience": 3, "validation_horizon": 14,
                                                      "lora_target_modules": "LORA_TARGET_MODULES_QKVO"}}})
    spec = cohere.training_spec(body, "tsfm-base", n_windows=20, max_steps=10_000)
    ft = spec.finetune
    assert (spec.epochs, spec.steps, ft.batch_size, ft.learning_rate) == (2, 6, 8, 0.01)
    assert (ft.lora.rank, ft.lora.targets, ft.early_stopping_patience, ft.validation_horizon) == (8, "QKVO", 3, 14)
    # Explicit epochs beyond the step limit are refused naming the field (no silent cap) ...
    with pytest.raises(ApiError) as err:
        cohere.training_spec(body, "tsfm-base", n_windows=20, max_steps=4)
    assert err.value.status == 422 and err.value.loc[-1] == "train_epochs"
    # ... while the server's own default of 3 epochs is fitted into it.
    default = cohere.FinetunedModelBody.model_validate({"name": "m", "settings": {"base_model": {}, "dataset_id": "f"}})
    assert cohere.training_spec(default, "tsfm-base", n_windows=20_000, max_steps=4).steps == 4


def test_nixtla_finetunes_inside_a_call_validate_on_its_horizon():
    # The caller's h is what the finetune should be good at, and holds out less of a short series
    # than the model's 32-step output patch (benchmarks/finetune_value.py --validation-horizon-h).
    from serve_apps.dialects import nixtla, nixtla_backtest
    from tsfm_core.checkpoint import load_model
    from tsfm_core.finetune import validation_tracker

    series = {"y": [float(v) for v in np.sin(np.arange(60) / 3)], "sizes": [60]}
    body = nixtla.NixtlaForecastBody(series=series, h=6, freq="D", finetune_steps=5)
    cfg = nixtla.forecast_finetune(body, 100)
    train, tracker, _ = validation_tracker(load_model(), [np.asarray(series["y"])], cfg)
    assert len(train[0]) == 54 and tracker.batch.future.shape == (1, 6)
    cv = nixtla_backtest.CrossValidationBody(series=series, h=4, freq="D", finetune_steps=5)
    assert nixtla_backtest.finetune_for(cv, [], 100).validation_horizon == 4

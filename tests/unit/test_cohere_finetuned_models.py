"""Cohere-style finetuned models: the seed's status values, the depth a fine-tune trains at, which
settings a PATCH may change and when (down to the race with the job manager submitting the run),
and validation metrics in training-step-metrics."""

import asyncio
import json

import pandas as pd
import pytest

from serve_apps.dialects import cohere
from serve_apps.finetuning.manager import TRAINING_DATA, job_dir
from serve_apps.finetuning.progress import Progress, fold
from serve_apps.finetuning.service import FinetuningService
from serve_apps.finetuning.store import EventRecord, JobStatus, JobStore
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.settings import Settings
from serve_apps.storage.files import FileRecord
from tests.unit.test_job_manager_ownership import _manager

SEED_STATUSES = {"STATUS_FAILED", "STATUS_TEMPORARILY_OFFLINE", "STATUS_DELETED", "STATUS_READY", "STATUS_PAUSED",
                 "STATUS_UNSPECIFIED", "STATUS_FINETUNING", "STATUS_DEPLOYING_API", "STATUS_QUEUED"}


def _body(**hyper) -> cohere.FinetunedModelBody:
    return cohere.FinetunedModelBody.model_validate({"name": "m", "settings": {
        "base_model": {"base_type": "BASE_TYPE_GENERATIVE"}, "dataset_id": "file-1", "hyperparameters": hyper}})


# ---- statuses -------------------------------------------------------------------------------------
def test_every_state_maps_onto_the_seeds_status_enum():
    assert {cohere.model_status(s) for s in ModelStatus} <= SEED_STATUSES
    assert {cohere.job_status(s.value) for s in JobStatus} <= SEED_STATUSES
    assert cohere.model_status(ModelStatus.QUEUED) == "STATUS_QUEUED"
    assert cohere.model_status(ModelStatus.FINETUNING) == "STATUS_FINETUNING"
    assert cohere.model_status(ModelStatus.READY) == "STATUS_READY"
    assert cohere.model_status(ModelStatus.CANCELLED) == "STATUS_FAILED"  # the seed has no cancelled state
    assert cohere.model_status(ModelStatus.DELETED) == "STATUS_DELETED"
    assert cohere.job_status("validating_files") == "STATUS_QUEUED"
    assert cohere.job_status("no-such-state") == "STATUS_UNSPECIFIED"


# ---- depth ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("windows,depth", [(1, 1), (31, 1), (32, 2), (127, 2), (128, 3), (100_000, 3)])
def test_depth_follows_the_datasets_windows_and_never_reaches_4(windows, depth):
    assert cohere.finetune_depth(windows) == depth
    assert cohere.training_spec(_body(), "tsfm-base", windows, max_steps=10_000).finetune.depth == depth


def test_lora_settings_train_adapters_not_a_depth():
    ft = cohere.training_spec(_body(lora_rank=4), "tsfm-base", 1000, max_steps=10_000).finetune
    assert ft.lora.rank == 4 and ft.depth == 1 and ft.loss == "default"


# ---- PATCH rules ----------------------------------------------------------------------------------
def test_settings_changes_name_each_changed_field_and_ignore_read_only_ones():
    current = cohere.stored_settings(_body(learning_rate=0.001), "tsfm-base")
    assert cohere.settings_changes(current, current) == []
    same = json.loads(json.dumps(current))
    same["multi_label"] = True  # read-only in the seed
    same["base_model"]["version"] = "v9"
    assert cohere.settings_changes(current, same) == []
    wanted = cohere.stored_settings(_body(learning_rate=0.01, train_epochs=2), "timegpt-1")
    wanted["dataset_id"] = "file-2"
    assert cohere.settings_changes(current, wanted) == [
        ["settings", "base_model", "name"], ["settings", "dataset_id"],
        ["settings", "hyperparameters", "learning_rate"], ["settings", "hyperparameters", "train_epochs"]]
    # No hyperparameters object is all of them unset.
    bare = cohere.stored_settings(cohere.FinetunedModelBody.model_validate(
        {"name": "m", "settings": {"base_model": {"base_type": "BASE_TYPE_GENERATIVE"}, "dataset_id": "file-1"}}),
        "tsfm-base")
    assert cohere.settings_changes(bare, cohere.stored_settings(_body(), "tsfm-base")) == []


def _record(status=JobStatus.QUEUED, submission_id=None, source="cohere"):
    from serve_apps.finetuning.store import JobRecord
    from train_jobs.spec import TrainingSpec

    return JobRecord(id="ftjob-1", organization="acme", source=source, model="tsfm-base", base_model_id="tsfm-base",
                     model_id="ft-1", training_file="file-1", validation_file=None, status=status,
                     spec=TrainingSpec(), request={}, error=None, created_at=0.0, started_at=None, finished_at=None,
                     trained_tokens=0, submission_id=submission_id, attempts=0, progress_offset=0)


def test_settings_are_editable_only_while_queued_and_not_submitted():
    assert cohere.settings_editable(_record())
    assert not cohere.settings_editable(_record(submission_id="ftjob-1-1"))
    assert not cohere.settings_editable(_record(JobStatus.RUNNING, "ftjob-1-1"))
    assert not cohere.settings_editable(_record(JobStatus.SUCCEEDED, "ftjob-1-1"))
    assert not cohere.settings_editable(_record(source="openai"))  # no Cohere settings to re-derive
    assert not cohere.settings_editable(None)  # e.g. a Nixtla model trained in a replica


def test_a_late_change_is_a_409_naming_the_field():
    class Model:
        status = ModelStatus.FINETUNING

    changes = [["settings", "hyperparameters", "learning_rate"], ["settings", "dataset_id"]]
    err = cohere.settings_fixed(changes, Model(), _record(JobStatus.RUNNING, "ftjob-1-1"))
    assert err.status == 409 and err.loc == ["body", "settings", "hyperparameters", "learning_rate"]
    assert "settings.dataset_id" in err.msg and "STATUS_FINETUNING" in err.msg and "only name" in err.msg
    queued = cohere.settings_fixed(changes, Model(), _record(submission_id="ftjob-1-1"))
    assert "submitted to the cluster" in queued.msg


# ---- PATCH against the store and the job manager --------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    return {"home": str(tmp_path), "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "artifact_dir": str(tmp_path / "artifacts"), "job_lease_s": 30.0, "poll_interval_s": 3600.0}


def _file(tmp_path, name: str, n: int) -> FileRecord:
    directory = tmp_path / "files" / name
    directory.mkdir(parents=True)
    pd.DataFrame({"unique_id": "a", "y": [float(i % 7) for i in range(n)]}).to_parquet(directory / "series.parquet")
    return FileRecord(id=name, organization="acme", filename=f"{name}.parquet", purpose="fine-tune", bytes=1,
                      created_at=0.0, deleted_at=None, n_series=1, n_points=n, path=str(directory))


class Caller:
    organization, key_hint = "acme", "k"


def _service(settings) -> FinetuningService:
    s = Settings.from_dict(settings)
    registry = Registry(s.database_url, s.artifact_dir)
    return FinetuningService(s, registry, JobStore(s.database_url), ModelResolver(registry), job_manager=None)


def test_a_queued_job_takes_new_settings_until_it_is_submitted(settings, tmp_path):
    async def scenario():
        service = _service(settings)
        first, second = _file(tmp_path, "file-1", 64), _file(tmp_path, "file-2", 96)
        body = _body(learning_rate=0.001)
        job = service._create(Caller(), "cohere", "tsfm-base", cohere.training_spec(body, "tsfm-base", 2, 1000),
                              first, None, body.model_dump(mode="json"), {"name": "m"})
        manager, cluster = _manager(settings)
        assert service.jobs.hold_lease(job.id, manager.owner, 30)  # the manager's round has the job ...
        stale = service.jobs.get(job.id)  # ... and read it just before the PATCH landed

        new = _body(learning_rate=0.01, train_epochs=5)
        assert service.respec(stale, "tsfm-base", cohere.training_spec(new, "tsfm-base", 3, 1000), second,
                              new.model_dump(mode="json"), {"cohere_settings": {"x": 1}}, "Settings changed")
        job = service.jobs.get(job.id)
        assert (job.spec.finetune.learning_rate, job.spec.epochs, job.training_file, job.spec_version) == (0.01, 5, "file-2", 1)
        assert len(pd.read_parquet(job_dir(service.settings, job.id) / TRAINING_DATA)) == 96
        model = service.registry.get(job.model_id)
        assert model.steps == job.spec.steps and model.params["cohere_settings"] == {"x": 1}
        assert "Settings changed" in [e.message for e in service.jobs.events(job.id)]

        # The round that read the old settings submits them: that run is not recorded but stopped,
        # and the next round submits a run made from the new ones.
        manager._submit(stale)
        assert cluster.live() == [] and service.jobs.get(job.id).submission_id is None
        await manager.reconcile()
        job = service.jobs.get(job.id)
        assert job.submission_id in cluster.live() and job.spec_version == 1
        run = json.loads((job_dir(service.settings, job.id) / "run.json").read_text())
        assert run["spec"]["finetune"]["learning_rate"] == 0.01

        # Submitted: the settings are fixed (and the staged data is not left behind).
        assert not service.respec(job, "tsfm-base", cohere.training_spec(body, "tsfm-base", 2, 1000), first,
                                  body.model_dump(mode="json"), {}, "again")
        assert service.jobs.get(job.id).spec.finetune.learning_rate == 0.01
        assert sorted(p.name for p in job_dir(service.settings, job.id).iterdir() if p.name.startswith(".")) == []

    asyncio.run(scenario())


# ---- training-step metrics ------------------------------------------------------------------------
def test_step_metrics_carry_validation_scores_where_the_run_evaluated():
    lines = [{"step": 1, "loss": 0.9, "points": 5},
             {"step": 2, "loss": 0.8, "points": 5, "valid_loss": 0.7, "valid_mase": 1.1, "base_valid_loss": 0.75,
              "best_step": 2},
             {"step": 3, "loss": 0.6, "points": 5, "valid_loss": 0.72, "valid_mase": float("nan")}]
    _, events = fold(Progress(), "".join(json.dumps(x) + "\n" for x in lines).encode(), 3)
    views = [cohere.step_metric_view(EventRecord(id=str(i), job_id="j", created_at=1.0, level="info", type=e.type,
                                                 message=e.message, data=e.data))
             for i, e in enumerate(events)]
    assert views[0]["metrics"] == {"loss": 0.9}
    assert views[1]["metrics"] == {"loss": 0.8, "valid_loss": 0.7, "valid_mase": 1.1}
    assert views[2]["metrics"] == {"loss": 0.6, "valid_loss": 0.72}  # a non-finite score is left out

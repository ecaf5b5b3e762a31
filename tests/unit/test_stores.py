"""The SQL stores on a real SQLite database: the shared Store pattern, status enums, ownership."""

import pytest

from serve_apps.finetuning.store import JobNotFound, JobStatus, JobStore
from serve_apps.models.registry import ModelNotFound, ModelStatus, Registry
from serve_apps.nixtla.async_store import AsyncJobStatus, AsyncJobStore
from serve_apps.storage.db import metadata
from serve_apps.storage.files import FileNotFound, FileStore, InvalidFile
from train_jobs.spec import TrainingSpec


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


def _model(registry, model_id="ft-1", org="acme", status=ModelStatus.QUEUED):
    return registry.add(model_id=model_id, organization=org, base_model_id="tsfm-base", source="openai",
                        created_by="k", freq=None, steps=10, depth=1, loss="default", finetune_tokens=0,
                        params={}, status=status)


def test_each_store_creates_only_its_own_tables(url):
    import sqlalchemy as sa

    FileStore(url, "/tmp/unused-artifacts")
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert tables == {"files"} and set(metadata.tables) >= {"files", "models", "jobs", "job_events", "async_jobs"}


def test_registry_statuses_ownership_and_soft_delete(url, tmp_path):
    registry = Registry(url, tmp_path / "artifacts")
    record = _model(registry)
    assert record.status is ModelStatus.QUEUED and record.status == "queued"
    with pytest.raises(ModelNotFound):
        registry.get("ft-1", "globex")  # another organization's model is missing, not forbidden
    registry.set_status("ft-1", ModelStatus.READY, finetune_tokens=99)
    assert registry.get("ft-1", "acme").status is ModelStatus.READY
    registry.delete("ft-1", "acme")
    with pytest.raises(ModelNotFound):
        registry.get("ft-1")
    assert registry.exists("ft-1")  # ids are never reused


def test_job_store_keeps_the_training_spec_and_moves_only_active_jobs(url):
    jobs = JobStore(url)
    spec = TrainingSpec(base_model="tsfm-base", epochs=2)
    job = jobs.create(organization="acme", source="openai", model="timegpt-1", base_model_id="tsfm-base",
                      model_id="ft-2", training_file="file-1", validation_file=None, spec=spec, request={})
    assert job.status is JobStatus.QUEUED and job.status.active and job.spec == spec
    with pytest.raises(JobNotFound):
        jobs.get(job.id, "globex")
    assert jobs.transition(job.id, JobStatus.RUNNING, "started")
    assert jobs.transition(job.id, JobStatus.SUCCEEDED, "done")
    assert not jobs.transition(job.id, JobStatus.CANCELLED, "too late")  # terminal states are final
    assert [e.data["status"] for e in jobs.events(job.id, ("status",))] == ["queued", "running", "succeeded"]
    assert jobs.active() == []


def test_files_and_async_jobs_share_the_pattern(url, tmp_path):
    files = FileStore(url, tmp_path / "artifacts")
    record = files.create("acme", "s.csv", "fine-tune", b"unique_id,y\na,1\na,2\n")
    assert files.get(record.id, "acme").n_points == 2
    with pytest.raises(FileNotFound):
        files.get(record.id, "globex")
    with pytest.raises(InvalidFile):
        files.create("acme", "s.csv", "fine-tune", b"no,columns\n1,2\n")
    store = AsyncJobStore(url, tmp_path / "artifacts")
    job = store.create("acme", "k", "forecast", {"x": 1}, None)
    assert store.get(job.id, "acme").status is AsyncJobStatus.PENDING


def test_registry_lists_live_children(url, tmp_path):
    registry = Registry(url, tmp_path / "artifacts")
    _model(registry, "parent")
    child = registry.add(model_id="child", organization="acme", base_model_id="parent", source="nixtla",
                         created_by="k", freq=None, steps=1, depth=1, loss="default", finetune_tokens=0, params={})
    assert [c.id for c in registry.children("parent")] == [child.id]
    registry.delete("child", "acme")
    assert registry.children("parent") == []

"""Nixtla fine-tunes above the replica threshold run as Ray Train jobs (serve_apps.nixtla.cluster_finetune):
which calls go there, the per-request bound, the 504 that names the async API, re-attaching an
identical call to the job already running, and cancelling the Ray job with its async job. The
job manager is a stand-in here (the jobs are finished by hand); tests/integration/test_server_nixtla.py
runs one through Ray Train."""

import asyncio
import time

import numpy as np
import pytest

from serve_apps.dialects import nixtla, openai
from serve_apps.dialects.openai_schema import FineTuningJob
from serve_apps.errors import ApiError
from serve_apps.finetuning.manager import TRAINING_DATA, job_dir
from serve_apps.finetuning.service import FinetuningService
from serve_apps.finetuning.store import JobStatus, JobStore
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.models.resolver import ModelResolver
from serve_apps.nixtla.cluster_finetune import ClusterFinetune, fingerprint
from serve_apps.settings import Settings
from tsfm_core.predict import ForecastResult


class Remote:
    def __init__(self, calls: list, name: str):
        self.calls, self.name = calls, name

    def remote(self, *args):
        self.calls.append((self.name, *args))
        return Done()


class Done:
    """An answered remote call: awaiting it returns at once; never awaiting it (reconcile) is fine too."""

    def __await__(self):
        return iter(())


class JobManagerHandle:
    """Records what the service asks of the JobManager deployment."""

    def __init__(self):
        self.calls: list = []
        self.reconcile, self.cancel = Remote(self.calls, "reconcile"), Remote(self.calls, "cancel")


class Caller:
    organization, key_hint = "acme", "k"


@pytest.fixture
def cluster(tmp_path):
    settings = Settings(home=str(tmp_path), replica_finetune_steps=20, max_job_steps=1000, finetune_wait_s=1)  # long enough for a loaded machine
    registry = Registry(settings.database_url, settings.artifact_dir)
    resolver = ModelResolver(registry)
    service = FinetuningService(settings, registry, JobStore(settings.database_url), resolver, JobManagerHandle())
    return ClusterFinetune(settings, service, resolver, output_patch_len=32)


def _body(steps: int, **extra) -> nixtla.NixtlaFinetuneBody:
    return nixtla.NixtlaFinetuneBody.model_validate({"series": {"y": [float(i % 5) for i in range(60)], "sizes": [40, 20]},
                                                     "freq": "D", "finetune_steps": steps, **extra})


def _prepare(cluster, body, in_job=False):
    return cluster.prepare_finetune(body, Caller(), "tsfm-base", nixtla.finetune_config(body, 1000), in_job)


async def _job_created(cluster, timeout: float = 30) -> None:
    """Until the call under test has recorded its job (it does so off the event loop)."""
    deadline = time.monotonic() + timeout
    while not cluster.jobs.active():
        assert time.monotonic() < deadline, "the call recorded no job"
        await asyncio.sleep(0.02)


def _finish(cluster, status=JobStatus.SUCCEEDED, points=123):
    (job,) = cluster.jobs.active()
    cluster.jobs.transition(job.id, status, "done", trained_tokens=points, finished_at=1e12)
    if status == JobStatus.SUCCEEDED:
        cluster.registry.set_status(job.model_id, ModelStatus.READY, finetune_tokens=points)
    return job


def test_only_fine_tunes_above_the_threshold_go_to_the_cluster(cluster):
    assert not cluster.wanted(None)
    assert not cluster.wanted(nixtla.finetune_config(_body(20), 1000))
    assert cluster.wanted(nixtla.finetune_config(_body(21), 1000))
    with pytest.raises(ApiError) as err:  # the per-request bound stays a 422 naming the field
        nixtla.finetune_config(_body(1001), 1000)
    assert err.value.status == 422 and err.value.loc == ["body", "finetune_steps"]


def test_a_long_finetune_waits_then_answers_504_and_a_retry_waits_for_the_same_job(cluster):
    async def scenario():
        body = _body(200, output_model_id="long-one")
        with pytest.raises(ApiError) as err:
            await _prepare(cluster, body)()
        (job,) = cluster.jobs.active()
        assert err.value.status == 504 and err.value.loc == ["body", "finetune_steps"]
        assert "POST /v2/finetune/async" in err.value.msg and job.id in err.value.msg and "long-one" in err.value.msg
        assert job.spec.steps == 200 and job.source == "nixtla" and job.training_file == "inline-series"
        assert job.spec.epochs == 200 * 32 // 2  # 60 points, 2 series: 2 windows of 32 points
        FineTuningJob.model_validate(openai.job_view(job))  # it shows in the OpenAI-style job list too
        assert (job_dir(cluster.settings, job.id) / TRAINING_DATA).exists()
        assert cluster.registry.get("long-one", "acme").freq == "D"
        # The SDK's retry (same body, output_model_id already taken by that job) waits for it: no second job.
        retry = _prepare(cluster, body)
        task = asyncio.ensure_future(retry())
        await asyncio.sleep(0.1)
        _finish(cluster)
        out = await task
        assert out == {"input_tokens": 60, "output_tokens": 0, "finetune_tokens": 123, "finetuned_model_id": "long-one"}
        assert len(cluster.jobs.list("acme")) == 1
        # A new body is a new job; its id is checked as before.
        with pytest.raises(ApiError) as taken:
            _prepare(cluster, _body(300, output_model_id="long-one"))
        assert taken.value.status == 422 and taken.value.loc == ["body", "output_model_id"]

    asyncio.run(scenario())


def test_a_failed_or_cancelled_job_is_an_error_that_is_not_retried(cluster):
    async def scenario():
        for status, code in ((JobStatus.FAILED, 500), (JobStatus.CANCELLED, 410)):
            task = asyncio.ensure_future(_prepare(cluster, _body(100 + code))())
            await _job_created(cluster)
            _finish(cluster, status)
            with pytest.raises(ApiError) as err:
                await task
            assert err.value.status == code

    asyncio.run(scenario())


def test_an_async_job_waits_without_the_limit_and_its_cancel_stops_the_ray_job(cluster):
    async def scenario():
        task = asyncio.ensure_future(_prepare(cluster, _body(100), in_job=True)())
        await asyncio.sleep(2 * cluster.settings.finetune_wait_s)
        assert not task.done()  # no 504 inside an async job
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        (job,) = cluster.jobs.active()
        assert ("cancel", job.id) in cluster.finetuning.job_manager.calls

    asyncio.run(scenario())


def test_identical_calls_share_a_fingerprint_and_other_organizations_do_not():
    a, b = _body(100), _body(100)
    assert fingerprint("finetune", a, "acme") == fingerprint("finetune", b, "acme")
    assert fingerprint("finetune", a, "acme") != fingerprint("finetune", a, "globex")
    assert fingerprint("finetune", a, "acme") != fingerprint("finetune", _body(101), "acme")


def test_without_a_job_manager_a_long_finetune_is_a_422_naming_the_field(cluster):
    cluster.finetuning.job_manager = None
    with pytest.raises(ApiError) as err:
        _prepare(cluster, _body(100))
    assert err.value.status == 422 and err.value.loc == ["body", "finetune_steps"]


def test_a_long_finetune_inside_a_forecast_trains_a_job_forecasts_with_its_model_and_drops_it(cluster):
    body = nixtla.NixtlaForecastBody.model_validate({"series": {"y": [float(i % 5) for i in range(60)], "sizes": [60]},
                                                     "h": 3, "freq": "D", "finetune_steps": 100})
    used = []

    async def forecast(model_id, call):
        used.append((model_id, cluster.registry.get(model_id).status))
        return [ForecastResult(median=np.ones((3, 1)), quantiles=np.ones((1, 3, 1)), levels=[0.5])]

    async def scenario():
        config = nixtla.forecast_finetune(body, 1000)
        run = cluster.prepare_forecast(body, Caller(), "tsfm-base", config, forecast, object(), in_job=False)
        task = asyncio.ensure_future(run())
        await _job_created(cluster)
        job = _finish(cluster)
        out = await task
        assert out["mean"] == [1.0, 1.0, 1.0]
        assert used == [(job.model_id, ModelStatus.READY)]
        assert cluster.registry.list("acme") == []  # a forecast's fine-tune keeps no model

    asyncio.run(scenario())


def test_deleting_a_model_by_its_client_chosen_id_cancels_its_job(cluster):
    async def scenario():
        with pytest.raises(ApiError):  # 504: the job goes on
            await _prepare(cluster, _body(200, output_model_id="doomed"))()
        (job,) = cluster.jobs.active()
        await cluster.finetuning.delete_model("doomed", Caller())  # stored scoped: doomed.<org tag>
        assert ("cancel", job.id) in cluster.finetuning.job_manager.calls

    asyncio.run(scenario())

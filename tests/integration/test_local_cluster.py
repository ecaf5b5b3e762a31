"""A local multi-node Ray cluster (head + worker node, separate raylets) and `ray job submit`
of the finetuning entry point onto it, exactly as operators run it."""

import json
import os
import subprocess
import sys

import httpx
import pytest

from serve_apps.embedded.local_cluster import RAY, free_port
from serve_apps.embedded.multi_node import MultiNodeCluster
from tests.conftest import seasonal_series, wait_for
from tsfm_core.checkpoint import load_model, read_config
from tsfm_core.datasets import write_series


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = MultiNodeCluster(tmp_path_factory.mktemp("ray-cluster"), workers=1).start()
    yield c
    c.stop()


def test_ray_job_submit_runs_finetune_on_the_worker_node(cluster, tmp_path):
    data = write_series({f"s{i}": seasonal_series(200, seed=i) for i in range(4)}, tmp_path / "series.parquet")
    out = tmp_path / "job-model"
    proc = subprocess.run(
        [RAY, "job", "submit", "--address", cluster.dashboard, "--",
         sys.executable, "-m", "train_jobs.finetune", "--data", str(data), "--output", str(out), "--steps", "6",
         "--depth", "3", "--num-workers", "2", "--checkpoint-every", "3", "--storage-path", str(tmp_path / "runs")],
        env=cluster.env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "succeeded" in proc.stdout.lower()
    config = read_config(out)
    assert config["finetune"]["depth"] == 3 and config["training"]["num_workers"] == 2
    assert [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 7))
    load_model(out)


def _cluster_processes(temp_dir: str) -> list[str]:
    """Command lines of live processes that belong to the cluster in `temp_dir` (all name its session)."""
    out = subprocess.run(["pgrep", "-af", temp_dir], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "pgrep" not in line]


def test_embedded_cluster_goes_down_when_its_owner_is_killed(tmp_path):
    """A server SIGKILLed by a supervisor runs no handler; the reaper still stops its cluster."""
    temp_dir = f"/tmp/tsfm-rc-{free_port()}"
    owner = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from serve_apps.embedded.local_cluster import LocalCluster\n"
         f"c = LocalCluster({temp_dir!r}, num_cpus=1, log_path={str(tmp_path / 'head.log')!r}).start()\n"
         "import ray; ray.init(address=c.address)\n"
         "ray.get(ray.remote(lambda: 1).remote())\n"  # a worker process too, not only the daemons
         "print(c.dashboard_url, flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    dashboard = owner.stdout.readline().strip()
    assert httpx.get(f"{dashboard}/api/version", timeout=5).status_code == 200
    assert _cluster_processes(temp_dir)
    owner.kill()
    owner.wait()
    wait_for(lambda: _cluster_processes(temp_dir), lambda procs: not procs, timeout=60)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{dashboard}/api/version", timeout=2)


def _live_train_actors(dashboard: str) -> list[str]:
    from ray.util.state import list_actors

    return [a.class_name for a in list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], limit=1000)
            if a.class_name in ("TrainController", "RayTrainWorker")]


def test_a_stop_file_ends_the_driver_and_its_training_workers(cluster, tmp_path):
    """The job manager's cooperative cancel: the driver exits when its stop file appears and Ray
    ends the run's controller and workers with it, whatever state Ray's own stop found it in."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    data = write_series({f"s{i}": seasonal_series(200, seed=i) for i in range(4)}, tmp_path / "series.parquet")
    progress, stop = tmp_path / "progress.jsonl", tmp_path / "cancelled"
    client = JobSubmissionClient(cluster.dashboard)
    job = client.submit_job(entrypoint=" ".join([
        sys.executable, "-m", "train_jobs.finetune", "--data", str(data), "--output", str(tmp_path / "never"),
        "--steps", "100000", "--num-workers", "2", "--storage-path", str(tmp_path / "runs"),
        "--progress-file", str(progress), "--stop-file", str(stop)]))
    wait_for(lambda: progress.exists() and progress.read_text(), bool, timeout=180)
    assert _live_train_actors(cluster.dashboard)
    stop.touch()
    status = wait_for(lambda: client.get_job_status(job), JobStatus.is_terminal, timeout=60)
    assert status == JobStatus.FAILED and "stop file" in client.get_job_logs(job)
    wait_for(lambda: _live_train_actors(cluster.dashboard), lambda actors: not actors, timeout=60)
    assert not (tmp_path / "never").exists()

"""One owner per fine-tuning job across servers sharing one TSFM_HOME (one database, one artifact
store, each with its own embedded Ray cluster): a job runs exactly once, with one driver alive at a
time, its metrics recorded once per step, its trained_tokens exact; a server started in the
middle of a job leaves it to its owner."""

import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from serve_apps.embedded.local_server import ServerProcess
from tests.conftest import seasonal_series, wait_for

TERMINAL = ("succeeded", "failed", "cancelled")


def drivers(marker: str) -> set[int]:
    """Pids of `python -m train_jobs.finetune` processes whose arguments mention `marker`; the `sh -c`
    wrapper Ray may start a driver under carries the command in one argument and is not counted."""
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a == "-m" and b == "train_jobs.finetune" for a, b in zip(args, args[1:])) and any(marker in a for a in args):
            pids.add(int(cmdline.parent.name))
    return pids


class DriverWatch:
    """Samples the live drivers of one home in the background: the most alive at once, and every pid seen."""

    def __init__(self, marker: str):
        self.marker, self.most, self.seen = marker, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = drivers(self.marker)
            self.most, self.seen = max(self.most, len(pids)), self.seen | pids
            time.sleep(0.2)

    def __enter__(self) -> "DriverWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _submit(client: httpx.Client, steps: int) -> dict:
    buf = io.BytesIO()
    pd.DataFrame({"unique_id": np.repeat(["a", "b"], 200),
                  "y": np.concatenate([seasonal_series(200), seasonal_series(200, seed=1)])}).to_parquet(buf)
    file_id = client.post("/v1/files", files={"file": ("s.parquet", buf.getvalue())},
                          data={"purpose": "fine-tune"}).json()["id"]
    r = client.post("/v1/fine_tuning/jobs", json={"model": "tsfm-base", "training_file": file_id,
                                                  "hyperparameters": {"steps": steps, "batch_size": 8}})
    assert r.status_code == 200, r.text
    return r.json()


def _events(client: httpx.Client, job_id: str) -> list[dict]:
    """Every event of the job, newest first, page by page."""
    events, after = [], None
    while True:
        page = client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 1000, **({"after": after} if after else {})}).json()
        events += page["data"]
        if not page["has_more"]:
            return events
        after = page["data"][-1]["id"]


def _assert_ran_once(client: httpx.Client, home: Path, job_id: str, steps: int) -> None:
    done = wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}").json(), lambda j: j["status"] in TERMINAL,
                    timeout=900)
    assert done["status"] == "succeeded", done
    events = _events(client, job_id)
    messages = [e["message"] for e in events]
    assert messages.count("Submitted to Ray") == 1 and not any(m.startswith("Resubmitted") for m in messages), messages
    metric_steps = sorted(e["data"]["step"] for e in events if e["type"] == "metrics")
    assert metric_steps == list(range(1, steps + 1))
    history = [json.loads(line) for line in (home / "artifacts" / "jobs" / job_id / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, steps + 1))
    assert done["trained_tokens"] == sum(h["points"] for h in history)


def test_servers_sharing_a_home_run_each_job_exactly_once(tmp_path):
    """One home, two servers (one test, since each server start costs half a minute of the suite).
    First a server started in the middle of a job: its job manager sees a running job it does not
    own, and neither resubmits it nor starts a driver; the job is then cancelled through it (its stop
    file ends the first server's driver) instead of run to its end. Then, with both servers
    reconciling, a queued job is claimed by one of them and runs to its end exactly once."""
    home = tmp_path / "home"
    first = ServerProcess(home).start(timeout=480)
    second = ServerProcess(home)
    try:
        client = httpx.Client(base_url=first.url, timeout=120)
        with DriverWatch(str(home)) as watch, ThreadPoolExecutor(1) as pool:
            job = _submit(client, 20_000)  # the most a job may ask for; cancelled long before its end
            starting = pool.submit(second.start, 480)  # its start overlaps the job's
            wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=5").json()["data"],
                     lambda events: any(e["type"] == "metrics" for e in events), timeout=600)
            starting.result()
            time.sleep(4)  # the second server's job manager reconciles every second from its start
            other = httpx.Client(base_url=second.url, timeout=120)
            assert other.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "running"
            messages = [e["message"] for e in _events(other, job["id"])]
            assert messages.count("Submitted to Ray") == 1 and not any(m.startswith("Resubmitted") for m in messages)
            assert other.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
            wait_for(lambda: drivers(str(home)), lambda pids: not pids, timeout=120)
            steps = [e["data"]["step"] for e in _events(client, job["id"]) if e["type"] == "metrics"]
            assert steps and sorted(steps) == list(range(1, len(steps) + 1)), steps[:20]
        assert watch.most == 1 and len(watch.seen) == 1, (watch.most, watch.seen)

        steps = 60
        with DriverWatch(str(home)) as watch:
            job = _submit(other, steps)  # queued through the newer server; either may claim it
            _assert_ran_once(client, home, job["id"], steps)
            assert other.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["trained_tokens"] == client.get(
                f"/v1/fine_tuning/jobs/{job['id']}").json()["trained_tokens"]
        assert watch.most == 1 and len(watch.seen) == 1, (watch.most, watch.seen)
    finally:
        second.stop()
        first.stop()

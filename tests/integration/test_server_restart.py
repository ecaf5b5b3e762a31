"""Nothing accepted is lost: files, models, a running fine-tuning job and a running Nixtla async
job survive a server restart; the fine-tuning job's Ray run died with the embedded cluster and
resumes from its last checkpoint, the async job is redone from its stored body."""

import io
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from serve_apps.embedded.local_server import ServerProcess
from tests.conftest import live_drivers, seasonal_series, wait_for


def test_jobs_files_and_models_survive_a_restart(tmp_path):
    home = tmp_path / "home"
    first = ServerProcess(home).start()
    try:
        client = httpx.Client(base_url=first.url, timeout=120)
        buf = io.BytesIO()
        pd.DataFrame({"unique_id": np.repeat(["a", "b"], 200), "y": np.concatenate(
            [seasonal_series(200), seasonal_series(200, seed=1)])}).to_parquet(buf)
        file_id = client.post("/v1/files", files={"file": ("s.parquet", buf.getvalue())},
                              data={"purpose": "fine-tune"}).json()["id"]
        job = client.post("/v1/fine_tuning/jobs", json={"model": "tsfm-base", "training_file": file_id,
                                                        "hyperparameters": {"steps": 500, "batch_size": 8}}).json()
        assert client.post("/v2/finetune", json={"series": {"y": [float(v) for v in seasonal_series(50)], "sizes": [50]},
                                                 "freq": "D", "finetune_steps": 2, "output_model_id": "kept"}).status_code == 200
        # Wait until the run has written a checkpoint, then take the whole server (and its Ray) down.
        wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"], bool)
        running = client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
        assert running["status"] == "running"
        # The checkpoint came with the run's second report at the earliest: the step rate is measured,
        # and hundreds of steps are left, so the predicted finish is ahead (within a day here).
        assert time.time() < running["estimated_finish"] < time.time() + 86400, running
        async_job = client.post("/v2/finetune/async", json={
            "series": {"y": [float(v) for v in seasonal_series(200)], "sizes": [200]}, "freq": "D",
            "finetune_steps": 300, "output_model_id": "from-async"}).json()["job_id"]
        wait_for(lambda: client.get(f"/v2/finetune/jobs/{async_job}").json()["status"], lambda s: s == "running")
    finally:
        first.stop()
    # The job's driver ran in a session of its own; it went down with the server.
    assert live_drivers(str(home)) == []

    second = ServerProcess(home).start()
    try:
        client = httpx.Client(base_url=second.url, timeout=120)
        assert client.get(f"/v1/files/{file_id}").status_code == 200
        assert client.get("/v2/finetuned_models/kept").json()["id"] == "kept"
        done = wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job['id']}").json(),
                     lambda j: j["status"] in ("succeeded", "failed", "cancelled"), timeout=600)
        assert done["status"] == "succeeded" and done["estimated_finish"] is None, done
        events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=1000").json()["data"]
        assert any(e["message"].startswith("Resubmitted to Ray (attempt 2)") for e in events)
        # The resumed run re-reported the steps after its checkpoint; each step is recorded once.
        assert sorted(e["data"]["step"] for e in events if e["type"] == "metrics") == list(range(1, 501))
        history = [json.loads(line) for line in
                   (Path(home) / "artifacts" / "jobs" / job["id"] / "metrics.jsonl").read_text().splitlines()]
        assert history[-1]["step"] == 500 and max(h["resumed_from"] for h in history) >= 50
        assert [h["step"] for h in history] == list(range(1, 501)) and done["trained_tokens"] == sum(h["points"] for h in history)
        r = client.post("/v1/forecast", json={"model": done["fine_tuned_model"], "inputs": [{"target": [[1.0], [2.0]]}],
                                              "parameters": {"prediction_length": 2}})
        assert r.status_code == 200
        redone = wait_for(lambda: client.get(f"/v2/finetune/jobs/{async_job}").json(),
                          lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
        assert redone["status"] == "succeeded" and redone["attempts"] >= 2, redone
        assert redone["result"]["finetuned_model_id"] == "from-async"
        assert client.get("/v2/finetuned_models/from-async").json()["id"] == "from-async"
    finally:
        second.stop()

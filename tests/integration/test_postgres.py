"""The server on PostgreSQL (TSFM_DATABASE_URL), the production registry configuration: files, a
fine-tuning job run through Ray Jobs, Nixtla models, isolation, and persistence across a restart."""

import io

import httpx
import numpy as np
import pandas as pd
import pytest

from serve_apps.embedded.local_server import ServerProcess
from tests.conftest import API_KEY, OTHER_KEY, SERVER_ENV, seasonal_series, wait_for
from tests.integration.pg import server_bin_dir

pytest.importorskip("psycopg")
BIN = server_bin_dir()
pytestmark = pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries (initdb, postgres) not installed")


def _client(server: ServerProcess, key: str = API_KEY) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120, headers={"authorization": f"Bearer {key}"})


def test_server_on_postgres_runs_jobs_and_keeps_them_across_a_restart(postgres, tmp_path):
    env = {**SERVER_ENV, "TSFM_DATABASE_URL": postgres.url}
    first = ServerProcess(tmp_path / "home", env=env).start()
    try:
        client, other = _client(first), _client(first, OTHER_KEY)
        buf = io.BytesIO()
        pd.DataFrame({"unique_id": np.repeat(["a", "b"], 120),
                      "y": np.concatenate([seasonal_series(120), seasonal_series(120, seed=1)])}).to_parquet(buf)
        file_id = client.post("/v1/files", files={"file": ("s.parquet", buf.getvalue())},
                              data={"purpose": "fine-tune"}).json()["id"]
        job = client.post("/v1/fine_tuning/jobs", json={"model": "tsfm-base", "training_file": file_id,
                                                        "hyperparameters": {"steps": 20, "batch_size": 8}}).json()
        done = wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job['id']}").json(),
                        lambda j: j["status"] in ("succeeded", "failed", "cancelled"))
        assert done["status"] == "succeeded", done
        model_id = done["fine_tuned_model"]
        r = client.post("/v1/forecast", json={"model": model_id, "inputs": [{"target": [[1.0], [2.0], [3.0]]}],
                                              "parameters": {"prediction_length": 3}})
        assert r.status_code == 200, r.text
        nixtla = {"series": {"y": [float(v) for v in seasonal_series(60)], "sizes": [60]}, "freq": "D",
                  "finetune_steps": 2, "output_model_id": "pg-model"}
        assert client.post("/v2/finetune", json=nixtla).status_code == 200
        duplicate = client.post("/v2/finetune", json=nixtla)  # the unique key, as PostgreSQL enforces it
        assert duplicate.status_code == 422 and duplicate.json()["detail"][0]["loc"] == ["body", "output_model_id"]
        assert other.get(f"/v1/fine_tuning/jobs/{job['id']}").status_code == 404
        assert other.get("/v2/finetuned_models").json()["finetuned_models"] == []
    finally:
        first.stop()

    second = ServerProcess(tmp_path / "home", env=env).start()
    try:
        client = _client(second)
        listed = {m["id"] for m in client.get("/v2/finetuned_models").json()["finetuned_models"]}
        assert {model_id.rsplit(":", 1)[-1], "pg-model"} <= listed  # Nixtla lists the id an ft: name ends with
        assert client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "succeeded"
        events = client.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=1000").json()["data"]
        assert events[0]["message"].startswith("Fine-tuning succeeded") and events[-1]["message"].startswith("Validated")
        assert client.get(f"/v1/files/{file_id}").status_code == 200
        r = client.post("/v2/forecast", json={"series": {"y": [1.0, 2.0, 3.0], "sizes": [3]}, "h": 2, "freq": "D",
                                              "finetuned_model_id": "pg-model"})
        assert r.status_code == 200 and len(r.json()["mean"]) == 2
    finally:
        second.stop()

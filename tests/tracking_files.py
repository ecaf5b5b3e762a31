"""Reading experiment-tracking runs back from disk with the trackers' own formats: a W&B offline
run's .wandb file (wandb's protobuf Records) and an MLflow store through MlflowClient."""

from __future__ import annotations

import json
import os
from pathlib import Path

BLOCK = 32768  # the .wandb file is a LevelDB-style log of 32 KiB blocks


def wandb_records(run_file: Path) -> list:
    """The protobuf Records of a W&B run file (wandb ships the schema, not a Python reader).

    Layout: a 7-byte ':W&B' header, then chunks of crc32 (4) + length (2) + kind (1) + data, never
    straddling a block; kinds 1 (full) and 4 (last) end a record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = run_file.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # the block's tail is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def wandb_run(directory: Path) -> dict:
    """{'history': {step: {key: value}}, 'summary': {...}, 'config': {...}, 'tags': [...], 'id': ...}."""
    (run_file,) = directory.glob("wandb/offline-run-*/run-*.wandb")
    out: dict = {"history": {}, "summary": {}, "config": {}}
    for r in wandb_records(run_file):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(id=r.run.run_id, project=r.run.project, tags=list(r.run.tags), name=r.run.display_name)
            out["config"] = {i.key: json.loads(i.value_json) for i in r.run.config.update}
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            out["history"][row["_step"]] = row
        elif kind == "summary":
            out["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
    return out


def mlflow_run(uri: str, experiment: str = "tsfm-finetune"):
    """(an MlflowClient on `uri`, the runs of `experiment`)."""
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # as the tracker does (MLflow 3's file store)

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return client, runs


def history(client, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, key)}

"""What a succeeded fine-tuning run leaves behind, recorded once: its results file, its verdict
against the base, the job's `succeeded` and the model's status.

Kept apart from the JobManager (which decides *when* a run is finished) so it runs, and is tested,
on plain stores without Ray.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from serve_apps.finetuning.progress import NewEvent
from serve_apps.finetuning.results import (
    RESULTS_FILENAME,
    RESULTS_PURPOSE,
    read_history,
    results_csv,
)
from serve_apps.finetuning.store import VALIDATION_EVENT, JobRecord, JobStatus, JobStore
from serve_apps.finetuning.verdict import Verdict, judge, refused, training_summary
from serve_apps.models.registry import ModelStatus, Registry
from serve_apps.storage.files import FileStore
from tsfm_core.checkpoint import CONFIG_FILE


# A job that ended otherwise while this run was being recorded, and the status its model keeps.
_MODEL_STATUS_OF_ENDED_JOB = {JobStatus.CANCELLED: ModelStatus.CANCELLED, JobStatus.FAILED: ModelStatus.FAILED}


def verdict_event(verdict: Verdict, rejected: bool) -> NewEvent:
    """The event naming both scores: a warning when the model is worse than its base (and, when it
    is not promoted, why)."""
    message = verdict.message
    if rejected:
        message += ("; the model is not promoted (this server refuses finetuned models worse than their base: "
                    "TSFM_REFUSE_WORSE_FINETUNES)")
    data = {"outcome": verdict.outcome, "worse_than_base": verdict.worse, "selected_step": verdict.selected_step,
            "windows": verdict.windows}
    if verdict.base is not None:
        data |= {"base_valid_loss": verdict.base["loss"], "base_valid_mase": verdict.base["mase"],
                 "valid_loss": verdict.finetuned["loss"], "valid_mase": verdict.finetuned["mase"]}
    return NewEvent("warn" if verdict.worse else "info", VALIDATION_EVENT, message, data)


def finish_succeeded(job: JobRecord, jobs: JobStore, registry: Registry, files: FileStore, job_directory: Path,
                     refuse_worse: bool) -> tuple[Verdict, bool] | None:
    """Records a run whose driver succeeded: (its verdict, whether its model was promoted); None while
    its model is not written yet, or if the job left ACTIVE meanwhile (e.g. cancelled: nothing is
    then recorded and the results file is removed).

    The job always ends `succeeded` (training did succeed); the model becomes `ready`, or `rejected`
    when it is worse than its base and `refuse_worse` is set."""
    output = registry.artifact_path_for(job.model_id)
    if not (output / CONFIG_FILE).exists():
        return None  # the driver is still writing the model; next round
    summary = training_summary(output)
    points = int(summary.get("finetune_points", job.trained_tokens))
    verdict = judge(summary.get("validation"))
    rejected = refused(verdict, refuse_worse)
    results = files.create_generated(job.organization, RESULTS_FILENAME, RESULTS_PURPOSE,
                                     results_csv(read_history(output / "metrics.jsonl")))
    name = registry.get(job.model_id).name
    if rejected:
        message = f"Fine-tuning succeeded, but model {name} is not promoted: worse than its base"
    else:
        message = f"Fine-tuning succeeded: model {name} is ready"
    # The model's status first: whoever sees the job `succeeded` (a Nixtla call waiting on it) must
    # find its model ready, or rejected, not still `finetuning`.
    registry.update_params(job.model_id, {"validation": {**verdict.to_dict(), "promoted": not rejected}})
    registry.set_status(job.model_id, ModelStatus.REJECTED if rejected else ModelStatus.READY, finetune_tokens=points)
    if not jobs.transition(job.id, JobStatus.SUCCEEDED, message, level="warn" if rejected else "info",
                           events_before=[verdict_event(verdict, rejected)], finished_at=time.time(),
                           trained_tokens=points, result_files=[results.id], validation=verdict.to_dict(),
                           estimated_finish=None):
        files.delete(results.id, job.organization)
        # It left ACTIVE meanwhile (a cancel raced this): its model follows the job, not this run.
        ended = _MODEL_STATUS_OF_ENDED_JOB.get(jobs.get(job.id).status)
        if ended is not None:
            registry.set_status(job.model_id, ended)
        return None
    if (output / "metrics.jsonl").exists():
        shutil.copy(output / "metrics.jsonl", job_directory / "metrics.jsonl")
    return verdict, not rejected

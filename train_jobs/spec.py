"""The typed specs of a training run, one spelling per field from the API body to the Ray Train worker.

- `TrainingSpec`: what a fine-tune learns (base model + tsfm_core's `FinetuneConfig`). Each dialect
  parses its body into one; the job store keeps it as JSON; the Ray job reads it back as itself.
- `FinetuneRun`: where a fine-tuning run reads and writes and how it is spread over the cluster. The
  server writes it next to the job's data and submits `python -m train_jobs.finetune --run run.json`;
  people use the same fields as command-line flags (`from_argv`).
- `PretrainSpec`: what pretraining learns.
- `TrackingConfig`: where a fine-tune's metrics are logged (Weights & Biases, MLflow), part of its
  `TrainingSpec`; train_jobs.tracking logs to it.

Adding a hyperparameter: a field of `FinetuneConfig` (tsfm_core) and, if clients may set it, the
dialect bodies that expose it. Nothing in between re-spells it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from tsfm_core.checkpoint import BASE_MODEL_ID, CONFIG_FILE, bundled_model_dir, read_config
from tsfm_core.finetune import FinetuneConfig, LoraConfig
from tsfm_core.losses import LOSSES


REDACTED = "***"


@dataclass(frozen=True)
class WandbTarget:
    """A Weights & Biases run to log to: OpenAI's `integrations[].wandb`, Cohere's `settings.wandb`."""

    project: str
    name: str | None = None  # default: the run's name (the job id)
    entity: str | None = None
    tags: tuple[str, ...] = ()
    # Cohere sends one; used only to sync online. Kept out of reprs, views and logs (see redacted()).
    api_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", tuple(self.tags))


@dataclass(frozen=True)
class MlflowTarget:
    """An MLflow run to log to (our extension of OpenAI's integrations, or the server's setting)."""

    experiment: str = "tsfm-finetune"
    run_name: str | None = None  # default: the run's name (the job id)
    tags: tuple[tuple[str, str], ...] = ()  # (key, value) pairs set on the run

    def __post_init__(self) -> None:
        tags = self.tags.items() if isinstance(self.tags, dict) else self.tags
        object.__setattr__(self, "tags", tuple((str(k), str(v)) for k, v in tags))


@dataclass(frozen=True)
class TrackingConfig:
    """What a fine-tune logs to. `wandb`/`mlflow` come from the request; the other fields are the
    operator's (the server fills them from its settings when it writes the run, see `for_run`), so a
    request body cannot choose where on the server's disk or network its runs go."""

    wandb: WandbTarget | None = None
    mlflow: MlflowTarget | None = None
    online: bool = False  # W&B syncs live; else an offline run under `directory` (`wandb sync` uploads it)
    directory: str | None = None  # where W&B writes its run directory (default: W&B's own, ./wandb)
    mlflow_tracking_uri: str | None = None  # needed when `mlflow` is set (a file:// store, sqlite:// or http://)

    def __post_init__(self) -> None:
        if isinstance(self.wandb, dict):
            object.__setattr__(self, "wandb", WandbTarget(**self.wandb))
        if isinstance(self.mlflow, dict):
            object.__setattr__(self, "mlflow", MlflowTarget(**self.mlflow))

    @property
    def enabled(self) -> bool:
        return self.wandb is not None or self.mlflow is not None

    def for_run(self, *, online: bool, directory: str, mlflow_tracking_uri: str,
                mlflow_all_jobs: bool = False) -> TrackingConfig:
        """This request's targets with the operator's settings (every job gets MLflow with `mlflow_all_jobs`)."""
        mlflow = self.mlflow or (MlflowTarget() if mlflow_all_jobs else None)
        return replace(self, mlflow=mlflow, online=online, directory=directory, mlflow_tracking_uri=mlflow_tracking_uri)

    def redacted(self) -> TrackingConfig:
        """The same config with the W&B api key masked: what views and logs may show."""
        if self.wandb is None or self.wandb.api_key is None:
            return self
        return replace(self, wandb=replace(self.wandb, api_key=REDACTED))


@dataclass(frozen=True)
class TrainingSpec:
    base_model: str = BASE_MODEL_ID  # the catalog or registry id the fine-tune starts from
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    checkpoint_every: int = 25  # least steps between checkpoints
    epochs: int | None = None  # passes over the data `finetune.steps` was derived from, when it was
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        if isinstance(self.finetune, dict):
            object.__setattr__(self, "finetune", FinetuneConfig(**self.finetune))
        if isinstance(self.tracking, dict):
            object.__setattr__(self, "tracking", TrackingConfig(**self.tracking))
        if self.checkpoint_every < 1:
            raise ValueError("checkpoint_every must be >= 1")

    # The worker loop reads these for pretraining and finetuning alike.
    @property
    def steps(self) -> int:
        return self.finetune.steps

    @property
    def batch_size(self) -> int:
        return self.finetune.batch_size

    @property
    def learning_rate(self) -> float:
        return self.finetune.learning_rate

    @property
    def seed(self) -> int:
        return self.finetune.seed

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "TrainingSpec":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})

    @classmethod
    def from_json(cls, text: str) -> "TrainingSpec":
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class FinetuneRun:
    spec: TrainingSpec
    data: str  # series table (.parquet/.csv/.jsonl)
    output: str  # directory for the finetuned model
    base_model_dir: str  # where the base's weights are (the server's resolver decides)
    model_id: str | None = None  # recorded in the model (default: the output directory's name)
    validation_data: str | None = None  # validation series (same table format); default: held-out last windows
    num_workers: int = 1
    cpus_per_worker: int = 1
    use_gpu: bool = False
    storage_path: str | None = None  # Ray Train storage (local dir or s3://, gs://)
    name: str | None = None  # run name; re-running with the same name resumes it
    max_failures: int = 3
    progress_file: str | None = None  # each report appended as a JSON line while training
    stop_file: str | None = None  # the driver exits once this exists: cooperative cancel
    report_interval_s: float | None = None  # default: Ray Train's poll interval
    inject_failure_at_step: int | None = None  # fault drills in tests

    def __post_init__(self) -> None:
        if isinstance(self.spec, dict):
            object.__setattr__(self, "spec", TrainingSpec.from_dict(self.spec))

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> "FinetuneRun":
        return cls(**json.loads(Path(path).read_text()))

    @classmethod
    def from_argv(cls, argv: list[str] | None, description: str = "") -> "FinetuneRun":
        p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--run", type=Path, default=None, help="a FinetuneRun JSON file (what the server submits); "
                                                               "other flags are then ignored")
        p.add_argument("--data", type=Path, help="series table: .parquet, .csv or .jsonl")
        p.add_argument("--output", type=Path, help="directory for the finetuned model")
        p.add_argument("--model-id", default=None, help="id recorded in the model (default: output dir name)")
        p.add_argument("--base-model", default=BASE_MODEL_ID, help="bundled id or a model directory")
        defaults = FinetuneConfig()
        p.add_argument("--steps", type=int, default=100)
        p.add_argument("--depth", type=int, default=defaults.depth, choices=[1, 2, 3, 4, 5])
        p.add_argument("--loss", default=defaults.loss, choices=LOSSES)
        p.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
        p.add_argument("--batch-size", type=int, default=defaults.batch_size)
        p.add_argument("--lora-rank", type=int, default=None, help="train LoRA adapters instead of a depth")
        p.add_argument("--lora-alpha", type=float, default=LoraConfig.alpha)
        p.add_argument("--lora-targets", default=LoraConfig.targets, choices=["QV", "QKVO", "QKVO_FFN"])
        p.add_argument("--early-stopping-patience", type=int, default=None)
        p.add_argument("--early-stopping-threshold", type=float, default=defaults.early_stopping_threshold)
        p.add_argument("--eval-every", type=int, default=defaults.eval_every,
                       help="steps between evaluations (default: steps/10, 1..10)")
        p.add_argument("--validation-data", default=None,
                       help="validation series (same table format); default: hold out the last window(s) of each series")
        p.add_argument("--validation-windows", type=int, default=defaults.validation_windows,
                       help="windows held out per series when no --validation-data (0: no validation, keep the last step)")
        p.add_argument("--validation-horizon", type=int, default=defaults.validation_horizon,
                       help="points per validation window (default and cap: the model's output patch)")
        p.add_argument("--seed", type=int, default=defaults.seed)
        p.add_argument("--checkpoint-every", type=int, default=25, help="least steps between checkpoints")
        p.add_argument("--num-workers", type=int, default=1)
        p.add_argument("--cpus-per-worker", type=int, default=1)
        p.add_argument("--use-gpu", action="store_true")
        p.add_argument("--report-interval-s", type=float, default=None,
                       help="seconds between metrics reports (default: Ray Train's poll interval, 2 s)")
        p.add_argument("--storage-path", default=None, help="Ray Train storage (local dir or s3://, gs://)")
        p.add_argument("--name", default=None, help="run name; re-running with the same name resumes it")
        p.add_argument("--max-failures", type=int, default=3)
        p.add_argument("--progress-file", default=None, help="append each report as a JSON line here while training")
        p.add_argument("--stop-file", default=None,
                       help="exit (ending the run's workers) as soon as this file exists: cooperative cancel")
        p.add_argument("--inject-failure-at-step", type=int, default=None, help=argparse.SUPPRESS)
        t = p.add_argument_group("experiment tracking (pip install 'tsfm-cluster[tracking]')")
        t.add_argument("--wandb-project", default=None, help="log the run to this W&B project")
        t.add_argument("--wandb-entity", default=None)
        t.add_argument("--wandb-name", default=None, help="W&B run name (default: --name)")
        t.add_argument("--mlflow-tracking-uri", default=None,
                       help="log the run to MLflow here (file:///dir/mlruns, sqlite:///mlflow.db, http://host:5000)")
        t.add_argument("--mlflow-experiment", default=MlflowTarget.experiment)
        t.add_argument("--tracking-dir", default=None, help="where W&B writes its run directory (default: ./wandb)")
        t.add_argument("--tracking-online", action="store_true",
                       help="sync W&B live (needs network and WANDB_API_KEY); default: an offline run")
        a = p.parse_args(argv)
        if a.run is not None:
            return cls.read(a.run)
        if a.data is None or a.output is None:
            p.error("--data and --output are required (or --run)")
        lora = LoraConfig(rank=a.lora_rank, alpha=a.lora_alpha, targets=a.lora_targets) if a.lora_rank else None
        finetune = FinetuneConfig(steps=a.steps, depth=a.depth, loss=a.loss, learning_rate=a.learning_rate,
                                  batch_size=a.batch_size, lora=lora, seed=a.seed,
                                  early_stopping_patience=a.early_stopping_patience,
                                  early_stopping_threshold=a.early_stopping_threshold, eval_every=a.eval_every,
                                  validation_windows=a.validation_windows, validation_horizon=a.validation_horizon)
        base_dir = bundled_model_dir(a.base_model) or Path(a.base_model)
        if not (base_dir / CONFIG_FILE).exists():
            p.error(f"--base-model: {a.base_model!r} is neither a bundled model id nor a model directory")
        tracking = TrackingConfig(
            wandb=WandbTarget(project=a.wandb_project, name=a.wandb_name, entity=a.wandb_entity) if a.wandb_project else None,
            mlflow=MlflowTarget(experiment=a.mlflow_experiment) if a.mlflow_tracking_uri else None,
            online=a.tracking_online, directory=a.tracking_dir, mlflow_tracking_uri=a.mlflow_tracking_uri)
        spec = TrainingSpec(base_model=read_config(base_dir).get("id", base_dir.name), finetune=finetune,
                            checkpoint_every=a.checkpoint_every, tracking=tracking)
        return cls(spec=spec, data=str(a.data), output=str(a.output), base_model_dir=str(base_dir), model_id=a.model_id,
                   validation_data=a.validation_data,
                   num_workers=a.num_workers, cpus_per_worker=a.cpus_per_worker, use_gpu=a.use_gpu,
                   storage_path=a.storage_path, name=a.name, max_failures=a.max_failures,
                   progress_file=a.progress_file, stop_file=a.stop_file, report_interval_s=a.report_interval_s,
                   inject_failure_at_step=a.inject_failure_at_step)


@dataclass(frozen=True)
class PretrainSpec:
    size: str = "base"
    model: dict = field(default_factory=dict)  # ModelConfig overrides of the named size
    steps: int = 6000
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    pool_size: int = 30000  # synthetic series per run (split over workers)
    real_series: list = field(default_factory=list)  # 1-D lists of values mixed into the pool
    seed: int = 0
    checkpoint_every: int = 250

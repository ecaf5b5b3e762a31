"""Server settings from the environment, with embedded defaults (local SQLite, local artifacts)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from serve_apps.dialects.work_limits import WorkLimits


def _home() -> Path:
    return Path(os.environ.get("TSFM_HOME", Path.home() / ".tsfm"))


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_optional_int(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value else None


@dataclass
class Settings:
    home: str = field(default_factory=lambda: str(_home()))
    database_url: str = ""
    artifact_dir: str = ""
    # "key=org,key2=org2"; empty means open access as the "default" organization (single-user mode).
    api_keys: str = field(default_factory=lambda: os.environ.get("TSFM_API_KEYS", ""))
    use_gpu: bool = field(default_factory=lambda: os.environ.get("TSFM_USE_GPU", "0") == "1")
    # ModelServer (bulk lane and fine-tunes) replicas.
    min_replicas: int = field(default_factory=lambda: int(os.environ.get("TSFM_MIN_REPLICAS", "1")))
    max_replicas: int = field(default_factory=lambda: int(os.environ.get("TSFM_MAX_REPLICAS", "2")))
    # Ingress replicas (HTTP and small forecasts, in process).
    ingress_min_replicas: int = field(default_factory=lambda: _env_int("TSFM_INGRESS_MIN_REPLICAS", 1))
    ingress_max_replicas: int = field(default_factory=lambda: _env_int("TSFM_INGRESS_MAX_REPLICAS", 2))
    # Requests Serve hands one ingress replica at once; its engine sheds past max_pending waiting ones.
    ingress_max_ongoing: int = field(default_factory=lambda: _env_int("TSFM_INGRESS_MAX_ONGOING", 1024))
    # Ongoing requests per ingress replica the autoscaler aims for (batches fill well below it).
    ingress_target_ongoing: int = field(default_factory=lambda: _env_int("TSFM_INGRESS_TARGET_ONGOING", 64))
    # Seconds of low load before the autoscaler removes a replica (ingress, ModelServer).
    ingress_downscale_delay_s: float = field(default_factory=lambda: float(os.environ.get("TSFM_INGRESS_DOWNSCALE_DELAY_S", "60")))
    model_server_downscale_delay_s: float = field(
        default_factory=lambda: float(os.environ.get("TSFM_MODEL_SERVER_DOWNSCALE_DELAY_S", "120")))
    # Series one model pass takes (1 turns request batching off).
    max_batch_series: int = field(default_factory=lambda: _env_int("TSFM_MAX_BATCH_SERIES", 4096))
    # Forecasts that may wait for a model pass in one process before new ones get 503 + Retry-After.
    max_pending: int = field(default_factory=lambda: _env_int("TSFM_MAX_PENDING", 256))
    # Seconds a replica being scaled down or redeployed may take to finish the requests it holds.
    drain_timeout_s: int = field(default_factory=lambda: _env_int("TSFM_DRAIN_TIMEOUT_S", 300))
    # Seconds of queued model work (estimated from the measured passes) past which a new forecast is
    # answered 503 + Retry-After instead of queued: below common client timeouts (the nixtla SDK's 60 s).
    max_queue_wait_s: float = field(default_factory=lambda: float(os.environ.get("TSFM_MAX_QUEUE_WAIT_S", "20")))
    bulk_max_pending: int = field(default_factory=lambda: _env_int("TSFM_BULK_MAX_PENDING", 32))
    # Forecasts with more input points than this go to the ModelServer deployment (the bulk lane).
    bulk_points: int = field(default_factory=lambda: _env_int("TSFM_BULK_POINTS", 100_000))
    # Requests with bodies larger than this are answered whole by the ModelServer (http/bulk_lane.py),
    # so parsing them never stalls the ingress's small requests; 0 keeps every request in the ingress.
    bulk_body_bytes: int = field(default_factory=lambda: _env_int("TSFM_BULK_BODY_BYTES", 256 * 1024))
    max_body_bytes: int = field(default_factory=lambda: _env_int("TSFM_MAX_BODY_BYTES", 64 * 1024 * 1024))
    max_points: int = field(default_factory=lambda: _env_int("TSFM_MAX_POINTS", 5_000_000))
    max_prediction_length: int = 4096
    max_series: int = field(default_factory=lambda: _env_int("TSFM_MAX_SERIES", 100_000))
    # Values one forecast response may carry (series x horizon x channels x (quantiles + mean + samples)).
    max_output_values: int = field(default_factory=lambda: _env_int("TSFM_MAX_OUTPUT_VALUES", 5_000_000))
    # Forecast origins one cross-validation / anomaly-detection request may ask for (one model row each).
    max_backtest_windows: int = field(default_factory=lambda: _env_int("TSFM_MAX_BACKTEST_WINDOWS", 20000))
    max_job_steps: int = field(default_factory=lambda: _env_int("TSFM_MAX_JOB_STEPS", 20000))
    train_workers: int = field(default_factory=lambda: _env_int("TSFM_TRAIN_WORKERS", 1))
    model_server_cpus: float = field(default_factory=lambda: float(os.environ.get("TSFM_MODEL_SERVER_CPUS", "0.5")))
    ray_dashboard_url: str = field(default_factory=lambda: os.environ.get("TSFM_RAY_DASHBOARD_URL", "http://127.0.0.1:8265"))
    poll_interval_s: float = 1.0
    # Each job's owner renews its lease every poll; another server's job manager takes a job over
    # (and resumes it from its checkpoint) only once the lease has run out, i.e. its owner died.
    job_lease_s: float = field(default_factory=lambda: float(os.environ.get("TSFM_JOB_LEASE_S", "30")))
    # Whether the server was attached to an external Ray cluster (RAY_ADDRESS) rather than starting
    # its own: job drivers then run on that cluster's head node (see finetuning.manager.driver_launch).
    external_cluster: bool = field(default_factory=lambda: bool(os.environ.get("RAY_ADDRESS")))
    job_python: str = field(default_factory=lambda: os.environ.get("TSFM_JOB_PYTHON", ""))  # "" = chosen per cluster
    # Most steps of a fine-tune inside a cross-validation or online anomaly detection call (a 422 above).
    max_sync_finetune_steps: int = field(default_factory=lambda: _env_int("TSFM_MAX_SYNC_FINETUNE_STEPS", 500))
    # Nixtla /v2/finetune and /v2/forecast fine-tunes of more steps than this run as Ray Train jobs
    # (the named jobs' path) instead of inside a serving replica; up to max_job_steps.
    replica_finetune_steps: int = field(default_factory=lambda: _env_int("TSFM_REPLICA_FINETUNE_STEPS", 500))
    # How long such a synchronous call waits for its job before a 504 that points to the async API.
    # Below the nixtla SDK's 60 s read timeout, so its users see that answer rather than a timeout.
    finetune_wait_s: float = field(default_factory=lambda: float(os.environ.get("TSFM_FINETUNE_WAIT_S", "50")))
    # A fine-tune worse than its base on its validation data always says so (finetuning.verdict); with
    # this on, such a model is also not promoted: its job succeeds, the model stays `rejected`, unserved.
    refuse_worse_finetunes: bool = field(
        default_factory=lambda: os.environ.get("TSFM_REFUSE_WORSE_FINETUNES", "0").strip().lower() in ("1", "true", "yes"))
    # Nixtla async jobs one ingress replica runs at once (the rest wait, pending, in the database).
    async_jobs_per_replica: int = field(default_factory=lambda: _env_int("TSFM_ASYNC_JOBS_PER_REPLICA", 2))

    # What a third-party catalog name (amazon/chronos-*, google/timesfm-*) whose weights are not in
    # `third_party_dir` gets: "base" = answered by tsfm-base (responses say so in `served_model`),
    # "reject" = 404 naming the model. Names whose weights are there are served by their own loader.
    third_party_aliases: str = field(default_factory=lambda: os.environ.get("TSFM_THIRD_PARTY_ALIASES", "base"))
    # Where third-party checkpoints live: <dir>/<publisher>/<name>/ (default: <home>/third_party).
    third_party_dir: str = field(default_factory=lambda: os.environ.get("TSFM_THIRD_PARTY_DIR", ""))
    # CPU processes one statistical fit (or `auto` backtest) may use; 0 = every CPU of the machine.
    stats_n_jobs: int = field(default_factory=lambda: _env_int("TSFM_STATS_N_JOBS", 0))
    # Statistical / `auto` calls one process runs at once (each may fork stats_n_jobs workers); the
    # rest wait, so the CPU they share with the transformer's passes stays bounded.
    stats_concurrency: int = field(default_factory=lambda: _env_int("TSFM_STATS_CONCURRENCY", 2))

    # Per-organization limits (serve_apps.limits): None = on with its default when API keys are set,
    # off in single-user mode; 0 = off.
    rate_limit_per_minute: int | None = field(default_factory=lambda: _env_optional_int("TSFM_RATE_LIMIT_PER_MINUTE"))
    max_concurrent_jobs: int | None = field(default_factory=lambda: _env_optional_int("TSFM_MAX_CONCURRENT_JOBS"))

    # Experiment tracking of fine-tunes (train_jobs.tracking, docs/operations.md). W&B runs are written
    # offline under each job's directory unless the operator lets them sync live; MLflow runs go to
    # this URI (default: a file store under home) for jobs that opt in, or every job with all_jobs.
    tracking_online: bool = field(default_factory=lambda: os.environ.get("TSFM_TRACKING_ONLINE", "0") == "1")
    mlflow_tracking_uri: str = field(default_factory=lambda: os.environ.get("TSFM_MLFLOW_TRACKING_URI", ""))
    mlflow_all_jobs: bool = field(default_factory=lambda: os.environ.get("TSFM_MLFLOW_ALL_JOBS", "0") == "1")

    def __post_init__(self) -> None:
        home = Path(self.home)
        self.database_url = self.database_url or os.environ.get("TSFM_DATABASE_URL") or f"sqlite:///{home / 'registry.db'}"
        self.artifact_dir = self.artifact_dir or os.environ.get("TSFM_ARTIFACT_DIR") or str(home / "artifacts")
        self.mlflow_tracking_uri = self.mlflow_tracking_uri or (home / "mlruns").resolve().as_uri()
        self.third_party_dir = self.third_party_dir or str(home / "third_party")
        if self.third_party_aliases not in ("base", "reject"):
            raise ValueError(f"TSFM_THIRD_PARTY_ALIASES must be 'base' or 'reject', not {self.third_party_aliases!r}")

    @property
    def model_server_only(self) -> bool:
        """With a GPU every forecast runs in the ModelServer, which holds the GPU (an ingress replica
        has none); on CPUs the ingress runs small forecasts itself and the ModelServer is the bulk lane."""
        return self.use_gpu

    @property
    def work_limits(self) -> WorkLimits:
        return WorkLimits(self.max_series, self.max_points, self.max_output_values)

    def api_key_map(self) -> dict[str, str]:
        pairs = [p.split("=", 1) for p in self.api_keys.split(",") if p.strip()]
        return {k.strip(): (v.strip() if len(v) else "default") for k, v in ((p + [""])[:2] for p in pairs)}

    def limit(self, value: int | None, default: int) -> int:
        """A per-organization limit as configured, or its default: on with API keys, off without."""
        if value is not None:
            return value
        return default if self.api_key_map() else 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Settings":
        d = d or {}
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

"""Serving metrics, exported through Ray's metrics system (each node's Prometheus endpoint, names
prefixed `ray_tsfm_`); see docs/operations.md and cluster/grafana-dashboard.json.

Outside a Ray worker (the bare FastAPI benchmark process) the same calls count nothing.
"""

from __future__ import annotations

LATENCY_BOUNDARIES_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
SIZE_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536, 262144, 1048576]


class ServingMetrics:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from ray.util.metrics import Counter, Gauge, Histogram

        self._requests = Counter("tsfm_requests_total", "HTTP requests answered, by route, dialect and status.",
                                 tag_keys=("route", "dialect", "status"))
        self._latency = Histogram("tsfm_request_latency_seconds", "HTTP request latency.", LATENCY_BOUNDARIES_S,
                                  tag_keys=("route", "dialect"))
        self._model_requests = Counter("tsfm_model_requests_total", "Forecast calls by model and lane.",
                                       tag_keys=("model", "lane"))
        self._series = Histogram("tsfm_request_series", "Series per forecast call.", SIZE_BOUNDARIES,
                                 tag_keys=("lane",))
        self._points = Histogram("tsfm_request_points", "Input points per forecast call.", SIZE_BOUNDARIES,
                                 tag_keys=("lane",))
        self._pass_size = Histogram("tsfm_requests_per_model_pass", "Requests coalesced into one model pass.",
                                    SIZE_BOUNDARIES)
        self._pass_seconds = Histogram("tsfm_model_pass_seconds", "Duration of one model pass.", LATENCY_BOUNDARIES_S)
        self._loads = Counter("tsfm_model_loads_total", "Models loaded into a replica's cache.")
        self._evictions = Counter("tsfm_model_evictions_total", "Models evicted from a replica's cache.")
        self._queue = Gauge("tsfm_queue_depth", "Forecast calls waiting for a model pass in this process.")
        self._shed = Counter("tsfm_shed_requests_total", "Requests answered 503 because the server was full.")

    @classmethod
    def disabled(cls) -> "ServingMetrics":
        return cls(enabled=False)

    def request(self, route: str, dialect: str, status: int, seconds: float) -> None:
        if self.enabled:
            self._requests.inc(tags={"route": route, "dialect": dialect, "status": str(status)})
            self._latency.observe(seconds, tags={"route": route, "dialect": dialect})

    def forecast_call(self, model: str, lane: str, series: int, points: int) -> None:
        if self.enabled:
            self._model_requests.inc(tags={"model": model, "lane": lane})
            self._series.observe(series, tags={"lane": lane})
            self._points.observe(points, tags={"lane": lane})

    def model_pass(self, requests: int, seconds: float) -> None:
        if self.enabled:
            self._pass_size.observe(requests)
            self._pass_seconds.observe(seconds)

    def model_loaded(self) -> None:
        if self.enabled:
            self._loads.inc()

    def model_evicted(self) -> None:
        if self.enabled:
            self._evictions.inc()

    def queue_depth(self, n: int) -> None:
        if self.enabled:
            self._queue.set(n)

    def shed(self) -> None:
        if self.enabled:
            self._shed.inc()


def metrics_endpoints() -> list[str]:
    """Each live Ray node's Prometheus endpoint (empty outside a Ray cluster)."""
    import ray

    if not ray.is_initialized():
        return []
    return [f"http://{n['NodeManagerAddress']}:{n['MetricsExportPort']}/metrics"
            for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort")]


def replica_counts() -> dict[str, int]:
    """Running replicas per deployment of every Serve application (empty outside Serve)."""
    try:
        from ray import serve

        status = serve.status()
    except Exception:  # not inside a Serve cluster (e.g. the bare benchmark process)
        return {}
    return {name: sum(n for state, n in d.replica_states.items() if str(state).endswith("RUNNING"))
            for app in status.applications.values() for name, d in app.deployments.items()}

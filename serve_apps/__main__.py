"""Start the server on embedded defaults: a local Ray cluster, SQLite, local artifacts, bundled model.

    python -m serve_apps                 # http://127.0.0.1:8000
    python -m serve_apps --port 9000 --host 0.0.0.0
    RAY_ADDRESS=auto python -m serve_apps   # deploy onto a running cluster instead
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from serve_apps.embedded.local_cluster import LocalCluster


def _connect(address: str, attempts: int = 3) -> None:
    """Joins the cluster just started. A fresh GCS on a loaded machine can miss the driver's first
    node-info deadline (`Timed out while waiting for GCS`); the cluster is up, so ask again."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(address=address)
            return
        except ConnectionError:
            if attempt == attempts:
                raise
            time.sleep(2 * attempt)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("TSFM_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("TSFM_PORT", "8000")))
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray instance")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = os.environ.get("RAY_ADDRESS")
    cluster = None
    if not address:
        temp_dir = os.environ.get("TSFM_RAY_TEMP_DIR", f"/tmp/tsfm-ray-{args.port}")
        cluster = LocalCluster(temp_dir, args.num_cpus).launch()
    # Imported while the embedded cluster starts (Ray, torch, the app: about 4 of its 6 seconds).
    import ray
    from ray import serve

    from serve_apps.app import build_app

    if address:
        context = ray.init(address=address)
        if context.dashboard_url:  # the Ray Jobs API the job manager submits fine-tuning runs to
            os.environ.setdefault("TSFM_RAY_DASHBOARD_URL", f"http://{context.dashboard_url}")
    else:
        cluster.wait_ready()
        _connect(cluster.address)
        os.environ["TSFM_RAY_DASHBOARD_URL"] = cluster.dashboard_url
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(), name="tsfm", route_prefix="/")
    print(f"tsfm-cluster serving on http://{args.host}:{args.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    if cluster is not None:
        # The embedded cluster goes down whole: no slow graceful Serve shutdown that a supervisor's
        # kill could interrupt, leaving the cluster (its own process session) running.
        ray.shutdown()
        cluster.stop()
    else:
        serve.shutdown()


if __name__ == "__main__":
    main()

"""Start the server on embedded defaults: a local Ray instance, SQLite, local artifacts, bundled model.

    python -m serve_apps                 # http://127.0.0.1:8000
    python -m serve_apps --port 9000 --host 0.0.0.0
    RAY_ADDRESS=auto python -m serve_apps   # deploy onto a running cluster instead
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

import ray
from ray import serve

from serve_apps.app import build_app


def _start_local_ray(port: int, num_cpus: int | None):
    """A private local Ray instance with its own temp dir. Ray Jobs resolve their driver's cluster
    as "auto" from the temp dir's address file, which `ray.init` does not write (only `ray start`
    does): write it, so fine-tuning jobs find this cluster even when others run on the machine."""
    temp_dir = os.environ.get("TSFM_RAY_TEMP_DIR", f"/tmp/tsfm-ray-{port}")
    context = ray.init(address="local", num_cpus=num_cpus, _temp_dir=temp_dir)
    ray._private.utils.write_ray_address(context.address_info["gcs_address"], temp_dir)
    return context


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default=os.environ.get("TSFM_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("TSFM_PORT", "8000")))
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray instance")
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        context = ray.init(address=address)
    else:
        context = _start_local_ray(args.port, args.num_cpus)
    if context.dashboard_url:  # the Ray Jobs API the job manager submits fine-tuning runs to
        os.environ.setdefault("TSFM_RAY_DASHBOARD_URL", f"http://{context.dashboard_url}")
    serve.start(http_options={"host": args.host, "port": args.port})
    serve.run(build_app(), name="tsfm", route_prefix="/")
    print(f"tsfm-cluster serving on http://{args.host}:{args.port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()


if __name__ == "__main__":
    main()

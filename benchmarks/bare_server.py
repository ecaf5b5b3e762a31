"""The same HTTP app and model code in one plain uvicorn process, without Ray Serve: the reference
the serving benchmark compares the real server against.

    python benchmarks/bare_server.py --port 8100 --home /tmp/bare-home
"""

from __future__ import annotations

import argparse
import os

import torch
import uvicorn

from serve_apps.http.api import standalone_api
from serve_apps.settings import Settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8100)
    p.add_argument("--home", default=os.environ.get("TSFM_HOME", "/tmp/tsfm-bare"))
    p.add_argument("--torch-threads", type=int, default=1,
                   help="as in a Serve replica, where Ray sets OMP_NUM_THREADS from the replica's CPUs")
    args = p.parse_args()
    torch.set_num_threads(args.torch_threads)
    uvicorn.run(standalone_api(Settings(home=args.home)), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

import os
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items):
    """Tests under tests/integration/ (Ray, servers, PostgreSQL) carry the `integration` marker, so
    `-m "not integration"` runs the unit tests alone. The session's shared server idles on the CPUs
    until the session ends, so the tests that use it run last: the Ray Train runs and the other
    servers the remaining tests start get the CPUs."""
    for item in items:
        if INTEGRATION in Path(item.fspath).parents:
            item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: "server" in getattr(item, "fixturenames", ()))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def wait_for(fn, done, timeout=300):
    """Polls fn() until done(value) holds; returns the value or fails with the last one seen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = fn()
        if done(value):
            return value
        time.sleep(1)
    raise AssertionError(f"timed out; last value {value}")


def live_drivers(marker: str) -> list[int]:
    """Pids of live `train_jobs.finetune` processes whose command line mentions `marker`."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "train_jobs.finetune" in args and marker in args:
            pids.append(int(cmdline.parent.name))
    return pids


def seasonal_series(n: int, period: int = 12, noise: float = 0.5, seed: int = 0, level: float = 50.0) -> np.ndarray:
    r = np.random.default_rng(seed)
    t = np.arange(n)
    return (level + 10 * np.sin(2 * np.pi * t / period) + 0.05 * t + r.normal(0, noise, n)).astype(np.float32)


API_KEY, OTHER_KEY = "test-key", "other-org-key"
# The shared server takes far more than a client's 600 requests a minute (Schemathesis, the fuzz):
# its rate limit is off here; tests/unit/test_http_guards.py tests the limiter itself.
# Nixtla fine-tunes of more than 30 steps run as Ray Train jobs here, and a synchronous call waits 5 s
# for one before its 504 (the defaults are 500 steps and 50 s): a long fine-tune's test stays short.
SERVER_ENV = {"TSFM_MAX_BODY_BYTES": str(8 * 1024 * 1024), "TSFM_MAX_POINTS": "400000", "TSFM_MAX_REPLICAS": "1",
              "TSFM_RATE_LIMIT_PER_MINUTE": "0", "TSFM_REPLICA_FINETUNE_STEPS": "30", "TSFM_FINETUNE_WAIT_S": "5",
              "TSFM_API_KEYS": f"{API_KEY}=acme,{OTHER_KEY}=globex"}


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """One real server for the session: local Ray (2 CPUs), SQLite, local artifacts, bundled model."""
    from serve_apps.embedded.local_server import ServerProcess

    proc = ServerProcess(tmp_path_factory.mktemp("tsfm-home"), env=SERVER_ENV).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def http(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=120, headers={"authorization": f"Bearer {API_KEY}"}) as client:
        yield client


@pytest.fixture(scope="session")
def other_org(server):
    import httpx

    with httpx.Client(base_url=server.url, timeout=120, headers={"authorization": f"Bearer {OTHER_KEY}"}) as client:
        yield client

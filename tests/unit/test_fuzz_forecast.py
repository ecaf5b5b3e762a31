"""Property-based fuzz of the forecast bodies through the whole HTTP app in-process (the real routes,
middleware and dialects; the model is the real one, run in this process by tests.inprocess).

Every answer is a 4xx naming a field or a 200 whose numbers are all finite. TSFM_FUZZ_EXAMPLES
raises the example count for a longer local run; the suite's default keeps it to seconds.
"""

import os
from collections import Counter

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.fuzz_bodies import check_answer, encode, nixtla_body, tsfm_body
from tests.inprocess import build_api

EXAMPLES = int(os.environ.get("TSFM_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HEADERS = {"authorization": "Bearer fuzz-key", "content-type": "application/json"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = build_api(tmp_path_factory.mktemp("fuzz-home"), api_keys="fuzz-key=acme", rate_limit_per_minute=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def tally():
    counts = Counter()
    yield counts
    print(f"\nfuzz cases: {dict(counts)}")


def test_nixtla_forecast_bodies(client, tally):
    @FUZZ
    @given(nixtla_body())
    def run(body):
        r = client.post("/v2/forecast", content=encode(body), headers=HEADERS)
        tally["nixtla " + check_answer(r.status_code, r.text, "nixtla")] += 1
    run()
    assert tally["nixtla ok"] > 0  # the fuzz reaches the model, not only the validators


def test_tsfm_forecast_bodies(client, tally):
    @FUZZ
    @given(tsfm_body())
    def run(body):
        r = client.post("/v1/forecast", content=encode(body), headers=HEADERS)
        tally["tsfm " + check_answer(r.status_code, r.text, "tsfm")] += 1
    run()
    assert tally["tsfm ok"] > 0

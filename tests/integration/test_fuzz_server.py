"""The forecast-body fuzz (tests/fuzz_bodies.py) against the real server: Ray Serve ingress, the
ModelServer deployment and its request batching. Few examples (the in-process fuzz in tests/unit
runs the many); the property is the same: a 4xx naming a field or a 200 of finite numbers."""

import os

from hypothesis import HealthCheck, given, settings

from tests.fuzz_bodies import check_answer, encode, nixtla_body, tsfm_body

EXAMPLES = int(os.environ.get("TSFM_SERVER_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
JSON = {"content-type": "application/json"}


def test_nixtla_forecast_bodies_against_the_server(http):
    seen = []

    @FUZZ
    @given(nixtla_body())
    def run(body):
        r = http.post("/v2/forecast", content=encode(body), headers=JSON)
        seen.append(check_answer(r.status_code, r.text, "nixtla"))
    run()
    # Few examples here, and which are valid depends on the draw (one loaded-machine run drew none):
    # the 200 path is also checked with the same property on one valid body.
    valid = {"series": {"sizes": [64], "y": [float(i % 7) for i in range(64)]}, "h": 8, "level": [80]}
    r = http.post("/v2/forecast", content=encode(valid), headers=JSON)
    seen.append(check_answer(r.status_code, r.text, "nixtla"))
    assert seen[-1] == "ok"


def test_tsfm_forecast_bodies_against_the_server(http):
    seen = []

    @FUZZ
    @given(tsfm_body())
    def run(body):
        r = http.post("/v1/forecast", content=encode(body), headers=JSON)
        seen.append(check_answer(r.status_code, r.text, "tsfm"))
    run()
    # The generated TSFM.ai bodies are mostly invalid (few examples here): the 200 path is checked
    # with the same property on one valid body; the in-process fuzz draws hundreds of valid ones.
    valid = {"model": "tsfm-base", "inputs": [{"target": [[float(i % 7)] for i in range(64)]}],
             "parameters": {"prediction_length": 8}}
    r = http.post("/v1/forecast", content=encode(valid), headers=JSON)
    seen.append(check_answer(r.status_code, r.text, "tsfm"))
    assert seen[-1] == "ok"

"""Schemathesis against the running server, over every operation of /openapi.json, with all its
checks (no 5xx, documented status codes, content types and response bodies, headers such as
Allow on 405, ...). Examples per operation are few and derandomized so the suite stays in budget;
`python -m schemathesis.cli run URL/openapi.json` does the larger run (see the README of tests)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings

from tests.conftest import API_KEY

EXAMPLES_PER_OPERATION = 6


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_every_operation(case):
    case.call_and_validate(headers={"authorization": f"Bearer {API_KEY}"}, timeout=120)

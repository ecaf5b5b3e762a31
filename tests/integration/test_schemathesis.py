"""Schemathesis against the running server, over every operation of /openapi.json, with all its
checks: no 5xx, documented status codes, content types, headers and response bodies, negative
bodies rejected, schema-valid ones accepted or refused with a documented 404/409/422 (settings
and the command for a larger run in schemathesis.toml beside this file). Few derandomized examples
per operation keep it within the suite's time budget."""

from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.config import SchemathesisConfig

from tests.conftest import API_KEY

EXAMPLES_PER_OPERATION = 2
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def api_schema(server):
    # The key as the bearer scheme's credentials: the auth checks also send none and a wrong one (401).
    text = CONFIG.read_text() + f'\n[auth.openapi.apiKey]\nbearer = "{API_KEY}"\n'
    config = SchemathesisConfig.from_str(text, base_dir=str(CONFIG.parent))
    return schemathesis.openapi.from_url(server.url + "/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_every_operation(case):
    case.call_and_validate(timeout=120)

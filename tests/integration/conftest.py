"""Fixtures shared by the integration tests."""

import pytest

from tests.integration.pg import TemporaryPostgres, server_bin_dir


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server per test module (the modules skip themselves without one)."""
    pg = TemporaryPostgres(server_bin_dir()).start()
    yield pg
    pg.stop()

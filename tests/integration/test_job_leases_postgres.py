"""The job-ownership SQL (leases, submissions, progress recorded once, added columns) on PostgreSQL:
the same tests as tests/unit/test_job_ownership.py, each on a fresh database of a throwaway server."""

import uuid

import pytest
import sqlalchemy as sa

from serve_apps.finetuning.store import JobStore
from tests.integration.pg import server_bin_dir
from tests.unit import test_job_ownership as on_sqlite

pytest.importorskip("psycopg")
BIN = server_bin_dir()
pytestmark = pytest.mark.skipif(BIN is None, reason="PostgreSQL server binaries (initdb, postgres) not installed")


@pytest.fixture
def url(postgres):
    name = f"t{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.parametrize("test", [on_sqlite.test_a_live_lease_has_one_holder_until_it_expires,
                                  on_sqlite.test_the_heartbeat_renews_only_its_own_active_leases,
                                  on_sqlite.test_a_submission_is_recorded_once_and_only_by_the_owner,
                                  on_sqlite.test_progress_is_recorded_once_and_only_by_the_owner],
                         ids=lambda t: t.__name__)
def test_on_postgres(url, test):
    test(JobStore(url))


def test_an_older_postgres_database_gets_the_new_columns(url):
    engine = sa.create_engine(url)
    old = sa.MetaData()
    sa.Table("jobs", old, *[sa.Column(c.name, c.type, primary_key=c.primary_key) for c in
                            JobStore.table.columns if c.name not in ("owner", "lease_expires_at", "recorded_step",
                                                                     "checkpoint_step")])
    old.create_all(engine)
    engine.dispose()
    store = JobStore(url)
    job = on_sqlite._job(store)
    assert store.hold_lease(job.id, "a", 30) and store.get(job.id).recorded_step == 0

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.personas",
    "tests.fixtures.simulator",
    "tests.fixtures.private_servers",
    "tests.fixtures.api_schema",
    "tests.fixtures.private_pg",
    "tests.fixtures.rabbit_cluster",
]


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _no_database_outage_seen():
    """A database outage one test provoked must not make the next test's decisions doubt the book (0316)."""
    from ordermanager.core.services import db_backlog

    db_backlog._outage_at = None
    yield
    db_backlog._outage_at = None


@pytest.fixture(autouse=True, scope="session")
def _audit_spool_of_this_session(tmp_path_factory):
    """Processes a test starts spool their audit rows under this session's own directory: rows a killed process
    left behind are never drained into a later session's (re-created, same-named) test database."""
    import os

    os.environ["EXCHANGE_AUDIT_SPOOL_DIR"] = str(tmp_path_factory.mktemp("exchange-audit"))

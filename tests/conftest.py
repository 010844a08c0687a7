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

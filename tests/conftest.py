pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.personas",
    "tests.fixtures.simulator",
    "tests.fixtures.private_servers",
    "tests.fixtures.api_schema",
    "tests.fixtures.private_pg",
    "tests.fixtures.rabbit_cluster",
]


import os  # noqa: E402

import pytest  # noqa: E402

# Parallel runs (pytest-xdist, `make test`; docs/decisions/0007). The tests that start servers, browsers or
# child processes and wait on them with deadlines form one group, "heavy": `--dist loadgroup` runs the group on
# one worker, one test at a time, while the other workers take the light tests.
HEAVY_MARKERS = ("slow", "browser")
HEAVY_FIXTURES = frozenset({
    "private_postgres", "private_rabbitmq", "private_pg", "private_rabbit", "rabbit_cluster",  # private servers
    "api_schema",  # schemathesis: thousands of generated requests
})


def is_heavy(item: pytest.Item) -> bool:
    return (any(item.get_closest_marker(name) for name in HEAVY_MARKERS)
            or not HEAVY_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the group marks (its worker hook names the groups)
def pytest_collection_modifyitems(config, items):
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if is_heavy(item):
            item.add_marker(pytest.mark.xdist_group("heavy"))


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """SQLite: the test database is a file, like the one `make run` uses (WAL, busy timeout), not Django's
    shared-cache memory database, whose table locks fail a second connection at once ("database table is
    locked") where the file waits; threads of a test would meet locks production never shows. It is named
    after the process: every worker would otherwise get the same name, and what is keyed on the name (the
    reconciliation lock file, orders/services/reconcile_lock.py) would be shared by workers that share no
    database."""
    import tempfile

    from django.conf import settings

    for alias, db in settings.DATABASES.items():
        if db["ENGINE"] == "django.db.backends.sqlite3" and not db.get("TEST", {}).get("NAME"):
            path = os.path.join(tempfile.gettempdir(), f"ordermanager_test_{alias}_{os.getpid()}.sqlite3")
            db.setdefault("TEST", {})["NAME"] = path


@pytest.fixture(autouse=True)
def _no_database_outage_seen():
    """A database outage one test provoked must not make the next test's decisions doubt the book (0316)."""
    from ordermanager.core.services import db_backlog

    db_backlog._outage_at = None
    yield
    db_backlog._outage_at = None
    # What a test's threads kept for a database that was away (or, on SQLite, locked by the test's own
    # transaction) belongs to that test's database: it must not be written into the next test's.
    for backlog in db_backlog._ALL:
        with backlog._lock:
            backlog._items.clear()
            backlog._marks.clear()
            backlog._drain_marked.clear()


@pytest.fixture(autouse=True, scope="session")
def _audit_spool_of_this_session(tmp_path_factory):
    """Processes a test starts spool their audit rows under this session's own directory: rows a killed process
    left behind are never drained into a later session's (re-created, same-named) test database."""
    import os

    os.environ["EXCHANGE_AUDIT_SPOOL_DIR"] = str(tmp_path_factory.mktemp("exchange-audit"))

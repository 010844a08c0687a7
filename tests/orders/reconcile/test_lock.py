"""Two runs never overlap: across threads, connections and processes."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from orders.models import ReconciliationRun
from orders.reconcile import ReconciliationInProgress, reconcile
from orders.reconcile import lock as lock_module
from orders.reconcile.lock import ADVISORY_KEY, LockBusy, reconcile_is_running

ROOT = Path(__file__).resolve().parents[3]


def _blocking_run(results: list, inside: threading.Event, release: threading.Event) -> None:
    """A run that pauses at its first progress report until ``release`` is set."""

    def progress(stage, done, total):
        if not inside.is_set():
            inside.set()
            assert release.wait(10), "the test never released the first run"

    try:
        results.append(reconcile(trigger="command", progress=progress))
    except Exception as exc:  # surfaced by the assertions in the test
        results.append(exc)
    finally:
        connection.close()


# Transactional: the runs on the worker threads commit on their own connections (so the test
# can see them); the flush after the test removes them (and keeps the roles, see core/apps.py).
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_second_run_is_refused_or_waits_while_the_first_holds_the_lock(sim):
    inside, release = threading.Event(), threading.Event()
    first: list = []
    thread = threading.Thread(target=_blocking_run, args=(first, inside, release))
    thread.start()
    try:
        assert inside.wait(10)
        assert reconcile_is_running()
        with pytest.raises(ReconciliationInProgress) as refused:
            reconcile(trigger="api")
        running = ReconciliationRun.objects.get(status=ReconciliationRun.Status.RUNNING)
        assert refused.value.http_status == 409 and refused.value.extra == {"run_id": running.pk}
        assert f"#{running.pk}" in refused.value.message

        waited: list = []
        waiter = threading.Thread(target=lambda: (waited.append(reconcile(trigger="api", wait=10)),
                                                  connection.close()))  # fmt: skip
        waiter.start()
        time.sleep(0.3)  # let the waiter start polling; the assertion below holds whatever the timing
        release.set()
        waiter.join(15)
        thread.join(15)
        one, two = first[0], waited[0]
        assert isinstance(one, ReconciliationRun) and isinstance(two, ReconciliationRun)
        assert one.status == two.status == ReconciliationRun.Status.SUCCEEDED
        assert two.started_at >= one.finished_at, "the runs overlapped"
        assert ReconciliationRun.objects.count() == 2, "the refused request recorded no run"
        assert not reconcile_is_running()
    finally:
        release.set()
        thread.join(15)


@pytest.mark.postgres
@pytest.mark.django_db
def test_another_process_holding_the_lock_makes_the_command_exit_3(sim):
    # The advisory lock lives in the server, per session: a separate connection is a
    # separate process as far as PostgreSQL is concerned. Then a real second process.
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k in ("host", "port", "user", "dbname", "password")},
                            autocommit=True)  # fmt: skip
    try:
        other.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_KEY])
        with pytest.raises(ReconciliationInProgress):
            reconcile(trigger="command", wait=0.3)
        settings_dict = connection.settings_dict
        env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{settings_dict['USER']}@{settings_dict['HOST']}:{settings_dict['PORT']}/"
            f"{settings_dict['NAME']}",
            "BYBIT_BASE_URL": sim.url,
            "DJANGO_SETTINGS_MODULE": "ordermanager.settings.test",
        }
        done = subprocess.run([sys.executable, "manage.py", "reconcile"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.returncode == 3, done.stderr
        assert "in progress" in done.stderr
    finally:
        other.close()
    # The server drops a closed session's locks as its backend exits (a moment later): no stale lock.
    assert reconcile(trigger="command", wait=5).status == ReconciliationRun.Status.SUCCEEDED


def test_the_file_lock_of_the_embedded_default_excludes_a_second_holder(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_module, "lock_file_path", lambda: str(tmp_path / "reconcile.lock"))
    with lock_module._file_lock(0):
        with pytest.raises(LockBusy):
            with lock_module._file_lock(0.2):
                pass
    with lock_module._file_lock(0):  # released on exit
        pass

"""Hold the reconciliation lock the way another process running a reconciliation would."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from django.db import connection

from orders.reconcile.lock import reconcile_lock


@contextlib.contextmanager
def reconcile_lock_held_elsewhere() -> Iterator[None]:
    """A thread with its own database connection (PostgreSQL: its own session, so the advisory lock
    is not re-entrant for the test's connection; SQLite: its own open file description)."""
    acquired, release = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def hold() -> None:
        try:
            with reconcile_lock(wait=0):
                acquired.set()
                release.wait(30)
        except BaseException as exc:  # surfaced below
            failed.append(exc)
            acquired.set()
        finally:
            connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert acquired.wait(10) and not failed, failed
    try:
        yield
    finally:
        release.set()
        thread.join(10)

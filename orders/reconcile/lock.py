"""The one lock that keeps two reconciliation runs from overlapping, across processes,
and the refusal (ReconciliationInProgress, 409) every way of starting a run gives while it is held.

PostgreSQL: a session-level advisory lock on the service's own connection. It
needs no table, and the server drops it when the connection dies, so a run
killed with ``kill -9`` never leaves a stale lock behind (a lock *row* would
need an expiry and a heartbeat to get the same).

SQLite (the embedded default, one host): an ``flock`` on a file next to the
database. The kernel drops it when the process dies, for the same reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator

from django.db import connection

from ordermanager.core.exceptions import Conflict
from orders.models import ReconciliationRun

# A fixed 64-bit key in the advisory-lock space (derived from a name, so that
# another feature picking its own key is unlikely to collide with it).
ADVISORY_KEY = int.from_bytes(hashlib.sha256(b"ordermanager.reconcile").digest()[:8], "big", signed=True)
_POLL_SECONDS = 0.1


class LockBusy(Exception):
    """Another run holds the lock (and it was not released within the wait)."""


@contextlib.contextmanager
def reconcile_lock(*, wait: float = 0.0) -> Iterator[None]:
    """Hold the reconciliation lock for the block; wait up to ``wait`` seconds for it, else LockBusy."""
    if connection.vendor == "postgresql":
        with _advisory_lock(wait):
            yield
    else:
        with _file_lock(wait):
            yield


class ReconciliationInProgress(Conflict):
    code = "reconciliation_in_progress"


def reconcile_is_running() -> bool:
    """True while a run holds the lock (anywhere). A ``running`` row alone may be a crashed run."""
    try:
        with reconcile_lock(wait=0):
            return False
    except LockBusy:
        return True


def reconcile_in_progress_error() -> ReconciliationInProgress:
    """The refusal a caller gets while the lock is held, naming the running run (also used by the
    queued start in orders.reconcile.start, so both ways of starting answer alike)."""
    running = ReconciliationRun.objects.filter(status=ReconciliationRun.Status.RUNNING).order_by("-id").first()
    label = f" (#{running.pk}, started {running.started_at:%Y-%m-%d %H:%M:%S} UTC)" if running else ""
    return ReconciliationInProgress(
        f"Another reconciliation run is in progress{label}; try again when it has finished.",
        extra={"run_id": running.pk if running else None},
    )


def _poll(try_once, wait: float) -> None:
    deadline = time.monotonic() + max(wait, 0.0)
    while not try_once():
        if time.monotonic() >= deadline:
            raise LockBusy("another reconciliation run holds the lock")
        time.sleep(_POLL_SECONDS)  # waiting for another process's lock: there is no event to wait on


@contextlib.contextmanager
def _advisory_lock(wait: float) -> Iterator[None]:
    def try_once() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY])
            return bool(cursor.fetchone()[0])

    _poll(try_once, wait)
    try:
        yield
    finally:
        # If the connection broke during the run the lock went with it; nothing to release then.
        with contextlib.suppress(Exception), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_KEY])


def lock_file_path() -> str:
    name = str(connection.settings_dict.get("NAME") or "default")
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"ordermanager-reconcile-{digest}.lock")


@contextlib.contextmanager
def _file_lock(wait: float) -> Iterator[None]:
    import fcntl

    # A fresh open file description per attempt: flock conflicts between two
    # descriptions even inside one process, so threads exclude each other too.
    fd = os.open(lock_file_path(), os.O_RDWR | os.O_CREAT, 0o600)

    def try_once() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        _poll(try_once, wait)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

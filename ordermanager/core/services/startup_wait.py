"""Wait for the database and the broker at process start, instead of dying with a traceback.

Every long-lived process (consume_signals, process_signals, start_ingest, and
``manage.py wait_for_services`` in front of the web server and qcluster) calls
``wait_for_services`` first. Each failed attempt logs one line naming what is
unreachable and when the next attempt is; the pause doubles up to
``STARTUP_WAIT_MAX_DELAY``. ``should_stop`` (SIGTERM) ends the wait; the caller
then exits quietly. See docs/decisions/0004-startup-waits-and-supervision.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from ordermanager.celery import broker_connection

log = structlog.get_logger(__name__)

FIRST_DELAY = 0.5


class StartupAborted(Exception):
    """Stopped (SIGTERM/SIGINT) while waiting."""


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM/SIGINT (handlers installed only on the main thread; a command called
    from another thread, as in tests, just gets an event nobody sets). The command installs its own
    handlers once it is past the wait."""
    import signal

    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    return stop


def _database_ready() -> None:
    connection.ensure_connection()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _broker_ready() -> None:
    conn = broker_connection()
    try:
        conn.ensure_connection(max_retries=1, timeout=5)
    finally:
        conn.release()


def _wait(what: str, attempt_once: Callable[[], None], errors: tuple, *, stop: threading.Event,
          on_failure: Callable[[], None] = lambda: None) -> float:  # fmt: skip
    """Call ``attempt_once`` until it succeeds; returns the seconds waited."""
    started = time.monotonic()
    delay = FIRST_DELAY
    attempt = 0
    while True:
        attempt += 1
        try:
            attempt_once()
        except errors as exc:
            on_failure()
            text = str(exc).strip()
            log.warning("startup_waiting", service=what, attempt=attempt, retry_in=round(delay, 2),
                        error=text.splitlines()[0][:300] if text else type(exc).__name__)  # fmt: skip
            if stop.wait(delay):
                raise StartupAborted(f"stopped while waiting for the {what}") from None
            delay = min(delay * 2, settings.STARTUP_WAIT_MAX_DELAY)
            continue
        waited = time.monotonic() - started
        if attempt > 1:
            log.info("startup_service_ready", service=what, attempts=attempt, waited_s=round(waited, 1))
        return waited


def wait_for_services(*, broker: bool | None = None, stop: threading.Event | None = None) -> None:
    """Block until the database answers and, when ``broker`` (default: SIGNAL_BROKER_URL is set), the
    broker accepts a connection. Raises StartupAborted if ``stop`` is set meanwhile."""
    stop = stop or threading.Event()

    def close() -> None:
        with contextlib.suppress(Exception):
            connection.close()

    _wait("database", _database_ready, (OperationalError, InterfaceError), stop=stop, on_failure=close)
    if broker if broker is not None else bool(settings.SIGNAL_BROKER_URL):
        _wait("broker", _broker_ready, (Exception,), stop=stop)  # kombu/amqp/socket errors alike

"""A long-lived process's startup, started over when the database (or the broker) goes away during it.

``wait_for_services`` covers a server that is down before the process starts. A server can also go
away between that wait and the end of the startup steps (the startup reconciliation, seeding the
risk row, starting the processor, the heartbeat, the relay and the continuous reconciler): then the
step raises ``OperationalError`` / ``InterfaceError`` (or, for ``consume_signals``, a broker
connection error). ``StartupSequence.run`` catches that, stops whatever the attempt had started,
closes the broken connection, waits again and starts the steps over, with a log line each time.
The process never exits for it.

On the way out (``finish``), what was started is stopped and the database backlog
(``db_backlog``) gets its chance: outside a requested stop the process does not exit while rows
wait in memory; after SIGTERM/SIGINT it waits at most ``DB_BACKLOG_EXIT_GRACE`` seconds and logs
what is lost. Used by consume_signals, process_signals and start_ingest. See
docs/decisions/0006-startup-sequence-starts-over.md.

Test hook: with ``STARTUP_PAUSE_STEP`` naming a step and ``STARTUP_PAUSE_DIR`` a directory, the
first attempt that reaches that step writes ``<dir>/<step>.paused`` and holds until
``<dir>/<step>.resume`` exists (tests and fault drills stop a server at a known point; empty in
production).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from ordermanager.core.services.db_backlog import backlogs_settle
from ordermanager.core.services.startup_wait import StartupAborted, wait_for_services

log = structlog.get_logger(__name__)

T = TypeVar("T")
DB_ERRORS = (OperationalError, InterfaceError)
PAUSE_POLL = 0.05


class StartupSequence:
    """``run(start)``: wait for the servers, call ``start``; if a server goes away meanwhile, undo and repeat.

    ``start`` calls ``step(name)`` before each part (a stop request ends the startup there) and
    ``started(name, stop_fn)`` after starting something that must be stopped again (threads):
    those are stopped, newest first, when the attempt is interrupted and in ``finish``.
    """

    def __init__(self, process: str, *, stop: threading.Event, broker: bool = False, errors: tuple = ()):
        self.process = process
        self.stop = stop
        self.broker = broker
        self.errors = DB_ERRORS + tuple(errors)
        self.attempts = 0
        self._started: list[tuple[str, Callable[[], object]]] = []
        self._paused: set[str] = set()

    # ------------------------------------------------------------ inside ``start``

    def step(self, name: str) -> None:
        if self.stop.is_set():
            raise StartupAborted(f"stopped before {name}")
        if name == settings.STARTUP_PAUSE_STEP and settings.STARTUP_PAUSE_DIR and name not in self._paused:
            self._pause(name)

    def started(self, name: str, stop_fn: Callable[[], object]) -> None:
        self._started.append((name, stop_fn))

    # ------------------------------------------------------------ the command

    def run(self, start: Callable[[], T]) -> T:
        """Raises StartupAborted when a stop is requested before the startup is complete."""
        while True:
            wait_for_services(broker=self.broker, stop=self.stop)
            self.attempts += 1
            if self.attempts > 1:
                log.info("startup_restarting", process=self.process, attempt=self.attempts)
            try:
                return start()
            except self.errors as exc:
                text = str(exc).strip()
                log.warning("startup_interrupted", process=self.process, attempt=self.attempts,
                            error=f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}",
                            next="stopping what was started, waiting for the servers, starting over")  # fmt: skip
                self.stop_started()
                with contextlib.suppress(Exception):
                    connection.close()

    def stop_started(self) -> None:
        while self._started:
            name, stop_fn = self._started.pop()
            try:
                stop_fn()
            except Exception as exc:  # one part failing to stop must not keep the others running
                log.warning("startup_part_stop_failed", process=self.process, part=name,
                            error=f"{type(exc).__name__}: {exc}"[:300])  # fmt: skip

    def finish(self) -> None:
        """Stop what was started; then do not exit with database writes waiting (see the module doc)."""
        self.stop_started()
        backlogs_settle(stop=self.stop)

    # ------------------------------------------------------------ the test hook

    def _pause(self, name: str) -> None:
        self._paused.add(name)
        where = Path(settings.STARTUP_PAUSE_DIR)
        resume = where / f"{name}.resume"
        log.warning("startup_paused", process=self.process, step=name, resume_when=str(resume))
        (where / f"{name}.paused").write_text(str(self.attempts))
        while not resume.exists():  # another process (the test) creates it: no event crosses processes
            if self.stop.wait(PAUSE_POLL):
                raise StartupAborted(f"stopped while paused before {name}")
        log.info("startup_resumed", process=self.process, step=name)

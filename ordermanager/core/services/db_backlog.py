"""Writes that wait in memory while the database is unreachable, and are made when it returns.

A ``WriteBacklog`` sits in front of one kind of write (a ws-gateway message, an
exchange-call audit row). While the database answers, ``submit`` writes at once.
When a write fails because the database cannot be reached (Django's
``OperationalError`` / ``InterfaceError``), the item is kept, in arrival order,
and every later item queues behind it so nothing is written out of order. A
drainer thread retries with capped backoff and writes them oldest first when
the database is back.

The backlog is bounded (``DB_OUTAGE_BACKLOG_MAX`` items per backlog and process).
An item that does not fit is not kept: the symbols it concerns are remembered
and, when the database is back, marked for a targeted backfill (continuous
reconciliation re-reads them from the exchange). An item that fails for another
reason once the database answers is dropped the same way (its symbols marked),
so one bad item cannot block the others. Every kept, written, dropped or marked
item is logged. See docs/decisions/0414-nothing-dropped-on-db-outage.md.

``backlogs_settle`` is called by a long-lived process on its way out: it does not
exit while an item waits, unless a stop was requested; then the backlogs get
``DB_BACKLOG_EXIT_GRACE`` seconds and whatever is left is logged as lost
(docs/decisions/0006-startup-sequence-starts-over.md).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import structlog
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

log = structlog.get_logger(__name__)

T = TypeVar("T")
DB_UNAVAILABLE = (OperationalError, InterfaceError)
Key = tuple[str, str]  # (category, symbol)
FIRST_DELAY = 0.2
MAX_DELAY = 5.0
EXIT_WAIT_SLICE = 1.0  # how often a process held at exit by the backlog re-checks for a stop request
_ALL: list[WriteBacklog] = []


_outage_lock = threading.Lock()
_outage_at: float | None = None  # monotonic time this process last saw the database unreachable (or a drain end)


def outage_seen() -> None:
    """Record that this process saw the database unreachable now (or finished writing what it kept)."""
    global _outage_at
    with _outage_lock:
        _outage_at = time.monotonic()


def outage_seen_within(seconds: float) -> bool:
    """Did this process see the database unreachable, or write a backlog kept during an outage, in the last
    ``seconds``? (Read without a query by decisions that must not trust the book right after an outage.)"""
    with _outage_lock:
        return _outage_at is not None and time.monotonic() - _outage_at < seconds


def _close_connection() -> None:
    with contextlib.suppress(Exception):
        connection.close()


class WriteBacklog(Generic[T]):
    def __init__(
        self,
        name: str,
        *,
        write: Callable[[T], Any],
        symbols_of: Callable[[T], Iterable[Key]],
        describe: Callable[[T], dict],
        mark: Callable[[Iterable[Key], str], Any],
        mark_on_drain: str = "",
    ):
        self.name = name
        self._write = write
        self._symbols_of = symbols_of
        self._describe = describe
        self._mark = mark
        # Non-empty: before a kept item is written, its symbols are marked (with this reason), so that other
        # processes know, from the database, that this process holds their events (docs/decisions/0316).
        self._mark_on_drain = mark_on_drain
        self._drain_marked: set[Key] = set()
        self._items: deque[T] = deque()
        self._marks: dict[Key, str] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.kept = self.written = self.dropped = 0
        atexit.register(self._report_at_exit)
        _ALL.append(self)

    # ------------------------------------------------------------ callers

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._items) + len(self._marks)

    def submit(self, item: T) -> str:
        """Write now, or keep behind earlier items: "written", "kept" or "dropped" (symbols marked)."""
        if self.pending:
            return self.keep(item, error="earlier writes are waiting for the database")
        try:
            self._write(item)
        except DB_UNAVAILABLE as exc:
            _close_connection()
            outage_seen()
            return self.keep(item, error=str(exc))
        return "written"

    def keep(self, item: T, *, error: str) -> str:
        """Queue ``item`` for the drainer (or, past the bound, remember its symbols for a backfill)."""
        limit = settings.DB_OUTAGE_BACKLOG_MAX
        outage_seen()  # items are kept only while the database cannot be written
        with self._lock:
            if len(self._items) >= limit:
                self._remember(self._symbols_of(item), f"{self.name} backlog full during a database outage")
                self.dropped += 1
                state, size = "dropped", len(self._items)
            else:
                self._items.append(item)
                self.kept += 1
                state, size = "kept", len(self._items)
            self._ensure_drainer()
        if state == "kept":
            log.warning("db_backlog_kept", backlog=self.name, waiting=size, error=error[:300], **self._describe(item))
        else:
            symbols = sorted(f"{c}:{s}" for c, s in self._symbols_of(item))
            log.error("db_backlog_full", backlog=self.name, waiting=size, limit=limit, dropped=self.dropped,
                      symbols=symbols, **self._describe(item))  # fmt: skip
        self._wake.set()
        return state

    def mark(self, symbols: Iterable[Key], reason: str) -> None:
        """Mark symbols for a backfill now, or as soon as the database answers."""
        symbols = list(symbols)
        if not self.pending:
            try:
                self._mark(symbols, reason)
                return
            except DB_UNAVAILABLE as exc:
                _close_connection()
                outage_seen()
                log.warning("db_backlog_mark_kept", backlog=self.name, reason=reason, error=str(exc)[:300])
        with self._lock:
            self._remember(symbols, reason)
            self._ensure_drainer()
        self._wake.set()

    def wait_empty(self, timeout: float) -> bool:
        """Block until everything kept has been written (tests, shutdown); False on timeout."""
        import time

        deadline = time.monotonic() + timeout
        while self.pending:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.05)  # the drainer owns the work; this only waits for it to finish
        return True

    # ------------------------------------------------------------ the drainer

    def _remember(self, symbols: Iterable[Key], reason: str) -> None:
        for key in symbols:
            self._marks.setdefault(key, reason)

    def _ensure_drainer(self) -> None:  # under the lock
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._drain, name=f"db-backlog-{self.name}", daemon=True)
            self._thread.start()

    def _drain(self) -> None:
        delay = FIRST_DELAY
        while True:
            with self._lock:
                if not self._items and not self._marks:
                    self._thread = None
                    self._drain_marked.clear()
                    _close_connection()
                    outage_seen()  # what was kept is written now: the doubt window starts from here
                    return
            try:
                self._flush_marks()
                self._flush_items()
                delay = FIRST_DELAY
            except DB_UNAVAILABLE as exc:
                _close_connection()
                outage_seen()
                log.info("db_backlog_waiting", backlog=self.name, waiting=len(self._items), retry_in=delay,
                         error=str(exc)[:200])  # fmt: skip
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, MAX_DELAY)

    def _flush_marks(self) -> None:
        with self._lock:
            marks = dict(self._marks)
        by_reason: dict[str, list[Key]] = {}
        for key, reason in marks.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            self._mark(keys, reason)
            with self._lock:
                for key in keys:
                    self._marks.pop(key, None)

    def _flush_items(self) -> None:
        while True:
            with self._lock:
                if not self._items:
                    return
                item = self._items[0]
            if self._mark_on_drain:
                unmarked = set(self._symbols_of(item)) - self._drain_marked
                if unmarked:
                    self._mark(sorted(unmarked), self._mark_on_drain)
                    self._drain_marked |= unmarked
            try:
                self._write(item)
            except DB_UNAVAILABLE:
                raise
            except Exception as exc:  # the database answers but refuses this item: do not block the rest
                log.exception("db_backlog_item_failed", backlog=self.name, error=str(exc)[:300], **self._describe(item))
                with self._lock:
                    self._items.popleft()
                    self.dropped += 1
                    self._remember(self._symbols_of(item), f"{self.name} write failed after a database outage")
                continue
            with self._lock:
                self._items.popleft()
                self.written += 1
                left = len(self._items)
            log.info("db_backlog_written", backlog=self.name, waiting=left, **self._describe(item))

    def left(self) -> tuple[int, list[str]]:
        """(items waiting, symbols waiting for a backfill mark)."""
        with self._lock:
            return len(self._items), sorted(f"{c}:{s}" for c, s in self._marks)

    def _report_at_exit(self) -> None:
        with self._lock:
            items, marks = len(self._items), sorted(f"{c}:{s}" for c, s in self._marks)
        if items or marks:
            log.error("db_backlog_lost_at_exit", backlog=self.name, items=items, symbols=marks)


def backlogs_settle(*, stop: threading.Event, grace: float | None = None) -> bool:
    """Hold the process's exit while any backlog waits for the database; True when nothing is lost.

    Without a stop request this waits as long as it takes (a line every minute says why the process
    does not exit). Once ``stop`` is set, it waits at most ``grace`` (``DB_BACKLOG_EXIT_GRACE``) more
    seconds and logs ``db_backlog_lost_at_stop`` for each backlog that still holds something."""
    import time

    grace = settings.DB_BACKLOG_EXIT_GRACE if grace is None else grace
    said_at = None
    while not stop.is_set() and any(b.pending for b in _ALL):
        if said_at is None or time.monotonic() - said_at >= 60:
            said_at = time.monotonic()
            log.warning("db_backlog_exit_held", waiting={b.name: b.left()[0] for b in _ALL if b.pending},
                        detail="not exiting while writes wait for the database; SIGTERM gives up on them")  # fmt: skip
        for backlog in _ALL:
            if stop.is_set():
                break
            backlog.wait_empty(EXIT_WAIT_SLICE)
    deadline = time.monotonic() + grace
    for backlog in _ALL:
        backlog.wait_empty(max(0.0, deadline - time.monotonic()))
    lost = False
    for backlog in _ALL:
        items, marks = backlog.left()
        if items or marks:
            lost = True
            log.error("db_backlog_lost_at_stop", backlog=backlog.name, items=items, symbols=marks,
                      grace_s=grace)  # fmt: skip
    return not lost

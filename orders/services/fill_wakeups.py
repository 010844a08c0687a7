"""Wake-ups of decisions that wait for a symbol's fills (docs/decisions/0316, 0327).

A position-dependent signal whose symbol has an order with fills on the way waits for them
(``fresh_position``). Instead of finding out only at its next poll, it is woken when the fill path commits
something for the symbol:

- in this process, at commit (``transaction.on_commit``): the fill path and the decision share a process in
  tests and in ``process_signals`` setups that also ingest;
- in every process (PostgreSQL), by ``NOTIFY om_fills_booked`` sent in the fill transaction (delivered only
  when it commits) and naming its symbols; the signal processor's listener hands it to ``fills_booked``.

A wake-up only says "look again": the waiter re-runs its check, and the poll stays as the safety net.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from django.db import connection, transaction

from ordermanager.core.sql_once import fixed_cursor

CHANNEL = "om_fills_booked"
# PostgreSQL refuses a NOTIFY payload of 8,000 bytes or more; a longer list names no symbol (wakes every waiter).
_PAYLOAD_MAX = 7900
ANY_SYMBOL = "*"

_cond = threading.Condition()
_marks: dict[str, int] = {}


def fills_booked(symbols: Iterable[str]) -> None:
    """Something was committed for ``symbols`` (``ANY_SYMBOL``: for any): wake the decisions waiting on them."""
    with _cond:
        for symbol in symbols:
            _marks[symbol] = _marks.get(symbol, 0) + 1
        _cond.notify_all()


def fills_booked_on_commit(symbols: Iterable[str]) -> None:
    """Inside the fill path's transaction: announce ``symbols`` when (and only if) it commits."""
    names = sorted(set(symbols))
    if not names:
        return
    if connection.vendor == "postgresql":
        payload = " ".join(names)
        if len(payload) > _PAYLOAD_MAX:
            payload = ANY_SYMBOL
        with fixed_cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, payload])
    transaction.on_commit(lambda: fills_booked(names))


def fills_booked_notice(payload: str) -> None:
    """A NOTIFY on ``CHANNEL`` from any process (the listener's side)."""
    fills_booked(payload.split() or [ANY_SYMBOL])


def booked_mark(symbol: str) -> tuple[int, int]:
    """Where the announcements for ``symbol`` stand now; pass it to ``booked_wait``."""
    with _cond:
        return _marks.get(symbol, 0), _marks.get(ANY_SYMBOL, 0)


def booked_wait(symbol: str, mark: tuple[int, int], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for an announcement for ``symbol`` after ``mark``; True if one came."""
    deadline = time.monotonic() + timeout
    with _cond:
        while (_marks.get(symbol, 0), _marks.get(ANY_SYMBOL, 0)) == mark:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            _cond.wait(left)
        return True

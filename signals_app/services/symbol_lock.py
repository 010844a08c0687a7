"""One processor per symbol at a time, across threads and processes.

PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on the
calling thread's connection. It is held across the several transactions a
signal needs (none of them may wrap an exchange call) and the server drops it
by itself when the process dies or the connection breaks, so a ``kill -9``
never leaves a symbol locked. It does not work through a transaction-mode
connection pooler (PgBouncer ``pool_mode=transaction``): point the processor
at PostgreSQL directly or at a session-mode pool.

SQLite (embedded default): an in-process lock; run one processor process
there (``manage.py process_signals``), as the Procfile does.

An in-process lock is taken first on PostgreSQL too: it saves a round trip
when a sibling thread already holds the symbol.
"""

from __future__ import annotations

import threading
import zlib

from django.db import connection

# First key of the two-int advisory lock space used by the processor.
PROCESSOR_LOCK_NAMESPACE = 0x51A2

_local_guard = threading.Lock()
_local_locks: dict[str, threading.Lock] = {}


def _local(symbol: str) -> threading.Lock:
    with _local_guard:
        return _local_locks.setdefault(symbol, threading.Lock())


def _key(symbol: str) -> int:
    return zlib.crc32(symbol.encode()) - 2**31


def symbol_lock_try(symbol: str) -> bool:
    """Take the symbol for this thread without waiting; True when taken."""
    local = _local(symbol)
    if not local.acquire(blocking=False):
        return False
    if connection.vendor != "postgresql":
        return True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s, %s)", [PROCESSOR_LOCK_NAMESPACE, _key(symbol)])
            taken = cursor.fetchone()[0]
    except BaseException:
        local.release()
        raise
    if not taken:
        local.release()
    return bool(taken)


def symbol_held_here(symbol: str) -> bool:
    """True when a thread of this process holds ``symbol`` (or is taking it) now; after a failed
    ``symbol_lock_try``, False means another process holds it."""
    return _local(symbol).locked()


def symbol_lock_release(symbol: str) -> None:
    try:
        if connection.vendor == "postgresql" and connection.connection is not None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [PROCESSOR_LOCK_NAMESPACE, _key(symbol)])
    except Exception:
        # A broken connection has already released the lock on the server; drop it so the next use reconnects.
        connection.close()
    finally:
        _local(symbol).release()

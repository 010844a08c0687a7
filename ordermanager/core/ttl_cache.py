"""A small per-process cache whose entries go stale ``ttl`` seconds after they were stored.

One implementation for the hand-made caches we had (instrument rules, tickers,
wallet balance): a dict of ``key -> (stored at, value)`` on the monotonic clock
(wall-clock jumps must not keep a value alive or expire it early), behind a lock
because worker threads share it. A stored ``None`` is a value, not a miss.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class TTLCache:
    def __init__(self, ttl: float | Callable[[], float]):
        # A callable is read at each lookup, so a TTL from settings follows the settings.
        self._ttl = ttl
        self._data: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    @property
    def ttl(self) -> float:
        return self._ttl() if callable(self._ttl) else self._ttl

    def get(self, key: Hashable, default: Any = None, *, max_age: float | None = None) -> Any:
        """The value stored under ``key`` if younger than ``max_age`` (default: the TTL), else ``default``."""
        hit = self._fresh(key, time.monotonic(), max_age)
        return default if hit is None else hit[1]

    def get_or_load(self, key: Hashable, load: Callable[[], Any], *, max_age: float | None = None) -> Any:
        """The fresh value under ``key``, else ``load()`` stored and returned.

        The entry is dated from before the load: a slow load does not make its answer look newer."""
        now = time.monotonic()
        hit = self._fresh(key, now, max_age)
        if hit is not None:
            return hit[1]
        return self.put(key, load(), at=now)

    def put(self, key: Hashable, value: Any, *, at: float | None = None) -> Any:
        """Store ``value`` under ``key`` (dated now, or ``at`` on the monotonic clock) and return it."""
        with self._lock:
            self._data[key] = (time.monotonic() if at is None else at, value)
        return value

    def forget(self, key: Hashable) -> None:
        """Drop the entry under ``key``, if any."""
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def _fresh(self, key: Hashable, now: float, max_age: float | None) -> tuple[float, Any] | None:
        with self._lock:
            hit = self._data.get(key)
        if hit is None or now - hit[0] >= (self.ttl if max_age is None else max_age):
            return None
        return hit

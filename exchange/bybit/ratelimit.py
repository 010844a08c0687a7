"""Per-endpoint pacing from Bybit's rate-limit headers.

Bybit counts requests per UID per endpoint and reports, on every answer,
``X-Bapi-Limit-Status`` (requests left in the window) and
``X-Bapi-Limit-Reset-Timestamp`` (server ms when the window frees up). The
limiter remembers the last report per endpoint and, once the budget is spent,
makes callers wait for the reset instead of spending a request on a 10006.

The reset time is kept on the client's monotonic clock (converted once, when
the header arrives, with the measured server-clock offset), so a wall-clock
jump cannot stretch or skip a wait. The state is shared by all threads of the process (one client per process),
so sends are also counted locally between two reports.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

LIMIT_HEADER = "x-bapi-limit"
STATUS_HEADER = "x-bapi-limit-status"
RESET_HEADER = "x-bapi-limit-reset-timestamp"


_EPSILON = 0.001  # a wait computed as reset_at - now must count as over once slept, despite float rounding


@dataclass
class _Window:
    remaining: int
    reset_at: float  # client clock (seconds)
    limit: int | None = None


class RateLimiter:
    def __init__(self, *, low_watermark: int = 0):
        # Wait once ``remaining`` is at or below this; 0 spends the whole budget.
        self.low_watermark = low_watermark
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def reserve(self, endpoint: str, *, now: float) -> float:
        """Seconds to wait before sending to ``endpoint``; 0 means go (and counts the send)."""
        with self._lock:
            window = self._windows.get(endpoint)
            if window is None:
                return 0.0
            if now >= window.reset_at - _EPSILON:
                # The window the report described is over; the next answer tells us the new budget.
                if window.remaining <= self.low_watermark:
                    del self._windows[endpoint]
                return 0.0
            if window.remaining <= self.low_watermark:
                return window.reset_at - now
            window.remaining -= 1
            return 0.0

    def wait_time(self, endpoint: str, *, now: float) -> float:
        """Seconds until ``endpoint`` has budget again (0 if it has), without counting a send."""
        with self._lock:
            window = self._windows.get(endpoint)
            if window is None or window.remaining > self.low_watermark or now >= window.reset_at - _EPSILON:
                return 0.0
            return window.reset_at - now

    def update(self, endpoint: str, headers: Mapping[str, str], *, now: float, server_now_ms: int) -> None:
        remaining = _int(headers.get(STATUS_HEADER))
        reset_ms = _int(headers.get(RESET_HEADER))
        if remaining is None or reset_ms is None:
            return
        reset_at = now + (reset_ms - server_now_ms) / 1000
        with self._lock:
            self._windows[endpoint] = _Window(
                remaining=remaining, reset_at=reset_at, limit=_int(headers.get(LIMIT_HEADER))
            )

    def exhausted(self, endpoint: str, *, reset_at: float) -> None:
        """Record a 10006/429: nothing left until ``reset_at`` (client clock)."""
        with self._lock:
            self._windows[endpoint] = _Window(remaining=0, reset_at=reset_at)

    def snapshot(self, endpoint: str) -> tuple[int, float] | None:
        with self._lock:
            window = self._windows.get(endpoint)
            return None if window is None else (window.remaining, window.reset_at)


def _int(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None

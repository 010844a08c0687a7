"""Bybit V5 request authentication and per-endpoint rate limits, as the exchange applies them."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Mapping

from exchange.simulator.wire import SimError

DEFAULT_RECV_WINDOW = 5000
# Bybit accepts a timestamp at most 1 s ahead of its clock and at most recv_window behind it.
MAX_AHEAD_MS = 1000

# Bybit's per-UID, per-endpoint budgets (requests per second), non-VIP.
DEFAULT_RATE_LIMITS = {
    "/v5/order/create": 10,
    "/v5/order/amend": 10,
    "/v5/order/cancel": 10,
    "/v5/order/cancel-all": 10,
    "/v5/order/realtime": 50,
    "/v5/order/history": 50,
    "/v5/execution/list": 50,
    "/v5/position/list": 50,
    "/v5/position/switch-mode": 10,
    "/v5/position/set-leverage": 10,
    "/v5/account/wallet-balance": 50,
    "/v5/account/info": 50,
    "/v5/user/query-api": 50,
}


def sign(secret: str, timestamp: str, api_key: str, recv_window: str, payload: bytes) -> str:
    """HMAC-SHA256 hex of ``timestamp + api_key + recv_window + payload`` (payload: exact query or body bytes)."""
    message = f"{timestamp}{api_key}{recv_window}".encode() + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    *, headers: Mapping[str, str], payload: bytes, keys: Mapping[str, str], now_ms: int
) -> str:
    """Check a private request like Bybit does; returns the API key or raises SimError (10003/10002/10004)."""
    api_key = headers.get("x-bapi-api-key") or ""
    secret = keys.get(api_key)
    if not api_key or secret is None:
        raise SimError(10003, "API key is invalid.")
    timestamp = headers.get("x-bapi-timestamp") or ""
    recv_window = headers.get("x-bapi-recv-window") or str(DEFAULT_RECV_WINDOW)
    try:
        ts, window = int(timestamp), int(recv_window)
    except ValueError:
        raise SimError(10002, f"invalid request, please check your server timestamp or recv_window param. "
                              f"req_timestamp[{timestamp}],server_timestamp[{now_ms}],recv_window[{recv_window}]")
    if not (now_ms - window <= ts < now_ms + MAX_AHEAD_MS):
        raise SimError(10002, f"invalid request, please check your server timestamp or recv_window param. "
                              f"req_timestamp[{ts}],server_timestamp[{now_ms}],recv_window[{window}]")
    given = (headers.get("x-bapi-sign") or "").lower()
    expected = sign(secret, timestamp, api_key, recv_window, payload)
    if not hmac.compare_digest(given, expected):
        raise SimError(10004, "error sign! please check your signature generation algorithm.")
    return api_key


class RateLimiter:
    """Per API key, per endpoint, requests per one-second window (Bybit's UID-level limits)."""

    def __init__(self, limits: Mapping[str, int], *, scale: float = 1.0) -> None:
        self._lock = threading.Lock()
        self.base = dict(limits)
        self.configure(scale=scale)

    def configure(self, *, scale: float | None = None, limits: Mapping[str, int] | None = None) -> dict:
        with self._lock:
            if scale is not None:
                if scale <= 0:
                    raise ValueError("scale must be positive")
                self.scale = float(scale)
            self.overrides = dict(limits) if limits is not None else getattr(self, "overrides", {})
            self._windows: dict[tuple[str, str], tuple[int, int]] = {}
            self.rejected = 0
            return self.describe()

    def describe(self) -> dict:
        paths = sorted(set(self.base) | set(self.overrides))
        return {"scale": self.scale, "limits": {p: self.limit_for(p) for p in paths}}

    def limit_for(self, path: str) -> int:
        if path in self.overrides:
            return int(self.overrides[path])
        return max(1, int(self.base.get(path, 50) * self.scale))

    def hit(self, api_key: str, path: str, now_ms: int) -> tuple[bool, dict[str, str]]:
        """Count one request; returns (allowed, the X-Bapi-Limit* headers to send)."""
        with self._lock:
            limit = self.limit_for(path)
            second = now_ms // 1000
            start, count = self._windows.get((api_key, path), (second, 0))
            if start != second:
                start, count = second, 0
            allowed = count < limit
            if allowed:
                count += 1
            else:
                self.rejected += 1
            self._windows[(api_key, path)] = (start, count)
            headers = {
                "X-Bapi-Limit": str(limit),
                "X-Bapi-Limit-Status": str(limit - count),
                "X-Bapi-Limit-Reset-Timestamp": str((second + 1) * 1000),
            }
            return allowed, headers

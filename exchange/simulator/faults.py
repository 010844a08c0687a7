"""Fault injection: what goes wrong, how often, and deterministically so.

Request faults (one uniform draw per eligible request, in arrival order):
- ``rate_limit``: answered HTTP 200 ``retCode 10006`` before processing (nothing happened).
- ``http_429``: answered HTTP 429 (plain text) before processing (nothing happened).
- ``server_error``: answered HTTP ``server_error_status`` (503) before processing (nothing happened,
  but the client cannot know that: for a write the outcome is ambiguous).
- ``timeout``: held ``timeout_seconds`` and *then* processed normally; a client with a shorter timeout
  gives up first, so the write lands late (after the client's own lookup, possibly).
- ``drop_response``: processed at once (an order IS created), then the answer is replaced by
  HTTP 504 (``drop_response_mode="504"``, fast) or held ``timeout_seconds`` before answering
  (``drop_response_mode="delay"``).

Event faults (three draws per message per sink): ``drop_events``, ``duplicate_events``,
``reorder_events`` (held back and delivered after the next message, or flushed after
``reorder_hold_seconds``).

Every change through :meth:`FaultConfig.update` re-seeds the generators, so "set faults, then run the
same requests" always gives the same outcome.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

DROPPED_KEPT = 10_000  # messages an EventFilter remembers having dropped (for tests that attribute losses)
SHARE_KEYS = ("rate_limit", "http_429", "server_error", "timeout", "drop_response")
EVENT_KEYS = ("drop_events", "duplicate_events", "reorder_events")
DROP_MODES = ("504", "delay")


class FaultConfigError(ValueError):
    """A fault setting is out of range or unknown."""


@dataclass
class FaultConfig:
    rate_limit: float = 0.0
    http_429: float = 0.0
    server_error: float = 0.0
    timeout: float = 0.0
    drop_response: float = 0.0
    drop_events: float = 0.0
    duplicate_events: float = 0.0
    reorder_events: float = 0.0
    timeout_seconds: float = 2.0
    drop_response_mode: str = "504"
    server_error_status: int = 503
    reorder_hold_seconds: float = 0.2
    seed: int = 1
    paths: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def validated_changes(self, changes: dict) -> dict:
        """Check a partial update; return it normalised or raise FaultConfigError (nothing applied)."""
        known = set(self.as_dict())
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FaultConfigError(f"unknown fault setting(s): {', '.join(unknown)}")
        out: dict = {}
        for key, value in changes.items():
            if key in SHARE_KEYS or key in EVENT_KEYS:
                out[key] = _share(key, value)
            elif key in ("timeout_seconds", "reorder_hold_seconds"):
                out[key] = _non_negative(key, value)
            elif key == "drop_response_mode":
                if value not in DROP_MODES:
                    raise FaultConfigError(f"drop_response_mode must be one of {DROP_MODES}, got {value!r}")
                out[key] = value
            elif key == "server_error_status":
                if not isinstance(value, int) or isinstance(value, bool) or not 500 <= value <= 599:
                    raise FaultConfigError(f"server_error_status must be an integer 500..599, got {value!r}")
                out[key] = value
            elif key == "seed":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise FaultConfigError(f"seed must be an integer, got {value!r}")
                out[key] = value
            elif key == "paths":
                if value is None:
                    value = []
                if not isinstance(value, list) or not all(isinstance(p, str) and p.startswith("/") for p in value):
                    raise FaultConfigError("paths must be a list of request paths such as '/v5/order/create'")
                out[key] = list(value)
        merged = {**self.as_dict(), **out}
        if sum(merged[k] for k in SHARE_KEYS) > 1:
            raise FaultConfigError("request fault shares add up to more than 1")
        return out


def _share(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise FaultConfigError(f"{key} must be a number between 0 and 1, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise FaultConfigError(f"{key} must be a number between 0 and 1, got {value!r}") from None
    if not 0 <= number <= 1:
        raise FaultConfigError(f"{key} must be between 0 and 1, got {value!r}")
    return number


def _non_negative(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultConfigError(f"{key} must be a number of seconds, got {value!r}")
    if value < 0 or value > 600:
        raise FaultConfigError(f"{key} must be between 0 and 600 seconds, got {value!r}")
    return float(value)


class RequestFaults:
    """Decides, per request, which fault (if any) applies. Thread-safe."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self.config = config or FaultConfig()
        self._rng = random.Random(self.config.seed)
        self.counts: dict[str, int] = {}

    def update(self, changes: dict) -> FaultConfig:
        with self._lock:
            clean = self.config.validated_changes(changes)
            for key, value in clean.items():
                setattr(self.config, key, value)
            self._rng = random.Random(self.config.seed)
            return self.config

    def reset(self, config: FaultConfig | None = None) -> None:
        with self._lock:
            self.config = config or FaultConfig()
            self._rng = random.Random(self.config.seed)
            self.counts = {}

    def decide(self, path: str) -> str | None:
        with self._lock:
            cfg = self.config
            if not any(getattr(cfg, k) for k in SHARE_KEYS):
                return None
            if cfg.paths and path not in cfg.paths:
                return None
            draw = self._rng.random()
            edge = 0.0
            for key in SHARE_KEYS:
                edge += getattr(cfg, key)
                if draw < edge:
                    self.counts[key] = self.counts.get(key, 0) + 1
                    return key
            return None


class EventFilter:
    """Applies drop/duplicate/reorder to one sink's message stream (call under the engine lock)."""

    def __init__(self, config: FaultConfig, index: int) -> None:
        self.config = config
        self.reseed(index)

    def reseed(self, index: int) -> None:
        self.index = index
        self._rng = random.Random(self.config.seed * 1_000_003 + index)
        self._held: tuple[float, dict] | None = None
        self.counts = {"dropped": 0, "duplicated": 0, "reordered": 0}
        # What the drop fault withheld, so a test can tell "never sent" from "sent and lost by the receiver".
        self.dropped: deque[dict] = deque(maxlen=DROPPED_KEPT)

    def process(self, message: dict) -> list[dict]:
        cfg = self.config
        # Always three draws, so the outcome of message N does not depend on earlier shares' effects.
        drop, dup, reorder = self._rng.random(), self._rng.random(), self._rng.random()
        if drop < cfg.drop_events:
            self.counts["dropped"] += 1
            self.dropped.append(message)
            return []
        out = [message]
        if dup < cfg.duplicate_events:
            self.counts["duplicated"] += 1
            out.append(message)
        if self._held is not None:
            held = self._held[1]
            self._held = None
            return out + [held]
        if reorder < cfg.reorder_events:
            self.counts["reordered"] += 1
            self._held = (time.monotonic(), message)
            return out[1:]
        return out

    def flush(self, *, max_age: float | None = None) -> list[dict]:
        if self._held is None:
            return []
        if max_age is not None and time.monotonic() - self._held[0] < max_age:
            return []
        held = self._held[1]
        self._held = None
        return [held]

"""Backoff schedule of the Bybit client: exponential, jittered, bounded in count and total time."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from django.conf import settings


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long the client may try one operation.

    ``max_attempts`` counts every request sent for one operation (the first one
    included). ``total_timeout`` bounds the whole operation, waits included: an
    order that cannot be placed within ORDER_EXECUTION_TIMEOUT is reported as
    failed (or unknown) instead of landing much later at a stale price.
    """

    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    total_timeout: float = 30.0
    # "Equal jitter": a delay lies in [d/2, d]. It spreads clients apart like full
    # jitter does, but keeps a floor so a retry never fires immediately.
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts={self.max_attempts} must be at least 1")
        if not 0 <= self.base_delay <= self.max_delay:
            raise ValueError(f"need 0 <= base_delay ({self.base_delay}) <= max_delay ({self.max_delay})")
        if self.multiplier < 1:
            raise ValueError(f"multiplier={self.multiplier} must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter={self.jitter} must lie in [0, 1]")
        if self.total_timeout <= 0:
            raise ValueError(f"total_timeout={self.total_timeout} must be positive")

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        return cls(
            max_attempts=settings.BYBIT_API_RETRY_MAX_ATTEMPTS,
            base_delay=settings.BYBIT_API_RETRY_BASE_DELAY,
            max_delay=settings.BYBIT_API_RETRY_MAX_DELAY,
            multiplier=settings.BYBIT_API_RETRY_MULTIPLIER,
            total_timeout=settings.ORDER_EXECUTION_TIMEOUT,
        )

    def ceiling(self, failures: int) -> float:
        """Un-jittered delay after the ``failures``-th failed attempt (1-based)."""
        return min(self.max_delay, self.base_delay * self.multiplier ** max(0, failures - 1))

    def delay(self, failures: int) -> float:
        top = self.ceiling(failures)
        return top * (1 - self.jitter * self.rng.random())

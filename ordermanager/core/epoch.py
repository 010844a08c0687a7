"""Datetimes to and from Bybit's epoch milliseconds, the one place both directions live.

Integer arithmetic throughout: ``int(when.timestamp() * 1000)`` goes through a
float and can land one millisecond short, which would misorder fills that share
a millisecond with their neighbours.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def epoch_ms(when: datetime) -> int:
    """Whole milliseconds from the Unix epoch to ``when`` (an aware datetime), exactly."""
    return (when - EPOCH) // _ONE_MS


def from_epoch_ms(ms: int) -> datetime:
    """The aware UTC datetime ``ms`` milliseconds after the Unix epoch."""
    return EPOCH + timedelta(milliseconds=ms)

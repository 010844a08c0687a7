"""A symbol's position mode, as the exchange reports it.

Bybit lists a linear symbol's positions as one row with positionIdx 0 in
one-way mode and two rows, 1 (long) and 2 (short), in hedge mode, flat or not.
That listing is the truth: our ``Position`` rows cannot tell, because a symbol
may switch mode while flat and old rows stay behind (docs/decisions/0405).

The answer is cached per process for ``MODE_TTL_SECONDS``: the mode only
changes by a person's act, and only while the symbol is flat with no open
orders. A create the exchange refuses with "position idx not match position
mode" (retCode 10001) forgets the cached mode (``position_mode_forget``), so the
next signal of the symbol reads it again instead of waiting out the TTL.
See docs/decisions/0313-hedge-mode.md.
"""

from __future__ import annotations

import threading
import time

import structlog

log = structlog.get_logger(__name__)

ONE_WAY = "one_way"  # the values of positions.models.PositionMode
HEDGE = "hedge"
MODE_TTL_SECONDS = 60.0

_lock = threading.Lock()
_modes: dict[tuple[str, str], tuple[float, str]] = {}


def position_mode_of(*, category: str, symbol: str) -> str:
    """``ONE_WAY`` or ``HEDGE`` for ``symbol``; reads the exchange's position list when not cached.

    Raises the client's ``BybitError`` when the exchange cannot be asked."""
    if category != "linear":
        return ONE_WAY  # spot has no positions
    key = (category, symbol)
    now = time.monotonic()
    with _lock:
        hit = _modes.get(key)
    if hit and hit[0] > now:
        return hit[1]
    from exchange.bybit.client import get_client

    rows = get_client().get_positions(category=category, symbol=symbol)
    mode = HEDGE if any(row.position_idx in (1, 2) for row in rows) else ONE_WAY
    with _lock:
        _modes[key] = (now + MODE_TTL_SECONDS, mode)
    if hit and hit[1] != mode:
        log.warning("position_mode_changed", symbol=symbol, was=hit[1], now=mode)
    return mode


def position_mode_forget(*, category: str | None = None, symbol: str | None = None) -> None:
    """Drop the cached mode of ``symbol`` (every symbol when None)."""
    with _lock:
        if symbol is None:
            _modes.clear()
        else:
            _modes.pop((category or "linear", symbol), None)


def is_mode_mismatch(*, ret_code: int | None, ret_msg: str) -> bool:
    """Bybit's refusal of a positionIdx that does not fit the symbol's mode."""
    return ret_code == 10001 and "position idx" in (ret_msg or "").lower()

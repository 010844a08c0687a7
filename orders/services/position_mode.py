"""A symbol's position mode (one-way or hedge): the one place that answers "is this symbol hedged?".

Two ways to ask, for two kinds of caller:

- ``position_mode_of`` asks the exchange. Bybit lists a linear symbol's positions as
  one row with positionIdx 0 in one-way mode and two rows, 1 (long) and 2 (short),
  in hedge mode, flat or not. That listing is the truth: our ``Position`` rows
  cannot tell for sure, because a symbol may switch mode while flat and old rows
  stay behind (docs/decisions/0405). Order planning uses it.
- ``position_mode_in_book`` infers from our book, for fill ingest, which runs inside
  a transaction where no exchange call may be made (docs/decisions/0410, 0417).

The exchange's answer is cached per process for ``MODE_TTL_SECONDS``: the mode only
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

from exchange.bybit.client import get_client
from orders.models import Order
from positions.models import PositionMode
from positions.selectors import position_idxs_of

log = structlog.get_logger(__name__)

ONE_WAY = PositionMode.ONE_WAY.value
HEDGE = PositionMode.HEDGE.value
MODE_TTL_SECONDS = 60.0

_lock = threading.Lock()
_modes: dict[tuple[str, str], tuple[float, str]] = {}
# The last position listing read per symbol (monotonic time, rows): a decision made right after the mode was
# read may use the same answer instead of asking again (orders/services/fresh_position.py).
_rows: dict[tuple[str, str], tuple[float, list]] = {}


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
    positions_read(category=category, symbol=symbol)
    with _lock:
        return _modes[key][1]


def positions_read(*, category: str, symbol: str, since: float | None = None) -> list:
    """The exchange's position rows of ``symbol`` (``/v5/position/list``); also refreshes the cached mode.

    ``since`` (a ``time.monotonic()`` value): a listing read at or after it is returned without a request."""
    key = (category, symbol)
    if since is not None:
        with _lock:
            cached = _rows.get(key)
        if cached and cached[0] >= since:
            return cached[1]
    read_at = time.monotonic()
    rows = get_client().get_positions(category=category, symbol=symbol)
    with _lock:
        _rows[key] = (read_at, rows)
        hit = _modes.get(key)
    _mode_from(key, rows, hit=hit)
    return rows


def _mode_from(key: tuple[str, str], rows: list, *, hit) -> str:
    mode = HEDGE if any(row.position_idx in (1, 2) for row in rows) else ONE_WAY
    with _lock:
        _modes[key] = (time.monotonic() + MODE_TTL_SECONDS, mode)
    if hit and hit[1] != mode:
        log.warning("position_mode_changed", symbol=key[1], was=hit[1], now=mode)
    return mode


def position_mode_forget(*, category: str | None = None, symbol: str | None = None) -> None:
    """Drop the cached mode of ``symbol`` (every symbol when None)."""
    with _lock:
        if symbol is None:
            _modes.clear()
            _rows.clear()
        else:
            _modes.pop((category or "linear", symbol), None)
            _rows.pop((category or "linear", symbol), None)


def is_mode_mismatch(*, ret_code: int | None, ret_msg: str) -> bool:
    """Bybit's refusal of a positionIdx that does not fit the symbol's mode."""
    return ret_code == 10001 and "position idx" in (ret_msg or "").lower()


def position_mode_in_book(*, category: str, symbol: str, certain: bool = False) -> str | None:
    """``ONE_WAY`` or ``HEDGE`` as far as our book can tell, or None when nothing tells it.

    ``certain``: only an open position counts, since Bybit does not switch the mode of a symbol
    with an open position (0417); rows of both kinds at once mean a broken book, so None.
    Otherwise the best witness wins (0410): an open row, then the mode our latest order of the
    symbol was placed in, then any row. A symbol can switch mode while flat, which is why rows
    alone come last.
    """
    open_idxs = position_idxs_of(category=category, symbol=symbol, open_only=True)
    if certain:
        if open_idxs == {0}:
            return ONE_WAY
        return HEDGE if open_idxs and 0 not in open_idxs else None
    if open_idxs:
        return ONE_WAY if 0 in open_idxs else HEDGE
    latest = Order.objects.filter(category=category, symbol=symbol).order_by("-pk")
    latest_idx = latest.values_list("position_idx", flat=True).first()
    if latest_idx is not None:
        return HEDGE if latest_idx != 0 else ONE_WAY
    idxs = position_idxs_of(category=category, symbol=symbol)
    if idxs & {1, 2}:
        return HEDGE
    return ONE_WAY if 0 in idxs else None

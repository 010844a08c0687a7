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

import math
import time
from typing import NamedTuple

import structlog

from exchange.bybit import client as bybit_client
from ordermanager.core.ttl_cache import TTLCache
from orders.models import Order
from positions.models import PositionMode
from positions.selectors import position_idxs_of

log = structlog.get_logger(__name__)

ONE_WAY = PositionMode.ONE_WAY.value
HEDGE = PositionMode.HEDGE.value
MODE_TTL_SECONDS = 60.0


class _Listing(NamedTuple):
    """The last position listing read per symbol and the mode it shows. The cache dates the entry when it is
    stored (after the request) and the mode is served for ``MODE_TTL_SECONDS`` from then; ``read_at`` (the
    monotonic time the request was sent) lets a decision made right after the mode was read use the same rows
    instead of asking again (``positions_read(since=...)``, orders/services/fresh_position.py)."""

    mode: str
    rows: list
    read_at: float


_listings = TTLCache(MODE_TTL_SECONDS)


def position_mode_of(*, category: str, symbol: str) -> str:
    """``ONE_WAY`` or ``HEDGE`` for ``symbol``; reads the exchange's position list when not cached.

    Raises the client's ``BybitError`` when the exchange cannot be asked."""
    if category != "linear":
        return ONE_WAY  # spot has no positions
    hit = _listings.get((category, symbol))
    if hit is not None:
        return hit.mode
    return _mode_of(positions_read(category=category, symbol=symbol))


def positions_read(*, category: str, symbol: str, since: float | None = None) -> list:
    """The exchange's position rows of ``symbol`` (``/v5/position/list``); also refreshes the cached mode.

    ``since`` (a ``time.monotonic()`` value): a listing read at or after it is returned without a request."""
    key = (category, symbol)
    if since is not None:
        last = _listings.get(key, max_age=math.inf)  # however old: ``since`` decides
        if last is not None and last.read_at >= since:
            return last.rows
    read_at = time.monotonic()
    rows = bybit_client.get_client().get_positions(category=category, symbol=symbol)
    was = _listings.get(key, max_age=math.inf)
    mode = _mode_of(rows)
    _listings.put(key, _Listing(mode=mode, rows=rows, read_at=read_at))
    if was is not None and was.mode != mode:
        log.warning("position_mode_changed", symbol=symbol, was=was.mode, now=mode)
    return rows


def _mode_of(rows: list) -> str:
    return HEDGE if any(row.position_idx in (1, 2) for row in rows) else ONE_WAY


def position_mode_forget(*, category: str | None = None, symbol: str | None = None) -> None:
    """Drop the cached mode (and listing) of ``symbol`` (every symbol when None)."""
    if symbol is None:
        _listings.clear()
    else:
        _listings.forget((category or "linear", symbol))


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

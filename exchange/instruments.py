"""Trading rules per symbol (tick size, qty step, minimums), cached in three tiers.

memory (per process, ``INSTRUMENT_CACHE_TTL`` seconds) → ``Instrument`` table
(shared by all processes, fresh for the same TTL) → Bybit instruments-info.
When Bybit cannot be reached, a stale table row is still served (with a
warning): tick sizes and steps rarely change, and refusing every order while
the exchange API hiccups would be worse than trading on yesterday's rules,
which the exchange itself enforces anyway.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from django.conf import settings
from django.utils import timezone

from exchange.bybit.client import get_client
from exchange.bybit.errors import BybitConnectError, BybitTransportError
from exchange.bybit.types import InstrumentInfo
from exchange.models import Instrument
from ordermanager.core.ttl_cache import TTLCache

logger = structlog.get_logger("exchange.instruments")

_UPDATE_FIELDS = [
    "status", "base_coin", "quote_coin", "tick_size", "qty_step", "min_order_qty", "max_order_qty",
    "max_market_order_qty", "min_notional", "raw", "fetched_at",
]  # fmt: skip


class UnknownInstrument(ValueError):
    """The exchange does not list this symbol in this category."""


# The per-process tier, keyed (category, symbol); the TTL is read from settings at each lookup.
_memory = TTLCache(lambda: settings.INSTRUMENT_CACHE_TTL)


def instrument_get(*, category: str, symbol: str, refresh: bool = False) -> InstrumentInfo:
    """The rules of ``symbol``; ``refresh=True`` skips both caches and asks the exchange."""
    key = (category, symbol)
    if not refresh:
        cached = _memory.get(key)
        if cached is not None:
            return cached
        row = Instrument.objects.filter(category=category, symbol=symbol).first()
        if row is not None and timezone.now() - row.fetched_at < timedelta(seconds=settings.INSTRUMENT_CACHE_TTL):
            return _memory_put(_from_row(row))
    else:
        row = None
    try:
        found = get_client().get_instruments(category=category, symbol=symbol)
    except (BybitTransportError, BybitConnectError) as exc:
        row = row or Instrument.objects.filter(category=category, symbol=symbol).first()
        if row is None:
            raise
        logger.warning("instrument_stale_rules_served", category=category, symbol=symbol, error=str(exc))
        return _from_row(row)
    info = next((i for i in found if i.symbol == symbol), None)
    if info is None:
        raise UnknownInstrument(f"{category} symbol {symbol!r} is not listed on the exchange")
    _store([info])
    return _memory_put(info)


def instruments_refresh(*, category: str) -> int:
    """Fetch every instrument of ``category`` (all pages) into the table and memory; returns the count."""
    infos = get_client().get_instruments(category=category)
    _store(infos)
    for info in infos:
        _memory_put(info)
    logger.info("instruments_refreshed", category=category, count=len(infos))
    return len(infos)


def instruments_cache_clear() -> None:
    """Forget the in-memory tier (tests; or after a manual table edit)."""
    _memory.clear()


def _memory_put(info: InstrumentInfo) -> InstrumentInfo:
    return _memory.put((info.category, info.symbol), info)


def _store(infos: list[InstrumentInfo]) -> None:
    now = timezone.now()
    rows = [
        Instrument(
            category=i.category,
            symbol=i.symbol,
            status=i.status,
            base_coin=i.base_coin,
            quote_coin=i.quote_coin,
            tick_size=i.tick_size,
            qty_step=i.qty_step,
            min_order_qty=i.min_order_qty,
            max_order_qty=i.max_order_qty,
            max_market_order_qty=i.max_market_order_qty,
            min_notional=i.min_notional,
            raw=i.raw,
            fetched_at=now,
        )  # fmt: skip
        for i in infos
    ]
    # One statement however many symbols (linear lists 500+); concurrent refreshes simply both win.
    Instrument.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["category", "symbol"], update_fields=_UPDATE_FIELDS, batch_size=500
    )


def _from_row(row: Instrument) -> InstrumentInfo:
    return InstrumentInfo(
        category=row.category,
        symbol=row.symbol,
        status=row.status,
        base_coin=row.base_coin,
        quote_coin=row.quote_coin,
        tick_size=row.tick_size,
        qty_step=row.qty_step,
        min_order_qty=row.min_order_qty,
        max_order_qty=row.max_order_qty,
        max_market_order_qty=row.max_market_order_qty,
        min_notional=row.min_notional,
        raw=row.raw,
    )

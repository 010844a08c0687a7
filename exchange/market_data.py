"""The market data an order decision reads: ticker, available balance, instrument rules.

One place for the reads the order plan makes of the exchange (docs/decisions/0323), each behind a short
per-process cache (``ordermanager.core.ttl_cache``): a burst of signals of one symbol makes one ticker and
one balance request per TTL instead of one per signal. A second-old ticker is good enough for the
deviation warning and a missing snapshot; the balance feeds a per-order ratio check, which a second of
staleness does not defeat. Instrument rules keep their own three-tier cache (``exchange.instruments``).

The client is reached through its module (``bybit_client.get_client()``), so a test that patches
``exchange.bybit.client.get_client`` reaches these reads too.
"""

from __future__ import annotations

from decimal import Decimal

from exchange import instruments
from exchange.bybit import client as bybit_client
from exchange.bybit.types import InstrumentInfo, Ticker
from ordermanager.core.ttl_cache import TTLCache

MARKET_DATA_TTL = 1.0
BALANCE_COIN = "USDT"

_tickers = TTLCache(MARKET_DATA_TTL)
_balance = TTLCache(MARKET_DATA_TTL)


def ticker_read(*, category: str, symbol: str, max_age: float | None = None) -> Ticker | None:
    """The symbol's ticker (None when the exchange lists none), at most ``max_age`` (default: the TTL) old."""

    def load() -> Ticker | None:
        tickers = bybit_client.get_client().get_tickers(category=category, symbol=symbol)
        return tickers[0] if tickers else None

    return _tickers.get_or_load((category, symbol), load, max_age=max_age)


def available_balance_read() -> Decimal:
    """The account's total available balance in USDT, at most the TTL old."""
    return _balance.get_or_load(
        BALANCE_COIN, lambda: bybit_client.get_client().get_wallet_balance().total_available_balance)


def instrument_rules_read(*, category: str, symbol: str) -> InstrumentInfo:
    """The symbol's trading rules (tick size, qty step, minimums, status); raises ``UnknownInstrument``."""
    return instruments.instrument_get(category=category, symbol=symbol)


def market_data_cache_clear() -> None:
    """Forget the cached tickers and balance (tests, and a process that must read afresh)."""
    _tickers.clear()
    _balance.clear()

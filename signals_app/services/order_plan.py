"""From one signal to the orders it should become (no writes, no sending).

The rules live in ``orders.services`` (type, quantity, risk, splitting); this
module gathers their inputs (instrument rules, ticker, position, balance,
risk limits) and applies them in order. A rule that says no raises Django's
``ValidationError`` with a sentence for the signal's ``reason``.

Short selling (docs/decisions/0304): a sell reduces an existing long and is
sent reduce-only. With ``ALLOW_SHORT=false`` (default) a sell with no long is
rejected, and a sell larger than the long is capped to the long (still
reduce-only) so the account never turns short by accident. With
``ALLOW_SHORT=true`` a sell larger than the long is sent as a plain sell.

Hedge mode (per symbol, as the exchange reports it; docs/decisions/0313): a
signal first closes the other side. A sell with a long is a reduce-only Sell on
positionIdx 1, capped to the long; with no long it opens or adds to the short
on positionIdx 2, only with ``ALLOW_SHORT``. A buy with a short is a
reduce-only Buy on positionIdx 2, capped to the short; with no short it opens
or adds to the long on positionIdx 1. One order never closes one side and opens
the other: the part beyond the closed side is not sent, and the reason says so.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from decimal import Decimal

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError

from orders.models import Side
from orders.services import quantity_calculator as qc
from orders.services.order_type_selector import OrderTypeDecision, TypeRules, order_type_select
from orders.services.position_mode import HEDGE, position_mode_of
from orders.services.risk import RiskInput, book_state_read, order_reduces_position, risk_check, risk_check_halts
from orders.services.splitting import Leg, legs_plan
from signals_app.models import TradingSignal

log = structlog.get_logger(__name__)

# Market data is shared by every signal of a burst: one ticker/balance read per
# symbol per TTL instead of one per signal. A second-old ticker is good enough
# for the deviation warning and a missing snapshot; the balance feeds a
# per-order ratio check, which a second of staleness does not defeat.
MARKET_DATA_TTL = 1.0
# When the signal carries its own price and spread, the ticker only feeds the >5 % deviation warning: a
# ticker this old is good enough for that, and the signal does not wait for a ticker request.
TICKER_TTL_FOR_WARNING = 10.0
# ValidationError code of "no long position to reduce" (short selling off): the re-plan reads the exchange.
NO_POSITION = "no_position"


@dataclass(frozen=True)
class OrderPlan:
    symbol: str
    side: str
    decision: OrderTypeDecision
    reference_price: Decimal
    qty: Decimal
    reduce_only: bool
    legs: list[Leg]
    notes: list[str]
    position_idx: int = 0
    # False when the symbol has no open order a new signal could cancel: the cancel step is skipped.
    cancel_candidates: bool = True
    # Where the position the plan decided on came from: "book" or "exchange" (docs/decisions/0316).
    position_source: str = "book"

    def summary(self) -> str:
        price = "" if self.decision.price is None else f" @ {self.decision.price}"
        legs = f" in {len(self.legs)} legs" if len(self.legs) > 1 else ""
        ro = " reduce-only" if self.reduce_only else ""
        idx = f" (hedge positionIdx {self.position_idx})" if self.position_idx else ""
        return f"{self.decision.order_type} {self.side} {self.qty} {self.symbol}{price}{ro}{idx}{legs}"


@dataclass(frozen=True)
class Placement:
    """Where an order goes and how big it may be, after the position rules."""

    qty: Decimal
    reduce_only: bool
    position_idx: int  # 0 one-way; hedge: 1 long, 2 short
    row_size: Decimal  # signed size of that position row (hedge short negative), for the risk checks
    notes: list[str]


class _TTLCache:
    def __init__(self, ttl: float):
        self.ttl = ttl
        self._data: dict = {}
        self._lock = threading.Lock()

    def get(self, key, load, *, max_age: float | None = None):
        """The cached value if younger than ``max_age`` (default: the TTL), else a fresh one."""
        now = time.monotonic()
        with self._lock:
            hit = self._data.get(key)
        if hit and now - hit[0] < (self.ttl if max_age is None else max_age):
            return hit[1]
        value = load()
        with self._lock:
            self._data[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_tickers = _TTLCache(MARKET_DATA_TTL)
_balance = _TTLCache(MARKET_DATA_TTL)


def market_data_cache_clear() -> None:
    _tickers.clear()
    _balance.clear()


def _ticker(category: str, symbol: str, *, max_age: float | None = None):
    from exchange.bybit.client import get_client

    def load():
        tickers = get_client().get_tickers(category=category, symbol=symbol)
        return tickers[0] if tickers else None

    return _tickers.get((category, symbol), load, max_age=max_age)


def _available_balance() -> Decimal:
    from exchange.bybit.client import get_client

    return _balance.get("USDT", lambda: get_client().get_wallet_balance().total_available_balance)


def _n(value: Decimal | None) -> Decimal | None:
    """Drop the trailing zeros of an 18-place column so reasons read '50', not '50.000000000000000000'."""
    if value is None:
        return None
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral_value() else normal


@dataclass(frozen=True)
class _Rules:
    tick_size: Decimal
    qty_step: Decimal
    min_order_qty: Decimal
    min_notional: Decimal
    max_order_qty: Decimal
    max_market_order_qty: Decimal | None
    status: str

    @classmethod
    def of(cls, info) -> _Rules:
        return cls(tick_size=_n(info.tick_size), qty_step=_n(info.qty_step), min_order_qty=_n(info.min_order_qty),
                   min_notional=_n(info.min_notional), max_order_qty=_n(info.max_order_qty),
                   max_market_order_qty=_n(info.max_market_order_qty), status=info.status)


def order_plan(*, signal: TradingSignal, position_sizes: dict | None = None) -> OrderPlan:
    """Apply every rule to ``signal``; raises ``ValidationError`` (reject) or exchange errors (fail).

    ``position_sizes`` (the exchange's, read by the caller after a refusal) replaces the book's position.
    A position refusal carries ``position_source`` and ``plan_started`` (see signal_processor's re-plan)."""
    from exchange.instruments import instrument_get

    started = time.monotonic()
    category, symbol = settings.BYBIT_CATEGORY, signal.asset
    side = Side.BUY if signal.signal_type == "buy" else Side.SELL
    book = book_state_read(symbol=symbol, category=category)
    limits = book.limits
    risk_check_halts(limits=limits)
    instrument = _Rules.of(instrument_get(category=category, symbol=symbol))
    amount = _n(signal.amount)
    if instrument.status != "Trading":
        raise ValidationError(f"{symbol} is not trading on the exchange (status {instrument.status})")
    complete = signal.snapshot_price is not None and signal.snapshot_spread is not None
    ticker = _ticker(category, symbol, max_age=TICKER_TTL_FOR_WARNING if complete else None)
    reference = qc.reference_price_select(
        snapshot_price=_n(signal.snapshot_price), ticker_price=ticker.last_price if ticker else None
    )
    decision = order_type_select(
        side=side,
        confidence=signal.confidence,
        urgency=signal.urgency,
        price=reference.price,
        spread=_spread(signal, ticker),
        tick_size=instrument.tick_size,
        rules=TypeRules.from_settings(),
    )
    order_price = decision.price or reference.price
    quantity = qc.quantity_calculate(
        amount=amount,
        reference_price=reference.price,
        order_price=order_price,
        qty_step=instrument.qty_step,
        min_order_qty=instrument.min_order_qty,
        min_notional=instrument.min_notional,
        symbol=symbol,
    )
    sizes, source = (position_sizes, "exchange") if position_sizes is not None else _fresh_sizes(
        side, category, symbol, book.sizes)
    try:
        placement = _placement(side, quantity.qty, category, sizes, instrument, symbol, order_price)
    except ValidationError as exc:
        exc.position_source, exc.plan_started = source, started
        raise
    qty, reduce_only = placement.qty, placement.reduce_only
    reducing = order_reduces_position(side=side, qty=qty, position_size=placement.row_size)
    risk_check(
        order=RiskInput(
            symbol=symbol,
            side=side,
            qty=qty,
            price=order_price,
            position_size=placement.row_size,
            exposure_other=Decimal(0) if reducing else book.exposure_other,
            available_balance=None if reducing else _available_balance(),
        ),
        limits=limits,
    )
    max_qty = instrument.max_order_qty
    if decision.order_type == "Market" and instrument.max_market_order_qty:
        max_qty = min(max_qty, instrument.max_market_order_qty)
    legs = legs_plan(
        amount=amount,
        qty=qty,
        price=order_price,
        qty_step=instrument.qty_step,
        min_order_qty=instrument.min_order_qty,
        min_notional=instrument.min_notional,
        max_order_qty=max_qty,
        max_single_order_size=settings.MAX_SINGLE_ORDER_SIZE,
        splitting_enabled=settings.ENABLE_ORDER_SPLITTING,
        symbol=symbol,
    )
    return OrderPlan(symbol=symbol, side=side, decision=decision, reference_price=reference.price, qty=qty,
                     reduce_only=reduce_only, legs=legs, notes=placement.notes, position_idx=placement.position_idx,
                     cancel_candidates=book.has_cancel_candidates, position_source=source)


def _fresh_sizes(side, category, symbol, book_sizes) -> tuple[dict, str]:
    from signals_app.services.fresh_position import position_fresh

    hedge = position_mode_of(category=category, symbol=symbol) == HEDGE
    return position_fresh(category=category, symbol=symbol, side=side, book_sizes=book_sizes, hedge=hedge)


def _spread(signal: TradingSignal, ticker) -> Decimal | None:
    if signal.snapshot_spread is not None:
        return _n(signal.snapshot_spread)
    if ticker and ticker.bid1_price and ticker.ask1_price and ticker.ask1_price >= ticker.bid1_price:
        return ticker.ask1_price - ticker.bid1_price
    return None


def _placement(side, qty, category, sizes, instrument, symbol, price) -> Placement:
    if position_mode_of(category=category, symbol=symbol) == HEDGE:
        return _hedge_rules(side, qty, _n(sizes[1]), _n(sizes[2]), instrument, symbol, price)
    position = _n(sizes[0])
    qty, reduce_only, notes = _apply_position_rules(side, qty, position, instrument, symbol, price)
    return Placement(qty=qty, reduce_only=reduce_only, position_idx=0, row_size=position, notes=notes)


def _hedge_rules(side, qty, long, short, instrument, symbol, price) -> Placement:
    """Hedge mode (module docstring): close the other side first; open a short only with ALLOW_SHORT."""
    if side == Side.BUY:
        if short > 0:
            capped, notes = _cap_hedge(qty, short, "short", "buy", instrument, symbol, price)
            return Placement(qty=capped, reduce_only=True, position_idx=2, row_size=-short, notes=notes)
        return Placement(qty=qty, reduce_only=False, position_idx=1, row_size=long, notes=[])
    if long > 0:
        capped, notes = _cap_hedge(qty, long, "long", "sell", instrument, symbol, price)
        return Placement(qty=capped, reduce_only=True, position_idx=1, row_size=long, notes=notes)
    if not settings.ALLOW_SHORT:
        raise ValidationError(
            f"sell of {qty} {symbol} rejected: no long position to reduce (hedge mode, long 0, short {short}) "
            f"and short selling is off (ALLOW_SHORT=false)", code=NO_POSITION,
        )
    return Placement(qty=qty, reduce_only=False, position_idx=2, row_size=-short, notes=[])


def _cap_hedge(qty, held, held_name, verb, instrument, symbol, price) -> tuple[Decimal, list[str]]:
    if qty <= held:
        return qty, []
    capped = qc.quantity_cap_to_position(qty=qty, long_size=held, qty_step=instrument.qty_step)
    if capped < instrument.min_order_qty or capped * price < instrument.min_notional:
        raise ValidationError(
            f"{verb} of {qty} {symbol} capped to the {held_name} position {held} gives {capped}, below the minimum "
            f"(min qty {instrument.min_order_qty}, min notional {instrument.min_notional} USDT)"
        )
    log.info("hedge_order_capped", verb=verb, requested_qty=str(qty), capped_qty=str(capped), position=str(held))
    return capped, [f"{verb} of {qty} capped to the {held_name} position: {capped} (hedge mode: a {verb} closes "
                    f"the {held_name} before it opens the other side; the remaining {qty - capped} is not sent)"]


def _apply_position_rules(side, qty, position, instrument, symbol, price) -> tuple[Decimal, bool, list[str]]:
    """Reduce-only flags and the short-selling rule (module docstring)."""
    notes: list[str] = []
    if side == Side.BUY:
        # A buy that only shrinks a short is sent reduce-only, like a sell against a long.
        return qty, position < 0 and qty <= -position, notes
    if position <= 0 and not settings.ALLOW_SHORT:
        raise ValidationError(
            f"sell of {qty} {symbol} rejected: no long position to reduce (position {position}) "
            f"and short selling is off (ALLOW_SHORT=false)", code=NO_POSITION,
        )
    if position <= 0:
        return qty, False, notes
    if qty <= position:
        return qty, True, notes
    if settings.ALLOW_SHORT:
        return qty, False, notes
    capped = qc.quantity_cap_to_position(qty=qty, long_size=position, qty_step=instrument.qty_step)
    if capped < instrument.min_order_qty or capped * price < instrument.min_notional:
        raise ValidationError(
            f"sell of {qty} {symbol} capped to the long position {position} gives {capped}, below the minimum "
            f"(min qty {instrument.min_order_qty}, min notional {instrument.min_notional} USDT)"
        )
    notes.append(f"sell of {qty} capped to the long position: {capped} (ALLOW_SHORT=false)")
    log.info("sell_capped_to_position", requested_qty=str(qty), capped_qty=str(capped), position=str(position))
    return capped, True, notes

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
the other: what is beyond the closed side is a second order that opens the other
side (docs/decisions/0318), sent when the rules allow it (``ALLOW_SHORT`` for a
short, the minimums, the risk limits on that row); otherwise it is not sent and
the reason says so. Either way the model gets what one-way mode would give.

Allocations (``SignalOrderRelationship``) and the number of split legs follow
the quantity actually sent: each order stands for the share of the signal's
amount that its quantity is of the quantity the amount asked for (all of it
when nothing was capped), and carries its role (close / open / flip).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from decimal import Decimal

import structlog
from django.conf import settings
from django.core.exceptions import ValidationError

from exchange import market_data
from ordermanager.core.formatting import money_text, price_text, qty_text
from orders.models import LegRole, Side
from orders.services import quantity_calculator as qc
from orders.services.fresh_position import position_fresh
from orders.services.order_type_selector import OrderTypeDecision, TypeRules, order_type_select
from orders.services.position_mode import HEDGE, position_mode_of
from orders.services.risk import RiskInput, book_state_read, order_reduces_position, risk_check, risk_check_halts
from orders.services.splitting import ALLOCATION_QUANTUM, legs_plan

log = structlog.get_logger(__name__)

# When the signal carries its own price and spread, the ticker only feeds the >5 % deviation warning: a
# ticker this old is good enough for that, and the signal does not wait for a ticker request.
TICKER_TTL_FOR_WARNING = 10.0
# ValidationError code of "no long position to reduce" (short selling off): the re-plan reads the exchange.
NO_POSITION = "no_position"


@dataclass(frozen=True)
class SignalOrderInput:
    """What the orders side needs of a signal: plain values, so ``orders`` never reads the inbox's models.

    signals_app builds it from its ``TradingSignal`` (``signal_processor``); the orders it becomes point at
    the inbox row by ``pk`` (``SignalOrderRelationship``, ``OrderHold``) and derive their orderLinkIds from
    ``signal_id``."""

    pk: int  # the inbox row's id
    signal_id: uuid.UUID
    side: str  # Side.BUY / Side.SELL
    symbol: str
    amount: Decimal
    confidence: Decimal | None
    urgency: bool
    snapshot_price: Decimal | None
    snapshot_spread: Decimal | None
    strategy_id: str
    trace_id: str


@dataclass(frozen=True)
class PlannedLeg:
    """One order of the plan: its quantity, the share of the signal's amount it stands for, and where it goes."""

    leg: int  # 0-based, unique in the signal; part of the orderLinkId
    qty: Decimal
    allocation_amount: Decimal
    reduce_only: bool
    position_idx: int
    role: str  # LegRole


@dataclass(frozen=True)
class OrderPlan:
    symbol: str
    side: str
    decision: OrderTypeDecision
    reference_price: Decimal
    qty: Decimal  # of the first part (the closing one in hedge mode when there are two)
    reduce_only: bool  # of the first part
    legs: list[PlannedLeg]  # every order, closing ones first
    notes: list[str]
    position_idx: int = 0  # of the first part
    # False when the symbol has no open order a new signal could cancel: the cancel step is skipped.
    cancel_candidates: bool = True
    # The instrument's steps, so the summary shows the qty and price as the exchange does (1.300, not 1.3E+0).
    qty_step: Decimal | None = None
    tick_size: Decimal | None = None
    # Where the position the plan decided on came from: "book" or "exchange" (docs/decisions/0316).
    position_source: str = "book"

    def summary(self) -> str:
        return " + ".join(self._part_summary(legs) for legs in _parts_of(self.legs))

    def _part_summary(self, legs: list[PlannedLeg]) -> str:
        first = legs[0]
        price = "" if self.decision.price is None else f" @ {price_text(self.decision.price, self.tick_size)}"
        count = f" in {len(legs)} legs" if len(legs) > 1 else ""
        ro = " reduce-only" if first.reduce_only else ""
        idx = f" (hedge positionIdx {first.position_idx})" if first.position_idx else ""
        qty = self.qty if first.leg == 0 else sum((leg.qty for leg in legs), Decimal(0))
        qty_shown = qty_text(qty, self.qty_step)
        return f"{self.decision.order_type} {self.side} {qty_shown} {self.symbol}{price}{ro}{idx}{count}"


def _parts_of(legs: list[PlannedLeg]) -> list[list[PlannedLeg]]:
    """Consecutive legs going to the same position row with the same flags: one part each."""
    parts: list[list[PlannedLeg]] = []
    for leg in legs:
        if parts and (parts[-1][0].position_idx, parts[-1][0].reduce_only) == (leg.position_idx, leg.reduce_only):
            parts[-1].append(leg)
        else:
            parts.append([leg])
    return parts


@dataclass(frozen=True)
class RowPlacement:
    """Where an order goes and how big it may be, after the position rules."""

    qty: Decimal
    reduce_only: bool
    position_idx: int  # 0 one-way; hedge: 1 long, 2 short
    row_size: Decimal  # signed size of that position row (hedge short negative), for the risk checks
    notes: list[str]
    role: str = LegRole.OPEN
    # Hedge mode: the order that opens the other side after this one closed it (docs/decisions/0318).
    then: RowPlacement | None = None


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


def order_plan(*, signal: SignalOrderInput, position_sizes: dict | None = None) -> OrderPlan:
    """Apply every rule to ``signal``; raises ``ValidationError`` (reject) or exchange errors (fail).

    ``position_sizes`` (the exchange's, read by the caller after a refusal) replaces the book's position.
    A position refusal carries ``position_source`` and ``plan_started`` (see signal_orders' re-plan)."""
    started = time.monotonic()
    category, symbol, side = settings.BYBIT_CATEGORY, signal.symbol, signal.side
    book = book_state_read(symbol=symbol, category=category)
    limits = book.limits
    risk_check_halts(limits=limits)
    instrument = _Rules.of(market_data.instrument_rules_read(category=category, symbol=symbol))
    amount = _n(signal.amount)
    if instrument.status != "Trading":
        raise ValidationError(f"{symbol} is not trading on the exchange (status {instrument.status})")
    complete = signal.snapshot_price is not None and signal.snapshot_spread is not None
    ticker = market_data.ticker_read(category=category, symbol=symbol,
                                     max_age=TICKER_TTL_FOR_WARNING if complete else None)
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
            available_balance=None if reducing else market_data.available_balance_read(),
            resting_qty=book.resting_after_cancels(side=side, order_type=decision.order_type),
        ),
        limits=limits,
    )
    placement = _opening_risk_checked(placement, side=side, symbol=symbol, price=order_price, book=book,
                                      limits=limits, order_type=decision.order_type)  # fmt: skip
    max_qty = instrument.max_order_qty
    if decision.order_type == "Market" and instrument.max_market_order_qty:
        max_qty = min(max_qty, instrument.max_market_order_qty)
    legs = _legs_for_parts(_parts(placement), amount=amount, requested_qty=quantity.qty, price=order_price,
                           instrument=instrument, max_qty=max_qty, symbol=symbol)  # fmt: skip
    notes = [*placement.notes, *(placement.then.notes if placement.then else [])]
    return OrderPlan(symbol=symbol, side=side, decision=decision, reference_price=reference.price, qty=qty,
                     reduce_only=reduce_only, legs=legs, notes=notes, position_idx=placement.position_idx,
                     cancel_candidates=book.has_cancel_candidates, qty_step=instrument.qty_step,
                     tick_size=instrument.tick_size, position_source=source)


def _parts(placement: RowPlacement) -> list[RowPlacement]:
    return [placement] if placement.then is None else [placement, placement.then]


def _opening_risk_checked(placement: RowPlacement, *, side, symbol, price, book, limits, order_type) -> RowPlacement:
    """The hedge opening order passes the risk limits on its own row, or is not sent.

    The closing order is checked by the caller like any order (it only reduces, so it passes). The opening
    one is checked as if the closed side were flat, which it is once the closing order has filled: its row
    after the order is the symbol's whole position. When a limit refuses it, the closing order still goes
    (cutting risk is always allowed) and the reason says what was not sent and why."""
    opening = placement.then
    if opening is None:
        return placement
    try:
        risk_check(
            order=RiskInput(symbol=symbol, side=side, qty=opening.qty, price=price, position_size=opening.row_size,
                            exposure_other=book.exposure_other, available_balance=market_data.available_balance_read(),
                            resting_qty=book.resting_after_cancels(side=side, order_type=order_type)),
            limits=limits,
        )  # fmt: skip
    except ValidationError as exc:
        why = f"opening the {_hedge_names(placement)[2]} is refused ({'; '.join(exc.messages)})"
        note = _cap_note(placement, opening.qty, why)
        log.info("hedge_opening_refused", qty=str(opening.qty), reason=note)
        return replace(placement, then=None, notes=[*placement.notes, note])
    return placement


def _legs_for_parts(parts: list[RowPlacement], *, amount, requested_qty, price, instrument, max_qty,
                    symbol) -> list[PlannedLeg]:  # fmt: skip
    """Split each part on its own, from the share of ``amount`` its quantity stands for.

    The amount asked for ``requested_qty``; what is sent may be less (capped to the position, or a hedge
    remainder not sent). Part i stands for amount × (qty sent up to i) / requested_qty minus the parts before
    it, so the shares add up to the amount exactly when everything is sent and nothing is rounded twice."""
    legs: list[PlannedLeg] = []
    sent = allocated = Decimal(0)
    for part in parts:
        sent += part.qty
        share = amount if sent >= requested_qty else (amount * sent / requested_qty).quantize(ALLOCATION_QUANTUM)
        part_amount, allocated = share - allocated, share
        for leg in legs_plan(
            amount=part_amount,
            qty=part.qty,
            price=price,
            qty_step=instrument.qty_step,
            min_order_qty=instrument.min_order_qty,
            min_notional=instrument.min_notional,
            max_order_qty=max_qty,
            max_single_order_size=settings.MAX_SINGLE_ORDER_SIZE,
            splitting_enabled=settings.ENABLE_ORDER_SPLITTING,
            symbol=symbol,
        ):
            legs.append(PlannedLeg(leg=len(legs), qty=leg.qty, allocation_amount=leg.allocation_amount,
                                   reduce_only=part.reduce_only, position_idx=part.position_idx, role=part.role))
    return legs


def _fresh_sizes(side, category, symbol, book_sizes) -> tuple[dict, str]:
    hedge = position_mode_of(category=category, symbol=symbol) == HEDGE
    return position_fresh(category=category, symbol=symbol, side=side, book_sizes=book_sizes, hedge=hedge)


def _spread(signal: SignalOrderInput, ticker) -> Decimal | None:
    if signal.snapshot_spread is not None:
        return _n(signal.snapshot_spread)
    if ticker and ticker.bid1_price and ticker.ask1_price and ticker.ask1_price >= ticker.bid1_price:
        return ticker.ask1_price - ticker.bid1_price
    return None


def _placement(side, qty, category, sizes, instrument, symbol, price) -> RowPlacement:
    if position_mode_of(category=category, symbol=symbol) == HEDGE:
        return _hedge_rules(side, qty, _n(sizes[1]), _n(sizes[2]), instrument, symbol, price)
    position = _n(sizes[0])
    qty, reduce_only, notes = _apply_position_rules(side, qty, position, instrument, symbol, price)
    return RowPlacement(qty=qty, reduce_only=reduce_only, position_idx=0, row_size=position, notes=notes,
                     role=_one_way_role(side, qty, position, reduce_only))  # fmt: skip


def _one_way_role(side, qty, position, reduce_only) -> str:
    if reduce_only:
        return LegRole.CLOSE
    after = position + (qty if side == Side.BUY else -qty)
    crosses = (position > 0 and after < 0) or (position < 0 and after > 0)
    return LegRole.FLIP if crosses else LegRole.OPEN


def _hedge_rules(side, qty, long, short, instrument, symbol, price) -> RowPlacement:
    """Hedge mode (module docstring): close the other side first; open a short only with ALLOW_SHORT."""
    if side == Side.BUY:
        if short > 0:
            capped = _capped_to_position(qty, short, verb="buy", held_name="short", instrument=instrument,
                                         symbol=symbol, price=price)  # fmt: skip
            closing = RowPlacement(qty=capped, reduce_only=True, position_idx=2, row_size=-short, notes=[],
                                role=LegRole.CLOSE)  # fmt: skip
            return _with_opening(closing, qty - capped, row_size=long, instrument=instrument, price=price)
        return RowPlacement(qty=qty, reduce_only=False, position_idx=1, row_size=long, notes=[])
    if long > 0:
        capped = _capped_to_position(qty, long, verb="sell", held_name="long", instrument=instrument, symbol=symbol,
                                     price=price)  # fmt: skip
        closing = RowPlacement(qty=capped, reduce_only=True, position_idx=1, row_size=long, notes=[],
                               role=LegRole.CLOSE)
        return _with_opening(closing, qty - capped, row_size=-short, instrument=instrument, price=price)
    if not settings.ALLOW_SHORT:
        raise ValidationError(
            f"sell of {qty} {symbol} rejected: no long position to reduce (hedge mode, long 0, short {short}) "
            f"and short selling is off (ALLOW_SHORT=false)", code=NO_POSITION,
        )
    return RowPlacement(qty=qty, reduce_only=False, position_idx=2, row_size=-short, notes=[])


def _hedge_names(closing: RowPlacement) -> tuple[str, str, str]:
    """(verb, the side it closes, the side it opens) of a hedge closing order."""
    return ("buy", "short", "long") if closing.position_idx == 2 else ("sell", "long", "short")


def _cap_note(closing: RowPlacement, remainder: Decimal, why: str) -> str:
    verb, held, _ = _hedge_names(closing)
    return (f"{verb} of {_n(closing.qty + remainder)} capped to the {held} position: {closing.qty} (hedge mode: "
            f"a {verb} closes the {held} before it opens the other side); the remaining {remainder} is not sent: {why}")


def _with_opening(closing: RowPlacement, remainder: Decimal, *, row_size, instrument, price) -> RowPlacement:
    """The order that opens the other side with what is beyond the closed one, when the rules allow it.

    A buy's remainder opens the long (positionIdx 1); a sell's opens the short (positionIdx 2), only with
    ALLOW_SHORT. A remainder below the instrument minimums cannot be an order. When it is not sent, the
    reason says why (the risk limits are checked later, by ``_opening_risk_checked``)."""
    if remainder <= 0:
        return closing
    verb, held, other = _hedge_names(closing)
    idx = 2 if other == "short" else 1
    if other == "short" and not settings.ALLOW_SHORT:
        why = "it would open a short and short selling is off (ALLOW_SHORT=false)"
    elif _below_minimums(remainder, price, instrument):
        why = (f"it is below the minimum (min qty {instrument.min_order_qty}, min notional "
               f"{instrument.min_notional} USDT)")  # fmt: skip
    else:
        note = (f"hedge mode: {verb} of {_n(closing.qty + remainder)} sent as two orders, {closing.qty} closing the "
                f"{held} (positionIdx {closing.position_idx}) and {remainder} opening the {other} "
                f"(positionIdx {idx})")  # fmt: skip
        opening = RowPlacement(qty=remainder, reduce_only=False, position_idx=idx, row_size=row_size, notes=[note])
        return replace(closing, then=opening)
    return replace(closing, notes=[*closing.notes, _cap_note(closing, remainder, why)])


def _below_minimums(qty: Decimal, price: Decimal, instrument: _Rules) -> bool:
    return qty < instrument.min_order_qty or qty * price < instrument.min_notional


# The log event of a capped order, by its verb (a one-way sell against a long; hedge: either side).
_CAPPED_EVENT = {"sell": "sell_capped_to_position", "buy": "buy_capped_to_position"}


def _capped_to_position(qty, held, *, verb, held_name, instrument, symbol, price) -> Decimal:
    """The one sell (or hedge buy) cap: an order that closes a position never asks for more than it holds.

    ``qty`` above ``held`` is floored to the qty step of ``held``; a cap below the instrument minimums cannot
    be an order and is refused. One-way mode caps a sell to the long (ALLOW_SHORT off); hedge mode caps the
    closing order of either side (module docstring)."""
    if qty <= held:
        return qty
    capped = qc.quantity_cap_to_position(qty=qty, long_size=held, qty_step=instrument.qty_step)
    step = instrument.qty_step
    if _below_minimums(capped, price, instrument):
        raise ValidationError(
            f"{verb} of {qty_text(qty, step)} {symbol} capped to the {held_name} position {qty_text(held, step)} "
            f"gives {qty_text(capped, step)}, below the minimum (min qty {qty_text(instrument.min_order_qty, step)}, "
            f"min notional {money_text(instrument.min_notional)} USDT)"
        )
    log.info(_CAPPED_EVENT[verb], requested_qty=qty, capped_qty=capped, position=held)
    return capped


def _apply_position_rules(side, qty, position, instrument, symbol, price) -> tuple[Decimal, bool, list[str]]:
    """Reduce-only flags and the short-selling rule (module docstring)."""
    notes: list[str] = []
    if side == Side.BUY:
        # A buy that only shrinks a short is sent reduce-only, like a sell against a long.
        return qty, position < 0 and qty <= -position, notes
    if position <= 0 and not settings.ALLOW_SHORT:
        step = instrument.qty_step
        raise ValidationError(
            f"sell of {qty_text(qty, step)} {symbol} rejected: no long position to reduce "
            f"(position {qty_text(position, step)}) and short selling is off (ALLOW_SHORT=false)", code=NO_POSITION,
        )
    if position <= 0:
        return qty, False, notes
    if qty <= position:
        return qty, True, notes
    if settings.ALLOW_SHORT:
        return qty, False, notes
    capped = _capped_to_position(qty, position, verb="sell", held_name="long", instrument=instrument, symbol=symbol,
                                 price=price)  # fmt: skip
    step = instrument.qty_step
    notes.append(f"sell of {qty_text(qty, step)} capped to the long position: {qty_text(capped, step)} "
                 "(ALLOW_SHORT=false)")
    return capped, True, notes

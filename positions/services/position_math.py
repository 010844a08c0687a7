"""Position arithmetic: one execution applied to one position state, exactly.

Pure functions on ``Decimal`` (no database), so the same fold serves live
ingest, replay after an out-of-order fill, repair, tests and the simulator
comparison. The SQL step check in ``orders.selectors.validation`` mirrors these rules;
change both together.

Conventions
- ``size`` is signed inside this module (> 0 long, < 0 short), also for hedge
  rows; the model stores hedge rows unsigned.
- Average entry: weighted on increase, unchanged on reduce, reset to the fill
  price on a flip (close, then open the rest), 0 when flat.
- ``realized_pnl`` is net: closed-trade PnL minus every fee minus funding paid
  (Bybit's cumRealisedPnl counts fees and funding the same way).
- Every stored value is rounded to the column scale (18 places, half away from
  zero, which is what PostgreSQL does on insert), so a state read back from the
  database continues the fold bit for bit.

Execution types (Bybit ``execType``) each follow a named rule; see
docs/decisions/0401-exec-type-rules.md.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import NamedTuple

ZERO = Decimal(0)
SCALE = Decimal("1e-18")  # ordermanager.core.fields.MONEY_PLACES
# Wide enough that no intermediate product or quotient is rounded by the
# context before the one explicit rounding to SCALE.
_CONTEXT = decimal.Context(prec=90, rounding=ROUND_HALF_UP)


class FillRule(StrEnum):
    TRADE = "trade"  # moves the position
    FORCED_TRADE = "forced_trade"  # moves the position like a trade, but the exchange did it: flagged
    FUNDING = "funding"  # realized PnL only; never size or entry
    RECORD_ONLY = "record_only"  # stored, no effect on the position


EXEC_TYPE_RULES: dict[str, FillRule] = {
    "Trade": FillRule.TRADE,
    "BlockTrade": FillRule.TRADE,
    "FutureSpread": FillRule.TRADE,
    # ADL and liquidation close real exposure; delivery closes an expiring
    # future at the delivery price; MovePosition moves exposure between accounts.
    "AdlTrade": FillRule.FORCED_TRADE,
    "BustTrade": FillRule.FORCED_TRADE,
    "Delivery": FillRule.FORCED_TRADE,
    "MovePosition": FillRule.FORCED_TRADE,
    "Funding": FillRule.FUNDING,
    # USDC session settlement moves unrealized PnL into realized at a settlement
    # price; our average-cost PnL already books that on the close, so it is kept
    # as a record only (it does not occur on USDT perpetuals).
    "Settle": FillRule.RECORD_ONLY,
    "CorporateAction": FillRule.RECORD_ONLY,
    "UNKNOWN": FillRule.RECORD_ONLY,
}
POSITION_MOVING_TYPES = tuple(t for t, r in EXEC_TYPE_RULES.items() if r in (FillRule.TRADE, FillRule.FORCED_TRADE))


def rule_for(exec_type: str) -> FillRule:
    """Unknown future exec types are recorded, never guessed into the position."""
    return EXEC_TYPE_RULES.get(exec_type, FillRule.RECORD_ONLY)


class Flag(StrEnum):
    NONE = ""
    FORCED = "forced"  # ADL / liquidation / delivery / move
    OVERCLOSE = "overclose"  # hedge side asked to close more than it holds (a fill is missing)
    RECORD_ONLY = "record_only"
    NO_SIDE = "no_side"  # a trade row without side: stored, cannot move the position


# Immutable records built two or three times per fill: tuples (a frozen dataclass sets each field through
# object.__setattr__, about 2.5 times the cost; docs/decisions/0332).
class PositionState(NamedTuple):
    size: Decimal = ZERO
    avg_entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    fees_paid: Decimal = ZERO
    funding_paid: Decimal = ZERO


class Step(NamedTuple):
    state: PositionState
    closed_qty: Decimal = ZERO
    closed_pnl: Decimal = ZERO  # gross PnL of the closed part, before fees
    flag: Flag = Flag.NONE


_QUANTIZE = _CONTEXT.quantize  # half up (the context's rounding); the method avoids keyword parsing per call


def q18(value: Decimal) -> Decimal:
    return _QUANTIZE(value, SCALE)


def direction_for(position_idx: int) -> int:
    """0 = one-way (may flip), +1 = hedge long row, -1 = hedge short row."""
    return {0: 0, 1: 1, 2: -1}[position_idx]


def apply_execution(
    state: PositionState, *, exec_type: str, side: str, qty: Decimal, price: Decimal, fee: Decimal, direction: int = 0
) -> Step:
    """The state after one execution. Inputs are rounded to the column scale first."""
    # Every product and sum exact (the default 28-digit context would round a
    # 3-digit size times an 18-place average before our one rounding).
    with decimal.localcontext(_CONTEXT):
        return _apply(state, exec_type, side, qty, price, fee, direction)


def apply_executions(state: PositionState, fills: Sequence, *, direction: int = 0) -> list[Step]:
    """``apply_execution`` over ``fills`` (objects with exec_type, side, qty, price, fee) in their order, each
    from the state the one before left: the steps, in order. One decimal context for all of them (entering it
    per fill was a sixth of a fill group's fold)."""
    steps = []
    with decimal.localcontext(_CONTEXT):
        for f in fills:
            step = _apply(state, f.exec_type, f.side, f.qty, f.price, f.fee, direction)
            steps.append(step)
            state = step.state
    return steps


def div18(numerator: Decimal, denominator: Decimal) -> Decimal:
    """numerator / denominator rounded once, half up, to the column scale."""
    return q18(_CONTEXT.divide(numerator, denominator))


def _apply(state: PositionState, exec_type: str, side: str, qty: Decimal, price: Decimal, fee: Decimal,
           direction: int) -> Step:  # fmt: skip
    qty, price, fee = q18(qty), q18(price), q18(fee)
    rule = rule_for(exec_type)
    if rule is FillRule.FUNDING:
        # Bybit: execFee > 0 means we paid funding, < 0 that we received it.
        return Step(
            PositionState(
                size=state.size,
                avg_entry_price=state.avg_entry_price,
                realized_pnl=state.realized_pnl - fee,
                fees_paid=state.fees_paid,
                funding_paid=state.funding_paid + fee,
            )
        )
    if rule is FillRule.RECORD_ONLY:
        return Step(state, flag=Flag.RECORD_ONLY)
    if side not in ("Buy", "Sell"):
        return Step(state, flag=Flag.NO_SIDE)
    signed = qty if side == "Buy" else -qty
    return _trade(state, signed, price, fee, direction, Flag.FORCED if rule is FillRule.FORCED_TRADE else Flag.NONE)


def _trade(state: PositionState, signed: Decimal, price: Decimal, fee: Decimal, direction: int, flag: Flag) -> Step:
    """The state after a trade of ``signed`` size at ``price`` that cost ``fee``, in one record per fill (each
    built once: the fold's cost is mostly building them); ``flag`` unless the trade over-closes a hedge row."""
    size, entry = state.size, state.avg_entry_price
    realized, fees = state.realized_pnl - fee, state.fees_paid + fee
    if signed == 0:
        return Step(PositionState(size, entry, realized, fees, state.funding_paid), ZERO, ZERO, flag)
    if _is_increase(size, signed, direction):
        new_size = size + signed
        entry = q18(_CONTEXT.divide(abs(size) * entry + abs(signed) * price, abs(new_size)))
        return Step(PositionState(new_size, entry, realized, fees, state.funding_paid), ZERO, ZERO, flag)
    closing = min(abs(signed), abs(size))
    pnl = q18(_CONTEXT.multiply(closing * (price - entry), _sign(size)))
    rest = abs(signed) - closing
    if rest == 0:
        new_size = size + signed
        new_entry = entry if new_size != 0 else ZERO
    elif direction == 0:  # one-way flip: close, then open the rest at the fill price
        new_size, new_entry = _sign(signed) * rest, price
    else:  # a hedge row cannot cross zero; the excess belongs to a fill we have not seen
        new_size, new_entry, flag = ZERO, ZERO, Flag.OVERCLOSE
    return Step(PositionState(new_size, new_entry, realized + pnl, fees, state.funding_paid), closing, pnl, flag)


def _is_increase(size: Decimal, signed: Decimal, direction: int) -> bool:
    if size == 0:
        return direction == 0 or _sign(signed) == direction
    return _sign(size) == _sign(signed)


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def unrealized_pnl(*, size: Decimal, avg_entry_price: Decimal, mark_price: Decimal | None) -> Decimal:
    """Signed size times the move from entry to mark (0 without a mark or when flat)."""
    if mark_price is None or size == 0:
        return ZERO
    with decimal.localcontext(_CONTEXT):
        return q18(size * (mark_price - avg_entry_price))


def fold(executions, *, direction: int = 0, start: PositionState | None = None) -> PositionState:
    """Apply executions (dicts or objects with exec_type/side/qty/price/fee) in the given order."""
    state = start or PositionState()
    for e in executions:
        get = e.get if isinstance(e, dict) else lambda k, _e=e: getattr(_e, k)
        state = apply_execution(
            state,
            exec_type=get("exec_type"),
            side=get("side"),
            qty=get("qty"),
            price=get("price"),
            fee=get("fee"),
            direction=direction,
        ).state
    return state

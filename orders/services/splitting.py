"""Split one signal's quantity into legs (design notes §4).

With ``ENABLE_ORDER_SPLITTING`` an amount above ``MAX_SINGLE_ORDER_SIZE``
becomes N = ceil(amount / MAX_SINGLE_ORDER_SIZE) legs (more if a leg would
still exceed the instrument's max order qty). Legs differ by at most one
``qtyStep``, so every leg is a valid quantity; each leg must also meet the
minimum qty and notional, otherwise the signal is rejected (we never
silently trade less than asked). Each leg carries the share of the signal's
amount it stands for (``SignalOrderRelationship.allocation_amount``); the
shares add up to the amount exactly.

Without splitting, an amount above ``MAX_SINGLE_ORDER_SIZE`` or a quantity
above the max order qty is rejected with the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from django.core.exceptions import ValidationError

MAX_LEGS = 100
ALLOCATION_QUANTUM = Decimal("0.00000001")


@dataclass(frozen=True)
class Leg:
    leg: int  # 0-based; part of the orderLinkId
    qty: Decimal
    allocation_amount: Decimal


def _ceil_div(a: Decimal, b: Decimal) -> int:
    return int((a / b).to_integral_value(rounding=ROUND_CEILING))


def legs_plan(
    *,
    amount: Decimal,
    qty: Decimal,
    price: Decimal,
    qty_step: Decimal,
    min_order_qty: Decimal,
    min_notional: Decimal,
    max_order_qty: Decimal,
    max_single_order_size: Decimal,
    splitting_enabled: bool,
    symbol: str,
) -> list[Leg]:
    """Plan the legs for ``qty`` (already floored to the step) bought or sold for ``amount`` USDT."""
    legs_for_amount = _ceil_div(amount, max_single_order_size)
    legs_for_qty = _ceil_div(qty, max_order_qty)
    if not splitting_enabled:
        if legs_for_amount > 1:
            raise ValidationError(
                f"amount {amount} USDT is above MAX_SINGLE_ORDER_SIZE {max_single_order_size} USDT "
                f"and order splitting is off (ENABLE_ORDER_SPLITTING=false)"
            )
        if legs_for_qty > 1:
            raise ValidationError(
                f"qty {qty} is above the max order qty {max_order_qty} for {symbol} "
                f"and order splitting is off (ENABLE_ORDER_SPLITTING=false)"
            )
        return [Leg(leg=0, qty=qty, allocation_amount=amount)]
    count = max(legs_for_amount, legs_for_qty, 1)
    if count > MAX_LEGS:
        raise ValidationError(
            f"splitting {amount} USDT of {symbol} needs {count} legs, more than the {MAX_LEGS} allowed"
        )
    quantities = _near_equal(qty, count, qty_step)
    smallest = quantities[-1]
    if smallest < min_order_qty or smallest * price < min_notional:
        raise ValidationError(
            f"splitting qty {qty} of {symbol} into {count} legs gives legs of {smallest}, below the minimum "
            f"(min qty {min_order_qty}, min notional {min_notional} USDT at price {price})"
        )
    return _with_allocations(quantities, qty, amount)


def _near_equal(qty: Decimal, count: int, step: Decimal) -> list[Decimal]:
    steps = int((qty / step).to_integral_value())
    base, extra = divmod(steps, count)
    # The first `extra` legs take one step more: legs differ by at most one step.
    return [step * (base + (1 if i < extra else 0)) for i in range(count)]


def _with_allocations(quantities: list[Decimal], qty: Decimal, amount: Decimal) -> list[Leg]:
    legs, allocated = [], Decimal(0)
    for index, leg_qty in enumerate(quantities):
        if index == len(quantities) - 1:
            share = amount - allocated  # the last leg absorbs rounding: shares add up to the amount
        else:
            share = (amount * leg_qty / qty).quantize(ALLOCATION_QUANTUM)
        allocated += share
        legs.append(Leg(leg=index, qty=leg_qty, allocation_amount=share))
    return legs

"""Order quantity from a quote amount (design notes §3).

qty = amount / reference price, floored to ``qtyStep`` (never more than the
signal asked for), then checked against ``minOrderQty`` and the minimum
notional. Rejections carry every number a person needs to see why.

The reference price is the signal's market snapshot; when it is missing the
exchange ticker stands in. When both are known and differ by more than
``PRICE_DEVIATION_WARN_PCT`` percent a warning is logged: the model decided
on a price the market has left.

Pure apart from logging: no database, no exchange.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

import structlog
from django.core.exceptions import ValidationError

log = structlog.get_logger(__name__)

PRICE_DEVIATION_WARN_PCT = Decimal(5)


@dataclass(frozen=True)
class ReferencePrice:
    price: Decimal
    source: str  # "snapshot" | "ticker"
    deviation_pct: Decimal | None  # |snapshot - ticker| / ticker × 100 when both are known


@dataclass(frozen=True)
class QuantityDecision:
    qty: Decimal
    raw_qty: Decimal
    notional: Decimal  # qty × order price


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_FLOOR) * step


def reference_price_select(*, snapshot_price: Decimal | None, ticker_price: Decimal | None) -> ReferencePrice:
    """The price the quantity is computed at; raises when neither is usable."""
    deviation = None
    if snapshot_price is not None and ticker_price:
        deviation = abs(snapshot_price - ticker_price) / ticker_price * 100
        if deviation > PRICE_DEVIATION_WARN_PCT:
            log.warning(
                "snapshot_price_deviates",
                snapshot_price=str(snapshot_price),
                ticker_price=str(ticker_price),
                deviation_pct=f"{deviation:.2f}",
                threshold_pct=str(PRICE_DEVIATION_WARN_PCT),
            )
    if snapshot_price is not None:
        return ReferencePrice(price=snapshot_price, source="snapshot", deviation_pct=deviation)
    if ticker_price is not None and ticker_price > 0:
        return ReferencePrice(price=ticker_price, source="ticker", deviation_pct=None)
    raise ValidationError("no price: the signal has no market_data_snapshot.price and the exchange ticker has none")


def quantity_calculate(
    *,
    amount: Decimal,
    reference_price: Decimal,
    order_price: Decimal,
    qty_step: Decimal,
    min_order_qty: Decimal,
    min_notional: Decimal,
    symbol: str,
) -> QuantityDecision:
    """Floor ``amount / reference_price`` to the step and check the instrument minimums."""
    raw_qty = amount / reference_price
    qty = floor_to_step(raw_qty, qty_step)
    notional = qty * order_price
    log.info(
        "quantity_calculated",
        amount=str(amount),
        reference_price=str(reference_price),
        raw_qty=f"{raw_qty:.12f}",
        qty=str(qty),
        qty_step=str(qty_step),
    )
    if qty <= 0 or qty < min_order_qty:
        raise ValidationError(
            f"quantity too small for {symbol}: amount {amount} / price {reference_price} = {raw_qty:.8f}, "
            f"floored to step {qty_step} → {qty}, below the minimum order qty {min_order_qty}"
        )
    if notional < min_notional:
        raise ValidationError(
            f"order value too small for {symbol}: qty {qty} × price {order_price} = {notional} USDT, "
            f"below the minimum notional {min_notional} USDT"
        )
    return QuantityDecision(qty=qty, raw_qty=raw_qty, notional=notional)


def quantity_cap_to_position(*, qty: Decimal, long_size: Decimal, qty_step: Decimal) -> Decimal:
    """A reduce-only sell never asks for more than the long it reduces."""
    return min(qty, floor_to_step(long_size, qty_step))

"""Order type and limit price for a signal (design notes §2).

Market when the model is confident (confidence strictly above
``MARKET_ORDER_CONFIDENCE_THRESHOLD``), when it asks for urgency, or when the
book is tight (spread / price × 100 strictly below
``MARKET_ORDER_SPREAD_THRESHOLD`` percent): paying the spread costs little
then. Otherwise a PostOnly limit inside the spread: price ∓ spread ×
``LIMIT_ORDER_PRICE_OFFSET_RATIO`` (buy below, sell above), rounded to the tick
in the safe direction (a buy never above, a sell never below the computed
price). PostOnly rests until filled or cancelled (GTC semantics); market
orders are IOC, as Bybit executes them.

Pure: no database, no exchange. The caller supplies prices and settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError

from orders.models import OrderType, TimeInForce

HUNDRED = Decimal(100)


@dataclass(frozen=True)
class TypeRules:
    confidence_threshold: Decimal
    spread_threshold_pct: Decimal
    limit_offset_ratio: Decimal

    @classmethod
    def from_settings(cls) -> TypeRules:
        return cls(
            confidence_threshold=settings.MARKET_ORDER_CONFIDENCE_THRESHOLD,
            spread_threshold_pct=settings.MARKET_ORDER_SPREAD_THRESHOLD,
            limit_offset_ratio=settings.LIMIT_ORDER_PRICE_OFFSET_RATIO,
        )


@dataclass(frozen=True)
class OrderTypeDecision:
    order_type: str  # OrderType
    time_in_force: str  # TimeInForce
    post_only: bool
    price: Decimal | None  # None for market orders
    why: str  # a sentence for logs and the signal's reason


def round_to_tick(price: Decimal, *, tick: Decimal, side: str) -> Decimal:
    """Snap ``price`` to a multiple of ``tick``: down for a buy, up for a sell (never worse for us)."""
    rounding = ROUND_FLOOR if side == "Buy" else ROUND_CEILING
    return (price / tick).to_integral_value(rounding=rounding) * tick


def order_type_select(
    *,
    side: str,
    confidence: Decimal,
    urgency: bool,
    price: Decimal,
    spread: Decimal | None,
    tick_size: Decimal,
    rules: TypeRules,
) -> OrderTypeDecision:
    """Choose market or limit. ``spread`` None means unknown: the tight-book rule cannot fire
    and the limit sits at the price itself."""
    if confidence > rules.confidence_threshold:
        return _market(f"confidence {confidence} > threshold {rules.confidence_threshold}")
    if urgency:
        return _market("metadata.urgency requested immediate execution")
    spread_pct = None if spread is None else spread / price * HUNDRED
    if spread_pct is not None and spread_pct < rules.spread_threshold_pct:
        return _market(f"spread {spread_pct.normalize():f}% < threshold {rules.spread_threshold_pct}%")
    offset = (spread or Decimal(0)) * rules.limit_offset_ratio
    raw = price - offset if side == "Buy" else price + offset
    limit = round_to_tick(raw, tick=tick_size, side=side)
    if limit <= 0:
        raise ValidationError(
            f"limit price {raw} rounds to {limit} at tick {tick_size}: no valid buy price below the market"
        )
    return OrderTypeDecision(
        order_type=OrderType.LIMIT,
        time_in_force=TimeInForce.POST_ONLY,
        post_only=True,
        price=limit,
        why=f"limit PostOnly at {limit} (price {price} {'-' if side == 'Buy' else '+'} offset {offset})",
    )


def _market(why: str) -> OrderTypeDecision:
    return OrderTypeDecision(
        order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC, post_only=False, price=None, why=f"market: {why}"
    )

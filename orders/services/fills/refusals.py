"""What the fill path refuses to store: a message is checked whole before anything of it is stored.

A trade without a side, or an id or text longer than its column, refuses the message with
``FillRefused`` naming the item and the field. Nothing is ever cut to fit: the array cast of the
batched insert would silently truncate, and two long execIds sharing a prefix would then collide
(docs/decisions/0416-fills-complete-or-refused.md).
"""

from __future__ import annotations

import functools

from exchange.bybit.events import PrivateMessage
from exchange.bybit.types import ExecutionInfo, OrderInfo
from orders.models import Execution, Order
from positions.services.position_math import FillRule, rule_for


class FillRefused(ValueError):
    """An item the fill path will not store as it is; ``str()`` names the item and the field."""


# Bybit's name for each text column an item writes, for a refusal a person can act on.
_EXECUTION_TEXT = {"exec_id": "execId", "exchange_order_id": "orderId", "order_link_id": "orderLinkId",
                   "category": "category", "symbol": "symbol", "side": "side", "exec_type": "execType",
                   "fee_currency": "feeCurrency"}  # fmt: skip
_INFO_ATTR = {"exchange_order_id": "order_id"}  # ExecutionInfo attribute where it differs from the column
_ORDER_TEXT = {"order_id": "orderId", "order_link_id": "orderLinkId", "category": "category", "symbol": "symbol"}


def _column_limits(model, names: dict[str, str]) -> tuple[tuple[str, str, str, int], ...]:
    """(column attname, item attribute, Bybit's name, max length) of each text column."""
    return tuple((attname, _INFO_ATTR.get(attname, attname), bybit, model._meta.get_field(attname).max_length)
                 for attname, bybit in names.items())  # fmt: skip


# Read from the models once per process (models do not change at run time; a migration that widens a column
# still widens the check): every message is checked twice (consumer, apply), so this runs per item.
@functools.cache
def _execution_limits() -> tuple[tuple[str, str, str, int], ...]:
    return _column_limits(Execution, _EXECUTION_TEXT)


@functools.cache
def _order_limits() -> tuple[tuple[str, str, str, int], ...]:
    return _column_limits(Order, _ORDER_TEXT)


def execution_refusal(info: ExecutionInfo) -> str | None:
    """Why this execution cannot be stored as it is, or None. Quantity, price and time are
    required by the parser already; here: the side of anything that moves a position, and
    every text fitting its column."""
    rule = rule_for(info.exec_type)
    if rule in (FillRule.TRADE, FillRule.FORCED_TRADE) and info.side not in ("Buy", "Sell"):
        what = "is missing" if not info.side else f"is {info.side!r}, not Buy or Sell"
        return f"side {what}: a {info.exec_type} execution needs it to move the position"
    for _, attr, bybit, limit in _execution_limits():
        value = getattr(info, attr)
        if len(value) > limit:
            return f"{bybit} is {len(value)} characters, longer than the {limit} we can store ({clipped(value)})"
    return None


def order_refusal(info: OrderInfo) -> str | None:
    for _, attr, bybit, limit in _order_limits():
        value = getattr(info, attr)
        if len(value) > limit:
            return f"{bybit} is {len(value)} characters, longer than the {limit} we can store ({clipped(value)})"
    return None


def clipped(value: str) -> str:
    """``value`` quoted for a message, cut to 80 characters (an id may be arbitrarily long)."""
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def _item_key(info: ExecutionInfo | OrderInfo) -> str:
    if isinstance(info, ExecutionInfo):
        return f"execId {clipped(info.exec_id)}"
    return f"orderId {clipped(info.order_id)}"


def message_check(message: PrivateMessage) -> None:
    """Refuse the whole message (``FillRefused``) if any item cannot be stored as it is."""
    for index, info in enumerate(message.items):
        if isinstance(info, ExecutionInfo):
            why = execution_refusal(info)
        elif isinstance(info, OrderInfo):
            why = order_refusal(info)
        else:
            continue
        if why is not None:
            # The item's key is written only for a refusal (an accepted item costs no repr).
            key = _item_key(info)
            raise FillRefused(f"{message.topic} message: data[{index}] ({key}): {why}; nothing of the message applied")

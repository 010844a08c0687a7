"""Orders the exchange knows and we did not place (manual, liquidation, ADL), recorded on first sight."""

from __future__ import annotations

import hashlib

import structlog
from django.db import IntegrityError, transaction

from exchange.bybit.types import OrderInfo
from orders.models import Order, OrderStatus, OrderType, TimeInForce
from orders.services.fills.order_state import order_locked, order_note_final, order_set_fills, status_of

log = structlog.get_logger(__name__)


def external_order_create(info: OrderInfo) -> Order | None:
    """Record an exchange order we have no row for; None when the event cannot make one (no
    quantity, side or orderId). Another process recording it first wins: its row is returned."""
    qty = max(info.qty, info.cum_exec_qty)
    if qty <= 0 or info.side not in ("Buy", "Sell") or not info.order_id:
        log.warning("order_event_unusable", order_id=info.order_id, order_link_id=info.order_link_id)
        return None
    is_limit = info.order_type == OrderType.LIMIT and info.price is not None
    status = status_of(info) or OrderStatus.NEW
    order = Order(
        order_link_id=info.order_link_id or "ext-" + hashlib.sha1(info.order_id.encode()).hexdigest()[:32],
        order_id=info.order_id,
        category=info.category,
        symbol=info.symbol,
        side=info.side,
        order_type=OrderType.LIMIT if is_limit else OrderType.MARKET,
        time_in_force=info.time_in_force if info.time_in_force in TimeInForce.values else TimeInForce.GTC,
        qty=qty,
        price=info.price if is_limit else None,
        position_idx=info.position_idx if info.position_idx in (0, 1, 2) else 0,
        reduce_only=info.reduce_only,
        status=status,
        is_external=True,
        exchange_updated_ms=info.updated_ms,
    )
    if info.cum_exec_qty > 0:
        order_set_fills(
            order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price
        )
    order_note_final(order, info)
    try:
        with transaction.atomic():
            order.save(force_insert=True)
    except IntegrityError:  # another process recorded it first
        return order_locked(order_link_id=order.order_link_id, order_id=info.order_id)
    log.info("order_external_recorded", order_id=info.order_id, symbol=info.symbol, status=status)
    return order

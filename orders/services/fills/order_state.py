"""An order's state as the exchange reports it: status only moves forward, fill totals only grow.

A late ``New`` after ``Filled`` changes nothing (``STATUS_RANK``); ``Cancelled`` with a non-zero
filled quantity is a normal final state and keeps its fills and fees. Every status change
publishes ``order.updated`` after commit. Callers hold the order row locked (``order_locked``,
``orders_locked``) inside their transaction.
"""

from __future__ import annotations

import functools
from decimal import Decimal

import structlog
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from exchange.bybit.types import ExecutionInfo, OrderInfo
from ordermanager.core.pg_arrays import pg_array_literals
from ordermanager.events import ORDER_UPDATED, publish_event_on_commit
from orders.exchange_status import order_status_of
from orders.models import STATUS_RANK, CancelReason, Execution, Order, OrderStatus
from positions.services.position_math import div18

log = structlog.get_logger(__name__)



def order_locked(*, order_link_id: str, order_id: str) -> Order | None:
    # Our orderLinkId is the better key: the row exists (pending_submit) before
    # the exchange has assigned an orderId.
    if order_link_id:
        order = Order.objects.select_for_update().filter(order_link_id=order_link_id).first()
        if order is not None:
            return order
    if order_id:
        return Order.objects.select_for_update().filter(order_id=order_id).order_by("pk").first()
    return None


def orders_locked(infos: list[ExecutionInfo]) -> dict[tuple[str, str], Order | None]:
    """``order_locked`` for every (orderLinkId, orderId) of a message, in at most two queries.

    Rows are locked in primary-key order, so two messages touching the same orders never
    wait on each other crosswise.
    """
    links = sorted({i.order_link_id for i in infos if i.order_link_id})
    by_link: dict[str, Order] = {}
    if links:
        locked = Order.objects.select_for_update().filter(order_link_id__in=links).order_by("pk")
        by_link = {o.order_link_id: o for o in locked}
    ids = sorted({i.order_id for i in infos if i.order_id and i.order_link_id not in by_link})
    by_id: dict[str, Order] = {}
    if ids:
        for o in Order.objects.select_for_update().filter(order_id__in=ids).order_by("pk"):
            by_id.setdefault(o.order_id, o)
    # One object per row, however it was found, so its totals are refreshed once.
    rows = {o.pk: o for o in by_link.values()}
    found: dict[tuple[str, str], Order | None] = {}
    for info in infos:
        order = by_link.get(info.order_link_id) if info.order_link_id else None
        if order is None and info.order_id in by_id:
            order = rows.setdefault(by_id[info.order_id].pk, by_id[info.order_id])
        found[(info.order_link_id, info.order_id)] = order
    return found


def orders_refresh_fills(orders: list[Order]) -> None:
    """Fill totals from each order's executions (one grouped query), unless an order event
    already reported more.

    Executions give exact per-fill fees; an order event's cumExecQty can run ahead
    of them when execution messages were dropped (the backfill catches up later).
    """
    if not orders:
        return
    rows = (
        Execution.objects.filter(order__in=[o.pk for o in orders])
        .order_by()
        .values("order")
        .annotate(qty=Sum("exec_qty"), value=Sum("exec_value"), fees=Sum("exec_fee"))
    )
    totals = {r["order"]: r for r in rows}
    changed: list[tuple[Order, str]] = []
    for order in sorted(orders, key=lambda o: o.pk):
        row = totals.get(order.pk) or {}
        qty = row.get("qty") or Decimal(0)
        if qty < order.filled_qty:
            log.info("order_fills_behind_event", order_link_id=order.order_link_id, executions=qty)
            continue
        before = order.status
        order_set_fills(
            order, qty=qty, value=row.get("value") or Decimal(0), fees=row.get("fees") or Decimal(0), avg=None
        )
        _advance_from_fills(order)
        changed.append((order, before))
    _orders_save_fills([order for order, _ in changed])
    for order, before in changed:
        _order_event(order, before)


_FILL_FIELDS = ["qty", "filled_qty", "cum_exec_value", "fees", "avg_fill_price", "status", "updated_at"]


def _orders_save_fills(orders: list[Order]) -> None:
    """Save the fill fields of ``orders`` (locked by the caller): one UPDATE for all of them on PostgreSQL,
    however many a group of messages touched (docs/decisions/0419); one per order elsewhere."""
    if not orders:
        return
    now = timezone.now()
    for order in orders:
        order.updated_at = now
    if connection.vendor != "postgresql":
        for order in orders:
            order.save(update_fields=_FILL_FIELDS)
        return
    fields = [Order._meta.pk] + [Order._meta.get_field(name) for name in _FILL_FIELDS]
    with connection.cursor() as cursor:
        cursor.execute(_fills_update_sql(), pg_array_literals(fields, orders))


@functools.cache
def _fills_update_sql() -> str:
    # One array per column, unnested server side: the statement text is the same for any number of orders.
    qn = connection.ops.quote_name
    fields = [Order._meta.pk] + [Order._meta.get_field(name) for name in _FILL_FIELDS]
    arrays = ", ".join(f"%s::{f.db_type(connection).replace('serial', 'int')}[]" for f in fields)
    columns = ", ".join(qn(f.column) for f in fields)
    sets = ", ".join(f"{qn(f.column)} = v.{qn(f.column)}" for f in fields[1:])
    pk = qn(Order._meta.pk.column)
    return (f"UPDATE {qn(Order._meta.db_table)} AS o SET {sets} FROM unnest({arrays}) AS v({columns}) "
            f"WHERE o.{pk} = v.{pk}")


def order_set_fills(order: Order, *, qty: Decimal, value: Decimal, fees: Decimal, avg: Decimal | None) -> None:
    """Set the fill totals (not saved); the average from value/qty when the exchange gave none."""
    if qty > order.qty:
        # The exchange filled more than we asked for: the order was amended
        # elsewhere. Keep the fills (they happened) and say so loudly.
        log.error("order_overfilled", order_link_id=order.order_link_id, qty=order.qty, filled=qty)
        order.qty = qty
    order.filled_qty = qty
    order.cum_exec_value = value
    order.fees = fees
    order.avg_fill_price = avg if avg else (div18(value, qty) if qty > 0 else None)


def _advance(order: Order, status: str) -> bool:
    if STATUS_RANK[status] > STATUS_RANK[order.status]:
        order.status = status
        return True
    return False


def _advance_from_fills(order: Order) -> None:
    if order.filled_qty >= order.qty:
        _advance(order, OrderStatus.FILLED)
    elif order.filled_qty > 0:
        _advance(order, OrderStatus.PARTIALLY_FILLED)


def order_merge(order: Order, info: OrderInfo) -> bool:
    """Apply an order event to the (locked) row and save it; True if anything changed."""
    before = (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms)
    status_before = order.status
    if not order.order_id and info.order_id:
        order.order_id = info.order_id
    if info.cum_exec_qty > order.filled_qty:
        order_set_fills(
            order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price
        )
    status = status_of(info)
    if status is not None and _advance(order, status):
        order_note_final(order, info)
    _advance_from_fills(order)
    # updatedTime is recorded, not used to overrule: status rank and monotonic
    # cumExecQty already make a stale event harmless.
    order.exchange_updated_ms = max(order.exchange_updated_ms, info.updated_ms)
    if (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms) == before:
        return False
    order.save()
    _order_event(order, status_before)
    return True


def status_of(info: OrderInfo) -> str | None:
    """Our status for the event's (``orders.exchange_status``); an unknown one is logged and ignored."""
    status = order_status_of(info)
    if status is None:
        log.warning("order_status_unknown", order_status=info.order_status, order_id=info.order_id)
    return status


def order_note_final(order: Order, info: OrderInfo) -> None:
    """Why a rejected or cancelled order ended, unless it already says."""
    if order.status == OrderStatus.REJECTED:
        order.reject_reason = order.reject_reason or info.reject_reason
    elif order.status == OrderStatus.CANCELLED and not order.cancel_reason:
        order.cancel_reason = CancelReason.EXCHANGE
        order.cancel_note = order.cancel_note or f"{info.cancel_type or 'cancelled'} {info.reject_reason}".strip()


def _order_event(order: Order, status_before: str) -> None:
    if order.status == status_before:
        return
    publish_event_on_commit(
        routing_key=ORDER_UPDATED,
        payload={
            "order_link_id": order.order_link_id,
            "order_id": order.order_id,
            "symbol": order.symbol,
            "status": order.status,
            "previous_status": status_before,
            "filled_qty": order.filled_qty,
            "avg_fill_price": order.avg_fill_price,
            "fees": order.fees,
            "trace_id": order.trace_id,
        },
    )

"""Fill ingest: private-stream messages (or REST backfill rows) → Execution, Order, Position.

Rules (ARCHITECTURE properties 2, 7, 8):
- One ``Execution`` per execId. The insert relies on the unique constraint
  (``ON CONFLICT DO NOTHING``), never on a check followed by an insert, so two
  processes racing on the same execId apply it once.
- Order status only moves forward (``STATUS_RANK``); fill quantities only grow.
  A late ``New`` after ``Filled`` changes nothing; ``Cancelled`` with a non-zero
  filled quantity is a normal final state and keeps its fills and fees.
- A fill whose order we do not know yet is stored (``order`` NULL) and linked
  when the order shows up; only then does it move the position, because only
  the order names the position side (validation reports such rows as unapplied).
- One transaction per message; the order row and the position row are locked.
  Items are applied in a fixed (symbol, time) order so concurrent writers take
  locks in the same order.
- Non-trade execution types follow ``positions.services.position_math.EXEC_TYPE_RULES``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import structlog
from django.db import IntegrityError, connection, transaction
from django.db.models import Q, Sum

from exchange.bybit.events import TOPIC_EXECUTION, TOPIC_ORDER, TOPIC_POSITION, PrivateMessage
from exchange.bybit.types import ExecutionInfo, OrderInfo, PositionInfo
from ordermanager.events import publish_event_on_commit
from orders.models import STATUS_RANK, CancelReason, Execution, Order, OrderStatus, OrderType, TimeInForce
from positions.models import PositionLedgerEntry
from positions.selectors import position_symbol_is_hedge
from positions.services.position_manager import position_apply_fill, position_observe
from positions.services.position_math import FillRule, div18, rule_for

log = structlog.get_logger(__name__)

ORDER_UPDATED = "order.updated"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Bybit orderStatus → ours. Untriggered/Triggered conditional orders are working
# orders (New); spot's PartiallyFilledCanceled and Deactivated are cancellations.
BYBIT_STATUS = {
    "New": OrderStatus.NEW,
    "Untriggered": OrderStatus.NEW,
    "Triggered": OrderStatus.NEW,
    "PartiallyFilled": OrderStatus.PARTIALLY_FILLED,
    "Filled": OrderStatus.FILLED,
    "Cancelled": OrderStatus.CANCELLED,
    "PartiallyFilledCanceled": OrderStatus.CANCELLED,
    "Deactivated": OrderStatus.CANCELLED,
    "Rejected": OrderStatus.REJECTED,
}
POST_ONLY_REJECT = "EC_PostOnlyWillTakeLiquidity"


@dataclass
class MessageOutcome:
    topic: str
    applied: int = 0
    ignored: int = 0  # duplicates, stale updates, wallet snapshots
    deferred: list[str] = field(default_factory=list)  # exec ids waiting for their order


def private_message_apply(*, message: PrivateMessage, source: str = "ws") -> MessageOutcome:
    """Apply one private-stream message in one transaction."""
    outcome = MessageOutcome(topic=message.topic)
    with transaction.atomic():
        if message.topic == TOPIC_EXECUTION:
            _executions_apply(message.items, source=source, outcome=outcome)
        elif message.topic == TOPIC_ORDER:
            for info in sorted(message.items, key=lambda i: (i.symbol, i.updated_ms, i.order_id)):
                _count(outcome, _order_update(info))
        elif message.topic == TOPIC_POSITION:
            for info in sorted(message.items, key=lambda i: (i.symbol, i.position_idx)):
                _position_observe(info)
                outcome.applied += 1
        else:
            # Balances are read from the exchange when needed (risk checks); the
            # stream copy is not stored.
            outcome.ignored += len(message.items)
    return outcome


def execution_apply(*, execution: ExecutionInfo, source: str = "ws") -> bool:
    """Store and apply one execution; False when its execId was already applied."""
    outcome = MessageOutcome(topic=TOPIC_EXECUTION)
    with transaction.atomic():
        _executions_apply([execution], source=source, outcome=outcome)
    return outcome.applied == 1


def order_update_apply(*, info: OrderInfo, source: str = "ws") -> bool:
    """Apply one order-topic item (status forward only, fill totals only up). True if anything changed."""
    with transaction.atomic():
        return _order_update(info)


# --- executions ----------------------------------------------------------------------


def _executions_apply(infos: list[ExecutionInfo], *, source: str, outcome: MessageOutcome) -> None:
    touched: dict[int, Order] = {}
    orders: dict[tuple[str, str], Order | None] = {}  # one locked lookup per order per message
    for info in sorted(infos, key=lambda i: (i.category, i.symbol, i.exec_time_ms, i.seq or 0, i.exec_id)):
        key = (info.order_link_id, info.order_id)
        if key not in orders:
            orders[key] = _order_locked(order_link_id=info.order_link_id, order_id=info.order_id)
        order = orders[key]
        position_idx = _position_idx_for(info, order)
        execution = _execution_row(info, order=order, position_idx=position_idx, source=source)
        if not _insert_once(execution):
            outcome.ignored += 1
            continue
        outcome.applied += 1
        if position_idx is None:
            outcome.deferred.append(info.exec_id)
            log.warning("execution_waiting_for_order", exec_id=info.exec_id, order_id=info.order_id, symbol=info.symbol)
        else:
            _apply_to_position(execution)
        if order is not None:
            touched[order.pk] = order
    for order in touched.values():
        _order_refresh_fills(order)


def _position_idx_for(info: ExecutionInfo, order: Order | None) -> int | None:
    """Which position row an execution moves; None = wait for its order to say.

    Bybit's execution rows carry no positionIdx. Our own orders are always known
    (the row is committed before the request). A fill of an order we have not
    seen (placed elsewhere, liquidation) waits for that order's event, because
    only the order tells the hedge side, and the account's mode cannot be
    trusted from what happens to be stored (docs/decisions/0405-fills-before-orders.md).
    """
    if order is not None:
        return order.position_idx
    if info.position_idx is not None:
        return info.position_idx
    if rule_for(info.exec_type) is FillRule.FUNDING:
        # Funding rows have no order; Bybit (and the simulator) give the position's side.
        hedge = position_symbol_is_hedge(category=info.category, symbol=info.symbol)
        return (1 if info.side == "Buy" else 2) if hedge else 0
    if rule_for(info.exec_type) is FillRule.RECORD_ONLY:
        return 0  # no position effect either way; the ledger records it on the one-way row
    return None


def _execution_row(info: ExecutionInfo, *, order: Order | None, position_idx: int | None, source: str) -> Execution:
    value = info.exec_value if info.exec_value else info.exec_qty * info.exec_price
    return Execution(
        exec_id=info.exec_id,
        order=order,
        exchange_order_id=info.order_id,
        order_link_id=info.order_link_id,
        category=info.category,
        symbol=info.symbol,
        side=info.side if info.side in ("Buy", "Sell") else "",
        exec_type=info.exec_type,
        exec_qty=info.exec_qty,
        exec_price=info.exec_price,
        exec_value=value,
        exec_fee=info.exec_fee,
        fee_currency=info.fee_currency,
        is_maker=info.is_maker,
        closed_size=info.closed_size,
        position_idx=position_idx or 0,
        exec_time=_EPOCH + timedelta(milliseconds=info.exec_time_ms),
        seq=info.seq,
        source=source,
    )


def _insert_once(execution: Execution) -> bool:
    """INSERT … ON CONFLICT (exec_id) DO NOTHING: the unique key decides, in one round trip.

    (``bulk_create(ignore_conflicts=True)`` cannot tell whether the row was new.)
    """
    meta = Execution._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    qn = connection.ops.quote_name
    values = [f.get_db_prep_save(f.pre_save(execution, True), connection) for f in fields]
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))}) "
        f"ON CONFLICT ({qn(meta.get_field('exec_id').column)}) DO NOTHING RETURNING {qn(meta.pk.column)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return False
    execution.pk = row[0]
    execution._state.adding = False
    return True


def _apply_to_position(execution: Execution) -> None:
    position_apply_fill(
        category=execution.category,
        symbol=execution.symbol,
        position_idx=execution.position_idx,
        side=execution.side,
        qty=execution.exec_qty,
        price=execution.exec_price,
        fee=execution.exec_fee,
        exec_type=execution.exec_type,
        exec_time=execution.exec_time,
        exec_id=execution.exec_id,
        seq=execution.seq,
    )


# --- orders ----------------------------------------------------------------------------


def _order_locked(*, order_link_id: str, order_id: str) -> Order | None:
    # Our orderLinkId is the better key: the row exists (pending_submit) before
    # the exchange has assigned an orderId.
    if order_link_id:
        order = Order.objects.select_for_update().filter(order_link_id=order_link_id).first()
        if order is not None:
            return order
    if order_id:
        return Order.objects.select_for_update().filter(order_id=order_id).order_by("pk").first()
    return None


def _order_refresh_fills(order: Order) -> None:
    """Fill totals from the order's executions, unless an order event already reported more.

    Executions give exact per-fill fees; an order event's cumExecQty can run ahead
    of them when execution messages were dropped (the backfill catches up later).
    """
    totals = Execution.objects.filter(order=order).aggregate(
        qty=Sum("exec_qty"), value=Sum("exec_value"), fees=Sum("exec_fee")
    )
    qty = totals["qty"] or Decimal(0)
    if qty < order.filled_qty:
        log.info("order_fills_behind_event", order_link_id=order.order_link_id, executions=str(qty))
        return
    _set_fills(order, qty=qty, value=totals["value"] or Decimal(0), fees=totals["fees"] or Decimal(0), avg=None)
    before = order.status
    _advance_from_fills(order)
    order.save(update_fields=["qty", "filled_qty", "cum_exec_value", "fees", "avg_fill_price", "status", "updated_at"])
    _order_event(order, before)


def _set_fills(order: Order, *, qty: Decimal, value: Decimal, fees: Decimal, avg: Decimal | None) -> None:
    if qty > order.qty:
        # The exchange filled more than we asked for: the order was amended
        # elsewhere. Keep the fills (they happened) and say so loudly.
        log.error("order_overfilled", order_link_id=order.order_link_id, qty=str(order.qty), filled=str(qty))
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


def _order_update(info: OrderInfo) -> bool:
    order = _order_locked(order_link_id=info.order_link_id, order_id=info.order_id)
    if order is None:
        order = _external_order_create(info)
        changed = order is not None
    else:
        changed = _order_merge(order, info)
    if order is None:
        return False
    linked = _link_orphan_executions(order)
    return changed or linked > 0


def _order_merge(order: Order, info: OrderInfo) -> bool:
    before = (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms)
    status_before = order.status
    if not order.order_id and info.order_id:
        order.order_id = info.order_id
    if info.cum_exec_qty > order.filled_qty:
        _set_fills(order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price)
    status = _status_of(info)
    if status is not None and _advance(order, status):
        _note_final(order, info)
    _advance_from_fills(order)
    # updatedTime is recorded, not used to overrule: status rank and monotonic
    # cumExecQty already make a stale event harmless.
    order.exchange_updated_ms = max(order.exchange_updated_ms, info.updated_ms)
    if (order.status, order.filled_qty, order.order_id, order.exchange_updated_ms) == before:
        return False
    order.save()
    _order_event(order, status_before)
    return True


def _status_of(info: OrderInfo) -> str | None:
    status = BYBIT_STATUS.get(info.order_status)
    if status is None:
        log.warning("order_status_unknown", order_status=info.order_status, order_id=info.order_id)
        return None
    if status == OrderStatus.CANCELLED and info.reject_reason == POST_ONLY_REJECT and info.cum_exec_qty == 0:
        # A PostOnly order that would have crossed ends "Cancelled" on Bybit; it
        # never rested, so it is a rejection.
        return OrderStatus.REJECTED
    return status


def _note_final(order: Order, info: OrderInfo) -> None:
    if order.status == OrderStatus.REJECTED:
        order.reject_reason = order.reject_reason or info.reject_reason
    elif order.status == OrderStatus.CANCELLED and not order.cancel_reason:
        order.cancel_reason = CancelReason.EXCHANGE
        order.cancel_note = order.cancel_note or f"{info.cancel_type or 'cancelled'} {info.reject_reason}".strip()


def _external_order_create(info: OrderInfo) -> Order | None:
    """An order the exchange knows and we did not place (manual, liquidation, ADL)."""
    qty = max(info.qty, info.cum_exec_qty)
    if qty <= 0 or info.side not in ("Buy", "Sell") or not info.order_id:
        log.warning("order_event_unusable", order_id=info.order_id, order_link_id=info.order_link_id)
        return None
    is_limit = info.order_type == OrderType.LIMIT and info.price is not None
    status = _status_of(info) or OrderStatus.NEW
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
        _set_fills(order, qty=info.cum_exec_qty, value=info.cum_exec_value, fees=info.cum_exec_fee, avg=info.avg_price)
    _note_final(order, info)
    try:
        with transaction.atomic():
            order.save(force_insert=True)
    except IntegrityError:  # another process recorded it first
        return _order_locked(order_link_id=order.order_link_id, order_id=info.order_id)
    log.info("order_external_recorded", order_id=info.order_id, symbol=info.symbol, status=status)
    return order


def _link_orphan_executions(order: Order) -> int:
    """Attach executions that arrived before their order; apply the ones still waiting."""
    keys = Q(exchange_order_id=order.order_id) if order.order_id else Q()
    if order.order_link_id and not order.is_external:
        keys |= Q(order_link_id=order.order_link_id)
    if not keys:
        return 0
    # order IS NULL first: the FK index narrows the scan to the few orphans.
    orphans = list(Execution.objects.filter(order__isnull=True).filter(keys).order_by("exec_time", "seq", "exec_id"))
    if not orphans:
        return 0
    applied = set(
        PositionLedgerEntry.objects.filter(exec_id__in=[e.exec_id for e in orphans]).values_list("exec_id", flat=True)
    )
    for execution in orphans:
        execution.order = order
        if execution.exec_id not in applied:
            execution.position_idx = order.position_idx
            _apply_to_position(execution)
    Execution.objects.bulk_update(orphans, ["order", "position_idx"])
    log.info("executions_linked", order_link_id=order.order_link_id, count=len(orphans))
    _order_refresh_fills(order)
    return len(orphans)


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


# --- positions topic ------------------------------------------------------------------------


def _position_observe(info: PositionInfo) -> None:
    position_observe(
        category=info.category,
        symbol=info.symbol,
        position_idx=info.position_idx,
        mark_price=info.mark_price,
        updated_ms=info.updated_ms,
    )


def _count(outcome: MessageOutcome, changed: bool) -> None:
    if changed:
        outcome.applied += 1
    else:
        outcome.ignored += 1
